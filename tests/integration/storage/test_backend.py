"""The filesystem blob store on its own: staging, atomic commit, content addressing, crash leftovers."""

from __future__ import annotations

import hashlib
import os
import stat
import time

import pytest

from services.storage.backend import FilesystemStore


def staged(store: FilesystemStore, data: bytes, salt: bytes = b""):
    writer = store.stage()
    writer.write(data[: len(data) // 2])
    writer.write(memoryview(data)[len(data) // 2 :])
    digest, checksum = writer.finish(salt)
    return writer, digest, checksum


def test_commit_is_content_addressed_read_only_and_leaves_no_staging(tmp_path):
    store = FilesystemStore(tmp_path)
    data = os.urandom(10_000)
    writer, digest, checksum = staged(store, data, b"task-key")
    assert digest == hashlib.sha256(data).hexdigest()
    assert checksum == hashlib.sha256(data + b"task-key").hexdigest()
    with writer.reader() as handle:
        assert handle.read() == data
    store.commit(writer, digest)
    store.commit(writer, digest)  # a retried transaction commits twice: harmless
    path = store.blob_path(digest)
    assert path.read_bytes() == data and stat.S_IMODE(path.stat().st_mode) == 0o440
    assert path.relative_to(tmp_path).parts[:3] == ("blobs", digest[:2], digest[2:4])
    assert store.staged_count() == 0

    # The same content again: the existing blob stays, the second staging is dropped.
    again, digest2, _ = staged(store, data)
    inode = path.stat().st_ino
    store.commit(again, digest2)
    assert store.blob_count() == 1 and path.stat().st_ino == inode and store.staged_count() == 0

    reader = store.open(digest)
    assert reader.size == len(data) and reader.read(9_990, 100) == data[9_990:] and reader.read(10_000, 5) == b""
    reader.close()
    store.delete(digest)
    store.delete(digest)  # idempotent
    assert not store.exists(digest)
    with pytest.raises(FileNotFoundError):
        store.open(digest)


def test_abort_drops_the_staged_bytes_at_any_time(tmp_path):
    store = FilesystemStore(tmp_path)
    writer = store.stage()
    writer.write(b"partial")
    writer.abort()
    writer.abort()
    assert store.staged_count() == 0
    with pytest.raises(ValueError):
        writer.write(b"more")
    finished, digest, _ = staged(store, b"done")
    finished.abort()
    assert store.staged_count() == 0 and not store.exists(digest)
    with pytest.raises(ValueError):
        store.commit(store.stage(), digest)  # not finished


def test_sweep_removes_only_stale_staged_uploads(tmp_path):
    store = FilesystemStore(tmp_path)
    old, fresh = store.stage(), store.stage()
    old.write(b"left by a crash")
    hour_ago = time.time() - 3600
    os.utime(old.path, (hour_ago, hour_ago))
    assert store.sweep_staging(older_than=600) == 1
    assert not old.path.exists() and fresh.path.exists()
    fresh.abort()


def test_digests_are_validated(tmp_path):
    store = FilesystemStore(tmp_path)
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63):
        with pytest.raises(ValueError):
            store.blob_path(bad)
