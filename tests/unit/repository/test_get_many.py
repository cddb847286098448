"""Repository.get_many: many blobs in few reads, each outcome that of ``get``."""

from __future__ import annotations

import os
import random

import pytest

from hoard.errors import ChunkNotFound, HoardError, IntegrityError, PackNotFound
from hoard.repository.pack import PACK_MAGIC, pack_path
from hoard.repository.repository import Repository
from hoard.storage.base import Storage
from hoard.storage.memory import MemoryStorage

from .helpers import put_all, random_blobs, stored_packs

PACK_SIZE = 16 * 1024


class CountingStorage(MemoryStorage):
    """A real in-memory storage that records every ranged load."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, int, int | None]] = []

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self.loads.append((name, offset, length))
        return super().load(name, offset, length)


def _outcome(repo: Repository, id_: bytes) -> bytes | str:
    """What ``get`` gives, errors as type and message (comparable)."""
    try:
        return repo.get(id_)
    except HoardError as exc:
        return f"{type(exc).__name__}: {exc}"


def _shown(outcomes: list[bytes | HoardError]) -> list[bytes | str]:
    return [o if isinstance(o, bytes) else f"{type(o).__name__}: {o}" for o in outcomes]


def test_outcomes_are_those_of_get_in_request_order(storage: Storage) -> None:
    repo = Repository.create(storage, pack_size=PACK_SIZE)
    blobs = random_blobs(300, seed=3, max_size=1500)
    put_all(repo, blobs)
    repo.flush()
    pending = random_blobs(5, seed=4, max_size=300)
    put_all(repo, pending)  # still in the writer: not in a pack yet
    ids = [*blobs, *pending, os.urandom(32)]
    random.Random(5).shuffle(ids)
    outcomes = repo.get_many(ids)
    assert _shown(outcomes) == [_outcome(repo, i) for i in ids]
    assert sum(isinstance(o, ChunkNotFound) for o in outcomes) == 1


def test_neighbouring_blobs_of_a_pack_come_in_one_load() -> None:
    storage = CountingStorage()
    repo = Repository.create(storage, pack_size=PACK_SIZE)
    blobs = random_blobs(200, seed=6, max_size=400, types=(1,))
    put_all(repo, blobs)
    repo.flush()
    packs = len(stored_packs(storage))
    storage.loads.clear()
    assert repo.get_many(list(blobs)) == [blob for _, blob in blobs.values()]
    assert len(storage.loads) == packs
    storage.loads.clear()
    # every other blob: the gaps are small, still one load per pack
    assert repo.get_many(list(blobs)[::2]) == [blob for _, blob in list(blobs.values())[::2]]
    assert len(storage.loads) == packs


def test_loads_are_bounded_in_size_and_skip_large_gaps() -> None:
    storage = CountingStorage()
    repo = Repository.create(storage, pack_size=PACK_SIZE)
    blobs = random_blobs(60, seed=7, max_size=400, types=(1,))
    put_all(repo, blobs)
    repo.flush()
    ids = list(blobs)
    packs = len(stored_packs(storage))
    storage.loads.clear()
    assert repo.get_many(ids, max_read=1024) == [blob for _, blob in blobs.values()]
    assert len(storage.loads) > packs
    assert all(length is not None and length <= 1024 + 400 for _, _, length in storage.loads)
    storage.loads.clear()
    first_and_last = [ids[0], ids[-1]]
    repo.get_many(first_and_last, max_gap=0)
    assert len(storage.loads) == 2  # nothing in between is read


def _one_pack(storage: Storage) -> tuple[Repository, list[bytes], str]:
    repo = Repository.create(storage)
    blobs = random_blobs(20, seed=11, max_size=500, types=(1,))
    put_all(repo, blobs)
    repo.flush()
    (pack,) = stored_packs(storage)
    return repo, list(blobs), pack


def test_a_bad_header_fails_its_blob_only(storage: Storage) -> None:
    _, ids, pack = _one_pack(storage)
    data = bytearray(storage.load(pack_path(pack)))
    data[len(PACK_MAGIC) + 5] ^= 0x01  # the first blob's header (its id)
    storage.store(pack_path(pack), bytes(data), overwrite=True)
    reopened = Repository.open(storage, None)
    outcomes = reopened.get_many(ids)
    bad = [i for i, o in zip(ids, outcomes, strict=True) if isinstance(o, IntegrityError)]
    assert bad == [ids[0]]
    assert _shown(outcomes) == [_outcome(reopened, i) for i in ids]


def test_a_truncated_pack_fails_the_blobs_past_its_end(storage: Storage) -> None:
    repo, ids, pack = _one_pack(storage)
    data = storage.load(pack_path(pack))
    storage.store(pack_path(pack), data[:-1], overwrite=True)
    outcomes = repo.get_many(ids)
    assert sum(isinstance(o, IntegrityError) for o in outcomes) == 1
    assert _shown(outcomes) == [_outcome(repo, i) for i in ids]


def test_a_missing_pack_fails_its_blobs_naming_it(storage: Storage) -> None:
    repo, ids, pack = _one_pack(storage)
    other = random_blobs(3, seed=12, max_size=100, types=(1,))
    put_all(repo, other)
    repo.flush()
    storage.delete(pack_path(pack))
    outcomes = repo.get_many([*ids, *other])
    for id_, outcome in zip(ids, outcomes[: len(ids)], strict=True):
        assert isinstance(outcome, PackNotFound)
        assert (outcome.object_id, outcome.pack) == (id_, pack)
    assert outcomes[len(ids) :] == [blob for _, blob in other.values()]


def test_bad_ids_are_refused(storage: Storage) -> None:
    repo = Repository.create(storage)
    with pytest.raises(ValueError):
        repo.get_many([b"short"])
    assert repo.get_many([]) == []
