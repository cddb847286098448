"""The compact in-memory chunk index: blob id -> (pack, offset, length, type).

A backup consults this map once per chunk, and a repository holds millions of
chunks, so it is a set of numpy columns (45 bytes per entry plus 32 bytes per
pack) instead of a dict of tuples (about 220 bytes per entry):

- the *main* columns are sorted by the first 8 bytes of the id read as a
  big-endian u64 (ids are keyed MACs, so these are uniformly spread); a lookup
  is one ``searchsorted`` plus a compare of the remaining 24 bytes. Ids whose
  first 8 bytes are equal sit next to each other in any order and are scanned.
- single ``add`` calls go to a small dict that is merged into the columns in
  one linear pass once it holds 1/32 of the entries (at least 16384), so the
  cost per add stays constant on average and the dict stays small.

Pack names are kept once per pack in a table; entries hold the pack number.
The same pack may appear twice in the table (index files are merged without
de-duplicating their pack tables); that costs 32 bytes and nothing else.

The saved file (docs/design/repository-format.md, "Chunk index cache") is a
client cache container (``hoard.storage.cachefile``, kind ``chunks``); ``load``
raises IntegrityError on any damage so the caller rebuilds instead of
trusting a broken cache.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from hoard.errors import IntegrityError
from hoard.repository.indexfile import IndexFile
from hoard.storage.cachefile import (
    BodyReader,
    BodyWriter,
    CacheKind,
    CacheUnusableError,
    read_cache,
    write_cache,
)

ID_SIZE = 32
NAME_SIZE = 32
CACHE_KIND = CacheKind("chunks", 1)
_COUNTS = struct.Struct("<QQ")  # n_entries, n_packs
_MIN_MERGE = 16384
_MERGE_FRACTION = 32
_ITER_BATCH = 65536

U64Array = npt.NDArray[np.uint64]
U32Array = npt.NDArray[np.uint32]
U8Array = npt.NDArray[np.uint8]
VoidArray = npt.NDArray[np.void]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """Where a blob lives: pack number (see ``ChunkIndex.pack_name``), offset
    of its header in the pack, blob length (header excluded) and type."""

    pack: int
    offset: int
    length: int
    type: int


@dataclass
class _Columns:
    """Struct-of-arrays entries.

    The index's main columns are never modified in place (an insert builds a
    new object), so a reference taken under the lock stays a valid snapshot.
    A batch being merged belongs to the merge alone and is permuted in place,
    one column at a time, so the merge needs little memory beyond the batch.
    """

    key0: U64Array
    rest: VoidArray
    pack: U32Array
    offset: U32Array
    length: U32Array
    type: U8Array

    @classmethod
    def allocate(cls, n: int) -> _Columns:
        return cls(
            np.zeros(n, np.uint64),
            np.zeros(n, "V24"),
            np.zeros(n, np.uint32),
            np.zeros(n, np.uint32),
            np.zeros(n, np.uint32),
            np.zeros(n, np.uint8),
        )

    @classmethod
    def from_index_files(cls, indexes: Sequence[IndexFile], pack_base: int) -> _Columns:
        """All entries of ``indexes``, pack numbers shifted to follow ``pack_base``
        and each file's pack table in turn."""
        batch = cls.allocate(sum(len(index.entries) for index in indexes))
        start = 0
        for index in indexes:
            e, stop = index.entries, start + len(index.entries)
            batch.key0[start:stop] = e["key0"]
            batch.rest[start:stop] = e["rest"]
            batch.pack[start:stop] = e["pack"]
            batch.pack[start:stop] += np.uint32(pack_base)
            batch.offset[start:stop] = e["offset"]
            batch.length[start:stop] = e["length"]
            batch.type[start:stop] = e["type"]
            start, pack_base = stop, pack_base + len(index.packs)
        return batch

    @classmethod
    def from_dict(cls, items: dict[bytes, tuple[int, int, int, int]]) -> _Columns:
        ids = np.frombuffer(b"".join(items), dtype=[("key0", ">u8"), ("rest", "V24")])
        values = np.array(list(items.values()), dtype=np.uint64).reshape(-1, 4)
        return cls(
            ids["key0"].astype(np.uint64),
            ids["rest"].copy(),
            values[:, 0].astype(np.uint32),
            values[:, 1].astype(np.uint32),
            values[:, 2].astype(np.uint32),
            values[:, 3].astype(np.uint8),
        )

    def __len__(self) -> int:
        return len(self.key0)

    def select(self, which: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> None:
        """Keep (and order) rows by ``which``, in place, column by column."""
        for name in _FIELDS:
            setattr(self, name, getattr(self, name)[which])

    def insert(self, positions: npt.NDArray[np.intp], new: _Columns) -> _Columns:
        """New columns with ``new[i]`` placed before ``self[positions[i]]``."""
        return _Columns(*(np.insert(getattr(self, f), positions, getattr(new, f)) for f in _FIELDS))

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in _FIELDS)

    def id_bytes(self, start: int, stop: int) -> bytes:
        """The ids of rows start..stop concatenated (32 bytes each)."""
        out = np.empty(stop - start, dtype=[("key0", ">u8"), ("rest", "V24")])
        out["key0"] = self.key0[start:stop]
        out["rest"] = self.rest[start:stop]
        return out.tobytes()


