"""Catching up with another client: the cost follows what changed, not the archive count.

Run: ``.venv/bin/python benchmarks/catchup.py [N ...] [--repeat R] [--workdir DIR] [--keep]``
(default N = 10 100 1000, R = 3).

For each N, in a fresh work directory:

1. **Build.** ``hoard init -e repokey`` (a subprocess), then N ``hoard create
   REPO::archive-NNNNN data`` runs *in this process* through
   ``hoard.cli.main.run``: the real command-line code path without N
   interpreter start-ups (which would take minutes at N = 1000). ``data``
   holds three small files; one of them is rewritten before every run, so
   every archive adds its own packs and index file, as a daily backup with
   a few changes does. This is client A (``BORG_BASE_DIR=a``).
2. **Second client, up to date.** Client B (``BORG_BASE_DIR=b``, its own
   cache) runs ``hoard list REPO`` once, the cold sync: it reads every
   archive record (before the archive-record cache, *every* listing did),
   but no index file (listing archives needs no chunk index). Then the
   Python-level open + ``sync_index`` + ``load_archives`` (below) brings B's
   chunk-index cache up to date too, as any ``create`` or ``info`` would.
   B's cache directory is saved.
3. **One change.** A adds one archive (in-process ``hoard create``).
4. **Catch-up**, each measurement starting from B's saved cache:
   - ``hoard list REPO`` as a subprocess: wall time (median of R runs);
   - the same once more under a ``sys.addaudithook`` hook that counts the
     repository files the process opens, by top-level name (``archives``,
     ``index``, ``packs``, ``config``, ``keys``), and the directory listings;
   - Python level: ``Repository.open`` + ``sync_index`` + ``load_archives``
     on a ``LocalStorage`` wrapped in a counter of ``load`` calls: time
     (median of R) and storage objects read;
   - then ``hoard list`` again with nothing new (steady state).
5. **Cache size**: the files of B's ``<cache>/<repo-id>/`` after catching up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from hoard.cli.main import run as hoard_run
from hoard.repository.repository import Repository
from hoard.storage.base import ObjectInfo, Storage
from hoard.storage.local import LocalStorage

HOARD = str(Path(sys.executable).with_name("hoard"))
PASSPHRASE = "benchmark passphrase"

AUDIT_SCRIPT = r"""
import json, os, sys
root, out = os.path.abspath(sys.argv[1]), sys.argv[2]
opened, listed = {}, {}

def kind(path):
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return None
    path = os.path.abspath(path)
    if path != root and not path.startswith(root + os.sep):
        return None
    return path[len(root) + 1:].split(os.sep)[0] or "."

def hook(event, args):
    if event == "open":
        k = kind(args[0])
        if k is not None and not (args[2] or 0) & os.O_DIRECTORY:
            opened[k] = opened.get(k, 0) + 1
    elif event == "os.scandir":
        k = kind(args[0])
        if k is not None:
            listed[k] = listed.get(k, 0) + 1

def report():
    with open(out, "w") as f:
        json.dump({"opened": opened, "listed": listed}, f)

