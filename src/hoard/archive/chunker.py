"""Chunkers: keyed content-defined chunking (FastCDC) and fixed-size blocks.

A chunker turns a file's fragments (``fileread.read_fragments``, or any
iterable of byte strings) into chunks. The content-defined chunker cuts where
a gear hash of the last 64 bytes, computed with a table derived from the
repository's secret chunker key, has certain bits zero; so the same content
gives the same chunks wherever it sits in a file (deduplication), and chunk
sizes do not tell an observer without the key which known content was stored.

The algorithm is defined in ``docs/design/chunking.md`` and is part of the
repository format: changing where chunks are cut breaks deduplication
against every existing backup. The scan itself exists twice, in C
(``_chunker.c``, releases the GIL) and in Python (``chunker_py.py``); the
streaming around it, here, is shared, so the two differ only in the scan.

All-zero data is reported as ZERO chunks and holes as HOLE chunks, so that
callers store nothing for them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import blake3

from hoard.archive import chunker_py
from hoard.archive.fileread import Fragment, FragmentKind, as_fragments
from hoard.errors import ChunkerParamsError

KiB = 1024
MiB = 1024 * KiB

CHUNKER_KEY_BYTES = 32
GEAR_TABLE_BYTES = 2048
GEAR_CONTEXT = b"hoard gear table v1"
# Mask bits are spread over the top MASK_SPAN bits of the 64-bit hash: a low
# bit of a gear hash depends on the last few bytes only, bit k on k + 1 bytes.
MASK_SPAN = 48
# Normalized chunking level: the mask before the target size has this many
# more one-bits than MASK_BITS, the mask after it this many fewer.
NORMALIZATION = 2
MIN_EXP_LIMIT = 6  # 2**6 = 64 B, also the hash window: the scan needs min_size >= 64
MAX_EXP_LIMIT = 23  # 2**23 = 8 MiB
MIN_BLOCK_SIZE = 64
# Borg's MAX_DATA_SIZE: the largest chunk (fixed block or header) accepted.
MAX_CHUNK_SIZE = 20971478
# Reads smaller than this are collected (joined) before a scan, so that tiny
# reads do not cost a scan call each; larger reads are scanned as they come.
DEFAULT_SCAN_STEP = 4 * MiB

FragmentSource = Iterable[Fragment | bytes | bytearray | memoryview]

_NUMBER = re.compile(r"[0-9]+")
_MAX_DIGITS = 12
_SYNTAX = (
    "expected fastcdc,MIN_EXP,MAX_EXP,MASK_BITS[,WINDOW], "
    "buzhash,MIN_EXP,MAX_EXP,MASK_BITS,WINDOW, MIN_EXP,MAX_EXP,MASK_BITS,WINDOW, "
    "fixed,BLOCK_SIZE[,HEADER_SIZE] or default"
)


class ChunkKind(enum.Enum):
    """DATA: bytes to store; ZERO: all-zero bytes that were read; HOLE: a hole, never read."""

    DATA = "data"
    ZERO = "zero"
    HOLE = "hole"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk in file order.

    ``data`` is set for DATA chunks only: bytes, or a read-only memoryview
    into an immutable buffer (it keeps that buffer alive; ``bytes(data)``
    detaches it). ZERO and HOLE chunks are ``size`` zero bytes and carry no
    data, so that nothing is stored for them.
    """

    data: bytes | memoryview | None
    size: int
    kind: ChunkKind


