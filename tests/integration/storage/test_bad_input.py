"""Refusals: every bad upload leaves no byte and no record and answers a clear status, never INTERNAL.
Also concurrent uploads of the same content, and a stream cut in the middle."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from tessera.storage.v1 import storage_pb2 as res
from tessera.storage.v1 import storage_service_pb2 as api

from tests.integration.storage.conftest import (
    ORG1,
    SECRETS,
    TINY_LIMIT,
    assert_nothing_left,
    call_error,
    download,
    meta,
    new_key,
    ref,
    sha256,
    upload,
)


def test_checksum_mismatch_rejects_the_upload_and_leaves_nothing(net):
    key, data = new_key(), os.urandom(2_000_000)
    before = net.blobs("org1").blob_count()
    error = call_error(upload, net.storage("org1"), data, meta(asset_key=key, expected_checksum=sha256(b"other")))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CHECKSUM_MISMATCH")
    assert error.metadata["actual"] == sha256(data)
    assert_nothing_left(net, "org1", key, blobs_before=before)
    # The salt is part of the checksum: the unsalted digest does not match a salted upload.
    salted = meta(asset_key=key, checksum_salt=new_key(), expected_checksum=sha256(data))
    assert call_error(upload, net.storage("org1"), data, salted).reason == "CHECKSUM_MISMATCH"
    assert_nothing_left(net, "org1", key, blobs_before=before)


@pytest.mark.parametrize("declared", [999, 1001])
def test_size_mismatch_rejects_the_upload(net, declared):
    key = new_key()
    error = call_error(upload, net.storage("org1"), b"x" * 1000, meta(asset_key=key, expected_size=declared))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SIZE_MISMATCH")
    assert_nothing_left(net, "org1", key)


def test_upload_over_the_limit_is_resource_exhausted_naming_it(net):
    stub, key = net.storage("tiny"), new_key()
    # Streamed past the limit.
    error = call_error(upload, stub, b"\0" * (TINY_LIMIT + 1), meta(asset_key=key))
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "FILE_TOO_LARGE")
    assert error.metadata == {"limit": "TESSERA_MAX_FILE_BYTES", "value": str(TINY_LIMIT)}
    assert "TESSERA_MAX_FILE_BYTES" in error.message
    assert_nothing_left(net, "tiny", key)
    # Declared over the limit: refused before any byte is sent.
    error = call_error(upload, stub, iter(()), meta(asset_key=key, expected_size=TINY_LIMIT + 1))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.metadata["limit"] == "TESSERA_MAX_FILE_BYTES"
    # Exactly the limit is fine.
    assert upload(stub, b"\0" * TINY_LIMIT, meta(asset_key=key)).size == TINY_LIMIT


def _generator_cut_after(n_chunks: int, key: str, started: threading.Event):
    yield api.UploadRequest(metadata=meta(asset_key=key))
    for _ in range(n_chunks):
        yield api.UploadRequest(chunk=os.urandom(1 << 20))
    started.set()
    raise ConnectionError("the client died in the middle of the upload")


def test_a_stream_cut_in_the_middle_leaves_nothing(net):
    key, started = new_key(), threading.Event()
    before = net.blobs("org1").blob_count()
    with pytest.raises(grpc.RpcError) as info:
        net.storage("org1").Upload(_generator_cut_after(5, key, started))
    # The client cancels the call (and reports UNKNOWN "Exception iterating requests!" locally).
    assert info.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN) and started.is_set()
    assert_nothing_left(net, "org1", key, blobs_before=before)


KILLED_CLIENT = """
import sys, time
from services.kit.client import sync_channel
from services.kit.identity import OrgCredentials
from tessera.storage.v1 import storage_pb2 as res, storage_service_pb2 as api, storage_service_pb2_grpc as rpc
addr, org, secret, key = sys.argv[1:5]
def requests():
    yield api.UploadRequest(metadata=api.UploadMetadata(kind=res.FILE_KIND_MODEL, asset_key=key))
    while True:
        yield api.UploadRequest(chunk=b"x" * (1 << 20))
        print("sent", flush=True)
        time.sleep(0.02)
