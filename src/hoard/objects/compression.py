"""Compression registry: one small class per algorithm, keyed by a header byte.

A compressed blob is ``header(1) | payload``. The header byte names the
algorithm that produced the payload, so every object says how to decompress
itself and the compression setting may change between runs (kopia style).
The byte values are part of the repository format (docs/design/compression.md):

    0x00 none   0x01 lz4   0x02 zstd   0x03 zlib   0x04 lzma

``parse_compression`` accepts Borg 1.x's ``--compression`` syntax. Every
function here is thread-safe: zstandard contexts are kept per thread because
sharing one ``ZstdCompressor`` between threads crashes the interpreter.
"""

from __future__ import annotations

import lzma
import threading
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import lz4.block
import zstandard

from hoard.errors import CompressionSpecError, IntegrityError
from hoard.objects.types import Buffer

AUTO = "auto"


class Compressor(ABC):
    """One algorithm. Subclasses register themselves with :func:`register`."""

    header: ClassVar[int]
    name: ClassVar[str]
    levels: ClassVar[range | None] = None
    """Accepted levels; None when the algorithm takes no level."""
    default_level: ClassVar[int | None] = None

    @abstractmethod
    def compress(self, data: Buffer, level: int | None) -> bytes:
        """Return the payload for ``data`` (without the header byte)."""

    @abstractmethod
    def decompress(self, payload: Buffer) -> bytes:
        """Return the original bytes; library errors propagate to the caller."""


_BY_HEADER: dict[int, Compressor] = {}
_BY_NAME: dict[str, Compressor] = {}


def register(cls: type[Compressor]) -> type[Compressor]:
    """Class decorator: make ``cls`` known by its header byte and its name."""
    if cls.header in _BY_HEADER or cls.name in _BY_NAME:
        raise ValueError(f"compressor {cls.name} / {cls.header:#04x} registered twice")
    instance = cls()
    _BY_HEADER[cls.header] = instance
    _BY_NAME[cls.name] = instance
    return cls


@register
class NoCompression(Compressor):
    """Stored as is: for incompressible data and ``none``."""

    header = 0x00
    name = "none"

    def compress(self, data: Buffer, level: int | None) -> bytes:
        return bytes(data)

    def decompress(self, payload: Buffer) -> bytes:
        return bytes(payload)


@register
class Lz4(Compressor):
    """LZ4 block format with the uncompressed size stored (4 bytes, little endian)."""

    header = 0x01
    name = "lz4"

    def compress(self, data: Buffer, level: int | None) -> bytes:
        result: bytes = lz4.block.compress(data, store_size=True)
        return result

    def decompress(self, payload: Buffer) -> bytes:
        result: bytes = lz4.block.decompress(payload)
        return result


class _ZstdContexts(threading.local):
    """Per-thread zstandard contexts: one shared context crashes under threads."""

    def __init__(self) -> None:
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}
        self.decompressor = zstandard.ZstdDecompressor()


@register
class Zstd(Compressor):
    """Zstandard frames with the content size in the frame header."""

    header = 0x02
    name = "zstd"
    levels = range(1, 23)
    default_level = 3

    def __init__(self) -> None:
        self._contexts = _ZstdContexts()

    def compress(self, data: Buffer, level: int | None) -> bytes:
        level = self.default_level if level is None else level
        compressors = self._contexts.compressors
        compressor = compressors.get(level)
        if compressor is None:
            compressor = compressors[level] = zstandard.ZstdCompressor(level=level)
        result: bytes = compressor.compress(data)
        return result

    def decompress(self, payload: Buffer) -> bytes:
        result: bytes = self._contexts.decompressor.decompress(payload)
        return result


@register
class Zlib(Compressor):
    """zlib (deflate with the zlib header and Adler-32 trailer)."""

    header = 0x03
    name = "zlib"
    levels = range(0, 10)
    default_level = 6

    def compress(self, data: Buffer, level: int | None) -> bytes:
        return zlib.compress(data, self.default_level if level is None else level)

    def decompress(self, payload: Buffer) -> bytes:
        return zlib.decompress(payload)


@register
class Lzma(Compressor):
    """LZMA in the .xz container (CRC-64 check), as Borg 1.x writes it."""

    header = 0x04
    name = "lzma"
    levels = range(0, 10)
    default_level = 6

    def compress(self, data: Buffer, level: int | None) -> bytes:
        return lzma.compress(data, preset=self.default_level if level is None else level)

    def decompress(self, payload: Buffer) -> bytes:
        return lzma.decompress(payload)


