"""Throughput of hoard's chunkers: native on one and two threads, and the pure-Python twin.

Run from the checkout after building the extension::

    PYTHONPATH=src python benchmarks/chunker.py [--size MIB] [--python-size MIB]

Input is pseudo-random (no zero runs), fed in 8 MiB fragments as
``fileread.read_fragments`` would; chunking uses the default params
(fastcdc,19,23,21). "Two threads" chunk two independent streams at once;
the figure is their total throughput, and the speed-up is against one thread.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import blake3

from hoard.archive.chunker import (
    DEFAULT_CHUNKER_PARAMS,
    DEFAULT_SCAN_STEP,
    CdcChunker,
    ChunkerParams,
)
from hoard.archive.fileread import DEFAULT_BUFFER_SIZE

MiB = 1024 * 1024
KEY = bytes(range(32))


def fragments(size: int, seed: bytes) -> list[bytes]:
    """``size`` pseudo-random bytes as read buffers of the default size."""
    data = blake3.blake3(seed).digest(length=size)
    return [data[i : i + DEFAULT_BUFFER_SIZE] for i in range(0, size, DEFAULT_BUFFER_SIZE)]


def chunk_all(chunker: CdcChunker, pieces: list[bytes]) -> int:
    """Chunk ``pieces`` and return how many chunks came out."""
    return sum(1 for _ in chunker.chunks(pieces))


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def two_threads(chunker: CdcChunker, streams: list[list[bytes]]) -> tuple[float, float]:
    """Seconds for two threads to chunk one stream each, started together, and cores used.

    Cores used is process CPU time over wall time: above 1 only if the scan
    runs without the GIL; below 2 also when other processes take a core.
    """
    barrier = threading.Barrier(3)

    def run(pieces: list[bytes]) -> None:
        barrier.wait()
        chunk_all(chunker, pieces)

    threads = [threading.Thread(target=run, args=(s,)) for s in streams]
    for thread in threads:
        thread.start()
    start, cpu = time.perf_counter(), time.process_time()
    barrier.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return wall, (time.process_time() - cpu) / wall


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="MiB per stream (default 256)")
    parser.add_argument("--python-size", type=int, default=1, help="MiB for the Python twin")
    args = parser.parse_args()
    size = args.size * MiB
    native = CdcChunker(DEFAULT_CHUNKER_PARAMS, KEY, native=True)
    streams = [fragments(size, b"stream 1"), fragments(size, b"stream 2")]
    count = chunk_all(native, streams[0])  # warm up; also gives the chunk count
    one = min(timed(lambda: chunk_all(native, streams[0])) for _ in range(3))
    two, cores = min(two_threads(native, streams) for _ in range(3))
    print(f"params {DEFAULT_CHUNKER_PARAMS}, scan step {DEFAULT_SCAN_STEP // MiB} MiB")
    mean = size / count / MiB
    print(f"native, 1 thread : {mbps(size, one):8.0f} MB/s ({count} chunks, mean {mean:.2f} MiB)")
    speedup = 2 * one / two
    print(f"native, 2 threads: {mbps(2 * size, two):8.0f} MB/s total, {speedup:.2f}x", end="")
    print(f" ({cores:.2f} cores busy)")
    # Small params hash most bytes (the default skips min_size of each chunk):
    # the fair comparison between the twins.
    small_params = ChunkerParams.parse("fastcdc,10,16,12")
    dense = CdcChunker(small_params, KEY, native=True)
    seconds = timed(lambda: chunk_all(dense, streams[0]))
    print(f"native, {small_params}: {mbps(size, seconds):8.0f} MB/s")
    small = args.python_size * MiB
    twin = CdcChunker(small_params, KEY, native=False)
    pieces = fragments(small, b"python")
    seconds = timed(lambda: chunk_all(twin, pieces))
    print(f"python, {small_params}: {mbps(small, seconds):8.1f} MB/s ({args.python_size} MiB)")


if __name__ == "__main__":
    main()
