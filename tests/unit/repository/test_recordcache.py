"""The local archive-record cache: reads only new records, forgets deleted ones,
survives damage, and never hands a cached blob to the caller unverified."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hoard.objects.keys import EncryptionMode, KeyMaterial
from hoard.objects.store import ObjectStore
from hoard.repository.recordcache import (
    ARCHIVES_PREFIX,
    RECORDS_FILE,
    RecordSyncReport,
    load_records_file,
    save_records,
)
from hoard.repository.repository import Repository
from hoard.storage.base import ObjectInfo, Storage
from tests.faulty import FaultyStorage


class CountingStorage(FaultyStorage):
    """A real storage that records every ``load`` and ``list`` (thread-safe:
    the cache reads several records at once)."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.loads: list[str] = []
        self.lists: list[str] = []
        self._count_lock = threading.Lock()

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._count_lock:
            self.loads.append(name)
        return super().load(name, offset, length)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._count_lock:
            self.lists.append(prefix)
        return super().list(prefix)


def _record(seed: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    return rng.randbytes(32), rng.randbytes(rng.randrange(50, 400))


def _add(storage: Storage, cache: Path | None, *seeds: int) -> dict[bytes, bytes]:
    """Store one archive record per seed as a client with cache ``cache`` would."""
    records = dict(_record(s) for s in seeds)
    with Repository.open(storage, cache, operation="write") as repo:
        for id_, blob in records.items():
            repo.store_archive(id_, blob)
    return records


def archive_reads(counting: CountingStorage) -> list[str]:
    """The archive records ``counting`` was asked to load, sorted."""
    return sorted(n for n in counting.loads if n.startswith(ARCHIVES_PREFIX))


@dataclass
class CatchUp:
    """What one client run saw and did."""

    records: dict[bytes, bytes]
    report: RecordSyncReport
    counting: CountingStorage

    @property
    def reads(self) -> list[str]:
        return archive_reads(self.counting)


def _catch_up(storage: Storage, cache: Path | None) -> CatchUp:
    """A fresh client process: open, load the archive records, count the reads."""
    counting = CountingStorage(storage)
    with Repository.open(counting, cache) as repo:
        records = repo.load_archives()
        report = repo.archive_sync_report
    assert report is not None
    return CatchUp(records, report, counting)


@pytest.fixture
def repo_storage(storage: Storage) -> Storage:
    Repository.create(storage).close()
    return storage


def test_second_load_reads_only_new_records(repo_storage: Storage, tmp_path: Path) -> None:
    expected = _add(repo_storage, tmp_path / "writer", *range(5))
    run = _catch_up(repo_storage, tmp_path / "reader")
    assert run.records == expected
    assert run.report == RecordSyncReport(loaded=5, dropped=0, cached=0, reason="no cache")
    assert len(run.reads) == 5

    expected |= _add(repo_storage, tmp_path / "writer", 5)
    run = _catch_up(repo_storage, tmp_path / "reader")
    assert run.records == expected
    assert run.reads == [ARCHIVES_PREFIX + _record(5)[0].hex()]
    assert run.counting.lists.count(ARCHIVES_PREFIX) == 1
    assert run.report == RecordSyncReport(loaded=1, dropped=0, cached=5, reason="")

    run = _catch_up(repo_storage, tmp_path / "reader")
    assert run.records == expected and run.reads == []


def test_writer_never_reads_back_its_own_records(repo_storage: Storage, tmp_path: Path) -> None:
    expected = _add(repo_storage, tmp_path / "writer", 1, 2)
    run = _catch_up(repo_storage, tmp_path / "writer")
    assert run.records == expected
    assert run.reads == []
    assert run.report.cached == 2


def test_deleted_archives_are_dropped(repo_storage: Storage, tmp_path: Path) -> None:
    expected = _add(repo_storage, tmp_path / "writer", *range(4))
    _catch_up(repo_storage, tmp_path / "reader")
    victim = _record(2)[0]
    with Repository.open(repo_storage, tmp_path / "writer", operation="delete") as repo:
        repo.delete_archive(victim)
    del expected[victim]
    run = _catch_up(repo_storage, tmp_path / "reader")
    assert run.records == expected
    assert run.report == RecordSyncReport(loaded=0, dropped=1, cached=3, reason="")
    repo_id = Repository.open(repo_storage, None).id
    on_disk = tmp_path / "reader" / repo_id.hex() / RECORDS_FILE
    assert load_records_file(on_disk, repo_id) == expected


def _damage(path: Path, how: str, repo_id: bytes) -> None:
    data = path.read_bytes()
    if how == "flip":
        data = data[:40] + bytes([data[40] ^ 1]) + data[41:]
    elif how == "truncate":
        data = data[: len(data) // 2]
    elif how == "empty":
        data = b""
    elif how == "garbage":
        data = random.Random(7).randbytes(len(data))
    elif how == "other-repository":
        save_records(path, bytes(32), load_records_file(path, repo_id))
        return
    path.write_bytes(data)


@pytest.mark.parametrize("how", ["flip", "truncate", "empty", "garbage", "other-repository"])
def test_damaged_cache_is_discarded_and_rebuilt(
    repo_storage: Storage, tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    expected = _add(repo_storage, tmp_path / "c", *range(3))
    repo_id = Repository.open(repo_storage, None).id
    _damage(tmp_path / "c" / repo_id.hex() / RECORDS_FILE, how, repo_id)
    with caplog.at_level(logging.WARNING, logger="hoard.repository.recordcache"):
        run = _catch_up(repo_storage, tmp_path / "c")
    assert run.records == expected
    assert run.report.reason.startswith("cache damaged")
    assert len(run.reads) == 3
    assert "discarded" in caplog.text
    run = _catch_up(repo_storage, tmp_path / "c")  # rebuilt: usable again
    assert run.records == expected and run.reads == []


def test_two_clients_see_each_others_new_archives(repo_storage: Storage, tmp_path: Path) -> None:
    cache_a, cache_b = tmp_path / "a", tmp_path / "b"
    everything: dict[bytes, bytes] = {}
    for round_ in range(3):
        everything |= _add(repo_storage, cache_a, 100 + round_)
        everything |= _add(repo_storage, cache_b, 200 + round_)
        for cache in (cache_a, cache_b):
            run = _catch_up(repo_storage, cache)
            assert run.records == everything
            # Its own record was remembered when stored; only the other's is read.
            assert len(run.reads) == 1
            assert run.report.cached == len(everything) - 1


def test_without_cache_dir_every_client_reads_everything(
    repo_storage: Storage, tmp_path: Path
) -> None:
    expected = _add(repo_storage, None, *range(3))
    for _ in range(2):
        run = _catch_up(repo_storage, None)
        assert run.records == expected
        assert run.report.reason == "no persistent cache"
        assert len(run.reads) == 3
    assert [p for p in tmp_path.rglob(RECORDS_FILE) if p.is_file()] == []


def test_one_object_lists_again_without_reading_again(repo_storage: Storage) -> None:
    expected = _add(repo_storage, None, *range(3))
    counting = CountingStorage(repo_storage)
    repo = Repository.open(counting, None)
    assert repo.load_archives() == expected
    assert repo.load_archives() == expected
    assert len(archive_reads(counting)) == 3
    assert counting.lists.count(ARCHIVES_PREFIX) == 2


class VanishingStorage(FaultyStorage):
    """Deletes an archive record right before it is loaded: a concurrent delete
    between the listing and the read."""

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if name.startswith(ARCHIVES_PREFIX) and name.endswith(_record(1)[0].hex()):
            self.inner.delete(name)
        return super().load(name, offset, length)


def test_record_deleted_while_reading_is_left_out(repo_storage: Storage, tmp_path: Path) -> None:
    expected = _add(repo_storage, None, 0, 1, 2)
    repo = Repository.open(VanishingStorage(repo_storage), tmp_path / "c")
    del expected[_record(1)[0]]
    assert repo.load_archives() == expected
    assert repo.archive_sync_report is not None
    assert repo.archive_sync_report.loaded == 2


def test_unwritable_cache_costs_a_warning_only(
    repo_storage: Storage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = _add(repo_storage, None, 0, 1)
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="hoard.repository.recordcache"):
        run = _catch_up(repo_storage, blocker)
    assert run.records == expected
    assert "Could not save" in caplog.text


def test_file_round_trip_and_order(tmp_path: Path) -> None:
    repo_id = bytes(range(32))
    records = dict(_record(s) for s in range(20)) | {b"\x00" * 32: b""}
    path = tmp_path / "archives"
    save_records(path, repo_id, records)
    assert load_records_file(path, repo_id) == records
    assert list(load_records_file(path, repo_id)) == sorted(records)
    save_records(path, repo_id, {})
    assert load_records_file(path, repo_id) == {}


def test_object_store_refetches_a_cached_blob_that_does_not_open(
    repo_storage: Storage, tmp_path: Path
) -> None:
    """A cache file with a valid checksum but a wrong blob (only a bug or a
    deliberate edit makes one) is not trusted: the record is read again."""
    cache = tmp_path / "c"
    with Repository.open(repo_storage, cache, operation="write") as repo:
        key = KeyMaterial.generate(EncryptionMode.REPOKEY_CHACHA20_POLY1305, repo.id)
        store = ObjectStore(repo, key)
        ids = [store.put_archive(b"record %d" % n) for n in range(3)]
    path = cache / repo.id.hex() / RECORDS_FILE
    cached = load_records_file(path, repo.id)
    cached[ids[1]] = cached[ids[0]]  # authentic, but for another id
    save_records(path, repo.id, cached)

    counting = CountingStorage(repo_storage)
    store = ObjectStore(Repository.open(counting, cache), key)
    assert store.load_archives() == {i: b"record %d" % n for n, i in enumerate(ids)}
    assert archive_reads(counting) == [ARCHIVES_PREFIX + ids[1].hex()]
    fixed = load_records_file(path, repo.id)
    assert fixed[ids[1]] == repo_storage.load(ARCHIVES_PREFIX + ids[1].hex())
