"""Pure-Python twin of the native scan in ``_chunker.c``.

It cuts at exactly the offsets the C scan cuts at (the property tests in
``tests/unit/archive/test_chunker.py`` run both on the same input); it exists
so that hoard works, slowly, where no compiler was available, and so that the
algorithm of ``docs/design/chunking.md`` can be read in Python. It runs at a
few MB/s and holds the GIL. Keep the two files in step: chunk boundaries are
part of the repository format.
"""

from __future__ import annotations

import struct

GEAR_TABLE_BYTES = 2048
WINDOW = 64
_U64 = (1 << 64) - 1
_GEAR_FORMAT = struct.Struct("<256Q")


def find_cuts(
    data: bytes | memoryview,
    gear_table: bytes,
    sizes: tuple[int, int, int],
    masks: tuple[int, int],
    *,
    carry: int = 0,
    history: bytes | memoryview = b"",
    final: bool = False,
) -> list[int]:
    """Return the end offsets in ``data`` of its chunks (same contract as the C scan).

    ``sizes`` is ``(min_size, avg_size, max_size)``, ``masks`` is
    ``(mask_s, mask_l)``. The first chunk began ``carry`` bytes before
    ``data``; lengths ``<= carry`` of it were tested before, and ``history``
    holds its last ``min(63, carry)`` bytes. Without ``final`` the uncut tail
    is left to the caller; with ``final`` it is the last chunk. Raises
    ``ValueError`` (sizes, table, carry, history) and ``OverflowError``
    (masks) where the C scan does.
    """
    _check(gear_table, sizes, carry, len(history))
    gear = _GEAR_FORMAT.unpack(gear_table)
    params = (*sizes, *_u64_masks(masks))
    view = memoryview(data).cast("B")
    cuts: list[int] = []
    pos = 0
    while pos < len(view) or carry:
        # The chunk as the hash sees it: carried history, then the data from pos.
        chunk = _Chunk(bytes(history), carry, view[pos:])
        cut = _next_cut(gear, params, chunk)
        if cut == 0:
            if not final:
                break
            cut = carry + len(view) - pos
        pos += cut - carry
        cuts.append(pos)
        carry, history = 0, b""
    return cuts


class _Chunk:
    """A chunk as the hash sees it: ``carry`` bytes (ending in ``history``), then ``data``."""

    def __init__(self, history: bytes, carry: int, data: memoryview) -> None:
        self.history = history
        self.carry = carry
        self.data = data

    def window(self, start: int, end: int) -> bytes:
        """Chunk bytes ``[start, end)``; ``start >= carry - len(history)``."""
        carried = b""
        if start < self.carry:
            carried = self.history[len(self.history) - self.carry + start :][: end - start]
        data = self.data[max(start - self.carry, 0) : max(end - self.carry, 0)]
        return carried + bytes(data)


def _check(gear_table: bytes, sizes: tuple[int, int, int], carry: int, history_len: int) -> None:
    min_size, avg_size, max_size = sizes
    if not WINDOW <= min_size <= avg_size <= max_size:
        raise ValueError(
            f"need 64 <= min_size <= avg_size <= max_size, got {min_size}, {avg_size}, {max_size}"
        )
    if not 0 <= carry < max_size:
        raise ValueError(f"need 0 <= carry < max_size, got carry {carry}")
    want = min(carry, WINDOW - 1)
    if history_len != want:
        raise ValueError(f"history must be the last {want} carried bytes, got {history_len} bytes")
    if len(gear_table) != GEAR_TABLE_BYTES:
        raise ValueError(f"gear_table must be {GEAR_TABLE_BYTES} bytes, got {len(gear_table)}")


def _u64_masks(masks: tuple[int, int]) -> tuple[int, int]:
    """The masks as the C scan sees them: ``OverflowError`` outside 0 .. 2**64 - 1."""
    for mask in masks:
        if not 0 <= mask <= _U64:
            raise OverflowError(f"mask {mask:#x} does not fit in 64 bits")
    return masks


def _next_cut(gear: tuple[int, ...], params: tuple[int, int, int, int, int], chunk: _Chunk) -> int:
    """Length of the chunk, or 0 if the bytes seen do not decide it yet."""
    min_size, avg_size, max_size, mask_s, mask_l = params
    limit = min(chunk.carry + len(chunk.data), max_size)
    n = max(min_size, chunk.carry + 1)
    if n > limit:
        return limit if limit == max_size else 0
    h = 0
    for byte in chunk.window(n - WINDOW, n - 1):
        h = ((h << 1) + gear[byte]) & _U64
    for end, mask in ((min(avg_size - 1, limit), mask_s), (limit, mask_l)):
        for byte in chunk.window(n - 1, end):
            h = ((h << 1) + gear[byte]) & _U64
            if not h & mask:
                return n
            n += 1
    return limit if limit == max_size else 0
