"""Two processes writing one repository at the same time."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from hoard.repository.indexnames import list_index_names
from hoard.repository.repository import Repository
from hoard.storage.local import LocalStorage

from .helpers import assert_readable, random_blobs

PACK_SIZE = 8 * 1024
ROUNDS = 4
PER_ROUND = 150


def _writer(root: str, cache: str, seed: int, start: multiprocessing.synchronize.Event) -> None:
    """Put and flush several rounds of blobs; run in a child process."""
    repo = Repository.open(LocalStorage(Path(root)), Path(cache), operation="write")
    blobs = random_blobs(ROUNDS * PER_ROUND, seed)
    start.wait(timeout=30)
    items = list(blobs.items())
    for round_ in range(ROUNDS):
        for id_, (type_, blob) in items[round_ * PER_ROUND : (round_ + 1) * PER_ROUND]:
            repo.put(type_, id_, blob)
        repo.flush()
    repo.close()


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "repo")
    Repository.create(storage, pack_size=PACK_SIZE).close()
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    seeds = (1, 2)
    processes = [
        context.Process(
            target=_writer, args=(str(storage.root), str(tmp_path / f"cache{s}"), s, start)
        )
        for s in seeds
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    everything = random_blobs(ROUNDS * PER_ROUND, 1) | random_blobs(ROUNDS * PER_ROUND, 2)
    assert len(list_index_names(storage)) == 2 * ROUNDS
    for cache in (tmp_path / "cache1", tmp_path / "cache2", None):
        repo = Repository.open(storage, cache)
        assert_readable(repo, everything)
        assert len(repo.list_ids()) == len(everything)
