"""What storage does with files, between the gRPC handlers and the blob store: uploads (validated,
streamed, hashed, checked, committed), lookups, deletion, and the removal of unreferenced blobs.

No whole file is ever held in memory: an upload keeps at most the batch of chunks being gathered and
the batch being written (:data:`IO_BYTES` each; writing batch *n* overlaps the receipt of batch
*n + 1*); a download reads one block ahead. Blocking work (disk, hashing, database) runs in worker
threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tessera.storage.v1 import storage_pb2 as res
from tessera.storage.v1 import storage_service_pb2 as api

from services.kit import archives
from services.kit.db import UnitOfWork
from services.kit.errors import AlreadyExists, DataLoss, FieldViolation, InvalidArgument, NotFound, ResourceExhausted
from services.storage import store
from services.storage.backend import BlobReader, BlobWriter, FileStore
from services.storage.store import StoredFile

log = logging.getLogger("tessera.storage")

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_FILENAME = 255
MAX_SALT = 256
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
IO_BYTES = 1 << 20
"""Bytes per disk operation: uploads hand chunks to a worker thread (hash, write) and downloads read
the blob in blocks of this size, so that the event loop pays one thread hand-off per MiB rather than per
chunk (docs/benchmarks.md)."""


class BlobMissing(DataLoss):
    """A file's record exists but its bytes are gone or damaged: an operations problem, not the caller's."""

    default_reason = "BLOB_MISSING"


def kind_name(kind: int) -> str:
    """The stored name of a FileKind value."""
    return res.FileKind.Name(kind)


def kind_value(name: str) -> int:
    """The FileKind value of a stored name."""
    return res.FileKind.Value(name)


def normalize_key(path: str, value: str) -> str:
    """An asset key: a UUID in canonical lowercase form, or INVALID_ARGUMENT."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument.on(path, "must be a UUID") from None


def _storage_full(exc: OSError) -> ResourceExhausted:
    return ResourceExhausted(
        "the storage volume is full", reason="STORAGE_FULL", metadata={"limit": "disk", "value": str(exc)}
    )


@dataclass(frozen=True)
class UploadSpec:
    """A validated UploadMetadata."""

    kind: str
    asset_key: str
    expected_size: int | None
    expected_checksum: str | None
    filename: str
    salt: bytes


def validate_metadata(meta: api.UploadMetadata, max_bytes: int) -> UploadSpec:
    """Check an upload's metadata; every violation is named at once."""
    violations: list[FieldViolation] = []
    if meta.kind == res.FILE_KIND_UNSPECIFIED or meta.kind not in res.FileKind.values():
        violations.append(FieldViolation("metadata.kind", "must be a FileKind other than FILE_KIND_UNSPECIFIED"))
    asset_key = ""
    if meta.HasField("asset_key"):
        try:
            asset_key = str(uuid.UUID(meta.asset_key))
        except ValueError:
            violations.append(FieldViolation("metadata.asset_key", "must be a UUID"))
    expected_size = meta.expected_size if meta.HasField("expected_size") else None
    if expected_size is not None and expected_size < 0:
        violations.append(FieldViolation("metadata.expected_size", "must not be negative"))
    expected_checksum = meta.expected_checksum if meta.HasField("expected_checksum") else None
    if expected_checksum is not None and not _HEX64.fullmatch(expected_checksum):
        violations.append(FieldViolation("metadata.expected_checksum", "must be 64 lowercase hex characters"))
    name = meta.filename
    if len(name) > MAX_FILENAME or "/" in name or any(ord(c) < 32 for c in name):
        violations.append(
            FieldViolation("metadata.filename", f"must be a base name of at most {MAX_FILENAME} characters")
        )
    if len(meta.checksum_salt) > MAX_SALT:
        violations.append(FieldViolation("metadata.checksum_salt", f"must be at most {MAX_SALT} characters"))
    if violations:
        first = violations[0]
        raise InvalidArgument(f"{first.field}: {first.description}", violations=violations)
    if expected_size is not None and expected_size > max_bytes:
        raise too_large(max_bytes)
    return UploadSpec(
        kind=kind_name(meta.kind),
        asset_key=asset_key,
        expected_size=expected_size,
        expected_checksum=expected_checksum,
        filename=name,
        salt=meta.checksum_salt.encode(),
    )


def too_large(max_bytes: int) -> ResourceExhausted:
    """The refusal of an upload over the size limit, naming the limit."""
    return ResourceExhausted(
        f"the file exceeds the upload limit TESSERA_MAX_FILE_BYTES ({max_bytes} bytes)",
        reason="FILE_TOO_LARGE",
        metadata={"limit": "TESSERA_MAX_FILE_BYTES", "value": str(max_bytes)},
    )


