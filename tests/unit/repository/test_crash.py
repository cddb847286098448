"""Crash safety: a store failing at any point of a flush leaves a usable repository.

For every N, the N-th store of a flush "crashes" the process (FaultyStorage
turns the storage dead, and on LocalStorage leaves a torn temporary file).
A fresh Repository on the same storage then opens, reads everything earlier
flushes stored, and lists nothing half-written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hoard.errors import StorageError
from hoard.repository.indexnames import list_index_names
from hoard.repository.repository import Repository
from hoard.storage.base import Storage
from hoard.storage.local import LocalStorage, is_temp_name
from hoard.storage.memory import MemoryStorage
from tests.faulty import FaultyStorage, SimulatedCrash, transient_error

from .helpers import Blobs, assert_readable, put_all, random_blobs

PACK_SIZE = 4096


def _base(storage: Storage, cache: Path) -> Blobs:
    repo = Repository.create(storage, pack_size=PACK_SIZE, cache_dir=cache)
    committed = random_blobs(100, seed=1, max_size=800)
    put_all(repo, committed)
    repo.store_archive(b"A" * 32, b"first archive")
    repo.close()
    return committed


def _stores_of_one_flush(storage: Storage, cache: Path, batch: Blobs) -> int:
    counter = FaultyStorage(storage)
    repo = Repository.open(counter, cache, operation="write")
    put_all(repo, batch)
    repo.store_archive(b"B" * 32, b"second archive")
    return counter.stores


def _assert_consistent(
    storage: Storage, cache: Path | None, committed: Blobs, batch: Blobs
) -> None:
    """Check what a restarted process sees (without writing anything)."""
    repo = Repository.open(storage, cache, operation="write")
    assert_readable(repo, committed)
    listed = set(repo.list_ids())
    assert set(committed) <= listed
    # The second flush is all or nothing: its index file covers every blob.
    new = listed - set(committed)
    assert new in (set(), set(batch))
    assert_readable(repo, {k: batch[k] for k in new})
    archives = repo.list_archives()
    assert b"A" * 32 in archives
    if b"B" * 32 in archives:
        assert new == set(batch), "an archive record was written before its index"
    for info in storage.list(""):
        assert not is_temp_name(info.name)


def _assert_writable(storage: Storage, cache: Path) -> None:
    """The repository keeps working after the crash."""
    repo = Repository.open(storage, cache, operation="write")
    id_ = os.urandom(32)
    repo.put(0, id_, b"after the crash")
    repo.close()
    assert Repository.open(storage, None).get(id_) == b"after the crash"


@pytest.mark.parametrize("torn", [False, True])
def test_crash_at_every_store_of_a_flush(storage: Storage, tmp_path: Path, torn: bool) -> None:
    cache = tmp_path / "cache"
    committed = _base(storage, cache)
    batch = random_blobs(60, seed=2, max_size=800)
    total = _stores_of_one_flush(_copy(storage), tmp_path / "count-cache", batch)
    assert total > 5  # several packs, one index file, one archive record
    for n in range(total + 1):  # the last round does not crash at all
        target = _copy(storage)
        crash_cache = tmp_path / f"cache-{n}"
        shutil.copytree(cache, crash_cache)
        faulty = FaultyStorage(target, fail_after_stores=n, torn=torn)
        repo = Repository.open(faulty, crash_cache, operation="write")
        try:
            put_all(repo, batch)
            repo.store_archive(b"B" * 32, b"second archive")
        except SimulatedCrash:
            assert faulty.crashed and n < total
        else:
            assert n == total
        # Reopen as a new process: with the crashed process's cache and without.
        _assert_consistent(target, crash_cache, committed, batch)
        _assert_consistent(target, None, committed, batch)
        _assert_writable(target, crash_cache)


def _copy(storage: Storage) -> Storage:
    """An independent copy of ``storage`` (same backend), so every N starts afresh."""
    if isinstance(storage, LocalStorage):
        target = storage.root.with_name(f"{storage.root.name}-{os.urandom(4).hex()}")
        shutil.copytree(storage.root, target)
        return LocalStorage(target)
    copy = MemoryStorage()
    for info in storage.list(""):
        copy.store(info.name, storage.load(info.name))
    return copy


def test_transient_store_failure_loses_nothing(storage: Storage, tmp_path: Path) -> None:
    repo = Repository.create(storage, pack_size=PACK_SIZE, cache_dir=tmp_path / "c")
    repo.close()
    for n in range(6):
        target = _copy(storage)
        faulty = FaultyStorage(target, fail_after_stores=n, crash=False, error=transient_error)
        repo = Repository.open(faulty, tmp_path / "c", operation="write")
        batch = random_blobs(40, seed=10 + n, max_size=800)
        try:
            put_all(repo, batch)
            repo.flush()
        except StorageError:
            assert faulty.failures == 1
            put_all(repo, batch)  # the caller retries: nothing was lost in between
            repo.flush()
        assert faulty.failures == 1
        assert_readable(repo, batch)
        assert_readable(Repository.open(target, None), batch)


def test_crash_between_index_and_archive_record(storage: Storage, tmp_path: Path) -> None:
    committed = _base(storage, tmp_path / "c")
    faulty = FaultyStorage(storage, fail_after_stores=0, prefix="archives/")
    repo = Repository.open(faulty, tmp_path / "c", operation="write")
    batch = random_blobs(30, seed=3, max_size=800)
    put_all(repo, batch)
    with pytest.raises(SimulatedCrash):
        repo.store_archive(b"B" * 32, b"record")
    reopened = Repository.open(storage, tmp_path / "c")
    assert reopened.list_archives() == [b"A" * 32]
    # The index entries exist without an archive: harmless, later deduplicated.
    assert_readable(reopened, committed | batch)
    assert len(list_index_names(storage)) == 2
