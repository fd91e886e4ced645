"""``python -m services.storage``: run one organization's storage service."""

import ctypes

# glibc's malloc, set before anything allocates much. Every file chunk is a short-lived 256 KiB buffer
# (gRPC's received messages, the encoded messages sent):
# - a fixed mmap threshold of 1 MiB keeps them in the heap, where freed chunks are reused at once; at
#   256 KiB (the previous setting) each chunk was a fresh mmap whose pages the kernel faults in and
#   zeroes: in a bare gRPC harness that alone halved a download's rate (~970 → ~480 MB/s);
# - a trim threshold of 2 MiB returns the heap's free top to the system promptly (the default grows);
# - at most two arenas, instead of eight per core, for gRPC's, asyncio's and the database's threads.
# Measured (1 GiB up and down, three rounds): peak 94-96 MB, against 99-116 MB with a 16 MiB threshold
# at the same speed (docs/benchmarks.md).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
try:
    _libc = ctypes.CDLL(None)
    _libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    _libc.mallopt(M_TRIM_THRESHOLD, 2 << 20)
    _libc.mallopt(M_ARENA_MAX, 2)
except (OSError, AttributeError):  # not glibc: its defaults apply
    pass

from services.kit.app import main  # noqa: E402 - after the allocator is set
from services.storage.bootstrap import build  # noqa: E402
from services.storage.settings import StorageSettings  # noqa: E402

if __name__ == "__main__":
    main(StorageSettings, build)
