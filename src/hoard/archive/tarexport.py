"""An archive as a tar stream (``export-tar``), with Python's ``tarfile``.

Items go out in archive order as they are read: file contents stream
chunk by chunk (fetched a few at a time with ``get_many``), never a whole
file in memory. What tar can carry is kept: long and non-UTF-8 names
(``surrogateescape``; PAX marks such headers ``hdrcharset=BINARY``), hard
links (the first member with its data, the others as links to it),
symlinks, devices and FIFOs, owners, and in PAX format nanosecond mtimes
(also atime and ctime when recorded) and extended attributes
(``SCHILY.xattr.*``, as GNU tar writes them). Sockets have no tar form and
are left out, as Borg does. A chunk that cannot be read becomes zeros and
the file is reported as damaged (as ``extract`` does).
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol

from hoard.archive.extract import strip_path
from hoard.archive.items import ZERO_ID, ChunkRef, Entry
from hoard.archive.patterns import PatternMatcher
from hoard.archive.tree import walk
from hoard.errors import HoardError
from hoard.objects.types import ObjectType

FORMATS = {"PAX": tarfile.PAX_FORMAT, "GNU": tarfile.GNU_FORMAT}
_FETCH_CHUNKS = 16
_ZERO_PIECE = 1024 * 1024
_ZEROS = bytes(_ZERO_PIECE)


COMPRESSION_SUFFIXES: tuple[tuple[tuple[str, ...], str], ...] = (
    ((".tar.gz", ".tgz"), "gzip"),
    ((".tar.bz2", ".tbz"), "bzip2"),
    ((".tar.xz", ".txz"), "xz"),
    ((".tar.zst", ".tar.zstd"), "zstd"),
    ((".tar.lz4",), "lz4"),
)
"""Borg's --tar-filter=auto: the compression a tarball's file name implies."""


def compression_by_name(name: str) -> str | None:
    """``gzip``, ``bzip2``, ``xz``, ``zstd`` or ``lz4`` for a tarball's name; None: plain."""
    lower = name.lower()
    return next((kind for suffixes, kind in COMPRESSION_SUFFIXES if lower.endswith(suffixes)), None)


class ChunkSource(Protocol):
    def get(self, type_: ObjectType, id_: bytes) -> bytes: ...

    def get_many(self, type_: ObjectType, ids: Sequence[bytes]) -> list[bytes | HoardError]: ...


