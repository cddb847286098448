"""The files cache: unchanged files are not read again (docs/design/files-cache.md).

A backup stats every file anyway; when a regular file's size, inode and
ctime (or mtime, per ``--files-cache`` mode) equal what the cache recorded
when the file was last read, its chunk list is taken from the cache instead
of reading and chunking the file again (status ``U``), provided every chunk
is still in the repository.

The cache maps a keyed hash of the file's absolute path (16 bytes; the cache
file does not reveal paths) to ``(inode, size, ctime ns, mtime ns, age,
flags, chunk list)``. It lives in ``<cache_dir>/<repo-id-hex>/files`` (or
``files.<suffix>``, Borg's ``BORG_FILES_CACHE_SUFFIX``), in the client cache
container (``hoard.storage.cachefile``, kind ``files``) with a keyed BLAKE3
checksum; a file that is damaged, truncated, of another format version or of
another repository is discarded with a warning.

In memory the entries are numpy columns sorted by path hash (64 bytes per
file plus 36 per chunk), so millions of files load and save in a fraction of
a second; entries remembered during a backup are appended to compact arrays
and merged in at ``save``. Not thread-safe: one walker thread calls it.

Age and trust: ``save`` sets the age of every entry seen in this backup to 0
and adds 1 to the others, dropping those that reach the TTL. An entry read in
this backup is kept but flagged *racy* when its newer timestamp (ctime or
mtime) lies in the granule of the newest such time of the files read in this
backup (Borg's rule), or is not older than the backup start minus its own
granule (a change right after the read could keep it). The granule is judged
from the timestamp: an even second may be FAT's 2 s, a whole second 1 s, and
anything finer a kernel clock tick (20 ms). A racy entry is not trusted next
time: the file is read again and reported ``A``, exactly as Borg (which drops
such entries) reports it. docs/design/files-cache.md has the reasoning.

Partial entries (``remember_partial``, docs/design/checkpoints.md): when a
checkpoint is stored while a file is being read, the chunks stored so far are
recorded under a second key of the path (``FLAG_PARTIAL``), so that a rerun
can take them (``resumable``) and read only the rest of the file. A partial
entry is never a file's entry: ``lookup`` does not see it. It is racy when its
ctime or mtime is not older than the backup start minus its granule (the
"newest file" rule does not apply to it: a backup of one big file would never
resume). ``save(checkpoint=True)`` writes the state without ageing anything.
"""

from __future__ import annotations

import array
import bisect
import logging
import os
import stat
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import blake3
import numpy as np
import numpy.typing as npt

from hoard.archive.items import ZERO_ID, ChunkRef
from hoard.errors import InputError
from hoard.storage.cachefile import (
    BodyReader,
    BodyWriter,
    CacheKind,
    CacheUnusableError,
    read_cache,
    write_cache,
)

logger = logging.getLogger(__name__)

Status = Literal["U", "M", "A"]
"""``U`` unchanged (chunks from the cache), ``M`` known but changed, ``A`` not known."""

ChunkContains = Callable[[bytes], bool]
"""``contains(chunk_id) -> bool``: is the chunk in the repository?"""

DEFAULT_TTL = 20
MAX_TTL = 0xFFFF
SECOND_NS = 1_000_000_000
COARSE_GRANULE_NS = 2 * SECOND_NS
"""FAT's mtime granularity, the coarsest of the common file systems: an even
second may be one of its timestamps."""
FINE_GRANULE_NS = 20_000_000
"""The granule of a timestamp with a fraction of a second: Linux stamps files
with its coarse clock, which moves in ticks of 1 to 10 ms (HZ 1000 to 100)."""


