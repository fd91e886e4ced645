"""Files in and out of one organization's storage: round trips small and multi-GB, resume, the salted
checksum, content addressing and deletion."""

from __future__ import annotations

import hashlib
import os
import resource
import time
from collections.abc import Iterator

import grpc
import pytest
from tessera.storage.v1 import storage_pb2 as res
from tessera.storage.v1 import storage_service_pb2 as api

from services.kit.storage import addresses
from services.kit.storage.client import ChecksumMismatch, download_to_sync, upload_requests
from tests.integration.storage.conftest import (
    ORG1,
    call_error,
    download,
    meta,
    new_key,
    ref,
    sha256,
    upload,
)


def test_small_round_trip_by_id_and_by_ref(net):
    stub = net.storage("org1")
    key = new_key()
    data = os.urandom(300_000)
    info = upload(stub, data, meta(res.FILE_KIND_FUNCTION_DESCRIPTION, key.upper(), filename="description.md"))
    assert (info.size, info.checksum, info.owner, info.filename) == (len(data), sha256(data), ORG1, "description.md")
    assert info.kind == res.FILE_KIND_FUNCTION_DESCRIPTION and info.asset_key == key  # normalized
    assert info.storage_address == f"http://myorg1msp.test/function/{key}/description/"
    assert addresses.parse(info.storage_address) == ref(res.FILE_KIND_FUNCTION_DESCRIPTION, key)
    assert not info.disabled and info.creation_date.seconds > time.time() - 60

    by_id, content = download(stub, file_id=info.file_id)
    assert content == data and by_id == info
    by_ref, content = download(stub, ref=ref(res.FILE_KIND_FUNCTION_DESCRIPTION, key))
    assert content == data and by_ref == info
    stat = stub.StatFile(api.StatFileRequest(ref=ref(res.FILE_KIND_FUNCTION_DESCRIPTION, key))).file
    assert stat == info


def test_empty_file_and_chunks_of_every_size(net):
    stub = net.storage("org1")
    empty = upload(stub, b"", kind=res.FILE_KIND_LOGS)
    assert empty.size == 0 and empty.checksum == sha256(b"")
    assert download(stub, file_id=empty.file_id)[1] == b""
    chunks = [os.urandom(n) for n in (1, 7, 65536, 1 << 20, (1 << 20) + 3, 3)]
    info = upload(stub, iter(chunks), kind=res.FILE_KIND_LOGS)
    assert download(stub, file_id=info.file_id)[1] == b"".join(chunks)


def test_model_checksum_is_salted_with_the_task_key(net):
    task_key = new_key()
    data = b"model weights" * 1000
    info = upload(net.storage("org1"), data, meta(res.FILE_KIND_MODEL, new_key(), checksum_salt=task_key))
    assert info.checksum == hashlib.sha256(data + task_key.encode()).hexdigest() != sha256(data)
    # The expected checksum of an upload is the salted one.
    again = meta(res.FILE_KIND_MODEL, new_key(), checksum_salt=task_key, expected_checksum=info.checksum)
    assert upload(net.storage("org1"), data, again).checksum == info.checksum


def test_resume_from_every_offset(net):
    stub = net.storage("org1")
    data = os.urandom((3 << 20) + 12345)
    info = upload(stub, data, kind=res.FILE_KIND_LOGS)
    for offset in (0, 1, (1 << 20) - 1, 1 << 20, len(data) - 1, len(data)):
        received, content = download(stub, offset=offset, file_id=info.file_id)
        assert received.size == len(data) and content == data[offset:], offset
    for offset in (-1, len(data) + 1):
        error = call_error(download, stub, offset=offset, file_id=info.file_id)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.violations[0].field == "offset"


