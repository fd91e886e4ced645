"""The filesystem blob store on its own: staging, atomic commit, content addressing, crash leftovers."""

from __future__ import annotations

import hashlib
import os
import stat
import time

import pytest

from services.storage.store.blobs import FilesystemStore


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
    assert path.relative_to(tmp_path).parts == ("blobs", digest[:2], digest)
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


def test_blobs_of_the_two_level_layout_move_up_when_the_store_opens(tmp_path):
    data = [f"blob {i}".encode() * 10 for i in range(3)]  # fixed: three different prefixes
    digests = [hashlib.sha256(d).hexdigest() for d in data]
    for digest, blob in zip(digests, data, strict=True):  # as the earlier layout stored them
        legacy = tmp_path / "blobs" / digest[:2] / digest[2:4] / digest
        legacy.parent.mkdir(parents=True, exist_ok=True)
        legacy.write_bytes(blob)
    # One of them also under its new name already (a move interrupted after the rename): kept as is.
    current = tmp_path / "blobs" / digests[0][:2] / digests[0]
    current.parent.mkdir(exist_ok=True)
    current.write_bytes(data[0])
    stray = tmp_path / "blobs" / digests[1][:2] / digests[1][2:4] / "not-a-blob"
    stray.write_bytes(b"x")

    store = FilesystemStore(tmp_path)
    for digest, blob in zip(digests, data, strict=True):
        reader = store.open(digest)
        assert reader.read(0, 1000) == blob
        reader.close()
        assert not (tmp_path / "blobs" / digest[:2] / digest[2:4] / digest).exists()
    assert stray.exists()  # what is not a blob of that folder is left where it was, with its folder
    assert not (tmp_path / "blobs" / digests[2][:2] / digests[2][2:4]).exists()
    assert store.blob_count() == 4  # three blobs and the stray file
    # Once moved, the layout file says so: later starts do not walk the blobs again.
    late = tmp_path / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    late.parent.mkdir(parents=True)
    late.write_bytes(b"late")
    FilesystemStore(tmp_path)
    assert late.exists() and store.blob_count() == 5


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


# ------------------------------------------------------------------------------------ direct (O_DIRECT) I/O
BLOCK = 1 << 20


def _direct_in_use(store: FilesystemStore) -> bool:
    writer = store.stage()
    try:
        return bool(writer._blocks)
    finally:
        writer.abort()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
@pytest.mark.parametrize(
    "size",
    [0, 1, 4095, 4096, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345],
    ids=lambda n: f"{n}B",
)
def test_every_size_round_trips_through_both_io_modes(tmp_path, direct, size):
    store = FilesystemStore(tmp_path, direct=direct)
    data = os.urandom(size)
    writer = store.stage()
    # Chunks of awkward sizes, so that blocks fill across chunk boundaries.
    for start in range(0, size, 300_007):
        writer.write_all([data[start : start + 100_003], memoryview(data)[start + 100_003 : start + 300_007]])
    digest, _ = writer.finish()
    assert digest == hashlib.sha256(data).hexdigest() and writer.size == size
    store.commit(writer, digest)
    assert store.blob_path(digest).read_bytes() == data

    reader = store.open(digest)
    try:
        # Whole blocks from the start, then unaligned offsets (a resumed download) and the end.
        received, offset = bytearray(), 0
        while block := reader.read(offset, BLOCK):
            received += block
            offset += len(block)
        assert bytes(received) == data
        for offset in {0, 1, 4095, 4097, size // 2, max(size - 1, 0), size}:
            assert bytes(reader.read(offset, 5000)) == data[offset : offset + 5000]
    finally:
        reader.close()


def test_direct_reads_stay_valid_for_one_read_ahead(tmp_path):
    """Download reads one block ahead: the previous block must survive the next read."""
    store = FilesystemStore(tmp_path)
    data = os.urandom(3 * BLOCK)
    writer = store.stage()
    writer.write(data)
    digest, _ = writer.finish()
    store.commit(writer, digest)
    reader = store.open(digest)
    try:
        first = reader.read(0, BLOCK)
        second = reader.read(BLOCK, BLOCK)
        assert bytes(first) == data[:BLOCK] and bytes(second) == data[BLOCK : 2 * BLOCK]
    finally:
        reader.close()


def test_direct_writes_bypass_the_page_cache_when_the_filesystem_allows(tmp_path):
    store = FilesystemStore(tmp_path)
    if not _direct_in_use(store):
        pytest.skip("this filesystem refuses O_DIRECT (tmpfs): buffered writes are used, as tested above")
    writer = store.stage()
    writer.write(os.urandom(2 * BLOCK))
    # Two whole blocks went to the device: the staged file has its size before finish() writes anything.
    writer._settle()
    assert os.stat(writer.path).st_size == 2 * BLOCK
    writer.abort()
    assert store.staged_count() == 0


def test_abort_during_a_direct_write_waits_for_it_and_leaves_nothing(tmp_path):
    store = FilesystemStore(tmp_path)
    writer = store.stage()
    writer.write_all([os.urandom(BLOCK), b"tail"])  # one block in flight on a disk thread
    writer.abort()
    assert store.staged_count() == 0
    with pytest.raises(ValueError):
        writer.write(b"more")


def test_a_filesystem_that_refuses_direct_io_after_open_gets_buffered_io(tmp_path, monkeypatch):
    """Some layered filesystems accept O_DIRECT at open and refuse the I/O (EINVAL). No such filesystem exists on
    this machine, so the system calls are made to answer EINVAL while the descriptor still has O_DIRECT."""
    import errno
    import fcntl

    store = FilesystemStore(tmp_path)
    if not _direct_in_use(store):
        pytest.skip("this filesystem refuses O_DIRECT at open already: the buffered path is tested above")
    real_pwrite, real_preadv = os.pwrite, os.preadv

    def refusing(real):
        def call(fd, *args):
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real(fd, *args)

        return call

    monkeypatch.setattr(os, "pwrite", refusing(real_pwrite))
    monkeypatch.setattr(os, "preadv", refusing(real_preadv))
    data = os.urandom(2 * BLOCK + 77)
    writer = store.stage()
    writer.write(data)
    digest, _ = writer.finish()
    store.commit(writer, digest)
    assert store.blob_path(digest).read_bytes() == data
    reader = store.open(digest)
    try:
        assert bytes(reader.read(BLOCK - 3, 10)) == data[BLOCK - 3 : BLOCK + 7]
        assert bytes(reader.read(2 * BLOCK, BLOCK)) == data[2 * BLOCK :]
    finally:
        reader.close()
