"""The sweep half of ``compact`` on real repositories (LocalStorage and MemoryStorage).

The caller's mark is stood in for by explicit sets of live ids: the archive
layer's part (tracing archives and trees) is tested through the CLI in
tests/cli/test_compact.py.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from hoard.errors import AppendOnlyCompactRefused, CompactAborted, CompactRefused
from hoard.repository.check import DAMAGE, check_repository
from hoard.repository.compact import compact
from hoard.repository.indexnames import list_index_names
from hoard.repository.pack import pack_path
from hoard.repository.repository import Repository
from hoard.storage.base import Storage
from hoard.storage.local import TEMP_MARKER, LocalStorage
from tests.faulty import FaultyStorage, SimulatedCrash

from .helpers import Blobs, assert_readable, put_all, random_blobs, stored_packs

PACK_SIZE = 4096
LATER = 3 * 3600.0
"""Seconds added to the clock so that everything written is past the grace period."""


def _later() -> float:
    return time.time() + LATER


def _two_archives(storage: Storage, cache: Path | None) -> tuple[Blobs, Blobs]:
    """Blobs of a kept "archive" and of a deleted one, each flushed on its own,
    so that most packs hold only one of them."""
    repo = Repository.create(storage, pack_size=PACK_SIZE, cache_dir=cache)
    kept = random_blobs(60, seed=1, max_size=700, types=(0, 1))
    gone = random_blobs(60, seed=2, max_size=700, types=(0, 1))
    put_all(repo, kept)
    repo.flush()
    put_all(repo, gone)
    repo.close()
    return kept, gone


def _damage(storage: Storage) -> list[str]:
    return [f"{f.kind} {f.name}" for f in check_repository(storage).findings if f.kind in DAMAGE]


def _total(storage: Storage, prefix: str) -> int:
    return sum(i.size for i in storage.list(prefix))


def test_unused_packs_go_and_live_blobs_stay(storage: Storage, tmp_path: Path) -> None:
    kept, gone = _two_archives(storage, tmp_path / "cache")
    before = _total(storage, "packs/")
    gone_bytes = sum(37 + len(blob) for _, blob in gone.values())
    repo = Repository.open(storage, tmp_path / "cache", operation="write")
    report = compact(repo, set(kept), now=_later())
    repo.close()
    assert report.packs_deleted > 0
    assert report.bytes_freed > 0.9 * gone_bytes
    assert before - _total(storage, "packs/") >= 0.9 * gone_bytes
    for cache in (tmp_path / "cache", None):  # the warm cache notices, a fresh client too
        fresh = Repository.open(storage, cache)
        assert_readable(fresh, kept)
        assert not set(fresh.list_ids()) & set(gone)
    assert len(list_index_names(storage)) == 1
    assert check_repository(storage).findings == []
    for _, entries in stored_packs(storage).values():
        assert {e.id for e in entries} <= set(kept)


def test_nothing_to_do_changes_nothing(storage: Storage) -> None:
    kept, gone = _two_archives(storage, None)
    listing = sorted(i.name for i in storage.list(""))
    repo = Repository.open(storage, None, operation="write")
    report = compact(repo, set(kept) | set(gone), now=_later())
    assert (report.packs_deleted, report.packs_rewritten, report.bytes_freed) == (0, 0, 0)
    assert sorted(i.name for i in storage.list("")) == listing


def test_dry_run_changes_nothing_and_says_what_it_would_free(storage: Storage) -> None:
    kept, _ = _two_archives(storage, None)
    listing = sorted(i.name for i in storage.list(""))
    repo = Repository.open(storage, None, operation="write")
    dry = compact(repo, set(kept), now=_later(), dry_run=True)
    assert sorted(i.name for i in storage.list("")) == listing
    real = compact(Repository.open(storage, None, operation="write"), set(kept), now=_later())
    assert dry.bytes_freed == real.bytes_freed > 0
    assert dry.packs_deleted == real.packs_deleted


def _one_pack(storage: Storage, live_size: int, dead_size: int) -> tuple[bytes, bytes]:
    """One data pack with one live and one dead blob; their ids."""
    repo = Repository.create(storage, pack_size=1 << 20)
    live, dead = b"L" * 32, b"D" * 32
    repo.put(0, live, os.urandom(live_size))
    repo.put(0, dead, os.urandom(dead_size))
    repo.close()
    return live, dead


@pytest.mark.parametrize(("threshold", "rewritten"), [(20, False), (19, True), (0, True)])
def test_threshold_is_strictly_above(storage: Storage, threshold: int, rewritten: bool) -> None:
    # pack = 8 magic + (37 + 503) live + (37 + 100) dead = 685 bytes: 137 unused = exactly 20 %
    live, dead = _one_pack(storage, 503, 100)
    (size,) = (s for s, _ in stored_packs(storage).values())
    assert size == 685
    repo = Repository.open(storage, None, operation="write")
    report = compact(repo, {live}, threshold=threshold, now=_later())
    assert report.packs_rewritten == int(rewritten)
    fresh = Repository.open(storage, None)
    assert fresh.contains(live)
    assert fresh.contains(dead) is not rewritten
    sizes = [s for s, _ in stored_packs(storage).values()]
    assert sizes == ([8 + 37 + 503] if rewritten else [685])
    assert check_repository(storage).findings == []


def test_threshold_100_compacts_nothing_but_empty_packs_still_go(storage: Storage) -> None:
    live, _ = _one_pack(storage, 100, 3000)
    repo = Repository.open(storage, None, operation="write")
    assert compact(repo, {live}, threshold=100, now=_later()).packs_rewritten == 0
    report = compact(Repository.open(storage, None, operation="write"), set(), threshold=100,
                     now=_later())  # fmt: skip
    assert report.packs_deleted == 1
    assert list(storage.list("packs/")) == []


def _crash_before_index(storage: Storage, seed: int) -> Blobs:
    """A backup killed after storing its packs, before its index file: orphan packs."""
    faulty = FaultyStorage(storage, fail_after_stores=0, prefix="index/")
    repo = Repository.open(faulty, None, operation="write")
    blobs = random_blobs(20, seed=seed, max_size=700, types=(0, 1))
    put_all(repo, blobs)
    with pytest.raises(SimulatedCrash):
        repo.flush()
    return blobs


def test_orphan_packs_go_only_after_the_grace_period(storage: Storage) -> None:
    kept, _ = _two_archives(storage, None)
    _crash_before_index(storage, seed=7)
    orphans = [f.name for f in check_repository(storage).findings if f.kind == "orphan_pack"]
    assert orphans
    young = compact(Repository.open(storage, None, operation="write"), set(kept))
    assert young.orphan_packs_deleted == 0
    assert young.young_packs_kept >= len(orphans)
    assert all(storage.exists(name) for name in orphans)
    old = compact(Repository.open(storage, None, operation="write"), set(kept), now=_later())
    assert old.orphan_packs_deleted == len(orphans)
    assert not any(storage.exists(name) for name in orphans)
    assert_readable(Repository.open(storage, None), kept)


def test_orphans_are_kept_while_live_blobs_are_missing(storage: Storage) -> None:
    """A live blob no index covers may be in an orphan pack: ``check --repair`` finds it there."""
    kept, _ = _two_archives(storage, None)
    orphaned = _crash_before_index(storage, seed=8)
    repo = Repository.open(storage, None, operation="write")
    report = compact(repo, set(kept) | set(orphaned), now=_later())
    assert report.missing_blobs == len(orphaned)
    assert report.orphan_packs_deleted == 0
    rebuilt = Repository.open(storage, None, operation="write")
    rebuilt.rebuild_index_from_packs()
    assert_readable(rebuilt, orphaned)


def _temporary(storage: LocalStorage, name: str, age: float) -> Path:
    path = storage.path_of(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}{TEMP_MARKER}{os.urandom(8).hex()}")
    temp.write_bytes(b"half a pack")
    stamp = time.time() - age
    os.utime(temp, (stamp, stamp))
    return temp


def test_stale_temporary_files_go_young_ones_stay(local_storage: LocalStorage) -> None:
    kept, _ = _two_archives(local_storage, None)
    stale = _temporary(local_storage, pack_path("ab" * 32), 3 * 3600)
    young = _temporary(local_storage, pack_path("cd" * 32), 60)
    report = compact(Repository.open(local_storage, None, operation="write"), set(kept))
    assert report.temporary_files_deleted == 1
    assert not stale.exists()
    assert young.exists()


def test_append_only_is_refused_and_nothing_goes(storage: Storage) -> None:
    repo = Repository.create(storage, pack_size=PACK_SIZE, append_only=True)
    put_all(repo, random_blobs(20, seed=3, max_size=700, types=(0, 1)))
    repo.close()
    listing = sorted(i.name for i in storage.list(""))
    with pytest.raises(AppendOnlyCompactRefused, match="append-only"):
        compact(Repository.open(storage, None, operation="write"), set(), now=_later())
    assert sorted(i.name for i in storage.list("")) == listing


def test_damaged_index_file_is_refused_and_nothing_goes(storage: Storage) -> None:
    kept, _ = _two_archives(storage, None)
    name = sorted(list_index_names(storage))[0]
    data = bytearray(storage.load("index/" + name))
    data[-1] ^= 1
    storage.store("index/" + name, bytes(data), overwrite=True)
    listing = sorted(i.name for i in storage.list(""))
    with pytest.raises(CompactRefused, match="check --repair"):
        compact(Repository.open(storage, None, operation="write"), set(kept), now=_later())
    assert sorted(i.name for i in storage.list("")) == listing


def test_damaged_pack_is_never_rewritten(storage: Storage) -> None:
    """Copying a damaged pack's blobs into a correctly named pack would hide the damage."""
    live, _ = _one_pack(storage, 503, 2000)
    (name,) = stored_packs(storage)
    path = pack_path(name)
    data = bytearray(storage.load(path))
    data[60] ^= 1  # inside the live blob
    storage.store(path, bytes(data), overwrite=True)
    report = compact(Repository.open(storage, None, operation="write"), {live}, now=_later())
    assert report.damaged_packs_kept == [name]
    assert report.packs_rewritten == 0
    assert storage.load(path) == bytes(data)
    assert [f.kind for f in check_repository(storage).findings] == ["misnamed_pack"]


