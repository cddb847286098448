"""Tree building, the last stage of ``create``: directories into directory objects.

The walk (``archive/create.py``) tells this stage what it found: a
directory opened (:class:`DirNode`), an item's name taken in it
(:meth:`TreeBuilder.claim`), an entry finished (``DirNode.put``) or still
in flight (``DirNode.put_pending``: chunks in the chunk pipeline, or a
file in the file pool), a directory closed (:meth:`TreeBuilder.close_dir`).
This stage turns a closed directory into its TREE objects as soon as every
entry in it is complete, and meanwhile lets the walk go on: a directory
whose pooled files are not back yet is *deferred* (it goes into its parent
as a pending item and waits in :attr:`TreeBuilder.deferred`, in closing
order, so children are stored before their parents) until its files are
done or more than :data:`MAX_DEFERRED_DIRS` wait.

Completing a file's entry (waiting for its chunk results, the files cache,
the figures) is the file stage's business: the builder calls the
``complete_file`` it was given. The directories given on the command line
and their parents are *kept* (:attr:`TreeBuilder.open`) until the end, so
several recursion roots can add to them; :meth:`TreeBuilder.finish` stores
them deepest first and returns the archive root's ids, and
:meth:`TreeBuilder.snapshot` stores a copy of everything finished so far
for a checkpoint without disturbing the walk.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from hoard.archive.items import ChunkRef, Entry
from hoard.archive.metadata import ReadOptions, entry_from_stat
from hoard.archive.tree import ObjectWriter, store_directory
from hoard.errors import ArchivePathCollisionWarning, HoardWarning

if TYPE_CHECKING:
    from hoard.archive.filepool import FileTicket
    from hoard.archive.pipeline import ChunkResult

MAX_DEFERRED_DIRS = 1024
"""Directories closed by the walk but not stored yet, because files in them
are still being read by the file pool: beyond this many the walk waits."""

_IMPLICIT = (-1, -1)
"""The identity of a parent directory made for a recursion root that cannot be stat'ed."""


class ItemError(Exception):
    """An item that is not archived (status ``E``): the warning to give for it."""

    def __init__(self, warning: HoardWarning) -> None:
        super().__init__(warning.get_message())
        self.warning = warning


@dataclass
class Pending:
    """An item whose entry is not complete yet: a regular file whose chunks are
    still being stored, or a closed directory not stored yet (``dir_node``).

    ``counted`` is False for the second and later members of a hard-link
    group: they share the first member's futures and must not count its
    bytes again.
    """

    entry: Entry
    futures: list[Future[ChunkResult]]
    counted: bool = True
    resolved: bool = False
    path: bytes = b""
    st: os.stat_result | None = None
    """The stat to remember in the files cache once the chunks are known
    (None: not to be remembered: special, stdin, changed while read)."""
    cached: list[ChunkRef] | None = None
    """The chunk list from the files cache (status ``U``): nothing was read."""
    path_key: bytes | None = None
    """``path``'s files-cache key from its lookup, for ``remember``."""
    prefix: list[ChunkRef] = field(default_factory=list)
    """The file's first chunks, stored by an interrupted backup (not read again);
    ``futures`` are the chunks after them."""
    file: FileTicket | None = None
    """A file the file pool reads: its entry and chunks come with this ticket
    (``entry`` is a placeholder holding the name until then)."""
    dir_node: DirNode | None = None
    """A closed directory not stored yet (``TreeBuilder.deferred``): its entry's
    tree ids come when it is stored."""
    dropped: bool = False
    """Resolved to nothing: a pooled file that could not be read (a warning was
    given), an implicit directory left empty by such files."""


@dataclass(frozen=True)
class Origin:
    """The file system object that took an archive path: where, which inode, a directory?"""

    path: bytes
    ident: tuple[int, int]
    is_dir: bool

    @staticmethod
    def of(path: bytes, st: os.stat_result) -> Origin:
        return Origin(path, (st.st_dev, st.st_ino), stat.S_ISDIR(st.st_mode))