@dataclass(frozen=True)
class CompressionSpec:
    """A parsed ``--compression`` value.

    ``name`` is the algorithm used for compressible data; ``auto`` says to
    try lz4 first and to store data that lz4 cannot shrink uncompressed.
    ``str(spec)`` gives back Borg's syntax (with the level made explicit).
    """

    name: str
    level: int | None = None
    auto: bool = False

    def __post_init__(self) -> None:
        compressor = _BY_NAME.get(self.name)
        if compressor is None:
            raise CompressionSpecError(str(self), f"unknown algorithm {self.name!r}")
        valid = self.level is None if compressor.levels is None else self.level in compressor.levels
        if not valid:
            raise CompressionSpecError(str(self), f"{self.name} takes {_level_help(compressor)}")

    def __str__(self) -> str:
        text = self.name if self.level is None else f"{self.name},{self.level}"
        return f"{AUTO},{text}" if self.auto else text


DEFAULT_COMPRESSION = CompressionSpec("zstd", 1)
"""Measured choice; see docs/design/compression.md for the figures."""

_LZ4_TRIAL_RATIO = 0.97
"""auto: data that lz4 cannot shrink below this fraction counts as incompressible (Borg's)."""


def parse_compression(spec: str) -> CompressionSpec:
    """Parse Borg's syntax: ``none``, ``lz4``, ``zstd[,L]``, ``zlib[,L]``, ``lzma[,L]``,
    ``auto,C[,L]``.

    Raises CompressionSpecError naming the spec and what is wrong with it.
    """
    name, _, rest = spec.partition(",")
    if name == AUTO:
        if not rest:
            raise CompressionSpecError(spec, "auto needs an algorithm, e.g. auto,zstd,3")
        inner = _parse_plain(spec, rest)
        return CompressionSpec(inner.name, inner.level, auto=True)
    if name == "obfuscate":
        raise CompressionSpecError(spec, "obfuscate is not supported by hoard")
    return _parse_plain(spec, spec)


def _parse_plain(spec: str, text: str) -> CompressionSpec:
    """Parse ``ALGO[,LEVEL]``; ``spec`` is the whole user input, for the message."""
    parts = text.split(",")
    compressor = _BY_NAME.get(parts[0])
    if compressor is None:
        choices = ", ".join([*_BY_NAME, AUTO])
        raise CompressionSpecError(spec, f"unknown algorithm {parts[0]!r}; choose one of {choices}")
    if len(parts) == 1:
        return CompressionSpec(compressor.name, compressor.default_level)
    if compressor.levels is None or len(parts) > 2:
        raise CompressionSpecError(spec, f"{compressor.name} takes {_level_help(compressor)}")
    try:
        level = int(parts[1])
    except ValueError:
        raise CompressionSpecError(spec, f"level {parts[1]!r} is not a number") from None
    if level not in compressor.levels:
        raise CompressionSpecError(spec, f"{compressor.name} takes {_level_help(compressor)}")
    return CompressionSpec(compressor.name, level)


def _level_help(compressor: Compressor) -> str:
    levels = compressor.levels
    if levels is None:
        return "no level"
    return f"one optional level from {levels.start} to {levels.stop - 1}"


_NONE = _BY_NAME["none"]
_LZ4 = _BY_NAME["lz4"]


def compress(spec: CompressionSpec, data: Buffer) -> bytes:
    """Return ``header | payload`` for ``data``; thread-safe.

    Whatever the spec, the result is never longer than ``1 + len(data)``:
    when compression does not shrink the data it is stored with ``none``
    (the header tells ``decompress`` either way).
    """
    compressor = _BY_NAME[spec.name]
    if spec.auto:
        return _compress_auto(compressor, spec.level, data)
    if compressor is _NONE:
        return _frame(_NONE, data)
    payload = compressor.compress(data, spec.level)
    if len(payload) >= len(data):
        return _frame(_NONE, data)
    return _frame(compressor, payload)


def _compress_auto(compressor: Compressor, level: int | None, data: Buffer) -> bytes:
    """lz4 trial first; only data that lz4 shrinks is given to the chosen algorithm."""
    trial = _LZ4.compress(data, None)
    if len(trial) >= len(data) * _LZ4_TRIAL_RATIO:
        return _frame(_NONE, data)
    if compressor is _LZ4:
        return _frame(_LZ4, trial)
    payload = compressor.compress(data, level)
    if len(payload) >= len(trial):
        return _frame(_LZ4, trial)
    return _frame(compressor, payload)


def _frame(compressor: Compressor, payload: Buffer) -> bytes:
    return bytes((compressor.header,)) + payload


def decompress(blob: Buffer) -> bytes:
    """Return the original bytes of a ``compress`` result; thread-safe.

    An empty blob, an unknown header byte or a payload the algorithm rejects
    raises IntegrityError ("decompression failed: ..."); library exceptions
    never escape.
    """
    view = memoryview(blob)
    if not view:
        raise IntegrityError("decompression failed: empty object")
    compressor = _BY_HEADER.get(view[0])
    if compressor is None:
        raise IntegrityError(f"decompression failed: unknown compression header {view[0]:#04x}")
    try:
        return compressor.decompress(view[1:])
    except Exception as exc:  # each library raises its own types (and ValueError, MemoryError)
        raise IntegrityError(f"decompression failed ({compressor.name}): {exc}") from exc