def test_blobs_of_untraced_types_are_kept(storage: Storage) -> None:
    repo = Repository.create(storage, pack_size=PACK_SIZE)
    repo.put(3, b"M" * 32, b"metadata of a type the mark does not follow")
    repo.put(0, b"X" * 32, b"dead data")
    repo.close()
    compact(Repository.open(storage, None, operation="write"), set(), now=_later())
    fresh = Repository.open(storage, None)
    assert fresh.contains(b"M" * 32)
    assert not fresh.contains(b"X" * 32)


def test_progress_reaches_the_total(storage: Storage) -> None:
    kept, _ = _two_archives(storage, None)
    seen: list[tuple[int, int]] = []
    compact(
        Repository.open(storage, None, operation="write"),
        set(kept),
        threshold=0,
        now=_later(),
        progress=lambda done, total, what: seen.append((done, total)),
    )
    assert seen
    assert seen[-1][0] == seen[-1][1]
    assert [d for d, _ in seen] == list(range(1, len(seen) + 1))


def test_a_lost_lock_stops_before_the_next_change(storage: Storage) -> None:
    kept, _ = _two_archives(storage, None)
    deletes = FaultyStorage(storage)
    asked: list[int] = []

    def lost() -> bool:  # lost after the new index file was stored and one pack deleted
        asked.append(deletes.mutations)
        return len(asked) > 2

    repo = Repository.open(deletes, None, operation="write")
    with pytest.raises(CompactAborted, match="lock was lost"):
        compact(repo, set(kept), now=_later(), lock_lost=lost)
    assert deletes.mutations == asked[-1]  # nothing changed after the answer
    assert _damage(storage) == []
    assert_readable(Repository.open(storage, None), kept)
    compact(Repository.open(storage, None, operation="write"), set(kept), now=_later())
    assert check_repository(storage).findings == []