def timestamp_granule_ns(stamps: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The granule each timestamp may have been cut to, judged from its value:
    2 s for an even second, 1 s for a whole one, else a kernel clock tick."""
    return np.where(
        stamps % COARSE_GRANULE_NS == 0,
        COARSE_GRANULE_NS,
        np.where(stamps % SECOND_NS == 0, SECOND_NS, FINE_GRANULE_NS),
    ).astype(np.int64)


FILES_CACHE_NAME = "files"
PATH_KEY_SIZE = 16
CHUNK_ID_SIZE = 32
MAX_CHUNK_SIZE = 0xFFFFFFFF

FLAG_RACY = 0x01
FLAG_PARTIAL = 0x02
"""The entry holds the first chunks of a file that an interrupted backup was reading."""
_KNOWN_FLAGS = FLAG_RACY | FLAG_PARTIAL

CACHE_KIND = CacheKind("files", 1)
_COUNTS = struct.Struct("<QQ")  # entries, chunk records
_PATH_KEY_CONTEXT = "hoard 2025-01-01 files cache path hash v1"
_PARTIAL_PREFIX = b"\0partial\0"
"""Hashed before the absolute path for a partial entry's key: no path starts so."""
_MAC_KEY_CONTEXT = "hoard 2025-01-01 files cache checksum v1"

K0_DTYPE = np.dtype("<u8")
ROW_DTYPE = np.dtype(
    [
        ("k1", "<u8"),  # second half of the path hash (the first half, k0, is its own column)
        ("inode", "<u8"),
        ("size", "<u8"),
        ("ctime", "<i8"),
        ("mtime", "<i8"),
        ("start", "<u8"),  # first chunk record of this entry
        ("count", "<u4"),  # number of chunk records
        ("age", "<u2"),  # backups since the entry was last seen
        ("flags", "u1"),  # FLAG_RACY, FLAG_PARTIAL
    ]
)
_CHUNK = struct.Struct("<32sI")  # chunk record: id, size
_ROW = struct.Struct("<QQQqqQIHB")  # ROW_DTYPE as a struct: one row unpacked in one call
_K1 = struct.Struct("<Q")
_KEY = struct.Struct("<QQ")  # a path key as (k0, k1)
CHUNK_DTYPE = np.dtype(f"V{_CHUNK.size}")  # opaque: numpy copies these fastest

U64Array = npt.NDArray[np.uint64]
VoidArray = npt.NDArray[np.void]
BoolArray = npt.NDArray[np.bool_]


# --- modes ---------------------------------------------------------------------------------

_WORDS = {"ctime": "c", "mtime": "m", "size": "s", "inode": "i", "rechunk": "r", "disabled": "d"}
_MODES = {
    "cis": "ctime,size,inode",
    "ims": "mtime,size,inode",
    "cs": "ctime,size",
    "ms": "mtime,size",
    "cr": "rechunk,ctime",
    "mr": "rechunk,mtime",
    "d": "disabled",
}


@dataclass(frozen=True)
class FilesCacheMode:
    """A ``--files-cache`` mode; ``letters`` is Borg's short form (sorted letters)."""

    letters: str

    @classmethod
    def parse(cls, text: str) -> FilesCacheMode:
        """Parse Borg's comma-separated mode (words in any order).

        Raises InputError naming the valid words or modes.
        """
        words = {w.strip() for w in text.split(",")}
        unknown = sorted(words - _WORDS.keys())
        if unknown:
            raise InputError(
                f"invalid files cache mode {text!r}: unknown {', '.join(map(repr, unknown))}; "
                f"use a comma-separated list of {', '.join(sorted(_WORDS))}"
            )
        letters = "".join(sorted(_WORDS[w] for w in words))
        if letters not in _MODES:
            raise InputError(
                f"invalid files cache mode {text!r}: use one of {'; '.join(_MODES.values())}"
            )
        return cls(letters)

    def __str__(self) -> str:
        return _MODES[self.letters]

    @property
    def ctime(self) -> bool:
        """Compare ctime."""
        return self.letters in ("cis", "cs")

    @property
    def mtime(self) -> bool:
        """Compare mtime."""
        return self.letters in ("ims", "ms")

    @property
    def size(self) -> bool:
        """Compare the size."""
        return "s" in self.letters

    @property
    def inode(self) -> bool:
        """Compare the inode number."""
        return "i" in self.letters

    @property
    def rechunk(self) -> bool:
        """Read every file, but remember them (the cache is loaded and saved)."""
        return "r" in self.letters

    @property
    def disabled(self) -> bool:
        """No files cache at all: nothing is loaded, remembered or saved."""
        return self.letters == "d"


DEFAULT_MODE = FilesCacheMode("cis")


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileLookup:
    """What the cache says about one file.

    ``chunks`` is the file's chunk list when ``status`` is ``U`` (use it, do
    not read the file), else None (read the file, then ``remember`` it).
    ``key`` is the path's key if the lookup computed it: passed back to
    ``remember``, it saves hashing the path a second time (5 µs a file).
    """

    status: Status
    chunks: list[ChunkRef] | None = None
    key: bytes | None = None


_ADDED = FileLookup("A")


# --- keys and paths ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Keys:
    path: bytes
    mac: bytes

    @classmethod
    def derive(cls, secret: bytes) -> _Keys:
        if len(secret) < 16:
            raise ValueError("the files cache secret must be at least 16 bytes")
        return cls(
            blake3.blake3(secret, derive_key_context=_PATH_KEY_CONTEXT).digest(),
            blake3.blake3(secret, derive_key_context=_MAC_KEY_CONTEXT).digest(),
        )


def cache_file_path(cache_dir: Path, repo_id: bytes, suffix: str = "") -> Path:
    """``<cache_dir>/<repo-id-hex>/files`` or ``.../files.<suffix>``.

    Raises InputError for a suffix that is not a plain file-name part.
    """
    if "/" in suffix or "\0" in suffix:
        raise InputError(f"invalid files cache suffix {suffix!r}: it must not contain '/'")
    name = f"{FILES_CACHE_NAME}.{suffix}" if suffix else FILES_CACHE_NAME
    return cache_dir / repo_id.hex() / name


def _split_key(key: bytes) -> tuple[int, int]:
    k0, k1 = _KEY.unpack(key)
    return k0, k1


# --- the tables ----------------------------------------------------------------------------


@dataclass
class _Table:
    """Entries sorted by (k0, k1); each entry's chunks are ``chunks[start:start+count]``."""

    k0: U64Array
    rows: VoidArray
    chunks: VoidArray

    @classmethod
    def empty(cls) -> _Table:
        return cls(np.zeros(0, K0_DTYPE), np.zeros(0, ROW_DTYPE), np.zeros(0, CHUNK_DTYPE))

    def __len__(self) -> int:
        return len(self.k0)

    @property
    def nbytes(self) -> int:
        return self.k0.nbytes + self.rows.nbytes + self.chunks.nbytes


class _Probe:
    """Per-file access to a loaded table without numpy scalars (docs/design/files-cache.md).

    A lookup is a few microseconds of Python, so numpy's per-call overhead
    (``searchsorted`` on a scalar, ``rows[i].item()``) was most of it. Here
    the columns are read through memoryviews: a bucket table (the top bits
    of k0 -> first entry with them, 2 to 4 entries a bucket, at most 2 bytes
    per entry) narrows the search to a ``bisect`` over a handful of entries,
    and a row or chunk record is one ``struct.unpack_from``.
    """

    def __init__(self, table: _Table) -> None:
        n = len(table)
        self._n = n
        bits = max(0, n.bit_length() - 2)
        self._shift = 64 - bits
        k0 = np.ascontiguousarray(table.k0, dtype=np.uint64)  # native order for the view
        self._k0 = k0.view(np.uint8).data.cast("Q")
        top = k0 >> np.uint64(self._shift) if bits else np.zeros(n, dtype=np.uint64)
        buckets = np.arange((1 << bits) + 1, dtype=np.uint64)
        wide = n >= 1 << 32
        starts = np.searchsorted(top, buckets, side="left").astype(np.uint64 if wide else np.uint32)
        self._starts = starts.view(np.uint8).data.cast("Q" if wide else "I")
        self.nbytes = starts.nbytes
        """RAM of the bucket table (the views share the table's arrays)."""
        self._rows = table.rows.view(np.uint8).data
        self._chunks = table.chunks.view(np.uint8).data

    def find(self, k0: int, k1: int) -> int:
        """Index of the entry with key (k0, k1), or -1."""
        bucket = k0 >> self._shift
        keys = self._k0
        i = bisect.bisect_left(keys, k0, self._starts[bucket], self._starts[bucket + 1])
        while i < self._n and keys[i] == k0:
            if _K1.unpack_from(self._rows, i * _ROW.size)[0] == k1:
                return i
            i += 1
        return -1

    def row(self, i: int) -> tuple[int, ...]:
        """The fields of entry ``i`` in ``ROW_DTYPE`` order."""
        return _ROW.unpack_from(self._rows, i * _ROW.size)

    def chunk_refs(self, start: int, count: int) -> list[ChunkRef]:
        size = _CHUNK.size
        if count == 1:  # most files
            id_, length = _CHUNK.unpack_from(self._chunks, start * size)
            return [ChunkRef(id_, length)]
        raw = self._chunks[start * size : (start + count) * size]
        return [ChunkRef(id_, length) for id_, length in _CHUNK.iter_unpack(raw)]


def _in_granule_of_newest(changed: npt.NDArray[np.int64], newest: int) -> npt.NDArray[np.bool_]:
    """Borg's rule: the files with the newest timestamp of the backup may have
    changed again within that timestamp's granule (a snapshot's newest files
    just before it was taken). A fine newest timestamp is its own granule."""
    granule = int(timestamp_granule_ns(np.array([newest], dtype=np.int64))[0])
    if granule == FINE_GRANULE_NS:
        granule = 1  # as Borg: only the newest itself
    same: npt.NDArray[np.bool_] = np.equal(changed // granule, newest // granule)
    return same


class _FreshLog:
    """Entries remembered in this backup, in compact append-only arrays."""

    def __init__(self) -> None:
        self.k0 = array.array("Q")
        self.k1 = array.array("Q")
        self.inode = array.array("Q")
        self.size = array.array("Q")
        self.ctime = array.array("q")
        self.mtime = array.array("q")
        self.count = array.array("I")
        self.flags = array.array("B")
        self.chunks = bytearray()

    def __len__(self) -> int:
        return len(self.k0)

    @property
    def nbytes(self) -> int:
        columns = (
            self.k0,
            self.k1,
            self.inode,
            self.size,
            self.ctime,
            self.mtime,
            self.count,
            self.flags,
        )
        return sum(c.itemsize * len(c) for c in columns) + len(self.chunks)

    def add(self, key: bytes, st: os.stat_result, packed_chunks: bytes, flags: int = 0) -> None:
        k0, k1 = _split_key(key)
        self.k0.append(k0)
        self.k1.append(k1)
        self.inode.append(st.st_ino)
        self.size.append(st.st_size)
        self.ctime.append(st.st_ctime_ns)
        self.mtime.append(st.st_mtime_ns)
        self.count.append(len(packed_chunks) // _CHUNK.size)
        self.flags.append(flags)
        self.chunks += packed_chunks

    def table(self, start_ns: int) -> _Table:
        """The entries as a table in append order: age 0, racy ones flagged.

        Racy: not older than ``start_ns`` minus its granule, or (complete
        entries only) in the granule of the newest complete entry's timestamp.
        """
        rows = np.zeros(len(self), ROW_DTYPE)
        for name in ("k1", "inode", "size", "ctime", "mtime", "count", "flags"):
            column: array.array[int] = getattr(self, name)
            rows[name] = np.frombuffer(column, dtype=column.typecode)
        counts = rows["count"].astype(np.uint64)
        rows["start"] = np.cumsum(counts) - counts
        changed = np.maximum(rows["ctime"], rows["mtime"]).astype(np.int64)
        if len(changed):
            racy = changed >= start_ns - timestamp_granule_ns(changed)
            partial = (rows["flags"] & FLAG_PARTIAL) != 0
            complete = changed[~partial]
            if len(complete):
                racy |= ~partial & _in_granule_of_newest(changed, int(complete.max()))
            rows["flags"] |= np.where(racy, FLAG_RACY, 0).astype(np.uint8)
        k0 = np.frombuffer(self.k0, dtype=np.uint64).astype(K0_DTYPE)
        return _Table(k0, rows, np.frombuffer(bytes(self.chunks), CHUNK_DTYPE))


def _merge(
    main: _Table,
    seen: BoolArray,
    ttl: int,
    fresh: _Table,
    drop: set[tuple[int, int]],
    *,
    age: bool = True,
) -> _Table:
    """The table to save: main entries aged (seen ones to 0) and expired ones
    dropped, fresh entries (consumed) replacing main ones of the same path
    (the last fresh one wins), the keys in ``drop`` left out, chunk records
    compacted into entry order. ``age=False`` (a checkpoint): seen entries
    get age 0, the others keep theirs and none expires."""
    ages = main.rows["age"].astype(np.uint32) + (1 if age else 0)
    ages[seen] = 0
    keep = ages < ttl if age else np.ones(len(ages), dtype=bool)
    kept = _rows(_raw(main.rows)[keep])
    kept["age"] = ages[keep]
    fresh.rows["start"] += np.uint64(len(main.chunks))
    k0 = np.concatenate([main.k0[keep], fresh.k0])
    rows = _rows(np.concatenate([_raw(kept), _raw(fresh.rows)]))
    chosen = _latest_per_key(k0, rows["k1"])
    if drop:
        chosen = chosen[~_matching(k0[chosen], rows["k1"][chosen], drop)]
    return _compact(k0[chosen], _rows(_raw(rows)[chosen]), _concat_chunks(main, fresh))


def _matching(k0: U64Array, k1: U64Array, keys: set[tuple[int, int]]) -> BoolArray:
    """Which (k0, k1) pairs are in ``keys``."""
    hit = np.zeros(len(k0), dtype=bool)
    wanted = np.fromiter((a for a, _ in keys), dtype=np.uint64, count=len(keys))
    for i in np.flatnonzero(np.isin(k0, wanted)):
        hit[i] = (int(k0[i]), int(k1[i])) in keys
    return hit


def _raw(rows: VoidArray) -> VoidArray:
    """``rows`` as opaque records: numpy copies those ten times faster than packed structs."""
    return rows.view(f"V{ROW_DTYPE.itemsize}")


def _rows(raw: VoidArray) -> VoidArray:
    return raw.view(ROW_DTYPE)


def _concat_chunks(main: _Table, fresh: _Table) -> VoidArray:
    if not len(fresh.chunks):
        return main.chunks
    return np.concatenate([main.chunks, fresh.chunks])


def _latest_per_key(k0: U64Array, k1: U64Array) -> npt.NDArray[np.intp]:
    """Indices that sort by (k0, k1), keeping only the last index of equal keys."""
    k1 = np.ascontiguousarray(k1)
    order = np.argsort(k0, kind="stable")
    k0s, k1s = k0[order], k1[order]
    same_k0 = k0s[1:] == k0s[:-1]
    if (same_k0 & (k1s[1:] != k1s[:-1])).any():  # two paths share k0: sort by both
        order = np.lexsort((k1, k0))
        k0s, k1s = k0[order], k1[order]
        same_k0 = k0s[1:] == k0s[:-1]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = ~(same_k0 & (k1s[1:] == k1s[:-1]))
    return order[last]


def _compact(k0: U64Array, rows: VoidArray, chunks: VoidArray) -> _Table:
    """Gather each row's chunk records into row order; rewrite ``start``."""
    counts = rows["count"].astype(np.int64)
    starts = np.cumsum(counts) - counts
    shift = np.repeat(rows["start"].astype(np.int64) - starts, counts)
    gathered = chunks[shift + np.arange(int(counts.sum()), dtype=np.int64)]
    rows["start"] = starts.astype(np.uint64)
    return _Table(np.ascontiguousarray(k0, dtype=K0_DTYPE), rows, gathered)


# --- the file format -----------------------------------------------------------------------


def _write_table(body: BodyWriter, table: _Table) -> None:
    body.write(_COUNTS.pack(len(table), len(table.chunks)))
    for column in (table.k0, table.rows, table.chunks):
        body.write(np.ascontiguousarray(column).view(np.uint8).data)


def _read_table(body: BodyReader) -> _Table:
    """Read and check; raises CacheUnusableError describing any problem."""
    n, n_chunks = _COUNTS.unpack(body.read(_COUNTS.size))
    row_size = K0_DTYPE.itemsize + ROW_DTYPE.itemsize
    if body.remaining != n * row_size + n_chunks * CHUNK_DTYPE.itemsize:
        raise CacheUnusableError("truncated (the size does not match the header)")
    table = _Table(
        _read_array(body, n, K0_DTYPE),
        _read_array(body, n, ROW_DTYPE),
        _read_array(body, n_chunks, CHUNK_DTYPE),
    )
    _check_consistent(table)
    return table


def _read_array(body: BodyReader, n: int, dtype: np.dtype[Any]) -> Any:
    out = np.empty(n, dtype=dtype)
    body.readinto(out.view(np.uint8).data)
    return out


def _check_consistent(table: _Table) -> None:
    """Content a correct writer cannot produce; raises CacheUnusableError."""
    k0, rows = table.k0, table.rows
    k1 = rows["k1"]
    ordered = (k0[1:] > k0[:-1]) | ((k0[1:] == k0[:-1]) & (k1[1:] > k1[:-1]))
    if not ordered.all():
        raise CacheUnusableError("entries are not sorted")
    counts = rows["count"].astype(np.uint64)
    if int(counts.sum()) != len(table.chunks):
        raise CacheUnusableError("chunk counts do not add up")
    if not np.array_equal(rows["start"], np.cumsum(counts) - counts):
        raise CacheUnusableError("chunk ranges are inconsistent")
    if (rows["flags"] & ~np.uint8(_KNOWN_FLAGS)).any():
        raise CacheUnusableError("unknown entry flags")


def _load_or_empty(path: Path, repo_id: bytes, mac_key: bytes) -> _Table:
    """The saved table, or an empty one (logged) if there is none or it is unusable."""
    try:
        table, _ = read_cache(path, CACHE_KIND, repo_id, _read_table, key=mac_key)
        return table
    except FileNotFoundError:
        logger.info("No files cache %s yet: every file will be read.", path)
    except (OSError, CacheUnusableError) as exc:
        logger.warning("Files cache %s discarded, every file will be read: %s", path, exc)
    return _Table.empty()


class _AbsolutePaths:
    """``os.path.abspath`` for the files of one directory after another (the walk's order).

    Skipped for paths that are absolute and normal already. Otherwise the
    directory part of the last path is made absolute once, so the files of a
    directory given as a relative path (``hoard create ... data``) cost a
    concatenation each, not a ``getcwd`` and a ``normpath``. A relative path
    is resolved against the working directory of the moment its directory
    part was first seen; a backup does not change directories.
    """

    def __init__(self) -> None:
        self._head: bytes | None = None
        self._base = b""

    def __call__(self, path: bytes) -> bytes:
        if path[:1] == b"/" and b"//" not in path and b"/." not in path and path[-1:] != b"/":
            return path
        cut = path.rfind(b"/") + 1
        name = path[cut:]
        if not name or name in {b".", b".."}:
            return os.path.abspath(path)
        head = path[:cut]
        if head != self._head:
            base = os.path.abspath(head or b".")
            self._head, self._base = head, base if base[-1:] == b"/" else base + b"/"
        return self._base + name


def _pack_chunks(chunks: Sequence[ChunkRef]) -> bytes:
    for c in chunks:
        if len(c.id) != CHUNK_ID_SIZE or not 0 <= c.size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk ({c.id.hex()}, {c.size}) cannot be in the files cache")
    return b"".join([_CHUNK.pack(c.id, c.size) for c in chunks])


# --- the cache -----------------------------------------------------------------------------


class FilesCache:
    """The files cache of one repository (and suffix) for one backup.

    Use: ``load`` before the walk; per regular file ``lookup``, and after
    reading a file that did not change while it was read, ``remember``;
    ``save`` after the archive is committed (never after a failed backup:
    remembered chunks may not be in the repository then), or
    ``save(checkpoint=True)`` after a checkpoint archive is stored (its
    chunks are then flushed and indexed). A checkpoint taken while a file is
    read records its part with ``remember_partial``; the next backup asks
    ``resumable`` before reading a file, and ``forget_partial`` once it does.
    """

    def __init__(
        self,
        path: Path | None,
        repo_id: bytes,
        keys: _Keys,
        mode: FilesCacheMode,
        *,
        ttl: int,
        start_ns: int,
        table: _Table,
    ) -> None:
        self.path = path
        self.mode = mode
        self._repo_id = repo_id
        self._keys = keys
        self._ttl = ttl
        self._start_ns = start_ns
        self._table = table
        self._k1 = table.rows["k1"]
        self._probe = _Probe(table)
        self._absolute = _AbsolutePaths()
        self._path_key = keys.path
        self._never_known = mode.disabled or mode.rechunk
        self._compare = (mode.size, mode.inode, mode.ctime, mode.mtime)
        self._seen = bytearray(len(table))
        """1 for the entries seen in this backup (a bytearray: set per file, cheaply)."""
        self._fresh = _FreshLog()
        self._drop: set[tuple[int, int]] = set()
        """Keys of partial entries to leave out at ``save``."""
        self._partials: set[tuple[int, int]] = set()
        """Keys of the partial entries remembered in this backup."""
        self.has_partials = bool(len(table)) and bool(np.any(table.rows["flags"] & FLAG_PARTIAL))
        """Whether the loaded cache holds a partial entry at all: if not,
        nothing can be resumed and no file needs asking (``resumable``)."""

    @classmethod
    def load(
        cls,
        cache_dir: Path,
        repo_id: bytes,
        secret: bytes,
        mode: FilesCacheMode = DEFAULT_MODE,
        *,
        start_ns: int,
        ttl: int = DEFAULT_TTL,
        suffix: str = "",
    ) -> FilesCache:
        """The cache at ``cache_file_path(cache_dir, repo_id, suffix)``.

        ``secret``: per-repository secret (>= 16 bytes) keying the path hash
        and the checksum. ``start_ns``: wall-clock time (ns) taken before the
        walk's first stat. ``ttl``: backups an unseen entry survives (1 to
        65535, else InputError). A missing file gives an empty cache (logged
        at info level); an unusable one an empty cache and a warning. Mode
        ``disabled`` reads nothing and ``save`` writes nothing.
        """
        if not 1 <= ttl <= MAX_TTL:
            raise InputError(f"files cache TTL must be a whole number from 1 to {MAX_TTL}: {ttl}")
        path = cache_file_path(cache_dir, repo_id, suffix)
        keys = _Keys.derive(secret)
        table = _Table.empty()
        if not mode.disabled:
            table = _load_or_empty(path, repo_id, keys.mac)
            logger.debug("Files cache %s: %d entries loaded.", path, len(table))
        return cls(
            None if mode.disabled else path,
            repo_id,
            keys,
            mode,
            ttl=ttl,
            start_ns=start_ns,
            table=table,
        )

    def path_key(self, path: bytes) -> bytes:
        """The 16-byte keyed hash of ``path`` made absolute and normal (``os.path.abspath``)."""
        return blake3.blake3(self._absolute(path), key=self._path_key).digest(PATH_KEY_SIZE)

    def lookup(self, path: bytes, st: os.stat_result, contains: ChunkContains) -> FileLookup:
        """Borg's status of the file ``path`` with stat ``st``, and its chunks if ``U``.

        ``U``: known, unchanged under the mode, not racy, and ``contains`` is
        true for every chunk id (runs of zeros, ``ZERO_ID``, are never stored
        and not asked); the entry counts as seen. ``M``: known but changed,
        or a chunk is missing. ``A``: not known, racy, mode ``rechunk`` or
        ``disabled``, or not a regular file.
        """
        if self._never_known or not stat.S_ISREG(st.st_mode):
            return _ADDED
        key = blake3.blake3(self._absolute(path), key=self._path_key).digest(PATH_KEY_SIZE)
        k0, k1 = _KEY.unpack(key)
        probe = self._probe
        i = probe.find(k0, k1)
        if i < 0:
            return FileLookup("A", key=key)
        _, inode, size, ctime, mtime, start, count, _, flags = probe.row(i)
        if flags & (FLAG_RACY | FLAG_PARTIAL):
            return FileLookup("A", key=key)
        by_size, by_inode, by_ctime, by_mtime = self._compare
        if (
            (by_size and size != st.st_size)
            or (by_inode and inode != st.st_ino)
            or (by_ctime and ctime != st.st_ctime_ns)
            or (by_mtime and mtime != st.st_mtime_ns)
        ):
            return FileLookup("M", key=key)
        chunks = probe.chunk_refs(start, count)
        for chunk in chunks:
            if chunk.id != ZERO_ID and not contains(chunk.id):
                return FileLookup("M", key=key)
        self._seen[i] = 1
        if inode != st.st_ino:  # not compared in this mode: keep it current (as Borg)
            self._table.rows["inode"][i] = st.st_ino
        return FileLookup("U", chunks)

    def remember(
        self,
        path: bytes,
        st: os.stat_result,
        chunks: Sequence[ChunkRef],
        key: bytes | None = None,
    ) -> bool:
        """Record the chunks just read from ``path``; ``st`` is its stat from *before* the read.

        ``key``: ``path``'s key from its ``lookup`` (computed here if None).

        Call only when the file did not change while it was read. Returns
        False (nothing recorded) in mode ``disabled``, for a file that is not
        regular, or when the chunk sizes do not add up to ``st.st_size`` (a
        file that changed, or a /proc file whose size is not its length).
        ValueError for a chunk that cannot be recorded (id not 32 bytes,
        size 4 GiB or more; chunks are at most 20 MiB).
        """
        if self.mode.disabled or not stat.S_ISREG(st.st_mode):
            return False
        if sum(c.size for c in chunks) != st.st_size:
            return False
        self._fresh.add(key or self.path_key(path), st, _pack_chunks(chunks))
        return True

    def partial_key(self, path: bytes) -> bytes:
        """The 16-byte key of ``path``'s partial entry (never that of a complete one)."""
        data = _PARTIAL_PREFIX + self._absolute(path)
        return blake3.blake3(data, key=self._keys.path).digest(length=PATH_KEY_SIZE)

    def remember_partial(self, path: bytes, st: os.stat_result, chunks: Sequence[ChunkRef]) -> bool:
        """Record that the first ``chunks`` of ``path`` are stored (a checkpoint holds them).

        ``st`` is the file's stat from before the read; call only when the
        file did not change since. The chunks must end at a chunk cut (the
        next chunk of the file starts right after them). Returns False
        (nothing recorded) in modes ``disabled`` and ``rechunk``, for a file
        that is not regular, and unless the chunks hold more than 0 and less
        than ``st.st_size`` bytes. A later partial entry of the path replaces
        this one, and so does ``forget_partial``.
        """
        if self._never_known or not stat.S_ISREG(st.st_mode):
            return False
        if not 0 < sum(c.size for c in chunks) < st.st_size:
            return False
        key = self.partial_key(path)
        split = _split_key(key)
        self._drop.discard(split)
        self._partials.add(split)
        self._fresh.add(key, st, _pack_chunks(chunks), FLAG_PARTIAL)
        return True

    def resumable(
        self, path: bytes, st: os.stat_result, contains: ChunkContains
    ) -> list[ChunkRef] | None:
        """The chunks of ``path``'s loaded partial entry, if the file can be resumed after them.

        That is: the partial entry exists and is not racy, the file's inode,
        size, ctime and mtime (all four, whatever the mode) are those
        recorded, and ``contains`` is true for every chunk. None otherwise,
        and always in modes ``disabled`` and ``rechunk``.
        """
        if self._never_known or not stat.S_ISREG(st.st_mode):
            return None
        _, row = self._find(self.partial_key(path))
        if row is None:
            return None
        _, inode, size, ctime, mtime, start, count, _, flags = row
        if flags & FLAG_RACY or not flags & FLAG_PARTIAL:
            return None
        if (inode, size, ctime, mtime) != (st.st_ino, st.st_size, st.st_ctime_ns, st.st_mtime_ns):
            return None
        chunks = self._probe.chunk_refs(start, count)
        if not 0 < sum(c.size for c in chunks) < size:
            return None
        if not all(c.id == ZERO_ID or contains(c.id) for c in chunks):
            return None
        return chunks

    def forget_partial(self, path: bytes) -> None:
        """Leave ``path``'s partial entry (loaded or remembered so far) out of the next save."""
        key = self.partial_key(path)
        split = _split_key(key)
        if split in self._partials or self._find(key)[1] is not None:
            self._drop.add(split)

    def save(self, *, checkpoint: bool = False) -> None:
        """Write the cache atomically: aged, expired entries dropped, racy ones flagged.

        May be called more than once; each call writes the state of the
        whole backup so far (ages count from the loaded file, not from a
        previous save). ``checkpoint``: the backup is not complete yet;
        entries seen so far get age 0, the others keep their age and none
        expires (an interrupted backup does not count as one). Does nothing
        in mode ``disabled``.
        """
        if self.path is None:
            return
        fresh = self._fresh.table(self._start_ns)
        seen = np.frombuffer(self._seen, dtype=np.bool_)
        table = _merge(self._table, seen, self._ttl, fresh, self._drop, age=not checkpoint)
        write_cache(
            self.path,
            CACHE_KIND,
            self._repo_id,
            lambda body: _write_table(body, table),
            key=self._keys.mac,
        )
        logger.debug("Files cache %s: %d entries saved.", self.path, len(table))

    def __len__(self) -> int:
        """Entries the cache holds now: loaded ones and those remembered since."""
        fresh = self._fresh
        k0 = np.concatenate([self._table.k0, np.frombuffer(fresh.k0, dtype=np.uint64)])
        k1 = np.concatenate([self._k1, np.frombuffer(fresh.k1, dtype=np.uint64)])
        return len(_latest_per_key(k0, k1))

    @property
    def nbytes(self) -> int:
        """Bytes of RAM the entries take (arrays and the log of remembered ones)."""
        return self._table.nbytes + len(self._seen) + self._probe.nbytes + self._fresh.nbytes

    def _find(self, key: bytes) -> tuple[int, tuple[int, ...] | None]:
        """Index and fields (``ROW_DTYPE`` order) of the entry of ``key``, or (-1, None)."""
        k0, k1 = _KEY.unpack(key)
        i = self._probe.find(k0, k1)
        return (-1, None) if i < 0 else (i, self._probe.row(i))
