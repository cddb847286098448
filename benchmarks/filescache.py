"""Files cache at scale: bytes per entry in RAM and on disk, load/save/lookup times.

Run: ``.venv/bin/python benchmarks/filescache.py [N ...] [--chunks K] [--dict]``
(default N = 1000000, K = 1 chunk per file).

A first backup is simulated by ``remember``-ing N files (synthetic stat
results, paths like a home directory's, K chunks each) and saving; then the
cache is loaded again, every file is looked up (all hits), and saved again
(the merge of a backup where everything was unchanged). RAM is what
tracemalloc sees the loaded cache hold (numpy reports its buffers to it);
the peak while loading is shown as well. With ``--dict`` the same entries
are also held the way Borg holds them, a dict of path hash -> msgpack bytes,
for comparison.
"""

from __future__ import annotations

import argparse
import os
import stat
import tempfile
import time
import tracemalloc
from pathlib import Path

import msgpack

from hoard.archive.filescache import FilesCache, FilesCacheMode, cache_file_path
from hoard.archive.items import ChunkRef

REPO = bytes(range(32))
SECRET = bytes(32)
START_NS = 1_700_000_000 * 10**9
MODE = FilesCacheMode.parse("ctime,size,inode")


def path_of(i: int) -> bytes:
    return b"/home/user/projects/dir%05d/file-%08d.txt" % (i // 100, i)


def stat_of(i: int, chunks: int) -> os.stat_result:
    t = START_NS - 86400 * 10**9 + i
    visible = (stat.S_IFREG | 0o644, 1_000_000 + i, 2049, 1, 1000, 1000, chunks * 65536, 0, 0, 0)
    return os.stat_result((*visible, 0.0, 0.0, 0.0, t, t, t))


def chunks_of(i: int, chunks: int) -> list[ChunkRef]:
    return [
        ChunkRef(i.to_bytes(16, "little") + j.to_bytes(16, "little"), 65536) for j in range(chunks)
    ]


def mib(n: float) -> str:
    return f"{n / 2**20:8.1f} MiB"


def measure(n: int, chunks: int, cache_dir: Path, with_dict: bool) -> None:
    print(f"--- {n:,} files, {chunks} chunk(s) each")
    cache = FilesCache.load(cache_dir, REPO, SECRET, MODE, start_ns=START_NS)
    t0 = time.perf_counter()
    for i in range(n):
        cache.remember(path_of(i), stat_of(i, chunks), chunks_of(i, chunks))
    t_remember = time.perf_counter() - t0
    print(f"remember      {t_remember:7.2f} s  ({t_remember / n * 1e6:.1f} us per file)")
    print(f"RAM of the log of remembered files: {cache.nbytes / n:.1f} B per file")
    # the newest file of a backup is not trusted next time (racy): let it be a tiny one
    cache.remember(b"/home/user/.stamp", stat_of(n + 10**9, 0), [])

    t0 = time.perf_counter()
    cache.save()
    t_save = time.perf_counter() - t0
    size = cache_file_path(cache_dir, REPO).stat().st_size
    print(f"save (first)  {t_save:7.2f} s  file {mib(size)} = {size / n:.1f} B per file")
    del cache

    tracemalloc.start()
    t0 = time.perf_counter()
    cache = FilesCache.load(cache_dir, REPO, SECRET, MODE, start_ns=START_NS + 10**12)
    t_load = time.perf_counter() - t0
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(cache) == n + 1
    print(
        f"load          {t_load:7.2f} s  RAM {mib(held)} = {held / n:.1f} B per file "
        f"(peak {mib(peak)}; arrays {cache.nbytes / n:.1f} B per file)"
    )

    contains = {c.id for c in chunks_of(0, chunks)}.__contains__
    everything = lambda _id: True  # noqa: E731 - the repository holds every chunk
    t0 = time.perf_counter()
    for i in range(n):
        result = cache.lookup(path_of(i), stat_of(i, chunks), everything)
        assert result.status == "U"
    t_lookup = time.perf_counter() - t0
    print(f"lookup (hits) {t_lookup:7.2f} s  ({t_lookup / n * 1e6:.1f} us per file)")
    miss = cache.lookup(b"/nowhere", stat_of(0, chunks), contains)
    assert miss.status == "A"

    t0 = time.perf_counter()
    cache.save()
    print(f"save (merge)  {time.perf_counter() - t0:7.2f} s")
    if with_dict:
        borg_like_dict(n, chunks)


def borg_like_dict(n: int, chunks: int) -> None:
    """Borg 1.x's in-memory files cache: dict of 16-byte key -> msgpack'd entry."""
    tracemalloc.start()
    files: dict[bytes, bytes] = {}
    for i in range(n):
        st = stat_of(i, chunks)
        refs = [[c.id, c.size] for c in chunks_of(i, chunks)]
        entry = (0, st.st_ino, st.st_size, st.st_ctime_ns, st.st_mtime_ns, refs)
        files[i.to_bytes(16, "little")] = msgpack.packb(entry)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"Borg-style dict of msgpack bytes: RAM {mib(held)} = {held / n:.1f} B per file")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="*", type=int, default=[1_000_000])
    parser.add_argument("--chunks", type=int, default=1, help="chunks per file")
    parser.add_argument("--dict", action="store_true", help="also measure a Borg-style dict")
    args = parser.parse_args()
    for n in args.n:
        with tempfile.TemporaryDirectory(prefix="hoard-fc-bench-") as tmp:
            measure(n, args.chunks, Path(tmp), args.dict)


if __name__ == "__main__":
    main()