class _Search:
    """Lookups in one snapshot of the main columns through memoryviews.

    ``searchsorted`` on a numpy scalar and reading numpy scalars cost about a
    microsecond each, several times what the rest of a lookup costs. Here the
    top ``b`` bits of key0 (``2^b`` between n/4 and n/2) index a table of first
    rows (at most 2 bytes per entry), a ``bisect`` over the 2 to 4 rows of that
    bucket finds key0, and the rest of the id and the length are read from
    memoryviews of the columns (no copy; main columns are never changed in place).
    """

    def __init__(self, main: _Columns) -> None:
        self.main = main
        n = len(main)
        self._n = n
        bits = max(0, n.bit_length() - 2)
        self._shift = 64 - bits
        key0 = np.ascontiguousarray(main.key0, dtype=np.uint64)
        self._key0 = key0.view(np.uint8).data.cast("Q")
        top = key0 >> np.uint64(self._shift) if bits else np.zeros(n, dtype=np.uint64)
        buckets = np.arange((1 << bits) + 1, dtype=np.uint64)
        wide = n >= 1 << 32
        starts = np.searchsorted(top, buckets).astype(np.uint64 if wide else np.uint32)
        self._starts = starts.view(np.uint8).data.cast("Q" if wide else "I")
        self._rest = np.ascontiguousarray(main.rest).view(np.uint8).data
        self._length = np.ascontiguousarray(main.length, dtype=np.uint32).view(np.uint8).data
        self._length = self._length.cast("I")

    def length_of(self, id_: bytes) -> int | None:
        key = int.from_bytes(id_[:8], "big")
        bucket = key >> self._shift
        keys = self._key0
        i = bisect.bisect_left(keys, key, self._starts[bucket], self._starts[bucket + 1])
        rest = id_[8:]
        while i < self._n and keys[i] == key:
            if self._rest[i * 24 : i * 24 + 24] == rest:
                length: int = self._length[i]
                return length
            i += 1
        return None


_FIELDS = ("key0", "rest", "pack", "offset", "length", "type")
_DISK_DTYPES = ("<u8", "V24", "<u4", "<u4", "<u4", "u1")


def _key0(id_: bytes) -> np.uint64:
    # A numpy scalar: searchsorted with a Python int converts the whole array.
    return np.uint64(int.from_bytes(id_[:8], "big"))


def _check_id(id_: bytes) -> None:
    if len(id_) != ID_SIZE:
        raise ValueError(f"blob id must be {ID_SIZE} bytes, not {len(id_)}")