def test_download_checks_an_expected_checksum(net):
    stub = net.storage("org1")
    info = upload(stub, b"abc", kind=res.FILE_KIND_LOGS)
    request = api.DownloadRequest(file_id=info.file_id, expected_checksum=sha256(b"abd"))
    error = call_error(lambda: list(stub.Download(request)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CHECKSUM_MISMATCH")
    request.expected_checksum = info.checksum
    assert len(list(stub.Download(request))) == 2


def test_download_to_a_file_resumes_and_verifies(net, tmp_path):
    stub = net.storage("org1")
    task_key = new_key()
    data = os.urandom((2 << 20) + 99)
    info = upload(stub, data, meta(res.FILE_KIND_MODEL, new_key(), checksum_salt=task_key))
    request = api.DownloadRequest(ref=ref(res.FILE_KIND_MODEL, info.asset_key))
    target = tmp_path / "model"
    target.write_bytes(data[:1_500_000])  # an interrupted earlier download
    got = download_to_sync(stub, request, target, expected_checksum=info.checksum, salt=task_key.encode())
    assert got.file_id == info.file_id and target.read_bytes() == data
    # The same through the zero-copy codec, from scratch.
    target.unlink()
    got = download_to_sync(net.fast("org1"), request, target, expected_checksum=info.checksum, salt=task_key.encode())
    assert got == info and target.read_bytes() == data
    # A prefix that does not match the file: the result fails the salted checksum and is deleted.
    target.write_bytes(b"x" * 1000)
    with pytest.raises(ChecksumMismatch):
        download_to_sync(stub, request, target, expected_checksum=info.checksum, salt=task_key.encode())
    assert not target.exists()


def test_identical_content_is_stored_once_and_deleted_with_its_last_file(net):
    stub, blobs = net.storage("org1"), net.blobs("org1")
    data = os.urandom(100_000)
    first = upload(stub, data, meta(res.FILE_KIND_OPENER, new_key()))
    second = upload(stub, data, meta(res.FILE_KIND_FUNCTION_DESCRIPTION, new_key()))
    assert first.file_id != second.file_id and first.checksum == second.checksum
    path = blobs.blob_path(first.checksum)
    assert path.read_bytes() == data and path.stat().st_nlink == 1

    deleted = stub.DeleteFile(api.DeleteFileRequest(file_id=first.file_id)).file
    assert deleted.disabled and path.exists()  # still used by the second file
    error = call_error(download, stub, file_id=first.file_id)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "GONE")
    assert stub.StatFile(api.StatFileRequest(file_id=first.file_id)).file.disabled
    assert download(stub, file_id=second.file_id)[1] == data

    stub.DeleteFile(api.DeleteFileRequest(ref=ref(res.FILE_KIND_FUNCTION_DESCRIPTION, second.asset_key)))
    assert not path.exists()
    # Deleting again changes nothing; the asset's file cannot be uploaded again.
    assert stub.DeleteFile(api.DeleteFileRequest(file_id=second.file_id)).file.disabled
    error = call_error(upload, stub, data, meta(res.FILE_KIND_FUNCTION_DESCRIPTION, second.asset_key))
    assert error.code == grpc.StatusCode.ALREADY_EXISTS


def _sparse_file(path, size: int) -> None:
    """A ``size``-byte file of holes, with random marks at a few places so a shifted byte shows."""
    with open(path, "wb") as handle:
        handle.truncate(size)
        for position in (0, size // 3, size // 2 + 12345, size - 4096):
            handle.seek(position)
            handle.write(os.urandom(4096))


def _hashed_chunks(path, digest) -> Iterator[bytes]:
    """The file's bytes in 1 MiB chunks, hashed into ``digest`` as they are read (never held)."""
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            yield block


def test_multi_gigabyte_sparse_round_trip_in_flat_memory(net, tmp_path):
    """2.15 GB up and down (through the zero-copy codec): digests computed as the bytes stream, never
    held; peak memory stays flat."""
    size = (2 << 30) + 777
    source = tmp_path / "big.bin"
    _sparse_file(source, size)
    calls = net.fast("org1")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    sent = hashlib.sha256()
    metadata = meta(res.FILE_KIND_MODEL, new_key(), expected_size=size)
    info = calls.Upload(upload_requests(metadata, _hashed_chunks(source, sent), raw=True)).file
    assert info.size == size and info.checksum == sent.hexdigest()
    source.unlink()

    received, n = hashlib.sha256(), 0
    for response in calls.Download(api.DownloadRequest(file_id=info.file_id)):
        if isinstance(response, memoryview):
            received.update(response)
            n += len(response)
    assert n == size and received.hexdigest() == sent.hexdigest()

    # Client and server share this process: together they grew by far less than the file.
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 150, f"peak RSS grew by {grown_mb:.0f} MB"
    net.storage("org1").DeleteFile(api.DeleteFileRequest(file_id=info.file_id))
    assert not net.blobs("org1").blob_path(info.checksum).exists()
