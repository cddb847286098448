"""``hoard with-lock`` and ``hoard break-lock``, and lock errors as a user sees them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from hoard.repository.lock import LockRecord, list_locks, lock_names, utc_now
from hoard.storage.local import LocalStorage

from .conftest import Hoard

MODERN = {"BORG_EXIT_CODES": "modern"}

# A separate process holding a lock until its stdin closes.
HOLDER = """
import sys
from hoard.repository.lock import Lock
from hoard.storage.local import LocalStorage

lock = Lock(LocalStorage(sys.argv[1]), exclusive=sys.argv[2] == "exclusive", lock_wait=10,
            command="test holder")
with lock:
    print("locked", flush=True)
    sys.stdin.read()
print("released", flush=True)
"""


@dataclass
class Holder:
    process: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> tuple[int, str, str]:
        """Let the holder release; returns its exit status, stdout and stderr."""
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, err


@contextmanager
def holding(repo: Path, kind: str) -> Iterator[Holder]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(repo), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    holder = Holder(process)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == "locked\n", line + holder.release()[2]
        yield holder
    finally:
        if process.returncode is None:
            holder.release()


def foreign_record(repo: Path, *, age: timedelta = timedelta(0)) -> str:
    """A fresh (or ``age`` old) exclusive lock record of another host."""
    name = "locks/" + os.urandom(16).hex()
    record = LockRecord(name, "exclusive", "elsewhere.example", 777, utc_now() - age)
    LocalStorage(repo).store(name, record.to_json())
    return name


# --- with-lock -------------------------------------------------------------------


def test_with_lock_runs_the_command_holding_the_exclusive_lock(hoard: Hoard, repo: Path) -> None:
    script = f"ls {repo}/locks; cat {repo}/locks/*"
    result = hoard("with-lock", repo, "sh", "-c", script)
    name, record = result.out.splitlines()
    assert len(name) == 32
    assert '"kind":"exclusive"' in record
    assert f"with-lock {repo} sh -c" in record
    assert lock_names(LocalStorage(repo)) == []


@pytest.mark.parametrize(
    ("env", "command", "status"),
    [({}, "false", 1), ({}, "exit 3", 3), (MODERN, "exit 3", 3), (MODERN, "exit 101", 101)],
)
def test_with_lock_exits_with_the_command_status(
    hoard: Hoard, repo: Path, env: dict[str, str], command: str, status: int
) -> None:
    """Borg's status for legacy and modern exit codes alike: the command's."""
    result = hoard.run("with-lock", repo, "sh", "-c", command, env=env)
    assert result.rc == status, str(result)
    assert lock_names(LocalStorage(repo)) == []


@pytest.mark.parametrize(("env", "rc"), [({}, 2), (MODERN, 4)], ids=["legacy", "modern"])
def test_with_lock_command_not_found(
    hoard: Hoard, repo: Path, env: dict[str, str], rc: int
) -> None:
    result = hoard.run("with-lock", repo, "no-such-command-here", "--flag", env=env)
    assert result.rc == rc, str(result)
    assert "Error while trying to run 'no-such-command-here'" in result.err
    assert lock_names(LocalStorage(repo)) == []


@pytest.mark.parametrize(("env", "rc"), [({}, 2), (MODERN, 73)], ids=["legacy", "modern"])
def test_with_lock_times_out_while_a_shared_lock_is_held(
    hoard: Hoard, repo: Path, env: dict[str, str], rc: int
) -> None:
    with holding(repo, "shared") as holder:
        result = hoard.run("--lock-wait", "0.3", "with-lock", repo, "true", env=env)
        assert result.rc == rc, str(result)
        assert f"Failed to create/acquire the lock {repo}/locks" in result.err
        assert f"shared lock of pid {holder.pid} on host " in result.err
        assert "(test holder) (timeout)." in result.err
        assert [r.pid for r in list_locks(LocalStorage(repo))] == [holder.pid]
    hoard("--lock-wait", "0.3", "with-lock", repo, "true")


def test_with_lock_blocks_while_another_with_lock_runs(hoard: Hoard, repo: Path) -> None:
    with holding(repo, "exclusive") as holder:
        result = hoard.run("with-lock", "--lock-wait", "0.2", repo, "true", env=MODERN)
        assert result.rc == 73, str(result)
        assert f"exclusive lock of pid {holder.pid}" in result.err


def test_foreign_lock_blocks_until_stale(hoard: Hoard, repo: Path) -> None:
    name = foreign_record(repo)
    result = hoard.run("--lock-wait", "0", "with-lock", repo, "true", env=MODERN)
    assert result.rc == 73, str(result)
    assert "exclusive lock of pid 777 on host elsewhere.example" in result.err
    LocalStorage(repo).delete(name)
    foreign_record(repo, age=timedelta(hours=1))
    hoard("--lock-wait", "0", "with-lock", repo, "true")
    assert lock_names(LocalStorage(repo)) == []


def test_bypass_lock_ignores_locks(hoard: Hoard, repo: Path) -> None:
    name = foreign_record(repo)
    result = hoard("--bypass-lock", "with-lock", repo, "sh", "-c", f"ls {repo}/locks")
    assert result.out.split() == [name.removeprefix("locks/")]


# --- break-lock ------------------------------------------------------------------


def test_break_lock_removes_every_record_without_the_key(hoard: Hoard, repo: Path) -> None:
    no_passphrase = {k: v for k, v in hoard.env.items() if k != "BORG_PASSPHRASE"}
    with holding(repo, "shared") as holder:
        foreign_record(repo)
        assert len(lock_names(LocalStorage(repo))) == 2
        hoard.env = no_passphrase
        result = hoard("--info", "break-lock", repo)
        assert "Removed 2 lock record(s)" in result.err
        assert lock_names(LocalStorage(repo)) == []
        hoard("--lock-wait", "0", "with-lock", repo, "true")
        status, out, err = holder.release()
    # The holder whose lock was broken learns it when it releases.
    assert status != 0 and "released" not in out
    assert f"Failed to release the lock {repo}/locks/" in err
    assert "(was not locked)" in err


@pytest.mark.parametrize(("env", "rc"), [({}, 2), (MODERN, 13)], ids=["legacy", "modern"])
def test_break_lock_of_a_missing_repository(
    hoard: Hoard, tmp_path: Path, env: dict[str, str], rc: int
) -> None:
    result = hoard.run("break-lock", tmp_path / "nothing", env=env)
    assert result.rc == rc, str(result)
    assert f"Repository {tmp_path / 'nothing'} does not exist." in result.err


def test_break_lock_uses_borg_repo(hoard: Hoard, repo: Path) -> None:
    foreign_record(repo)
    hoard("break-lock", env={"BORG_REPO": str(repo)})
    assert lock_names(LocalStorage(repo)) == []
