"""Sparse-aware reading of a file into data and hole fragments.

``read_fragments`` asks the file system where the data is (``SEEK_DATA`` /
``SEEK_HOLE``) and reads only that: a hole is reported by its length and
never read, so a 100 GiB mostly-empty disk image costs what its data costs.
Where the file system, the platform or the file (a pipe, a ``/proc`` file)
cannot answer, the file is read from start to end. Only regular files with a
known size are asked: devices (``/dev/null`` answers 0 to every seek), FIFOs
and files that report size 0 but have content are read plainly, and a sparse
read that stops making progress falls back to plain reading as well.

The chunker (``hoard.archive.chunker``) consumes the fragments; any iterable
of byte strings can be turned into fragments with ``as_fragments``.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

DEFAULT_BUFFER_SIZE = 8 * 1024 * 1024

# lseek errors that mean "this file or file system cannot report holes".
_NO_HOLE_SUPPORT = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ESPIPE, errno.ENOTSUP})


class FragmentKind(enum.Enum):
    """What a fragment is: bytes read from the file, or a hole that was not read."""

    DATA = "data"
    HOLE = "hole"


@dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of a file in file order: ``size`` bytes of data, or a hole of ``size`` bytes.

    ``data`` is the bytes read for a DATA fragment and None for a HOLE
    (whose content is zeros by definition).
    """

    kind: FragmentKind
    size: int
    data: bytes | None = None

    @classmethod
    def of_data(cls, data: bytes) -> Fragment:
        """A DATA fragment holding ``data`` (not copied: pass immutable bytes)."""
        return cls(FragmentKind.DATA, len(data), data)

    @classmethod
    def hole(cls, size: int) -> Fragment:
        """A HOLE fragment of ``size`` > 0 bytes."""
        if size <= 0:
            raise ValueError(f"a hole must have a positive size, got {size}")
        return cls(FragmentKind.HOLE, size)


@dataclass
class ReadStats:
    """What reading cost: bytes actually read, read calls, hole bytes skipped.

    One instance may be shared by several reader threads (updates take a
    lock) and across files, so a whole backup can prove what it did not read.
    """

    bytes_read: int = 0
    reads: int = 0
    hole_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_read(self, size: int) -> None:
        """Count one read call that returned ``size`` bytes."""
        with self._lock:
            self.bytes_read += size
            self.reads += 1

    def add_hole(self, size: int) -> None:
        """Count ``size`` bytes of hole that were skipped, not read."""
        with self._lock:
            self.hole_bytes += size

    def merge(self, bytes_read: int, reads: int, hole_bytes: int) -> None:
        """Add the figures of a read done elsewhere (a file pool worker)."""
        with self._lock:
            self.bytes_read += bytes_read
            self.reads += reads
            self.hole_bytes += hole_bytes


def as_fragments(items: Iterable[Fragment | bytes | bytearray | memoryview]) -> Iterator[Fragment]:
    """Pass fragments through and wrap byte strings as DATA fragments.

    Mutable buffers are copied to ``bytes``, because chunks may keep views of
    the data after the iterator moved on. Empty byte strings are dropped.
    """
    for item in items:
        if isinstance(item, Fragment):
            yield item
        elif len(item):
            yield Fragment.of_data(item if type(item) is bytes else bytes(item))


def read_fragments(
    fd: int,
    *,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    sparse: bool = True,
    stats: ReadStats | None = None,
) -> Iterator[Fragment]:
    """Yield the content of ``fd`` from its current offset to its end as fragments.

    DATA fragments hold at most ``buffer_size`` bytes each. With ``sparse``
    and a file system that reports holes, holes become HOLE fragments and
    are not read; otherwise everything is read (fragments are then DATA
    only). The file offset of ``fd`` is unspecified afterwards. ``stats``, if
    given, is updated as the reading goes on. ``OSError`` from reading
    propagates. A file that shrinks while being read ends early; one that
    grows is read as far as it reaches when its end is looked up.
    """
    if buffer_size <= 0:
        raise ValueError(f"buffer_size must be positive, got {buffer_size}")
    stats = ReadStats() if stats is None else stats
    start = _position(fd) if sparse and _may_have_holes(fd) else None
    if start is not None and _next_data(fd, start) is not None:
        yield from _read_sparse(fd, start, buffer_size, stats)
    else:
        yield from _read_plain(fd, buffer_size, stats)


