"""Who may read or change a file. Storage decides nothing on its own about peers: it asks the ledger,
through the :class:`Ledger` protocol (``services.storage.ledger`` implements it over gRPC).

* the owner organization (this storage's) reads its own files, and only it uploads and deletes;
* a peer reads a function archive, description or image when it holds the function's **process**
  permission, an opener or data manager description with the data manager's, a model with the
  model's (its **download** permission for a user export), logs with the task's logs permission (the
  function's process permission for a build failure's logs, which are filed under the function's key);
* data samples, and files uploaded without an asset, never leave the organization;
* a user export of a model also needs the channel in ``TESSERA_MODEL_EXPORT_CHANNELS``
  (Substra's ``model_export_enabled``), for the owner's users too;
* a disabled file, or a model the ledger has disabled, is GONE for everyone (REST 410).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple, Protocol

from services.kit.errors import Gone, PermissionDenied
from services.kit.identity import Caller
from services.storage.domain.records import Kind, StoredFile


class Asset(StrEnum):
    """The ledger asset whose permission guards a file."""

    FUNCTION = "function"
    DATA_MANAGER = "data manager"
    MODEL = "model"


GUARDS = {
    Kind.FUNCTION_ARCHIVE: Asset.FUNCTION,
    Kind.FUNCTION_DESCRIPTION: Asset.FUNCTION,
    Kind.FUNCTION_IMAGE: Asset.FUNCTION,
    Kind.OPENER: Asset.DATA_MANAGER,
    Kind.DATA_MANAGER_DESCRIPTION: Asset.DATA_MANAGER,
    Kind.MODEL: Asset.MODEL,
}
"""The asset whose process permission guards each kind served to peers (logs have their own rule, data
samples are never served)."""


class Access(NamedTuple):
    """The ledger's answer about one asset: whether the organization holds the permission asked, and for a
    model whether the ledger disabled it (one question serves a peer's download)."""

    allowed: bool
    disabled: bool = False


class Ledger(Protocol):
    """The ledger's answers storage needs, asked in ``channel`` about organization ``org_id``.

    Each answer is None when the ledger does not know the asset in that channel. An implementation raises
    ``PermissionDenied`` when the ledger refuses the question and ``Unavailable`` when it cannot answer.
    """

    async def can_process(self, channel: str, asset: Asset, key: str, org_id: str, *, download: bool) -> Access | None:
        """Whether ``org_id`` holds the process (``download``: download) permission of the asset, and
        whether the asset is a model the ledger disabled."""

    async def can_access_logs(self, channel: str, task_key: str, org_id: str) -> bool | None:
        """Whether ``org_id`` holds the logs permission of the task."""

    async def model_disabled(self, channel: str, model_key: str) -> bool | None:
        """Whether the ledger disabled the model (its address removed)."""


class Permissions:
    """Decisions on one organization's files."""

    def __init__(self, ledger: Ledger | None, org_id: str, *, export_channels: Iterable[str] = ()) -> None:
        self._ledger = ledger
        self._org = org_id
        self._export_channels = frozenset(export_channels)

    def check_owner(self, caller: Caller, action: str) -> None:
        """Only the owner organization uploads and deletes its files."""
        if caller.org_id != self._org:
            raise PermissionDenied(f"only {self._org} may {action} files in its storage", reason="NOT_OWNER")

    async def check_read(
        self, caller: Caller, stored: StoredFile, *, export: bool = False, describe: bool = False
    ) -> None:
        """Raise unless ``caller`` may read ``stored`` (``describe``: stat only, a disabled file is no refusal)."""
        disabled_model = None  # a peer's permission answer says it too, for a model
        if caller.org_id != self._org:
            access = await self._check_peer(caller, stored, export)
            disabled_model = access.disabled if stored.kind == Kind.MODEL else None
        if export and stored.kind == Kind.MODEL and caller.channel not in self._export_channels:
            raise PermissionDenied(
                f"model export is not enabled in channel {caller.channel!r} (TESSERA_MODEL_EXPORT_CHANNELS)",
                reason="MODEL_EXPORT_DISABLED",
            )
        if describe:
            return
        if stored.disabled:
            raise Gone(f"{stored.label} is not available anymore")
        if disabled_model is None:
            disabled_model = await self.is_disabled_model(caller, stored)
        if disabled_model:
            raise Gone(f"model {stored.asset_key} was disabled")

    async def is_gone(self, caller: Caller, stored: StoredFile) -> bool:
        """Whether a description of ``stored`` says it is disabled: deleted here, or a model the ledger disabled."""
        return stored.disabled or await self.is_disabled_model(caller, stored)

    async def is_disabled_model(self, caller: Caller, stored: StoredFile) -> bool:
        """Whether the ledger says the model of ``stored`` was disabled (False for other kinds, and for a
        model not registered yet: only its owner can get this far)."""
        if stored.kind != Kind.MODEL or not stored.asset_key or self._ledger is None:
            return False
        return bool(await self._ledger.model_disabled(caller.channel, stored.asset_key))

    async def _check_peer(self, caller: Caller, stored: StoredFile, export: bool) -> Access:
        if stored.kind == Kind.DATA_SAMPLE:
            raise PermissionDenied("data samples never leave their organization", reason="DATA_SAMPLE_PRIVATE")
        if not stored.asset_key:
            raise PermissionDenied(f"{stored.label} belongs to no asset: only {self._org} may read it")
        if self._ledger is None:
            raise PermissionDenied(f"{stored.label}: no ledger configured to check {caller.org_id}'s permission")
        access = await self._access(self._ledger, caller, stored, export)
        if access is None:
            raise PermissionDenied(f"{stored.label} is not registered in channel {caller.channel!r}")
        if not access.allowed:
            permission = "logs" if stored.kind == Kind.LOGS else ("download" if export else "process")
            raise PermissionDenied(f"{caller.org_id} does not hold the {permission} permission of {stored.label}")
        return access

    @staticmethod
    async def _access(ledger: Ledger, caller: Caller, stored: StoredFile, export: bool) -> Access | None:
        if stored.kind == Kind.LOGS:
            allowed = await ledger.can_access_logs(caller.channel, stored.asset_key, caller.org_id)
            if allowed is not None:
                return Access(allowed)
            # Not a task: the logs of a function's build, guarded by the function's process permission.
            asset = Asset.FUNCTION
        else:
            asset = GUARDS[stored.kind]
        download = export and stored.kind == Kind.MODEL
        return await ledger.can_process(caller.channel, asset, stored.asset_key, caller.org_id, download=download)
