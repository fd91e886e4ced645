"""Where bytes live: the :class:`FileStore` interface and its filesystem implementation.

Content-addressed: a blob's name is the sha256 of its bytes, so identical content is stored once
whatever the number of files (rows) that refer to it. An upload is staged (written and hashed as it
arrives), then either committed under its digest or aborted, leaving nothing behind. Which blobs are
still referenced is the database's business (``services.storage.files``); the store only keeps bytes.

An S3-compatible backend implements the same interface: staging as a multipart upload under a
temporary key, :meth:`FileStore.commit` as a server-side copy to ``blobs/<digest>`` (skipped when the
key exists) followed by deleting the temporary key, :meth:`BlobReader.read` as ranged GETs.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol

STAGING = "tmp"
BLOBS = "blobs"
STAGED_SUFFIX = ".part"


class BlobWriter(Protocol):
    """One upload being staged."""

    size: int
    """Bytes written so far."""

    def write(self, data: bytes) -> None:
        """Append ``data`` (hashing it on the way)."""

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

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; empty at the end."""

    def close(self) -> None:
        """Release the blob; waits for a read in progress on another thread."""


class FileStore(Protocol):
    """Content-addressed blob storage."""

    def stage(self) -> BlobWriter:
        """Open a new staged upload."""

    def commit(self, writer: BlobWriter, digest: str) -> None:
        """Make a finished writer's bytes the blob ``digest`` (kept as is if it exists) and drop the staging."""

    def open(self, digest: str) -> BlobReader:
        """Read the blob ``digest``; FileNotFoundError if it does not exist."""

    def exists(self, digest: str) -> bool:
        """Whether the blob ``digest`` exists."""

    def delete(self, digest: str) -> None:
        """Remove the blob ``digest`` if it exists."""

    def sweep_staging(self, older_than: float) -> int:
        """Remove staged uploads untouched for ``older_than`` seconds (left by a crash); return how many."""


def _check_digest(digest: str) -> str:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return digest


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FsWriter:
    """A staged upload: ``<root>/tmp/<uuid>.part``, written and hashed chunk by chunk."""

    def __init__(self, path: Path, durable: bool) -> None:
        self.path = path
        self.size = 0
        self._durable = durable
        self._hash = hashlib.sha256()
        self._lock = threading.Lock()  # a write may run on a worker thread while the call is cancelled
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._done = False

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._fd is None:
                raise ValueError("write to a closed upload")
            self._hash.update(data)
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self.size += len(data)

    def finish(self, salt: bytes = b"") -> tuple[str, str]:
        with self._lock:
            if self._fd is None:
                raise ValueError("finish of a closed upload")
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

    def reader(self) -> BinaryIO:
        return open(self.path, "rb")  # the caller closes it

    def abort(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self.path.unlink(missing_ok=True)


class _FsReader:
    def __init__(self, path: Path) -> None:
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size
        self._lock = threading.Lock()

    def read(self, offset: int, length: int) -> bytes:
        with self._lock:
            if self._fd is None:
                raise ValueError("read of a closed blob")
            return os.pread(self._fd, length, offset)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class FilesystemStore:
    """Blobs under ``<root>/blobs/ab/cd/<digest>`` (read-only files), staging under ``<root>/tmp``.

    Commit is ``link(2)`` of the fsynced staged file to its final name, which fails if the name exists:
    two uploads of the same content race safely, the first one's bytes win and are identical anyway.
    Staging and blobs share a filesystem, so no byte is copied twice.
    """

    def __init__(self, root: str | os.PathLike, *, durable: bool = True) -> None:
        self.root = Path(root)
        self._durable = durable
        (self.root / STAGING).mkdir(parents=True, exist_ok=True)
        (self.root / BLOBS).mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives."""
        digest = _check_digest(digest)
        return self.root / BLOBS / digest[:2] / digest[2:4] / digest

    def stage(self) -> _FsWriter:
        return _FsWriter(self.root / STAGING / f"{uuid.uuid4().hex}{STAGED_SUFFIX}", self._durable)

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
        return _FsReader(self.blob_path(digest))

    def exists(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def delete(self, digest: str) -> None:
        # The two-level prefix folders stay (at most 65,536 of them): removing an empty one could race
        # with the commit of another digest that shares it.
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
