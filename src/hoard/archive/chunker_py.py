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
    skip: int = 0,
    final: bool = False,
) -> list[int]:
    """Return the end offsets of the chunks of ``data`` (same contract as the C scan).

    ``sizes`` is ``(min_size, avg_size, max_size)``, ``masks`` is
    ``(mask_s, mask_l)``. A chunk starts at offset 0; lengths ``<= skip`` of the first chunk are
    known not to be cuts. Without ``final`` the uncut tail is left to the
    caller; with ``final`` it is the last chunk. Raises ``ValueError`` for
    sizes or a table the C scan would refuse too.
    """
    min_size, avg_size, max_size = sizes
    _check(gear_table, min_size, avg_size, max_size, skip)
    gear = _GEAR_FORMAT.unpack(gear_table)
    scan_params = (min_size, avg_size, max_size, *_u64_masks(masks))
    view = memoryview(data).cast("B")
    cuts: list[int] = []
    pos = 0
    while pos < len(view):
        cut = _next_cut(gear, scan_params, view[pos:], skip)
        skip = 0
        if cut == 0:
            if not final:
                break
            cut = len(view) - pos
        pos += cut
        cuts.append(pos)
    return cuts


def _check(gear_table: bytes, min_size: int, avg_size: int, max_size: int, skip: int) -> None:
    if len(gear_table) != GEAR_TABLE_BYTES:
        raise ValueError(f"gear_table must be {GEAR_TABLE_BYTES} bytes, got {len(gear_table)}")
    if not WINDOW <= min_size <= avg_size <= max_size:
        raise ValueError(
            f"need 64 <= min_size <= avg_size <= max_size, got {min_size}, {avg_size}, {max_size}"
        )
    if skip < 0:
        raise ValueError("skip must not be negative")


def _u64_masks(masks: tuple[int, int]) -> tuple[int, int]:
    """The masks as the C scan sees them: ``OverflowError`` outside 0 .. 2**64 - 1."""
    for mask in masks:
        if not 0 <= mask <= _U64:
            raise OverflowError(f"mask {mask:#x} does not fit in 64 bits")
    return masks


def _next_cut(
    gear: tuple[int, ...],
    sizes: tuple[int, int, int, int, int],
    p: memoryview,
    skip: int,
) -> int:
    """Length of the chunk starting at ``p[0]``, or 0 if ``p`` does not decide it yet."""
    min_size, avg_size, max_size, mask_s, mask_l = sizes
    limit = min(len(p), max_size)
    n = max(min_size, skip + 1)
    if n > limit:
        return limit if limit == max_size else 0
    h = 0
    for byte in p[n - WINDOW : n - 1]:
        h = ((h << 1) + gear[byte]) & _U64
    for end, mask in ((min(avg_size - 1, limit), mask_s), (limit, mask_l)):
        for byte in p[n - 1 : end]:
            h = ((h << 1) + gear[byte]) & _U64
            if not h & mask:
                return n
            n += 1
    return limit if limit == max_size else 0
