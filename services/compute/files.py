"""Files for compute: fetched from this organization's or a peer's storage into the cache, outputs
and logs stored in this organization's storage.

Downloads stream to a temporary file (with the kit's storage client), are checked against the
ledger's checksum (salted with the task key for models, domain §1.9), then renamed into place;
nothing half-written is ever used. The cache (:mod:`services.compute.domain.places`) keeps each
input once, whatever the number of tasks reading it; one lock per cached path makes concurrent
tasks wait for the first one's download. Failed calls raise the kit's domain errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import uuid
from pathlib import Path

import grpc
from tessera.storage.v1 import storage_pb2, storage_service_pb2, storage_service_pb2_grpc

from services.compute.domain.inputs import Placement
from services.compute.domain.places import Places
from services.compute.remote import translated
from services.kit import archives, client, trees
from services.kit.errors import FailedPrecondition
from services.kit.identity import OrgCredentials
from services.kit.storage.client import ChecksumMismatch, download_to, upload_requests

READY = ".ready"  # marks an unpacked data sample as complete
SHA256 = re.compile(r"[0-9a-f]{64}")


def _ahead_path(placement: Placement) -> Path | None:
    """Where a file fetched ahead of its task's start waits, named by the checksum it was verified against
    (None without a well-formed sha256)."""
    if not SHA256.fullmatch(placement.checksum):
        return None
    return placement.path.with_name(f".{placement.path.name}.{placement.checksum}.ahead")


class Files:
    """Storage clients for every organization this one talks to, and the cache they fill."""

    def __init__(self, creds: OrgCredentials, peers: dict[str, str], places: Places) -> None:
        self._creds = creds
        self._peers = peers
        self._places = places
        places.cache.mkdir(parents=True, exist_ok=True)
        self._tidy_models()
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}
        self._locks: dict[Path, asyncio.Lock] = {}

    def _tidy_models(self) -> None:
        """At start: remove what an interrupted :meth:`forget_plan` left, and models cached before they were
        kept per plan (loose files in the models folder: nothing would ever remove them)."""
        models = self._places.cache / "models"
        if not models.is_dir():
            return
        for entry in os.scandir(models):
            if entry.name.endswith(".gone") and entry.is_dir(follow_symlinks=False):
                trees.remove_tree(entry.path)
            elif not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)

    def _stub(self, org: str, channel: str) -> storage_service_pb2_grpc.StorageServiceStub:
        """A client of ``org``'s storage, called as this organization acting in ``channel``."""
        if org not in self._peers:
            raise FailedPrecondition(f"no storage address known for organization {org}", reason="UNKNOWN_PEER")
        key = (org, channel)
        if key not in self._channels:
            creds = dataclasses.replace(self._creds, channel=channel)
            self._channels[key] = client.channel(self._peers[org], creds)
        return storage_service_pb2_grpc.StorageServiceStub(self._channels[key])

    async def close(self) -> None:
        """Close every channel."""
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    def lock(self, path: Path) -> asyncio.Lock:
        """The lock of one cached path."""
        return self._locks.setdefault(path, asyncio.Lock())

    async def download(
        self,
        channel: str,
        owner: str,
        kind: int,
        asset_key: str,
        dest: Path,
        *,
        checksum: str = "",
        salt: str = "",
    ) -> Path:
        """Fetch a file from ``owner``'s storage into ``dest`` (acting in ``channel``), verifying ``checksum``
        if given."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        request = storage_service_pb2.DownloadRequest(ref=storage_pb2.FileRef(kind=kind, asset_key=asset_key))
        try:
            with translated():
                await download_to(
                    self._stub(owner, channel), request, partial, expected_checksum=checksum or None, salt=salt.encode()
                )
            partial.replace(dest)
        except ChecksumMismatch as exc:
            raise FailedPrecondition(
                f"checksum mismatch for {asset_key} from {owner}", reason="CHECKSUM_MISMATCH"
            ) from exc
        finally:
            partial.unlink(missing_ok=True)
        return dest

    async def cached(self, channel: str, placement: Placement) -> Path:
        """An input in the cache, fetched on first use; the path the task reads. ``placement``'s checksum is the
        ledger's: a file fetched ahead under that checksum (:meth:`fetch_ahead`) is taken instead of a download."""
        if placement.kind == storage_pb2.FILE_KIND_DATA_SAMPLE:
            return await self._data_sample(channel, placement)
        async with self.lock(placement.path):
            ahead = _ahead_path(placement)
            if not placement.path.exists() and ahead is not None and ahead.exists():
                ahead.replace(placement.path)
            if not placement.path.exists():
                await self._fetch(channel, placement, placement.path)
        return placement.path

    async def fetch_ahead(self, channel: str, placement: Placement) -> bool:
        """Fetch a file a hint names (a work message, not the ledger) beside its cache path, under the hint's
        checksum, which the download verified: :meth:`cached` takes it only if the ledger gives that checksum, so
        a wrong hint costs a download and never becomes a task's input. False when there was nothing to fetch."""
        ahead = _ahead_path(placement)
        if ahead is None:
            return False
        async with self.lock(placement.path):
            if placement.path.exists() or ahead.exists():
                return False
            await self._fetch(channel, placement, ahead)
        return True

    async def _fetch(self, channel: str, placement: Placement, dest: Path) -> Path:
        """:meth:`download` of ``placement``'s file into ``dest``, verified against its checksum."""
        return await self.download(
            channel,
            placement.owner,
            placement.kind,
            placement.asset_key,
            dest,
            checksum=placement.checksum,
            salt=placement.salt,
        )

    async def _data_sample(self, channel: str, placement: Placement) -> Path:
        """A data sample's archive, fetched and unpacked into its own folder once."""
        folder = placement.path.parent
        async with self.lock(folder):
            if (folder / READY).exists():
                return placement.path
            archive = folder.parent / f"{placement.asset_key}.archive"
            await self.download(channel, placement.owner, placement.kind, placement.asset_key, archive)
            if folder.exists() and not trees.remove_tree(folder):
                raise OSError(f"could not remove {folder}")
            folder.mkdir(parents=True)
            await asyncio.to_thread(archives.extract, archive, placement.path)
            archive.unlink(missing_ok=True)
            (folder / READY).touch()
        return placement.path

    def keep_model(self, plan_key: str, model_key: str, path: Path) -> None:
        """Put a model this organization just produced for a task of ``plan_key`` in the cache (its bytes were
        hashed on the way out): a task of the same worker and plan consuming it does not fetch it back."""
        dest = self._places.model(plan_key, model_key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{model_key}.{uuid.uuid4().hex}.part")
        try:
            os.link(path, partial)
        except OSError:
            shutil.copyfile(path, partial)
        partial.replace(dest)

    async def upload(
        self, channel: str, path: Path, kind: int, asset_key: str, *, salt: str = "", filename: str = ""
    ) -> storage_pb2.FileInfo:
        """Store a local file in this organization's storage; returns its record."""
        metadata = storage_service_pb2.UploadMetadata(
            kind=kind,
            asset_key=asset_key,
            expected_size=path.stat().st_size,
            filename=filename or path.name,
            checksum_salt=salt,
        )
        with open(path, "rb") as stream, translated():
            reply = await self._stub(self._creds.org_id, channel).Upload(upload_requests(metadata, stream))
        return reply.file

    async def forget_plan(self, plan_key: str) -> None:
        """Remove the models cached for an ended plan's tasks (storage keeps them: a later reader fetches them
        again). The folder is renamed away first, so nothing reads a half-deleted model under its path."""
        try:
            uuid.UUID(plan_key)  # a ledger key; anything else never names a folder to delete
        except ValueError:
            return
        folder = self._places.plan_models(plan_key)
        doomed = folder.with_name(f".{plan_key}.{uuid.uuid4().hex}.gone")
        try:
            folder.rename(doomed)
        except FileNotFoundError:
            return
        await asyncio.to_thread(trees.remove_tree, doomed)
        for path in [p for p in self._locks if p.parent == folder]:
            del self._locks[path]
