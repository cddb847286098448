"""Compression registry: spec parsing, round trips, auto mode, corrupt input."""

from __future__ import annotations

import os
import threading
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoard.errors import CompressionSpecError, IntegrityError
from hoard.objects.compression import (
    DEFAULT_COMPRESSION,
    CompressionSpec,
    compress,
    decompress,
    parse_compression,
)

TEXT = Path(__file__).read_bytes() * 20
RANDOM = os.urandom(64 * 1024)
HEADERS = {"none": 0x00, "lz4": 0x01, "zstd": 0x02, "zlib": 0x03, "lzma": 0x04}
ALL_SPECS = ["none", "lz4", "zstd", "zstd,1", "zstd,22", "zlib,0", "zlib", "lzma,0", "lzma"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", CompressionSpec("none")),
        ("lz4", CompressionSpec("lz4")),
        ("zstd", CompressionSpec("zstd", 3)),
        ("zstd,1", CompressionSpec("zstd", 1)),
        ("zstd,22", CompressionSpec("zstd", 22)),
        ("zlib", CompressionSpec("zlib", 6)),
        ("zlib,0", CompressionSpec("zlib", 0)),
        ("zlib,9", CompressionSpec("zlib", 9)),
        ("lzma", CompressionSpec("lzma", 6)),
        ("lzma,9", CompressionSpec("lzma", 9)),
        ("auto,lz4", CompressionSpec("lz4", auto=True)),
        ("auto,zstd", CompressionSpec("zstd", 3, auto=True)),
        ("auto,zstd,10", CompressionSpec("zstd", 10, auto=True)),
        ("auto,lzma,1", CompressionSpec("lzma", 1, auto=True)),
    ],
)
def test_parse_valid(text: str, expected: CompressionSpec) -> None:
    assert parse_compression(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "unknown algorithm ''"),
        ("gzip", "unknown algorithm 'gzip'"),
        ("ZSTD", "unknown algorithm 'ZSTD'"),
        ("zstd,0", "from 1 to 22"),
        ("zstd,23", "from 1 to 22"),
        ("zstd,x", "'x' is not a number"),
        ("zstd,3,4", "from 1 to 22"),
        ("zlib,10", "from 0 to 9"),
        ("lzma,-1", "from 0 to 9"),
        ("lz4,1", "lz4 takes no level"),
        ("none,1", "none takes no level"),
        ("auto", "auto needs an algorithm"),
        ("auto,", "auto needs an algorithm"),
        ("auto,auto,lz4", "unknown algorithm 'auto'"),
        ("auto,zstd,99", "from 1 to 22"),
        ("obfuscate,1,zstd", "obfuscate is not supported"),
    ],
)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(CompressionSpecError) as info:
        parse_compression(text)
    assert repr(text) in str(info.value)
    assert message in str(info.value)


def test_spec_str_is_borg_syntax_and_parses_back() -> None:
    for text in ["none", "lz4", "zstd,3", "zlib,6", "lzma,9", "auto,zstd,3", "auto,lz4"]:
        assert str(parse_compression(text)) == text
        assert parse_compression(str(parse_compression(text))) == parse_compression(text)


def test_spec_constructor_validates() -> None:
    with pytest.raises(CompressionSpecError):
        CompressionSpec("zstd", 99)
    with pytest.raises(CompressionSpecError):
        CompressionSpec("lz4", 1)
    with pytest.raises(CompressionSpecError):
        CompressionSpec("brotli")


@pytest.mark.parametrize("text", ALL_SPECS)
def test_round_trip_and_header(text: str) -> None:
    spec = parse_compression(text)
    for data in (TEXT, RANDOM, b"", b"x"):
        blob = compress(spec, data)
        assert decompress(blob) == data
        assert len(blob) <= len(data) + 1
    # zlib level 0 only adds framing to the data, so it is stored with none
    expected = "none" if text == "zlib,0" else spec.name
    assert compress(spec, TEXT)[0] == HEADERS[expected]


def test_incompressible_data_is_stored_with_none() -> None:
    for text in ["lz4", "zstd,19", "zlib,9", "lzma,6"]:
        blob = compress(parse_compression(text), RANDOM)
        assert blob == b"\x00" + RANDOM


def test_lz4_stores_the_uncompressed_size() -> None:
    blob = compress(parse_compression("lz4"), TEXT)
    assert int.from_bytes(blob[1:5], "little") == len(TEXT)


def test_auto_stores_random_uncompressed_and_text_compressed() -> None:
    spec = parse_compression("auto,zstd,3")
    assert compress(spec, RANDOM)[0] == HEADERS["none"]
    text_blob = compress(spec, TEXT)
    assert text_blob[0] == HEADERS["zstd"]
    assert decompress(text_blob) == TEXT


def test_auto_lz4_reuses_the_trial() -> None:
    blob = compress(parse_compression("auto,lz4"), TEXT)
    assert blob == compress(parse_compression("lz4"), TEXT)


def test_memoryview_input() -> None:
    spec = parse_compression("zstd,1")
    view = memoryview(TEXT)[100:5000]
    blob = compress(spec, view)
    assert decompress(memoryview(blob)) == bytes(view)


def test_default_is_a_fast_real_compressor() -> None:
    assert parse_compression("zstd,1") == DEFAULT_COMPRESSION
    assert compress(DEFAULT_COMPRESSION, TEXT)[0] != HEADERS["none"]


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "empty object"),
        (b"\x09abc", "unknown compression header 0x09"),
        (b"\x01" + b"\xff" * 40, "decompression failed (lz4)"),
        (b"\x02garbage-garbage", "decompression failed (zstd)"),
        (b"\x03garbage", "decompression failed (zlib)"),
        (b"\x04garbage", "decompression failed (lzma)"),
    ],
)
def test_decompress_garbage_is_an_integrity_error(blob: bytes, message: str) -> None:
    with pytest.raises(IntegrityError) as info:
        decompress(blob)
    assert "decompression failed" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize("text", ["lz4", "zstd,3", "zlib,6", "lzma,1"])
def test_truncated_payload_is_an_integrity_error(text: str) -> None:
    blob = compress(parse_compression(text), TEXT)
    with pytest.raises(IntegrityError):
        decompress(blob[: len(blob) // 2])


def test_zlib_payload_is_plain_zlib() -> None:
    blob = compress(parse_compression("zlib,6"), TEXT)
    assert zlib.decompress(blob[1:]) == TEXT


def test_zstd_from_many_threads() -> None:
    """Per-thread contexts: concurrent use must neither crash nor mix up outputs."""
    spec = parse_compression("zstd,3")
    inputs = [TEXT[i:] + bytes([i]) for i in range(8)]
    errors: list[BaseException] = []

    def work(data: bytes) -> None:
        try:
            for _ in range(20):
                assert decompress(compress(spec, data)) == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(d,)) for d in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=4096), text=st.sampled_from([*ALL_SPECS, "auto,zlib,1"]))
def test_round_trip_property(data: bytes, text: str) -> None:
    assert decompress(compress(parse_compression(text), data)) == data
