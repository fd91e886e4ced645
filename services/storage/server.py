"""gRPC handlers of storage: protobuf in, :mod:`~services.storage.files` and the ledger's permissions,
protobuf out. The caller's organization and channel come from the interceptor (its credential).

File chunks travel through the zero-copy codec of :mod:`~services.kit.storage.wire`: :func:`add_to_server`
registers the service like the generated ``add_StorageServiceServicer_to_server``, with that codec on
Upload's requests and Download's responses.
"""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2
from tessera.storage.v1 import storage_pb2 as res
from tessera.storage.v1 import storage_service_pb2 as api
from tessera.storage.v1 import storage_service_pb2_grpc as api_grpc

from services.kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.kit.identity import Caller, current_caller
from services.kit.storage import addresses, wire
from services.storage.files import Files, kind_value
from services.storage.permissions import LedgerPermissions
from services.storage.store import StoredFile


class StorageService(api_grpc.StorageServiceServicer):
    """Files of one organization."""

    def __init__(self, files: Files, permissions: LedgerPermissions, *, chunk_bytes: int, public_url: str) -> None:
        self._files = files
        self._permissions = permissions
        self._chunk_bytes = chunk_bytes
        self._public_url = public_url

    def _info(self, stored: StoredFile, *, disabled: bool | None = None) -> res.FileInfo:
        created = timestamp_pb2.Timestamp()
        created.FromDatetime(stored.creation_date)
        kind = kind_value(stored.kind)
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

    def _owner_only(self, caller: Caller, action: str) -> None:
        if caller.org_id != self._files.org_id:
            raise PermissionDenied(f"only {self._files.org_id} may {action} files in its storage", reason="NOT_OWNER")

    async def _find(self, request) -> StoredFile:
        which = request.WhichOneof("file")
        if which == "file_id":
            return await self._files.find(file_id=request.file_id)
        if which == "ref":
            return await self._files.find(kind=request.ref.kind, asset_key=request.ref.asset_key)
        raise InvalidArgument.on("file", "name the file by file_id or ref")

    async def Upload(self, request_iterator, context):
        self._owner_only(current_caller(), "upload")
        messages = request_iterator.__aiter__()
        try:
            first = await messages.__anext__()
        except StopAsyncIteration:
            raise InvalidArgument.on("metadata", "the upload stream is empty") from None
        if isinstance(first, wire.Chunk) or first.WhichOneof("payload") != "metadata":
            raise InvalidArgument.on("metadata", "the first message of an upload must carry its metadata")
        upload = await self._files.begin_upload(first.metadata)
        try:
            async for message in messages:
                if not isinstance(message, wire.Chunk):
                    if message.WhichOneof("payload") != "chunk":
                        raise InvalidArgument.on("chunk", "every message after the first must carry a chunk")
                    message = message.chunk
                await upload.write(message)
            stored = await upload.finish()
        except BaseException:
            upload.abort()
            raise
        return api.UploadResponse(file=self._info(stored))

    async def Download(self, request, context):
        caller = current_caller()
        stored = await self._find(request)
        await self._permissions.check_read(caller, stored, export=request.export)
        if request.HasField("expected_checksum") and request.expected_checksum != stored.checksum:
            raise FailedPrecondition(
                f"the file's checksum is {stored.checksum}, not {request.expected_checksum}",
                reason="CHECKSUM_MISMATCH",
            )
        if not 0 <= request.offset <= stored.size:
            raise InvalidArgument.on("offset", f"must be between 0 and the file's size ({stored.size})")
        reader = await self._files.open(stored)
        try:
            yield api.DownloadResponse(info=self._info(stored))
            async for chunk in self._files.chunks(reader, request.offset, self._chunk_bytes):
                yield chunk  # encoded by wire.encode_download_response
        finally:
            reader.close()

    async def StatFile(self, request, context):
        caller = current_caller()
        stored = await self._find(request)
        await self._permissions.check_read(caller, stored, describe=True)
        disabled = stored.disabled or await self._permissions.is_disabled_model(caller, stored)
        return api.StatFileResponse(file=self._info(stored, disabled=disabled))

    async def DeleteFile(self, request, context):
        self._owner_only(current_caller(), "delete")
        stored = await self._find(request)
        return api.DeleteFileResponse(file=self._info(await self._files.delete(stored)))


SERVICE_NAME = "tessera.storage.v1.StorageService"


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
