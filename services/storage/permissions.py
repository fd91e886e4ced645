"""Who may read a file: storage decides nothing on its own, it asks the ledger.

The caller's organization and channel come from its credential (``current_caller()``). Storage calls
the ledger with its own organization's credential, in the caller's channel, and asks about the
caller (``organization_id`` names that third party):

* the owner organization (this storage's) reads its own files;
* a peer reads a function archive, description or image when it holds the function's **process**
  permission, an opener or data manager description with the data manager's, a model with the
  model's (its **download** permission for a user export), logs with ``CanAccessLogs`` (the
  function's process permission for a build failure's logs);
* data samples, and files uploaded without an asset, never leave the organization;
* a user export of a model also needs the channel in ``TESSERA_MODEL_EXPORT_CHANNELS``
  (Substra's ``model_export_enabled``), for the owner's users too;
* a disabled file, or a model the ledger has disabled, is GONE for everyone (REST 410).
"""

from __future__ import annotations

import grpc
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.asset.v1 import resources_pb2 as asset_res
from tessera.storage.v1 import storage_pb2 as res

from services.kit.errors import Gone, PermissionDenied, Unavailable
from services.kit.identity import CHANNEL_HEADER, Caller
from services.storage.files import kind_name
from services.storage.store import StoredFile

_ASSET_KIND = {
    kind_name(res.FILE_KIND_FUNCTION_ARCHIVE): asset_res.ASSET_FUNCTION,
    kind_name(res.FILE_KIND_FUNCTION_DESCRIPTION): asset_res.ASSET_FUNCTION,
    kind_name(res.FILE_KIND_FUNCTION_IMAGE): asset_res.ASSET_FUNCTION,
    kind_name(res.FILE_KIND_OPENER): asset_res.ASSET_DATA_MANAGER,
    kind_name(res.FILE_KIND_DATA_MANAGER_DESCRIPTION): asset_res.ASSET_DATA_MANAGER,
    kind_name(res.FILE_KIND_MODEL): asset_res.ASSET_MODEL,
}
MODEL = kind_name(res.FILE_KIND_MODEL)
LOGS = kind_name(res.FILE_KIND_LOGS)
DATA_SAMPLE = kind_name(res.FILE_KIND_DATA_SAMPLE)


class LedgerUnavailable(Unavailable):
    """The ledger could not answer a permission check; retry later."""

    default_reason = "LEDGER_UNAVAILABLE"


class _Unknown(Exception):
    """The ledger does not know the asset (in the caller's channel)."""


class LedgerPermissions:
    """Read permissions of one organization's files, from the ledger's answers."""

    def __init__(
        self,
        ledger: asset_grpc.AssetServiceStub | None,
        org_id: str,
        *,
        timeout: float = 10.0,
        export_channels: tuple[str, ...] = (),
    ) -> None:
        self._ledger = ledger
        self._org = org_id
        self._timeout = timeout
        self._export_channels = frozenset(export_channels)

    async def check_read(self, caller: Caller, stored: StoredFile, *, export: bool = False, describe: bool = False):
        """Raise unless ``caller`` may read ``stored`` (``describe``: stat only, a disabled file is no refusal)."""
        if caller.org_id != self._org:
            await self._check_peer(caller, stored, export)
        if export and stored.kind == MODEL and caller.channel not in self._export_channels:
            raise PermissionDenied(
                f"model export is not enabled in channel {caller.channel!r} (TESSERA_MODEL_EXPORT_CHANNELS)",
                reason="MODEL_EXPORT_DISABLED",
            )
        if describe:
            return
        if stored.disabled:
            raise Gone(f"{stored.kind} of asset {stored.asset_key or stored.file_id} is not available anymore")
        if await self.is_disabled_model(caller, stored):
            raise Gone(f"model {stored.asset_key} was disabled")

    async def is_disabled_model(self, caller: Caller, stored: StoredFile) -> bool:
        """Whether the ledger says the model of ``stored`` was disabled (False for other kinds, and for a
        model not registered yet: only its owner can get this far)."""
        if stored.kind != MODEL or not stored.asset_key or self._ledger is None:
            return False
        request = asset_api.GetModelRequest(key=stored.asset_key)
        try:
            response = await self._ask(caller, self._ledger.GetModel, request)
        except _Unknown:
            return False
        return not response.model.HasField("address")

    async def _check_peer(self, caller: Caller, stored: StoredFile, export: bool) -> None:
        what = f"{stored.kind} of asset {stored.asset_key or stored.file_id}"
        if stored.kind == DATA_SAMPLE:
            raise PermissionDenied("data samples never leave their organization", reason="DATA_SAMPLE_PRIVATE")
        if not stored.asset_key:
            raise PermissionDenied(f"{what} belongs to no asset: only {self._org} may read it")
        if self._ledger is None:
            raise PermissionDenied(f"{what}: no ledger configured to check {caller.org_id}'s permission")
        try:
            allowed = await self._allowed(caller, stored, export)
        except _Unknown:
            raise PermissionDenied(f"{what} is not registered in channel {caller.channel!r}") from None
        if not allowed:
            permission = "logs" if stored.kind == LOGS else ("download" if export else "process")
            raise PermissionDenied(f"{caller.org_id} does not hold the {permission} permission of {what}")

    async def _allowed(self, caller: Caller, stored: StoredFile, export: bool) -> bool:
        ledger = self._ledger
        if stored.kind == LOGS:
            try:
                request = asset_api.CanAccessLogsRequest(asset_key=stored.asset_key, organization_id=caller.org_id)
                return (await self._ask(caller, ledger.CanAccessLogs, request)).allowed
            except _Unknown:
                # Not a task: the logs of a function's build, guarded by the function's process permission.
                asset_kind = asset_res.ASSET_FUNCTION
        else:
            asset_kind = _ASSET_KIND[stored.kind]
        request = asset_api.CanProcessRequest(
            asset_kind=asset_kind,
            asset_key=stored.asset_key,
            organization_id=caller.org_id,
            download=export and stored.kind == MODEL,
        )
        return (await self._ask(caller, ledger.CanProcess, request)).allowed

    async def _ask(self, caller: Caller, method, request):
        try:
            return await method(request, metadata=((CHANNEL_HEADER, caller.channel),), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise _Unknown from None
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied(f"the ledger refused the check: {exc.details()}") from None
            message = f"the ledger could not check the permission ({code.name}): {exc.details()}"
            raise LedgerUnavailable(message) from None