class Files:
    """One organization's files: its blob store and its ``files`` table."""

    def __init__(
        self,
        blobs: FileStore,
        uow: UnitOfWork,
        *,
        org_id: str,
        max_file_bytes: int,
        limits: archives.Limits,
    ) -> None:
        self.blobs = blobs
        self._uow = uow
        self.org_id = org_id
        self.max_file_bytes = max_file_bytes
        self.limits = limits

    # ------------------------------------------------------------------------------------------- lookups
    async def find(self, *, file_id: str = "", kind: int = 0, asset_key: str = "") -> StoredFile:
        """The file named by its id, or by its kind and asset; NOT_FOUND otherwise."""
        if file_id:
            found = await self._uow.run(lambda s: store.get(s, file_id))
            if found is None:
                raise NotFound(f"file {file_id} not found")
            return found
        if kind == res.FILE_KIND_UNSPECIFIED or kind not in res.FileKind.values():
            raise InvalidArgument.on("ref.kind", "must be a FileKind other than FILE_KIND_UNSPECIFIED")
        key = normalize_key("ref.asset_key", asset_key)
        found = await self._uow.run(lambda s: store.get_by_ref(s, kind_name(kind), key))
        if found is None:
            raise NotFound(f"no {kind_name(kind)} file for asset {key}")
        return found

    # ------------------------------------------------------------------------------------------- uploads
    async def begin_upload(self, meta: api.UploadMetadata) -> Upload:
        """Validate the metadata, refuse at once what cannot succeed, and stage a new upload."""
        spec = validate_metadata(meta, self.max_file_bytes)
        if spec.asset_key:
            existing = await self._uow.run(lambda s: store.get_by_ref(s, spec.kind, spec.asset_key))
            if existing is not None and (
                existing.disabled or (spec.expected_checksum and spec.expected_checksum != existing.checksum)
            ):
                raise _conflict(existing)
        try:
            writer = await asyncio.to_thread(self.blobs.stage)
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise _storage_full(exc) from None
            raise
        return Upload(self, spec, writer)

    def _commit(self, session, spec: UploadSpec, writer: BlobWriter, stored: StoredFile) -> StoredFile:
        """In one transaction, under the digest's lock: the blob, then the row (or the identical file)."""
        store.lock_digest(session, stored.digest)
        self.blobs.commit(writer, stored.digest)
        if store.insert_file(session, stored):
            return stored
        existing = store.get_by_ref(session, spec.kind, spec.asset_key)
        if (
            existing is not None
            and not existing.disabled
            and existing.digest == stored.digest
            and existing.checksum == stored.checksum
        ):
            return existing  # the same content uploaded again: idempotent
        raise _conflict(existing)

    # ------------------------------------------------------------------------------------------ download
    async def open(self, stored: StoredFile) -> BlobReader:
        """A reader of the file's bytes; DATA_LOSS when they are missing."""
        try:
            reader = await asyncio.to_thread(self.blobs.open, stored.digest)
        except FileNotFoundError:
            raise BlobMissing(f"the bytes of file {stored.file_id} are missing") from None
        if reader.size != stored.size:
            reader.close()
            raise BlobMissing(f"the bytes of file {stored.file_id} are damaged (size {reader.size}, not {stored.size})")
        return reader

    @staticmethod
    async def chunks(reader: BlobReader, offset: int, chunk_bytes: int) -> AsyncIterator[memoryview]:
        """The bytes from ``offset`` in chunks of ``chunk_bytes``. The disk is read :data:`IO_BYTES` at a
        time on a worker thread, one block ahead of the chunks being sent."""
        block_bytes = max(IO_BYTES, chunk_bytes)
        pending = asyncio.ensure_future(asyncio.to_thread(reader.read, offset, block_bytes))
        try:
            while True:
                block = await pending
                if not block:
                    return
                offset += len(block)
                pending = asyncio.ensure_future(asyncio.to_thread(reader.read, offset, block_bytes))
                view = memoryview(block)
                for start in range(0, len(view), chunk_bytes):
                    yield view[start : start + chunk_bytes]
        finally:
            pending.cancel()

    # -------------------------------------------------------------------------------------------- delete
    async def delete(self, stored: StoredFile) -> StoredFile:
        """Disable the file and remove its blob unless another enabled file uses it (idempotent)."""

        def work(session) -> StoredFile:
            current = store.get(session, stored.file_id, for_update=True)
            if current is None:
                raise NotFound(f"file {stored.file_id} not found")
            store.disable(session, current.file_id)
            return current

        current = await self._uow.run(work)
        await self.collect(current.digest)
        return await self._uow.run(lambda s: store.get(s, stored.file_id))

    async def collect(self, digest: str) -> None:
        """Remove the blob ``digest`` if no enabled file references it any more."""
        if not digest:
            return

        def work(session) -> None:
            store.lock_digest(session, digest)
            if store.live_references(session, digest) == 0:
                self.blobs.delete(digest)

        await self._uow.run(work)


