"""One malloc arena for the process, not one per thread.

glibc gives each thread that allocates its own arena (up to eight per
core), and memory freed into one arena is not reused by the others. A
backup moves every chunk through several threads (chunking, compression
and encryption, the store thread, the file pool's result thread), so
freed chunk buffers pile up in arenas that others cannot use. Measured on
a first backup of 50,000 files (docs/performance.md): peak RSS 248 MiB
with glibc's default, 190 MiB with one arena, and no slower, since the
threads spend their time in GIL-free library calls, not in malloc.

``MALLOC_ARENA_MAX`` in the environment still wins: glibc reads it at
start-up, and we do not override a choice the user made.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 1


def limit_arenas(count: int = ARENAS) -> bool:
    """Ask glibc for at most ``count`` arenas; True if it agreed.

    Call before the first thread starts: arenas made before stay. Does
    nothing on other systems and C libraries (no ``mallopt``, or it refuses).
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, count))
