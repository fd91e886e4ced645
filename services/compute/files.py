"""Files for compute: download from this organization's or a peer's storage, upload outputs.

Downloads stream to a temporary file (with storage's own client), are checked against the
ledger's checksum (salted with the task key for models, domain §1.9), then renamed into place;
nothing half-written is ever used.
Models are cached by key, so a model consumed by many tasks is fetched once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import uuid
from pathlib import Path

import grpc
from tessera.storage.v1 import storage_pb2, storage_service_pb2, storage_service_pb2_grpc

from services.kit import client
from services.kit.errors import FailedPrecondition, NotFound
from services.kit.identity import OrgCredentials
from services.kit.storage.client import ChecksumMismatch, chunks_of, download_to, upload_requests


def file_checksum(path: Path, salt: str = "") -> str:
    """sha256 of the file's bytes followed by ``salt``."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in chunks_of(stream):
            digest.update(block)
    digest.update(salt.encode())
    return digest.hexdigest()


class Files:
    """Storage clients for every organization this one talks to."""

    def __init__(self, org: str, peers: dict[str, str], cache_dir: Path) -> None:
        self.org = org
        self._peers = peers
        self._cache = cache_dir
        self._cache.mkdir(parents=True, exist_ok=True)
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _stub(self, org: str, creds: OrgCredentials) -> storage_service_pb2_grpc.StorageServiceStub:
        if org not in self._peers:
            raise FailedPrecondition(f"no storage address known for organization {org}", reason="UNKNOWN_PEER")
        key = (org, creds.channel)
        if key not in self._channels:
            self._channels[key] = client.channel(self._peers[org], creds)
        return storage_service_pb2_grpc.StorageServiceStub(self._channels[key])

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            await channel.close()

    async def download(
        self,
        creds: OrgCredentials,
        owner: str,
        kind: int,
        asset_key: str,
        dest: Path,
        *,
        checksum: str = "",
        salt: str = "",
    ) -> Path:
        """Fetch a file from ``owner``'s storage into ``dest``, verifying ``checksum`` if given."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        request = storage_service_pb2.DownloadRequest(ref=storage_pb2.FileRef(kind=kind, asset_key=asset_key))
        try:
            await download_to(
                self._stub(owner, creds), request, partial, expected_checksum=checksum or None, salt=salt.encode()
            )
            partial.replace(dest)
        except ChecksumMismatch as exc:
            raise FailedPrecondition(
                f"checksum mismatch for {asset_key} from {owner}", reason="CHECKSUM_MISMATCH"
            ) from exc
        finally:
            partial.unlink(missing_ok=True)
        return dest

    async def cached_model(self, creds: OrgCredentials, owner: str, model_key: str, checksum: str, salt: str) -> Path:
        """A model's file from the local cache, fetched on first use."""
        path = self._cache / "models" / model_key
        lock = self._locks.setdefault(model_key, asyncio.Lock())
        async with lock:
            if not path.exists():
                await self.download(
                    creds, owner, storage_pb2.FILE_KIND_MODEL, model_key, path, checksum=checksum, salt=salt
                )
        return path

    def keep_model(self, model_key: str, path: Path) -> None:
        """Put a model this organization just produced in the cache (its bytes were hashed on the
        way out): a task of the same worker consuming it does not fetch it back from storage."""
        dest = self._cache / "models" / model_key
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{model_key}.{uuid.uuid4().hex}.part")
        try:
            os.link(path, partial)
        except OSError:
            shutil.copyfile(path, partial)
        partial.replace(dest)

    def forget_model(self, model_key: str) -> None:
        """Drop a model from the cache (it was disabled)."""
        (self._cache / "models" / model_key).unlink(missing_ok=True)

    async def upload(
        self, creds: OrgCredentials, path: Path, kind: int, asset_key: str, *, salt: str = "", filename: str = ""
    ) -> storage_pb2.FileInfo:
        """Store a local file in this organization's storage; returns its record."""
        metadata = storage_service_pb2.UploadMetadata(
            kind=kind,
            asset_key=asset_key,
            expected_size=path.stat().st_size,
            filename=filename or path.name,
            checksum_salt=salt,
        )
        with open(path, "rb") as stream:
            reply = await self._stub(self.org, creds).Upload(upload_requests(metadata, stream))
        return reply.file

    async def exists(self, creds: OrgCredentials, owner: str, kind: int, asset_key: str) -> bool:
        """Whether ``owner``'s storage holds the file."""
        try:
            await self._stub(owner, creds).StatFile(
                storage_service_pb2.StatFileRequest(ref=storage_pb2.FileRef(kind=kind, asset_key=asset_key))
            )
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise


__all__ = ["Files", "NotFound", "file_checksum"]