@dataclass
class DirNode:
    """A directory being built: finished entries and items still in flight, by name.

    A name is taken once (:meth:`TreeBuilder.claim`): a second source mapping
    to the same archive path is not archived, with a warning; the same
    object again (overlapping roots) replaces its own entry by an equal one.
    ``entry`` is the directory's own entry (None: not backed up itself, only
    a parent of something that was); ``fs_path`` is where its metadata can be
    read for an implicit entry.
    """

    apath: bytes
    fs_path: bytes
    entry: Entry | None = None
    entries: dict[bytes, Entry] = field(default_factory=dict)
    pending: dict[bytes, Pending] = field(default_factory=dict)
    origins: dict[bytes, Origin] = field(default_factory=dict)
    """What took each name first (:meth:`TreeBuilder.claim`; kept nodes only)."""

    def put(self, entry: Entry) -> None:
        self.pending.pop(entry.name, None)
        self.entries[entry.name] = entry

    def put_pending(self, pending: Pending) -> None:
        self.entries.pop(pending.entry.name, None)
        self.pending[pending.entry.name] = pending

    last_file: FileTicket | None = None
    """The last file of this directory handed to the file pool: the pool
    completes files in order, so once it is done, all of them are."""

    def empty(self) -> bool:
        return not self.entries and not self.pending

    def files_done(self) -> bool:
        """No file of this directory is still in the file pool."""
        return self.last_file is None or self.last_file.done()


def parent_apath(apath: bytes) -> bytes:
    return apath.rpartition(b"/")[0]


def apath_name(apath: bytes) -> bytes:
    return apath.rpartition(b"/")[2]


def _directory_ident(fs_path: bytes) -> tuple[int, int]:
    """(device, inode) of the directory at ``fs_path`` (following symlinks), else _IMPLICIT."""
    if not fs_path:
        return _IMPLICIT
    try:
        st = os.stat(fs_path)
    except (OSError, ValueError):
        return _IMPLICIT
    return (st.st_dev, st.st_ino)