def _may_have_holes(fd: int) -> bool:
    """Whether asking ``fd`` for holes makes sense: a regular file of known size.

    Devices, FIFOs and sockets answer ``SEEK_DATA``/``SEEK_HOLE`` with
    nonsense (``/dev/null`` says 0 to both) or not at all, and a file whose
    size is 0 (pseudo file systems) would look like it had no data.
    """
    if not hasattr(os, "SEEK_DATA"):
        return False
    st = os.fstat(fd)
    return stat.S_ISREG(st.st_mode) and st.st_size > 0


def _position(fd: int) -> int | None:
    """The current offset of ``fd``, or None if it cannot seek (pipe, socket, tty)."""
    try:
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError as exc:
        if exc.errno in _NO_HOLE_SUPPORT:
            return None
        raise


def _next_data(fd: int, offset: int) -> int | None:
    """Where data starts at or after ``offset``: ``-1`` if only hole follows, None if unknown.

    None means the file system (or the file) cannot report holes at all.
    """
    try:
        return os.lseek(fd, offset, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data after offset: hole (or nothing) to the end
            return -1
        if exc.errno in _NO_HOLE_SUPPORT:
            return None
        raise


def _read_sparse(fd: int, pos: int, buffer_size: int, stats: ReadStats) -> Iterator[Fragment]:
    """Read the data regions from ``pos`` on and report the holes between them.

    Every round must move ``pos`` forward; if the file system's answers do
    not (a data region that ends where it starts, though the file was not
    truncated), the rest is read plainly instead of asking again forever.
    """
    while True:
        round_start = pos
        data_start = _next_data(fd, pos)
        if data_start is None:  # cannot happen after a successful probe; read what is left
            yield from _read_range(fd, pos, None, buffer_size, stats)
            return
        if data_start < 0:
            end = os.fstat(fd).st_size
            if end > pos:
                stats.add_hole(end - pos)
                yield Fragment.hole(end - pos)
            return
        if data_start > pos:
            stats.add_hole(data_start - pos)
            yield Fragment.hole(data_start - pos)
            pos = data_start
        data_end = _next_hole(fd, pos)
        for fragment in _read_range(fd, pos, data_end, buffer_size, stats):
            pos += fragment.size
            yield fragment
        if pos < data_end:  # the file shrank under us
            return
        if pos == round_start:  # no progress: do not trust SEEK_DATA/SEEK_HOLE any more
            yield from _read_range(fd, pos, None, buffer_size, stats)
            return


def _next_hole(fd: int, offset: int) -> int:
    """Where the data region at ``offset`` ends; ``offset`` itself if the file ended before."""
    try:
        return os.lseek(fd, offset, os.SEEK_HOLE)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # truncated since SEEK_DATA: nothing left to read
            return offset
        raise


def _read_range(
    fd: int, start: int, end: int | None, buffer_size: int, stats: ReadStats
) -> Iterator[Fragment]:
    """Read bytes ``[start, end)`` (to end of file if ``end`` is None) with ``pread``.

    Stops early at end of file.
    """
    pos = start
    while end is None or pos < end:
        want = buffer_size if end is None else min(buffer_size, end - pos)
        data = os.pread(fd, want, pos)
        stats.add_read(len(data))
        if not data:
            return
        pos += len(data)
        yield Fragment.of_data(data)


def _read_plain(fd: int, buffer_size: int, stats: ReadStats) -> Iterator[Fragment]:
    """Read ``fd`` sequentially to its end, holes and all."""
    while True:
        data = os.read(fd, buffer_size)
        stats.add_read(len(data))
        if not data:
            return
        yield Fragment.of_data(data)
