"""``python -m services.storage``: run one organization's storage service."""

import ctypes

# glibc's malloc, set before anything allocates much. Every file chunk is a short-lived 256 KiB buffer:
# - a fixed mmap threshold (256 KiB) keeps them out of the heap (the default threshold rises to the
#   largest freed block, after which each thread's arena keeps megabytes it never returns);
# - at most two arenas, instead of eight per core, for gRPC's, asyncio's and the database's threads.
# Measured with 256 KiB chunks (1 GiB up and down): a peak of 102-103 MB instead of 112-126 MB.
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8
try:
    _libc = ctypes.CDLL(None)
    _libc.mallopt(M_MMAP_THRESHOLD, 256 * 1024)
    _libc.mallopt(M_ARENA_MAX, 2)
except (OSError, AttributeError):  # not glibc: its defaults apply
    pass

from services.kit.app import main  # noqa: E402 - after the allocator is set
from services.storage.bootstrap import build  # noqa: E402
from services.storage.settings import StorageSettings  # noqa: E402

if __name__ == "__main__":
    main(StorageSettings, build)
