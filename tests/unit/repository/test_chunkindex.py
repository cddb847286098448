"""ChunkIndex: a compact map that must behave exactly like a dict."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoard.errors import IntegrityError
from hoard.repository import chunkindex as chunkindex_module
from hoard.repository.chunkindex import ChunkIndex, IndexEntry
from hoard.repository.indexfile import IndexFile
from hoard.repository.pack import PackEntry

Model = dict[bytes, tuple[bytes, int, int, int]]


@pytest.fixture(autouse=True)
def _small_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merge the recent-adds dict often, so tests exercise the merge paths."""
    monkeypatch.setattr(chunkindex_module, "_MIN_MERGE", 7)


REPO_ID = b"r" * 32


def _check(index: ChunkIndex, model: Model) -> None:
    assert len(index) == len(model)
    for id_, (pack, offset, length, type_) in model.items():
        assert index.length_of(id_) == length
        entry = index.lookup(id_)
        assert entry is not None
        assert (index.pack_name(entry.pack), entry.offset, entry.length, entry.type) == (
            pack,
            offset,
            length,
            type_,
        )
    assert sorted(index) == sorted(model)
    for id_ in model:  # near misses: same first 8 bytes, other last byte; other first byte
        for other in (id_[:31] + bytes([id_[31] ^ 1]), bytes([id_[0] ^ 1]) + id_[1:]):
            if other not in model:
                assert index.length_of(other) is None and not index.contains(other)


