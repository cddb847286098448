"""The chunk pipeline: id, compress, encrypt and store data chunks on a thread pool.

The walker thread reads and chunks files (the native chunker releases the
GIL); each data chunk goes to a worker that computes its keyed id, and if
the repository does not have it yet, compresses, seals and stores it.
Every one of those steps runs in C code that releases the GIL (blake3,
zstandard/lz4, cryptography, file writes), so two cores are used.

Memory is bounded: at most ``max_inflight`` chunks are queued or being
processed; ``submit`` blocks when the pool is that far behind. Results come
back as futures in submission order, so file chunk lists keep their order.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from hoard.archive.chunker import Chunk, ChunkKind
from hoard.archive.items import ZERO_ID
from hoard.objects.store import ObjectStore, PutResult

DEFAULT_WORKERS = 2
DEFAULT_MAX_INFLIGHT = 32


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What storing one chunk did (size: plaintext bytes; csize: stored bytes)."""

    id: bytes
    size: int
    csize: int
    new: bool


def _done(value: ChunkResult) -> Future[ChunkResult]:
    future: Future[ChunkResult] = Future()
    future.set_result(value)
    return future


class ChunkPipeline:
    """Thread pool storing data chunks; thread-safe ``submit``, ordered futures."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        workers: int = DEFAULT_WORKERS,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        dry_run: bool = False,
    ) -> None:
        self._store = store
        self._dry_run = dry_run
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hoard-chunk")
        self._slots = threading.BoundedSemaphore(max_inflight)

    def submit(self, chunk: Chunk) -> Future[ChunkResult]:
        """Queue ``chunk``; zero runs and holes complete at once and store nothing."""
        if chunk.kind is not ChunkKind.DATA or chunk.data is None:
            return _done(ChunkResult(ZERO_ID, chunk.size, 0, False))
        self._slots.acquire()
        try:
            future = self._executor.submit(self._process, chunk.data)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _: Future[ChunkResult]) -> None:
        self._slots.release()

    def _process(self, data: bytes | memoryview) -> ChunkResult:
        if self._dry_run:
            return ChunkResult(self._store.id_of(data), len(data), 0, False)
        result: PutResult = self._store.put_data(data)
        return ChunkResult(result.id, result.size, result.csize, result.new)

    def close(self) -> None:
        """Wait for every queued chunk; afterwards ``submit`` must not be called."""
        self._executor.shutdown(wait=True)
