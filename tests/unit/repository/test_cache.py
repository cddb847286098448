"""The local index cache: incremental catch-up, and rebuilds when it must."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hoard.errors import IntegrityError, PackNotFound
from hoard.repository.cache import CHUNKS_FILE, STATE_FILE, IndexCache
from hoard.repository.indexfile import IndexFile
from hoard.repository.indexnames import index_path, list_index_names
from hoard.repository.pack import pack_path
from hoard.repository.repository import Repository
from hoard.storage.base import Storage

from .helpers import assert_readable, put_all, random_blobs

PACK_SIZE = 8 * 1024


def _open(storage: Storage, cache: Path | None) -> Repository:
    repo = Repository.open(storage, cache, operation="write")
    repo.sync_index()
    return repo


def test_first_open_rebuilds_then_reopen_is_incremental(storage: Storage, tmp_path: Path) -> None:
    repo = Repository.create(storage, pack_size=PACK_SIZE, cache_dir=tmp_path / "c")
    put_all(repo, random_blobs(100, seed=1))
    repo.close()
    # The creating instance recorded its index file: nothing left to merge.
    report = _open(storage, tmp_path / "c").sync_index()
    assert (report.merged, report.rebuilt, report.index_files) == (0, False, 1)
    report = _open(storage, tmp_path / "elsewhere").sync_index()
    assert (report.merged, report.rebuilt, report.reason) == (1, True, "no cache")
    assert (tmp_path / "elsewhere" / storage_repo_id(storage) / CHUNKS_FILE).exists()


def storage_repo_id(storage: Storage) -> str:
    return Repository.open(storage, None).id.hex()


def test_two_clients_see_each_other_incrementally(storage: Storage, tmp_path: Path) -> None:
    Repository.create(storage, pack_size=PACK_SIZE).close()
    cache_a, cache_b = tmp_path / "a", tmp_path / "b"
    a, b = _open(storage, cache_a), _open(storage, cache_b)
    blobs_a, blobs_b = random_blobs(300, seed=2), random_blobs(300, seed=3)
    for round_ in range(3):
        part_a = dict(list(blobs_a.items())[round_ * 100 : (round_ + 1) * 100])
        part_b = dict(list(blobs_b.items())[round_ * 100 : (round_ + 1) * 100])
        put_all(a, part_a)
        put_all(b, part_b)
        a.close()
        b.close()
        a, b = _open(storage, cache_a), _open(storage, cache_b)
        for repo in (a, b):
            report = repo.sync_index()
            assert not report.rebuilt
            assert report.merged == 1  # only the other client's new index file
            assert report.index_files == 2 * (round_ + 1)
    assert_readable(a, blobs_a | blobs_b)
    assert_readable(b, blobs_a | blobs_b)


def _populated(storage: Storage, tmp_path: Path) -> tuple[Path, dict[bytes, tuple[int, bytes]]]:
    cache = tmp_path / "cache"
    repo = Repository.create(storage, pack_size=PACK_SIZE, cache_dir=cache)
    blobs = random_blobs(200, seed=4)
    put_all(repo, blobs)
    repo.close()
    return cache / repo.id.hex(), blobs


@pytest.mark.parametrize("victim", [CHUNKS_FILE, STATE_FILE])
@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
def test_damaged_cache_is_rebuilt(
    storage: Storage, tmp_path: Path, victim: str, damage: str
) -> None:
    cache_dir, blobs = _populated(storage, tmp_path)
    path = cache_dir / victim
    data = path.read_bytes()
    damaged = {
        "flip": data[:40] + bytes([data[40] ^ 1]) + data[41:],
        "truncate": data[:-5],
        "empty": b"",
        "garbage": os.urandom(100),
    }[damage]
    path.write_bytes(damaged)
    repo = _open(storage, tmp_path / "cache")
    report = repo.sync_index()
    assert report.rebuilt
    assert report.reason.startswith("cache damaged")
    assert_readable(repo, blobs)
    assert not _open(storage, tmp_path / "cache").sync_index().rebuilt  # repaired


def test_cache_files_from_different_saves_do_not_mix(storage: Storage, tmp_path: Path) -> None:
    cache_dir, _ = _populated(storage, tmp_path)
    old_chunks = (cache_dir / CHUNKS_FILE).read_bytes()
    repo = _open(storage, tmp_path / "cache")
    put_all(repo, random_blobs(10, seed=5))
    repo.close()
    (cache_dir / CHUNKS_FILE).write_bytes(old_chunks)  # as if the 2nd rename was lost
    report = _open(storage, tmp_path / "cache").sync_index()
    assert report.rebuilt and "not the version expected" in report.reason


def test_missing_cache_file_is_rebuilt(storage: Storage, tmp_path: Path) -> None:
    cache_dir, _ = _populated(storage, tmp_path)
    (cache_dir / CHUNKS_FILE).unlink()
    report = _open(storage, tmp_path / "cache").sync_index()
    assert (report.rebuilt, report.reason) == (True, "no cache")


def test_vanished_index_file_forces_rebuild(storage: Storage, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    repo = Repository.create(storage, pack_size=PACK_SIZE, cache_dir=cache)
    first, second = random_blobs(50, seed=6), random_blobs(50, seed=7)
    put_all(repo, first)
    gone = repo.flush()
    put_all(repo, second)
    repo.close()
    assert gone is not None
    storage.delete(index_path(gone))
    reopened = _open(storage, cache)
    report = reopened.sync_index()
    assert (report.rebuilt, report.reason) == (True, "merged index files vanished")
    assert not any(reopened.contains(i) for i in first)  # stale entries are gone
    assert_readable(reopened, second)


def test_new_superseding_index_file_forces_rebuild(storage: Storage, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    repo = Repository.create(storage, pack_size=PACK_SIZE, cache_dir=cache, append_only=True)
    blobs = random_blobs(60, seed=8)
    put_all(repo, blobs)
    old = repo.flush()
    repo.close()
    # Another client (no shared cache) rewrites the index, keeping the old file.
    other = _open(storage, None)
    other.rebuild_index_from_packs()
    reopened = _open(storage, cache)
    report = reopened.sync_index()
    assert (report.rebuilt, report.reason) == (True, "merged index files were superseded")
    assert report.merged == 1 and report.index_files == 2
    assert old in list_index_names(storage)
    assert_readable(reopened, blobs)
    assert _open(storage, cache).sync_index() == type(report)(0, False, "", 2)


def test_superseded_file_arriving_with_its_replacement_is_skipped(
    storage: Storage, tmp_path: Path
) -> None:
    Repository.create(storage, pack_size=PACK_SIZE, cache_dir=tmp_path / "c").close()
    _open(storage, tmp_path / "c").close()  # the cache exists and knows no index file
    superseded_name, data = IndexFile.from_packs([]).encode()
    storage.store(index_path(superseded_name), data)
    writer = _open(storage, None)
    writer.put(0, os.urandom(32), b"x")
    writer.flush()
    replacement_name, data = IndexFile.from_packs([], superseded=[superseded_name]).encode()
    storage.store(index_path(replacement_name), data)
    report = _open(storage, tmp_path / "c").sync_index()
    assert not report.rebuilt
    assert report.merged == 2  # the writer's file and the replacement, not the superseded one
    assert report.index_files == 3


def test_no_cache_dir_always_rebuilds(storage: Storage) -> None:
    repo = Repository.create(storage, pack_size=PACK_SIZE)
    put_all(repo, random_blobs(10, seed=9))
    repo.close()
    for _ in range(2):
        report = _open(storage, None).sync_index()
        assert (report.rebuilt, report.reason, report.merged) == (True, "no persistent cache", 1)


def test_unflushed_blobs_never_reach_the_cache(storage: Storage, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    repo = Repository.create(storage, pack_size=PACK_SIZE, cache_dir=cache)
    flushed, lost = random_blobs(200, seed=10), random_blobs(300, seed=11)
    put_all(repo, flushed)
    repo.flush()
    put_all(repo, lost)  # fills and writes several packs, no index file
    assert list(storage.list("packs/"))
    del repo  # the process dies without flushing
    reopened = _open(storage, cache)
    assert not reopened.sync_index().rebuilt
    assert not any(reopened.contains(i) for i in lost)
    assert_readable(reopened, flushed)


def test_index_cache_directly(storage: Storage, tmp_path: Path) -> None:
    repo = Repository.create(storage, pack_size=PACK_SIZE)
    put_all(repo, random_blobs(30, seed=12))
    repo.close()
    cache = IndexCache(tmp_path, repo.id)
    assert cache.path == tmp_path / repo.id.hex()
    index = cache.sync(storage)
    assert len(index) == 30
    assert cache.last_report is not None and cache.last_report.rebuilt
    again = IndexCache(tmp_path, repo.id)
    assert len(again.sync(storage)) == 30
    assert again.last_report is not None and not again.last_report.rebuilt


def _pack_of(repo: Repository, id_: bytes) -> str:
    located = repo.locate(id_)
    assert located is not None
    return located[0]


def test_forgotten_entries_leave_the_cache_for_good(storage: Storage, tmp_path: Path) -> None:
    """Damage a reader found is dropped from the persisted index (same files,
    same format); the next put of the same id stores it again."""
    _, blobs = _populated(storage, tmp_path)
    repo = _open(storage, tmp_path / "cache")
    bad, *rest = list(blobs)
    pack = _pack_of(repo, bad)
    siblings = [i for i in rest if _pack_of(repo, i) == pack]
    repo.forget(bad, IntegrityError("tag mismatch", object_id=bad, pack=pack))
    other = next(i for i in rest if _pack_of(repo, i) != pack)
    lost_pack = _pack_of(repo, other)
    repo.forget_pack(lost_pack, PackNotFound("the pack is missing", pack=lost_pack))
    with pytest.raises(IntegrityError, match="tag mismatch"):  # told why, not "not found"
        repo.get(bad)
    with pytest.raises(PackNotFound):
        repo.get(other)
    repo.close()

    again = _open(storage, tmp_path / "cache")
    assert again.sync_index().rebuilt is False  # the cache was used, not rebuilt
    assert not again.contains(bad) and not again.contains(other)
    assert all(again.contains(i) for i in siblings)  # only the damaged blob of its pack
    type_, data = blobs[bad]
    assert again.put(type_, bad, data) is True  # stored again, not deduplicated
    again.close()
    assert _open(storage, tmp_path / "cache").get(bad) == data


def test_audit_forgets_missing_and_truncated_packs(storage: Storage, tmp_path: Path) -> None:
    _, blobs = _populated(storage, tmp_path)
    repo = _open(storage, tmp_path / "cache")
    by_pack: dict[str, list[bytes]] = {}
    for id_ in blobs:
        by_pack.setdefault(_pack_of(repo, id_), []).append(id_)
    missing, truncated, *_ = sorted(by_pack)
    storage.delete(pack_path(missing))
    data = storage.load(pack_path(truncated))
    storage.store(pack_path(truncated), data[: len(data) - 1], overwrite=True)
    audit = repo.audit_packs()
    assert (audit.missing, audit.truncated) == ([missing], [truncated])
    assert audit.dropped == len(by_pack[missing]) + 1  # only the last blob of the short one
    assert not any(repo.contains(i) for i in by_pack[missing])
    repo.close()
    again = _open(storage, tmp_path / "cache")
    assert again.audit_packs().dropped == 0  # persisted
    assert not any(again.contains(i) for i in by_pack[missing])


def test_relocate_finds_the_copy_another_index_file_holds(storage: Storage, tmp_path: Path) -> None:
    _, blobs = _populated(storage, tmp_path)
    repo = _open(storage, None)
    id_ = next(iter(blobs))
    type_, data = blobs[id_]
    bad = _pack_of(repo, id_)
    # a second copy, as a healing backup writes it: in a new pack and index file
    other = Repository.open(storage, None, operation="write")
    other.sync_index()
    other._chunk_index().discard([id_])
    assert other.put(type_, id_, data)
    other.close()
    repo.forget(id_, IntegrityError("tag mismatch", object_id=id_, pack=bad))
    assert repo.relocate(id_) is True
    assert repo.get(id_) == data and _pack_of(repo, id_) != bad
    repo.forget(id_, IntegrityError("again", object_id=id_, pack=_pack_of(repo, id_)))
    assert repo.relocate(id_) is False  # no third copy: neither known bad one is used
