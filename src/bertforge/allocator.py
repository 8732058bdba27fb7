"""glibc's allocator, from Python: hand freed memory back to the system.

Torch allocates every CPU tensor with ``malloc`` and frees it as soon as the last reference goes. Batches of
ever-different shapes leave freed blocks scattered through glibc's heaps, and glibc keeps them: a server's RSS
creeps up for as long as it runs. ``trim`` (``malloc_trim(0)``) returns them; the server's model thread calls it
now and then (``serve/batcher.py``). A no-op where the C library is not glibc.

Training uses none of this: keeping freed memory for it instead, as jemalloc would (higher mmap and trim
thresholds, or mmap off), cut page faults and system time but not a fine-tuning run's wall time
(docs/speed.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def available() -> bool:
    """Whether this process's C library has ``malloc_trim`` (glibc)."""
    return _glibc() is not None


def trim() -> bool:
    """Hand the free memory of every heap back to the system; False where that cannot be done."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
