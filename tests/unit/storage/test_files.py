"""What storage does with files, on in-memory doubles of its stores: re-uploads (idempotent for the same
bytes, a conflict for other bytes or a deleted file), refusals that leave nothing behind, archive checks
by kind, deletion that keeps a blob another file still uses."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import uuid

import pytest

from services.kit import archives
from services.kit.errors import AlreadyExists, DomainError, InvalidArgument, NotFound, ResourceExhausted
from services.storage.domain.records import BlobMissing, Kind, StoredFile
from services.storage.domain.uploads import UploadRequest
from services.storage.files import Files
from services.storage.streaming import IO_BYTES, read_chunks
from tests.unit.storage.fakes import MemoryBlobs, MemoryUnitOfWork

LIMIT = 4 << 20
DOCKERFILE = b'FROM python:3.11\nENTRYPOINT ["python3", "function.py"]\n'


def files() -> Files:
    return Files(MemoryBlobs(), MemoryUnitOfWork(), org_id="org1", max_file_bytes=LIMIT, limits=archives.Limits())


def rows(store: Files) -> dict[str, StoredFile]:
    return store._uow.records.rows


async def _chunks(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def upload(store: Files, data: bytes, chunk: int = 7, **fields) -> StoredFile:
    request = UploadRequest(**{"kind": Kind.MODEL, **fields})
    return asyncio.run(store.upload(request, _chunks(data, chunk)))


def refused(store: Files, data: bytes, error: type[DomainError] = DomainError, **fields) -> DomainError:
    with pytest.raises(error) as info:
        upload(store, data, **fields)
    assert store.blobs.staged == set(), "a refused upload leaves no staged bytes"
    return info.value


def tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------- uploads
def test_an_upload_records_the_salted_checksum_and_keeps_the_bytes_under_their_digest():
    store, key = files(), str(uuid.uuid4())
    stored = upload(store, b"weights" * 1000, asset_key=key, checksum_salt="task", filename="m.bin")
    assert stored.checksum == hashlib.sha256(b"weights" * 1000 + b"task").hexdigest()
    assert stored.digest == hashlib.sha256(b"weights" * 1000).hexdigest()
    assert (stored.kind, stored.asset_key, stored.size, stored.owner) == (Kind.MODEL, key, 7000, "org1")
    assert store.blobs.blobs == {stored.digest: b"weights" * 1000}
    assert rows(store) == {stored.file_id: stored} and store.blobs.staged == set()


def test_the_same_bytes_again_for_an_asset_give_the_stored_file():
    store, key = files(), str(uuid.uuid4())
    first = upload(store, b"same", asset_key=key)
    again = upload(store, b"same", asset_key=key, chunk=1)
    assert again == first and len(rows(store)) == 1 and len(store.blobs.blobs) == 1


def test_other_bytes_for_an_asset_conflict_and_leave_nothing_new():
    store, key = files(), str(uuid.uuid4())
    first = upload(store, b"first", asset_key=key)
    error = refused(store, b"second", AlreadyExists, asset_key=key)
    assert error.metadata == {"keys": key, "file_id": first.file_id}
    assert list(rows(store)) == [first.file_id]
    assert store.blobs.blobs == {first.digest: b"first"}  # the second content's blob was collected


def test_the_same_bytes_with_another_salt_conflict():
    store, key = files(), str(uuid.uuid4())
    upload(store, b"model", asset_key=key, checksum_salt="task-a")
    refused(store, b"model", AlreadyExists, asset_key=key, checksum_salt="task-b")
    assert len(store.blobs.blobs) == 1  # the digest is still used by the first file


def test_other_kinds_of_the_same_asset_are_other_files():
    store, key = files(), str(uuid.uuid4())
    upload(store, b"archive", kind=Kind.FUNCTION_DESCRIPTION, asset_key=key)
    upload(store, b"image", kind=Kind.FUNCTION_IMAGE, asset_key=key)
    assert len(rows(store)) == 2


def test_files_without_an_asset_are_never_deduplicated_as_one():
    store = files()
    assert upload(store, b"x").file_id != upload(store, b"x").file_id
    assert len(store.blobs.blobs) == 1  # one blob, two rows


def test_a_deleted_asset_file_is_refused_before_any_byte_is_staged():
    store, key = files(), str(uuid.uuid4())
    asyncio.run(store.delete(upload(store, b"gone", asset_key=key)))
    staged = []
    store.blobs.stage = lambda: staged.append(1)  # must not be reached
    assert "was deleted" in refused(store, b"gone", AlreadyExists, asset_key=key).message
    assert staged == []


def test_an_announced_checksum_other_than_the_stored_one_is_refused_at_once():
    store, key = files(), str(uuid.uuid4())
    upload(store, b"one", asset_key=key)
    refused(store, b"two", AlreadyExists, asset_key=key, expected_checksum=hashlib.sha256(b"two").hexdigest())


@pytest.mark.parametrize(
    ("fields", "error", "reason"),
    [
        ({}, ResourceExhausted, "FILE_TOO_LARGE"),
        ({"expected_size": 10}, InvalidArgument, "SIZE_MISMATCH"),
        ({"expected_checksum": "0" * 64}, InvalidArgument, "CHECKSUM_MISMATCH"),
    ],
)
def test_a_refused_upload_leaves_no_row_and_no_blob(fields, error, reason):
    store = files()
    data = b"x" * (LIMIT + 1) if not fields else b"twelve bytes"
    assert refused(store, data, error, chunk=IO_BYTES // 3, **fields).reason == reason
    assert rows(store) == {} and store.blobs.blobs == {}


def test_an_upload_short_of_its_announced_size_is_refused():
    assert refused(files(), b"short", InvalidArgument, expected_size=6).reason == "SIZE_MISMATCH"


def test_an_upload_abandoned_by_its_caller_leaves_nothing():
    store = files()

    async def dropped():
        yield b"partial"
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        asyncio.run(store.upload(UploadRequest(kind=Kind.MODEL), dropped()))
    assert store.blobs.staged == set() and store.blobs.blobs == {} and rows(store) == {}


def test_function_archives_are_checked_before_they_are_stored():
    store, key = files(), str(uuid.uuid4())
    error = refused(store, tar({"function.py": b"print()"}), kind=Kind.FUNCTION_ARCHIVE, asset_key=key)
    assert error.reason == "MISSING_DOCKERFILE" and rows(store) == {}
    good = tar({"Dockerfile": DOCKERFILE, "function.py": b"print()"})
    assert upload(store, good, kind=Kind.FUNCTION_ARCHIVE, asset_key=key).directory_checksum == ""


def test_data_samples_record_their_directory_checksum_and_must_hold_a_file():
    store = files()
    sample = upload(store, tar({"a.csv": b"1,2\n"}), kind=Kind.DATA_SAMPLE, asset_key=str(uuid.uuid4()))
    assert len(sample.directory_checksum) == 64
    assert refused(store, tar({}), kind=Kind.DATA_SAMPLE).reason == "EMPTY_DATA_SAMPLE"


def test_other_kinds_are_stored_as_they_are():
    assert upload(files(), b"not an archive", kind=Kind.OPENER).directory_checksum == ""


# ------------------------------------------------------------------------------------ lookups, reads
def test_lookups_by_id_and_by_ref():
    store, key = files(), str(uuid.uuid4())
    stored = upload(store, b"x", kind=Kind.OPENER, asset_key=key)
    assert asyncio.run(store.find(stored.file_id)) == stored
    assert asyncio.run(store.find_by_ref(Kind.OPENER, key.upper())) == stored
    with pytest.raises(NotFound):
        asyncio.run(store.find_by_ref(Kind.MODEL, key))
    with pytest.raises(NotFound):
        asyncio.run(store.find("nope"))


def test_a_file_whose_bytes_are_gone_or_damaged_is_data_loss():
    store = files()
    stored = upload(store, b"bytes")
    store.blobs.blobs[stored.digest] = b"byte"
    with pytest.raises(BlobMissing, match="damaged"):
        asyncio.run(store.open(stored))
    del store.blobs.blobs[stored.digest]
    with pytest.raises(BlobMissing, match="missing"):
        asyncio.run(store.open(stored))


def test_a_download_reads_from_its_offset_in_chunks_of_the_asked_size():
    store = files()
    data = bytes(range(256)) * (IO_BYTES // 64)  # four blocks
    stored = upload(store, data, chunk=IO_BYTES)

    async def read(offset: int, chunk: int) -> list[bytes]:
        reader = await store.open(stored)
        try:
            return [bytes(part) async for part in read_chunks(reader, offset, chunk)]
        finally:
            reader.close()

    parts = asyncio.run(read(100, 256 << 10))
    assert b"".join(parts) == data[100:] and max(map(len, parts)) == 256 << 10
    assert asyncio.run(read(len(data), 1000)) == []


# ------------------------------------------------------------------------------------------- delete
def test_deleting_keeps_a_blob_another_file_uses_and_removes_the_last():
    store = files()
    one, two = upload(store, b"shared", asset_key=str(uuid.uuid4())), upload(store, b"shared")
    assert asyncio.run(store.delete(one)).disabled
    assert one.digest in store.blobs.blobs
    asyncio.run(store.delete(one))  # again: nothing changes
    assert asyncio.run(store.delete(two)).disabled and store.blobs.blobs == {}
    assert all(row.disabled for row in rows(store).values())  # rows stay: GONE, not NOT_FOUND
