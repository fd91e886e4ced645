"""The database kit on a real PostgreSQL: schema-per-service migrations and the unit of work."""

import threading

import grpc
import pytest
import sqlalchemy as sa

from services.asset.bootstrap import MIGRATIONS as ASSET_MIGRATIONS
from services.kit import db, status
from services.kit.errors import Aborted, Unavailable
from services.storage.bootstrap import MIGRATIONS as STORAGE_MIGRATIONS
from tools.devnet.embedded import free_port


def test_each_service_migrates_its_own_schema(database_url):
    asset = db.create_engine(database_url, "asset")
    storage = db.create_engine(database_url, "storage")
    db.migrate(asset, "asset", ASSET_MIGRATIONS)
    db.migrate(storage, "storage", STORAGE_MIGRATIONS)
    db.migrate(asset, "asset", ASSET_MIGRATIONS)  # idempotent
    with asset.connect() as conn:
        tables = set(
            conn.execute(
                sa.text(
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables"
                    " WHERE table_schema IN ('asset', 'storage')"
                )
            ).scalars()
        )
    assert {"asset.organizations", "asset.alembic_version", "storage.files", "storage.alembic_version"} <= tables
    assert not any(t.startswith("public.") for t in tables)
    asset.dispose()
    storage.dispose()


def test_a_failed_unit_of_work_rolls_back(database_url):
    engine = db.create_engine(database_url, "public")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE items (id int primary key)"))
    uow = db.UnitOfWork(engine)

    def insert_then_fail(session):
        session.execute(sa.text("INSERT INTO items VALUES (1)"))
        raise ValueError("boom")

    with pytest.raises(ValueError):
        uow.run_sync(insert_then_fail)
    assert uow.run_sync(lambda s: s.scalar(sa.text("SELECT count(*) FROM items"))) == 0
    engine.dispose()


