"""Repository locks: lock records, conflicts, staleness, refresh, loss, processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hoard.errors import LockFailed, LockLost, LockTimeout, NotLocked, NotMyLock, StorageError
from hoard.repository.lock import (
    HostIdentity,
    Lock,
    LockRecord,
    break_locks,
    is_lock_name,
    list_locks,
    lock_names,
    process_alive,
    process_start_time,
    utc_now,
)
from hoard.storage.base import Storage
from hoard.storage.local import LocalStorage
from hoard.storage.memory import MemoryStorage
from tests.faulty import FaultyStorage

SPAWN = multiprocessing.get_context("spawn")
FOREIGN_HOST = "elsewhere.example"


@pytest.fixture
def lock_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture the lock module's log even if the CLI made "hoard" non-propagating."""
    logger = logging.getLogger("hoard.repository.lock")
    old_level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(old_level)


def write_record(
    storage: Storage,
    *,
    kind: str = "exclusive",
    host: str = FOREIGN_HOST,
    pid: int = 4242,
    age: float = 0.0,
    **fields: Any,
) -> str:
    """Store a lock record as another hoard would have; returns its name."""
    name = "locks/" + os.urandom(16).hex()
    record = LockRecord(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        host=host,
        pid=pid,
        time=utc_now() - timedelta(seconds=age),
        command="hoard compact /elsewhere",
        **fields,
    )
    storage.store(name, record.to_json())
    return name


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# --- records ---------------------------------------------------------------------


def test_record_round_trip() -> None:
    here = HostIdentity.current()
    record = LockRecord(
        name="locks/" + "ab" * 16,
        kind="shared",
        host=here.hostname,
        pid=os.getpid(),
        time=utc_now(),
        boot_id=here.boot_id,
        pid_ns=here.pid_ns,
        pid_start=process_start_time(os.getpid()),
        thread=threading.get_native_id(),
        acquired=utc_now(),
        command="hoard create ::x",
    )
    assert LockRecord.from_json(record.name, record.to_json()) == record
    assert record.to_json().endswith(b"}\n")


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b"[]",
        b'{"kind": "both", "host": "h", "pid": 1, "time": "2024-01-01T00:00:00", "version": 1}',
        b'{"kind": "shared", "host": "h", "pid": 0, "time": "2024-01-01T00:00:00", "version": 1}',
        b'{"kind": "shared", "host": "h", "pid": true, "time": "2024-01-01", "version": 1}',
        b'{"kind": "shared", "host": "h", "pid": 1, "time": "yesterday", "version": 1}',
        b'{"kind": "shared", "host": "h", "pid": 1, "time": "2024-01-01T00:00:00"}',
    ],
)
def test_malformed_records_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        LockRecord.from_json("locks/" + "0" * 32, data)


def test_unknown_keys_are_ignored_and_naive_times_are_utc() -> None:
    data = (
        b'{"kind": "shared", "host": "h", "pid": 7, "time": "2024-01-01T00:00:00",'
        b' "version": 2, "future": [1, 2]}'
    )
    record = LockRecord.from_json("locks/" + "0" * 32, data)
    assert record.pid == 7
    assert record.time.utcoffset() == timedelta(0)


def test_lock_names() -> None:
    assert is_lock_name("locks/" + "0123456789abcdef" * 2)
    assert not is_lock_name("locks/" + "0123456789ABCDEF" * 2)
    assert not is_lock_name("locks/README")
    assert not is_lock_name("lockss/" + "0" * 32)


# --- shared and exclusive in one process ----------------------------------------


def test_shared_locks_coexist(storage: Storage) -> None:
    with Lock(storage, exclusive=False) as first, Lock(storage, exclusive=False) as second:
        assert first.held and second.held
        kinds = [record.kind for record in list_locks(storage)]
        assert kinds == ["shared", "shared"]
    assert list_locks(storage) == []


@pytest.mark.parametrize(
    ("held", "wanted"), [(False, True), (True, False), (True, True)], ids=["S-X", "X-S", "X-X"]
)
def test_conflicting_lock_times_out_and_leaves_nothing(
    storage: Storage, held: bool, wanted: bool
) -> None:
    with Lock(storage, exclusive=held, command="hoard holder") as holder:
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught:
            Lock(storage, exclusive=wanted, lock_wait=0.2).acquire()
        assert time.monotonic() - started >= 0.2
        message = str(caught.value)
        kind = "exclusive" if held else "shared"
        assert message.startswith("Failed to create/acquire the lock ")
        assert message.endswith(" (timeout).")
        assert f"{kind} lock of pid {os.getpid()} on host " in message
        assert "(hoard holder)" in message
        assert caught.value.modern_exit_code == 73
        assert lock_names(storage) == [holder.name]


