"""Deletion records: delete hides in append-only mode, undelete restores, nothing is removed."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from hoard.errors import AppendOnlyViolation, ArchiveRecordNotFound
from hoard.objects.deletions import DeletionRecord, latest_states
from hoard.objects.keys import EncryptionMode, KeyMaterial
from hoard.objects.store import ObjectStore
from hoard.repository.config import RepoConfig
from hoard.repository.repository import DELETIONS_PREFIX, Repository
from hoard.storage.appendonly import AppendOnlyStorage
from hoard.storage.memory import MemoryStorage


def _store(storage: MemoryStorage, *, append_only: bool) -> ObjectStore:
    repo = Repository.create(storage, append_only=append_only, pack_size=4096)
    key = KeyMaterial.generate(EncryptionMode.REPOKEY_CHACHA20_POLY1305, repo.id)
    return ObjectStore(repo, key)


def _reopen(storage: MemoryStorage, store: ObjectStore) -> ObjectStore:
    return ObjectStore(Repository.open(storage, None), store.key)


def _names(storage: MemoryStorage) -> dict[str, bytes]:
    return {i.name: storage.load(i.name) for i in storage.list("")}


def test_delete_in_append_only_mode_hides_and_removes_nothing() -> None:
    storage = MemoryStorage()
    store = _store(storage, append_only=True)
    assert isinstance(store.repository.storage, AppendOnlyStorage)
    one, two = store.put_archive(b"one"), store.put_archive(b"two")
    before = _names(storage)
    store.delete_archive(one)
    after = _names(storage)
    assert before.items() <= after.items()  # nothing removed or changed
    assert [n for n in after if n not in before] == [
        n for n in after if n.startswith(DELETIONS_PREFIX)
    ]
    fresh = _reopen(storage, store)
    assert fresh.load_archives() == {two: b"two"}
    assert fresh.load_archives(include_hidden=True) == {one: b"one", two: b"two"}
    assert fresh.hidden_archives() == {one}
    with pytest.raises(ArchiveRecordNotFound):
        fresh.delete_archive(one)  # hidden already: as if gone


def test_undelete_and_delete_again_count_generations() -> None:
    storage = MemoryStorage()
    store = _store(storage, append_only=True)
    one = store.put_archive(b"one")
    with pytest.raises(ArchiveRecordNotFound):
        store.undelete_archive(one)  # not deleted
    store.delete_archive(one)
    store.undelete_archive(one)
    assert _reopen(storage, store).load_archives() == {one: b"one"}
    with pytest.raises(ArchiveRecordNotFound):
        store.undelete_archive(one)
    store.delete_archive(one)
    fresh = _reopen(storage, store)
    assert fresh.deletion_states()[one].generation == 3
    assert fresh.load_archives() == {}
    assert len(list(storage.list(DELETIONS_PREFIX))) == 3
    with pytest.raises(ArchiveRecordNotFound):
        store.delete_archive(b"\x01" * 32)


def test_outside_append_only_mode_delete_removes_record_and_deletion_records() -> None:
    storage = MemoryStorage()
    store = _store(storage, append_only=True)
    one, two = store.put_archive(b"one"), store.put_archive(b"two")
    store.delete_archive(one)
    store.delete_archive(two)
    store.undelete_archive(two)
    with pytest.raises(AppendOnlyViolation):
        store.purge_hidden_archives()
    config = dataclasses.replace(store.repository.config, append_only=False)
    config.save(storage, overwrite=True)
    plain = _reopen(storage, store)
    assert not isinstance(plain.repository.storage, AppendOnlyStorage)
    assert plain.purge_hidden_archives() == [one]
    assert plain.load_archives(include_hidden=True) == {two: b"two"}
    assert len(list(storage.list(DELETIONS_PREFIX))) == 2  # two's records
    plain.hide_archive(two)
    plain.delete_archive(two)  # outside append-only mode hidden ones go too
    assert list(storage.list(DELETIONS_PREFIX)) == []
    assert list(storage.list("archives/")) == []


def test_a_forged_or_damaged_deletion_record_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    storage = MemoryStorage()
    store = _store(storage, append_only=True)
    one = store.put_archive(b"one")
    forged = DeletionRecord.next_for(one, None).encode()
    storage.store(DELETIONS_PREFIX + "ab" * 32, forged)  # not sealed with the key
    with caplog.at_level(logging.WARNING):
        assert _reopen(storage, store).load_archives() == {one: b"one"}
    assert "Deletion record abab" in caplog.text and "ignored" in caplog.text


def test_deletion_record_format() -> None:
    record = DeletionRecord.next_for(b"\x07" * 32, None)
    assert record.generation == 1 and record.hidden
    again = DeletionRecord.decode(record.encode())
    assert again == record
    restore = DeletionRecord.next_for(record.archive, record)
    assert (restore.generation, restore.hidden) == (2, False)
    assert latest_states([restore, record]) == {record.archive: restore}
    doc = record.encode().replace(b'"hidden":true', b'"hidden":false')
    for bad in (b"x", b"[]", b'{"version":2}', doc):
        with pytest.raises(ValueError):
            DeletionRecord.decode(bad)


def test_quota_and_free_space_wrap_the_storage() -> None:
    storage = MemoryStorage()
    config = RepoConfig.new(storage_quota=10**7)
    config.save(storage)
    repo = Repository.open(storage, None)
    assert type(repo.storage).__name__ == "QuotaStorage"


def test_a_second_client_with_a_warm_cache_sees_deletions_and_restores(tmp_path: Path) -> None:
    storage = MemoryStorage()
    first = _store(storage, append_only=True)
    one, two = first.put_archive(b"one"), first.put_archive(b"two")
    second = ObjectStore(Repository.open(storage, tmp_path / "b"), first.key)
    assert set(second.load_archives()) == {one, two}  # warms b's caches
    first.delete_archive(one)
    again = ObjectStore(Repository.open(storage, tmp_path / "b"), first.key)
    assert set(again.load_archives()) == {two}
    assert (tmp_path / "b" / again.repository.id.hex() / "deletions").exists()
    again.undelete_archive(one)
    assert set(_reopen(storage, first).load_archives()) == {one, two}
    assert set(
        ObjectStore(Repository.open(storage, tmp_path / "b"), first.key).load_archives()
    ) == {
        one,
        two,
    }