# --- a crash after every storage operation ------------------------------------------------


def _messy(path: Path) -> tuple[LocalStorage, Blobs, Blobs]:
    """Packs to delete, packs to rewrite (kept and dead blobs mixed), orphan
    packs of a crashed backup, a superseded index file and a stale temporary file."""
    storage = LocalStorage(path)
    repo = Repository.create(storage, pack_size=PACK_SIZE)
    kept = random_blobs(40, seed=11, max_size=700, types=(0, 1))
    gone = random_blobs(40, seed=12, max_size=700, types=(0, 1))
    mixed = random_blobs(40, seed=13, max_size=700, types=(0, 1))
    put_all(repo, kept)
    repo.flush()
    put_all(repo, gone)
    repo.flush()
    put_all(repo, mixed)
    repo.close()
    _crash_before_index(storage, seed=14)
    _temporary(storage, pack_path("ef" * 32), 3 * 3600)
    live = {**kept, **dict(list(mixed.items())[::2])}
    dead = {**gone, **dict(list(mixed.items())[1::2])}
    return storage, live, dead


def test_a_crash_after_any_storage_operation_loses_nothing(tmp_path: Path) -> None:
    _, live, dead = _messy(tmp_path / "template")
    shutil.copytree(tmp_path / "template", tmp_path / "count")
    counter = FaultyStorage(LocalStorage(tmp_path / "count"))
    compact(Repository.open(counter, None, operation="write"), set(live), now=_later())
    steps = counter.mutations
    assert steps > 10  # packs and an index stored, packs, index files, a temp file deleted
    for n in range(steps):
        shutil.copytree(tmp_path / "template", tmp_path / f"r{n}")  # (times preserved)
        storage = LocalStorage(tmp_path / f"r{n}")
        faulty = FaultyStorage(storage, fail_after_mutations=n)
        with pytest.raises(SimulatedCrash):
            compact(Repository.open(faulty, None, operation="write"), set(live), now=_later())
        assert _damage(storage) == [], f"crash after {n} operations"
        assert_readable(Repository.open(storage, None), live)
        # The next compaction finishes the job.
        compact(Repository.open(storage, None, operation="write"), set(live), now=_later())
        assert check_repository(storage).findings == [], f"crash after {n} operations"
        fresh = Repository.open(storage, None)
        assert_readable(fresh, live)
        assert not set(fresh.list_ids()) & set(dead)