class TreeBuilder:
    """The directories of one archive, from the walk's nodes to stored TREE objects.

    ``trees`` is where directory objects go (None: a dry run, nothing is
    stored); ``read`` the metadata options for implicit parents;
    ``complete_file`` fills a file's pending entry (waiting for its chunks).
    """

    def __init__(
        self,
        trees: ObjectWriter | None,
        read: ReadOptions,
        complete_file: Callable[[Pending], None],
    ) -> None:
        self._trees = trees
        self._read = read
        self._complete_file = complete_file
        self.open: dict[bytes, DirNode] = {b"": DirNode(b"", b"")}
        """The archive root, every recursion root's directory and their parents:
        kept until the end, so several roots can add to them."""
        self.deferred: deque[Pending] = deque()
        """Closed directories waiting for files in the pool, in closing order
        (children before their parents): stored from the front."""

    # -- names -------------------------------------------------------------------------------

    def is_kept(self, node: DirNode) -> bool:
        return self.open.get(node.apath) is node

    def open_node(
        self, apath: bytes, fs_path: bytes, item: bytes = b"", origin: Origin | None = None
    ) -> DirNode:
        """The kept node of ``apath``, creating it and its parents as needed.

        A new node claims its name in its parent (:meth:`claim`) for
        ``origin`` (default: the directory at ``fs_path``, an implicit
        parent); ``item`` is named if that collides with another item.
        """
        node = self.open.get(apath)
        if node is None:
            parent_fs = os.path.dirname(fs_path) if fs_path else b""
            parent = self.open_node(parent_apath(apath), parent_fs, item)
            if origin is None:
                origin = Origin(fs_path, _directory_ident(fs_path), True)
            self.claim(parent, apath_name(apath), origin, item or fs_path)
            node = self.open[apath] = DirNode(apath, fs_path)
        return node

    def claim(self, node: DirNode, name: bytes, origin: Origin, item: bytes) -> None:
        """Take ``name`` in ``node`` for ``origin``, or raise the collision warning
        for ``item`` (the item being placed: ``origin`` or below it).

        Two sources that map to the same archive path (``/a/./f`` and
        ``/b/./f``, a root inside another root through a symlink, ...) cannot
        both be stored: a directory holds a name once. The first one keeps
        it; the other is not archived (status ``E`` and a warning naming
        both, exit code 1), never silently replaced. The same file system
        object again (``/a`` and ``/a/b``) is no collision, nor are two
        directories while the first is still open (a kept node: a recursion
        root or a parent of one): they become one directory holding the items
        of both, and their items are checked in turn. A directory already
        stored cannot take more items: a second one there is a collision.
        """
        if not self.is_kept(node):
            return  # a directory being walked: its items come from one listing, names unique
        first = node.origins.setdefault(name, origin)
        if first.ident == origin.ident:
            return
        apath = node.apath + b"/" + name if node.apath else name
        if first.is_dir and origin.is_dir and apath in self.open:
            return
        raise ItemError(
            ArchivePathCollisionWarning(
                os.fsdecode(item), os.fsdecode(apath), os.fsdecode(first.path)
            )
        )

    # -- storing directories -----------------------------------------------------------------

    def close_dir(self, node: DirNode, parent: DirNode | None) -> None:
        """Store a finished directory and add its entry to the parent (kept nodes wait)."""
        if self.is_kept(node):
            return
        assert node.entry is not None
        if node.entry.implicit and node.empty():
            return  # an excluded directory with nothing included below it
        target = parent if parent is not None else self.open_node(parent_apath(node.apath), b"")
        if not node.files_done() or self._deferred_below(node):  # store it later, walk on
            deferred = Pending(node.entry, [], dir_node=node)
            target.put_pending(deferred)
            self.deferred.append(deferred)
            return
        self.resolve_node(node)
        if node.entry.implicit and node.empty():
            return
        node.entry.tree = self.store_node(node)
        target.put(node.entry)

    def resolve(self, pending: Pending) -> None:
        """Complete a file's entry (``complete_file``), or a deferred directory's
        with its tree (storing the deferred ones up to it)."""
        if pending.resolved:
            return
        if pending.dir_node is not None:
            while not pending.resolved:
                self._store_deferred(self.deferred.popleft())
            return
        pending.resolved = True
        self._complete_file(pending)

    def resolve_node(self, node: DirNode) -> None:
        """Turn ``node``'s pending items into entries (waiting for them)."""
        for pending in node.pending.values():
            self.resolve(pending)
            if not pending.dropped:
                node.entries[pending.entry.name] = pending.entry
        node.pending.clear()

    def store_node(self, node: DirNode) -> list[bytes]:
        self.resolve_node(node)
        if self._trees is None:  # dry run
            return []
        return store_directory(self._trees, node.entries.values())

    def store_ready_dirs(self) -> None:
        """Store the deferred directories whose files are all done; wait for the
        oldest one when too many are deferred."""
        deferred = self.deferred
        while deferred:
            front = deferred[0]
            assert front.dir_node is not None
            if len(deferred) <= MAX_DEFERRED_DIRS and not front.dir_node.files_done():
                return
            self.resolve(front)

    def _deferred_below(self, node: DirNode) -> bool:
        """A directory in ``node`` is deferred still (it is stored before ``node``)."""
        if not self.deferred:
            return False
        return any(p.dir_node is not None and not p.resolved for p in node.pending.values())

    def _store_deferred(self, pending: Pending) -> None:
        """Store a deferred directory (every directory before it in the queue is stored)."""
        node = pending.dir_node
        assert node is not None and node.entry is not None
        self.resolve_node(node)
        if node.entry.implicit and node.empty():
            pending.dropped = True  # an excluded directory whose files could not be read
        else:
            node.entry.tree = self.store_node(node)
        pending.resolved = True

    def finish(self) -> list[bytes]:
        """Store the deferred and then the kept nodes, deepest first; returns the
        archive root's tree ids. Send every pooled file first."""
        while self.deferred:
            self.resolve(self.deferred[0])
        for apath in sorted(self.open, key=lambda a: a.count(b"/"), reverse=True):
            if not apath:
                continue
            node = self.open[apath]
            self.resolve_node(node)
            entry = node.entry or self.implicit_entry(node)
            if entry.implicit and node.empty():
                continue
            entry.tree = self.store_node(node)
            parent = self.open[parent_apath(apath)]
            existing = parent.entries.get(entry.name)
            if entry.implicit and existing is not None and not existing.implicit:
                continue  # the directory was backed up fully by another root
            parent.put(entry)
        root = self.open[b""]
        own = root_item(root)
        if own is not None:
            root.put(own)
        return self.store_node(root)

    def implicit_entry(self, node: DirNode) -> Entry:
        """A parent of a recursion root: its metadata if readable, else a plain directory."""
        name = apath_name(node.apath)
        entry = Entry(name=name, mode=stat.S_IFDIR | 0o755)
        if node.fs_path:
            with contextlib.suppress(OSError):
                entry = entry_from_stat(name, os.lstat(node.fs_path), self._read)
        if not entry.is_dir:
            entry = Entry(name=name, mode=stat.S_IFDIR | 0o755)
        entry.implicit = True
        return entry

    # -- checkpoints -------------------------------------------------------------------------

    def snapshot(
        self, walking: Iterable[DirNode], extra: tuple[bytes, Entry] | None
    ) -> list[bytes]:
        """Store the tree of what is done so far; returns its root TREE ids.

        The walk is not disturbed: finished directories are in their parents
        already; the directories being walked (``walking``) and the kept ones
        are stored as copies holding the entries finished so far (files in
        flight are waited for); ``extra`` (a directory's archive path and an
        entry) is added, for the part of a file being read.
        """
        assert self._trees is not None
        contents: dict[bytes, dict[bytes, Entry]] = {}
        nodes: dict[bytes, DirNode] = {}
        for node in [*self.open.values(), *walking]:
            contents.setdefault(node.apath, {}).update(self._finished_entries(node))
            if node.entry is not None or node.apath not in nodes:
                nodes[node.apath] = node
        if extra is not None:
            apath, entry = extra
            contents.setdefault(apath, {})[entry.name] = entry
        own = root_item(self.open[b""])
        if own is not None:
            contents.setdefault(b"", {})[own.name] = own
        for apath in sorted(contents, key=lambda a: a.count(b"/"), reverse=True):
            if apath:
                self._snapshot_dir(nodes[apath], contents)
        return store_directory(self._trees, contents[b""].values())

    def _finished_entries(self, node: DirNode) -> dict[bytes, Entry]:
        entries = dict(node.entries)
        for name, pending in node.pending.items():
            self.resolve(pending)
            if not pending.dropped:
                entries[name] = pending.entry
        return entries

    def _snapshot_dir(self, node: DirNode, contents: dict[bytes, dict[bytes, Entry]]) -> None:
        """Store a copy of ``node`` holding ``contents``; enter it into its parent (as finish)."""
        assert self._trees is not None
        entries = contents[node.apath]
        entry = node.entry or self.implicit_entry(node)
        if entry.implicit and not entries:
            return
        stored = replace(entry, tree=store_directory(self._trees, entries.values()))
        siblings = contents[parent_apath(node.apath)]
        existing = siblings.get(stored.name)
        if stored.implicit and existing is not None and not existing.implicit:
            return
        siblings[stored.name] = stored


def root_item(root: DirNode) -> Entry | None:
    """Borg's ``.`` item: the metadata of a source directory that is the
    archive root itself (``create .``, ``create /src/./``), stored in the
    root as an entry named ``.`` without a tree of its own (its contents are
    the root's other entries). None when the root is only implied."""
    if root.entry is None or root.entry.implicit:
        return None
    return replace(root.entry, name=b".", tree=None)
