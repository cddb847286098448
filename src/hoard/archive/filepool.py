"""Small regular files read, chunked, sealed and stored on worker processes.

Stages (docs/design/create-pipeline.md): the walker (``Creator``, main
thread) submits a :class:`FileJob` per small file and goes on walking; jobs
are batched (many small files per message, so the cost of a message is
shared) and sent to the worker with the fewest batches outstanding. On a
local repository a worker stores the chunks itself, into packs of its own
(``filework.worker_main``, ``repository.writer.SessionWriter``), and answers
with the files' entries and chunk lists only; elsewhere it answers with the
chunks sealed and this process puts them. A receiver thread of this process
completes the batches in sending order (a directory then waits for its last
file only) and tells the repository which blobs the workers stored
(``Repository.note_stored``), so the rest of this process deduplicates
against them.

Write order: every ``Repository.flush`` (so every archive record, checkpoints
included) first has each worker store its pending pack and an index file,
and adopts those index files (``Repository.attach_writers``): a record never
names a blob whose pack and index file are not stored.

Back-pressure: at most ``max_inflight_bytes`` of file data (by the files'
sizes) is submitted and not yet answered; ``flush`` blocks the walker beyond
that, so memory is bounded by bytes, not by counts. A batch holds at most
``batch_files`` files and ``batch_bytes`` bytes.

Deduplication between workers: each worker checks the chunk index as it was
when the pool started (a ``KnownIds`` file every worker maps), the blobs it
stored, and the blobs the others stored, which this process passes on with
every batch it sends. Two workers reading the same new chunk at the same time
both store it (both copies are valid; the statistics count it once).

The pool is started lazily, at the first batch, so a backup of a few files
never pays for starting processes (``spawn``: a clean interpreter, safe
although this process runs threads already; a worker costs ~0.1 s to start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hoard.archive.filework import (
    BATCH,
    FLUSH,
    STOP,
    FileJob,
    ReaderSetup,
    ReadOutcome,
    Reply,
    StoreSetup,
    worker_main,
)
from hoard.archive.pipeline import ByteBudget, ChunkResult
from hoard.errors import BackupInterrupted, FileReaderFailed
from hoard.objects.store import ObjectStore
from hoard.storage.local import LocalStorage

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from hoard.repository.writer import IndexFileData
    from hoard.storage.base import Storage

logger = logging.getLogger(__name__)

DEFAULT_BATCH_FILES = 64
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_INFLIGHT_BYTES = 16 * 1024 * 1024
DEFAULT_START_AFTER = 500
SMALL_FILE_LIMIT = 4 * 1024 * 1024
"""Files up to this size go to the workers; larger ones are read by the walker
thread, whose chunk pipeline keeps the cores busy on their big chunks already."""
KNOWN_IDS_PREFIX = "known-ids."
"""Name of the pool's ``KnownIds`` file in its scratch directory, before the pid."""
ADOPT_EVERY = 100_000
"""New blobs the workers may have stored before their index files are adopted."""
LEARNED_TRIM = 4096
"""Blobs all workers have been told of are dropped from the pool's list in runs of this many."""
STOP_TIMEOUT = 10.0
"""Seconds a worker gets to end after ``STOP`` before it is killed."""


def default_workers() -> int:
    """One worker per core the process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class StoredFile:
    """A file read by a worker, its chunks in the repository (pending until flushed)."""

    outcome: ReadOutcome
    results: list[ChunkResult] = field(default_factory=list)


@dataclass(eq=False)
class _Batch:
    """Files sent to a worker together; one future for all (cheaper than one each).
    Batches complete in the order they were sent."""

    seq: int
    jobs: list[FileJob] = field(default_factory=list)
    future: Future[list[StoredFile]] = field(default_factory=Future)
    size: int = 0
    finished: bool = False
    """Set after ``future`` completes: read without taking the future's lock
    (the walker asks after every item)."""


@dataclass(frozen=True, eq=False, slots=True)
class FileTicket:
    """The claim on one submitted file's result."""

    batch: _Batch
    index: int

    @property
    def future(self) -> Future[list[StoredFile]]:
        """Done when the file (and the others of its batch) is stored."""
        return self.batch.future

    def done(self) -> bool:
        return self.batch.finished

    def wait(self) -> None:
        """Until done (the batch must be sent); a failure is raised by :meth:`result`."""
        self.batch.future.exception()

    def result(self) -> StoredFile:
        """The stored file (waits; raises what failed the batch). The batch must be
        sent: :meth:`FilePool.flush` before waiting for a file just submitted."""
        return self.batch.future.result()[self.index]


