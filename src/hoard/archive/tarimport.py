"""A tar stream as an archive (``import-tar``), with Python's ``tarfile``.

Members are read in stream order: a file's content is chunked and stored
as it arrives (the stream is read once), its entry kept in a directory
tree in memory; when the stream ends, the directories are stored deepest
first, as ``create`` stores them. Directories that the tar names only as
parents are made implicit (``Entry.implicit``), as ``create`` makes the
parents of a PATH. What tar carries is kept: names as bytes
(``surrogateescape``), owners, modes, PAX nanosecond times and
``SCHILY.xattr.*`` attributes, hard links (a member naming an earlier one
shares its chunks), symlinks, devices, FIFOs.

A member whose name leaves the archive (``..``) is refused and reported;
absolute names lose their leading ``/``, as GNU tar does.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from hoard.archive.chunker import Chunker, ChunkKind
from hoard.archive.items import ZERO_ID, ChunkRef, Entry
from hoard.archive.tree import store_directory
from hoard.objects.store import ObjectStore

_READ = 1024 * 1024


@dataclass
class ImportStats:
    nfiles: int = 0
    nchunks: int = 0
    original_size: int = 0
    compressed_size: int = 0
    new_data: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(member name, why) of the members left out."""


@dataclass
class _Dir:
    entry: Entry | None = None
    children: dict[bytes, _Dir | Entry] = field(default_factory=dict)


