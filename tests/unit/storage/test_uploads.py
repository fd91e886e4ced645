"""What an upload must satisfy: metadata, sizes, checksums, archive checks by kind, conflicts."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from tessera.storage.v1 import storage_pb2 as res
from tessera.storage.v1 import storage_service_pb2 as api

from services.kit.errors import AlreadyExists, InvalidArgument, ResourceExhausted
from services.storage.domain.records import Kind
from services.storage.domain.uploads import (
    MAX_FILENAME,
    MAX_SALT,
    ArchiveCheck,
    UploadRequest,
    UploadSpec,
    archive_check,
    check_checksum,
    check_complete,
    check_new_upload,
    check_received,
    settle_duplicate,
    validate_upload,
)
from services.storage.server import upload_request
from tests.unit.storage.fakes import stored_file

LIMIT = 1000


def spec(**fields) -> UploadSpec:
    return validate_upload(UploadRequest(**{"kind": Kind.MODEL, **fields}), LIMIT)


def fields_refused(**fields) -> list[str]:
    with pytest.raises(InvalidArgument) as info:
        spec(**fields)
    return [v.field for v in info.value.violations]


# ------------------------------------------------------------------------------------------- metadata
def test_valid_metadata_becomes_a_spec_with_a_canonical_key_and_the_salt_as_bytes():
    key = uuid.uuid4()
    got = spec(asset_key=str(key).upper(), expected_size=LIMIT, filename="model.bin", checksum_salt="task")
    assert got == UploadSpec(Kind.MODEL, str(key), LIMIT, None, "model.bin", b"task")
    assert spec().asset_key == ""  # no asset: reachable by file id only


def test_every_invalid_field_is_named_at_once():
    refused = fields_refused(
        kind=None,
        asset_key="nope",
        expected_size=-1,
        expected_checksum="A" * 64,
        filename="a/b",
        checksum_salt="s" * (MAX_SALT + 1),
    )
    assert refused == [
        "metadata.kind",
        "metadata.asset_key",
        "metadata.expected_size",
        "metadata.expected_checksum",
        "metadata.filename",
        "metadata.checksum_salt",
    ]


@pytest.mark.parametrize("name", ["x" * (MAX_FILENAME + 1), "a/b", "line\nbreak", "tab\t"])
def test_a_filename_is_a_short_base_name(name):
    assert fields_refused(filename=name) == ["metadata.filename"]


def test_the_longest_filename_and_salt_are_accepted():
    assert spec(filename="x" * MAX_FILENAME, checksum_salt="s" * MAX_SALT).salt == b"s" * MAX_SALT


@pytest.mark.parametrize("checksum", ["a" * 63, "a" * 65, "g" * 64, "A" * 64])
def test_an_expected_checksum_is_64_lowercase_hex_characters(checksum):
    assert fields_refused(expected_checksum=checksum) == ["metadata.expected_checksum"]


def test_an_empty_asset_key_that_was_set_is_not_a_key():
    assert fields_refused(asset_key="") == ["metadata.asset_key"]


def test_an_announced_size_over_the_limit_is_refused_before_any_byte():
    assert spec(expected_size=LIMIT).expected_size == LIMIT
    with pytest.raises(ResourceExhausted) as info:
        spec(expected_size=LIMIT + 1)
    assert info.value.reason == "FILE_TOO_LARGE"
    assert info.value.metadata == {"limit": "TESSERA_MAX_FILE_BYTES", "value": str(LIMIT)}


def test_the_handler_passes_unset_optional_fields_as_none_and_set_ones_as_sent():
    bare = upload_request(api.UploadMetadata(kind=res.FILE_KIND_OPENER))
    assert bare == UploadRequest(kind=Kind.OPENER)
    sent = upload_request(
        api.UploadMetadata(kind=0, asset_key="", expected_size=0, expected_checksum="", filename="f", checksum_salt="s")
    )
    assert sent == UploadRequest(None, "", 0, "", "f", "s")


# ------------------------------------------------------------------------------------- bytes arriving
def test_bytes_past_the_limit_or_the_announced_size_stop_the_upload():
    check_received(spec(), LIMIT, LIMIT)
    with pytest.raises(ResourceExhausted) as info:
        check_received(spec(), LIMIT + 1, LIMIT)
    assert info.value.reason == "FILE_TOO_LARGE"
    announced = spec(expected_size=10)
    check_received(announced, 10, LIMIT)
    with pytest.raises(InvalidArgument) as info:
        check_received(announced, 11, LIMIT)
    assert info.value.reason == "SIZE_MISMATCH"


def test_an_upload_ending_short_of_its_announced_size_is_refused():
    check_complete(spec(), 0)
    check_complete(spec(expected_size=10), 10)
    with pytest.raises(InvalidArgument) as info:
        check_complete(spec(expected_size=10), 9)
    assert info.value.reason == "SIZE_MISMATCH"


def test_the_bytes_must_hash_to_the_announced_checksum():
    good = hashlib.sha256(b"data" + b"salt").hexdigest()
    check_checksum(spec(), good)
    check_checksum(spec(expected_checksum=good), good)
    with pytest.raises(InvalidArgument) as info:
        check_checksum(spec(expected_checksum="0" * 64), good)
    assert info.value.reason == "CHECKSUM_MISMATCH"
    assert info.value.metadata == {"expected": "0" * 64, "actual": good}


def test_only_function_archives_and_data_samples_are_checked_as_archives():
    checks = {kind: archive_check(kind) for kind in Kind}
    assert checks.pop(Kind.FUNCTION_ARCHIVE) is ArchiveCheck.FUNCTION_ARCHIVE
    assert checks.pop(Kind.DATA_SAMPLE) is ArchiveCheck.DATA_SAMPLE
    assert set(checks.values()) == {None}


# ------------------------------------------------------------------------------------------ conflicts
def test_an_asset_whose_file_was_deleted_never_gets_another():
    existing = stored_file(disabled=True)
    with pytest.raises(AlreadyExists) as info:
        check_new_upload(spec(asset_key=existing.asset_key), existing)
    assert "was deleted" in info.value.message
    assert info.value.metadata == {"keys": existing.asset_key, "file_id": existing.file_id}


def test_an_announced_checksum_other_than_the_stored_one_conflicts_at_once():
    existing = stored_file(checksum="a" * 64)
    check_new_upload(spec(asset_key=existing.asset_key), existing)  # decided once the bytes are in
    check_new_upload(spec(asset_key=existing.asset_key, expected_checksum="a" * 64), existing)
    with pytest.raises(AlreadyExists):
        check_new_upload(spec(asset_key=existing.asset_key, expected_checksum="b" * 64), existing)
    check_new_upload(spec(asset_key=existing.asset_key, expected_checksum="b" * 64), None)


def test_the_same_bytes_again_give_the_stored_file_other_bytes_conflict():
    existing = stored_file(digest="d" * 64, checksum="c" * 64)
    again = stored_file(asset_key=existing.asset_key, digest="d" * 64, checksum="c" * 64)
    assert settle_duplicate(existing, again) is existing
    for different in (
        stored_file(asset_key=existing.asset_key, digest="e" * 64, checksum="c" * 64),
        stored_file(asset_key=existing.asset_key, digest="d" * 64, checksum="f" * 64),  # other salt
    ):
        with pytest.raises(AlreadyExists) as info:
            settle_duplicate(existing, different)
        assert "already has a file with other content" in info.value.message
    with pytest.raises(AlreadyExists):
        settle_duplicate(stored_file(disabled=True, digest="d" * 64, checksum="c" * 64), again)
    with pytest.raises(AlreadyExists):
        settle_duplicate(None, again)