def test_serialization_failures_are_retried_until_both_transactions_commit(database_url):
    """Two serializable read-modify-write transactions on one row: one must be retried."""
    engine = db.create_engine(database_url, "public", serializable=True)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE counter (id int primary key, n int)"))
        conn.execute(sa.text("INSERT INTO counter VALUES (1, 0)"))
    uow = db.UnitOfWork(engine, serializable=True)
    both_read = threading.Barrier(2)
    attempts = []

    def increment(session):
        attempts.append(1)
        value = session.scalar(sa.text("SELECT n FROM counter WHERE id = 1"))
        if len(attempts) <= 2:
            both_read.wait(timeout=10)  # the first attempts overlap for sure
        session.execute(sa.text("UPDATE counter SET n = :n WHERE id = 1"), {"n": value + 1})

    threads = [threading.Thread(target=uow.run_sync, args=(increment,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert uow.run_sync(lambda s: s.scalar(sa.text("SELECT n FROM counter WHERE id = 1"))) == 2
    assert len(attempts) >= 3  # at least one retry happened
    engine.dispose()


def test_a_conflict_that_outlasts_the_retries_is_aborted_and_writes_nothing(database_url):
    """A transaction that keeps failing serialization ends as ABORTED (the caller may try again), not as
    an internal error, and leaves nothing behind."""
    engine = db.create_engine(database_url, "public", serializable=True)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE attempts_log (id serial primary key)"))
    uow = db.UnitOfWork(engine, serializable=True, retries=2)
    attempts = []

    def always_conflicting(session):
        attempts.append(1)
        session.execute(sa.text("INSERT INTO attempts_log DEFAULT VALUES"))
        session.execute(sa.text("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$"))

    with pytest.raises(Aborted) as info:
        uow.run_sync(always_conflicting)
    assert status.grpc_code(info.value) == grpc.StatusCode.ABORTED and info.value.reason == "CONTENTION"
    assert len(attempts) == 3
    assert uow.run_sync(lambda s: s.scalar(sa.text("SELECT count(*) FROM attempts_log"))) == 0
    engine.dispose()


def test_a_pooled_connection_the_server_dropped_is_replaced_without_failing_the_work(database_url):
    """Connections are not pinged before use: when the server ended one while it sat in the pool (a restart, an
    administrator), the unit of work runs again on a new connection, once, and the caller sees no error."""
    engine = db.create_engine(database_url, "public", pool_size=1, serializable=True)
    uow = db.UnitOfWork(engine, serializable=True)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE dropped_log (id serial primary key, pid int)"))
    first_pid = uow.run_sync(lambda s: s.scalar(sa.text("SELECT pg_backend_pid()")))
    killer = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with killer.connect() as conn:
        assert conn.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
    killer.dispose()
    attempts = []

    def record(session):
        attempts.append(1)
        return session.scalar(
            sa.text("INSERT INTO dropped_log (pid) VALUES (pg_backend_pid()) RETURNING pid"),
        )

    pid = uow.run_sync(record)
    assert pid != first_pid and len(attempts) == 2  # the first attempt met the dead connection
    rows = uow.run_sync(lambda s: s.execute(sa.text("SELECT pid FROM dropped_log")).all())
    assert rows == [(pid,)]  # written once
    engine.dispose()


def test_read_units_on_an_autocommit_engine_open_no_transaction(database_url):
    """Each statement of a unit on an autocommit engine is a transaction of its own (no BEGIN, no COMMIT sent);
    a unit on the default engine keeps its statements in one."""

    def transaction_ids(session) -> tuple[int, int]:
        first = session.scalar(sa.text("SELECT txid_current()"))
        return first, session.scalar(sa.text("SELECT txid_current()"))

    reads = db.create_engine(database_url, "public", autocommit=True)
    default = db.create_engine(database_url, "public")
    first, second = db.UnitOfWork(reads).run_sync(transaction_ids)
    assert second != first
    first, second = db.UnitOfWork(default).run_sync(transaction_ids)
    assert second == first
    reads.dispose()
    default.dispose()


def test_serializable_work_refuses_an_engine_that_is_not(database_url):
    engine = db.create_engine(database_url, "public")
    with pytest.raises(ValueError, match="serializable"):
        db.UnitOfWork(engine, serializable=True)
    engine.dispose()


def test_a_database_out_of_reach_is_unavailable_not_an_internal_error(database_url):
    """A refused connection, or one the server cuts mid-transaction (PostgreSQL killed or restarting), is
    UNAVAILABLE: the same call may succeed once the server is back (a 503 at the gateway, not a 500)."""
    nowhere = db.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/none", "public")
    with pytest.raises(Unavailable) as info:
        db.UnitOfWork(nowhere).run_sync(lambda s: s.scalar(sa.text("SELECT 1")))
    assert status.grpc_code(info.value) == grpc.StatusCode.UNAVAILABLE and info.value.reason == "DATABASE_UNAVAILABLE"

    engine, admin = db.create_engine(database_url, "public"), sa.create_engine(database_url)
    uow = db.UnitOfWork(engine)

    def cut_off(session):
        pid = session.scalar(sa.text("SELECT pg_backend_pid()"))
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        session.execute(sa.text("SELECT 1"))

    with pytest.raises(Unavailable):
        uow.run_sync(cut_off)
    assert uow.run_sync(lambda s: s.scalar(sa.text("SELECT 1"))) == 1  # the pool replaced the dead connection
    engine.dispose()
    admin.dispose()


def test_a_child_interpreter_runs_the_migrations_and_reports_their_failure(database_url, tmp_path):
    schema = "storage_child"
    db.migrate_in_child(database_url, schema, STORAGE_MIGRATIONS)
    db.migrate_in_child(database_url, schema, STORAGE_MIGRATIONS)  # idempotent
    engine = db.create_engine(database_url, schema)
    with engine.connect() as conn:
        tables = set(
            conn.execute(
                sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
            ).scalars()
        )
    engine.dispose()
    assert {"files", "alembic_version"} <= tables

    # A failure in the child surfaces with the child's own error, not as a silent success.
    broken = tmp_path / "no-migrations-here"
    broken.mkdir()
    with pytest.raises(RuntimeError, match="migrating schema storage_child failed"):
        db.migrate_in_child(database_url, schema, broken)


def _rows_per_insert(engine, table: str) -> list[int]:
    """Record, for every INSERT into ``table`` the engine sends, how many rows it carries (a statement run
    once per row by the driver counts one row per execution)."""
    sent: list[int] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith(f"INSERT INTO {table} "):
            groups = statement.split(" VALUES ", 1)[1].count("(%(")
            sent.extend([groups] * (len(parameters) if executemany and groups == 1 else 1))

    return sent


def _rows_per_feed_insert(monkeypatch) -> list[int]:
    """Record, for every statement the event store's batch write sends through the driver, how many rows it
    carries (read from the statement psycopg2 actually sent)."""
    from services.event.store import sql as feed_sql

    sent: list[int] = []
    real = feed_sql.execute_values

    def counting(cursor, statement, rows, **options):
        pages = []

        class Recorder:  # the driver's cursor, remembering each statement it runs
            def __getattr__(self, name):
                return getattr(cursor, name)

            def execute(self, query, *args):
                cursor.execute(query, *args)
                pages.append(cursor.query)

        result = real(Recorder(), statement, rows, **options)
        sent.extend(page.split(b" VALUES ", 1)[1].count(b"),(") + 1 for page in pages)
        return result

    monkeypatch.setattr(feed_sql, "execute_values", counting)
    return sent


def test_rows_written_together_travel_in_one_statement(database_url, monkeypatch):
    """The feed's events and a task's profiling steps are written as lists of rows with an ON CONFLICT clause,
    which the driver would otherwise run once per row (one round trip each)."""
    from google.protobuf.timestamp_pb2 import Timestamp
    from tessera.asset.v1 import events_pb2 as ev
    from tessera.asset.v1 import resources_pb2 as res

    from services.asset.store.sql import SqlStore as LedgerStore
    from services.event.bootstrap import MIGRATIONS as EVENT_MIGRATIONS
    from services.event.store.sql import SqlStore as EventStore

    ledger, feed = db.create_engine(database_url, "asset"), db.create_engine(database_url, "event")
    db.migrate(ledger, "asset", ASSET_MIGRATIONS)
    db.migrate(feed, "event", EVENT_MIGRATIONS)
    steps_sent, events_sent = _rows_per_insert(ledger, "profiling_steps"), _rows_per_feed_insert(monkeypatch)
    steps = [res.ProfilingStep(asset_key="task-batch", step=f"step{i}", duration=i) for i in range(3)]
    events = [
        ev.Event(id=f"e{i}", channel="batch", position=i, asset_key=f"k{i}", timestamp=Timestamp(seconds=i))
        for i in range(1, 5)
    ]
    for _ in range(2):  # the second time, every row is already there: nothing is written, nothing fails
        db.UnitOfWork(ledger).run_sync(lambda s: LedgerStore(s, "batch").add_profiling_steps(steps))
        db.UnitOfWork(feed).run_sync(lambda s: EventStore(s).add_to_feed(events))
    assert steps_sent == [3, 3]
    assert events_sent == [4, 4]
    with feed.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM event.feed_events WHERE channel = 'batch'")) == 4
    ledger.dispose()
    feed.dispose()