@dataclass(eq=False)
class _Worker:
    """One worker process and this process's end of its pipe."""

    number: int
    process: BaseProcess
    conn: Connection
    outstanding: int = 0
    """Requests sent and not answered."""
    learned: int = 0
    """How much of the pool's ``_learned`` list it was sent."""
    alive: bool = True


@dataclass(eq=False)
class _Request:
    """A request waiting for its reply: a batch (with its cost) or a flush."""

    worker: _Worker
    batch: _Batch | None = None
    cost: int = 0
    flushed: Future[IndexFileData | None] = field(default_factory=Future)


class FilePool:
    """Worker processes reading small files; ``submit`` from one thread only.

    ``scratch``: a directory of this machine for the pool's ``KnownIds`` file
    (the repository's local cache directory; default the temporary directory).
    """

    def __init__(
        self,
        store: ObjectStore,
        setup: ReaderSetup,
        *,
        workers: int | None = None,
        batch_files: int = DEFAULT_BATCH_FILES,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
        start_after: int = DEFAULT_START_AFTER,
        small_file_limit: int = SMALL_FILE_LIMIT,
        scratch: Path | None = None,
    ) -> None:
        self._store = store
        self._setup = setup
        self._workers_wanted = workers or default_workers()
        self._batch_files = batch_files
        self._batch_bytes = batch_bytes
        self._budget = ByteBudget(max_inflight_bytes)
        self._start_after = start_after
        self._small_file_limit = small_file_limit
        self._scratch = scratch
        self._known_path: Path | None = None
        self._seq = 0
        self._batch = _Batch(0)
        self._last_sent: _Batch | None = None
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._waiting: dict[int, _Request] = {}
        self._arrived: dict[int, tuple[_Batch, int, list[ReadOutcome] | BaseException]] = {}
        self._next_batch = 0
        """Batch numbers count separately from requests: batches complete in this order."""
        self._batches_sent = 0
        self._learned: list[tuple[bytes, int]] = []
        """(id, length) of every blob a worker stored, in the order they were answered."""
        self._broken: FileReaderFailed | None = None
        self._receiver: threading.Thread | None = None
        self._stores = False
        self._closed = False
        self._unadopted = 0
        """Blobs the workers stored since their index files were last adopted."""

    # --- the walker's side ------------------------------------------------------------

    def takes(self, size: int) -> bool:
        """Whether a file of ``size`` bytes goes to the pool: a small one, once
        ``start_after`` small files were seen (a backup of a few files reads
        them on the walker thread and starts no process)."""
        if size > self._small_file_limit:
            return False
        if self._start_after > 0:
            self._start_after -= 1
            return False
        return True

    def submit(self, job: FileJob) -> FileTicket:
        """Queue one file; its ticket is done once its chunks are stored."""
        batch = self._batch
        ticket = FileTicket(batch, len(batch.jobs))
        batch.jobs.append(job)
        batch.size += job.st.st_size
        if len(batch.jobs) >= self._batch_files or batch.size >= self._batch_bytes:
            self.flush()
        return ticket

    def flush(self) -> None:
        """Send the batch being filled (the walker is about to wait for one of its files)."""
        batch = self._batch
        if not batch.jobs:
            return
        self._batch = _Batch(self._batches_sent + 1)
        batch.seq = self._batches_sent
        self._batches_sent += 1
        cost = max(batch.size, 1)
        self._budget.acquire(cost)
        try:
            self._start()
            worker, seq, learned = self._assign(batch, cost)
        except BaseException as exc:  # not sent: completes (fails) in its turn here
            self._arrive(batch, cost, exc)
            raise
        self._last_sent = batch
        self._send(worker, (BATCH, seq, batch.jobs, learned))  # a failure fails the batch
        if self._unadopted >= ADOPT_EVERY:
            self._adopt()

    def _adopt(self) -> None:
        """Flush the workers and adopt their index files now, between records:
        the blobs they stored move from the repository's dict of noted blobs
        (about 150 bytes each) into its chunk index (45), which bounds the
        memory of a first backup of millions of small files."""
        self._unadopted = 0
        self._store.repository.adopt_index_files(self.flush_workers())

    def _assign(self, batch: _Batch, cost: int) -> tuple[_Worker, int, list[tuple[bytes, int]]]:
        """The worker with the fewest requests outstanding, the request's number,
        and what that worker has not heard yet of the others' blobs."""
        with self._lock:
            self._check_usable()
            live = [w for w in self._workers if w.alive]
            worker = min(live, key=lambda w: (w.outstanding, w.number))
            learned = self._learned[worker.learned :]
            worker.learned = len(self._learned)
            heard = min(w.learned for w in live)
            if heard >= LEARNED_TRIM:  # every worker has heard of these: drop them here
                del self._learned[:heard]
                for w in live:
                    w.learned -= heard
            return worker, self._register(_Request(worker, batch, cost)), learned

    def _register(self, request: _Request) -> int:
        """Note a request before it is sent (lock held): its reply may come at once."""
        self._seq += 1
        self._waiting[self._seq] = request
        request.worker.outstanding += 1
        return self._seq

    def _send(self, worker: _Worker, message: tuple[object, ...]) -> None:
        try:
            worker.conn.send(message)
        except (OSError, ValueError) as exc:  # the worker is gone: its requests fail
            self._lost(worker, f"worker {worker.number} cannot be reached ({exc})")
            raise self._broken or FileReaderFailed(str(exc)) from exc

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken
        if not any(w.alive for w in self._workers):
            raise FileReaderFailed("no file reader process is running")

    # --- starting -------------------------------------------------------------------

    def _start(self) -> None:
        """Start the workers (at the first batch) and the receiver thread."""
        if self._workers:
            return
        import multiprocessing  # noqa: PLC0415 - only a backup of many files needs them

        quiet_resource_tracker()
        context = multiprocessing.get_context("spawn")
        setup = self._setup
        store = self._store_setup(context)
        if store is not None:
            setup = replace(setup, store=store)
            self._stores = True
            self._store.repository.attach_writers(self.flush_workers)
        for number in range(self._workers_wanted):
            here, there = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(setup, there),
                name=f"hoard-reader-{number}",
                daemon=True,
            )
            with _sigint_blocked():
                process.start()
            there.close()
            self._workers.append(_Worker(number, process, here))
        self._receiver = threading.Thread(
            target=self._receive, name="hoard-file-results", daemon=True
        )
        self._receiver.start()

    def _store_setup(self, context: object) -> StoreSetup | None:
        """How the workers store into this repository: only a local one, whose
        directory every process of this machine can open (else None)."""
        repository = self._store.repository
        root = _local_root(repository.storage)
        if root is None:
            return None
        self._known_path = self._write_known_ids()
        if self._known_path is None:  # nowhere to write it: the workers send chunks here
            return None
        total = context.Value("q", 0)  # type: ignore[attr-defined]
        quota = total if repository.share_quota(total) else None
        return StoreSetup(root, repository.config, str(self._known_path), quota)

    def _write_known_ids(self) -> Path | None:
        """The KnownIds file, in the scratch directory or else the temporary one;
        None if neither can take it (a read-only cache directory and /tmp)."""
        places = [p for p in (self._scratch, Path(_temporary_directory())) if p is not None]
        for place in places:
            path = place / f"{KNOWN_IDS_PREFIX}{os.getpid()}"
            try:
                place.mkdir(parents=True, exist_ok=True)
                _remove_stale_known_ids(place)
                self._store.repository.write_known_ids(path)
            except OSError as exc:
                logger.debug("known ids not written to %s: %s", place, exc)
                continue
            return path
        return None

    # --- the receiver thread ----------------------------------------------------------

    def _receive(self) -> None:
        """Take the workers' replies as they come; notice a worker's death. Should
        this thread fail, every worker counts as lost: the walker, waiting for a
        batch, gets the error instead of waiting forever."""
        try:
            self._receive_all()
        except BaseException as exc:
            for worker in self._workers:
                self._lost(worker, f"the results of worker {worker.number} were lost ({exc!r})")
            raise

    def _receive_all(self) -> None:
        from multiprocessing.connection import wait  # noqa: PLC0415 - with the processes

        while True:
            with self._lock:
                live = [w for w in self._workers if w.alive]
            if not live:
                return
            by_handle: dict[Connection | int, _Worker] = {}
            for w in live:
                by_handle[w.conn] = w
                by_handle[w.process.sentinel] = w
            for ready in wait(list(by_handle)):
                worker = by_handle[ready]  # type: ignore[index]
                if ready is worker.conn:
                    self._take_reply(worker)
                elif worker.alive and not worker.conn.poll():
                    code = worker.process.exitcode
                    self._lost(worker, f"worker {worker.number} ended (exit code {code})")

    def _take_reply(self, worker: _Worker) -> None:
        try:
            reply: Reply = worker.conn.recv()
        except (EOFError, OSError) as exc:
            if worker.alive:
                self._lost(worker, f"worker {worker.number} ended ({type(exc).__name__})")
            return
        except Exception as exc:  # a reply that does not unpickle: that worker is of no use
            self._lost(worker, f"worker {worker.number} sent an unreadable reply ({exc!r})")
            return
        seq, ok, value = reply
        with self._lock:
            request = self._waiting.pop(seq)
            worker.outstanding -= 1
        if request.batch is None:
            if ok:
                request.flushed.set_result(value)  # type: ignore[arg-type]
            else:
                request.flushed.set_exception(value)  # type: ignore[arg-type]
            return
        self._arrive(request.batch, request.cost, value)  # type: ignore[arg-type]

    def _lost(self, worker: _Worker, why: str) -> None:
        """A worker died (killed, out of memory): fail everything it was asked,
        and the pool: the blobs it stored since its last flush are in no index
        file, so no archive record may be written any more."""
        failure = FileReaderFailed(why)
        with self._lock:
            if not worker.alive:
                return
            worker.alive = False
            self._broken = self._broken or failure
            mine = [(s, r) for s, r in self._waiting.items() if r.worker is worker]
            for s, _ in mine:
                del self._waiting[s]
        for _, request in mine:  # its pipe is closed by _stop, once the receiver is done
            if request.batch is None:
                request.flushed.set_exception(failure)
            else:
                self._arrive(request.batch, request.cost, failure)

    def _arrive(self, batch: _Batch, cost: int, value: list[ReadOutcome] | BaseException) -> None:
        """Complete the batches that are next in sending order."""
        with self._lock:
            self._arrived[batch.seq] = (batch, cost, value)
            ready = []
            while self._next_batch in self._arrived:
                ready.append(self._arrived.pop(self._next_batch))
                self._next_batch += 1
        for done, done_cost, done_value in ready:
            self._complete(done, done_cost, done_value)

    def _complete(self, batch: _Batch, cost: int, value: list[ReadOutcome] | BaseException) -> None:
        try:
            if isinstance(value, BaseException):
                raise value
            stored = [self._stored_file(outcome) for outcome in value]
            batch.future.set_result(stored)
            batch.finished = True
        except BaseException as exc:
            _fail(batch, exc)
        finally:
            self._budget.release(cost)

    def _stored_file(self, outcome: ReadOutcome) -> StoredFile:
        if outcome.stored or not outcome.chunks:
            new = [(r.id, r.csize) for r in outcome.stored if r.new]
            if new:
                self._store.repository.note_stored(new)
                with self._lock:
                    self._learned.extend(new)
                    self._unadopted += len(new)
            return StoredFile(outcome, outcome.stored)
        stored = StoredFile(outcome)
        for chunk in outcome.chunks:  # sealed by the worker, stored here
            if chunk.blob is None:
                stored.results.append(ChunkResult(chunk.id, chunk.size, 0, False))
            else:
                stored.results.append(self._store.put_sealed_data(chunk.id, chunk.size, chunk.blob))
        outcome.chunks = []  # the blobs are in a pack now: do not keep them twice
        return stored

    # --- flushing and closing ---------------------------------------------------------

    def flush_workers(self) -> list[IndexFileData]:
        """Have every worker store its pending pack and an index file; the index
        files stored. ``Repository.flush`` calls this before its own index file
        (so before every archive record). FileReaderFailed if a worker died:
        what it stored since its last flush is lost, and nothing may refer to it.
        """
        if not self._stores:
            return []
        with self._lock:
            self._check_usable()
            requests = [(w, _Request(w)) for w in self._workers if w.alive]
            numbered = [(w, self._register(r), r) for w, r in requests]
        for worker, seq, _ in numbered:
            self._send(worker, (FLUSH, seq))
        files = [r.flushed.result() for _, _, r in numbered]
        return [f for f in files if f is not None]

    def close(self, *, cancel: bool = False, keep: bool = True) -> None:
        """Wait for every sent batch, flush the workers (their index files are
        adopted by the repository) and stop them. ``cancel``: the batch being
        filled is dropped, and a failure to flush is logged, not raised (the
        backup stops anyway; what was flushed before stays). ``keep`` False
        (after a failure, a lost lock): nothing more is written, the workers
        stop with their pending packs, and what they stored since their last
        flush is garbage for ``compact``. Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        if not cancel:
            self.flush()
        else:
            _fail(self._batch, BackupInterrupted())
            self._batch = _Batch(self._batches_sent)
        try:
            if self._last_sent is not None:
                self._last_sent.future.exception()  # batches complete in order
            if self._stores:
                self._store.repository.attach_writers(None)
                if keep:
                    self._final_flush(cancel=cancel)
        finally:
            self._stop()

    def _final_flush(self, *, cancel: bool) -> None:
        repository = self._store.repository
        try:
            repository.adopt_index_files(self.flush_workers())
        except Exception as exc:
            if not cancel:
                raise
            logger.debug("file reader processes not flushed: %s", exc)

    def _stop(self) -> None:
        """End the workers and the receiver thread; remove the KnownIds file."""
        for worker in self._workers:  # a lost one may still run (an unreadable reply)
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send((STOP,))
        for worker in self._workers:
            worker.process.join(STOP_TIMEOUT)
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join()
        if self._receiver is not None:
            self._receiver.join()
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.close()
        if self._known_path is not None:
            self._known_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while a worker is started: the worker's
    interpreter inherits the mask and never sees the terminal's Ctrl-C (which
    reaches the whole process group), even before it could ignore SIGINT
    itself; here a Ctrl-C meanwhile is delivered when the mask is restored."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _local_root(storage: Storage) -> str | None:
    """The directory of a local storage under its wrappers, else None."""
    seen: Storage | None = storage
    while seen is not None:
        if isinstance(seen, LocalStorage):
            return str(seen.root)
        seen = getattr(seen, "inner", None)
    return None


def _temporary_directory() -> str:
    import tempfile  # noqa: PLC0415 - only without a cache directory

    return tempfile.gettempdir()


def _remove_stale_known_ids(scratch: Path) -> None:
    """KnownIds files of pools whose process is gone (killed before it removed its own)."""
    for path in scratch.glob(KNOWN_IDS_PREFIX + "*"):
        pid = path.name.removeprefix(KNOWN_IDS_PREFIX)
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fail(batch: _Batch, exc: BaseException) -> None:
    if not batch.future.done():
        batch.future.set_exception(exc)
    batch.finished = True


TRACKER_WARNING = "ignore:resource_tracker:UserWarning"


def quiet_resource_tracker() -> None:
    """Keep multiprocessing's resource tracker from warning on the user's stderr.

    After a SIGKILL of the main process the tracker (a process of its own,
    started with this interpreter's ``-W`` options) finds the pool's
    semaphores unreleased, frees them, and prints a Python warning about
    "leaked semaphore objects": noise after every ``kill -9`` that says
    nothing a user can act on.
    """
    if TRACKER_WARNING not in sys.warnoptions:
        sys.warnoptions.append(TRACKER_WARNING)