class ChunkIndex:
    """Map blob id -> IndexEntry, plus the pack-name table.

    Thread-safe: every method holds one lock, so concurrent lookups and adds
    from several threads are fine. An id is stored once; adding a known id
    keeps the first entry (any copy of a blob is as good as another).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._main = _Columns.allocate(0)
        self._recent: dict[bytes, tuple[int, int, int, int]] = {}
        self._search: _Search | None = None
        """``length_of``'s view of the main columns, rebuilt once they are replaced."""
        self._packs = bytearray()

    def __len__(self) -> int:
        with self._lock:
            return len(self._main) + len(self._recent)

    @property
    def pack_count(self) -> int:
        """Entries in the pack-name table."""
        return len(self._packs) // NAME_SIZE

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns and the pack table (not the recent dict)."""
        with self._lock:
            return self._main.nbytes + len(self._packs)

    def add_pack(self, name: bytes) -> int:
        """Append a raw 32-byte pack name to the table; return its number."""
        if len(name) != NAME_SIZE:
            raise ValueError(f"pack name must be {NAME_SIZE} bytes")
        with self._lock:
            self._packs += name
            return self.pack_count - 1

    def pack_name(self, pack: int) -> bytes:
        """Raw name of pack number ``pack``; IndexError if out of range."""
        with self._lock:
            if not 0 <= pack < self.pack_count:
                raise IndexError(f"pack number {pack} out of range")
            return bytes(self._packs[pack * NAME_SIZE : (pack + 1) * NAME_SIZE])

    def contains(self, id_: bytes) -> bool:
        """True if ``id_`` is indexed."""
        return self.length_of(id_) is not None

    def length_of(self, id_: bytes) -> int | None:
        """``lookup(id_).length``, or None: what a backup asks for every chunk
        (``Repository.stored_size``), answered without numpy scalars or an entry."""
        _check_id(id_)
        with self._lock:
            hit = self._recent.get(id_)
            if hit is not None:
                return hit[2]
            search = self._search
            if search is None or search.main is not self._main:
                search = self._search = _Search(self._main)
            return search.length_of(id_)

    __contains__ = contains

    def lookup(self, id_: bytes) -> IndexEntry | None:
        """The entry of ``id_``, or None."""
        _check_id(id_)
        with self._lock:
            hit = self._recent.get(id_)
            if hit is not None:
                return IndexEntry(*hit)
            i = self._find(id_)
            if i < 0:
                return None
            m = self._main
            return IndexEntry(int(m.pack[i]), int(m.offset[i]), int(m.length[i]), int(m.type[i]))

    def _find(self, id_: bytes) -> int:
        key = _key0(id_)
        key0 = self._main.key0
        i = int(key0.searchsorted(key))
        rest = id_[8:]
        while i < len(key0) and key0[i] == key:
            if self._main.rest[i].tobytes() == rest:
                return i
            i += 1
        return -1

    def add(self, id_: bytes, pack: int, offset: int, length: int, type_: int) -> bool:
        """Index one blob; False (and no change) if ``id_`` is already known."""
        _check_id(id_)
        if not 0 <= pack < self.pack_count:
            raise ValueError(f"pack number {pack} is not in the pack table")
        if not (0 <= offset < 2**32 and 0 <= length < 2**32 and 0 <= type_ < 256):
            raise ValueError(f"entry fields out of range: {offset}, {length}, {type_}")
        with self._lock:
            if id_ in self._recent or self._find(id_) >= 0:
                return False
            self._recent[bytes(id_)] = (pack, offset, length, type_)
            if len(self._recent) >= max(_MIN_MERGE, len(self._main) // _MERGE_FRACTION):
                self._merge_recent()
            return True

    def discard(self, ids: Iterable[bytes]) -> int:
        """Drop the entries of ``ids`` (found missing or damaged); return how
        many were indexed. Unknown ids are ignored."""
        with self._lock:
            self._merge_recent()
            rows = [i for i in map(self._find, ids) if i >= 0]
            if not rows:
                return 0
            keep = np.ones(len(self._main), dtype=bool)
            keep[rows] = False
            self._keep(keep)
            return len(rows)

    def discard_packs(self, names: Iterable[bytes]) -> list[bytes]:
        """Drop every entry in the packs named (raw names): a pack found
        missing takes all its blobs with it. Returns the ids dropped."""
        wanted = set(names)
        with self._lock:
            numbers = [n for n in range(self.pack_count) if self.pack_name(n) in wanted]
            return self._discard_rows(np.isin(self._merged().pack, numbers))

    def discard_unbacked(
        self, pack_sizes: Mapping[bytes, int], header_size: int
    ) -> tuple[list[bytes], set[bytes]]:
        """Drop the entries whose pack is not in ``pack_sizes`` (raw name ->
        stored size) or ends before the entry does (a truncated pack);
        ``header_size`` is the blob header before each entry's offset + length.
        Returns the ids dropped and the raw names of their packs. One
        vectorised pass: ``create`` runs it against a listing of ``packs/``
        before deduplicating against anything."""
        with self._lock:
            main = self._merged()
            if not len(main):
                return [], set()
            sizes = np.array(
                [pack_sizes.get(self.pack_name(n), -1) for n in range(self.pack_count)],
                dtype=np.int64,
            )
            ends = main.offset.astype(np.int64) + main.length.astype(np.int64) + header_size
            drop = sizes[main.pack.astype(np.int64)] < ends
            if not drop.any():
                return [], set()
            packs = {self.pack_name(int(n)) for n in np.unique(main.pack[drop])}
            return self._discard_rows(drop), packs

    def _merged(self) -> _Columns:
        self._merge_recent()
        return self._main

    def _discard_rows(self, drop: npt.NDArray[np.bool_]) -> list[bytes]:
        """Drop the main rows marked in ``drop``; returns their ids."""
        m = self._main
        out = np.empty(int(np.count_nonzero(drop)), dtype=[("key0", ">u8"), ("rest", "V24")])
        if not len(out):
            return []
        out["key0"] = m.key0[drop]
        out["rest"] = m.rest[drop]
        raw = out.tobytes()
        self._keep(~drop)
        return [raw[i : i + ID_SIZE] for i in range(0, len(raw), ID_SIZE)]

    def _keep(self, keep: npt.NDArray[np.bool_]) -> None:
        """Replace the main columns by the rows in ``keep`` (a new object, as
        every change of the main columns, so snapshots stay valid)."""
        m = self._main
        self._main = _Columns(*(getattr(m, f)[keep] for f in _FIELDS))

    def add_index_file(self, index: IndexFile) -> int:
        """Merge one index file; return how many ids were new."""
        return self.add_index_files([index])

    def add_index_files(self, indexes: Sequence[IndexFile]) -> int:
        """Merge index files in one linear pass; return how many ids were new.

        Each file's pack table is appended to ours and its pack numbers are
        shifted accordingly. Merging all new files at once costs one pass over
        the index instead of one per file.
        """
        with self._lock:
            batch = _Columns.from_index_files(indexes, self.pack_count)
            for index in indexes:
                self._packs += b"".join(index.packs)
            self._merge_recent()
            return self._merge(batch)

    def _merge_recent(self) -> None:
        if self._recent:
            batch = _Columns.from_dict(self._recent)
            self._recent = {}
            self._merge(batch)

    def _merge(self, batch: _Columns) -> int:
        """Add the rows of ``batch`` (consumed) whose ids are new; return how many."""
        batch.select(np.argsort(batch.key0, kind="stable"))
        positions = np.searchsorted(self._main.key0, batch.key0)
        dup = _duplicates_within(batch) | _duplicates_of(batch, self._main, positions)
        if dup.any():
            keep = ~dup
            batch.select(keep)
            positions = positions[keep]
        if len(self._main) == 0:
            self._main = batch
        else:
            self._main = self._main.insert(positions, batch)
        return len(batch)

    def __iter__(self) -> Iterator[bytes]:
        return self.ids()

    def ids(self, type_: int | None = None) -> Iterator[bytes]:
        """Yield every indexed id (of ``type_`` only, when given).

        Iterates over a snapshot: adds made meanwhile may or may not appear.
        """
        with self._lock:
            self._merge_recent()
            main = self._main
        for start in range(0, len(main), _ITER_BATCH):
            stop = min(start + _ITER_BATCH, len(main))
            raw = main.id_bytes(start, stop)
            if type_ is None:
                rows = np.arange(stop - start)
            else:
                rows = np.flatnonzero(main.type[start:stop] == type_)
            for row in rows.tolist():
                yield raw[row * ID_SIZE : (row + 1) * ID_SIZE]

    def save(self, path: Path, repository_id: bytes) -> bytes:
        """Write the index of repository ``repository_id`` to ``path`` atomically.

        Returns the container's trailer, which callers may record to tie
        other files to this exact version of the index.
        """
        with self._lock:
            self._merge_recent()
            main, packs = self._main, bytes(self._packs)
        _, digest = write_cache(
            path, CACHE_KIND, repository_id, lambda body: _write_columns(body, main, packs)
        )
        return digest

    @classmethod
    def load(
        cls, path: Path, repository_id: bytes, expected_digest: bytes | None = None
    ) -> ChunkIndex:
        """Read an index written by ``save`` for repository ``repository_id``.

        Raises IntegrityError naming ``path`` if the file is truncated, its
        checksum does not match, it belongs to another repository, its
        trailer differs from ``expected_digest`` or its content is
        inconsistent; FileNotFoundError/OSError if it cannot be read.
        """
        try:
            (main, packs), digest = read_cache(path, CACHE_KIND, repository_id, _read_columns)
        except CacheUnusableError as exc:
            raise IntegrityError(f"chunk index cache {path}: {exc}") from None
        if expected_digest is not None and digest != expected_digest:
            raise IntegrityError(f"chunk index cache {path}: not the version expected")
        index = cls()
        index._main, index._packs = main, bytearray(packs)
        return index


def _duplicates_within(batch: _Columns) -> npt.NDArray[np.bool_]:
    """Rows (of a batch sorted by key0) repeating an id of an earlier row."""
    dup = np.zeros(len(batch), dtype=bool)
    for i in np.flatnonzero(batch.key0[1:] == batch.key0[:-1]) + 1:
        j = i - 1
        while j >= 0 and batch.key0[j] == batch.key0[i]:
            if not dup[j] and batch.rest[j] == batch.rest[i]:
                dup[i] = True
                break
            j -= 1
    return dup


def _duplicates_of(
    batch: _Columns, main: _Columns, positions: npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_]:
    """Rows of ``batch`` whose id is already in ``main``; ``positions`` are
    the left insertion points of the batch's key0 values in ``main``."""
    dup = np.zeros(len(batch), dtype=bool)
    n = len(main)
    candidates = np.flatnonzero(positions < n)
    candidates = candidates[main.key0[positions[candidates]] == batch.key0[candidates]]
    after = positions[candidates] + 1
    in_run = np.zeros(len(candidates), dtype=bool)
    inside = after < n
    in_run[inside] = main.key0[after[inside]] == batch.key0[candidates[inside]]
    single = candidates[~in_run]
    dup[single] = main.rest[positions[single]] == batch.rest[single]
    for i in candidates[in_run]:  # several main ids share this key0: rare
        j = int(positions[i])
        while j < n and main.key0[j] == batch.key0[i]:
            if main.rest[j] == batch.rest[i]:
                dup[i] = True
                break
            j += 1
    return dup


