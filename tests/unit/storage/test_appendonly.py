"""AppendOnlyStorage: nothing stored is deleted or replaced, locks still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from hoard.errors import AppendOnlyViolation, InvalidName, ObjectExists
from hoard.repository.lock import Lock
from hoard.storage.appendonly import AppendOnlyStorage
from hoard.storage.base import Storage
from hoard.storage.local import LocalStorage
from hoard.storage.memory import MemoryStorage


@pytest.fixture(params=["memory", "local"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return MemoryStorage() if request.param == "memory" else LocalStorage(tmp_path / "r")


def test_new_objects_are_stored_and_read(inner: Storage) -> None:
    storage = AppendOnlyStorage(inner)
    storage.store("packs/ab/abc", b"data")
    storage.store("archives/new", b"record", overwrite=True)  # a new name: fine
    assert storage.load("packs/ab/abc") == b"data"
    assert inner.load("archives/new") == b"record"
    assert {i.name for i in storage.list("")} == {"packs/ab/abc", "archives/new"}
    assert storage.info("packs/ab/abc").size == 4 and storage.exists("archives/new")
    with pytest.raises(ObjectExists):
        storage.store("packs/ab/abc", b"other")


@pytest.mark.parametrize("name", ["config", "keys/repokey", "archives/x", "index/y", "packs/a/b"])
def test_deletes_and_overwrites_are_refused(inner: Storage, name: str) -> None:
    inner.store(name, b"old")
    storage = AppendOnlyStorage(inner)
    with pytest.raises(AppendOnlyViolation, match=f"append-only mode: refusing to delete {name}"):
        storage.delete(name)
    with pytest.raises(AppendOnlyViolation, match=f"refusing to overwrite {name}"):
        storage.store(name, b"new", overwrite=True)
    assert inner.load(name) == b"old"


def test_refusal_message_names_the_repository(tmp_path: Path) -> None:
    storage = AppendOnlyStorage(LocalStorage(tmp_path))
    with pytest.raises(AppendOnlyViolation) as caught:
        storage.delete("config")
    assert str(caught.value) == (f"{tmp_path} is in append-only mode: refusing to delete config.")
    assert caught.value.exit_code == 2


def test_lock_records_are_created_refreshed_and_removed(inner: Storage) -> None:
    storage = AppendOnlyStorage(inner)
    storage.store("locks/" + "a" * 32, b"1")
    storage.store("locks/" + "a" * 32, b"2", overwrite=True)
    storage.delete("locks/" + "a" * 32)
    with Lock(storage, exclusive=True) as lock:
        assert lock.refresh()
        assert any(i.name.startswith("locks/") for i in inner.list("locks/"))
    assert list(inner.list("locks/")) == []


def test_stale_temporary_files_are_kept(tmp_path: Path) -> None:
    inner = LocalStorage(tmp_path)
    inner.store("packs/ab/abc", b"x")
    temp = tmp_path / "packs/ab/abd.tmp-0123456789abcdef"
    temp.write_bytes(b"half")
    storage = AppendOnlyStorage(inner)
    assert [i.name for i in storage.list_temporary("")] == ["packs/ab/abd.tmp-0123456789abcdef"]
    with pytest.raises(AppendOnlyViolation):
        storage.delete_temporary("packs/ab/abd.tmp-0123456789abcdef")
    assert temp.exists()
    lock_temp = tmp_path / "locks" / ("b" * 32 + ".tmp-0123456789abcdef")
    lock_temp.parent.mkdir()
    lock_temp.write_bytes(b"")
    storage.delete_temporary("locks/" + lock_temp.name)
    assert not lock_temp.exists()


def test_bad_names_are_still_invalid(inner: Storage) -> None:
    storage = AppendOnlyStorage(inner)
    with pytest.raises(InvalidName):
        storage.delete("../config")
    with pytest.raises(InvalidName):
        storage.store("/abs", b"", overwrite=True)
