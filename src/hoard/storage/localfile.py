"""Atomic replacement of a local file: the client caches' one way of saving.

Caches (chunk index, archive records, files cache) live on the client's
disk, outside any Storage. A crash while saving must leave the old file or
the new one, never a torn one: write a temporary file in the same
directory, fsync it, rename it over the target, fsync the directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

T = TypeVar("T")


def write_atomically(path: Path, write: Callable[[BinaryIO], T]) -> T:
    """Replace ``path`` with what ``write`` writes; returns ``write``'s result.

    The temporary file is ``.<name>.tmp-<pid>-<random>`` (hidden, unique per
    writer) and is removed again if anything fails.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        with tmp.open("xb") as f:
            result = write(f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return result
