"""Repository: put/flush/get round trips, layout, tampering, records and keys."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from hoard.errors import (
    ArchiveRecordNotFound,
    ChunkNotFound,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    PackNotFound,
    RepositoryAlreadyExists,
    RepositoryDoesNotExist,
    RepositoryError,
)
from hoard.repository.config import DEFAULT_PACK_SIZE
from hoard.repository.indexnames import list_index_names
from hoard.repository.pack import HEADER_SIZE, PACK_MAGIC, pack_path
from hoard.repository.repository import Repository
from hoard.storage.base import Storage

from .helpers import assert_readable, put_all, random_blobs, stored_packs

PACK_SIZE = 16 * 1024


def _create(storage: Storage, tmp_path: Path | None = None, **kw: object) -> Repository:
    cache = None if tmp_path is None else tmp_path / "cache"
    return Repository.create(storage, pack_size=PACK_SIZE, cache_dir=cache, **kw)  # type: ignore[arg-type]


def test_create_then_open(storage: Storage, tmp_path: Path) -> None:
    repo = Repository.create(storage, key_mode="repokey-chacha20-poly1305")
    assert repo.config.pack_size == DEFAULT_PACK_SIZE
    repo.close()
    opened = Repository.open(storage, tmp_path / "cache", operation="write")
    assert opened.id == repo.id
    assert opened.config.key_mode == "repokey-chacha20-poly1305"
    assert opened.list_ids() == []


def test_create_refuses_existing_and_non_empty(storage: Storage) -> None:
    Repository.create(storage).close()
    with pytest.raises(RepositoryAlreadyExists):
        Repository.create(storage)


def test_create_refuses_a_storage_with_other_objects(storage: Storage) -> None:
    storage.store("notes.txt", b"hello")
    with pytest.raises(RepositoryAlreadyExists):
        Repository.create(storage)


def test_open_missing(storage: Storage) -> None:
    with pytest.raises(RepositoryDoesNotExist):
        Repository.open(storage, None)


def test_thousands_of_blobs_survive_reopen(storage: Storage, tmp_path: Path) -> None:
    repo = _create(storage, tmp_path)
    batches = [random_blobs(1000, seed) for seed in range(3)]
    for batch in batches:
        put_all(repo, batch)
        assert_readable(repo, batch)  # pending and already-written packs alike
        repo.flush()
    repo.close()
    everything = {k: v for b in batches for k, v in b.items()}
    assert len(list_index_names(storage)) == 3
    for cache_dir in (tmp_path / "cache", tmp_path / "other-cache", None):
        reopened = Repository.open(storage, cache_dir)
        assert_readable(reopened, everything)
        assert sorted(reopened.list_ids()) == sorted(everything)
        for type_ in (0, 1, 3):
            expected = sorted(i for i, (t, _) in everything.items() if t == type_)
            assert sorted(reopened.list_ids(type_)) == expected


def test_pending_blobs_are_visible_before_flush(storage: Storage) -> None:
    repo = _create(storage)
    id_ = os.urandom(32)
    repo.put(1, id_, b"meta")
    assert repo.contains(id_)
    assert repo.get(id_) == b"meta"
    assert repo.get_type(id_) == 1
    assert repo.list_ids() == [id_]
    assert repo.list_ids(0) == []
    assert not list(storage.list("packs/"))


def test_duplicate_put_is_ignored(storage: Storage) -> None:
    repo = _create(storage)
    id_ = os.urandom(32)
    repo.put(0, id_, b"first")
    repo.put(0, id_, b"second")  # pending duplicate
    repo.flush()
    repo.put(0, id_, b"third")  # stored duplicate
    assert repo.flush() is None  # nothing new to write
    assert repo.get(id_) == b"first"
    entries = [e for _, es in stored_packs(storage).values() for e in es]
    assert len(entries) == 1


def test_data_and_metadata_go_to_separate_packs(storage: Storage) -> None:
    repo = _create(storage)
    blobs = random_blobs(600, seed=7, types=(0, 1, 2, 3))
    put_all(repo, blobs)
    repo.flush()
    packs = stored_packs(storage)
    assert len(packs) > 4
    kinds = [{e.type == 0 for e in entries} for _, entries in packs.values()]
    assert all(len(k) == 1 for k in kinds)
    assert {True} in kinds and {False} in kinds
    assert sum(len(entries) for _, entries in packs.values()) == len(blobs)


def test_pack_target_size_is_respected(storage: Storage) -> None:
    repo = _create(storage)
    blobs = random_blobs(800, seed=8, max_size=3000)
    big = {os.urandom(32): (0, os.urandom(PACK_SIZE * 2)) for _ in range(2)}
    put_all(repo, blobs | big)
    repo.flush()
    packs = stored_packs(storage)
    for size, entries in packs.values():
        assert size <= PACK_SIZE or len(entries) == 1
    oversized = [entries for size, entries in packs.values() if size > PACK_SIZE]
    assert sorted(e[0].id for e in oversized) == sorted(big)
    # Closed packs were nearly full: nothing but the last pack of a kind is
    # smaller than the target minus the largest blob that could not fit.
    small = [s for s, _ in packs.values() if s < PACK_SIZE - 3000 - HEADER_SIZE]
    assert len(small) <= 2


def test_pack_names_are_the_hash_of_their_content(storage: Storage) -> None:
    repo = _create(storage)
    put_all(repo, random_blobs(100, seed=9))
    repo.flush()
    for info in storage.list("packs/"):
        data = storage.load(info.name)
        digest = hashlib.sha256(data).hexdigest()
        assert info.name == pack_path(digest)
        assert data.startswith(PACK_MAGIC)


def test_index_file_tamper_is_skipped_naming_the_file_and_packs_still_serve(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    repo = _create(storage)
    blobs = random_blobs(50, seed=10)
    put_all(repo, blobs)
    name = repo.flush()
    assert name is not None
    path = f"index/{name}"
    data = bytearray(storage.load(path))
    data[len(data) // 2] ^= 0x40
    storage.store(path, bytes(data), overwrite=True)
    reopened = Repository.open(storage, None)  # opening reads only the config
    reopened.sync_index()
    assert name in caplog.text and "damaged" in caplog.text
    for id_, (_, blob) in blobs.items():
        assert reopened.get(id_) == blob


def _flushed_blob(storage: Storage) -> tuple[Repository, bytes, str]:
    repo = _create(storage)
    blobs = random_blobs(20, seed=11, max_size=500, types=(1,))
    put_all(repo, blobs)
    repo.flush()
    (pack_name,) = stored_packs(storage)
    return repo, next(iter(blobs)), pack_name


@pytest.mark.parametrize(
    "field_offset", [0, 1, 20, 33, 36], ids=["type", "id0", "id19", "len0", "len3"]
)
def test_pack_header_tamper_names_the_blob(storage: Storage, field_offset: int) -> None:
    _, id_, pack = _flushed_blob(storage)
    data = bytearray(storage.load(pack_path(pack)))
    data[len(PACK_MAGIC) + field_offset] ^= 0x01  # the first blob's header
    storage.store(pack_path(pack), bytes(data), overwrite=True)
    reopened = Repository.open(storage, None)
    with pytest.raises(IntegrityError, match=f"object {id_.hex()} in pack {pack}") as info:
        reopened.get(id_)
    assert (info.value.object_id, info.value.pack) == (id_, pack)


def test_truncated_pack_names_the_blob(storage: Storage) -> None:
    repo, _, pack = _flushed_blob(storage)
    data = storage.load(pack_path(pack))
    last = repo.list_ids()
    storage.store(pack_path(pack), data[:-1], overwrite=True)
    failures = 0
    for id_ in last:
        try:
            repo.get(id_)
        except IntegrityError as exc:
            assert id_.hex() in str(exc)
            failures += 1
    assert failures == 1


def test_missing_pack_names_blob_and_pack(storage: Storage) -> None:
    repo, id_, pack = _flushed_blob(storage)
    storage.delete(pack_path(pack))
    with pytest.raises(
        PackNotFound, match=f"object {id_.hex()} in pack {pack}: the pack is missing"
    ) as info:
        repo.get(id_)
    assert (info.value.object_id, info.value.pack) == (id_, pack)


def test_unknown_id(storage: Storage) -> None:
    repo = _create(storage)
    missing = os.urandom(32)
    with pytest.raises(ChunkNotFound, match=missing.hex()) as info:
        repo.get(missing)
    assert info.value.object_id == missing
    with pytest.raises(ChunkNotFound):
        repo.get_type(missing)
    assert not repo.contains(missing)
    with pytest.raises(ValueError):
        repo.get(b"short")
    with pytest.raises(ValueError):
        repo.put(256, os.urandom(32), b"")


def test_archive_records(storage: Storage) -> None:
    repo = _create(storage)
    a, b = sorted(os.urandom(32) for _ in range(2))
    repo.put(0, os.urandom(32), b"data")
    repo.store_archive(b, b"record b")
    assert list_index_names(storage), "store_archive must flush first"
    repo.store_archive(a, b"record a")
    repo.store_archive(a, b"record a")  # same id again: no-op
    storage.store("archives/not-an-id", b"junk")
    assert repo.list_archives() == [a, b]
    assert repo.load_archive(a) == b"record a"
    repo.delete_archive(a)
    assert repo.list_archives() == [b]
    with pytest.raises(ArchiveRecordNotFound) as info:
        repo.load_archive(a)
    assert info.value.archive_id == a
    with pytest.raises(ArchiveRecordNotFound):
        repo.delete_archive(a)


def test_keys(storage: Storage) -> None:
    repo = _create(storage)
    repo.store_key("repokey", b"wrapped")
    with pytest.raises(ObjectExists):
        repo.store_key("repokey", b"other")
    repo.store_key("repokey", b"new", overwrite=True)
    assert repo.load_key("repokey") == b"new"
    assert repo.list_keys() == ["repokey"]
    with pytest.raises(ObjectNotFound):
        repo.load_key("missing")


def test_close_flushes_and_closed_repository_refuses(storage: Storage) -> None:
    with _create(storage) as repo:
        id_ = os.urandom(32)
        repo.put(0, id_, b"x")
    assert Repository.open(storage, None).get(id_) == b"x"
    repo.close()  # idempotent
    with pytest.raises(RepositoryError, match="closed"):
        repo.put(0, os.urandom(32), b"y")
    with pytest.raises(RepositoryError, match="closed"):
        repo.get(id_)


def test_exception_in_with_block_does_not_flush(storage: Storage) -> None:
    id_ = os.urandom(32)
    with pytest.raises(RuntimeError), _create(storage) as repo:
        repo.put(0, id_, b"x")
        raise RuntimeError("boom")
    assert not Repository.open(storage, None).contains(id_)


def test_threads_putting_at_once(storage: Storage) -> None:
    repo = _create(storage)
    batches = [random_blobs(300, seed=100 + n) for n in range(4)]
    threads = [threading.Thread(target=put_all, args=(repo, b)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    repo.flush()
    reopened = Repository.open(storage, None)
    for batch in batches:
        assert_readable(reopened, batch)


def test_rebuild_index_from_packs(storage: Storage, tmp_path: Path) -> None:
    repo = _create(storage, tmp_path)
    blobs = random_blobs(400, seed=12)
    put_all(repo, dict(list(blobs.items())[:200]))
    repo.flush()
    put_all(repo, dict(list(blobs.items())[200:]))
    repo.close()
    old = list_index_names(storage)
    assert len(old) == 2
    for name in old:
        storage.delete(f"index/{name}")
    lost = Repository.open(storage, tmp_path / "cache")
    assert not any(lost.contains(i) for i in blobs)
    report = lost.rebuild_index_from_packs()
    assert report.entries == len(blobs)
    assert report.packs == len(stored_packs(storage))
    assert report.unreadable_packs == [] and report.misnamed_packs == []
    assert list_index_names(storage) == {report.index_name}
    assert_readable(lost, blobs)
    assert_readable(Repository.open(storage, tmp_path / "fresh"), blobs)


def test_rebuild_supersedes_and_removes_old_index_files(storage: Storage) -> None:
    repo = _create(storage)
    blobs = random_blobs(100, seed=13)
    put_all(repo, blobs)
    old = repo.flush()
    report = repo.rebuild_index_from_packs()
    assert report.removed_index_files == [old]
    assert list_index_names(storage) == {report.index_name}
    assert_readable(Repository.open(storage, None), blobs)


def test_rebuild_in_append_only_mode_keeps_superseded_files(storage: Storage) -> None:
    repo = _create(storage, append_only=True)
    blobs = random_blobs(100, seed=14)
    put_all(repo, blobs)
    old = repo.flush()
    report = repo.rebuild_index_from_packs()
    assert report.removed_index_files == []
    assert list_index_names(storage) == {old, report.index_name}
    reopened = Repository.open(storage, None)
    sync = reopened.sync_index()
    assert sync.merged == 1 and sync.index_files == 2  # the superseded one is ignored
    assert_readable(reopened, blobs)


def test_rebuild_skips_broken_packs_and_reports_damaged_ones(storage: Storage) -> None:
    repo = _create(storage)
    put_all(repo, random_blobs(300, seed=15, types=(0,)))
    repo.flush()
    packs = stored_packs(storage)
    broken, damaged, *_ = sorted(packs)
    storage.store(pack_path(broken), b"garbage", overwrite=True)
    data = bytearray(storage.load(pack_path(damaged)))
    data[-1] ^= 0xFF  # inside the last blob: structure intact, name wrong
    storage.store(pack_path(damaged), bytes(data), overwrite=True)
    storage.store("packs/zz/stray", b"ignored")
    report = repo.rebuild_index_from_packs()
    assert report.unreadable_packs == [broken]
    assert report.misnamed_packs == [damaged]
    assert report.entries == sum(len(e) for n, (_, e) in packs.items() if n != broken)


def _located(repo: Repository, ids: list[bytes]) -> tuple[str, list]:
    places = [repo.locate(i) for i in ids]
    assert all(p is not None for p in places)
    (pack,) = {p[0] for p in places if p is not None}
    return pack, [p[1] for p in places if p is not None]


def test_read_pack_blobs_reads_a_pack_once_in_offset_order(storage: Storage) -> None:
    repo = _create(storage)
    blobs = random_blobs(20, seed=12, max_size=500, types=(0,))
    put_all(repo, blobs)
    repo.flush()
    ids = list(reversed(list(blobs)))
    pack, entries = _located(repo, ids)
    found = repo.read_pack_blobs(pack, entries)
    assert [e.offset for e, _ in found] == sorted(e.offset for e in entries)
    assert {e.id: blob for e, blob in found} == {i: b for i, (_, b) in blobs.items()}


def test_read_pack_blobs_of_a_truncated_or_missing_pack(storage: Storage) -> None:
    repo = _create(storage)
    blobs = random_blobs(20, seed=13, max_size=500, types=(0,))
    put_all(repo, blobs)
    repo.flush()
    pack, entries = _located(repo, list(blobs))
    data = storage.load(pack_path(pack))
    last = max(entries, key=lambda e: e.offset)
    storage.store(pack_path(pack), data[: last.offset + HEADER_SIZE + 1], overwrite=True)
    found = dict((e.id, blob) for e, blob in repo.read_pack_blobs(pack, entries))
    assert isinstance(found[last.id], IntegrityError)
    assert found[last.id].object_id == last.id and found[last.id].pack == pack
    assert sum(isinstance(b, IntegrityError) for b in found.values()) == 1
    storage.delete(pack_path(pack))
    missing = repo.read_pack_blobs(pack, entries)
    assert all(isinstance(b, PackNotFound) for _, b in missing) and len(missing) == 20
