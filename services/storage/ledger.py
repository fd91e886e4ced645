"""The ledger's answers to storage's permission questions, over the AssetService gRPC API: the
:class:`~services.storage.domain.permissions.Ledger` protocol. Storage asks with its own organization's
credential (the channel's), in the caller's channel, about the caller (``organization_id``)."""

from __future__ import annotations

import grpc
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.asset.v1 import resources_pb2 as asset_res

from services.kit.errors import PermissionDenied, Unavailable
from services.kit.identity import CHANNEL_HEADER
from services.storage.domain.permissions import Access, Asset

ASSET_KINDS = {
    Asset.FUNCTION: asset_res.ASSET_FUNCTION,
    Asset.DATA_MANAGER: asset_res.ASSET_DATA_MANAGER,
    Asset.MODEL: asset_res.ASSET_MODEL,
}


class LedgerUnavailable(Unavailable):
    """The ledger could not answer a permission check; retry later."""

    default_reason = "LEDGER_UNAVAILABLE"


class GrpcLedger:
    """The ledger behind an AssetService stub; each call waits at most ``timeout`` seconds."""

    def __init__(self, stub: asset_grpc.AssetServiceStub, *, timeout: float = 10.0) -> None:
        self._stub = stub
        self._timeout = timeout

    async def can_process(self, channel: str, asset: Asset, key: str, org_id: str, *, download: bool) -> Access | None:
        request = asset_api.CanProcessRequest(
            asset_kind=ASSET_KINDS[asset], asset_key=key, organization_id=org_id, download=download
        )
        response = await self._ask(channel, self._stub.CanProcess, request)
        return None if response is None else Access(response.allowed, response.disabled)

    async def can_access_logs(self, channel: str, task_key: str, org_id: str) -> bool | None:
        request = asset_api.CanAccessLogsRequest(asset_key=task_key, organization_id=org_id)
        response = await self._ask(channel, self._stub.CanAccessLogs, request)
        return None if response is None else response.allowed

    async def model_disabled(self, channel: str, model_key: str) -> bool | None:
        response = await self._ask(channel, self._stub.GetModel, asset_api.GetModelRequest(key=model_key))
        return None if response is None else not response.model.HasField("address")

    async def _ask(self, channel: str, method, request):
        """The ledger's response, or None when it does not know the asset (NOT_FOUND)."""
        try:
            return await method(request, metadata=((CHANNEL_HEADER, channel),), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                return None
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied(f"the ledger refused the check: {exc.details()}") from None
            message = f"the ledger could not check the permission ({code.name}): {exc.details()}"
            raise LedgerUnavailable(message) from None
