"""Where bytes live: the :class:`BlobStore` interface and its filesystem implementation.

Content-addressed: a blob's name is the sha256 of its bytes, so identical content is stored once
whatever the number of files (rows) that refer to it. An upload is staged (written and hashed as it
arrives), then either committed under its digest or aborted, leaving nothing behind. Which blobs are
still referenced is the ``files`` table's business (:mod:`services.storage.files` asks it under the
digest's lock); the blob store only keeps bytes.

An S3-compatible backend implements the same interface: staging as a multipart upload under a
temporary key, :meth:`BlobStore.commit` as a server-side copy to ``blobs/<digest>`` (skipped when the
key exists) followed by deleting the temporary key, :meth:`BlobReader.read` as ranged GETs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Protocol

log = logging.getLogger("tessera.storage.blobs")
STAGING = "tmp"
BLOBS = "blobs"
STAGED_SUFFIX = ".part"
IOV_MAX = 1024  # buffers per writev(2) (Linux's limit)
DIRECT_BLOCK = 1 << 20
"""Bytes per direct (``O_DIRECT``) write or read: a multiple of every device's logical block size."""
ALIGN = 4096  # alignment of direct I/O offsets and lengths (covers 512-byte and 4 KiB sectors)
_DISK = ThreadPoolExecutor(max_workers=4, thread_name_prefix="storage-disk")
"""Direct block writes, so that an upload hashes (and gathers) one block while the other is written."""


class BlobWriter(Protocol):
    """One upload being staged."""

    size: int
    """Bytes written so far."""

    def write(self, data: bytes) -> None:
        """Append ``data`` (hashing it on the way)."""

    def write_all(self, chunks: list[bytes]) -> None:
        """Append several chunks in order, in as few system calls as the store allows."""

    def finish(self, salt: bytes = b"") -> tuple[str, str]:
        """Make the staged bytes durable; return (sha256 of the bytes, sha256 of the bytes + ``salt``)."""

    def reader(self) -> BinaryIO:
        """A seekable reader over the staged bytes (archive checks before commit); the caller closes it."""

    def abort(self) -> None:
        """Drop the staged bytes; safe to call at any time, several times, from any thread."""


class BlobReader(Protocol):
    """Positioned reads of one blob."""

    size: int
    """Size of the blob in bytes."""

    def read(self, offset: int, length: int) -> bytes | memoryview:
        """Up to ``length`` bytes from ``offset``; empty at the end. May be a view on a buffer the reader
        reuses: valid until the second read after this one."""

    def close(self) -> None:
        """Release the blob; waits for a read in progress on another thread."""


class BlobStore(Protocol):
    """Content-addressed blob storage."""

    def stage(self) -> BlobWriter:
        """Open a new staged upload."""

    def commit(self, writer: BlobWriter, digest: str) -> None:
        """Make a finished writer's bytes the blob ``digest`` (kept as is if it exists) and drop the staging."""

    def open(self, digest: str) -> BlobReader:
        """Read the blob ``digest``; FileNotFoundError if it does not exist."""

    def delete(self, digest: str) -> None:
        """Remove the blob ``digest`` if it exists."""

    def sweep_staging(self, older_than: float) -> int:
        """Remove staged uploads untouched for ``older_than`` seconds (left by a crash); return how many."""


