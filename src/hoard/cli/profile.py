"""``--debug-profile FILE``: run the command under cProfile, as Borg does.

The profile is written when the command ends (also after an error): as
msgpack of ``cProfile``'s stats (Borg's format, safe to share), or, when
FILE ends in ``.pyprof``, in marshal format that ``pstats`` and
pyprof2calltree read directly. The file is opened first, so a path that
cannot be written fails before any work is done.
"""

from __future__ import annotations

import cProfile
import marshal
from collections.abc import Callable
from typing import TypeVar

import msgpack

from hoard.errors import CommandError

T = TypeVar("T")


def run_profiled(path: str, work: Callable[[], T]) -> T:
    """``work()`` under cProfile; its stats go to ``path``."""
    try:
        out = open(path, "wb")  # noqa: SIM115 - closed below, after the work
    except OSError as exc:
        raise CommandError(f"cannot write the profile to {path}: {exc.strerror}") from None
    with out:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return work()
        finally:
            profiler.disable()
            profiler.create_stats()
            stats = profiler.stats
            if path.endswith(".pyprof"):
                marshal.dump(stats, out)
            else:
                msgpack.pack(stats, out, use_bin_type=True)
