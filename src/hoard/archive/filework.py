"""Reading one regular file into sealed chunks: the per-file work a worker process does.

``create`` hands small regular files (see :class:`~hoard.archive.filepool.FilePool`)
to worker processes, because the per-file path (open, fstat, xattrs, flags,
sparse probing, read, chunk, hash, compress, seal) is Python work that holds
the GIL: one thread doing it for every file kept hoard at 1,600 files per
second while the other core waited. A worker does all of it for one file
and, on a local repository, stores the chunks into packs of its own
(:class:`~hoard.repository.writer.SessionWriter`) and returns only the file's
entry and chunk list: the main process's GIL is then spent on the walk, not
on unpickling chunks and writing packs. The main process decides when a
worker flushes (before every archive record) and alone writes records, so
the write order (docs/design/write-order.md) holds; a worker that dies loses
only packs no index file names yet, and fails the backup. On another storage
(in memory; not shared between processes) a worker returns its chunks sealed
and the main process puts them into its packs.

Everything here is also what the main process does when it reads a file
itself, so the two paths cannot drift apart: :func:`open_noatime`,
:func:`same_object` and ``FILE_FLAGS`` are shared with ``archive/create.py``.

Each worker seals with an ``Envelope`` of its own, i.e. its own session (a
fresh random session id, its own nonce counter; docs/design/crypto.md), so
several processes sealing under one key never reuse a nonce.
"""

from __future__ import annotations

import os
import pickle
import signal
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from hoard.archive.chunker import ChunkerParams, ChunkKind, make_chunker
from hoard.archive.fileread import ReadStats, read_fragments
from hoard.archive.items import ZERO_ID, Entry
from hoard.archive.metadata import ReadOptions, entry_from_stat, read_flags, read_xattrs
from hoard.objects.compression import CompressionSpec, compress
from hoard.objects.envelope import Envelope
from hoard.objects.ids import IdHasher
from hoard.objects.keys import KeyMaterial
from hoard.objects.store import PutResult
from hoard.objects.types import ObjectType
from hoard.repository.chunkindex import KnownIds
from hoard.repository.config import RepoConfig
from hoard.repository.repository import guarded_storage
from hoard.repository.sharedquota import SharedTotal, share_quota
from hoard.repository.writer import IndexFileData, SessionWriter
from hoard.storage.local import LocalStorage

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


def same_object(before: os.stat_result | Listed, now: os.stat_result) -> bool:
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
class StoreSetup:
    """How a worker writes packs of its own into a local repository."""

    root: str
    """The repository directory (``LocalStorage``)."""
    config: RepoConfig
    """Its config: the same guards (append-only, quota) and pack size as the main process's."""
    known: str | None
    """A ``KnownIds`` file: the chunk index when the pool started."""
    quota: SharedTotal | None = None
    """The storage quota's running total, shared with the main process (a
    ``multiprocessing.Value``: passed at the worker's start, never pickled later)."""


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
    store: StoreSetup | None = None
    """Where the worker stores chunks itself; None: it returns them sealed."""


@dataclass(frozen=True, slots=True)
class Listed:
    """What a worker needs of the walker's lstat of a file: type and inode (the
    race check, :func:`same_object`) and size."""

    st_mode: int
    st_ino: int
    st_size: int


@dataclass(frozen=True, slots=True)
class FileJob:
    """One regular file: its path, its name in its directory, its lstat; ``read``
    False for a file the files cache knows (only opened and described)."""

    path: bytes
    name: bytes
    st: os.stat_result | Listed
    read: bool = True

    def __reduce__(
        self,
    ) -> tuple[Callable[..., FileJob], tuple[bytes, bytes, int, int, int, bool]]:
        """Pickled as a flat tuple, the lstat cut to what the worker uses: a
        pickled ``os.stat_result`` is 250 bytes and cost the walker thread more
        than a microsecond per file (a tenth of its GIL time on a tree of small
        files), a frozen slots dataclass's default pickling three times that."""
        st = self.st
        return (_job, (self.path, self.name, st.st_mode, st.st_ino, st.st_size, self.read))


def _job(path: bytes, name: bytes, mode: int, ino: int, size: int, read: bool) -> FileJob:
    """A pickled ``FileJob`` (see ``FileJob.__reduce__``)."""
    return FileJob(path, name, Listed(mode, ino, size), read)


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
    """Sealed chunks for the main process to store (no ``StoreSetup``)."""
    stored: list[PutResult] = field(default_factory=list)
    """Chunks the worker stored or found known (with a ``StoreSetup``)."""
    changed: bool = False
    failure: tuple[str, OSError] | None = None
    race: bool = False
    bytes_read: int = 0
    reads: int = 0
    hole_bytes: int = 0


