"""Shared helpers for the repository tests (random blobs, pack inspection)."""

from __future__ import annotations

import random

from hoard.repository.pack import PackEntry, parse_pack
from hoard.repository.repository import Repository
from hoard.storage.base import Storage

Blobs = dict[bytes, tuple[int, bytes]]


def random_blobs(
    n: int, seed: int, max_size: int = 2000, types: tuple[int, ...] = (0, 1, 3)
) -> Blobs:
    """``n`` blobs id -> (type, content), reproducible from ``seed``."""
    rng = random.Random(seed)
    return {
        rng.randbytes(32): (rng.choice(types), rng.randbytes(rng.randrange(max_size)))
        for _ in range(n)
    }


def put_all(repo: Repository, blobs: Blobs) -> None:
    for id_, (type_, blob) in blobs.items():
        repo.put(type_, id_, blob)


def assert_readable(repo: Repository, blobs: Blobs) -> None:
    for id_, (type_, blob) in blobs.items():
        assert repo.contains(id_)
        assert repo.get(id_) == blob
        assert repo.get_type(id_) == type_


def stored_packs(storage: Storage) -> dict[str, tuple[int, list[PackEntry]]]:
    """Every pack: name -> (size, parsed entries)."""
    packs = {}
    for info in storage.list("packs/"):
        data = storage.load(info.name)
        name = info.name.rsplit("/", 1)[1]
        packs[name] = (len(data), parse_pack(data, name))
    return packs
