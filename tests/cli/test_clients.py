"""Several clients, one repository: concurrent backups, catching up, copies, locks.

Every "machine" is its own ``BORG_BASE_DIR`` (its own cache and keys) running
the real ``hoard`` executable; the repository is a plain directory they all
use (REQUIREMENTS.md section 4). Overlap in time is made certain, not left to
luck: a backup that must be "running" reads a FIFO (``--read-special``) that
the test feeds, so the backup holds its shared lock until the test lets it
finish.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import blake3
import pytest

from hoard.repository.lock import lock_names, read_record
from hoard.storage.local import LocalStorage

from .conftest import HOARD, Hoard
from .trees import compare_trees

MiB = 1024 * 1024
MODERN = {"BORG_EXIT_CODES": "modern"}


# --- helpers -------------------------------------------------------------------------


def machine(tmp_path: Path, name: str) -> Hoard:
    """A client with its own base directory (cache, keys, config)."""
    base = tmp_path / f"machine-{name}"
    base.mkdir()
    return Hoard(base)


def pseudo_random(seed: str, size: int) -> bytes:
    return blake3.blake3(seed.encode()).digest(length=size)


def small_files(root: Path, prefix: str, count: int, seed: str) -> None:
    """``count`` small files of distinct content (``seed`` decides it) in 20 subdirectories."""
    for i in range(count):
        directory = root / f"{prefix}{i % 20:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{i:05d}").write_bytes(pseudo_random(f"{seed}/{i}", 100 + i % 900))


def big_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for offset in range(0, size, 8 * MiB):
            f.write(os.urandom(min(8 * MiB, size - offset)))


def archive_names(client: Hoard, repo: Path) -> list[str]:
    return client("list", "--short", repo).out.split()


def repo_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())


def extract_and_compare(client: Hoard, archive: str, work: Path, tree: str, dest: Path) -> None:
    """Extract ``archive`` into ``dest`` and compare its ``tree`` with ``work/tree``."""
    dest.mkdir(parents=True)
    client("extract", archive, cwd=dest)
    diffs = compare_trees(work / tree, dest / tree)
    assert not diffs, "\n".join(diffs[:20])


def start(client: Hoard, *args: str | os.PathLike[str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``hoard`` in the background (outputs captured)."""
    return subprocess.Popen(
        [HOARD, *(os.fspath(arg) for arg in args)],
        env=client.env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes], what: str) -> None:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, f"{what}: rc={process.returncode}\n{out!r}\n{err.decode()}"