def test_lock_wait_zero_tries_once(storage: Storage) -> None:
    with Lock(storage, exclusive=True), pytest.raises(LockTimeout):
        Lock(storage, exclusive=True, lock_wait=0).acquire()
    Lock(storage, exclusive=True, lock_wait=0).acquire().release()


def test_waiter_gets_the_lock_when_the_holder_releases(storage: Storage) -> None:
    holder = Lock(storage, exclusive=False).acquire()
    timer = threading.Timer(0.3, holder.release)
    started = time.monotonic()
    timer.start()
    try:
        with Lock(storage, exclusive=True, lock_wait=10) as waiter:
            assert time.monotonic() - started >= 0.3
            assert lock_names(storage) == [waiter.name]
    finally:
        timer.join()


def test_acquire_and_release_are_idempotent(storage: Storage) -> None:
    lock = Lock(storage, exclusive=True)
    lock.release()  # never acquired: nothing to do
    assert lock.acquire() is lock.acquire()
    assert len(lock_names(storage)) == 1
    lock.release()
    lock.release()
    assert lock_names(storage) == []
    assert not lock.held


# --- staleness ------------------------------------------------------------------


def test_fresh_record_of_another_host_blocks(storage: Storage) -> None:
    write_record(storage, kind="shared", pid=1)
    with pytest.raises(LockTimeout, match=f"shared lock of pid 1 on host {FOREIGN_HOST}"):
        Lock(storage, exclusive=True, lock_wait=0.1).acquire()


def test_old_record_of_another_host_is_stale(
    storage: Storage, lock_log: pytest.LogCaptureFixture
) -> None:
    name = write_record(storage, age=2 * 3600)
    with Lock(storage, exclusive=True, lock_wait=0) as lock:
        assert lock_names(storage) == [lock.name]
    assert f"Removed stale lock {name}" in lock_log.text
    assert "not refreshed for 2:00:00" in lock_log.text
    assert any(r.levelno == logging.INFO for r in lock_log.records)


def test_stale_after_is_configurable(storage: Storage) -> None:
    write_record(storage, age=30)
    with pytest.raises(LockTimeout):
        Lock(storage, exclusive=True, lock_wait=0).acquire()
    Lock(storage, exclusive=True, lock_wait=0, refresh_interval=1, stale_after=10).acquire()


def _this_host(**fields: Any) -> dict[str, Any]:
    here = HostIdentity.current()
    return {"host": here.hostname, "boot_id": here.boot_id, "pid_ns": here.pid_ns} | fields


def test_reused_pid_is_stale(storage: Storage) -> None:
    """Our own pid with another start time: the holder was an earlier process."""
    start = process_start_time(os.getpid())
    if start is None:
        pytest.skip("no /proc/<pid>/stat start times on this platform")
    write_record(storage, **_this_host(pid=os.getpid(), pid_start=start + 1))
    Lock(storage, exclusive=True, lock_wait=0).acquire().release()
    write_record(storage, **_this_host(pid=os.getpid(), pid_start=start))
    with pytest.raises(LockTimeout):
        Lock(storage, exclusive=True, lock_wait=0).acquire()


def test_same_hostname_from_another_boot_is_not_this_host(storage: Storage) -> None:
    """A pid is only compared within one boot and pid namespace."""
    write_record(storage, **_this_host(boot_id="another-boot", pid=_dead_pid()))
    with pytest.raises(LockTimeout):
        Lock(storage, exclusive=True, lock_wait=0).acquire()


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_process_alive() -> None:
    assert process_alive(os.getpid(), process_start_time(os.getpid()))
    assert not process_alive(_dead_pid(), None)
    assert process_alive(0, None)  # not a pid: never "dead", never signalled
    assert process_alive(-1, None)


def test_zombie_holder_is_stale(storage: Storage) -> None:
    """A process that exited but was not reaped yet no longer holds anything."""
    process = subprocess.Popen(["sleep", "0"])
    try:
        start = process_start_time(process.pid)
        if start is None:
            pytest.skip("no /proc/<pid>/stat on this platform")
        wait_until(lambda: not process_alive(process.pid, start))
        write_record(storage, **_this_host(pid=process.pid, pid_start=start))
        Lock(storage, exclusive=True, lock_wait=0).acquire().release()
    finally:
        process.wait()


def _die_holding(root: str) -> None:
    """Take an exclusive lock and exit without releasing (a crash)."""
    Lock(LocalStorage(root), exclusive=True, command="crashed").acquire()
    os._exit(0)


