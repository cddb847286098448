"""Backing up a set of paths into a tree of directory objects.

The walker goes depth first, one directory at a time, in name order. Files
are read and chunked in this thread and their chunks handed to the
:class:`ChunkPipeline`; a directory's entries are finished (their chunk
futures resolved) only when the directory is complete, so many files are
in flight at once. Paths are bytes throughout: any name the OS accepts is
archived exactly, whatever the locale.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import BinaryIO

from hoard.archive.chunker import Chunker
from hoard.archive.fileread import DEFAULT_BUFFER_SIZE, ReadStats, as_fragments, read_fragments
from hoard.archive.items import ChunkRef, Entry
from hoard.archive.metadata import ReadOptions, entry_from_stat, read_flags, read_xattrs
from hoard.archive.patterns import PatternMatcher
from hoard.archive.pipeline import ChunkPipeline, ChunkResult
from hoard.archive.record import ArchiveStats
from hoard.archive.tree import ObjectWriter, store_directory
from hoard.errors import (
    BackupFileNotFoundWarning,
    BackupIOWarning,
    BackupOSWarning,
    BackupPermissionWarning,
    FileChangedWarning,
    HoardWarning,
)

CACHEDIR_TAG = b"CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


@dataclass(frozen=True)
class CreateOptions:
    """The ``create`` options that shape what is archived."""

    read: ReadOptions = field(default_factory=ReadOptions)
    one_file_system: bool = False
    exclude_caches: bool = False
    exclude_if_present: tuple[bytes, ...] = ()
    keep_exclude_tags: bool = False
    read_special: bool = False
    dry_run: bool = False
    sparse: bool = True


@dataclass(frozen=True)
class StreamMeta:
    """Metadata of a file read from standard input (``--stdin-name`` and friends)."""

    path: bytes
    mode: int = 0o660
    uid: int = 0
    gid: int = 0
    user: str | None = None
    group: str | None = None


Reporter = Callable[[str, bytes], None]
"""Called with (status letter, archive path) for each item, in walk order."""

WarningSink = Callable[[HoardWarning], None]


@dataclass
class _Pending:
    """A regular file whose chunks are still being stored."""

    entry: Entry
    futures: list[Future[ChunkResult]]
    resolved: bool = False


@dataclass
class _Node:
    """A directory being built: finished entries plus files still in flight."""

    entries: list[Entry] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)
    children: dict[bytes, _Node] = field(default_factory=dict)


def _warning_for(path: bytes, exc: OSError) -> HoardWarning:
    shown = os.fsdecode(path)
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT:
        return BackupFileNotFoundWarning(shown, reason)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BackupPermissionWarning(shown, reason)
    if exc.errno == errno.EIO:
        return BackupIOWarning(shown, reason)
    return BackupOSWarning(shown, reason)


def _hardlink_id(st: os.stat_result) -> bytes:
    """Stable per (device, inode), so an unchanged directory stays the same object."""
    return hashlib.blake2b(f"{st.st_dev}:{st.st_ino}".encode(), digest_size=16).digest()


def archive_path(path: bytes) -> bytes:
    """Borg's archive path of a command-line path: no leading ``/``, no ``./``, no ``..``."""
    parts = [p for p in path.split(b"/") if p not in (b"", b".", b"..")]
    return b"/".join(parts)