def _conflict(existing: StoredFile | None) -> AlreadyExists:
    if existing is None:
        return AlreadyExists("the file was stored concurrently with other content")
    state = "was deleted" if existing.disabled else "already has a file with other content"
    return AlreadyExists(
        f"{existing.kind} of asset {existing.asset_key} {state}",
        metadata={"keys": existing.asset_key, "file_id": existing.file_id},
    )


class Upload:
    """One upload in progress. ``write`` each chunk, then ``finish``; ``abort`` on any failure."""

    def __init__(self, files: Files, spec: UploadSpec, writer: BlobWriter) -> None:
        self._files = files
        self.spec = spec
        self._writer = writer
        self._received = 0
        self._batch: list[bytes] = []  # chunks received and not yet handed to a worker thread
        self._batched = 0
        self._pending: asyncio.Future | None = None

    def _write(self, chunks: list[bytes]) -> None:
        try:
            self._writer.write_all(chunks)
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise _storage_full(exc) from None
            raise

    async def _drain(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def _flush(self) -> None:
        """Hand the gathered chunks to a worker thread once the previous batch is written."""
        await self._drain()
        batch, self._batch, self._batched = self._batch, [], 0
        if batch:
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._write, batch))

    async def write(self, chunk: bytes) -> None:
        """Accept the next chunk: limits are checked before any byte is written."""
        self._received += len(chunk)
        limit = self._files.max_file_bytes
        if self._received > limit:
            raise too_large(limit)
        expected = self.spec.expected_size
        if expected is not None and self._received > expected:
            raise InvalidArgument(
                f"the upload is larger than its expected_size ({expected} bytes)",
                reason="SIZE_MISMATCH",
                violations=[FieldViolation("metadata.expected_size", f"{self._received} bytes received so far")],
            )
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= IO_BYTES:
            await self._flush()

    async def finish(self) -> StoredFile:
        """Check size, checksum and (for archives) content; store the file; return it."""
        await self._flush()
        await self._drain()
        spec = self.spec
        if spec.expected_size is not None and self._received != spec.expected_size:
            raise InvalidArgument(
                f"the upload ended after {self._received} bytes, expected_size was {spec.expected_size}",
                reason="SIZE_MISMATCH",
                violations=[FieldViolation("metadata.expected_size", f"{self._received} bytes received")],
            )
        try:
            digest, checksum = await asyncio.to_thread(self._writer.finish, spec.salt)
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise _storage_full(exc) from None
            raise
        if spec.expected_checksum is not None and checksum != spec.expected_checksum:
            raise InvalidArgument(
                f"checksum mismatch: the bytes received hash to {checksum}, not {spec.expected_checksum}",
                reason="CHECKSUM_MISMATCH",
                metadata={"expected": spec.expected_checksum, "actual": checksum},
                violations=[FieldViolation("metadata.expected_checksum", "does not match the bytes received")],
            )
        directory_checksum = await asyncio.to_thread(self._check_archive)
        stored = StoredFile(
            file_id=str(uuid.uuid4()),
            kind=spec.kind,
            asset_key=spec.asset_key,
            size=self._received,
            checksum=checksum,
            digest=digest,
            owner=self._files.org_id,
            filename=spec.filename,
            creation_date=dt.datetime.now(dt.UTC),
            disabled=False,
            directory_checksum=directory_checksum,
        )
        try:
            return await self._files._uow.run(lambda s: self._files._commit(s, spec, self._writer, stored))
        except BaseException:
            # The blob may have been linked before the row failed: remove it unless something uses it.
            try:
                await asyncio.shield(self._files.collect(digest))
            except Exception:  # logged; the original failure is the one to report
                log.exception("could not collect blob %s after a failed upload", digest)
            raise

    def _check_archive(self) -> str:
        """Substra's checks on function archives and data samples, on the staged bytes."""
        kind = self.spec.kind
        if kind not in (kind_name(res.FILE_KIND_FUNCTION_ARCHIVE), kind_name(res.FILE_KIND_DATA_SAMPLE)):
            return ""
        with self._writer.reader() as handle:
            if kind == kind_name(res.FILE_KIND_FUNCTION_ARCHIVE):
                archives.inspect_function_archive(handle, self._files.limits)
                return ""
            return archives.data_sample_checksum(handle, self._files.limits)

    def abort(self) -> None:
        """Drop the staged bytes (waits for a write in progress on a worker thread)."""
        self._batch, self._batched = [], 0
        pending, self._pending = self._pending, None
        if pending is not None:
            if pending.done() and not pending.cancelled():
                pending.exception()  # retrieved: never logged as "exception was never retrieved"
            else:
                pending.cancel()
        self._writer.abort()