def _write_columns(body: BodyWriter, main: _Columns, packs: bytes) -> None:
    body.write(_COUNTS.pack(len(main), len(packs) // NAME_SIZE))
    body.write(packs)
    for name, dtype in zip(_FIELDS, _DISK_DTYPES, strict=True):
        column = np.ascontiguousarray(getattr(main, name), dtype=dtype)
        body.write(column.view(np.uint8).data)


def _read_columns(body: BodyReader) -> tuple[_Columns, bytes]:
    """Read the columns; ValueError describes what is inconsistent."""
    n, n_packs = _COUNTS.unpack(body.read(_COUNTS.size))
    row = sum(np.dtype(d).itemsize for d in _DISK_DTYPES)
    if body.remaining != n_packs * NAME_SIZE + n * row:
        raise ValueError("size does not match the counts in the header")
    packs = body.read(n_packs * NAME_SIZE)
    columns = []
    for dtype in _DISK_DTYPES:
        column = np.empty(n, dtype=dtype)
        body.readinto(column.view(np.uint8).data)
        columns.append(column)
    main = _Columns(
        columns[0].astype(np.uint64, copy=False),
        columns[1],
        columns[2].astype(np.uint32, copy=False),
        columns[3].astype(np.uint32, copy=False),
        columns[4].astype(np.uint32, copy=False),
        columns[5].astype(np.uint8, copy=False),
    )
    _check_loaded(main, n_packs)
    return main, packs


def _check_loaded(main: _Columns, n_packs: int) -> None:
    if np.any(main.key0[1:] < main.key0[:-1]):
        raise ValueError("entries are not sorted")
    if len(main) and int(main.pack.max()) >= n_packs:
        raise ValueError("entry refers to a pack number beyond the pack table")


KNOWN_MAGIC = b"hoard-known-ids 1\n\0\0\0\0\0\0"
"""Start of a :class:`KnownIds` file (24 bytes, so the columns after the count
are 8-byte aligned for the memory map)."""
_KNOWN_COUNT = struct.Struct("<Q")
_DIGEST_SIZE = 32


class KnownIds:
    """A read-only view of a chunk index's ids and stored lengths, for another process.

    ``create``'s worker processes deduplicate against the repository as it
    was when the backup started without a chunk index of their own: the main
    process writes the ids once (:meth:`write`, sorted as the index's main
    columns) and every worker maps the file (:meth:`open`), so the pages are
    shared through the page cache instead of copied per worker (36 bytes per
    chunk on disk, none of it on the workers' heaps but the bucket table of
    the lookup). The file ends with the SHA-256 of what precedes it, checked
    on opening: a damaged view would make a worker skip data it must store.
    """

    def __init__(self, search: _Search) -> None:
        self._search = search

    def __len__(self) -> int:
        return len(self._search.main)

    @staticmethod
    def write(index: ChunkIndex, path: Path) -> None:
        """Write the ids and lengths ``index`` holds now to ``path`` (atomically)."""
        from hoard.storage.localfile import write_atomically  # noqa: PLC0415 - only here

        with index._lock:
            main = index._merged()
        digest = hashlib.sha256()

        def write(f: BinaryIO) -> None:
            for part in (
                KNOWN_MAGIC,
                _KNOWN_COUNT.pack(len(main)),
                np.ascontiguousarray(main.key0, dtype="<u8").view(np.uint8).data,
                np.ascontiguousarray(main.rest).view(np.uint8).data,
                np.ascontiguousarray(main.length, dtype="<u4").view(np.uint8).data,
            ):
                digest.update(part)
                f.write(part)
            f.write(digest.digest())

        write_atomically(path, write)

    @classmethod
    def open(cls, path: Path) -> KnownIds:
        """Map a file :meth:`write` wrote; IntegrityError if it is damaged."""
        head = len(KNOWN_MAGIC) + _KNOWN_COUNT.size
        size = path.stat().st_size
        if size < head + _DIGEST_SIZE:
            raise IntegrityError(f"known ids {path}: truncated")
        data = np.memmap(path, dtype=np.uint8, mode="r")
        view = memoryview(data)  # type: ignore[arg-type]
        if bytes(view[: len(KNOWN_MAGIC)]) != KNOWN_MAGIC:
            raise IntegrityError(f"known ids {path}: bad magic")
        if hashlib.sha256(view[:-_DIGEST_SIZE]).digest() != bytes(view[-_DIGEST_SIZE:]):
            raise IntegrityError(f"known ids {path}: checksum mismatch")
        (n,) = _KNOWN_COUNT.unpack(view[len(KNOWN_MAGIC) : head])
        if size != head + 36 * n + _DIGEST_SIZE:
            raise IntegrityError(f"known ids {path}: size does not match the count")
        key0 = data[head : head + 8 * n].view("<u8")
        rest = data[head + 8 * n : head + 32 * n].view("V24")
        length = data[head + 32 * n : head + 36 * n].view("<u4")
        empty = np.zeros(0, np.uint32)
        columns = _Columns(key0, rest, empty, empty, length, np.zeros(0, np.uint8))
        return cls(_Search(columns))

    def length_of(self, id_: bytes) -> int | None:
        """The stored length of blob ``id_``, None if the view does not hold it."""
        return self._search.length_of(id_) if len(self._search.main) else None
