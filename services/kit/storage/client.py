"""Calling a storage service: upload from a file or any chunk iterator, download to a file with resume
and checksum verification. Memory stays flat: one chunk at a time on every path.

Works with the generated stubs and with :class:`FastCalls` (the same RPCs through the zero-copy chunk
codec of :mod:`~services.kit.storage.wire`, about a third less CPU per byte), on sync channels (tools,
tests) and aio channels (compute, gateway)::

    calls = FastCalls(channel)
    info = calls.Upload(upload_requests(UploadMetadata(kind=FILE_KIND_MODEL, asset_key=key,
                                                       checksum_salt=task_key), open(path, "rb"), raw=True))
    info = await download_to(calls, DownloadRequest(ref=FileRef(kind=..., asset_key=key)), path,
                             expected_checksum=checksum, salt=task_key.encode())

A download into a path that already holds a prefix of the file resumes after it; the finished file is
verified against ``expected_checksum`` (sha256 of the bytes followed by ``salt``, substra-domain.md
§1.9) and deleted on mismatch, as Substra's workers do (§3.7).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from tessera.storage.v1 import storage_pb2 as res
from tessera.storage.v1 import storage_service_pb2 as api

from services.kit.storage import wire

CHUNK_BYTES = 256 << 10
"""Bytes per upload message: 256 KiB was as fast as larger chunks in the benchmark and used less memory
on both sides (docs/benchmarks.md)."""
UPLOAD = "/tessera.storage.v1.StorageService/Upload"
DOWNLOAD = "/tessera.storage.v1.StorageService/Download"


class FastCalls:
    """Upload and Download of a storage service with the zero-copy chunk codec (same RPCs, same bytes on
    the wire). ``Upload`` takes UploadRequest messages or raw chunks (``upload_requests(..., raw=True)``);
    ``Download`` yields the FileInfo message, then chunks as memoryviews."""

    def __init__(self, channel) -> None:
        self.Upload = channel.stream_unary(
            UPLOAD, request_serializer=wire.encode_upload_request, response_deserializer=api.UploadResponse.FromString
        )
        self.Download = channel.unary_stream(
            DOWNLOAD,
            request_serializer=api.DownloadRequest.SerializeToString,
            response_deserializer=wire.decode_download_response,
        )


class ChecksumMismatch(Exception):
    """A downloaded file does not hash to the expected checksum; it was deleted."""


def chunks_of(handle: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The bytes of an open binary file, ``chunk_bytes`` at a time."""
    while block := handle.read(chunk_bytes):
        yield block


def upload_requests(
    metadata: api.UploadMetadata,
    source: BinaryIO | Iterable[bytes],
    chunk_bytes: int = CHUNK_BYTES,
    *,
    raw: bool = False,
) -> Iterator[api.UploadRequest | bytes]:
    """The request stream of an upload: the metadata, then ``source`` (a binary file or chunks), as
    UploadRequest messages, or as raw chunks for :class:`FastCalls` when ``raw``."""
    yield api.UploadRequest(metadata=metadata)
    chunks = chunks_of(source, chunk_bytes) if hasattr(source, "read") else source
    for chunk in chunks:
        if chunk:
            yield chunk if raw else api.UploadRequest(chunk=chunk)


class _Receiver:
    """Writes a download's chunks after the bytes already on disk and hashes the whole file."""

    def __init__(self, path: Path, expected_checksum: str | None, salt: bytes) -> None:
        self.path = path
        self.expected = expected_checksum
        self.salt = salt
        self.hash = hashlib.sha256()
        self.info: res.FileInfo | None = None
        self.offset = 0
        if path.exists():
            with open(path, "rb") as handle:
                for block in chunks_of(handle):
                    self.hash.update(block)
                    self.offset += len(block)
        self._out = open(path, "ab")  # noqa: SIM115 - closed by close()

    def take(self, response: api.DownloadResponse | wire.Chunk) -> None:
        if isinstance(response, wire.Chunk):
            chunk = response
        elif response.WhichOneof("payload") == "info":
            self.info = response.info
            return
        else:
            chunk = response.chunk
        self.hash.update(chunk)
        self._out.write(chunk)

    def close(self, complete: bool) -> res.FileInfo:
        self._out.close()
        if not complete:
            return self.info or res.FileInfo()
        digest = self.hash.copy()
        digest.update(self.salt)
        expected = self.expected or (self.info.checksum if self.info is not None else None)
        if expected and digest.hexdigest() != expected:
            self.path.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{self.path}: sha256 is {digest.hexdigest()}, expected {expected}; deleted")
        return self.info or res.FileInfo()


def _request(request: api.DownloadRequest, offset: int) -> api.DownloadRequest:
    resumed = api.DownloadRequest()
    resumed.CopyFrom(request)
    resumed.offset = offset
    return resumed


def download_to_sync(
    stub, request: api.DownloadRequest, path: str | os.PathLike, *, expected_checksum: str | None = None, salt=b""
) -> res.FileInfo:
    """Download into ``path`` with a sync stub (resuming after what it holds); verify; return the FileInfo.

    Without ``expected_checksum`` the file is verified against the checksum storage announces (which
    includes the salt the uploader gave, so pass the same ``salt``).
    """
    receiver = _Receiver(Path(path), expected_checksum, salt)
    complete = False
    try:
        for response in stub.Download(_request(request, receiver.offset)):
            receiver.take(response)
        complete = True
    finally:
        info = receiver.close(complete)
    return info


async def download_to(
    stub, request: api.DownloadRequest, path: str | os.PathLike, *, expected_checksum: str | None = None, salt=b""
) -> res.FileInfo:
    """:func:`download_to_sync` for an aio stub."""
    receiver = _Receiver(Path(path), expected_checksum, salt)
    complete = False
    try:
        stream: AsyncIterable[api.DownloadResponse] = stub.Download(_request(request, receiver.offset))
        async for response in stream:
            receiver.take(response)
        complete = True
    finally:
        info = receiver.close(complete)
    return info
