"""LocalStorage against the storage contract, plus what only a disk can show."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from hoard.errors import InvalidName, ObjectExists, ObjectNotFound, StorageError, StorageFull
from hoard.storage.base import check_prefix
from hoard.storage.local import LocalStorage, is_temp_name
from tests.unit.storage.conformance import StorageConformance, all_names


class TestLocalConformance(StorageConformance):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[LocalStorage]:
        storage = LocalStorage(tmp_path / "repo")
        yield storage
        storage.close()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# --- on disk -----------------------------------------------------------------------


def test_temporary_files_are_listed_apart_and_deleted_only_as_such(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.store("packs/3f/3f9a", b"pack")
    torn = tmp_path / "packs" / "3f" / "3f9b.tmp-0123456789abcdef"
    torn.write_bytes(b"half")
    os.utime(torn, (1_000_000_000, 1_000_000_000))
    (tmp_path / "packs" / "3f" / "3f9c.tmp-short").write_bytes(b"not ours")
    (info,) = storage.list_temporary("packs/")
    assert (info.name, info.size, info.mtime) == ("packs/3f/3f9b.tmp-0123456789abcdef", 4, 1e9)
    blobs = sorted(i.name for i in storage.list("packs/"))
    assert blobs == ["packs/3f/3f9a", "packs/3f/3f9c.tmp-short"]  # not our temp-name shape
    assert list(storage.list_temporary("index/")) == []
    storage.delete_temporary(info.name)
    assert not torn.exists()
    with pytest.raises(ObjectNotFound):
        storage.delete_temporary(info.name)
    with pytest.raises(InvalidName):
        storage.delete_temporary("packs/3f/3f9c.tmp-short")
    assert storage.load("packs/3f/3f9a") == b"pack"


def test_blob_is_a_file_at_its_name(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "repo")
    storage.store("packs/3f/3f9a", b"pack bytes")
    assert (tmp_path / "repo" / "packs" / "3f" / "3f9a").read_bytes() == b"pack bytes"
    assert files_under(tmp_path / "repo") == {"packs/3f/3f9a"}
    assert storage.path_of("packs/3f/3f9a") == tmp_path / "repo" / "packs" / "3f" / "3f9a"


def test_no_temp_files_after_refused_overwrite(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.store("a/b", b"1")
    with pytest.raises(ObjectExists):
        storage.store("a/b", b"2")
    storage.store("a/c", b"3", overwrite=True)
    storage.store("a/c", b"4", overwrite=True)
    assert files_under(tmp_path) == {"a/b", "a/c"}
    assert (tmp_path / "a" / "c").read_bytes() == b"4"


def test_delete_keeps_directories(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.store("packs/00/x", b"1")
    storage.delete("packs/00/x")
    assert (tmp_path / "packs" / "00").is_dir()
    assert all_names(storage) == {}


def test_relative_root_is_fixed_at_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = LocalStorage(Path("repo"))
    monkeypatch.chdir("/")
    storage.store("config", b"c")
    assert (tmp_path / "repo" / "config").read_bytes() == b"c"
    assert storage.location == str(tmp_path / "repo")


def test_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        LocalStorage(tmp_path).store("packs/00/x", b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "packs" / "00" / "x").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "packs" / "00").stat().st_mode & 0o777 == 0o700


# --- missing root --------------------------------------------------------------------


def test_missing_root_reads_as_empty(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "absent")
    assert all_names(storage) == {}
    assert all_names(storage, "packs/") == {}
    assert not storage.exists("config")
    with pytest.raises(ObjectNotFound):
        storage.load("config")
    with pytest.raises(ObjectNotFound):
        storage.delete("config")
    assert not (tmp_path / "absent").exists()


def test_store_creates_missing_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "new" / "repo")
    storage.store("config", b"c")
    assert (tmp_path / "new" / "repo" / "config").read_bytes() == b"c"


def test_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a directory")
    storage = LocalStorage(tmp_path / "file")
    assert all_names(storage) == {}
    with pytest.raises(ObjectNotFound):
        storage.load("config")
    with pytest.raises(StorageError, match="file"):
        storage.store("config", b"c")


# --- temporary files -------------------------------------------------------------------


def test_leftover_temp_file_is_not_listed(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.store("packs/ab/ab01", b"real")
    leftover = tmp_path / "packs" / "ab" / "ab02.tmp-0123456789abcdef"
    leftover.write_bytes(b"half a pack from a crash")
    assert all_names(storage) == {"packs/ab/ab01": 4}
    assert all_names(storage, "packs/ab/ab0") == {"packs/ab/ab01": 4}
    assert not storage.exists("packs/ab/ab02")
    storage.store("packs/ab/ab02", b"redone")
    assert storage.load("packs/ab/ab02") == b"redone"


def test_temp_like_names_are_refused(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with pytest.raises(InvalidName):
        storage.store("config.tmp-0123456789abcdef", b"x")
    with pytest.raises(InvalidName):
        storage.load("packs/config.tmp-0123456789abcdef")
    storage.store("config.tmp-other", b"x")
    assert all_names(storage) == {"config.tmp-other": 1}


def test_is_temp_name() -> None:
    assert is_temp_name("x.tmp-0123456789abcdef")
    assert not is_temp_name("x.tmp-0123456789abcdef0")
    assert not is_temp_name("x.tmp-0123")
    assert not is_temp_name("x")


def test_foreign_files_are_not_listed(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "lost+found" / "x").write_bytes(b"x")
    (tmp_path / "with space").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path)
    storage.store("config", b"c")
    assert all_names(storage) == {"config": 1}


def test_check_prefix() -> None:
    assert check_prefix("") == ""
    assert check_prefix("packs/") == "packs/"
    assert check_prefix("index/ab") == "index/ab"
    with pytest.raises(InvalidName):
        check_prefix("packs//")


# --- two processes -------------------------------------------------------------------


def _race_worker(
    root: str,
    names: list[str],
    worker: int,
    start: Barrier,
    results: Queue[tuple[int, list[str]]],
) -> None:
    storage = LocalStorage(Path(root))
    start.wait()
    won: list[str] = []
    for name in names:
        try:
            storage.store(name, f"worker {worker}".encode())
        except ObjectExists:
            continue
        won.append(name)
    results.put((worker, won))


def test_processes_storing_the_same_names(tmp_path: Path) -> None:
    """Exactly one process wins each name, and the blob is the winner's."""
    ctx = multiprocessing.get_context("fork")
    names = [f"locks/n{i:03d}" for i in range(60)]
    workers = 4
    start = ctx.Barrier(workers)
    results: Queue[tuple[int, list[str]]] = ctx.Queue()
    procs = [
        ctx.Process(target=_race_worker, args=(str(tmp_path), names, w, start, results))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    outcome = dict(results.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    storage = LocalStorage(tmp_path)
    winners = {name: w for w, won in outcome.items() for name in won}
    assert sum(len(won) for won in outcome.values()) == len(names)
    assert sorted(winners) == names
    for name, worker in winners.items():
        assert storage.load(name) == f"worker {worker}".encode()
    assert files_under(tmp_path) == set(names)


# --- full medium, read-only medium, permissions -----------------------------------


def test_full_medium(small_tmpfs: Path) -> None:
    storage = LocalStorage(small_tmpfs / "repo")
    storage.store("config", b"small")
    with pytest.raises(StorageFull) as caught:
        storage.store("packs/00/big", os.urandom(2 * 1024 * 1024))
    assert "No space left" in str(caught.value)
    assert files_under(small_tmpfs) == {"repo/config"}
    storage.store("packs/00/fits", b"x" * 1000)
    assert all_names(storage) == {"config": 5, "packs/00/fits": 1000}


def test_read_only_medium(small_tmpfs: Path) -> None:
    LocalStorage(small_tmpfs).store("config", b"c")
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    storage = LocalStorage(small_tmpfs)
    assert storage.load("config") == b"c"
    with pytest.raises(StorageError, match="Read-only file system"):
        storage.store("other", b"x")
    with pytest.raises(StorageError, match="Read-only file system"):
        storage.delete("config")


def _as_other_user(root: str, results: Queue[list[tuple[str, str]]]) -> None:
    """Try every operation without permission; report what was raised."""
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    storage = LocalStorage(Path(root))
    outcome: list[tuple[str, str]] = []
    operations: list[Callable[[], object]] = [
        lambda: storage.store("config", b"x"),
        lambda: storage.load("packs/00/x"),
        lambda: storage.info("packs/00/x"),
        lambda: list(storage.list()),
        lambda: storage.delete("packs/00/x"),
    ]
    for operation in operations:
        try:
            operation()
            outcome.append(("no error", ""))
        except Exception as exc:
            outcome.append((type(exc).__name__, str(exc)))
    results.put(outcome)


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="hoard-perm-"))
    base.chmod(0o755)
    yield base
    for path in (base, *base.rglob("*")):
        if path.is_dir():
            path.chmod(0o700)
    shutil.rmtree(base)


def test_permission_denied(traversable_dir: Path) -> None:
    """A root another user cannot enter gives StorageError naming path and reason."""
    root = traversable_dir / "private"
    LocalStorage(root).store("packs/00/x", b"x")
    root.chmod(0o700 if os.geteuid() == 0 else 0o000)
    ctx = multiprocessing.get_context("fork")
    results: Queue[list[tuple[str, str]]] = ctx.Queue()
    proc = ctx.Process(target=_as_other_user, args=(str(root), results))
    proc.start()
    outcome = results.get(timeout=60)
    proc.join(timeout=60)
    assert len(outcome) == 5
    for kind, message in outcome:
        assert kind == "StorageError", outcome
        assert "Permission denied" in message
        assert str(root) in message
