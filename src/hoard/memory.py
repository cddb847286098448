"""How the process manages its memory: one malloc arena, a patient collector.

Set once by the console script, before any thread starts
(``hoard.cli.entry``), because both are process-wide.

**One malloc arena, not one per thread.** glibc gives each thread that
allocates its own arena (up to eight per core), and memory freed into one
arena is not reused by the others. A backup moves every chunk through
several threads (chunking, compression and encryption, the store thread,
the file pool's result thread), so freed chunk buffers pile up in arenas
that others cannot use. Measured on a first backup of 50,000 files
(docs/design/create-pipeline.md, "Bounds"): peak RSS 248 MiB with glibc's
default, 190 MiB with one arena, and no slower, since the threads spend
their time in GIL-free library calls, not in malloc.
``MALLOC_ARENA_MAX`` in the environment still wins: glibc reads it at
start-up, and we do not override a choice the user made.

**The cyclic garbage collector runs 285 times less often.** Its default
first threshold (700 container allocations) makes it run every few files
of a backup, and each run of the older generations walks every live
object, of which a backup holds many (pending entries, directory nodes,
futures). A ``py-spy --native --gil`` profile of a first backup of 63,000
small files put 29 % of all the time the GIL was held in
``gc_collect_main`` (57 % of the file pool's result thread, which
unpickles the workers' results). With a first threshold of 200,000 the
same backup took 7.5 s instead of 9.4 s (median of 5 side by side) with
the same peak RSS: hoard makes few reference cycles, and those are still
collected, only later.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

_M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 1
YOUNG_THRESHOLD = 200_000
"""Container allocations (net of frees) between two young collections."""


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


def tune_collector(young: int = YOUNG_THRESHOLD) -> None:
    """Collect cycles after ``young`` allocations instead of 700; the older
    generations keep their ratios (every 10th collection of the one below)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


def configure_process() -> None:
    """Both settings above, for a hoard process (its first thing to do)."""
    limit_arenas()
    tune_collector()