def _check_digest(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return digest


def _writev_fully(fd: int, views: list[memoryview]) -> None:
    """Write every byte of ``views`` in order (``writev`` may write less than asked)."""
    views = list(views)
    while views:
        written = os.writev(fd, views[:IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


def _pwrite_fully(fd: int, view: memoryview, offset: int) -> None:
    """Write all of ``view`` at ``offset``."""
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _without_direct(fd: int) -> None:
    """Turn ``O_DIRECT`` off on ``fd`` (its later reads and writes go through the page cache)."""
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)


def _write_block(fd: int, view: memoryview, offset: int) -> None:
    """A direct block write; a filesystem that accepted ``O_DIRECT`` at open but refuses it now (EINVAL, as some
    layered filesystems do) gets the block, and the rest of the file, through the page cache instead."""
    try:
        _pwrite_fully(fd, view, offset)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        _without_direct(fd)
        _pwrite_fully(fd, view, offset)


def _open(path: Path, flags: int, direct: bool) -> tuple[int, bool]:
    """Open ``path``, with ``O_DIRECT`` when ``direct`` and the filesystem takes it; return the descriptor
    and whether it is direct."""
    if direct and hasattr(os, "O_DIRECT"):
        try:
            return os.open(path, flags | os.O_DIRECT, 0o600), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            if flags & os.O_CREAT:
                path.unlink(missing_ok=True)  # some filesystems create the file before refusing the flag
    return os.open(path, flags, 0o600), False


LAYOUT_FILE = ".blobs-layout"
"""In the store's root: the layout its blobs are in, and the lock taken to change it."""
FLAT = "ab/<digest>\n"


def _flatten_legacy(root: Path) -> None:
    """Move the blobs of the two-level layout (``blobs/ab/cd/<digest>``) to ``blobs/ab/<digest>`` and remove the
    emptied ``cd`` folders, once: the layout file then says so, and later starts do not walk the blobs again.
    Safe to interrupt (a blob is renamed within its file system, never copied; the next
    start finishes the move); stores sharing the folder take turns under the layout file's lock."""
    moved = 0
    blobs = root / BLOBS
    with open(root / LAYOUT_FILE, "a+") as layout:
        fcntl.flock(layout, fcntl.LOCK_EX)
        layout.seek(0)
        if layout.read() == FLAT:
            return
        for prefix in os.scandir(blobs):
            if len(prefix.name) != 2 or not prefix.is_dir(follow_symlinks=False):
                continue
            for inner in os.scandir(prefix.path):
                if len(inner.name) != 2 or not inner.is_dir(follow_symlinks=False):
                    continue  # a blob of the current layout
                for blob in os.scandir(inner.path):
                    if blob.name.startswith(prefix.name + inner.name) and blob.is_file(follow_symlinks=False):
                        os.replace(blob.path, os.path.join(prefix.path, blob.name))
                        moved += 1
                with contextlib.suppress(OSError):  # not empty: something else was put there; left alone
                    os.rmdir(inner.path)
        layout.truncate(0)
        layout.write(FLAT)
        layout.flush()
        os.fsync(layout.fileno())
    if moved:
        log.info("moved %d blobs of %s to the one-level layout", moved, root)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FsWriter:
    """A staged upload: ``<root>/tmp/<uuid>.part``, written and hashed chunk by chunk.

    With ``direct``, the bytes bypass the page cache (``O_DIRECT``): they are gathered in aligned blocks
    of :data:`DIRECT_BLOCK` bytes, each written straight to the device on a disk thread when it is full
    while the next one fills (two blocks per upload), and the tail that does not fill a block is written
    through the cache by :meth:`finish`. A blob is written once and read rarely, so caching it on the way
    in only evicts what other files need; and writing through a reused buffer keeps the service's memory
    (page cache included) flat whatever the upload's size. Filesystems without ``O_DIRECT`` (tmpfs) get
    ordinary writes.
    """

    def __init__(self, path: Path, durable: bool, direct: bool = False) -> None:
        self.path = path
        self.size = 0
        self._durable = durable
        self._hash = hashlib.sha256()
        self._lock = threading.Lock()  # a write may run on a worker thread while the call is cancelled
        fd, direct = _open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, direct)
        self._fd: int | None = fd
        # Page-aligned (mmap), as O_DIRECT requires.
        self._blocks = [mmap.mmap(-1, DIRECT_BLOCK), mmap.mmap(-1, DIRECT_BLOCK)] if direct else []
        self._filled = 0  # bytes gathered in the current block
        self._flushed = 0  # bytes handed to the disk
        self._in_flight: Future | None = None  # the write of the other block
        self._done = False

    def write(self, data: bytes) -> None:
        self.write_all([data])

    def write_all(self, chunks: list[bytes]) -> None:
        with self._lock:
            if self._fd is None:
                raise ValueError("write to a closed upload")
            views = [memoryview(chunk) for chunk in chunks]
            for view in views:
                self._hash.update(view)
                self.size += len(view)
            if not self._blocks:
                _writev_fully(self._fd, views)
            else:
                for view in views:
                    self._gather(view)

    def _gather(self, view: memoryview) -> None:
        while view:
            block = self._blocks[0]
            taken = min(len(view), DIRECT_BLOCK - self._filled)
            block[self._filled : self._filled + taken] = view[:taken]
            self._filled += taken
            view = view[taken:]
            if self._filled == DIRECT_BLOCK:
                self._settle()  # the other block is free once its write is done
                self._in_flight = _DISK.submit(_write_block, self._fd, memoryview(block), self._flushed)
                self._flushed += DIRECT_BLOCK
                self._blocks.reverse()
                self._filled = 0

    def _settle(self) -> None:
        """Wait for the block being written (and raise its error, if any)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def finish(self, salt: bytes = b"") -> tuple[str, str]:
        with self._lock:
            if self._fd is None:
                raise ValueError("finish of a closed upload")
            if self._blocks:
                self._settle()
                if self._filled:  # the tail is not a whole block: it goes through the page cache
                    _without_direct(self._fd)
                    _pwrite_fully(self._fd, memoryview(self._blocks[0])[: self._filled], self._flushed)
                self._release_blocks()
            if self._durable:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._done = True
            digest = self._hash.hexdigest()
            if not salt:
                return digest, digest
            salted = self._hash.copy()
            salted.update(salt)
            return digest, salted.hexdigest()

    def _release_blocks(self) -> None:
        self._blocks = []  # unmapped when the last view on them goes
        self._filled = 0

    def reader(self) -> BinaryIO:
        return open(self.path, "rb")  # the caller closes it

    def abort(self) -> None:
        with self._lock:
            with contextlib.suppress(OSError):  # the upload is being dropped anyway
                self._settle()  # never close the descriptor under a write in progress
            self._release_blocks()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self.path.unlink(missing_ok=True)


class _FsReader:
    """Positioned reads of a blob file. With ``direct``, reads bypass the page cache (``O_DIRECT``, in
    aligned blocks, into two alternating buffers); see :meth:`read` for what that means to callers."""

    def __init__(self, path: Path, direct: bool = False) -> None:
        fd, direct = _open(path, os.O_RDONLY | os.O_CLOEXEC, direct)
        self._fd: int | None = fd
        self._buffers = [mmap.mmap(-1, DIRECT_BLOCK + ALIGN), mmap.mmap(-1, DIRECT_BLOCK + ALIGN)] if direct else []
        self.size = os.fstat(self._fd).st_size
        self._lock = threading.Lock()
        self._turn = 0

    def read(self, offset: int, length: int) -> bytes | memoryview:
        """Up to ``length`` bytes from ``offset`` (at most :data:`DIRECT_BLOCK` in direct mode); empty at
        the end. In direct mode the result is a view on a reused buffer, valid until the second read
        after this one: read one block ahead at most, and copy what must outlive that."""
        with self._lock:
            if self._fd is None:
                raise ValueError("read of a closed blob")
            if not self._buffers:
                return os.pread(self._fd, length, offset)
            start = offset - offset % ALIGN
            length = min(length, DIRECT_BLOCK, max(self.size - offset, 0))
            if length <= 0:
                return b""
            span = offset - start + length
            buffer = self._buffers[self._turn]
            self._turn ^= 1
            view = memoryview(buffer)[: span + (-span) % ALIGN]
            try:
                got = os.preadv(self._fd, [view], start)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                _without_direct(self._fd)  # accepted at open, refused now: read through the cache from here on
                self._buffers = []
                return os.pread(self._fd, length, offset)
            return view[offset - start : min(got, span)]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._buffers = []  # unmapped when the last view on them goes


class FilesystemStore:
    """Blobs under ``<root>/blobs/ab/<digest>`` (read-only files), staging under ``<root>/tmp``.

    Commit is ``link(2)`` of the fsynced staged file to its final name, which fails if the name exists:
    two uploads of the same content race safely, the first one's bytes win and are identical anyway.
    Staging and blobs share a filesystem, so no byte is copied twice.

    One level of 256 prefix folders: each is made once, by the first blob of its prefix, so an upload
    makes no folder once a few hundred blobs are stored (a folder is the dearest thing a file system
    makes), and a folder holds a 256th of the blobs (tens of thousands for millions, which ext4's hashed
    directories look up as fast as a few). Blobs of the earlier two-level layout (``ab/cd/<digest>``)
    are moved up when the store opens (:func:`_flatten_legacy`).
    """

    def __init__(self, root: str | os.PathLike, *, durable: bool = True, direct: bool = True) -> None:
        self.root = Path(root)
        self._durable = durable
        self._direct = direct
        (self.root / STAGING).mkdir(parents=True, exist_ok=True)
        (self.root / BLOBS).mkdir(parents=True, exist_ok=True)
        _flatten_legacy(self.root)

    def blob_path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives."""
        digest = _check_digest(digest)
        return self.root / BLOBS / digest[:2] / digest

    def stage(self) -> _FsWriter:
        return _FsWriter(self.root / STAGING / f"{uuid.uuid4().hex}{STAGED_SUFFIX}", self._durable, self._direct)

    def commit(self, writer: BlobWriter, digest: str) -> None:
        if not isinstance(writer, _FsWriter) or not writer._done:
            raise ValueError("commit of an unfinished upload")
        final = self.blob_path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if not writer.path.exists() and final.exists():
            return  # committed already (the transaction around it is being retried)
        os.chmod(writer.path, 0o440)
        try:
            os.link(writer.path, final)
        except FileExistsError:
            pass  # identical content is already stored
        else:
            if self._durable:
                _fsync_directory(final.parent)
        writer.abort()

    def open(self, digest: str) -> _FsReader:
        return _FsReader(self.blob_path(digest), self._direct)

    def exists(self, digest: str) -> bool:
        """Whether the blob ``digest`` exists (tests look at the disk with it)."""
        return self.blob_path(digest).exists()

    def delete(self, digest: str) -> None:
        # The prefix folders stay (at most 256 of them): removing an empty one could race with the commit
        # of another digest that shares it.
        self.blob_path(digest).unlink(missing_ok=True)

    def sweep_staging(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        for path in (self.root / STAGING).glob(f"*{STAGED_SUFFIX}"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def staged_count(self) -> int:
        """Staged uploads present now (tests check that failures leave none)."""
        return sum(1 for _ in (self.root / STAGING).glob(f"*{STAGED_SUFFIX}"))

    def blob_count(self) -> int:
        """Blobs present now."""
        return sum(1 for p in (self.root / BLOBS).rglob("*") if p.is_file())