@dataclass(frozen=True)
class ChunkerParams:
    """Which chunker to use and its sizes, as given by ``--chunker-params``.

    ``algorithm`` is ``"fastcdc"`` (with ``min_exp``, ``max_exp``,
    ``mask_bits``: sizes are powers of two) or ``"fixed"`` (with
    ``block_size`` and ``header_size`` in bytes); the other fields are 0.
    Construction validates and raises ``ChunkerParamsError``. ``str()``
    gives the canonical form, which ``parse`` reads back to an equal value.
    """

    algorithm: str
    min_exp: int = 0
    max_exp: int = 0
    mask_bits: int = 0
    block_size: int = 0
    header_size: int = 0

    @classmethod
    def fastcdc(cls, min_exp: int, max_exp: int, mask_bits: int) -> ChunkerParams:
        """Keyed FastCDC with chunks of 2**min_exp to 2**max_exp bytes, target 2**mask_bits."""
        return cls("fastcdc", min_exp=min_exp, max_exp=max_exp, mask_bits=mask_bits)

    @classmethod
    def fixed(cls, block_size: int, header_size: int = 0) -> ChunkerParams:
        """Blocks of ``block_size`` bytes after an optional header chunk of ``header_size``."""
        return cls("fixed", block_size=block_size, header_size=header_size)

    @classmethod
    def parse(cls, text: str) -> ChunkerParams:
        """Parse Borg-style chunker params; raise ``ChunkerParamsError`` saying what is wrong.

        Accepted: ``default``; ``fastcdc,MIN_EXP,MAX_EXP,MASK_BITS[,WINDOW]``;
        ``buzhash,MIN_EXP,MAX_EXP,MASK_BITS,WINDOW`` and the legacy
        ``MIN_EXP,MAX_EXP,MASK_BITS,WINDOW`` (both mean keyed FastCDC with
        those sizes; WINDOW is checked to be a number and otherwise ignored);
        ``fixed,BLOCK_SIZE[,HEADER_SIZE]``.
        """
        fields = [field.strip() for field in text.strip().split(",")]
        name = fields[0].lower()
        try:
            if name == "default" and len(fields) == 1:
                return DEFAULT_CHUNKER_PARAMS
            if name == "fixed" and len(fields) in (2, 3):
                return cls.fixed(*_numbers(fields[1:]))
            if (name == "fastcdc" and len(fields) in (4, 5)) or (
                name == "buzhash" and len(fields) == 5
            ):
                return cls.fastcdc(*_numbers(fields[1:])[:3])
            if len(fields) == 4 and _NUMBER.fullmatch(name):
                return cls.fastcdc(*_numbers(fields)[:3])
        except ChunkerParamsError as exc:
            raise ChunkerParamsError(text, exc.args[1]) from None
        raise ChunkerParamsError(text, _SYNTAX)

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ChunkerParamsError(str(self), problem)

    def _problem(self) -> str | None:
        if self.algorithm == "fastcdc":
            return _cdc_problem(self.min_exp, self.max_exp, self.mask_bits)
        if self.algorithm == "fixed":
            return _fixed_problem(self.block_size, self.header_size)
        return f"unknown algorithm {self.algorithm!r}, expected fastcdc or fixed"

    @property
    def min_size(self) -> int:
        """Smallest chunk in bytes (the last chunk of a file, or one before a hole, may be less)."""
        return 1 << self.min_exp if self.algorithm == "fastcdc" else self.block_size

    @property
    def avg_size(self) -> int:
        """Target size in bytes where normalization switches masks (FastCDC's NormalSize)."""
        return 1 << self.mask_bits if self.algorithm == "fastcdc" else self.block_size

    @property
    def max_size(self) -> int:
        """Largest chunk in bytes."""
        if self.algorithm == "fastcdc":
            return 1 << self.max_exp
        return max(self.block_size, self.header_size)

    def __str__(self) -> str:
        if self.algorithm == "fixed":
            return f"fixed,{self.block_size},{self.header_size}"
        return f"{self.algorithm},{self.min_exp},{self.max_exp},{self.mask_bits}"


def _numbers(fields: list[str]) -> list[int]:
    for field in fields:
        if not _NUMBER.fullmatch(field):
            raise ChunkerParamsError("", f"{field!r} is not a non-negative whole number")
        if len(field) > _MAX_DIGITS:
            raise ChunkerParamsError("", f"{field} is far too large")
    return [int(field) for field in fields]


def _cdc_problem(min_exp: int, max_exp: int, mask_bits: int) -> str | None:
    if min_exp < MIN_EXP_LIMIT:
        return f"min. chunk size exponent {min_exp} is less than {MIN_EXP_LIMIT} (64 B)"
    if max_exp > MAX_EXP_LIMIT:
        return f"max. chunk size exponent {max_exp} is more than {MAX_EXP_LIMIT} (8 MiB)"
    if not min_exp <= mask_bits <= max_exp:
        return (
            f"required: MIN_EXP <= MASK_BITS <= MAX_EXP, "
            f"got {min_exp}, {mask_bits} (mask bits), {max_exp}"
        )
    return None


