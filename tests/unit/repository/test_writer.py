"""Other writers of one session (create's workers): SessionWriter, KnownIds, adoption.

Real LocalStorage repositories; the writers run in this process, which is
what a worker process does with them too. Duplicates (two writers storing
the same blob) are made on purpose here: ``check`` must find nothing wrong
and ``compact`` must keep one readable copy.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from dataclasses import replace
from pathlib import Path

import pytest

from hoard.errors import StorageQuotaExceeded
from hoard.repository.check import check_repository
from hoard.repository.chunkindex import ChunkIndex, KnownIds
from hoard.repository.compact import compact
from hoard.repository.config import RepoConfig
from hoard.repository.indexfile import IndexFile
from hoard.repository.indexnames import list_index_names
from hoard.repository.repository import Repository, guarded_storage
from hoard.repository.sharedquota import SharedQuotaStorage, quota_of, share_quota
from hoard.repository.writer import SessionWriter
from hoard.storage.local import LocalStorage

from .helpers import stored_packs

PACK_SIZE = 4096
LATER = 3 * 3600.0


def _blobs(n: int, seed: int) -> dict[bytes, bytes]:
    rng = random.Random(seed)
    return {rng.randbytes(32): rng.randbytes(rng.randrange(100, 1500)) for _ in range(n)}


def _repository(tmp_path: Path) -> tuple[LocalStorage, Repository]:
    storage = LocalStorage(tmp_path / "repo")
    return storage, Repository.create(storage, pack_size=PACK_SIZE)


def test_known_ids_answer_as_the_index_and_refuse_damage(tmp_path: Path) -> None:
    index = ChunkIndex()
    pack = index.add_pack(b"p" * 32)
    blobs = _blobs(3000, 1)
    for n, id_ in enumerate(blobs):
        index.add(id_, pack, n, len(blobs[id_]), 0)
    path = tmp_path / "known"
    KnownIds.write(index, path)
    known = KnownIds.open(path)
    assert len(known) == len(blobs)
    assert all(known.length_of(id_) == len(blob) for id_, blob in blobs.items())
    assert known.length_of(os.urandom(32)) is None
    KnownIds.write(ChunkIndex(), tmp_path / "empty")
    assert KnownIds.open(tmp_path / "empty").length_of(os.urandom(32)) is None
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(Exception, match="checksum mismatch"):
        KnownIds.open(path)


def test_a_writer_skips_what_is_known_stored_or_learned(tmp_path: Path) -> None:
    storage, repository = _repository(tmp_path)
    before = _blobs(50, 2)
    for id_, blob in before.items():
        repository.put(0, id_, blob)
    repository.flush()
    repository.write_known_ids(tmp_path / "known")
    writer = SessionWriter(storage, PACK_SIZE, KnownIds.open(tmp_path / "known"))
    new = _blobs(40, 3)
    learned = _blobs(5, 4)
    writer.learn((id_, len(blob)) for id_, blob in learned.items())
    assert not any(writer.put(id_, blob) for id_, blob in {**before, **learned}.items())
    assert all(writer.put(id_, blob) for id_, blob in new.items())
    assert not any(writer.put(id_, blob) for id_, blob in new.items())  # its own
    assert writer.stored_size(next(iter(new))) == len(next(iter(new.values())))
    names_before = list_index_names(storage)
    name, data = writer.flush() or ("", b"")
    assert list_index_names(storage) == names_before | {name}
    assert sorted(IndexFile.decode(name, data).ids()) == sorted(new)
    assert writer.flush() is None  # nothing stored since
    fresh = Repository.open(storage, None)
    assert all(fresh.get(id_) == blob for id_, blob in new.items())


def test_adopted_index_files_are_read_here_and_blobs_noted_are_not_stored_again(
    tmp_path: Path,
) -> None:
    storage, repository = _repository(tmp_path)
    writer = SessionWriter(storage, PACK_SIZE)
    blobs = _blobs(30, 5)
    for id_, blob in blobs.items():
        writer.put(id_, blob)
    repository.note_stored((id_, len(blob)) for id_, blob in blobs.items())
    assert all(repository.stored_size(id_) == len(b) for id_, b in blobs.items())
    assert not any(repository.put(0, id_, blob) for id_, blob in blobs.items())
    repository.attach_writers(lambda: [f for f in [writer.flush()] if f is not None])
    repository.flush()  # the writer's pack and index file first
    repository.attach_writers(None)
    assert all(repository.get(id_) == blob for id_, blob in blobs.items())
    assert stored_packs(storage) and check_repository(storage).findings == []


def test_duplicates_of_two_writers_check_clean_and_compact_keeps_one_copy(
    tmp_path: Path,
) -> None:
    storage, repository = _repository(tmp_path)
    shared = list(_blobs(60, 6).items())
    writers = [SessionWriter(storage, PACK_SIZE) for _ in range(2)]
    for writer, order in zip(writers, (shared, shared[::-1]), strict=True):
        for id_, blob in order:  # both store every blob (in other packs): neither knew
            assert writer.put(id_, blob)
    files = [f for f in (w.flush() for w in writers) if f is not None]
    repository.adopt_index_files(files)
    repository.flush()
    assert len(_copies(storage)) == 2 * len(shared)
    assert check_repository(storage).findings == []
    fresh = Repository.open(storage, None, operation="write")
    assert all(fresh.get(id_) == blob for id_, blob in shared)
    report = compact(fresh, {id_ for id_, _ in shared}, now=time.time() + LATER)
    assert report.packs_deleted > 0  # every blob live, one copy of each left
    assert sorted(_copies(storage)) == sorted(id_ for id_, _ in shared)
    assert check_repository(storage).findings == []
    keep = dict(shared[:30])
    compact(Repository.open(storage, None, operation="write"), set(keep), now=time.time() + LATER)
    assert sorted(_copies(storage)) == sorted(keep)
    after = Repository.open(storage, None)
    assert all(after.get(id_) == blob for id_, blob in keep.items())
    assert check_repository(storage).findings == []


def _copies(storage: LocalStorage) -> list[bytes]:
    """The id of every blob in every pack (a duplicate twice)."""
    return [e.id for _, entries in stored_packs(storage).values() for e in entries]


def test_writers_sharing_a_quota_cannot_pass_it_together(tmp_path: Path) -> None:
    """Without the shared total each process would allow the whole quota."""
    storage, repository = _repository(tmp_path)
    quota = 60_000
    config = _with_quota(repository.config, quota)
    total = multiprocessing.get_context("spawn").Value("q", 0)
    main = share_quota(guarded_storage(storage, config), quota, total, publish=True)
    assert isinstance(main, SharedQuotaStorage) and total.value > 0  # the config
    writers = []
    for _ in range(2):
        own = guarded_storage(LocalStorage(tmp_path / "repo"), config)
        assert quota_of(own) is not None
        writers.append(SessionWriter(share_quota(own, quota, total, publish=False), PACK_SIZE))
    refused = 0
    for n, (id_, blob) in enumerate(_blobs(200, 7).items()):
        try:
            writers[n % 2].put(id_, blob)
        except StorageQuotaExceeded:
            refused += 1
    assert refused > 0
    stored = sum(i.size for i in storage.list(""))
    assert stored <= quota and total.value == stored
    assert share_quota(storage, None, total, publish=False) is storage  # no quota: as it is


def _with_quota(config: RepoConfig, quota: int) -> RepoConfig:
    return replace(config, storage_quota=quota)
