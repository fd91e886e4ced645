"""File downloads (contract §5.2), streamed from storage as they arrive.

Every download first reads the asset from the ledger as the user's organization (NOT_FOUND when it
is not visible on the channel), checks the permission there (process, or download for a model
export), then streams ``StorageService.Download`` by asset and kind. A model also needs its
channel's model export enabled (Substra's ``model_export_enabled``), and answers 410 once disabled.
Task logs come from the task's failure report (its function's after a failed build), under the logs
permission.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res
from tessera.storage.v1 import storage_pb2, storage_service_pb2

from gateway.errors import HttpError
from gateway.router import Handler
from gateway.upstreams import Principal, Upstreams
from services.kit.storage import addresses

OCTET_STREAM = "application/octet-stream"
TEXT = "text/plain; charset=utf-8"


class Downloads:
    """The download endpoints."""

    def __init__(self, upstreams: Upstreams, model_export_channels: tuple[str, ...]) -> None:
        self._upstreams = upstreams
        self._export_channels = set(model_export_channels)

    def files(self) -> dict[int, tuple[str, Handler]]:
        """The endpoint of each kind of file served here (its route is the kind's in the kit's ``ROUTES``),
        with its operation name."""
        return {
            storage_pb2.FILE_KIND_FUNCTION_ARCHIVE: ("download_function", self.function_file),
            storage_pb2.FILE_KIND_FUNCTION_DESCRIPTION: ("describe_function", self.function_description),
            storage_pb2.FILE_KIND_OPENER: ("download_opener", self.opener),
            storage_pb2.FILE_KIND_DATA_MANAGER_DESCRIPTION: ("describe_dataset", self.data_manager_description),
            storage_pb2.FILE_KIND_MODEL: ("download_model", self.model_file),
            storage_pb2.FILE_KIND_LOGS: ("download_logs", self.logs_file),
        }

    def export_enabled(self, channel: str) -> bool:
        """Whether users of ``channel`` may download models."""
        return channel in self._export_channels

    async def _asset(self, principal: Principal, method: str, request):
        return await getattr(self._upstreams.asset(), method)(
            request, metadata=principal.metadata(), timeout=self._upstreams.call_timeout
        )

    async def _check(self, principal: Principal, kind: int, key: str, *, download: bool = False) -> None:
        reply = await self._asset(
            principal,
            "CanProcess",
            api.CanProcessRequest(
                asset_kind=kind, asset_key=key, organization_id=self._upstreams.org_id, download=download
            ),
        )
        if not reply.allowed:
            raise HttpError(403, f"{self._upstreams.org_id} is not authorized to download this asset")

    async def _stream(
        self,
        principal: Principal,
        owner: str,
        ref: storage_pb2.FileRef,
        filename: str,
        content_type: str,
        export: bool = False,
        keep_name: bool = False,
    ) -> Response:
        """Stream one file; its stored name is used unless ``keep_name`` (Substra's fixed names)."""
        call = self._upstreams.storage_of(owner).Download(
            storage_service_pb2.DownloadRequest(ref=ref, export=export),
            metadata=principal.metadata(),
            timeout=self._upstreams.call_timeout,
        )
        messages = call.__aiter__()
        try:
            first = await messages.__anext__()
        except StopAsyncIteration:
            raise HttpError(502, "storage sent no file description") from None
        info = first.info
        if info.disabled:
            call.cancel()
            raise HttpError(410, "Asset not available anymore")

        async def body() -> AsyncIterator[bytes]:
            try:
                async for message in messages:
                    if message.chunk:
                        yield message.chunk
            finally:
                call.cancel()

        name = (filename if keep_name else info.filename or filename).replace('"', "")
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if info.size:
            headers["Content-Length"] = str(info.size)
        return StreamingResponse(body(), media_type=content_type, headers=headers)

    # ----------------------------------------------------------------------------------- endpoints
    async def function_file(self, request: Request, principal: Principal, params: dict) -> Response:
        """``GET /function/{key}/file/``: the archive."""
        return await self._function(principal, params["key"], storage_pb2.FILE_KIND_FUNCTION_ARCHIVE, "function.tar.gz")

    async def function_description(self, request: Request, principal: Principal, params: dict) -> Response:
        """``GET /function/{key}/description/``."""
        kind = storage_pb2.FILE_KIND_FUNCTION_DESCRIPTION
        return await self._function(principal, params["key"], kind, "description.md")

    async def _function(self, principal: Principal, key: str, kind: int, filename: str) -> Response:
        function = (await self._asset(principal, "GetFunction", api.GetFunctionRequest(key=key))).function
        await self._check(principal, res.ASSET_FUNCTION, function.key)
        ref = storage_pb2.FileRef(kind=kind, asset_key=function.key)
        return await self._stream(principal, function.owner, ref, filename, OCTET_STREAM)

    async def opener(self, request: Request, principal: Principal, params: dict) -> Response:
        """``GET /data_manager/{key}/opener/``."""
        return await self._data_manager(principal, params["key"], storage_pb2.FILE_KIND_OPENER, "opener.py")

    async def data_manager_description(self, request: Request, principal: Principal, params: dict) -> Response:
        """``GET /data_manager/{key}/description/``."""
        kind = storage_pb2.FILE_KIND_DATA_MANAGER_DESCRIPTION
        return await self._data_manager(principal, params["key"], kind, "description.md")

    async def _data_manager(self, principal: Principal, key: str, kind: int, filename: str) -> Response:
        manager = (await self._asset(principal, "GetDataManager", api.GetDataManagerRequest(key=key))).data_manager
        await self._check(principal, res.ASSET_DATA_MANAGER, manager.key)
        ref = storage_pb2.FileRef(kind=kind, asset_key=manager.key)
        return await self._stream(principal, manager.owner, ref, filename, OCTET_STREAM)

    async def model_file(self, request: Request, principal: Principal, params: dict) -> Response:
        """``GET /model/{key}/file/``: a model export (channel setting and download permission)."""
        if not self.export_enabled(principal.channel):
            raise HttpError(403, f"model export is disabled on channel {principal.channel}")
        model = (await self._asset(principal, "GetModel", api.GetModelRequest(key=params["key"]))).model
        if not model.HasField("address"):
            raise HttpError(410, "Asset not available anymore")
        await self._check(principal, res.ASSET_MODEL, model.key, download=True)
        ref = storage_pb2.FileRef(kind=storage_pb2.FILE_KIND_MODEL, asset_key=model.key)
        name = f"model_{model.key}"
        return await self._stream(principal, model.owner, ref, name, OCTET_STREAM, export=True, keep_name=True)

    async def task_logs(self, request: Request, principal: Principal, params: dict) -> Response:
        """``GET /task/{key}/logs/``: the logs of a failed task (or of its function's failed build)."""
        task = (await self._asset(principal, "GetTask", api.GetTaskRequest(key=params["key"]))).task
        # The task's own failure report, or its function's when the build failed (the address says which).
        ref = addresses.parse(task.logs_address.storage_address) if task.HasField("logs_address") else None
        report_key = ref.asset_key if ref is not None and ref.kind == storage_pb2.FILE_KIND_LOGS else task.key
        return await self._logs(principal, report_key, f"tuple_logs_{task.key}.txt")

    async def logs_file(self, request: Request, principal: Principal, params: dict) -> Response:
        """``GET /logs/{key}/file/``: the logs of a failure report by its asset key."""
        return await self._logs(principal, params["key"], f"logs_{params['key']}.txt")

    async def _logs(self, principal: Principal, asset_key: str, filename: str) -> Response:
        try:
            reply = await self._asset(principal, "GetFailureReport", api.GetFailureReportRequest(asset_key=asset_key))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise HttpError(410, "Logs not available") from None
            raise
        report = reply.failure_report
        if not report.HasField("logs_address"):
            raise HttpError(410, "Logs not available")
        allowed = await self._asset(
            principal,
            "CanAccessLogs",
            api.CanAccessLogsRequest(asset_key=asset_key, organization_id=self._upstreams.org_id),
        )
        if not allowed.allowed:
            raise HttpError(403, f"{self._upstreams.org_id} is not authorized to read these logs")
        ref = storage_pb2.FileRef(kind=storage_pb2.FILE_KIND_LOGS, asset_key=report.asset_key)
        return await self._stream(principal, report.owner, ref, filename, TEXT, keep_name=True)