def _fixed_problem(block_size: int, header_size: int) -> str | None:
    if block_size < MIN_BLOCK_SIZE:
        return f"block size {block_size} is less than {MIN_BLOCK_SIZE} bytes"
    if block_size > MAX_CHUNK_SIZE or header_size > MAX_CHUNK_SIZE:
        return f"block size and header size must not exceed {MAX_CHUNK_SIZE} bytes"
    if header_size < 0:
        return f"header size {header_size} is negative"
    return None


DEFAULT_CHUNKER_PARAMS = ChunkerParams.fastcdc(19, 23, 20)
"""512 KiB to 8 MiB, target 1 MiB (restic's sizes): half the new data of Borg's
2 MiB target after a small change, for twice the index entries of large files
(docs/design/chunking.md, "Choosing the default")."""


def gear_table(chunker_key: bytes) -> bytes:
    """The 2048-byte gear table (256 little-endian uint64) derived from the chunker key.

    Raises ``ValueError`` unless the key is 32 bytes: a wrong length is a
    bug in the caller, not a user error.
    """
    if len(chunker_key) != CHUNKER_KEY_BYTES:
        raise ValueError(f"chunker key must be {CHUNKER_KEY_BYTES} bytes, got {len(chunker_key)}")
    table: bytes = blake3.blake3(GEAR_CONTEXT, key=chunker_key).digest(length=GEAR_TABLE_BYTES)
    return table