rpc.StorageServiceStub(sync_channel(addr, OrgCredentials(org, secret))).Upload(requests())
"""


def test_a_client_killed_in_the_middle_of_an_upload_leaves_nothing(net):
    """A real cut: the client process dies (SIGKILL) with the stream open; the connection drops."""
    key = new_key()
    service = net.services["org1"]
    client = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT, service.thread.addr, ORG1, SECRETS[ORG1], key],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(5):
            assert client.stdout.readline().startswith("sent")
        assert net.blobs("org1").staged_count() >= 1  # the upload is under way
    finally:
        client.kill()
        client.wait(10)
        client.stdout.close()
    assert_nothing_left(net, "org1", key)


def test_a_cancelled_upload_leaves_nothing(net):
    key = new_key()
    stop = threading.Event()

    def slow():
        yield api.UploadRequest(metadata=meta(asset_key=key))
        while not stop.is_set():
            yield api.UploadRequest(chunk=b"\1" * 65536)
            time.sleep(0.01)

    future = net.storage("org1").Upload.future(slow())
    time.sleep(0.3)
    future.cancel()
    stop.set()
    assert future.cancelled()
    assert_nothing_left(net, "org1", key)


@pytest.mark.parametrize(
    ("requests", "field"),
    [
        ([], "metadata"),
        ([api.UploadRequest(chunk=b"abc")], "metadata"),
        ([api.UploadRequest(metadata=meta()), api.UploadRequest(metadata=meta())], "chunk"),
        ([api.UploadRequest(metadata=meta(kind=res.FILE_KIND_UNSPECIFIED))], "metadata.kind"),
        ([api.UploadRequest(metadata=meta(kind=42))], "metadata.kind"),
        ([api.UploadRequest(metadata=meta(asset_key="not-a-uuid"))], "metadata.asset_key"),
        ([api.UploadRequest(metadata=meta(expected_checksum="ABC"))], "metadata.expected_checksum"),
        ([api.UploadRequest(metadata=meta(expected_size=-1))], "metadata.expected_size"),
        ([api.UploadRequest(metadata=meta(filename="../etc/passwd"))], "metadata.filename"),
        ([api.UploadRequest(metadata=meta(filename="a\nb"))], "metadata.filename"),
        ([api.UploadRequest(metadata=meta(checksum_salt="s" * 300))], "metadata.checksum_salt"),
    ],
)
def test_malformed_upload_streams_are_invalid_argument(net, requests, field):
    before = net.blobs("org1").staged_count()
    error = call_error(net.storage("org1").Upload, iter(requests))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.violations[0].field == field
    assert net.blobs("org1").staged_count() == before


def test_unknown_files_are_not_found_and_bad_names_invalid(net):
    stub = net.storage("org1")
    for request in (
        api.StatFileRequest(file_id=new_key()),
        api.StatFileRequest(ref=ref(res.FILE_KIND_MODEL, new_key())),
    ):
        assert call_error(stub.StatFile, request).code == grpc.StatusCode.NOT_FOUND
    assert call_error(download, stub, file_id=new_key()).code == grpc.StatusCode.NOT_FOUND
    assert call_error(stub.DeleteFile, api.DeleteFileRequest(file_id=new_key())).code == grpc.StatusCode.NOT_FOUND
    for request in (
        api.StatFileRequest(),
        api.StatFileRequest(ref=ref(res.FILE_KIND_UNSPECIFIED, new_key())),
        api.StatFileRequest(ref=ref(res.FILE_KIND_MODEL, "nope")),
    ):
        assert call_error(stub.StatFile, request).code == grpc.StatusCode.INVALID_ARGUMENT


def test_an_asset_has_one_file_same_content_is_idempotent(net):
    stub, key = net.storage("org1"), new_key()
    first = upload(stub, b"v1", meta(asset_key=key))
    again = upload(stub, b"v1", meta(asset_key=key))
    assert again == first
    error = call_error(upload, stub, b"v2", meta(asset_key=key))
    assert error.code == grpc.StatusCode.ALREADY_EXISTS and error.metadata["file_id"] == first.file_id
    # Known other content is refused before any byte is received.
    error = call_error(upload, stub, iter(()), meta(asset_key=key, expected_checksum=sha256(b"v2")))
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert download(stub, ref=ref(res.FILE_KIND_MODEL, key))[1] == b"v1"
    # Another kind of file for the same asset is another file.
    assert upload(stub, b"v2", meta(res.FILE_KIND_LOGS, key)).file_id != first.file_id


def test_concurrent_uploads_of_the_same_content(net):
    stub, blobs = net.storage("org1"), net.blobs("org1")
    data = os.urandom(3 << 20)
    before = blobs.blob_count()
    shared_key = new_key()
    jobs = [meta(asset_key=new_key()) for _ in range(4)] + [meta(res.FILE_KIND_LOGS, shared_key) for _ in range(4)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        infos = list(pool.map(lambda m: upload(stub, data, m), jobs))
    assert {i.checksum for i in infos} == {sha256(data)}
    assert len({i.file_id for i in infos[:4]}) == 4  # four assets, four files...
    assert len({i.file_id for i in infos[4:]}) == 1  # ...and one file for the four uploads of one asset
    assert blobs.blob_count() == before + 1  # one blob for all of them
    assert blobs.staged_count() == 0
    for info in infos[:5]:
        assert download(stub, file_id=info.file_id)[1] == data
