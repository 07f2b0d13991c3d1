"""Fewer malloc arenas for the worker process.

glibc gives each thread that finds the heap busy an arena of its own, up to eight per CPU.
With sixteen lanes allocating JSON bodies and SQLite pages, the arenas fragment, and RSS
creeps up for as long as the worker runs. Two arenas (what ``MALLOC_ARENA_MAX=2`` does) keep
it flat at no cost we could measure: the lanes run one at a time under the GIL anyway.
bench/throughput.py (d), RSS after 10,000 and 50,000 events: 65.0 -> 68.2 MB (+4.9 %) with
glibc's default, 62.5 -> 63.8 MB (+2.1 %) with two arenas.

It must run before any thread starts. A ``MALLOC_ARENA_MAX`` in the environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(count: int = 2) -> bool:
    """True if glibc took the limit; False elsewhere (musl, macOS) or when the environment
    already set one."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_ARENA_MAX, count) == 1