def _colliding_ids(n: int) -> list[bytes]:
    """Ids sharing their first 8 bytes in small groups (the slow path)."""
    prefixes = [os.urandom(8) for _ in range(max(1, n // 3))]
    return [random.choice(prefixes) + os.urandom(24) for _ in range(n)]


@pytest.mark.parametrize("make_ids", [lambda n: [os.urandom(32) for _ in range(n)], _colliding_ids])
def test_single_adds_behave_like_a_dict(make_ids: object) -> None:
    index = ChunkIndex()
    model: Model = {}
    packs = [os.urandom(32) for _ in range(5)]
    numbers = [index.add_pack(p) for p in packs]
    ids = make_ids(500)  # type: ignore[operator]
    for n, id_ in enumerate(ids):
        p = n % 5
        added = index.add(id_, numbers[p], n, n * 3, n % 256)
        assert added == (id_ not in model)
        model.setdefault(id_, (packs[p], n, n * 3, n % 256))
    _check(index, model)
    assert index.lookup(os.urandom(32)) is None
    assert not index.contains(ids[0][:8] + os.urandom(24))


def _index_file(ids: list[bytes], offset: int = 8) -> IndexFile:
    pack = os.urandom(32)
    return IndexFile.from_packs(
        [(pack, [PackEntry(1, i, offset + n, n) for n, i in enumerate(ids)])]
    )


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_bulk_merges_keep_first_entry(data: st.DataObject) -> None:
    pool = _colliding_ids(40) + [os.urandom(32) for _ in range(40)]
    index = ChunkIndex()
    model: Model = {}
    for _ in range(data.draw(st.integers(1, 6))):
        if data.draw(st.booleans()):
            files = [
                _index_file(data.draw(st.lists(st.sampled_from(pool), max_size=30)))
                for _ in range(data.draw(st.integers(1, 3)))
            ]
            fresh = index.add_index_files(files)
            before = len(model)
            for f in files:
                for e in f.entries:
                    id_ = int(e["key0"]).to_bytes(8, "big") + e["rest"].tobytes()
                    model.setdefault(
                        id_,
                        (
                            f.packs[int(e["pack"])],
                            int(e["offset"]),
                            int(e["length"]),
                            int(e["type"]),
                        ),
                    )
            assert fresh == len(model) - before
        else:
            number = index.add_pack(pack := os.urandom(32))
            for id_ in data.draw(st.lists(st.sampled_from(pool), max_size=20)):
                index.add(id_, number, 1, 2, 3)
                model.setdefault(id_, (pack, 1, 2, 3))
    _check(index, model)


def test_ids_by_type() -> None:
    index = ChunkIndex()
    p = index.add_pack(os.urandom(32))
    by_type: dict[int, set[bytes]] = {0: set(), 1: set(), 2: set()}
    for n in range(100):
        id_ = os.urandom(32)
        index.add(id_, p, 8, 1, n % 3)
        by_type[n % 3].add(id_)
    for type_, ids in by_type.items():
        assert set(index.ids(type_)) == ids
    assert set(index.ids(9)) == set()


def test_save_load_round_trip(tmp_path: Path) -> None:
    index = ChunkIndex()
    model: Model = {}
    packs = [os.urandom(32) for _ in range(3)]
    for p in packs:
        index.add_pack(p)
    for n in range(300):
        id_ = os.urandom(32)
        index.add(id_, n % 3, n, n + 1, n % 7)
        model[id_] = (packs[n % 3], n, n + 1, n % 7)
    digest = index.save(tmp_path / "ci", REPO_ID)
    loaded = ChunkIndex.load(tmp_path / "ci", REPO_ID, expected_digest=digest)
    _check(loaded, model)
    assert loaded.pack_count == 3
    assert not list(tmp_path.glob("*.tmp-*"))


def test_empty_round_trip(tmp_path: Path) -> None:
    ChunkIndex().save(tmp_path / "ci", REPO_ID)
    assert len(ChunkIndex.load(tmp_path / "ci", REPO_ID)) == 0


def _saved(tmp_path: Path) -> tuple[Path, bytes]:
    index = ChunkIndex()
    p = index.add_pack(os.urandom(32))
    for n in range(50):
        index.add(os.urandom(32), p, n, n, 0)
    path = tmp_path / "ci"
    return path, index.save(path, REPO_ID)


def test_any_damage_raises_integrity_error(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    data = path.read_bytes()
    for position in range(0, len(data), 97):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(IntegrityError, match=str(path)):
            ChunkIndex.load(path, REPO_ID)
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(IntegrityError):
            ChunkIndex.load(path, REPO_ID)


def test_cache_of_another_repository_is_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    with pytest.raises(IntegrityError, match="belongs to repository"):
        ChunkIndex.load(path, bytes(32))


def test_unexpected_version_is_refused(tmp_path: Path) -> None:
    path, digest = _saved(tmp_path)
    with pytest.raises(IntegrityError, match="not the version expected"):
        ChunkIndex.load(path, REPO_ID, expected_digest=bytes(32))
    assert len(ChunkIndex.load(path, REPO_ID, expected_digest=digest)) == 50


def test_argument_checks() -> None:
    index = ChunkIndex()
    with pytest.raises(ValueError):
        index.add_pack(b"short")
    with pytest.raises(ValueError, match="pack"):
        index.add(os.urandom(32), 0, 0, 0, 0)
    p = index.add_pack(os.urandom(32))
    with pytest.raises(ValueError):
        index.add(b"x" * 31, p, 0, 0, 0)
    with pytest.raises(ValueError, match="range"):
        index.add(os.urandom(32), p, 2**32, 0, 0)
    with pytest.raises(ValueError):
        index.lookup(b"x")
    with pytest.raises(IndexError):
        index.pack_name(1)


def test_entry_is_small_and_typed() -> None:
    index = ChunkIndex()
    p = index.add_pack(os.urandom(32))
    id_ = os.urandom(32)
    index.add(id_, p, 2**32 - 1, 2**32 - 1, 255)
    for _ in range(20):  # force a merge into the columns
        index.add(os.urandom(32), p, 0, 0, 0)
    assert index.lookup(id_) == IndexEntry(p, 2**32 - 1, 2**32 - 1, 255)


def test_concurrent_adds_and_lookups() -> None:
    index = ChunkIndex()
    p = index.add_pack(os.urandom(32))
    per_thread = [[os.urandom(32) for _ in range(400)] for _ in range(4)]
    errors: list[BaseException] = []

    def work(ids: list[bytes]) -> None:
        try:
            for n, id_ in enumerate(ids):
                index.add(id_, p, n, n, 0)
                assert index.lookup(id_) == IndexEntry(p, n, n, 0)
                assert index.contains(ids[n // 2])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids,)) for ids in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 1600
    assert set(index) == {i for ids in per_thread for i in ids}


def test_length_of_at_the_ends_of_the_key_space_and_after_discards() -> None:
    """The bucketed search of ``length_of``: first and last bucket, ids equal in
    their first 8 bytes, and a fresh view after the main columns change."""
    index = ChunkIndex()
    pack = index.add_pack(os.urandom(32))
    ends = [bytes(8) + os.urandom(24), b"\xff" * 8 + os.urandom(24), b"\xff" * 32, bytes(32)]
    ids = ends + _colliding_ids(300) + [os.urandom(32) for _ in range(300)]
    ids = list(dict.fromkeys(ids))
    for n, id_ in enumerate(ids):
        index.add(id_, pack, n, n + 1, 0)
    for n, id_ in enumerate(ids):
        assert index.length_of(id_) == n + 1
    gone = ids[::3]
    assert index.discard(gone) == len(gone)
    for n, id_ in enumerate(ids):
        assert index.length_of(id_) == (None if n % 3 == 0 else n + 1)
    assert ChunkIndex().length_of(os.urandom(32)) is None
