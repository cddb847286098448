"""QuotaStorage: the storage contract, the quota and the minimum free space."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from hoard.errors import InsufficientFreeSpace, ObjectExists, StorageQuotaExceeded
from hoard.storage.memory import MemoryStorage
from hoard.storage.quota import QuotaStorage
from tests.unit.storage.conformance import StorageConformance


class TestQuotaConformance(StorageConformance):
    @pytest.fixture
    def storage(self) -> Iterator[QuotaStorage]:
        storage = QuotaStorage(MemoryStorage(), quota=10**9, additional_free_space=0)
        yield storage
        storage.close()


class _SmallDisk(MemoryStorage):
    """A memory storage that reports a fixed amount of free space."""

    def __init__(self, free: int) -> None:
        super().__init__()
        self.free = free

    def free_space(self) -> int | None:
        return self.free


def test_quota_counts_what_is_there_and_refuses_before_writing() -> None:
    inner = MemoryStorage()
    inner.store("packs/aa/old", b"x" * 600)
    storage = QuotaStorage(inner, quota=1000)
    storage.store("packs/aa/one", b"y" * 300)
    assert storage.used() == 900
    with pytest.raises(StorageQuotaExceeded) as caught:
        storage.store("packs/aa/two", b"z" * 200)
    assert str(caught.value) == (
        "The storage quota (1.00 kB) has been exceeded (1.10 kB). Try deleting some archives."
    )
    assert caught.value.modern_exit_code == 20
    assert not inner.exists("packs/aa/two")
    with pytest.raises(StorageQuotaExceeded):
        storage.store("archives/" + "0" * 64, b"r" * 200)
    # bookkeeping is never refused (delete, compact and locks must keep working)
    storage.store("index/i", b"i" * 200)
    storage.store("locks/" + "a" * 32, b"l" * 50)
    storage.store("locks/" + "a" * 32, b"l" * 10, overwrite=True)
    assert storage.used() == 1110
    storage.delete("packs/aa/old")
    assert storage.used() == 510
    storage.store("packs/aa/two", b"z" * 200)


def test_zero_or_none_is_no_quota() -> None:
    for quota in (0, None):
        storage = QuotaStorage(MemoryStorage(), quota=quota)
        storage.store("packs/aa/big", b"x" * 10_000)


def test_additional_free_space_is_kept() -> None:
    inner = _SmallDisk(free=10_000)
    storage = QuotaStorage(inner, additional_free_space=8_000)
    storage.store("packs/aa/a", b"x" * 2_000)
    with pytest.raises(InsufficientFreeSpace) as caught:
        storage.store("packs/aa/b", b"x" * 2_001)
    assert str(caught.value) == (
        "Insufficient free space to complete transaction (required: 10.00 kB, available: 10.00 kB)."
    )
    assert caught.value.modern_exit_code == 14
    assert not inner.exists("packs/aa/b")
    storage.store("index/x", b"x" * 5_000)  # bookkeeping is not refused


def test_a_failed_store_is_not_counted() -> None:
    storage = QuotaStorage(MemoryStorage(), quota=1000)
    storage.store("packs/aa/a", b"x" * 400)
    with pytest.raises(ObjectExists):
        storage.store("packs/aa/a", b"x" * 400)
    assert storage.used() == 400


def test_threads_storing_at_once_never_pass_the_quota() -> None:
    inner = MemoryStorage()
    storage = QuotaStorage(inner, quota=1000)

    def put(n: int) -> bool:
        try:
            storage.store(f"packs/aa/{n}", b"x" * 100)
        except StorageQuotaExceeded:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        stored = list(pool.map(put, range(40)))
    assert sum(stored) == 10
    assert sum(i.size for i in inner.list("")) == 1000 == storage.used()