class FileReader:
    """Reads files into sealed chunks under one key and one envelope session,
    storing them with ``writer`` when given."""

    def __init__(self, setup: ReaderSetup, writer: SessionWriter | None = None) -> None:
        self.setup = setup
        self.writer = writer
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
        stored: list[PutResult] = []
        try:
            if self.writer is None:
                chunks = self._chunks(fd, stats)
            else:
                chunks, stored = [], self._store_chunks(fd, stats, self.writer)
            after = os.fstat(fd)
        except OSError as exc:
            return ReadOutcome(failure=("read", exc))
        return ReadOutcome(
            entry,
            st,
            chunks,
            stored,
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

    def _store_chunks(self, fd: int, stats: ReadStats, writer: SessionWriter) -> list[PutResult]:
        """Chunk, and store what the repository lacks: a chunk known (before the
        backup, or stored by this worker or one it heard of) is neither
        compressed nor sealed, which the main process's store never saved."""
        stored: list[PutResult] = []
        fragments = read_fragments(fd, sparse=self.setup.sparse, stats=stats)
        for chunk in self._chunker.chunks(fragments):
            if chunk.kind is not ChunkKind.DATA or chunk.data is None:
                stored.append(PutResult(ZERO_ID, chunk.size, 0, False))
                continue
            id_ = self._hasher.id_of(chunk.data)
            known = writer.stored_size(id_)
            if known is not None:
                stored.append(PutResult(id_, len(chunk.data), known, False))
                continue
            payload = compress(self.setup.compression, chunk.data)
            blob = self._envelope.seal(ObjectType.DATA, id_, payload)
            writer.put(id_, blob)
            stored.append(PutResult(id_, len(chunk.data), len(blob), True))
        return stored


def open_writer(store: StoreSetup) -> SessionWriter:
    """The worker's own write session on the repository, through the guards the
    main process's goes through (append-only, quota; the quota's total shared)."""
    storage = guarded_storage(LocalStorage(store.root), store.config)
    if store.quota is not None:
        storage = share_quota(storage, store.config.storage_quota, store.quota, publish=False)
    known = KnownIds.open(Path(store.known)) if store.known is not None else None
    return SessionWriter(storage, store.config.pack_size, known)


def start_worker(setup: ReaderSetup) -> FileReader:
    """Set up a worker process; returns its reader.

    A Ctrl-C in the terminal reaches the whole process group: the main
    process handles it (a checkpoint, then a clean stop); a worker that died
    of it would only turn that into a broken pool.

    A worker also ends when the main process is gone: after a SIGKILL (the
    OOM killer, a cron timeout) nothing tells it so, as it holds both ends
    of the pool's queues, and it would wait for work forever, holding the
    terminal's or the caller's stdout and stderr open.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(setup.parent,), daemon=True).start()
    writer = open_writer(setup.store) if setup.store is not None else None
    return FileReader(setup, writer)


PARENT_POLL = 0.2
"""Seconds between a worker's checks that the main process is still there."""


def _exit_with_parent(parent: int) -> None:
    # Compared with the pid the main process gave, not with this process's
    # first getppid(): a main process killed while the worker started up
    # has already been replaced by init (or a subreaper) by then.
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


BATCH = "batch"
"""Request ``(BATCH, seq, jobs, learned)``: read these files (``learned``: blobs
other workers stored meanwhile, as (id, length)); the reply is their outcomes."""
FLUSH = "flush"
"""Request ``(FLUSH, seq)``: store the pending pack and an index file; the reply
is the index file (name, bytes) or None."""
STOP = "stop"
"""Request ``(STOP,)``: end (nothing more is sent)."""

Reply = tuple[int, bool, "list[ReadOutcome] | IndexFileData | BaseException | None"]
"""``(seq, ok, value)``: the result of request ``seq``, or (not ok) what it raised."""


def worker_main(setup: ReaderSetup, conn: Connection) -> None:
    """A worker process: answer requests from the pool in the order they come.

    A failure to set up (the known-ids view, the storage) is the answer to every
    request, so the main process reports it as it would any worker error.
    """
    reader: FileReader | BaseException
    try:
        reader = start_worker(setup)
    except Exception as exc:
        reader = exc
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the main process closed its end or is gone
            return
        if request[0] == STOP:
            return
        conn.send(_answer(reader, request))


def _answer(reader: FileReader | BaseException, request: tuple[object, ...]) -> Reply:
    seq = request[1]
    assert isinstance(seq, int)
    try:
        if isinstance(reader, BaseException):
            raise reader
        if request[0] == BATCH:
            _, _, jobs, learned = request
            if reader.writer is not None and learned:
                reader.writer.learn(learned)  # type: ignore[arg-type]
            return seq, True, [reader.read(job) for job in jobs]  # type: ignore[attr-defined]
        if reader.writer is None:
            return seq, True, None
        return seq, True, reader.writer.flush()
    except Exception as exc:
        return seq, False, transportable(exc)


def transportable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (the main process raises it as it is,
    keeping its exit code: a quota, a full disk), else its description."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
