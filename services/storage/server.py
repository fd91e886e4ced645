"""gRPC handlers of storage: protobuf in, a call to :mod:`~services.storage.files` and the domain's
:class:`~services.storage.domain.permissions.Permissions`, protobuf out. The caller's organization and
channel come from the interceptor (its credential).

File chunks travel through the zero-copy codec of :mod:`~services.kit.storage.wire`: :func:`add_to_server`
registers the service like the generated ``add_StorageServiceServicer_to_server``, with that codec on
Upload's requests and Download's responses.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from google.protobuf import timestamp_pb2
from tessera.storage.v1 import storage_pb2 as res
from tessera.storage.v1 import storage_service_pb2 as api
from tessera.storage.v1 import storage_service_pb2_grpc as api_grpc

from services.kit.errors import InvalidArgument
from services.kit.identity import current_caller
from services.kit.storage import addresses, wire
from services.storage.domain.permissions import Permissions
from services.storage.domain.records import Kind, StoredFile, check_download
from services.storage.domain.uploads import UploadRequest
from services.storage.files import Files
from services.storage.streaming import read_chunks


def kind_of(value: int) -> Kind | None:
    """The domain's kind of a FileKind value; None for FILE_KIND_UNSPECIFIED or a value this build does not know."""
    if value == res.FILE_KIND_UNSPECIFIED or value not in res.FileKind.values():
        return None
    return Kind(res.FileKind.Name(value))


def _optional(message, field: str):
    return getattr(message, field) if message.HasField(field) else None


def upload_request(meta: api.UploadMetadata) -> UploadRequest:
    """The domain's upload request of an UploadMetadata."""
    return UploadRequest(
        kind=kind_of(meta.kind),
        asset_key=_optional(meta, "asset_key"),
        expected_size=_optional(meta, "expected_size"),
        expected_checksum=_optional(meta, "expected_checksum"),
        filename=meta.filename,
        checksum_salt=meta.checksum_salt,
    )


async def _chunks(messages: AsyncIterator) -> AsyncIterator[bytes]:
    """The bytes of an upload's messages after the first (zero-copy chunks, or generated messages)."""
    async for message in messages:
        if isinstance(message, wire.Chunk):
            yield message
        elif message.WhichOneof("payload") == "chunk":
            yield message.chunk
        else:
            raise InvalidArgument.on("chunk", "every message after the first must carry a chunk")


class StorageService(api_grpc.StorageServiceServicer):
    """Files of one organization."""

    def __init__(self, files: Files, permissions: Permissions, *, chunk_bytes: int, public_url: str) -> None:
        self._files = files
        self._permissions = permissions
        self._chunk_bytes = chunk_bytes
        self._public_url = public_url

    def _info(self, stored: StoredFile, *, disabled: bool | None = None) -> res.FileInfo:
        created = timestamp_pb2.Timestamp()
        created.FromDatetime(stored.creation_date)
        kind = res.FileKind.Value(stored.kind)
        return res.FileInfo(
            file_id=stored.file_id,
            kind=kind,
            asset_key=stored.asset_key,
            size=stored.size,
            checksum=stored.checksum,
            owner=stored.owner,
            creation_date=created,
            disabled=stored.disabled if disabled is None else disabled,
            filename=stored.filename,
            storage_address=addresses.storage_address(self._public_url, kind, stored.asset_key),
            directory_checksum=stored.directory_checksum,
        )

    async def _find(self, request) -> StoredFile:
        which = request.WhichOneof("file")
        if which == "file_id":
            return await self._files.find(request.file_id)
        if which == "ref":
            return await self._files.find_by_ref(kind_of(request.ref.kind), request.ref.asset_key)
        raise InvalidArgument.on("file", "name the file by file_id or ref")

    async def Upload(self, request_iterator, context):
        self._permissions.check_owner(current_caller(), "upload")
        messages = request_iterator.__aiter__()
        try:
            first = await messages.__anext__()
        except StopAsyncIteration:
            raise InvalidArgument.on("metadata", "the upload stream is empty") from None
        if isinstance(first, wire.Chunk) or first.WhichOneof("payload") != "metadata":
            raise InvalidArgument.on("metadata", "the first message of an upload must carry its metadata")
        async with contextlib.aclosing(_chunks(messages)) as chunks:
            stored = await self._files.upload(upload_request(first.metadata), chunks)
        return api.UploadResponse(file=self._info(stored))

    async def Download(self, request, context):
        stored = await self._find(request)
        await self._permissions.check_read(current_caller(), stored, export=request.export)
        check_download(stored, offset=request.offset, expected_checksum=_optional(request, "expected_checksum"))
        reader = await self._files.open(stored)
        try:
            yield api.DownloadResponse(info=self._info(stored))
            async for chunk in read_chunks(reader, request.offset, self._chunk_bytes):
                yield chunk  # encoded by wire.encode_download_response
        finally:
            reader.close()

    async def StatFile(self, request, context):
        caller = current_caller()
        stored = await self._find(request)
        await self._permissions.check_read(caller, stored, describe=True)
        return api.StatFileResponse(file=self._info(stored, disabled=await self._permissions.is_gone(caller, stored)))

    async def DeleteFile(self, request, context):
        self._permissions.check_owner(current_caller(), "delete")
        stored = await self._find(request)
        return api.DeleteFileResponse(file=self._info(await self._files.delete(stored)))


SERVICE_NAME = api.DESCRIPTOR.services_by_name["StorageService"].full_name


def add_to_server(servicer: StorageService, server: grpc.aio.Server) -> None:
    """Register ``servicer`` with the chunk codec on Upload and Download (see the module docstring)."""
    handlers = {
        "Upload": grpc.stream_unary_rpc_method_handler(
            servicer.Upload,
            request_deserializer=wire.decode_upload_request,
            response_serializer=api.UploadResponse.SerializeToString,
        ),
        "Download": grpc.unary_stream_rpc_method_handler(
            servicer.Download,
            request_deserializer=api.DownloadRequest.FromString,
            response_serializer=wire.encode_download_response,
        ),
        "StatFile": grpc.unary_unary_rpc_method_handler(
            servicer.StatFile,
            request_deserializer=api.StatFileRequest.FromString,
            response_serializer=api.StatFileResponse.SerializeToString,
        ),
        "DeleteFile": grpc.unary_unary_rpc_method_handler(
            servicer.DeleteFile,
            request_deserializer=api.DeleteFileRequest.FromString,
            response_serializer=api.DeleteFileResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