def test_lock_of_a_dead_process_on_this_host_is_removed(
    local_storage: LocalStorage, lock_log: pytest.LogCaptureFixture
) -> None:
    child = SPAWN.Process(target=_die_holding, args=(str(local_storage.root),))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    [left] = list_locks(local_storage)
    assert left.pid == child.pid and left.command == "crashed"
    with Lock(local_storage, exclusive=True, lock_wait=0) as lock:
        assert lock_names(local_storage) == [lock.name]
    assert f"Removed stale lock {left.name}, exclusive lock of pid {child.pid}" in lock_log.text
    assert "its process is not running" in lock_log.text


def test_unreadable_record_blocks_until_broken(storage: Storage) -> None:
    storage.store("locks/" + "0" * 32, b"not json")
    storage.store("locks/README", b"names of another shape are ignored")
    with pytest.raises(LockTimeout, match=r"unreadable lock record locks/0+ "):
        Lock(storage, exclusive=False, lock_wait=0).acquire()
    assert list_locks(storage) == []
    assert break_locks(storage) == 1
    Lock(storage, exclusive=True, lock_wait=0).acquire().release()
    assert storage.exists("locks/README")


# --- refresh, loss, break-lock ---------------------------------------------------


class Clock:
    """A settable clock for ``Lock(now=...)``."""

    def __init__(self) -> None:
        self.time = datetime(2030, 1, 1, 12, 0, tzinfo=utc_now().tzinfo)

    def __call__(self) -> datetime:
        return self.time


def test_refresh_rewrites_the_time(storage: Storage) -> None:
    clock = Clock()
    with Lock(storage, exclusive=False, now=clock, refresh_interval=0.02):
        [record] = list_locks(storage)
        assert record.time == record.acquired == clock.time
        clock.time += timedelta(minutes=10)
        wait_until(lambda: list_locks(storage)[0].time == clock.time)
        [refreshed] = list_locks(storage)
        assert refreshed.acquired == record.acquired
        assert refreshed.name == record.name


def test_refreshed_lock_stays_live_and_unrefreshed_one_goes_stale(storage: Storage) -> None:
    clock = Clock()
    settings: dict[str, Any] = {"now": clock, "stale_after": 60, "refresh_interval": 30}
    with Lock(storage, exclusive=False, **(settings | {"refresh_interval": 0.02})):
        for _ in range(3):
            clock.time += timedelta(seconds=45)
            wait_until(lambda: list_locks(storage)[0].time == clock.time)
            with pytest.raises(LockTimeout):
                Lock(storage, exclusive=True, lock_wait=0, **settings).acquire()
    sleeper = Lock(storage, exclusive=False, **settings).acquire()
    clock.time += timedelta(seconds=61)
    with Lock(storage, exclusive=True, lock_wait=0, **settings) as taker:
        assert lock_names(storage) == [taker.name]
    with pytest.raises(NotLocked):
        sleeper.release()


def test_broken_lock_is_detected_by_refresh_and_release(
    storage: Storage, lock_log: pytest.LogCaptureFixture
) -> None:
    lock = Lock(storage, exclusive=True, refresh_interval=0.02).acquire()
    assert break_locks(storage) == 1
    wait_until(lambda: lock.lost)
    assert f"Lock {storage.location}/{lock.name} disappeared" in lock_log.text
    assert lock_names(storage) == []  # the refresh did not bring it back
    with pytest.raises(NotLocked) as caught:
        lock.release()
    assert caught.value.modern_exit_code == 74
    lock.release()  # harmless now


def test_loss_found_by_refresh_is_raised_by_verify_and_not_again_at_release(
    storage: Storage,
) -> None:
    lock = Lock(storage, exclusive=False, refresh_interval=0.02).acquire()
    lock.verify()  # held: nothing to say
    assert break_locks(storage) == 1
    wait_until(lambda: lock.lost)
    with pytest.raises(LockLost) as caught:
        lock.verify("the backup was aborted")
    assert str(caught.value) == (
        f"Lost the lock {storage.location}/{lock.name}: it disappeared (break-lock, or removed"
        " as stale by another client); the backup was aborted."
    )
    assert caught.value.modern_exit_code == 74
    lock.release()  # reported already: no NotLocked
    assert not lock.held


def test_verify_asks_the_storage_without_waiting_for_the_refresh(storage: Storage) -> None:
    lock = Lock(storage, exclusive=True).acquire()  # refreshes every 300 s
    name = lock.name
    assert name is not None
    storage.store(
        name, LockRecord(name, "exclusive", FOREIGN_HOST, 99, utc_now()).to_json(), overwrite=True
    )
    with pytest.raises(LockLost, match="it was replaced by another client's lock record"):
        lock.verify()
    lock.release()
    assert storage.exists(name)  # not ours to delete


