"""An in-memory StorageService for the gateway tests: the fallback when ``services/storage`` has no
working ``Upload``, or when ``TESSERA_TEST_FAKE_STORAGE=1`` asks for it (the conftest prefers the real service).

It follows ``storage_service.proto``: an upload is metadata then chunks, checked against the
expected size and checksum; a download is the FileInfo then chunks; a disabled file fails with
FAILED_PRECONDITION. Permissions are not checked (the gateway tests call their own storage).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from google.protobuf import timestamp_pb2
from tessera.storage.v1 import storage_pb2, storage_service_pb2, storage_service_pb2_grpc

from services.kit.errors import Gone, InvalidArgument, NotFound
from services.kit.identity import current_caller

CHUNK = 64 * 1024


class FakeStorage(storage_service_pb2_grpc.StorageServiceServicer):
    """Files in a dict keyed by (kind, asset key)."""

    def __init__(self, org_id: str) -> None:
        self.org_id = org_id
        self.files: dict[tuple[int, str], tuple[storage_pb2.FileInfo, bytes]] = {}

    def _key(self, request) -> tuple[int, str]:
        if request.WhichOneof("file") == "ref":
            return request.ref.kind, request.ref.asset_key
        for key, (info, _) in self.files.items():
            if info.file_id == request.file_id:
                return key
        raise NotFound("file not found")

    async def Upload(self, request_iterator, context):
        current_caller()
        metadata = None
        digest = hashlib.sha256()
        data = bytearray()
        async for message in request_iterator:
            if metadata is None:
                if message.WhichOneof("payload") != "metadata":
                    raise InvalidArgument.on("metadata", "the first message must be the metadata")
                metadata = message.metadata
                continue
            digest.update(message.chunk)
            data += message.chunk
        if metadata is None or metadata.kind == storage_pb2.FILE_KIND_UNSPECIFIED:
            raise InvalidArgument.on("metadata.kind", "is required")
        digest.update(metadata.checksum_salt.encode())
        checksum = digest.hexdigest()
        if metadata.HasField("expected_size") and metadata.expected_size != len(data):
            raise InvalidArgument.on("expected_size", "does not match")
        if metadata.HasField("expected_checksum") and metadata.expected_checksum != checksum:
            raise InvalidArgument.on("expected_checksum", "does not match")
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(dt.datetime.now(dt.UTC))
        info = storage_pb2.FileInfo(
            file_id=uuid.uuid4().hex,
            kind=metadata.kind,
            asset_key=metadata.asset_key,
            size=len(data),
            checksum=checksum,
            owner=self.org_id,
            creation_date=stamp,
            filename=metadata.filename,
        )
        self.files[(metadata.kind, metadata.asset_key)] = (info, bytes(data))
        return storage_service_pb2.UploadResponse(file=info)

    async def Download(self, request, context):
        current_caller()
        key = self._key(request)
        if key not in self.files:
            raise NotFound("file not found")
        info, data = self.files[key]
        if info.disabled:
            raise Gone("file disabled")
        yield storage_service_pb2.DownloadResponse(info=info)
        for start in range(request.offset, len(data), CHUNK):
            yield storage_service_pb2.DownloadResponse(chunk=data[start : start + CHUNK])

    async def StatFile(self, request, context):
        key = self._key(request)
        if key not in self.files:
            raise NotFound("file not found")
        return storage_service_pb2.StatFileResponse(file=self.files[key][0])

    async def DeleteFile(self, request, context):
        key = self._key(request)
        if key not in self.files:
            raise NotFound("file not found")
        info, _ = self.files[key]
        info.disabled = True
        self.files[key] = (info, b"")
        return storage_service_pb2.DeleteFileResponse(file=info)
