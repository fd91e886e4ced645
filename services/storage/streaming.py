"""Bytes on the move between gRPC and the blob store: one upload received into a staged blob
(:class:`Upload`), and a blob read ahead for a download (:func:`read_chunks`).

No whole file is ever held in memory: an upload keeps at most the batch of chunks being gathered and
the batch being written (:data:`IO_BYTES` each; writing batch *n* overlaps the receipt of batch
*n + 1*); a download reads one block ahead. Disk work and hashing run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from services.kit import archives
from services.storage.domain.uploads import (
    ArchiveCheck,
    UploadSpec,
    archive_check,
    check_checksum,
    check_complete,
    check_received,
    storage_full,
)
from services.storage.store.blobs import BlobReader, BlobWriter

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
IO_BYTES = 1 << 20
"""Bytes per disk operation: uploads hand chunks to a worker thread (hash, write) and downloads read
the blob in blocks of this size, so that the event loop pays one thread hand-off per MiB rather than per
chunk (docs/benchmarks.md)."""


@dataclass(frozen=True)
class Received:
    """What an upload's bytes turned out to be, once all were received and checked."""

    size: int
    digest: str
    """sha256 of the bytes."""
    checksum: str
    """sha256 of the bytes and the salt."""
    directory_checksum: str
    """Data samples: the directory hash of the archive's content; empty otherwise."""


@contextlib.contextmanager
def volume_full_refused() -> Iterator[None]:
    """Turn a full volume (or quota) met by the block into the upload's STORAGE_FULL refusal."""
    try:
        yield
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise storage_full(str(exc)) from None
        raise


class Upload:
    """One upload being received into ``writer``. ``write`` each chunk, then ``finish``; ``abort`` on any
    failure (after ``finish`` too, until the blob is committed)."""

    def __init__(self, spec: UploadSpec, writer: BlobWriter, *, max_bytes: int, limits: archives.Limits) -> None:
        self.spec = spec
        self.writer = writer
        self._max_bytes = max_bytes
        self._limits = limits
        self._received = 0
        self._batch: list[bytes] = []  # chunks received and not yet handed to a worker thread
        self._batched = 0
        self._pending: asyncio.Future | None = None

    def _write(self, chunks: list[bytes]) -> None:
        with volume_full_refused():
            self.writer.write_all(chunks)

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
        """Accept the next chunk: the limits are checked before any of its bytes is written."""
        self._received += len(chunk)
        check_received(self.spec, self._received, self._max_bytes)
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= IO_BYTES:
            await self._flush()

    async def finish(self) -> Received:
        """Write what is left, make it durable, and check size, checksum and (for archives) content: one trip
        to a worker thread once the previous batch is written."""
        await self._drain()
        check_complete(self.spec, self._received)
        batch, self._batch, self._batched = self._batch, [], 0
        return await asyncio.to_thread(self._finish, batch)

    def _finish(self, batch: list[bytes]) -> Received:
        with volume_full_refused():
            if batch:
                self.writer.write_all(batch)
            digest, checksum = self.writer.finish(self.spec.salt)
        check_checksum(self.spec, checksum)
        return Received(self._received, digest, checksum, self._check_archive())

    def _check_archive(self) -> str:
        """The content check of the upload's kind, on the staged bytes."""
        check = archive_check(self.spec.kind)
        if check is None:
            return ""
        with self.writer.reader() as handle:
            if check is ArchiveCheck.FUNCTION_ARCHIVE:
                archives.inspect_function_archive(handle, self._limits)
                return ""
            return archives.data_sample_checksum(handle, self._limits)

    def abort(self) -> None:
        """Drop the staged bytes (waits for a write in progress on a worker thread)."""
        self._batch, self._batched = [], 0
        pending, self._pending = self._pending, None
        if pending is not None:
            if pending.done() and not pending.cancelled():
                pending.exception()  # retrieved: never logged as "exception was never retrieved"
            else:
                pending.cancel()
        self.writer.abort()


async def read_chunks(reader: BlobReader, offset: int, chunk_bytes: int) -> AsyncIterator[memoryview]:
    """The bytes from ``offset`` in chunks of ``chunk_bytes``. The disk is read :data:`IO_BYTES` at a time
    on a worker thread, one block ahead of the chunks being sent."""
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