import atexit
atexit.register(report)
sys.addaudithook(hook)
sys.argv = ["hoard", "list", root]
from hoard.cli.main import main
main()
"""


class CountingStorage(Storage):
    """A real storage whose ``load`` calls are counted by top-level name."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.loads: Counter[str] = Counter()
        self.lists = 0
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return self.inner.location

    def store(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        self.inner.store(name, data, overwrite=overwrite)

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            self.loads[name.split("/", maxsplit=1)[0]] += 1
        return self.inner.load(name, offset, length)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            self.lists += 1
        return self.inner.list(prefix)

    def info(self, name: str) -> ObjectInfo:
        return self.inner.info(name)


@dataclass
class Client:
    """One hoard user: its own base directory (cache, keys, security)."""

    base: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BORG_", "HOARD_"))}
        env.update(
            BORG_BASE_DIR=str(self.base),
            BORG_PASSPHRASE=PASSPHRASE,
            BORG_TESTONLY_WEAKEN_KDF="1",
            LANG="C.UTF-8",
        )
        return env

    def cache_dir(self, repo_id: str) -> Path:
        return self.base / ".cache" / "hoard" / repo_id

    def in_process(self, *argv: str) -> None:
        rc = hoard_run(list(argv), self.env)
        if rc != 0:
            raise RuntimeError(f"hoard {' '.join(argv)}: exit code {rc}")

    def subprocess(self, *argv: str) -> float:
        """Run the ``hoard`` executable; wall time in seconds."""
        start = time.perf_counter()
        done = subprocess.run([HOARD, *argv], env=self.env, capture_output=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"hoard {' '.join(argv)}: {done.stderr.decode()}")
        return seconds


@dataclass
class Figures:
    n: int
    build_s: float
    cold_list_s: float
    cold_opened: Mapping[str, int]
    cold_api_s: float
    cold_api_loads: Mapping[str, int]
    list_s: float
    opened: Mapping[str, int]
    listed: Mapping[str, int]
    api_s: float
    api_loads: Mapping[str, int]
    api_lists: int
    steady_list_s: float
    cache_files: Mapping[str, int]


def write_data(data: Path, serial: int) -> None:
    """Three small files; ``changing`` differs for every serial number."""
    rng = random.Random(serial)
    (data / "changing").write_bytes(rng.randbytes(2048))
    for name in ("stable-1", "stable-2"):
        path = data / name
        if not path.exists():
            path.write_bytes(random.Random(name).randbytes(4096))


def build(work: Path, n: int, writer: Client) -> tuple[Path, str]:
    """A repository with ``n`` archives written by ``writer``; (path, id hex)."""
    repo, data = work / "repo", work / "data"
    data.mkdir()
    writer.subprocess("init", "--encryption", "repokey", str(repo))
    for i in range(n):
        write_data(data, i)
        with contextlib.chdir(work):
            writer.in_process("create", f"{repo}::archive-{i:05d}", "data")
    return repo, json.loads((repo / "config").read_text())["id"]


def restore(snapshot: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(snapshot, target)


def audited_list(client: Client, repo: Path, work: Path) -> dict[str, dict[str, int]]:
    out = work / "audit.json"
    subprocess.run(
        [sys.executable, "-c", AUDIT_SCRIPT, str(repo), str(out)],
        env=client.env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    result: dict[str, dict[str, int]] = json.loads(out.read_text())
    return result


def api_catch_up(repo: Path, cache_root: Path) -> tuple[float, CountingStorage]:
    """Open + sync_index + load_archives as a client with cache ``cache_root``."""
    storage = CountingStorage(LocalStorage(repo))
    start = time.perf_counter()
    with Repository.open(storage, cache_root) as repository:
        repository.sync_index()
        repository.load_archives()
    return time.perf_counter() - start, storage


def measure(n: int, work: Path, repeat: int) -> Figures:
    writer, reader = Client(work / "a"), Client(work / "b")
    start = time.perf_counter()
    repo, repo_id = build(work, n, writer)
    build_s = time.perf_counter() - start
    cache = reader.cache_dir(repo_id)
    cold = audited_list(reader, repo, work)["opened"]
    shutil.rmtree(reader.base / ".cache", ignore_errors=True)
    cold_list_s = reader.subprocess("list", str(repo))
    cold_api_s, cold_counting = api_catch_up(repo, cache.parent)  # B's chunk index, too
    snapshot = work / "b-cache-snapshot"
    shutil.copytree(cache, snapshot)

    write_data(work / "data", n)
    with contextlib.chdir(work):
        writer.in_process("create", f"{repo}::archive-{n:05d}", "data")

    list_times = []
    for _ in range(repeat):
        restore(snapshot, cache)
        list_times.append(reader.subprocess("list", str(repo)))
    restore(snapshot, cache)
    audit = audited_list(reader, repo, work)
    api_times = []
    for _ in range(repeat):
        restore(snapshot, cache)
        seconds, counting = api_catch_up(repo, cache.parent)
        api_times.append(seconds)
    steady = reader.subprocess("list", str(repo))
    files = {p.name: p.stat().st_size for p in sorted(cache.iterdir()) if p.is_file()}
    return Figures(
        n=n,
        build_s=build_s,
        cold_list_s=cold_list_s,
        cold_opened=cold,
        cold_api_s=cold_api_s,
        cold_api_loads=dict(cold_counting.loads),
        list_s=statistics.median(list_times),
        opened=audit["opened"],
        listed=audit["listed"],
        api_s=statistics.median(api_times),
        api_loads=dict(counting.loads),
        api_lists=counting.lists,
        steady_list_s=steady,
        cache_files=files,
    )


def fmt_counts(counts: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "-"


def report(f: Figures) -> None:
    print(f"--- N = {f.n} archives (+1 new); build {f.build_s:.1f} s")
    print(f"  cold first list (B has no cache): {f.cold_list_s:6.3f} s   files opened: "
          f"{fmt_counts(f.cold_opened)}")  # fmt: skip
    print(f"  cold open+sync_index+load_archives: {f.cold_api_s * 1000:7.1f} ms   storage loads: "
          f"{fmt_counts(f.cold_api_loads)}")  # fmt: skip
    print(f"  catch-up `hoard list`:            {f.list_s:6.3f} s   files opened: "
          f"{fmt_counts(f.opened)}   dirs listed: {fmt_counts(f.listed)}")  # fmt: skip
    print(f"  catch-up open+sync_index+load_archives: {f.api_s * 1000:7.1f} ms   storage loads: "
          f"{fmt_counts(f.api_loads)}   lists: {f.api_lists}")  # fmt: skip
    print(f"  steady `hoard list` (nothing new): {f.steady_list_s:6.3f} s")
    total = sum(f.cache_files.values())
    print(f"  B's cache dir: {total:,} bytes ({fmt_counts(f.cache_files)}); "
          f"per archive: {total / (f.n + 1):,.0f} bytes")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="*", type=int, default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hoard-catchup-", dir=args.workdir))
    try:
        for n in args.n:
            work = root / f"n{n}"
            work.mkdir()
            report(measure(n, work, args.repeat))
            sys.stdout.flush()
            if not args.keep:
                shutil.rmtree(work)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