def test_replaced_record_is_not_my_lock(storage: Storage) -> None:
    lock = Lock(storage, exclusive=True).acquire()
    name = lock.name
    assert name is not None
    storage.store(
        name, LockRecord(name, "exclusive", FOREIGN_HOST, 99, utc_now()).to_json(), overwrite=True
    )
    with pytest.raises(NotMyLock) as caught:
        lock.release()
    assert caught.value.modern_exit_code == 75
    assert storage.exists(name)  # not ours to delete


def test_with_block_error_is_not_masked_by_a_lost_lock(storage: Storage) -> None:
    with pytest.raises(RuntimeError, match="backup failed"), Lock(storage, exclusive=True):
        break_locks(storage)
        raise RuntimeError("backup failed")


def test_refresh_survives_a_storage_error(lock_log: pytest.LogCaptureFixture) -> None:
    storage = FaultyStorage(
        MemoryStorage(),
        fail_after_stores=1,
        crash=False,
        prefix="locks/",
        error=lambda name: StorageError(f"{name}: connection reset"),
    )
    clock = Clock()
    lock = Lock(storage, exclusive=True, now=clock).acquire()
    clock.time += timedelta(minutes=5)
    assert lock.refresh()  # the store fails: logged, the lock is kept
    assert "Could not refresh lock" in lock_log.text
    assert list_locks(storage)[0].time < clock.time
    assert lock.refresh()
    assert list_locks(storage)[0].time == clock.time
    lock.release()


def test_storage_refusing_the_record_is_lock_failed(local_storage: LocalStorage) -> None:
    local_storage.root.mkdir()
    (local_storage.root / "locks").write_text("a file where the directory should be")
    with pytest.raises(LockFailed) as caught:
        Lock(local_storage, exclusive=False).acquire()
    assert caught.value.modern_exit_code == 72
    assert str(caught.value).startswith(f"Failed to create/acquire the lock {local_storage.root}")


def test_refresh_interval_must_be_below_stale_after(storage: Storage) -> None:
    with pytest.raises(ValueError):
        Lock(storage, exclusive=True, refresh_interval=60, stale_after=60)


# --- several processes -----------------------------------------------------------


def _hold(root: str, exclusive: bool, ready: Any, done: Any) -> None:
    with Lock(LocalStorage(root), exclusive=exclusive, lock_wait=10):
        ready.set()
        done.wait(60)


@pytest.mark.parametrize(
    ("held", "wanted"), [(False, True), (True, False)], ids=["shared-blocks-X", "X-blocks-shared"]
)
def test_lock_held_by_another_process(
    local_storage: LocalStorage, held: bool, wanted: bool
) -> None:
    ready, done = SPAWN.Event(), SPAWN.Event()
    child = SPAWN.Process(target=_hold, args=(str(local_storage.root), held, ready, done))
    child.start()
    try:
        assert ready.wait(60)
        with pytest.raises(LockTimeout, match=f"lock of pid {child.pid} on host "):
            Lock(local_storage, exclusive=wanted, lock_wait=0.2).acquire()
    finally:
        done.set()
        child.join(timeout=60)
    assert child.exitcode == 0
    assert lock_names(local_storage) == []
    Lock(local_storage, exclusive=wanted, lock_wait=0).acquire().release()


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def _contend(root: str, exclusive: bool, rounds: int, log: str, start: Any) -> None:
    """Take the lock ``rounds`` times, logging entry and exit while holding it."""
    storage = LocalStorage(root)
    tag = "X" if exclusive else "S"
    start.wait(60)
    for _ in range(rounds):
        with Lock(storage, exclusive=exclusive, lock_wait=60):
            _append(log, f"{tag}+ {os.getpid()}")
            time.sleep(0.01)
            _append(log, f"{tag}- {os.getpid()}")


def _check_history(lines: list[str]) -> int:
    """Replay the log: exclusive holders never overlap anyone; returns the entries."""
    active: dict[str, str] = {}
    entries = 0
    for line in lines:
        event, pid = line.split()
        tag, sign = event[0], event[1]
        if sign == "+":
            assert pid not in active
            assert "X" not in active.values(), f"{line} while exclusive lock held: {active}"
            assert tag == "S" or not active, f"{line} while {active} held"
            active[pid] = tag
            entries += 1
        else:
            assert active.pop(pid) == tag
    assert not active
    return entries


def test_exclusive_holders_never_overlap(tmp_path: Path) -> None:
    """Three processes request the exclusive lock at once, twice more each;
    two shared holders join in. No exclusive holder overlaps any other holder."""
    storage = LocalStorage(tmp_path / "repo")
    log = tmp_path / "history"
    start = SPAWN.Event()
    kinds = [True, True, True, False, False]
    rounds = 3
    workers = [
        SPAWN.Process(target=_contend, args=(str(storage.root), kind, rounds, str(log), start))
        for kind in kinds
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert _check_history(log.read_text().splitlines()) == len(kinds) * rounds
    assert lock_names(storage) == []