def spread_mask(ones: int) -> int:
    """A 64-bit mask with ``ones`` one-bits at 63 - floor(i * 48 / ones), i = 0 .. ones - 1.

    The bits sit in the upper 48 bits of the hash, spread evenly, the top
    bit always set: each one then depends on at least 17 input bytes, and the
    cut decision on the full 64-byte window.
    """
    if not 1 <= ones <= MASK_SPAN:
        raise ValueError(f"a mask needs 1 to {MASK_SPAN} one-bits, got {ones}")
    mask = 0
    for i in range(ones):
        mask |= 1 << (63 - i * MASK_SPAN // ones)
    return mask


def cdc_masks(mask_bits: int) -> tuple[int, int]:
    """(mask_s, mask_l): the masks in force below and from the target size on."""
    return spread_mask(mask_bits + NORMALIZATION), spread_mask(mask_bits - NORMALIZATION)


class ScanFunction(Protocol):
    """The scan both ``_chunker.find_cuts`` and ``chunker_py.find_cuts`` implement."""

    def __call__(
        self,
        data: bytes | memoryview,
        gear_table: bytes,
        sizes: tuple[int, int, int],
        masks: tuple[int, int],
        *,
        carry: int = 0,
        history: bytes | memoryview = b"",
        final: bool = False,
    ) -> list[int]: ...


class Chunker(Protocol):
    """What ``make_chunker`` returns; instances are immutable and thread-safe."""

    params: ChunkerParams

    def chunks(self, fragments: FragmentSource) -> Iterator[Chunk]:
        """Cut the stream of fragments into chunks whose sizes add up to the input's."""
        ...


def native_scan() -> ScanFunction | None:
    """The C scan, or None when the extension was not built."""
    try:
        from hoard.archive._chunker import find_cuts  # noqa: PLC0415 - optional extension
    except ImportError:
        return None
    return find_cuts


def make_chunker(
    params: ChunkerParams, chunker_key: bytes, *, native: bool | None = None
) -> Chunker:
    """The chunker for ``params``, keyed with the repository's 32-byte chunker key.

    ``native``: None uses the C scan when it is built and the Python twin
    otherwise; True requires the C scan (``ImportError`` without it); False
    forces the twin. The fixed chunker has no scan (and no key: fixed
    boundaries are public by nature).
    """
    if params.algorithm == "fixed":
        return FixedChunker(params)
    return CdcChunker(params, chunker_key, native=native)


class CdcChunker:
    """Keyed FastCDC. Stateless between ``chunks`` calls, so one instance serves many threads."""

    def __init__(
        self,
        params: ChunkerParams,
        chunker_key: bytes,
        *,
        native: bool | None = None,
        scan_step: int = DEFAULT_SCAN_STEP,
    ) -> None:
        if params.algorithm != "fastcdc":
            raise ValueError(f"CdcChunker needs fastcdc params, got {params}")
        if scan_step <= 0:
            raise ValueError(f"scan_step must be positive, got {scan_step}")
        self.params = params
        self.scan_step = scan_step
        self._table = gear_table(chunker_key)
        self._sizes = (params.min_size, params.avg_size, params.max_size)
        self._masks = cdc_masks(params.mask_bits)
        self._scan = _choose_scan(native)
        self.native = self._scan is not chunker_py.find_cuts

    def find_cuts(
        self,
        data: bytes | memoryview,
        *,
        carry: int = 0,
        history: bytes | memoryview = b"",
        final: bool = False,
    ) -> list[int]:
        """End offsets of the chunks of ``data``; see ``_chunker.find_cuts`` for the contract."""
        return self._scan(
            data, self._table, self._sizes, self._masks, carry=carry, history=history, final=final
        )

    def chunks(self, fragments: FragmentSource) -> Iterator[Chunk]:
        """Cut ``fragments`` into chunks; a hole ends the chunk before it and becomes HOLE chunks.

        Boundaries depend only on the content and the holes, never on how
        the data was split into fragments.
        """
        stream = _CdcStream(self)
        for fragment in as_fragments(fragments):
            if fragment.kind is FragmentKind.HOLE:
                yield from stream.hole(fragment.size)
            else:
                assert fragment.data is not None
                yield from stream.data(fragment.data)
        yield from stream.finish()


def _choose_scan(native: bool | None) -> ScanFunction:
    if native is False:
        return chunker_py.find_cuts
    scan = native_scan()
    if scan is not None:
        return scan
    if native:
        raise ImportError("the native chunker hoard.archive._chunker is not built")
    return chunker_py.find_cuts


class _CdcStream:
    """The state of one ``CdcChunker.chunks`` call.

    ``_carried`` holds the bytes after the last cut, already scanned: no
    length up to ``_carry`` ends their chunk. ``_new`` holds data not yet
    scanned. Each byte is scanned once, and only chunks that span buffers are
    copied (joined); the others are views of the buffer they lie in.
    Consecutive holes are merged so that hole chunks too do not depend on
    how the input was split.
    """

    def __init__(self, chunker: CdcChunker) -> None:
        self._chunker = chunker
        self._carried: list[bytes | memoryview] = []
        self._carry = 0
        self._new: list[bytes] = []
        self._new_length = 0
        self._hole = 0

    def data(self, data: bytes) -> Iterator[Chunk]:
        yield from self._end_hole()
        self._new.append(data)
        self._new_length += len(data)
        if self._new_length >= self._chunker.scan_step:
            yield from self._cut(final=False)

    def hole(self, size: int) -> Iterator[Chunk]:
        yield from self._cut(final=True)
        self._hole += size

    def finish(self) -> Iterator[Chunk]:
        yield from self._cut(final=True)
        yield from self._end_hole()

    def _end_hole(self) -> Iterator[Chunk]:
        max_size = self._chunker.params.max_size
        while self._hole:
            size = min(self._hole, max_size)
            self._hole -= size
            yield Chunk(None, size, ChunkKind.HOLE)

    def _cut(self, *, final: bool) -> Iterator[Chunk]:
        if not self._new_length and not self._carry:
            return
        buf = self._new[0] if len(self._new) == 1 else b"".join(self._new)
        self._new, self._new_length = [], 0
        cuts = self._chunker.find_cuts(buf, carry=self._carry, history=self._history(), final=final)
        view = memoryview(buf)
        start = 0
        for end in cuts:
            piece: bytes | memoryview
            if self._carry:
                piece = b"".join([*self._carried, view[:end]])
                self._carried, self._carry = [], 0
            else:
                piece = buf if end - start == len(buf) else view[start:end]
            yield data_chunk(piece)
            start = end
        if start < len(buf):
            self._carried.append(view[start:])
            self._carry += len(buf) - start

    def _history(self) -> bytes:
        """The last ``min(63, carry)`` carried bytes: the hash window reaches back into them."""
        want = min(self._carry, chunker_py.WINDOW - 1)
        parts: list[bytes | memoryview] = []
        for piece in reversed(self._carried):
            if want <= 0:
                break
            parts.append(piece[max(len(piece) - want, 0) :])
            want -= len(parts[-1])
        return b"".join(reversed(parts))


class FixedChunker:
    """Fixed-size blocks on a grid of file offsets: header, then ``block_size`` blocks.

    A block that lies wholly in a hole is a HOLE chunk; a block partly in a
    hole is its data with the hole part as zeros. Stateless between calls.
    """

    def __init__(self, params: ChunkerParams) -> None:
        if params.algorithm != "fixed":
            raise ValueError(f"FixedChunker needs fixed params, got {params}")
        self.params = params

    def chunks(self, fragments: FragmentSource) -> Iterator[Chunk]:
        """Cut ``fragments`` into blocks; the last block may be short."""
        stream = _FixedStream(self.params)
        for fragment in as_fragments(fragments):
            if fragment.kind is FragmentKind.HOLE:
                yield from stream.hole(fragment.size)
            else:
                assert fragment.data is not None
                yield from stream.data(fragment.data)
        yield from stream.finish()


class _FixedStream:
    """The state of one ``FixedChunker.chunks`` call: the block being filled.

    ``_pieces`` are views of data, or ints standing for that many hole
    bytes; ``_read`` says whether any of the block was data.
    """

    def __init__(self, params: ChunkerParams) -> None:
        self._block_size = params.block_size
        self._block = params.header_size or params.block_size
        self._pieces: list[memoryview | int] = []
        self._filled = 0
        self._read = False

    def data(self, data: bytes) -> Iterator[Chunk]:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            take = min(self._block - self._filled, len(view) - pos)
            if take == self._block:
                yield data_chunk(data if take == len(view) else view[pos : pos + take])
                self._next_block()
            else:
                self._read = True
                yield from self._add(view[pos : pos + take], take)
            pos += take

    def hole(self, size: int) -> Iterator[Chunk]:
        while size:
            take = min(self._block - self._filled, size)
            size -= take
            if take == self._block:
                yield Chunk(None, take, ChunkKind.HOLE)
                self._next_block()
            else:
                yield from self._add(take, take)

    def finish(self) -> Iterator[Chunk]:
        if self._filled:
            yield self._emit()

    def _add(self, piece: memoryview | int, size: int) -> Iterator[Chunk]:
        self._pieces.append(piece)
        self._filled += size
        if self._filled == self._block:
            yield self._emit()

    def _emit(self) -> Chunk:
        if not self._read:
            chunk = Chunk(None, self._filled, ChunkKind.HOLE)
        else:
            zeros = zero_buffer(self._filled)
            parts = [zeros[:p] if isinstance(p, int) else p for p in self._pieces]
            chunk = data_chunk(b"".join(parts))
        self._next_block()
        return chunk

    def _next_block(self) -> None:
        self._block = self._block_size
        self._pieces = []
        self._filled = 0
        self._read = False


_zeros = b""


def zero_buffer(size: int) -> bytes:
    """Shared all-zero bytes of at least ``size`` (allocated by calloc: costs no RAM unwritten)."""
    global _zeros
    zeros = _zeros
    if len(zeros) < size:
        zeros = _zeros = bytes(max(size, 1 << MAX_EXP_LIMIT))
    return zeros


def data_chunk(data: bytes | memoryview) -> Chunk:
    """A DATA chunk of ``data``, or a ZERO chunk without data if it is all zeros.

    ``bytes.startswith`` with a buffer is a memcmp that stops at the first
    non-zero byte, so random data costs almost nothing to check.
    """
    if zero_buffer(len(data)).startswith(data):
        return Chunk(None, len(data), ChunkKind.ZERO)
    return Chunk(data, len(data), ChunkKind.DATA)