class Creator:
    """Builds one archive's tree; ``run`` returns the root tree ids and statistics."""

    def __init__(
        self,
        store: ObjectWriter,
        pipeline: ChunkPipeline,
        chunker: Chunker,
        matcher: PatternMatcher,
        options: CreateOptions,
        *,
        report: Reporter,
        warn: WarningSink,
        progress: Callable[[ArchiveStats, bytes], None] | None = None,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.chunker = chunker
        self.matcher = matcher
        self.options = options
        self.report = report
        self.warn = warn
        self.progress = progress
        self.stats = ArchiveStats()
        self.read_stats = ReadStats()
        self._hardlinks: dict[tuple[int, int], _Pending] = {}
        self._implicit_real: dict[int, bytes] = {}
        self._seen_ids: set[bytes] = set()

    # -- top level -----------------------------------------------------------------------

    def run(self, paths: list[bytes]) -> list[bytes]:
        """Archive ``paths``; returns the TREE ids of the archive root."""
        root = _Node()
        for path in paths:
            self._backup_root(root, path)
        return self._finish_implicit(root, b"")

    def run_stream(self, stream: BinaryIO, meta: StreamMeta) -> list[bytes]:
        """Archive the bytes of ``stream`` as one regular file (``create -``)."""
        root = _Node()
        apath = archive_path(meta.path)
        parent = root
        for part in apath.split(b"/")[:-1]:
            parent = parent.children.setdefault(part, _Node())
        now = time.time_ns()
        entry = Entry(
            name=apath.rsplit(b"/", 1)[-1],
            mode=stat.S_IFREG | meta.mode,
            uid=meta.uid,
            gid=meta.gid,
            user=meta.user,
            group=meta.group,
            mtime=now,
            ctime=now,
        )
        data = iter(lambda: stream.read(DEFAULT_BUFFER_SIZE), b"")
        futures = [self.pipeline.submit(c) for c in self.chunker.chunks(as_fragments(data))]
        parent.pending.append(_Pending(entry, futures))
        self.stats.nfiles += 1
        self._item_done("A", apath)
        return self._finish_implicit(root, b"")

    def _backup_root(self, root: _Node, path: bytes) -> None:
        apath = archive_path(path)
        try:
            st = os.lstat(path)
        except OSError as exc:
            self.report("E", apath)
            self.warn(_warning_for(path, exc))
            return
        parent = self._implicit_parents(root, path, apath)
        if not apath:  # "/" itself: its entries become the archive root
            self._fill_directory(parent, path, apath, st)
            return
        name = apath.rsplit(b"/", 1)[-1]
        self._process(parent, path, apath, name, st, root_dev=st.st_dev)

    def _implicit_parents(self, root: _Node, path: bytes, apath: bytes) -> _Node:
        """The node of ``apath``'s parent, creating implicit parent directories."""
        node = root
        parts = apath.split(b"/")[:-1] if apath else []
        lead = b"/" if path.startswith(b"/") else b""
        for i, part in enumerate(parts):
            real_parent = lead + b"/".join(parts[: i + 1])
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node()
                self._implicit_real[id(child)] = real_parent
            node = child
        return node

    def _finish_implicit(self, node: _Node, prefix: bytes) -> list[bytes]:
        """Store implicit directories bottom-up; returns the tree ids of ``node``."""
        for name, child in sorted(node.children.items()):
            tree = self._finish_implicit(child, prefix + name + b"/")
            explicit = next((e for e in node.entries if e.name == name and e.is_dir), None)
            if explicit is not None:
                continue  # also given as a path itself: that entry wins
            node.entries.append(self._implicit_entry(name, child, tree))
        return self._store_node(node)

    def _implicit_entry(self, name: bytes, node: _Node, tree: list[bytes]) -> Entry:
        try:
            st = os.lstat(self._implicit_real[id(node)])
            entry = entry_from_stat(name, st, self.options.read)
        except (OSError, KeyError):
            entry = Entry(name=name, mode=stat.S_IFDIR | 0o755)
        entry.tree = tree
        entry.implicit = True
        return entry

    # -- items -------------------------------------------------------------------------

    def _process(
        self, node: _Node, path: bytes, apath: bytes, name: bytes, st: os.stat_result, root_dev: int
    ) -> None:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            self._process_dir(node, path, apath, name, st, root_dev)
        elif stat.S_ISREG(mode):
            self._process_file(node, path, apath, name, st)
        elif stat.S_ISLNK(mode):
            self._process_symlink(node, path, apath, name, st)
        elif stat.S_ISSOCK(mode):
            return  # sockets are not archived (as Borg)
        elif self.options.read_special and (stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)):
            self._process_file(node, path, apath, name, st, special=True)
        else:
            self._process_special(node, path, apath, name, st)

    def _base_entry(self, path: bytes, name: bytes, st: os.stat_result) -> Entry:
        entry = entry_from_stat(name, st, self.options.read)
        entry.xattrs = read_xattrs(path, self.options.read)
        return entry

    def _process_symlink(
        self, node: _Node, path: bytes, apath: bytes, name: bytes, st: os.stat_result
    ) -> None:
        try:
            entry = self._base_entry(path, name, st)
            entry.link_target = os.readlink(path)
        except OSError as exc:
            self._item_error(path, apath, exc)
            return
        node.entries.append(entry)
        self._item_done("s", apath)

    def _process_special(
        self, node: _Node, path: bytes, apath: bytes, name: bytes, st: os.stat_result
    ) -> None:
        try:
            entry = self._base_entry(path, name, st)
        except OSError as exc:
            self._item_error(path, apath, exc)
            return
        node.entries.append(entry)
        letter = "f" if stat.S_ISFIFO(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else "c"
        self._item_done(letter, apath)

    def _process_dir(
        self,
        node: _Node,
        path: bytes,
        apath: bytes,
        name: bytes,
        st: os.stat_result,
        root_dev: int,
    ) -> None:
        if self.options.one_file_system and st.st_dev != root_dev:
            return  # a mount point of another file system: not stored (Borg's -x)
        try:
            entry = self._base_entry(path, name, st)
        except OSError as exc:
            self._item_error(path, apath, exc)
            return
        child = node.children.setdefault(name, _Node())
        tag_only = self._excluded_by_tag(path)
        if tag_only is None or self.options.keep_exclude_tags:
            self._fill_directory(child, path, apath, st, only=tag_only, root_dev=root_dev)
        entry.tree = self._store_node(child)
        del node.children[name]
        if self.matcher.match(apath):
            node.entries.append(entry)
            self._item_done("d", apath)
        elif child.entries:
            entry.implicit = True  # excluded itself, but holds included items
            node.entries.append(entry)

    def _excluded_by_tag(self, path: bytes) -> list[bytes] | None:
        """Tag files that exclude this directory's contents, or None if it is not excluded."""
        tags: list[bytes] = []
        if self.options.exclude_caches and _is_cachedir(path):
            tags.append(CACHEDIR_TAG)
        for tag in self.options.exclude_if_present:
            if os.path.lexists(os.path.join(path, tag)):
                tags.append(tag)
        return tags or None

    def _fill_directory(
        self,
        node: _Node,
        path: bytes,
        apath: bytes,
        st: os.stat_result,
        *,
        only: list[bytes] | None = None,
        root_dev: int | None = None,
    ) -> None:
        dev = st.st_dev if root_dev is None else root_dev
        for name, child_st in self._scan(path, apath):
            if only is not None and name not in only:
                continue
            child_path = os.path.join(path, name)
            child_apath = apath + b"/" + name if apath else name
            decision = self.matcher.decide(child_apath)
            if not decision.included and not (
                decision.recurse_dir and stat.S_ISDIR(child_st.st_mode)
            ):
                self._item_done("x", child_apath, excluded=True)
                continue
            self._process(node, child_path, child_apath, name, child_st, dev)

    def _scan(self, path: bytes, apath: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
        try:
            with os.scandir(path) as it:
                dirents = sorted(it, key=lambda d: d.name)
        except OSError as exc:
            self._item_error(path, apath, exc)
            return
        for dirent in dirents:
            try:
                yield dirent.name, dirent.stat(follow_symlinks=False)
            except OSError as exc:
                self._item_error(dirent.path, apath + b"/" + dirent.name, exc)

    def _process_file(
        self,
        node: _Node,
        path: bytes,
        apath: bytes,
        name: bytes,
        st: os.stat_result,
        *,
        special: bool = False,
    ) -> None:
        if not self.matcher.match(apath):
            return
        if st.st_nlink > 1 and not special:
            linked = self._hardlinks.get((st.st_dev, st.st_ino))
            if linked is not None:
                node.entries.append(self._hardlink_copy(linked, path, name, st))
                self._item_done("h", apath)
                return
        try:
            entry, futures = self._read_file(path, name, st, special)
        except OSError as exc:
            self._item_error(path, apath, exc)
            return
        pending = _Pending(entry, futures)
        if st.st_nlink > 1 and not special:
            entry.hardlink_id = _hardlink_id(st)
            self._hardlinks[(st.st_dev, st.st_ino)] = pending
        node.pending.append(pending)
        self.stats.nfiles += 1
        self._item_done("A", apath)

    def _hardlink_copy(
        self, linked: _Pending, path: bytes, name: bytes, st: os.stat_result
    ) -> Entry:
        """Every member carries the chunk list, so each one extracts alone."""
        self._resolve(linked)
        entry = self._base_entry(path, name, st)
        entry.hardlink_id = linked.entry.hardlink_id
        entry.chunks = linked.entry.chunks
        entry.size = linked.entry.size
        self.stats.nfiles += 1
        return entry

    def _read_file(
        self, path: bytes, name: bytes, st: os.stat_result, special: bool
    ) -> tuple[Entry, list[Future[ChunkResult]]]:
        fd = _open_for_reading(path, special=special)
        try:
            entry = entry_from_stat(name, st, self.options.read)
            entry.xattrs = read_xattrs(fd, self.options.read)
            if self.options.read.flags:
                entry.flags = read_flags(fd)
            if special:  # --read-special: store the content as a regular file
                entry.mode = stat.S_IFREG | stat.S_IMODE(st.st_mode)
            if self.options.dry_run:  # Borg's --dry-run lists items without reading them
                return entry, []
            fragments = read_fragments(fd, sparse=self.options.sparse, stats=self.read_stats)
            futures = [self.pipeline.submit(c) for c in self.chunker.chunks(fragments)]
            if not special:
                self._check_unchanged(path, fd, st)
            if special:
                entry.size = sum(f.result().size for f in futures)
        finally:
            os.close(fd)
        return entry, futures

    def _check_unchanged(self, path: bytes, fd: int, before: os.stat_result) -> None:
        after = os.fstat(fd)
        if (after.st_mtime_ns, after.st_size, after.st_ctime_ns) != (
            before.st_mtime_ns,
            before.st_size,
            before.st_ctime_ns,
        ):
            self.warn(FileChangedWarning(os.fsdecode(path)))

    # -- finishing directories -------------------------------------------------------------

    def _store_node(self, node: _Node) -> list[bytes]:
        for pending in node.pending:
            self._resolve(pending)
            node.entries.append(pending.entry)
        node.pending.clear()
        return store_directory(self.store, node.entries)

    def _resolve(self, pending: _Pending) -> None:
        if pending.resolved:
            return
        pending.resolved = True
        chunks: list[ChunkRef] = []
        size = 0
        for future in pending.futures:
            result = future.result()
            chunks.append(ChunkRef(result.id, result.size))
            size += result.size
            self._account(result)
        pending.entry.chunks = chunks
        if stat.S_ISREG(pending.entry.mode):
            pending.entry.size = size
        self.stats.original_size += size

    def _account(self, result: ChunkResult) -> None:
        self.stats.nchunks += 1
        self.stats.compressed_size += result.csize
        if result.new and result.id not in self._seen_ids:
            self._seen_ids.add(result.id)
            self.stats.deduplicated_size += result.csize

    def _item_done(self, status: str, apath: bytes, *, excluded: bool = False) -> None:
        self.report("-" if self.options.dry_run and not excluded else status, apath)
        if self.progress is not None:
            self.progress(self.stats, apath)

    def _item_error(self, path: bytes, apath: bytes, exc: OSError) -> None:
        self.report("E", apath)
        self.warn(_warning_for(path, exc))


def _is_cachedir(path: bytes) -> bool:
    try:
        with open(os.path.join(path, CACHEDIR_TAG), "rb") as f:
            return f.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False


def _open_for_reading(path: bytes, *, special: bool) -> int:
    """Open without following links or updating atime (where permitted).

    Regular files are opened non-blocking: if one was replaced by a FIFO
    since it was listed, the open must not hang (the type check after
    ``fstat`` then reports it). FIFOs for --read-special block, as they must.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | (0 if special else os.O_NONBLOCK)
    noatime = getattr(os, "O_NOATIME", 0)
    try:
        fd = os.open(path, flags | noatime)
    except PermissionError:
        if not noatime:
            raise
        fd = os.open(path, flags)
    if not special and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EBUSY, "file type changed while it was backed up", path)
    return fd