class Gate:
    """A FIFO that a backup reads with --read-special, fed by a thread.

    ``opened`` is set once the reader (the running backup) has opened it;
    the backup then blocks reading until ``release()`` lets the feeder write
    the rest and close.
    """

    def __init__(self, path: Path, payload: bytes = b"gate\n") -> None:
        self.path = path
        os.mkfifo(path)
        self.payload = payload
        self.opened = threading.Event()
        self._go = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        with self.path.open("wb", buffering=0) as f:  # blocks until the backup opens it
            self.opened.set()
            f.write(self.payload[:1])
            self._go.wait(120)
            f.write(self.payload[1:])

    def wait_opened(self, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.opened.wait(0.05):
            if process.poll() is not None:
                _out, err = process.communicate()
                pytest.fail(f"backup ended before reading {self.path}: {err.decode()}")
            assert time.monotonic() < deadline, f"{self.path} was never opened"

    def release(self) -> None:
        self._go.set()
        self._thread.join(30)

    def abandon(self) -> None:
        """Unblock the feeder in any case (test cleanup)."""
        self._go.set()
        if not self.opened.is_set():  # nobody opened it: open the read end ourselves
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._thread.join(5)
            os.close(fd)
        self._thread.join(5)


def shared_lock_holders(repo: Path) -> list[str]:
    storage = LocalStorage(repo)
    kinds = []
    for name in lock_names(storage):
        record = read_record(storage, name)
        kinds.append(getattr(record, "kind", "unreadable"))
    return kinds


# --- (a) concurrent backups -------------------------------------------------------------


def test_two_clients_back_up_into_one_repository_at_the_same_time(tmp_path: Path) -> None:
    a, b = machine(tmp_path, "a"), machine(tmp_path, "b")
    repo = tmp_path / "repo"
    a("init", "--encryption", "repokey", repo)
    work = tmp_path / "work"
    for name in ("a", "b"):
        tree = work / f"tree-{name}"
        small_files(tree / "shared", "s", 700, "shared")  # the same content on both machines
        small_files(tree / "own", "o", 700, f"own-{name}")
        big_file(tree / "big.bin", 50 * MiB)
    expected: list[str] = []
    for round_ in range(3):
        if round_:  # every round brings new data on both machines
            for name in ("a", "b"):
                tree = work / f"tree-{name}"
                small_files(tree / f"new{round_}", "n", 200, f"new-{name}-{round_}")
                big_file(tree / f"new{round_}.bin", 4 * MiB)
        gates = {name: Gate(work / f"gate-{name}-{round_}") for name in ("a", "b")}
        procs = {}
        try:
            for name, client in (("a", a), ("b", b)):
                procs[name] = start(
                    client,
                    "create",
                    "--read-special",
                    f"{repo}::{name}-{round_}",
                    f"tree-{name}",
                    gates[name].path.name,
                    cwd=work,
                )
            for name in ("a", "b"):
                gates[name].wait_opened(procs[name])
            # Both backups are inside their backup now, at the same time.
            assert shared_lock_holders(repo) == ["shared", "shared"]
            for gate in gates.values():
                gate.release()
            for name, process in procs.items():
                finish(process, f"create {name}-{round_}")
        finally:
            for gate in gates.values():
                gate.abandon()
            for process in procs.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
        expected += [f"a-{round_}", f"b-{round_}"]
        assert sorted(archive_names(a, repo)) == sorted(expected)
        assert sorted(archive_names(b, repo)) == sorted(expected)
        # Each machine restores the other's archive of this round.
        for name, other in (("a", b), ("b", a)):
            dest = tmp_path / f"restore-{name}-{round_}"
            extract_and_compare(other, f"{repo}::{name}-{round_}", work, f"tree-{name}", dest)
            shutil.rmtree(dest)
    assert lock_names(LocalStorage(repo)) == []


# --- (b) catching up ----------------------------------------------------------------------


def test_a_client_with_an_older_cache_catches_up_and_dedups(tmp_path: Path) -> None:
    a, b = machine(tmp_path, "a"), machine(tmp_path, "b")
    repo = tmp_path / "repo"
    a("init", "--encryption", "repokey", repo)
    work = tmp_path / "work"
    tree = work / "data"
    small_files(tree, "d", 300, "first")
    for i in range(3):
        (tree / f"step{i}").write_bytes(pseudo_random(f"step{i}", 50_000))
        a("create", f"{repo}::a{i}", "data", cwd=work)
    assert archive_names(b, repo) == ["a0", "a1", "a2"]  # B's cache is filled now
    b_caches = list((b.base / ".cache" / "hoard").iterdir())
    assert len(b_caches) == 1
    assert (b_caches[0] / "archives").is_file()  # list caches the archive records

    big_file(tree / "video.bin", 20 * MiB)
    small_files(tree / "more", "m", 300, "more")
    a("create", f"{repo}::a3", "data", cwd=work)
    assert archive_names(b, repo) == ["a0", "a1", "a2", "a3"]

    before = repo_bytes(repo)
    result = b("create", "--json", f"{repo}::b0", "data", cwd=work)
    grown = repo_bytes(repo) - before
    # B stored only its archive's metadata, not the 20 MiB A already stored.
    assert grown < 1 * MiB, grown
    stats = json.loads(result.out)["archive"]["stats"]
    assert stats["original_size"] > 20 * MiB
    assert stats["deduplicated_size"] < 1 * MiB, stats
    extract_and_compare(b, f"{repo}::b0", work, "data", tmp_path / "restore")
    assert archive_names(a, repo) == ["a0", "a1", "a2", "a3", "b0"]


# --- (c) a copied repository ---------------------------------------------------------------


def test_a_copied_repository_works_and_a_shared_cache_does_not_mix_them_up(
    tmp_path: Path,
) -> None:
    a, c, s = machine(tmp_path, "a"), machine(tmp_path, "c"), machine(tmp_path, "s")
    orig, copy = tmp_path / "orig", tmp_path / "copy"
    a("init", "--encryption", "repokey", orig)
    work = tmp_path / "work"
    small_files(work / "base", "b", 300, "base")
    big_file(work / "base" / "big.bin", 5 * MiB)
    for name, size in (("n1", 5 * MiB), ("n2", 3 * MiB)):
        small_files(work / name, "n", 300, name)
        big_file(work / name / "big.bin", size)
    built = time.monotonic()
    a("create", f"{orig}::x1", "base", cwd=work)
    s("list", orig)  # S's cache now knows the original (and so the copy: same id)
    subprocess.run(["cp", "-a", str(orig), str(copy)], check=True)

    # The copy is a working repository for every client, with or without a cache.
    for client in (a, c, s):
        assert archive_names(client, copy) == ["x1"]
    extract_and_compare(c, f"{copy}::x1", work, "base", tmp_path / "r-first")

    # S backs up new data into the original, then the same tree into the copy,
    # with ONE cache directory: its chunk index (and its files cache) now
    # describe chunks that exist only in the original. The copy's archive
    # must not reference them without storing them.
    # The files were written over 2 s before their first backup, so the files
    # cache trusts them (not "racy") and S's second backup of the same tree
    # would take their chunk lists from it: the chunks must be checked.
    time.sleep(max(0.0, built + 2.1 - time.monotonic()))
    s("create", f"{orig}::s1", "n1", cwd=work)
    copy_before = repo_bytes(copy)
    s("create", f"{copy}::s2", "n1", cwd=work)
    assert repo_bytes(copy) - copy_before > 5 * MiB  # the data was stored in the copy
    # Checked at once with a client without cache: a later backup of the same
    # files by another client would store the missing chunks and hide the loss.
    fresh = machine(tmp_path, "fresh")
    extract_and_compare(fresh, f"{copy}::s2", work, "n1", tmp_path / "r-s2-at-once")
    # ...and the other way round.
    s("create", f"{copy}::s3", "n2", cwd=work)
    orig_before = repo_bytes(orig)
    s("create", f"{orig}::s4", "n2", cwd=work)
    assert repo_bytes(orig) - orig_before > 3 * MiB
    extract_and_compare(fresh, f"{orig}::s4", work, "n2", tmp_path / "r-s4-at-once")

    # Clients with their own cache add to each side.
    a("create", f"{orig}::a2", "n2", cwd=work)
    c("create", f"{copy}::c2", "n1", cwd=work)

    want = {orig: ["a2", "s1", "s4", "x1"], copy: ["c2", "s2", "s3", "x1"]}
    trees = {"x1": "base", "s1": "n1", "s2": "n1", "c2": "n1", "s3": "n2", "s4": "n2", "a2": "n2"}
    for repo, names in want.items():
        for client in (a, c, s):
            assert sorted(archive_names(client, repo)) == names
        # A client without any cache restores every archive: every chunk is there.
        fresh = machine(tmp_path, f"fresh-{repo.name}")
        for name in names:
            dest = tmp_path / f"r-{repo.name}-{name}"
            extract_and_compare(fresh, f"{repo}::{name}", work, trees[name], dest)
            shutil.rmtree(dest)


# --- (d) read-only commands during a backup ---------------------------------------------------


@contextmanager
def running_backup(
    client: Hoard, repo: Path, work: Path, archive: str, source: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``hoard create`` that holds its shared lock until the block ends."""
    gate = Gate(work / "slow-fifo", payload=b"x" * 100_000)
    process = start(
        client, "create", "--read-special", f"{repo}::{archive}", source, "slow-fifo", cwd=work
    )
    try:
        gate.wait_opened(process)
        yield process
        gate.release()
        finish(process, "the slow create")
    finally:
        gate.abandon()
        if process.poll() is None:
            process.kill()
            process.wait()


def timed(client: Hoard, *args: str | os.PathLike[str], **kwargs: object) -> float:
    began = time.monotonic()
    client(*args, **kwargs)
    return time.monotonic() - began


def test_read_only_commands_are_not_blocked_by_a_running_backup(tmp_path: Path) -> None:
    a, b = machine(tmp_path, "a"), machine(tmp_path, "b")
    repo = tmp_path / "repo"
    a("init", "--encryption", "repokey", repo)
    work = tmp_path / "work"
    small_files(work / "data", "d", 200, "early")
    a("create", f"{repo}::early", "data", cwd=work)
    with running_backup(a, repo, work, "slow", "data") as process:
        assert shared_lock_holders(repo) == ["shared"]
        for client in (a, b):
            assert timed(client, "list", repo) < 10
            assert timed(client, "info", f"{repo}::early") < 10
            assert timed(client, "info", repo) < 10
            dest = tmp_path / f"restore-{client.base.name}"
            dest.mkdir()
            assert timed(client, "extract", f"{repo}::early", cwd=dest) < 10
            diffs = compare_trees(work / "data", dest / "data")
            assert not diffs, "\n".join(diffs[:20])
            assert archive_names(client, repo) == ["early"]
        # The exclusive lock waits for --lock-wait, then gives up.
        for env, rc in (({}, 2), (MODERN, 73)):
            began = time.monotonic()
            result = b.run("--lock-wait", "0.5", "with-lock", repo, "true", env=env)
            waited = time.monotonic() - began
            assert result.rc == rc, str(result)
            assert "Failed to create/acquire the lock" in result.err
            assert f"shared lock of pid {process.pid}" in result.err
            assert waited >= 0.5
        assert process.poll() is None  # the backup was not disturbed
    assert archive_names(b, repo) == ["early", "slow"]
    b("--lock-wait", "0", "with-lock", repo, "true")
    assert lock_names(LocalStorage(repo)) == []


# --- (e) stale and foreign lock records ----------------------------------------------------

LOCK_HOLDER = """
import sys, time
from hoard.repository.lock import Lock
from hoard.storage.local import LocalStorage

lock = Lock(LocalStorage(sys.argv[1]), exclusive=sys.argv[2] == "exclusive", command="doomed")
lock.acquire()
print("locked", flush=True)
time.sleep(600)
"""


def killed_holder(repo: Path, kind: str) -> None:
    """Run a process that takes a lock and is SIGKILLed holding it (its record stays)."""
    process = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(repo), kind],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "locked\n"
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()


def foreign_json(repo: Path, kind: str, age: timedelta) -> str:
    """Write a lock record of another host by hand; returns its name."""
    moment = (datetime.now(UTC) - age).isoformat(timespec="microseconds")
    doc = {
        "acquired": moment,
        "boot_id": "0f0f0f0f-0000-4000-8000-000000000000",
        "command": "hoard create elsewhere",
        "host": "far-away.example",
        "kind": kind,
        "pid": 4242,
        "pid_ns": 4026531836,
        "pid_start": 12345,
        "thread": 4242,
        "time": moment,
        "version": 1,
    }
    name = os.urandom(16).hex()
    (repo / "locks").mkdir(exist_ok=True)
    (repo / "locks" / name).write_text(json.dumps(doc, sort_keys=True) + "\n")
    return f"locks/{name}"


def test_stale_and_foreign_lock_records(tmp_path: Path) -> None:
    a = machine(tmp_path, "a")
    repo = tmp_path / "repo"
    a("init", "--encryption", "repokey", repo)
    work = tmp_path / "work"
    small_files(work / "data", "d", 50, "data")

    # Dead processes of this host: their records do not block, and are removed.
    # (Each in turn: a holder taking its lock would remove the other's dead record.)
    storage = LocalStorage(repo)
    for kind in ("shared", "exclusive"):
        killed_holder(repo, kind)
        assert len(lock_names(storage)) == 1
        a("--lock-wait", "0", "create", f"{repo}::after-kill-{kind}", "data", cwd=work)
        assert lock_names(storage) == []

    # Another host's records that were not refreshed for an hour are stale.
    foreign_json(repo, "exclusive", timedelta(hours=1))
    foreign_json(repo, "shared", timedelta(hours=1))
    a("--lock-wait", "0", "create", f"{repo}::after-old", "data", cwd=work)
    assert lock_names(storage) == []

    # A fresh exclusive record of another host blocks a backup...
    name = foreign_json(repo, "exclusive", timedelta(0))
    result = a.run("--lock-wait", "0.3", "create", f"{repo}::blocked", "data", cwd=work, env=MODERN)
    assert result.rc == 73, str(result)
    assert "exclusive lock of pid 4242 on host far-away.example" in result.err
    storage.delete(name)
    # ...and a fresh shared one does not, but blocks with-lock until --lock-wait passed.
    name = foreign_json(repo, "shared", timedelta(0))
    a("--lock-wait", "0", "create", f"{repo}::beside-shared", "data", cwd=work)
    began = time.monotonic()
    result = a.run("--lock-wait", "1", "with-lock", repo, "true", env=MODERN)
    assert result.rc == 73, str(result)
    assert time.monotonic() - began >= 1.0
    assert "shared lock of pid 4242 on host far-away.example" in result.err
    assert lock_names(storage) == [name]  # fresh: nobody removed it
    assert archive_names(a, repo) == [
        "after-kill-shared",
        "after-kill-exclusive",
        "after-old",
        "beside-shared",
    ]
