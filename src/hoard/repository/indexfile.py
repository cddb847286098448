"""Index files: which pack holds which blob.

An index file ``index/<sha256hex>`` covers the packs one flush wrote (or, after
a rebuild or compaction, many packs) and may name older index files it
supersedes. The byte layout is in docs/design/repository-format.md, "Index
files"; entries are fixed-size and sorted by id so numpy parses them in one
call. The name is the SHA-256 of the content, which is the checksum.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hoard.errors import IntegrityError
from hoard.repository.indexnames import index_path
from hoard.repository.pack import PackEntry

INDEX_MAGIC = b"HOARDIX\x01"
HEADER = struct.Struct("<8sIIQ")  # magic, n_packs, n_superseded, n_entries
NAME_SIZE = 32
ENTRY_DTYPE = np.dtype(
    [
        ("key0", ">u8"),  # id bytes 0..7: big-endian, so numeric order is byte order
        ("rest", "V24"),  # id bytes 8..31
        ("pack", "<u4"),
        ("offset", "<u4"),
        ("length", "<u4"),
        ("type", "u1"),
        ("pad", "V3"),
    ]
)
ENTRY_SIZE = ENTRY_DTYPE.itemsize  # 48

Entries = npt.NDArray[np.void]


def sort_entries(entries: Entries) -> Entries:
    """Entries sorted by full id (bytes order), first occurrence of an id kept."""
    if len(entries) == 0:
        return entries
    words = entries["rest"].copy().view(">u8").reshape(-1, 3)
    order = np.lexsort((words[:, 2], words[:, 1], words[:, 0], entries["key0"]))
    ordered = entries[order]
    same = np.zeros(len(ordered), dtype=bool)
    same[1:] = (ordered["key0"][1:] == ordered["key0"][:-1]) & (
        ordered["rest"][1:] == ordered["rest"][:-1]
    )
    return ordered[~same]


def entries_from_packs(packs: Sequence[Sequence[PackEntry]]) -> Entries:
    """Index entries for packs numbered 0..len(packs)-1 (unsorted)."""
    total = sum(len(p) for p in packs)
    entries = np.zeros(total, dtype=ENTRY_DTYPE)
    if total == 0:
        return entries
    ids = b"".join(e.id for p in packs for e in p)
    id_view = np.frombuffer(ids, dtype=[("key0", ">u8"), ("rest", "V24")])
    entries["key0"] = id_view["key0"]
    entries["rest"] = id_view["rest"]
    entries["pack"] = np.repeat(np.arange(len(packs), dtype=np.uint32), [len(p) for p in packs])
    entries["offset"] = [e.offset for p in packs for e in p]
    entries["length"] = [e.length for p in packs for e in p]
    entries["type"] = [e.type for p in packs for e in p]
    return entries


@dataclass(frozen=True)
class IndexFile:
    """Decoded index file. ``packs`` are raw 32-byte pack names (entry field
    ``pack`` indexes this list), ``superseded`` hex names of index files this
    one replaces, ``entries`` an ENTRY_DTYPE array sorted by id."""

    packs: list[bytes]
    entries: Entries
    superseded: list[str] = field(default_factory=list)

    @classmethod
    def from_packs(
        cls, packs: Sequence[tuple[bytes, Sequence[PackEntry]]], superseded: Iterable[str] = ()
    ) -> IndexFile:
        """Index covering ``packs`` (raw name, entries); an id present in
        several packs is indexed at its first occurrence."""
        entries = entries_from_packs([p[1] for p in packs])
        return cls([p[0] for p in packs], sort_entries(entries), sorted(superseded))

    def encode(self) -> tuple[str, bytes]:
        """The hex name and the bytes of this index file."""
        parts = [
            HEADER.pack(INDEX_MAGIC, len(self.packs), len(self.superseded), len(self.entries)),
            *self.packs,
            *(bytes.fromhex(s) for s in self.superseded),
            self.entries.tobytes(),
        ]
        data = b"".join(parts)
        return hashlib.sha256(data).hexdigest(), data

    def ids(self) -> list[bytes]:
        """The ids of the entries, in entry order."""
        raw = self.entries[["key0", "rest"]].astype([("key0", ">u8"), ("rest", "V24")]).tobytes()
        return [raw[i : i + 32] for i in range(0, len(raw), 32)]

    @classmethod
    def decode(cls, name: str, data: bytes) -> IndexFile:
        """Parse and verify index file ``name``.

        Raises IntegrityError naming the index file if its content does not
        hash to its name or its structure is inconsistent.
        """
        if hashlib.sha256(data).hexdigest() != name:
            raise IntegrityError(f"index file {index_path(name)}: content does not match its name")
        try:
            return cls._parse(data)
        except ValueError as exc:
            raise IntegrityError(f"index file {index_path(name)}: {exc}") from None

    @classmethod
    def _parse(cls, data: bytes) -> IndexFile:
        if len(data) < HEADER.size:
            raise ValueError("truncated header")
        magic, n_packs, n_superseded, n_entries = HEADER.unpack_from(data)
        if magic != INDEX_MAGIC:
            raise ValueError("bad magic")
        names_end = HEADER.size + NAME_SIZE * (n_packs + n_superseded)
        if len(data) != names_end + ENTRY_SIZE * n_entries:
            raise ValueError("size does not match the counts in the header")
        names = [data[i : i + NAME_SIZE] for i in range(HEADER.size, names_end, NAME_SIZE)]
        entries = np.frombuffer(data, dtype=ENTRY_DTYPE, offset=names_end, count=n_entries)
        _check_entries(entries, n_packs)
        return cls(names[:n_packs], entries, [n.hex() for n in names[n_packs:]])


def _check_entries(entries: Entries, n_packs: int) -> None:
    if len(entries) and int(entries["pack"].max()) >= n_packs:
        raise ValueError("entry refers to a pack number beyond the pack table")
    key0 = entries["key0"]
    if np.any(key0[1:] < key0[:-1]):
        raise ValueError("entries are not sorted by id")
    # Equal first words are rare (random ids): compare the rest one by one.
    for i in np.flatnonzero(key0[1:] == key0[:-1]):
        if entries["rest"][i].tobytes() >= entries["rest"][i + 1].tobytes():
            raise ValueError("entries are not sorted by id or not unique")
