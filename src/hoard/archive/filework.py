"""Reading one regular file into sealed chunks: the per-file work a worker process does.

``create`` hands small regular files (see :class:`~hoard.archive.filepool.FilePool`)
to worker processes, because the per-file path (open, fstat, xattrs, flags,
sparse probing, read, chunk, hash, compress, seal) is Python work that holds
the GIL: one thread doing it for every file kept hoard at 1,600 files per
second while the other core waited. A worker does all of it for one file
and returns the file's entry and its chunks sealed, ready to be put into a
pack by the main process; it never touches the repository, so a worker that
dies loses nothing and the write order (docs/design/write-order.md) is the
main process's alone.

Everything here is also what the main process does when it reads a file
itself, so the two paths cannot drift apart: :func:`open_noatime`,
:func:`same_object` and ``FILE_FLAGS`` are shared with ``archive/create.py``.

Each worker seals with an ``Envelope`` of its own, i.e. its own session (a
fresh random session id, its own nonce counter; docs/design/crypto.md), so
several processes sealing under one key never reuse a nonce.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from dataclasses import dataclass, field

from hoard.archive.chunker import ChunkerParams, ChunkKind, make_chunker
from hoard.archive.fileread import ReadStats, read_fragments
from hoard.archive.items import ZERO_ID, Entry
from hoard.archive.metadata import ReadOptions, entry_from_stat, read_flags, read_xattrs
from hoard.objects.compression import CompressionSpec, compress
from hoard.objects.envelope import Envelope
from hoard.objects.ids import IdHasher
from hoard.objects.keys import KeyMaterial
from hoard.objects.types import ObjectType

FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
"""How a regular file is opened for reading: never through a symlink, never
blocking on a FIFO that replaced it, never becoming the controlling terminal."""


def open_noatime(path: bytes, flags: int) -> int:
    """Open without updating atime where permitted (only the owner may ask for that)."""
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        try:
            return os.open(path, flags | noatime)
        except PermissionError:
            pass
    return os.open(path, flags)


def same_object(before: os.stat_result, now: os.stat_result) -> bool:
    """Borg's ``stat_update_check``: the open file is the one listed (type and inode)."""
    return stat.S_IFMT(before.st_mode) == stat.S_IFMT(now.st_mode) and before.st_ino == now.st_ino


def read_entry(name: bytes, st: os.stat_result, fd: int, options: ReadOptions) -> Entry:
    """Metadata of an open item: stat fields, xattrs and ACLs, inode flags.

    ``OSError`` from reading the xattrs propagates (the caller names the step).
    """
    entry = entry_from_stat(name, st, options)
    entry.xattrs = read_xattrs(fd, options)
    if options.flags:
        entry.flags = read_flags(fd)
    return entry


@dataclass(frozen=True)
class ReaderSetup:
    """What a worker needs to turn files into sealed chunks (sent once, at its start)."""

    key: KeyMaterial
    compression: CompressionSpec
    chunker: ChunkerParams
    read: ReadOptions
    sparse: bool
    parent: int = field(default_factory=os.getpid)
    """The main process: a worker ends when it is gone (see :func:`start_worker`)."""


@dataclass(frozen=True, slots=True)
class FileJob:
    """One regular file: its path, its name in its directory, its lstat; ``read``
    False for a file the files cache knows (only opened and described)."""

    path: bytes
    name: bytes
    st: os.stat_result
    read: bool = True

    def __reduce__(self) -> tuple[type[FileJob], tuple[bytes, bytes, os.stat_result, bool]]:
        """Pickled as a tuple: a frozen slots dataclass's default pickling calls
        ``dataclasses.fields`` for every object (3x slower)."""
        return (FileJob, (self.path, self.name, self.st, self.read))


@dataclass(frozen=True, slots=True)
class SealedChunk:
    """A chunk of a file: its id and plaintext size, and the sealed blob
    (None for a zero run or a hole, which is stored as nothing)."""

    id: bytes
    size: int
    blob: bytes | None

    def __reduce__(self) -> tuple[type[SealedChunk], tuple[bytes, int, bytes | None]]:
        """As ``FileJob.__reduce__``: the result thread unpickles one per chunk."""
        return (SealedChunk, (self.id, self.size, self.blob))


