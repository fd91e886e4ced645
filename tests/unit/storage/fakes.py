"""Test doubles of storage's own protocols, in memory: the ledger's answers (``Ledger``), the ``files``
table (``FileRecords``) behind a unit of work, and the blob store (``BlobStore``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from services.storage.domain.permissions import Access, Asset
from services.storage.domain.records import Kind, StoredFile

T = TypeVar("T")


def stored_file(kind: Kind = Kind.MODEL, asset_key: str | None = None, **fields) -> StoredFile:
    """A file record with plausible values; ``asset_key`` defaults to a fresh key."""
    values = dict(
        file_id=str(uuid.uuid4()),
        kind=kind,
        asset_key=str(uuid.uuid4()) if asset_key is None else asset_key,
        size=3,
        checksum="c" * 64,
        digest="d" * 64,
        owner="org1",
        filename="",
        creation_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        disabled=False,
        directory_checksum="",
    )
    values.update(fields)
    return StoredFile(**values)


# --------------------------------------------------------------------------------------------- ledger
@dataclass
class FakeLedger:
    """Answers from tables: ``process[(asset, key)]`` the organizations holding its process permission
    (``download`` likewise), ``logs[task_key]`` those holding a task's logs permission, ``disabled`` the
    disabled models, ``models`` the models it knows. A key it has no entry for is unknown (None)."""

    process: dict[tuple[Asset, str], set[str]] = field(default_factory=dict)
    download: dict[tuple[Asset, str], set[str]] = field(default_factory=dict)
    logs: dict[str, set[str]] = field(default_factory=dict)
    models: set[str] = field(default_factory=set)
    disabled: set[str] = field(default_factory=set)
    fails_with: Exception | None = None
    calls: list[tuple] = field(default_factory=list)

    def _answer(self, call: tuple):
        self.calls.append(call)
        if self.fails_with is not None:
            raise self.fails_with

    async def can_process(self, channel: str, asset: Asset, key: str, org_id: str, *, download: bool) -> Access | None:
        self._answer(("can_process", channel, asset, key, org_id, download))
        table = self.download if download else self.process
        orgs = table.get((asset, key))
        disabled = asset == Asset.MODEL and key in self.disabled
        return None if orgs is None else Access(org_id in orgs, disabled)

    async def can_access_logs(self, channel: str, task_key: str, org_id: str) -> bool | None:
        self._answer(("can_access_logs", channel, task_key, org_id))
        orgs = self.logs.get(task_key)
        return None if orgs is None else org_id in orgs

    async def model_disabled(self, channel: str, model_key: str) -> bool | None:
        self._answer(("model_disabled", channel, model_key))
        if model_key not in self.models:
            return None
        return model_key in self.disabled


# ------------------------------------------------------------------------------------------ file rows
class MemoryFileRecords:
    """``FileRecords`` on a dict, with the table's unique (kind, asset) rule for files of an asset."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredFile] = {}
        self.locked: list[str] = []

    def get(self, file_id: str, *, for_update: bool = False) -> StoredFile | None:
        return self.rows.get(file_id)

    def get_by_ref(self, kind: Kind, asset_key: str) -> StoredFile | None:
        return next((r for r in self.rows.values() if r.kind == kind and r.asset_key == asset_key), None)

    def insert(self, stored: StoredFile) -> bool:
        if stored.asset_key and self.get_by_ref(stored.kind, stored.asset_key) is not None:
            return False
        self.rows[stored.file_id] = stored
        return True

    def disable(self, file_id: str) -> None:
        self.rows[file_id] = replace(self.rows[file_id], disabled=True)

    def live_references(self, digest: str) -> int:
        return sum(1 for r in self.rows.values() if r.digest == digest and not r.disabled)

    def lock_digest(self, digest: str) -> None:
        self.locked.append(digest)


class MemoryUnitOfWork:
    """Runs each work on the in-memory rows; a failed work leaves them as they were."""

    def __init__(self) -> None:
        self.records = MemoryFileRecords()

    async def run(self, work: Callable[[MemoryFileRecords], T]) -> T:
        before = dict(self.records.rows)
        try:
            return work(self.records)
        except BaseException:
            self.records.rows = before
            raise


# ---------------------------------------------------------------------------------------------- blobs
class MemoryWriter:
    """A staged upload in memory."""

    def __init__(self, blobs: MemoryBlobs) -> None:
        self._blobs = blobs
        self._parts: list[bytes] = []
        self.size = 0
        self.finished = False

    def write(self, data: bytes) -> None:
        self.write_all([data])

    def write_all(self, chunks: list[bytes]) -> None:
        if self not in self._blobs.staged:
            raise ValueError("write to a closed upload")
        for chunk in chunks:
            self._parts.append(bytes(chunk))
            self.size += len(chunk)

    def data(self) -> bytes:
        return b"".join(self._parts)

    def finish(self, salt: bytes = b"") -> tuple[str, str]:
        self.finished = True
        data = self.data()
        return hashlib.sha256(data).hexdigest(), hashlib.sha256(data + salt).hexdigest()

    def reader(self) -> io.BytesIO:
        return io.BytesIO(self.data())

    def abort(self) -> None:
        self._blobs.staged.discard(self)


class MemoryReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]

    def close(self) -> None:
        pass


class MemoryBlobs:
    """``BlobStore`` on a dict: ``staged`` the uploads in progress, ``blobs`` the committed bytes by digest."""

    def __init__(self) -> None:
        self.staged: set[MemoryWriter] = set()
        self.blobs: dict[str, bytes] = {}

    def stage(self) -> MemoryWriter:
        writer = MemoryWriter(self)
        self.staged.add(writer)
        return writer

    def commit(self, writer: MemoryWriter, digest: str) -> None:
        if not writer.finished:
            raise ValueError("commit of an unfinished upload")
        self.blobs.setdefault(digest, writer.data())
        writer.abort()

    def open(self, digest: str) -> MemoryReader:
        if digest not in self.blobs:
            raise FileNotFoundError(digest)
        return MemoryReader(self.blobs[digest])

    def delete(self, digest: str) -> None:
        self.blobs.pop(digest, None)

    def sweep_staging(self, older_than: float) -> int:
        return 0
