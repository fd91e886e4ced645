"""A stored file's kinds, asset keys and download checks."""

from __future__ import annotations

import uuid

import pytest
from tessera.storage.v1 import storage_pb2 as res

from services.kit.errors import FailedPrecondition, InvalidArgument
from services.storage.domain.records import Kind, asset_key, check_download, file_ref
from services.storage.server import kind_of
from tests.unit.storage.fakes import stored_file


def test_the_kinds_are_the_api_s_file_kinds_one_for_one():
    api_kinds = {name for name, _ in res.FileKind.items() if name != "FILE_KIND_UNSPECIFIED"}
    assert {kind.value for kind in Kind} == api_kinds
    for kind in Kind:
        assert kind_of(res.FileKind.Value(kind)) is kind


@pytest.mark.parametrize("value", [res.FILE_KIND_UNSPECIFIED, 999, -1])
def test_an_unspecified_or_unknown_kind_value_is_no_kind(value):
    assert kind_of(value) is None


def test_an_asset_key_is_a_uuid_in_canonical_form():
    key = uuid.uuid4()
    assert asset_key("ref.asset_key", str(key).upper()) == str(key)
    assert asset_key("ref.asset_key", key.hex) == str(key)
    with pytest.raises(InvalidArgument) as info:
        asset_key("ref.asset_key", "not-a-key")
    assert [v.field for v in info.value.violations] == ["ref.asset_key"]


def test_a_file_ref_needs_a_kind_and_a_key():
    key = str(uuid.uuid4())
    assert file_ref(Kind.OPENER, key.upper()) == (Kind.OPENER, key)
    with pytest.raises(InvalidArgument) as info:
        file_ref(None, key)
    assert [v.field for v in info.value.violations] == ["ref.kind"]
    with pytest.raises(InvalidArgument) as info:
        file_ref(Kind.OPENER, "")
    assert [v.field for v in info.value.violations] == ["ref.asset_key"]


def test_a_download_starts_anywhere_in_the_file_up_to_its_end():
    stored = stored_file(size=10)
    for offset in (0, 5, 10):
        check_download(stored, offset=offset, expected_checksum=None)
    for offset in (-1, 11):
        with pytest.raises(InvalidArgument) as info:
            check_download(stored, offset=offset, expected_checksum=None)
        assert info.value.violations[0].field == "offset"


def test_a_download_expecting_another_checksum_is_refused():
    stored = stored_file(checksum="a" * 64)
    check_download(stored, offset=0, expected_checksum="a" * 64)
    with pytest.raises(FailedPrecondition) as info:
        check_download(stored, offset=0, expected_checksum="b" * 64)
    assert info.value.reason == "CHECKSUM_MISMATCH"


def test_a_file_is_named_by_its_asset_or_else_its_id():
    assert stored_file(Kind.LOGS, asset_key="k").label == "FILE_KIND_LOGS of asset k"
    loose = stored_file(Kind.LOGS, asset_key="")
    assert loose.label == f"FILE_KIND_LOGS of asset {loose.file_id}"