@dataclass
class ReadOutcome:
    """What reading one file gave: its entry and chunks, or why it could not be read.

    ``failure`` is the step that failed and its ``OSError`` (``race``: the
    path turned into another object since it was listed); then ``entry`` is
    None. ``st`` is the fstat taken before reading (what the files cache
    remembers); ``changed``: the ctime moved while the file was read.
    """

    entry: Entry | None = None
    st: os.stat_result | None = None
    chunks: list[SealedChunk] = field(default_factory=list)
    changed: bool = False
    failure: tuple[str, OSError] | None = None
    race: bool = False
    bytes_read: int = 0
    reads: int = 0
    hole_bytes: int = 0


class FileReader:
    """Reads files into sealed chunks under one key and one envelope session."""

    def __init__(self, setup: ReaderSetup) -> None:
        self.setup = setup
        self._chunker = make_chunker(setup.chunker, setup.key.chunker_key)
        self._hasher = IdHasher.from_key(setup.key)
        self._envelope = Envelope.from_key(setup.key)

    def read(self, job: FileJob) -> ReadOutcome:
        """Open, check, describe, read, chunk and seal one regular file."""
        try:
            fd = open_noatime(job.path, FILE_FLAGS)
        except OSError as exc:
            return ReadOutcome(failure=("open", exc))
        try:
            return self._read_open(job, fd)
        finally:
            os.close(fd)

    def _read_open(self, job: FileJob, fd: int) -> ReadOutcome:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            return ReadOutcome(failure=("fstat", exc))
        if not same_object(job.st, st):
            return ReadOutcome(race=True)
        try:
            entry = read_entry(job.name, st, fd, self.setup.read)
        except OSError as exc:
            return ReadOutcome(failure=("xattrs", exc))
        if not job.read:
            return ReadOutcome(entry, st)
        stats = ReadStats()
        try:
            chunks = self._chunks(fd, stats)
            after = os.fstat(fd)
        except OSError as exc:
            return ReadOutcome(failure=("read", exc))
        return ReadOutcome(
            entry,
            st,
            chunks,
            changed=after.st_ctime_ns != st.st_ctime_ns,
            bytes_read=stats.bytes_read,
            reads=stats.reads,
            hole_bytes=stats.hole_bytes,
        )

    def _chunks(self, fd: int, stats: ReadStats) -> list[SealedChunk]:
        sealed: list[SealedChunk] = []
        fragments = read_fragments(fd, sparse=self.setup.sparse, stats=stats)
        for chunk in self._chunker.chunks(fragments):
            if chunk.kind is not ChunkKind.DATA or chunk.data is None:
                sealed.append(SealedChunk(ZERO_ID, chunk.size, None))
                continue
            id_ = self._hasher.id_of(chunk.data)
            payload = compress(self.setup.compression, chunk.data)
            blob = self._envelope.seal(ObjectType.DATA, id_, payload)
            sealed.append(SealedChunk(id_, len(chunk.data), blob))
        return sealed


_reader: FileReader | None = None
"""The worker process's reader (set by :func:`start_worker`)."""


def start_worker(setup: ReaderSetup) -> None:
    """Initialiser of a worker process.

    A Ctrl-C in the terminal reaches the whole process group: the main
    process handles it (a checkpoint, then a clean stop); a worker that died
    of it would only turn that into a broken pool.

    A worker also ends when the main process is gone: after a SIGKILL (the
    OOM killer, a cron timeout) nothing tells it so, as it holds both ends
    of the pool's queues, and it would wait for work forever, holding the
    terminal's or the caller's stdout and stderr open.
    """
    global _reader
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _reader = FileReader(setup)
    threading.Thread(target=_exit_with_parent, args=(setup.parent,), daemon=True).start()


PARENT_POLL = 0.2
"""Seconds between a worker's checks that the main process is still there."""


def _exit_with_parent(parent: int) -> None:
    # Compared with the pid the main process gave, not with this process's
    # first getppid(): a main process killed while the worker started up
    # has already been replaced by init (or a subreaper) by then.
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


def read_batch(jobs: list[FileJob]) -> list[ReadOutcome]:
    """The work of one batch in a worker process (see :func:`start_worker`)."""
    assert _reader is not None, "start_worker() runs first in every worker"
    return [_reader.read(job) for job in jobs]
