"""Index files: encoding, verification against the name, structural checks."""

from __future__ import annotations

import hashlib
import os
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hoard.errors import IntegrityError
from hoard.repository.indexfile import (
    ENTRY_SIZE,
    HEADER,
    INDEX_MAGIC,
    IndexFile,
    sort_entries,
)
from hoard.repository.indexnames import index_name_from_path
from hoard.repository.pack import PackEntry


def _packs(n_packs: int, per_pack: int) -> list[tuple[bytes, list[PackEntry]]]:
    return [
        (
            os.urandom(32),
            [PackEntry(i % 4, os.urandom(32), 8 + 50 * i, 10 + i) for i in range(per_pack)],
        )
        for _ in range(n_packs)
    ]


def _rows(index: IndexFile) -> set[tuple[bytes, bytes, int, int, int]]:
    rows = set()
    for e in index.entries:
        id_ = int(e["key0"]).to_bytes(8, "big") + e["rest"].tobytes()
        rows.add(
            (id_, index.packs[int(e["pack"])], int(e["offset"]), int(e["length"]), int(e["type"]))
        )
    return rows


def test_round_trip_and_byte_layout() -> None:
    packs = _packs(3, 5)
    index = IndexFile.from_packs(packs, superseded=["ff" * 32, "00" * 32])
    name, data = index.encode()
    assert name == hashlib.sha256(data).hexdigest()
    assert data[:8] == INDEX_MAGIC
    assert HEADER.unpack_from(data) == (INDEX_MAGIC, 3, 2, 15)
    assert len(data) == HEADER.size + 32 * 5 + ENTRY_SIZE * 15
    assert data[HEADER.size : HEADER.size + 32] == packs[0][0]
    decoded = IndexFile.decode(name, data)
    assert decoded.packs == [p for p, _ in packs]
    assert decoded.superseded == ["00" * 32, "ff" * 32]
    expected = {(e.id, p, e.offset, e.length, e.type) for p, es in packs for e in es}
    assert _rows(decoded) == expected


def test_entry_byte_layout() -> None:
    blob_id = bytes(range(32))
    index = IndexFile.from_packs([(b"P" * 32, [PackEntry(7, blob_id, 8, 300)])])
    _, data = index.encode()
    entry = data[-ENTRY_SIZE:]
    assert entry == blob_id + struct.pack("<IIIB", 0, 8, 300, 7) + b"\0\0\0"


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=60))
def test_entries_are_sorted_by_id_and_unique(ids: list[bytes]) -> None:
    # Ids sharing their first 8 bytes must still sort by the remaining bytes.
    ids = ids + [i[:8] + bytes(24) for i in ids[:5]]
    entries = [PackEntry(0, i, 8, 1) for i in ids]
    index = IndexFile.from_packs([(b"p" * 32, entries)])
    got = [int(e["key0"]).to_bytes(8, "big") + e["rest"].tobytes() for e in index.entries]
    assert got == sorted(set(ids))
    name, data = index.encode()
    IndexFile.decode(name, data)


def test_first_occurrence_of_a_duplicate_id_wins() -> None:
    blob_id = os.urandom(32)
    index = IndexFile.from_packs(
        [(b"a" * 32, [PackEntry(0, blob_id, 8, 1)]), (b"b" * 32, [PackEntry(0, blob_id, 99, 1)])]
    )
    assert len(index.entries) == 1
    assert int(index.entries[0]["pack"]) == 0
    assert int(index.entries[0]["offset"]) == 8


def test_empty_index_file() -> None:
    name, data = IndexFile.from_packs([]).encode()
    decoded = IndexFile.decode(name, data)
    assert decoded.packs == [] and len(decoded.entries) == 0


def test_any_flipped_byte_is_caught_naming_the_file() -> None:
    name, data = IndexFile.from_packs(_packs(2, 3)).encode()
    for position in range(0, len(data), 7):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        with pytest.raises(IntegrityError, match=f"index/{name}"):
            IndexFile.decode(name, bytes(damaged))


def _renamed(data: bytes) -> tuple[str, bytes]:
    """Content with a matching name: only the structural checks can catch it."""
    return hashlib.sha256(data).hexdigest(), data


def test_structural_checks_behind_a_valid_name() -> None:
    _, data = IndexFile.from_packs(_packs(1, 4)).encode()
    with pytest.raises(IntegrityError, match="bad magic"):
        IndexFile.decode(*_renamed(b"HOARDIX\x02" + data[8:]))
    with pytest.raises(IntegrityError, match="size"):
        IndexFile.decode(*_renamed(data + b"\0"))
    with pytest.raises(IntegrityError, match="truncated"):
        IndexFile.decode(*_renamed(data[:10]))
    entries_at = HEADER.size + 32
    swapped = (
        data[:entries_at]
        + data[entries_at + ENTRY_SIZE : entries_at + 2 * ENTRY_SIZE]
        + data[entries_at : entries_at + ENTRY_SIZE]
        + data[entries_at + 2 * ENTRY_SIZE :]
    )
    with pytest.raises(IntegrityError, match="sorted"):
        IndexFile.decode(*_renamed(swapped))
    bad_pack = bytearray(data)
    bad_pack[entries_at + 32] = 5  # pack number 5 of a 1-pack table
    with pytest.raises(IntegrityError, match="pack number"):
        IndexFile.decode(*_renamed(bytes(bad_pack)))


def test_duplicate_ids_behind_a_valid_name_are_refused() -> None:
    _, data = IndexFile.from_packs(_packs(1, 1)).encode()
    entry = data[-ENTRY_SIZE:]
    doubled = bytearray(data + entry)
    struct.pack_into("<Q", doubled, 16, 2)
    with pytest.raises(IntegrityError, match="unique"):
        IndexFile.decode(*_renamed(bytes(doubled)))


def test_sort_entries_of_nothing() -> None:
    empty = IndexFile.from_packs([]).entries
    assert len(sort_entries(empty)) == 0
    assert isinstance(empty, np.ndarray)


def test_index_name_from_path() -> None:
    assert index_name_from_path("index/" + "a" * 64) == "a" * 64
    assert index_name_from_path("index/" + "A" * 64) is None
    assert index_name_from_path("index/readme") is None
    assert index_name_from_path("packs/" + "a" * 64) is None
