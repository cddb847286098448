"""``create``'s watch over its lock: the walker's poll and the checks before committing."""

from __future__ import annotations

import time

import pytest

from hoard.commands.create import _LockGuard
from hoard.errors import LockLost
from hoard.repository.lock import Lock, break_locks
from hoard.storage.memory import MemoryStorage


def test_poll_raises_once_the_refresh_found_the_lock_gone() -> None:
    storage = MemoryStorage()
    lock = Lock(storage, exclusive=False, refresh_interval=0.02).acquire()
    guard = _LockGuard(lock)
    asked: list[bool] = []

    def interrupted() -> bool:
        asked.append(True)
        return False

    poll = guard.stopping(interrupted)
    assert poll() is False and asked == [True]  # held: the Ctrl-C flag answers
    break_locks(storage)
    deadline = time.monotonic() + 10
    while not lock.lost and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lock.lost
    with pytest.raises(LockLost, match="it disappeared"):
        poll()
    lock.release()  # reported already: nothing raised


def test_verify_before_committing_needs_no_refresh_and_no_lock_is_no_check() -> None:
    storage = MemoryStorage()
    lock = Lock(storage, exclusive=False).acquire()  # refreshes only every 300 s
    guard = _LockGuard(lock)
    guard.verify()
    assert guard.stopping(lambda: True)() is True
    break_locks(storage)
    assert guard.stopping(lambda: False)() is False  # the poll costs no storage access
    with pytest.raises(LockLost):
        guard.verify()
    lock.release()
    _LockGuard(None).verify()  # --bypass-lock: nothing to watch