class TarImporter:
    """Reads a tar stream into trees and chunks of ``objects``; ``run`` gives the root."""

    def __init__(
        self,
        objects: ObjectStore,
        chunker: Chunker,
        on_item: Callable[[str, str], None] | None = None,
    ) -> None:
        self._objects = objects
        self._chunker = chunker
        self._on_item = on_item
        self._root = _Dir()
        self._files: dict[bytes, Entry] = {}
        self.stats = ImportStats()

    def run(self, stream: IO[bytes], *, ignore_zeros: bool = False) -> list[bytes]:
        with tarfile.open(
            fileobj=stream,
            mode="r|*",
            encoding="utf-8",
            errors="surrogateescape",
            ignore_zeros=ignore_zeros,
        ) as tar:
            for member in tar:
                self._member(tar, member)
        return self._store(self._root)

    # --- members ------------------------------------------------------------------------

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _parts(member.name)
        if parts is None:
            self.stats.refused.append((member.name, "the name leaves the archive (..)"))
            return
        if not parts:
            if member.isdir():  # "./": the root's own "." item, as create . stores it
                self._root.entry = self._entry(member, b".", stat.S_IFDIR)
            return
        parent = self._directory(parts[:-1])
        name = parts[-1]
        if member.isdir():
            node = parent.children.get(name)
            if not isinstance(node, _Dir):
                node = _Dir()
                parent.children[name] = node
            node.entry = self._entry(member, name, stat.S_IFDIR)
            self._report("d", member.name)
            return
        entry = self._non_dir(tar, member, name)
        if entry is not None:
            parent.children[name] = entry
            self.stats.nfiles += 1

    def _non_dir(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: bytes) -> Entry | None:
        if member.issym():
            entry = self._entry(member, name, stat.S_IFLNK)
            entry.link_target = os.fsencode(member.linkname)
            self._report("s", member.name)
            return entry
        if member.islnk():
            return self._hard_link(member, name)
        if member.ischr() or member.isblk():
            entry = self._entry(member, name, stat.S_IFCHR if member.ischr() else stat.S_IFBLK)
            entry.rdev = os.makedev(member.devmajor, member.devminor)
            self._report("c" if member.ischr() else "b", member.name)
            return entry
        if member.isfifo():
            self._report("f", member.name)
            return self._entry(member, name, stat.S_IFIFO)
        if member.isreg():
            entry = self._entry(member, name, stat.S_IFREG)
            data = tar.extractfile(member)
            assert data is not None
            entry.chunks = self._chunks(data)
            entry.size = member.size
            self._files[os.fsencode(_normal(member.name))] = entry
            self._report("A", member.name)
            return entry
        self.stats.refused.append((member.name, "a tar member type hoard cannot store"))
        return None

    def _hard_link(self, member: tarfile.TarInfo, name: bytes) -> Entry | None:
        target = self._files.get(os.fsencode(_normal(member.linkname)))
        if target is None:
            self.stats.refused.append(
                (member.name, f"hard link to {member.linkname}, not before it")
            )
            return None
        if target.hardlink_id is None:
            target.hardlink_id = hashlib.blake2b(
                os.fsencode(member.linkname), digest_size=16
            ).digest()
        entry = self._entry(member, name, stat.S_IFREG)
        entry.chunks, entry.size, entry.hardlink_id = target.chunks, target.size, target.hardlink_id
        self._report("h", member.name)
        return entry

    def _entry(self, member: tarfile.TarInfo, name: bytes, kind: int) -> Entry:
        pax = member.pax_headers
        entry = Entry(
            name,
            kind | stat.S_IMODE(member.mode),
            uid=member.uid,
            gid=member.gid,
            user=member.uname or None,
            group=member.gname or None,
            mtime=_ns(pax.get("mtime"), member.mtime),
        )
        if "atime" in pax:
            entry.atime = _ns(pax["atime"], 0)
        if "ctime" in pax:
            entry.ctime = _ns(pax["ctime"], 0)
        for key, value in pax.items():
            if key.startswith("SCHILY.xattr."):
                attribute = key.removeprefix("SCHILY.xattr.")
                entry.xattrs[os.fsencode(attribute)] = value.encode("utf-8", "surrogateescape")
        return entry

    def _chunks(self, data: IO[bytes]) -> list[ChunkRef]:
        refs = []
        for chunk in self._chunker.chunks(_pieces(data)):
            self.stats.nchunks += 1
            self.stats.original_size += chunk.size
            if chunk.kind is not ChunkKind.DATA or chunk.data is None:
                refs.append(ChunkRef(ZERO_ID, chunk.size))
                continue
            put = self._objects.put_data(chunk.data)
            self.stats.compressed_size += put.csize
            if put.new:
                self.stats.new_data += put.csize
            refs.append(ChunkRef(put.id, put.size))
        return refs

    def _report(self, status: str, name: str) -> None:
        if self._on_item is not None:
            self._on_item(status, name)

    # --- directories --------------------------------------------------------------------

    def _directory(self, parts: list[bytes]) -> _Dir:
        node = self._root
        for part in parts:
            child = node.children.get(part)
            if not isinstance(child, _Dir):  # a file of that name is replaced, as tar does
                child = _Dir()
                node.children[part] = child
            node = child
        return node

    def _store(self, node: _Dir) -> list[bytes]:
        """Store ``node``'s tree (children first); its tree ids."""
        entries = [node.entry] if node is self._root and node.entry is not None else []
        for name, child in sorted(node.children.items()):
            if isinstance(child, _Dir):
                entry = child.entry or Entry(
                    name, stat.S_IFDIR | 0o755, mtime=time.time_ns(), implicit=True
                )
                entry.tree = self._store(child)
                entries.append(entry)
            else:
                entries.append(child)
        return store_directory(self._objects, entries)


def _normal(name: str) -> str:
    parts = _parts(name)
    return "/".join(os.fsdecode(p) for p in parts or [])


def _parts(name: str) -> list[bytes] | None:
    """The path components of a member name; None when it climbs out with ``..``."""
    parts = [p for p in os.fsencode(name).split(b"/") if p and p != b"."]
    return None if b".." in parts else parts


def _ns(pax_value: str | None, seconds: float) -> int:
    """Nanoseconds from a PAX time (exact, ``1600000000.123456789``) or tar's seconds."""
    if pax_value:
        negative = pax_value.startswith("-")
        whole, _, fraction = pax_value.lstrip("-").partition(".")
        try:
            ns = int(whole) * 1_000_000_000 + int((fraction + "000000000")[:9])
        except ValueError:
            return int(seconds * 1_000_000_000)
        return -ns if negative else ns
    return int(seconds * 1_000_000_000)


def _pieces(data: IO[bytes]) -> Iterator[bytes]:
    while piece := data.read(_READ):
        yield piece
