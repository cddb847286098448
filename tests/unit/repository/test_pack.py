"""Pack files: layout, size rule, parsing and structural damage."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hoard.errors import IntegrityError
from hoard.repository.pack import (
    HEADER_SIZE,
    PACK_MAGIC,
    PackEntry,
    PackWriter,
    encode_header,
    pack_path,
    parse_pack,
    verify_pack_name,
)

blobs = st.lists(
    st.tuples(st.integers(0, 255), st.binary(min_size=32, max_size=32), st.binary(max_size=300)),
    max_size=30,
    unique_by=lambda t: t[1],
)


@given(blobs)
def test_parse_returns_what_was_written(items: list[tuple[int, bytes, bytes]]) -> None:
    writer = PackWriter(1 << 20)
    written = [writer.add(t, i, b) for t, i, b in items]
    name, view = writer.finish()
    data = bytes(view)
    assert name == hashlib.sha256(data).hexdigest()
    assert parse_pack(data, name) == written
    for entry, (_, _, blob) in zip(written, items, strict=True):
        start = entry.offset + HEADER_SIZE
        assert data[start : start + entry.length] == blob


def test_byte_layout() -> None:
    writer = PackWriter(1 << 20)
    blob_id = bytes(range(32))
    writer.add(3, blob_id, b"hello")
    _, data = writer.finish()
    assert data.readonly  # a view of the writer's buffer, not a copy
    assert data == PACK_MAGIC + b"\x03" + blob_id + struct.pack("<I", 5) + b"hello"
    assert parse_pack(bytes(data)) == [PackEntry(3, blob_id, 8, 5)]


def test_fits_respects_target_and_lets_big_blobs_into_empty_packs() -> None:
    writer = PackWriter(1000)
    assert writer.fits(5000)  # empty: any blob, it gets its own pack
    writer.add(0, os.urandom(32), b"x" * 500)
    assert writer.size == len(PACK_MAGIC) + HEADER_SIZE + 500
    room = 1000 - writer.size - HEADER_SIZE
    assert writer.fits(room)
    assert not writer.fits(room + 1)
    assert not writer.full
    writer.add(0, os.urandom(32), b"y" * room)
    assert writer.size == 1000
    assert writer.full


def test_writer_get_reset_and_duplicate() -> None:
    writer = PackWriter(1 << 20)
    blob_id = os.urandom(32)
    writer.add(1, blob_id, b"abc")
    assert writer.get(blob_id) == b"abc"
    assert writer.type_of(blob_id) == 1
    assert writer.get(os.urandom(32)) is None
    with pytest.raises(ValueError, match="already"):
        writer.add(1, blob_id, b"abc")
    writer.reset()
    assert len(writer) == 0
    assert writer.get(blob_id) is None
    assert writer.size == len(PACK_MAGIC)


@pytest.mark.parametrize(
    ("type_", "id_", "length"),
    [(256, bytes(32), 1), (-1, bytes(32), 1), (0, bytes(31), 1), (0, bytes(32), 2**32)],
)
def test_header_range_checks(type_: int, id_: bytes, length: int) -> None:
    with pytest.raises(ValueError):
        encode_header(type_, id_, length)


def test_pack_path_fans_out_by_first_two_hex_digits() -> None:
    assert pack_path("ab" + "0" * 62) == "packs/ab/ab" + "0" * 62


def _pack() -> tuple[str, bytes]:
    writer = PackWriter(1 << 20)
    for n in range(3):
        writer.add(0, os.urandom(32), os.urandom(100 + n))
    name, data = writer.finish()
    return name, bytes(data)


def test_structural_damage_names_the_pack() -> None:
    name, data = _pack()
    with pytest.raises(IntegrityError, match=f"pack {name}: bad magic") as info:
        parse_pack(b"X" + data[1:], name)
    assert info.value.pack == name and info.value.reason == "bad magic"
    with pytest.raises(IntegrityError, match=f"pack {name}: truncated"):
        parse_pack(data + b"\x00" * 10, name)
    with pytest.raises(IntegrityError, match=f"object .* in pack {name}: .* past the end") as info:
        parse_pack(data[:-1], name)
    assert info.value.object_id is not None and info.value.pack == name
    grown = bytearray(data)
    grown[len(PACK_MAGIC) + 33 : len(PACK_MAGIC) + 37] = struct.pack("<I", 10**6)
    with pytest.raises(IntegrityError, match=name):
        parse_pack(bytes(grown), name)


def test_verify_pack_name() -> None:
    name, data = _pack()
    verify_pack_name(data, name)
    with pytest.raises(IntegrityError, match=name):
        verify_pack_name(data[:-1] + bytes([data[-1] ^ 1]), name)


def test_empty_pack_parses_to_nothing() -> None:
    assert parse_pack(PACK_MAGIC) == []
