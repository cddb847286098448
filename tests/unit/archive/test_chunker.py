"""Tests of hoard.archive.chunker: the format (golden vectors), the C/Python twins, streaming."""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterable, Sequence

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoard.archive import chunker_py
from hoard.archive.chunker import (
    DEFAULT_CHUNKER_PARAMS,
    MAX_CHUNK_SIZE,
    CdcChunker,
    Chunk,
    ChunkerParams,
    ChunkKind,
    FixedChunker,
    cdc_masks,
    gear_table,
    make_chunker,
    native_scan,
    spread_mask,
)
from hoard.archive.fileread import Fragment
from hoard.errors import ChunkerParamsError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
MiB = 1024 * 1024

Segment = bytes | int  # bytes: data; int: a hole of that many bytes


def random_bytes(seed: int, size: int) -> bytes:
    """Deterministic pseudo-random bytes (hypothesis' own buffers are far too small)."""
    return blake3.blake3(seed.to_bytes(8, "little")).digest(length=size)


def expand(chunks: Iterable[Chunk]) -> bytes:
    """The stream a chunk list stands for, ZERO and HOLE chunks as zeros."""
    return b"".join(bytes(c.data) if c.data is not None else bytes(c.size) for c in chunks)


def split(data: bytes, points: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed)."""
    edges = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def sizes_from_cuts(cuts: Sequence[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise([0, *cuts])]


def native_chunker(params: ChunkerParams, key: bytes = KEY, **kw: int) -> CdcChunker:
    chunker = CdcChunker(params, key, native=True, **kw)
    assert chunker.native
    return chunker


@st.composite
def cdc_params(draw: st.DrawFn, max_exp_limit: int = 13) -> ChunkerParams:
    min_exp = draw(st.integers(6, 10))
    max_exp = draw(st.integers(min_exp, max(min_exp, max_exp_limit)))
    mask_bits = draw(st.integers(min_exp, max_exp))
    return ChunkerParams.fastcdc(min_exp, max_exp, mask_bits)


@st.composite
def content(draw: st.DrawFn, max_size: int) -> bytes:
    """Random bytes, or bytes from a tiny alphabet (constant runs, repeats): hard cases too."""
    # Hypothesis favours small integers; half the examples must be large to cut often.
    large = draw(st.booleans())
    size = draw(st.integers(max_size // 2, max_size) if large else st.integers(0, 300))
    raw = random_bytes(draw(st.integers(0, 2**32)), size)
    alphabet = draw(st.sampled_from([256, 2, 1]))
    if alphabet == 256:
        return raw
    return bytes(b % alphabet for b in raw)


# --- the format: golden vectors ------------------------------------------------------


def test_gear_table_is_keyed_blake3_output() -> None:
    table = gear_table(KEY)
    assert len(table) == 2048
    assert table[:16].hex() == "6e39e10136ba4c1a4c02ad9648cd6f06"
    assert blake3.blake3(table).hexdigest()[:32] == "62a47a9f8f4807acf184a930efdd31ab"
    assert gear_table(OTHER_KEY) != table


def test_gear_table_refuses_a_key_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        gear_table(bytes(31))


def test_masks_are_the_documented_spread_masks() -> None:
    assert cdc_masks(21) == (0xAAAAAA5555540000, 0xA5294A5294A40000)
    assert spread_mask(12) == 0x8888888888880000
    for ones in range(1, 49):
        mask = spread_mask(ones)
        assert mask.bit_count() == ones
        assert mask >> 63 == 1
        assert mask & 0xFFFF == 0
    with pytest.raises(ValueError):
        spread_mask(49)


@pytest.mark.parametrize("native", [True, False])
def test_boundaries_match_the_golden_vector(native: bool) -> None:
    """Boundaries are repository format: if this fails, old backups stop deduplicating."""
    data = blake3.blake3(b"hoard chunker test vector").digest(length=MiB)
    chunker = CdcChunker(ChunkerParams.parse("fastcdc,10,16,12"), KEY, native=native)
    assert chunker.native is native
    cuts = chunker.find_cuts(data, final=True)
    assert len(cuts) == 224
    assert cuts[:8] == [8413, 13298, 18560, 23128, 26679, 31783, 37586, 41754]
    digest = hashlib.sha256(repr(cuts).encode()).hexdigest()[:32]
    assert digest == "1d61adeb44c3fc5ccdde9459ad9c49c9"


def test_native_extension_is_built() -> None:
    assert native_scan() is not None, "build it: python setup.py build_ext --inplace"


# --- C and Python twins, streaming -----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(params=cdc_params(), data=content(64 * 1024), key=st.binary(min_size=32, max_size=32))
def test_native_and_python_scans_cut_identically(
    params: ChunkerParams, data: bytes, key: bytes
) -> None:
    native = native_chunker(params, key).find_cuts(data, final=True)
    python = CdcChunker(params, key, native=False).find_cuts(data, final=True)
    assert native == python
    assert (native[-1] if native else 0) == len(data)


@settings(max_examples=60, deadline=None)
@given(
    params=cdc_params(),
    data=content(64 * 1024),
    carry=st.integers(0, 2**20),
    final=st.booleans(),
)
def test_a_scan_resumes_with_carry_and_history(
    params: ChunkerParams, data: bytes, carry: int, final: bool
) -> None:
    """Scanning data[k:] with the first k bytes carried cuts where scanning all of data does.

    k = first cut - 1 makes the first candidate a cut whose hash window lies
    almost wholly in the history: a mistake there shows.
    """
    reference = native_chunker(params).find_cuts(data, final=True)
    scans = [native_chunker(params), CdcChunker(params, KEY, native=False)]
    for k in {carry % reference[0], reference[0] - 1} if reference else {0}:
        expected = [cut - k for cut in reference]
        history = data[max(0, k - 63) : k]
        for scan in scans:
            cuts = scan.find_cuts(data[k:], carry=k, history=history, final=final)
            assert cuts == expected if final else cuts in (expected, expected[:-1])


@pytest.mark.parametrize("native", [True, False])
def test_a_carried_chunk_ends_at_offset_zero_when_final(native: bool) -> None:
    data = random_bytes(13, 100)
    chunker = CdcChunker(ChunkerParams.fastcdc(8, 10, 9), KEY, native=native)
    assert chunker.find_cuts(b"", carry=100, history=data[-63:], final=True) == [0]
    assert chunker.find_cuts(b"", carry=100, history=data[-63:]) == []
    assert chunker.find_cuts(b"", final=True) == []


@settings(max_examples=40, deadline=None)
@given(
    params=cdc_params(),
    segments=st.lists(st.one_of(content(40 * 1024), st.integers(1, 20000)), max_size=5),
    points=st.lists(st.integers(0, 2**20), max_size=30),
    scan_step=st.integers(1, 3000),
    native=st.booleans(),
)
def test_chunks_do_not_depend_on_how_input_was_split(
    params: ChunkerParams,
    segments: list[Segment],
    points: list[int],
    scan_step: int,
    native: bool,
) -> None:
    fragments: list[Fragment | bytes] = []
    for segment in segments:
        if isinstance(segment, int):
            fragments.append(Fragment.hole(segment))
        else:
            fragments.extend(split(segment, points))
    chunker = CdcChunker(params, KEY, native=native, scan_step=scan_step)
    chunks = list(chunker.chunks(fragments))
    assert [(c.kind, c.size) for c in chunks] == expected_cdc_chunks(params, segments)
    assert expand(chunks) == b"".join(s if isinstance(s, bytes) else bytes(s) for s in segments)


@pytest.mark.parametrize("spec", ["fastcdc,6,10,8", "fastcdc,6,6,6", "fastcdc,7,9,9"])
def test_every_split_point_gives_the_same_chunks(spec: str) -> None:
    """Resuming a scan after a read must neither repeat nor skip a candidate cut."""
    data = random_bytes(12, 5000)
    chunker = native_chunker(ChunkerParams.parse(spec), scan_step=1)
    reference = chunker.find_cuts(data, final=True)
    for k in range(len(data) + 1):
        sizes = [c.size for c in chunker.chunks([data[:k], data[k:]])]
        assert sizes == sizes_from_cuts(reference), f"split at {k}"


def expected_cdc_chunks(
    params: ChunkerParams, segments: list[Segment]
) -> list[tuple[ChunkKind, int]]:
    """The oracle: each run of data cut in one piece by the C scan, holes merged and split."""
    expected: list[tuple[ChunkKind, int]] = []
    scan = native_chunker(params)
    run, hole = b"", 0
    for segment in segments:
        if isinstance(segment, int):
            expected += cdc_run(scan, run)
            run, hole = b"", hole + segment
        elif segment:
            expected += hole_run(hole, params.max_size)
            run, hole = run + segment, 0
    return expected + cdc_run(scan, run) + hole_run(hole, params.max_size)


def hole_run(hole: int, max_size: int) -> list[tuple[ChunkKind, int]]:
    full, rest = divmod(hole, max_size)
    return [(ChunkKind.HOLE, max_size)] * full + ([(ChunkKind.HOLE, rest)] if rest else [])


def cdc_run(chunker: CdcChunker, run: bytes) -> list[tuple[ChunkKind, int]]:
    cuts = chunker.find_cuts(run, final=True)
    pieces = [run[a:b] for a, b in itertools.pairwise([0, *cuts])]
    return [(ChunkKind.DATA if any(p) else ChunkKind.ZERO, len(p)) for p in pieces]


@settings(max_examples=40, deadline=None)
@given(params=cdc_params(max_exp_limit=16), data=content(256 * 1024))
def test_chunks_reassemble_and_respect_min_and_max(params: ChunkerParams, data: bytes) -> None:
    chunks = list(native_chunker(params).chunks([data]))
    assert expand(chunks) == data
    for chunk in chunks[:-1]:
        assert params.min_size <= chunk.size <= params.max_size
    if chunks:
        assert 0 < chunks[-1].size <= params.max_size


def test_a_different_key_gives_different_boundaries() -> None:
    data = random_bytes(1, 256 * 1024)
    params = ChunkerParams.fastcdc(6, 12, 9)
    cuts = native_chunker(params, KEY).find_cuts(data, final=True)
    other = native_chunker(params, OTHER_KEY).find_cuts(data, final=True)
    assert len(cuts) > 100
    assert len(set(cuts) & set(other)) < len(cuts) // 4


@pytest.mark.parametrize("edit", ["insert", "delete"])
def test_an_edit_near_the_start_changes_only_the_first_chunks(edit: str) -> None:
    data = random_bytes(2, 4 * MiB)
    edited = (
        data[:1000] + b"inserted bytes" + data[1000:]
        if edit == "insert"
        else (data[:1000] + data[1100:])
    )
    chunker = native_chunker(ChunkerParams.fastcdc(10, 14, 12))
    before = {hashlib.sha256(c.data).digest() for c in chunker.chunks([data]) if c.data}
    after = [hashlib.sha256(c.data).digest() for c in chunker.chunks([edited]) if c.data]
    assert len(after) > 500
    new = [i for i, digest in enumerate(after) if digest not in before]
    assert new and max(new) <= 2


def test_zero_runs_become_zero_chunks_without_data() -> None:
    data = random_bytes(3, 64 * 1024) + bytes(256 * 1024) + random_bytes(4, 64 * 1024)
    params = ChunkerParams.fastcdc(8, 12, 10)
    for native in (True, False):
        chunks = list(CdcChunker(params, KEY, native=native).chunks([data]))
        zero = [c for c in chunks if c.kind is ChunkKind.ZERO]
        assert all(c.data is None for c in zero)
        assert sum(c.size for c in zero) >= 256 * 1024 - 2 * params.max_size
        assert all(c.data is not None and any(c.data) for c in chunks if c.kind is ChunkKind.DATA)
        assert expand(chunks) == data


def test_a_hole_ends_the_chunk_and_becomes_hole_chunks_of_at_most_max_size() -> None:
    params = ChunkerParams.fastcdc(6, 12, 10)
    head, tail = random_bytes(5, 5000), random_bytes(6, 3000)
    fragments: list[Fragment | bytes] = [
        Fragment.hole(10),
        head,
        Fragment.hole(100_000),
        Fragment.hole(5),
        tail,
    ]
    chunks = list(native_chunker(params).chunks([*fragments, Fragment.hole(7)]))
    kinds = [c.kind for c in chunks]
    holes = [c.size for c in chunks if c.kind is ChunkKind.HOLE]
    assert kinds[0] is ChunkKind.HOLE and kinds[-1] is ChunkKind.HOLE
    assert holes == [10, *[4096] * 24, 100_005 - 24 * 4096, 7]
    assert expand(chunks) == bytes(10) + head + bytes(100_005) + tail + bytes(7)
    data_before_hole = [c.size for c in chunks[1 : kinds.index(ChunkKind.HOLE, 1)]]
    assert sum(data_before_hole) == 5000
    assert all(c.data is None for c in chunks if c.kind is ChunkKind.HOLE)


def test_default_params_average_near_one_mib() -> None:
    data = random_bytes(7, 64 * MiB)
    chunker = make_chunker(DEFAULT_CHUNKER_PARAMS, KEY)
    sizes = [c.size for c in chunker.chunks([data])]
    assert sum(sizes) == len(data)
    assert 0.6 * MiB <= len(data) / len(sizes) <= 1.4 * MiB
    assert all(512 * 1024 <= s <= 8 * MiB for s in sizes[:-1])


def test_two_threads_chunk_like_one() -> None:
    """The scan runs without the GIL: concurrent use must not mix up state."""
    params = ChunkerParams.fastcdc(10, 16, 13)
    chunker = native_chunker(params, scan_step=MiB)
    inputs = [split(random_bytes(seed, 8 * MiB), [12345, 3 * MiB, 5 * MiB]) for seed in (8, 9)]
    sequential = [[c.size for c in chunker.chunks(pieces)] for pieces in inputs]
    results: list[list[int]] = [[], []]
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(3):
            results[i] = [c.size for c in chunker.chunks(inputs[i])]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == sequential
    assert sequential[0] != sequential[1]


def test_cdc_chunker_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="fastcdc"):
        CdcChunker(ChunkerParams.fixed(4096), KEY)
    with pytest.raises(ValueError, match="scan_step"):
        CdcChunker(DEFAULT_CHUNKER_PARAMS, KEY, scan_step=0)


def test_scans_refuse_bad_arguments_alike() -> None:
    scans = [native_scan(), chunker_py.find_cuts]
    table = gear_table(KEY)
    for scan in scans:
        assert scan is not None
        with pytest.raises(ValueError, match="gear_table"):
            scan(b"x" * 100, table[:-1], (64, 128, 256), (1, 1))
        with pytest.raises(ValueError, match="min_size"):
            scan(b"x" * 100, table, (32, 128, 256), (1, 1))
        with pytest.raises(ValueError, match="carry"):
            scan(b"x" * 100, table, (64, 128, 256), (1, 1), carry=-1)
        with pytest.raises(ValueError, match="carry"):
            scan(b"x" * 100, table, (64, 128, 256), (1, 1), carry=256, history=bytes(63))
        with pytest.raises(ValueError, match="history"):
            scan(b"x" * 100, table, (64, 128, 256), (1, 1), carry=10, history=bytes(9))
        with pytest.raises(ValueError, match="history"):
            scan(b"x" * 100, table, (64, 128, 256), (1, 1), carry=100, history=bytes(64))
        with pytest.raises(OverflowError):
            scan(b"x" * 100, table, (64, 128, 256), (1 << 64, 1))


def test_make_chunker_picks_the_implementation() -> None:
    assert isinstance(make_chunker(ChunkerParams.fixed(4096), KEY), FixedChunker)
    chunker = make_chunker(DEFAULT_CHUNKER_PARAMS, KEY)
    assert isinstance(chunker, CdcChunker) and chunker.native
    twin = make_chunker(DEFAULT_CHUNKER_PARAMS, KEY, native=False)
    assert isinstance(twin, CdcChunker) and not twin.native


def test_byte_strings_of_any_buffer_type_are_accepted() -> None:
    data = random_bytes(10, 50_000)
    chunker = native_chunker(ChunkerParams.fastcdc(8, 12, 10))
    pieces: list[bytes | bytearray | memoryview] = [
        data[:100],
        bytearray(data[100:20_000]),
        memoryview(data)[20_000:],
        b"",
    ]
    assert expand(chunker.chunks(pieces)) == data
    assert list(chunker.chunks([])) == []


# --- the fixed chunker ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    block=st.integers(64, 300),
    header=st.sampled_from([0, 0, 1, 100, 500]),
    segments=st.lists(
        st.one_of(content(2000), st.integers(1, 1500), st.integers(0, 700).map(bytes)),
        max_size=6,
    ),
    points=st.lists(st.integers(0, 5000), max_size=6),
)
def test_fixed_chunker_keeps_the_block_grid(
    block: int, header: int, segments: list[Segment], points: list[int]
) -> None:
    fragments: list[Fragment | bytes] = []
    stream, is_hole = b"", bytearray()
    for segment in segments:
        if isinstance(segment, int):
            fragments.append(Fragment.hole(segment))
            stream, is_hole = stream + bytes(segment), is_hole + b"\1" * segment
        else:
            fragments.extend(split(segment, points))
            stream, is_hole = stream + segment, is_hole + b"\0" * len(segment)
    chunks = list(FixedChunker(ChunkerParams.fixed(block, header)).chunks(fragments))
    assert expand(chunks) == stream
    offset = 0
    for i, chunk in enumerate(chunks):
        grid = header if i == 0 and header else block
        assert chunk.size == grid or (i == len(chunks) - 1 and 0 < chunk.size < grid)
        piece, holes = stream[offset : offset + chunk.size], is_hole[offset : offset + chunk.size]
        assert chunk.kind is expected_fixed_kind(piece, holes)
        offset += chunk.size
    assert offset == len(stream)


def expected_fixed_kind(piece: bytes, holes: bytes | bytearray) -> ChunkKind:
    if all(holes):
        return ChunkKind.HOLE
    return ChunkKind.DATA if any(piece) else ChunkKind.ZERO


def test_fixed_chunker_emits_whole_blocks_without_copying() -> None:
    data = random_bytes(11, 4096 * 3)
    first, rest = data[:4096], data[4096:]
    chunks = list(FixedChunker(ChunkerParams.fixed(4096)).chunks([first, rest]))
    assert [c.size for c in chunks] == [4096] * 3
    assert chunks[0].data is first
    assert isinstance(chunks[1].data, memoryview) and chunks[1].data.obj is rest


# --- parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical", "sizes"),
    [
        ("default", "fastcdc,19,23,20", (512 * 1024, 1 * MiB, 8 * MiB)),
        ("fastcdc,19,23,21,4095", "fastcdc,19,23,21", (512 * 1024, 2 * MiB, 8 * MiB)),
        ("fastcdc,10,16,12", "fastcdc,10,16,12", (1024, 4096, 65536)),
        ("buzhash,19,23,21,4095", "fastcdc,19,23,21", (512 * 1024, 2 * MiB, 8 * MiB)),
        ("19,23,21,4095", "fastcdc,19,23,21", (512 * 1024, 2 * MiB, 8 * MiB)),
        ("10,23,16,4095", "fastcdc,10,23,16", (1024, 65536, 8 * MiB)),
        (" BuzHash, 6, 6, 6, 1 ", "fastcdc,6,6,6", (64, 64, 64)),
        ("fixed,4194304", "fixed,4194304,0", (4 * MiB, 4 * MiB, 4 * MiB)),
        ("fixed,4096,512", "fixed,4096,512", (4096, 4096, 4096)),
        ("fixed,64,20971478", "fixed,64,20971478", (64, 64, MAX_CHUNK_SIZE)),
    ],
)
def test_params_parse(text: str, canonical: str, sizes: tuple[int, int, int]) -> None:
    params = ChunkerParams.parse(text)
    assert str(params) == canonical
    assert (params.min_size, params.avg_size, params.max_size) == sizes
    assert ChunkerParams.parse(canonical) == params


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected fastcdc"),
        ("rabin,19,23,21,4095", "expected fastcdc"),
        ("default,1", "expected fastcdc"),
        ("buzhash,19,23,21", "expected fastcdc"),
        ("fastcdc,19,23", "expected fastcdc"),
        ("fastcdc,19,23,21,4095,7", "expected fastcdc"),
        ("19,23,21", "expected fastcdc"),
        ("fixed", "expected fastcdc"),
        ("fixed,1,2,3", "expected fastcdc"),
        ("fastcdc,5,23,21", "less than 6"),
        ("fastcdc,19,24,21", "more than 23"),
        ("fastcdc,19,23,24", "MIN_EXP <= MASK_BITS <= MAX_EXP"),
        ("fastcdc,20,23,19", "MIN_EXP <= MASK_BITS <= MAX_EXP"),
        ("fastcdc,20,19,20", "MIN_EXP <= MASK_BITS <= MAX_EXP"),
        ("fastcdc,19,23,-1", "'-1' is not a non-negative whole number"),
        ("buzhash,19,23,21,x", "'x' is not a non-negative whole number"),
        ("fastcdc,1e3,23,21", "'1e3' is not"),
        ("fastcdc,19,23,99999999999999999999", "far too large"),
        ("fixed,63", "less than 64 bytes"),
        ("fixed,20971479", "must not exceed 20971478"),
        ("fixed,4096,20971479", "must not exceed 20971478"),
    ],
)
def test_params_errors_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ChunkerParamsError) as info:
        ChunkerParams.parse(text)
    assert info.value.args[0] == text
    assert reason in str(info.value)
    assert str(info.value).startswith(f"Invalid chunker params {text!r}: ")


def test_params_validate_on_construction_too() -> None:
    with pytest.raises(ChunkerParamsError, match="unknown algorithm"):
        ChunkerParams("buzhash", 19, 23, 21)
    with pytest.raises(ChunkerParamsError, match="negative"):
        ChunkerParams.fixed(4096, -1)


@given(params=cdc_params(max_exp_limit=23))
def test_params_round_trip_through_their_string(params: ChunkerParams) -> None:
    assert ChunkerParams.parse(str(params)) == params
