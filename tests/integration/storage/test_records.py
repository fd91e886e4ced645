"""The ``FileRecords`` protocol on PostgreSQL, and the in-memory double the unit tests use, held to the
same behaviour: what the unit tests of ``Files`` conclude from the double holds for the table."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from services.kit import db
from services.storage.bootstrap import MIGRATIONS
from services.storage.domain.records import Kind
from services.storage.store.sql import SqlFileRecords
from services.storage.store.tables import SCHEMA
from tests.unit.storage.fakes import MemoryUnitOfWork, stored_file


@pytest.fixture(scope="module")
def engine(postgres):
    url = postgres.url(f"srecords_{uuid.uuid4().hex[:8]}")
    db.ensure_database(url)
    engine = db.create_engine(url, SCHEMA, pool_size=1)
    db.migrate(engine, SCHEMA, MIGRATIONS)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sql", "memory"])
def run(request, engine):
    """Run a work on a fresh transaction of one implementation."""
    if request.param == "sql":
        return db.UnitOfWork(engine, repositories=SqlFileRecords).run_sync
    memory = MemoryUnitOfWork()
    return lambda work: work(memory.records)


def test_a_file_is_found_by_id_and_by_ref_as_it_was_inserted(run):
    stored = stored_file(Kind.OPENER, filename="opener.py", directory_checksum="")
    assert run(lambda files: files.insert(stored))
    assert run(lambda files: files.get(stored.file_id)) == stored
    found = run(lambda files: files.get_by_ref(Kind.OPENER, stored.asset_key))
    assert found == stored and isinstance(found.kind, Kind)
    assert run(lambda files: files.get_by_ref(Kind.MODEL, stored.asset_key)) is None
    assert run(lambda files: files.get(str(uuid.uuid4()))) is None


def test_an_asset_has_at_most_one_file_of_a_kind_but_loose_files_are_many(run):
    first = stored_file(Kind.MODEL)
    assert run(lambda files: files.insert(first))
    second = replace(first, file_id=str(uuid.uuid4()), digest="e" * 64)
    assert not run(lambda files: files.insert(second))
    assert run(lambda files: files.get(second.file_id)) is None
    other_kind = replace(second, kind=Kind.LOGS)
    assert run(lambda files: files.insert(other_kind))
    loose = [stored_file(Kind.LOGS, asset_key="") for _ in range(2)]
    assert all(run(lambda files, f=f: files.insert(f)) for f in loose)


def test_disabled_files_stay_and_stop_counting_as_references(run):
    digest = uuid.uuid4().hex * 2
    one, two = stored_file(digest=digest), stored_file(digest=digest)
    for stored in (one, two):
        run(lambda files, s=stored: files.insert(s))
    assert run(lambda files: files.live_references(digest)) == 2
    run(lambda files: files.lock_digest(digest) or files.disable(one.file_id))
    assert run(lambda files: files.get(one.file_id, for_update=True)).disabled
    assert run(lambda files: files.live_references(digest)) == 1
