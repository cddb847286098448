"""Memory per entry and lookup rate of the ChunkIndex at 1 M and 10 M entries.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/chunkindex_memory.py [N ...]``

The index is built as a repository open builds it: by merging index files (here
50 of them, each with 8 blobs per pack, as 16 MiB data packs of 2 MiB chunks
hold; fewer blobs per pack only costs more pack-table bytes). Memory is what
tracemalloc sees the finished index hold (numpy reports its buffers to
tracemalloc), divided by the number of entries; the peak while merging is
reported as well. Lookups are single ``lookup`` calls, half hits, half misses.
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from hoard.repository.chunkindex import ChunkIndex
from hoard.repository.indexfile import ENTRY_DTYPE, IndexFile, sort_entries

FILES = 50
BLOBS_PER_PACK = 8
LOOKUPS = 200_000


def random_index_files(n: int, rng: np.random.Generator) -> list[IndexFile]:
    """``FILES`` index files with ``n`` random entries in total."""
    files = []
    for part in np.array_split(np.arange(n), FILES):
        entries = np.zeros(len(part), dtype=ENTRY_DTYPE)
        raw = rng.bytes(32 * len(part))
        ids = np.frombuffer(raw, dtype=[("key0", ">u8"), ("rest", "V24")])
        entries["key0"], entries["rest"] = ids["key0"], ids["rest"]
        n_packs = max(1, len(part) // BLOBS_PER_PACK)
        entries["pack"] = np.arange(len(part)) % n_packs
        entries["offset"] = rng.integers(8, 16 << 20, len(part))
        entries["length"] = rng.integers(1, 8 << 20, len(part))
        packs = [rng.bytes(32) for _ in range(n_packs)]
        files.append(IndexFile(packs, sort_entries(entries)))
    return files


def sample_ids(files: list[IndexFile], k: int, rng: np.random.Generator) -> list[bytes]:
    """``k`` ids present in ``files``."""
    out = []
    for _ in range(k):
        e = files[int(rng.integers(len(files)))].entries
        row = e[int(rng.integers(len(e)))]
        out.append(int(row["key0"]).to_bytes(8, "big") + row["rest"].tobytes())
    return out


def measure(n: int) -> dict[str, float]:
    rng = np.random.default_rng(n)
    files = random_index_files(n, rng)
    hits = sample_ids(files, LOOKUPS // 2, rng)
    misses = [rng.bytes(32) for _ in range(LOOKUPS // 2)]
    probes = [x for pair in zip(hits, misses, strict=True) for x in pair]

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    index = ChunkIndex()
    index.add_index_files(files)
    build = time.perf_counter() - started
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(index) == n

    started = time.perf_counter()
    found = sum(index.lookup(x) is not None for x in probes)
    lookup = time.perf_counter() - started
    assert found == len(hits)

    # Catching up: one more index file of 1 % of the entries (np.insert builds
    # new columns, so the peak is about twice the index for a moment).
    extra = random_index_files(n // 100 * FILES, rng)[0]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    index.add_index_file(extra)
    catch_up = time.perf_counter() - started
    catch_up_peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunks"
        started = time.perf_counter()
        repository_id = bytes(32)
        digest = index.save(path, repository_id)
        save = time.perf_counter() - started
        started = time.perf_counter()
        ChunkIndex.load(path, repository_id, digest)
        load = time.perf_counter() - started
    return {
        "entries": n,
        "bytes_per_entry": (current - base) / n,
        "peak_bytes_per_entry": (peak - base) / n,
        "build_s": build,
        "lookups_per_s": len(probes) / lookup,
        "catch_up_s": catch_up,
        "catch_up_peak_bytes_per_entry": catch_up_peak / n,
        "save_s": save,
        "load_s": load,
    }


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [1_000_000, 10_000_000]
    print(
        f"{'entries':>10} {'B/entry':>8} {'peak B/e':>9} {'build s':>8} {'lookup/s':>9} "
        f"{'+1% s':>6} {'+1% peak':>9} {'save s':>7} {'load s':>7}"
    )
    for n in sizes:
        r = measure(n)
        print(
            f"{r['entries']:>10,} {r['bytes_per_entry']:>8.1f} {r['peak_bytes_per_entry']:>9.1f} "
            f"{r['build_s']:>8.2f} {r['lookups_per_s']:>9,.0f} {r['catch_up_s']:>6.2f} "
            f"{r['catch_up_peak_bytes_per_entry']:>9.1f} {r['save_s']:>7.2f} {r['load_s']:>7.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
