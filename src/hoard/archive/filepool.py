"""Small regular files read, chunked and sealed on worker processes.

Stages (docs/design/architecture.md, "The create pipeline"): the walker
(``Creator``, main thread) submits a :class:`FileJob` per small file and
goes on walking; jobs are batched (many small files per message, so the
cost of a message is shared), a worker process reads and seals a batch
(``archive/filework.py``), and a store thread of this process puts the
sealed chunks into the repository's packs and completes the per-file
futures. The walker only waits for a file's future when the directory
holding it is stored, and ``Creator`` defers that while it can.

Back-pressure: at most ``max_inflight_bytes`` of file data (by the files'
sizes) is submitted and not yet stored; ``submit`` blocks the walker beyond
that, so memory is bounded by bytes, not by counts. A batch holds at most
``batch_files`` files and ``batch_bytes`` bytes.

Deduplication: a worker seals every chunk it reads (it has no chunk index);
the store thread asks the repository (its index, this session's pending
packs) before putting, so a chunk is stored once however many workers read
it. Sealing a chunk that turns out known costs CPU only, and only for files
the files cache did not know, whose content is mostly new.

The pool is started lazily, at the first batch, so a backup of a few files
never pays for starting processes (``spawn``: a clean interpreter, safe
although this process runs threads already; a worker costs ~0.1 s to start).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hoard.archive.filework import FileJob, ReaderSetup, ReadOutcome, read_batch, start_worker
from hoard.archive.pipeline import ByteBudget, ChunkResult
from hoard.errors import BackupInterrupted, FileReaderFailed
from hoard.objects.store import ObjectStore

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

DEFAULT_BATCH_FILES = 64
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_INFLIGHT_BYTES = 16 * 1024 * 1024
DEFAULT_START_AFTER = 500
SMALL_FILE_LIMIT = 4 * 1024 * 1024
"""Files up to this size go to the workers; larger ones are read by the walker
thread, whose chunk pipeline keeps the cores busy on their big chunks already."""


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


class FilePool:
    """Worker processes reading small files; ``submit`` from one thread only."""

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
    ) -> None:
        self._store = store
        self._setup = setup
        self._workers = workers or default_workers()
        self._batch_files = batch_files
        self._batch_bytes = batch_bytes
        self._budget = ByteBudget(max_inflight_bytes)
        self._start_after = start_after
        self._small_file_limit = small_file_limit
        self._sent = 0
        self._batch = _Batch(0)
        self._arrived: dict[int, tuple[Future[list[ReadOutcome]], _Batch, int]] = {}
        self._next_store = 0
        self._processes: ProcessPoolExecutor | None = None
        self._storer: ThreadPoolExecutor | None = None

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
        """Queue one file; its ticket is done once its chunks are put."""
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
        self._sent += 1
        self._batch = _Batch(self._sent)
        cost = max(batch.size, 1)
        self._budget.acquire(cost)
        try:
            sent = self._executor().submit(read_batch, batch.jobs)
        except Exception as exc:  # BrokenProcessPool: a worker died before
            self._budget.release(cost)
            failure = _reader_failed(exc)
            _fail(batch, failure)
            raise failure from exc
        except BaseException as exc:
            self._budget.release(cost)
            _fail(batch, exc)
            raise
        sent.add_done_callback(lambda done: self._received(done, batch, cost))

    def _executor(self) -> ProcessPoolExecutor:
        if self._processes is None:
            import multiprocessing  # noqa: PLC0415 - only a backup of many files needs them
            from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

            quiet_resource_tracker()
            self._storer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hoard-store")
            self._processes = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_worker,
                initargs=(self._setup,),
            )
        return self._processes

    def _received(self, done: Future[list[ReadOutcome]], batch: _Batch, cost: int) -> None:
        """Runs on the pool's result thread: hand the batch to the store thread."""
        assert self._storer is not None
        try:
            self._storer.submit(self._arrive, done, batch, cost)
        except RuntimeError:  # shut down meanwhile (a cancelled backup)
            self._budget.release(cost)
            _fail(batch, BackupInterrupted())

    def _arrive(self, done: Future[list[ReadOutcome]], batch: _Batch, cost: int) -> None:
        """On the store thread: store the batches that are next in sending order, so
        batches complete in that order (a directory waits for its last file only)."""
        self._arrived[batch.seq] = (done, batch, cost)
        while self._next_store in self._arrived:
            self._put(*self._arrived.pop(self._next_store))
            self._next_store += 1

    def _put(self, done: Future[list[ReadOutcome]], batch: _Batch, cost: int) -> None:
        """Put every sealed chunk of a batch, then complete it."""
        try:
            stored = [self._put_file(outcome) for outcome in _outcomes(done)]
            batch.future.set_result(stored)
            batch.finished = True
        except BaseException as exc:
            _fail(batch, exc)
        finally:
            self._budget.release(cost)

    def _put_file(self, outcome: ReadOutcome) -> StoredFile:
        stored = StoredFile(outcome)
        for chunk in outcome.chunks:
            if chunk.blob is None:
                stored.results.append(ChunkResult(chunk.id, chunk.size, 0, False))
            else:
                stored.results.append(self._store.put_sealed_data(chunk.id, chunk.size, chunk.blob))
        outcome.chunks = []  # the blobs are in a pack now: do not keep them twice
        return stored

    def close(self, *, cancel: bool = False) -> None:
        """Wait for every sent batch to be stored (``cancel``: drop those not started)."""
        if not cancel:
            self.flush()
        else:
            _fail(self._batch, BackupInterrupted())
            self._batch = _Batch(self._sent)
        if self._processes is not None:
            self._processes.shutdown(wait=True, cancel_futures=cancel)
        if self._storer is not None:
            self._storer.shutdown(wait=True)


def _outcomes(done: Future[list[ReadOutcome]]) -> list[ReadOutcome]:
    try:
        return done.result()
    except Exception as exc:  # BrokenProcessPool: a worker died (killed, out of memory)
        raise _reader_failed(exc) from exc


def _reader_failed(exc: Exception) -> FileReaderFailed:
    return FileReaderFailed(str(exc) or type(exc).__name__)


def _fail(batch: _Batch, exc: BaseException) -> None:
    if not batch.future.done():
        batch.future.set_exception(exc)
    batch.finished = True


TRACKER_WARNING = "ignore:resource_tracker:UserWarning"


def quiet_resource_tracker() -> None:
    """Keep multiprocessing's resource tracker from warning on the user's stderr.

    After a SIGKILL of the main process the tracker (a process of its own,
    started with this interpreter's ``-W`` options) finds the pool's queue
    semaphores unreleased, frees them, and prints a Python warning about
    "leaked semaphore objects": noise after every ``kill -9`` that says
    nothing a user can act on.
    """
    if TRACKER_WARNING not in sys.warnoptions:
        sys.warnoptions.append(TRACKER_WARNING)
