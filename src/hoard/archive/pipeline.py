"""The chunk pipeline: id, compress, encrypt and store data chunks on a thread pool.

The walker thread reads and chunks files (the native chunker releases the
GIL); each data chunk goes to a worker that computes its keyed id, and if
the repository does not have it yet, compresses, seals and stores it.
Every one of those steps runs in C code that releases the GIL (blake3,
zstandard/lz4, cryptography, file writes), so two cores are used.

Memory is bounded by bytes, not by chunks: chunks are up to 8 MiB with the
default parameters, so a chunk count would allow hundreds of MiB in flight.
At most ``max_inflight_bytes`` of chunk data is queued or being processed
(a single larger chunk is admitted alone); ``submit`` blocks while the pool
is that far behind. Results come back as futures in submission order, so
file chunk lists keep their order.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from hoard.archive.chunker import Chunk, ChunkKind
from hoard.archive.items import ZERO_ID
from hoard.objects.store import ObjectStore, PutResult
from hoard.objects.types import ObjectType

DEFAULT_WORKERS = 2
DEFAULT_MAX_INFLIGHT_BYTES = 24 * 1024 * 1024


ChunkResult = PutResult
"""What storing one chunk did (size: plaintext bytes; csize: stored bytes; new: first copy)."""


def _done(value: ChunkResult) -> Future[ChunkResult]:
    future: Future[ChunkResult] = Future()
    future.set_result(value)
    return future


class ByteBudget:
    """A counting semaphore in bytes; an oversized request waits for an empty budget."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, size: int) -> None:
        with self._cond:
            while self._used and self._used + size > self._limit:
                self._cond.wait()
            self._used += size

    def release(self, size: int) -> None:
        with self._cond:
            self._used -= size
            self._cond.notify_all()


class ChunkPipeline:
    """Thread pool storing data chunks; ``submit`` from one thread, ordered futures.

    A worker's exception (a storage error) is delivered by the future of the
    chunk it happened on. ``close`` waits for the queue to drain;
    ``close(cancel=True)`` drops what was not started yet (after an
    interruption, when the results are not wanted).
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        workers: int = DEFAULT_WORKERS,
        max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
    ) -> None:
        self._store = store
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hoard-chunk")
        self._budget = ByteBudget(max_inflight_bytes)
        self._objects: list[Future[bytes]] = []

    def submit(self, chunk: Chunk) -> Future[ChunkResult]:
        """Queue ``chunk``; zero runs and holes complete at once and store nothing."""
        if chunk.kind is not ChunkKind.DATA or chunk.data is None:
            return _done(ChunkResult(ZERO_ID, chunk.size, 0, False))
        size = len(chunk.data)
        self._budget.acquire(size)
        try:
            future = self._executor.submit(self._store.put_data, chunk.data)
        except BaseException:
            self._budget.release(size)
            raise
        future.add_done_callback(lambda _: self._budget.release(size))
        return future

    def put(self, type_: ObjectType, data: bytes) -> bytes:
        """Store a metadata object (a tree) on the pool; its id at once.

        The id is the keyed hash of ``data``, so the caller goes on (a parent
        directory needs its children's ids) while compression, sealing and
        the put run on a worker thread. :meth:`wait_objects` is the barrier
        before anything that must find the objects stored (a checkpoint or
        archive record).
        """
        id_ = self._store.id_of(data)
        if self._store.contains(id_):
            return id_
        size = len(data)
        self._budget.acquire(size)
        try:
            future = self._executor.submit(self._store.put, type_, data)
        except BaseException:
            self._budget.release(size)
            raise
        future.add_done_callback(lambda _: self._budget.release(size))
        self._objects.append(future)
        if len(self._objects) > 256:
            self._objects = [f for f in self._objects if not f.done() or f.exception()]
        return id_

    def wait_objects(self) -> None:
        """Until every object given to :meth:`put` is stored; raises the first failure."""
        objects, self._objects = self._objects, []
        for future in objects:
            future.result()

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the queued chunks (or drop those not started, with ``cancel``);
        afterwards ``submit`` must not be called."""
        self._executor.shutdown(wait=True, cancel_futures=cancel)