@dataclass
class TarStats:
    items: int = 0
    nbytes: int = 0
    damaged: list[tuple[bytes, str]] = field(default_factory=list)
    """(archive path, why) of each file with unreadable chunks (zero-filled)."""
    skipped_xattrs: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(path, xattr name) of the attributes PAX cannot carry (non-UTF-8 names)."""


@dataclass(frozen=True)
class TarOptions:
    tar_format: str = "GNU"
    strip_components: int = 0


class TarExporter:
    """Writes the items of an archive that ``matcher`` selects into a tar stream."""

    def __init__(
        self,
        store: ChunkSource,
        matcher: PatternMatcher,
        options: TarOptions,
        on_item: Callable[[bytes], None] | None = None,
    ) -> None:
        self._store = store
        self._matcher = matcher
        self._options = options
        self._on_item = on_item
        self._first_link: dict[bytes, str] = {}
        self.stats = TarStats()

    def write(self, root: list[bytes], out: IO[bytes]) -> TarStats:
        with tarfile.open(
            fileobj=out,
            mode="w|",
            format=FORMATS[self._options.tar_format],
            encoding="utf-8",
            errors="surrogateescape",
        ) as tar:
            for walked in walk(self._store, root):
                entry = walked.entry
                if entry.implicit or not self._matcher.match(walked.path):
                    continue
                path = strip_path(walked.path, self._options.strip_components)
                if path and not stat.S_ISSOCK(entry.mode):
                    self._add(tar, path, walked.path, entry)
        return self.stats

    def _add(self, tar: tarfile.TarFile, path: bytes, apath: bytes, entry: Entry) -> None:
        info = self._info(path, entry)
        if self._on_item is not None:
            self._on_item(path)
        self.stats.items += 1
        if info.type == tarfile.REGTYPE:
            tar.addfile(info, _ChunkStream(self._store, entry.chunks or [], apath, self.stats))
            self.stats.nbytes += entry.size
        else:
            tar.addfile(info)

    def _info(self, path: bytes, entry: Entry) -> tarfile.TarInfo:
        info = tarfile.TarInfo(os.fsdecode(path))
        info.mode = stat.S_IMODE(entry.mode)
        info.uid, info.gid = entry.uid, entry.gid
        info.uname, info.gname = entry.user or "", entry.group or ""
        seconds, ns = divmod(entry.mtime, 1_000_000_000)
        info.mtime = seconds
        mode = entry.mode
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.fsdecode(entry.link_target or b"")
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(entry.rdev or 0), os.minor(entry.rdev or 0)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        elif entry.hardlink_id is not None and entry.hardlink_id in self._first_link:
            info.type = tarfile.LNKTYPE
            info.linkname = self._first_link[entry.hardlink_id]
        else:
            info.type = tarfile.REGTYPE
            info.size = entry.size
            if entry.hardlink_id is not None:
                self._first_link[entry.hardlink_id] = info.name
        if self._options.tar_format == "PAX":
            skipped: list[bytes] = []
            info.pax_headers = _pax_headers(entry, seconds, ns, skipped)
            self.stats.skipped_xattrs.extend((path, name) for name in skipped)
        return info


def _pax_headers(entry: Entry, seconds: int, ns: int, skipped: list[bytes]) -> dict[str, str]:
    """Nanosecond times and xattrs, which only PAX headers carry; an xattr
    whose name is not UTF-8 cannot be a pax keyword: it goes to ``skipped``."""
    headers: dict[str, str] = {}
    if ns:
        headers["mtime"] = f"{seconds}.{ns:09d}"
    for name, time in (("atime", entry.atime), ("ctime", entry.ctime)):
        if time is not None:
            s, n = divmod(time, 1_000_000_000)
            headers[name] = f"{s}.{n:09d}"
    for key, value in entry.xattrs.items():
        try:
            name = key.decode("utf-8")  # pax keywords are UTF-8, nothing else
        except UnicodeDecodeError:
            skipped.append(key)
            continue
        headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return headers


class _ChunkStream:
    """A file's content as a readable stream, for ``TarFile.addfile``."""

    def __init__(
        self, store: ChunkSource, chunks: list[ChunkRef], apath: bytes, stats: TarStats
    ) -> None:
        self._store = store
        self._pending = list(reversed(chunks))
        self._apath = apath
        self._stats = stats
        self._buffer = memoryview(b"")
        self._ready: Iterator[bytes] = iter(())

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for -1), fewer only at the end:
        ``tarfile`` treats a short read as the end of the data."""
        parts: list[bytes] = []
        wanted = size
        while wanted != 0:
            if not self._buffer:
                data = next(self._ready, None)
                if data is None:
                    if not self._pending:
                        break
                    self._ready = iter(self._fetch())
                    continue
                self._buffer = memoryview(data)
            take = len(self._buffer) if wanted < 0 else min(wanted, len(self._buffer))
            parts.append(bytes(self._buffer[:take]))
            self._buffer = self._buffer[take:]
            if wanted > 0:
                wanted -= take
        return b"".join(parts)

    def _fetch(self) -> list[bytes]:
        batch = [self._pending.pop() for _ in range(min(_FETCH_CHUNKS, len(self._pending)))]
        wanted = [c.id for c in batch if c.id != ZERO_ID]
        outcomes = dict(zip(wanted, self._store.get_many(ObjectType.DATA, wanted), strict=True))
        out: list[bytes] = []
        for chunk in batch:
            outcome = outcomes.get(chunk.id) if chunk.id != ZERO_ID else None
            if isinstance(outcome, HoardError):
                self._stats.damaged.append((self._apath, outcome.get_message()))
                outcome = None
            if outcome is None:  # a zero run (maybe a huge hole) or a lost chunk
                out.extend(_zeros(chunk.size))
            else:
                out.append(outcome)
        return out


def _zeros(size: int) -> Iterator[bytes]:
    while size > 0:
        piece = min(size, _ZERO_PIECE)
        yield _ZEROS[:piece]
        size -= piece
