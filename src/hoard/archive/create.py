"""Backing up a set of paths into a tree of directory objects.

The walk follows Borg 1.4's ``_rec_walk`` step by step, so that what is
archived, what is excluded and the ``--list`` status letters are Borg's:

- a path is matched against the patterns *before* it is stat'ed (an item
  excluded with ``!``/``--exclude`` is never touched); an excluded
  directory is still descended into when its pattern allows recursion, and
  is then kept only as an implicit directory if something below it is
  included;
- ``--exclude-caches`` / ``--exclude-if-present``: a tagged directory is
  left out with everything in it; with ``--keep-exclude-tags`` the directory
  and its tag files are kept (status ``x`` for the directory either way);
- ``-x``: a directory on another file system is stored, but not entered;
- the repository and the cache directory are never backed up, and a
  recursion root is not entered twice;
- ``/this/is/stripped/./kept``: Borg's "slashdot" hack archives ``kept``.

Regular files are opened without following links, ``fstat``-ed (a file that
turned into something else since it was listed is skipped with a race
warning), read and chunked in this thread; their chunks go to the
:class:`ChunkPipeline`, and a directory's entries are completed (chunk
futures resolved) only when the directory is stored, so many files are in
flight at once. A file whose ctime changed while it was read gets status
``C`` and a FileChangedWarning. Every per-item failure is a warning with
status ``E``; the backup goes on.

Where hoard's tree format differs from Borg's flat item list: the
directories above a recursion root (``tmp`` and ``tmp/x`` for ``/tmp/x/y``)
are stored as *implicit* entries (``i``), which list and extract do not
show, and a directory that occurs twice (two roots with the same archive
path) is one directory holding the items of both while the first is still
open (a recursion root or a parent of one); two other items with the
same archive path cannot both be stored: the first is kept, the second is
not archived, with a warning naming both (exit code 1), never dropped
silently. Paths are bytes
throughout: any name the OS accepts is archived exactly, whatever the locale.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import stat
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import IO

from hoard.archive.chunker import Chunker, ChunkerParams, FixedChunker, FragmentSource
from hoard.archive.filepool import FilePool, FileTicket
from hoard.archive.fileread import DEFAULT_BUFFER_SIZE, ReadStats, as_fragments, read_fragments
from hoard.archive.filescache import FileLookup, FilesCache
from hoard.archive.filework import FILE_FLAGS, FileJob, open_noatime, same_object
from hoard.archive.items import ZERO_ID, ChunkRef, Entry
from hoard.archive.metadata import (
    FS_IOC_GETFLAGS,
    ReadOptions,
    entry_from_stat,
    read_flags,
    read_xattrs,
)
from hoard.archive.orderedoutput import OrderedOutput
from hoard.archive.oserrors import os_warning
from hoard.archive.patterns import PatternMatcher
from hoard.archive.pipeline import ChunkPipeline, ChunkResult
from hoard.archive.record import ArchiveStats
from hoard.archive.tree import ObjectWriter
from hoard.archive.treebuild import (
    DirNode,
    ItemError,
    Origin,
    Pending,
    TreeBuilder,
    apath_name,
    parent_apath,
)
from hoard.errors import (
    BackupInterrupted,
    BackupRaceConditionWarning,
    BackupWarning,
    FileChangedWarning,
    HoardWarning,
    InvalidArchivePath,
)
from hoard.objects.store import ObjectStore

logger = logging.getLogger(__name__)

PART_SUFFIX = b".hoard_part"
"""A checkpoint taken while a file was being read holds the part read so far
under the file's name plus this suffix (Borg 1.x: ``.borg_part_N``)."""
CACHEDIR_TAG = b"CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
FS_NODUMP_FL = 0x00000040
"""Linux's ``chattr +d`` inode flag (Borg's ``UF_NODUMP`` there)."""

_UNSAFE_PREFIX = re.compile(rb"^((\.\.)?/+)+")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = FILE_FLAGS
_SPECIAL_FLAGS = os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC
"""``--read-special``: a FIFO must block until its writer comes, a device is a device."""


@dataclass(frozen=True)
class CreateOptions:
    """The ``create`` options that shape what is archived.

    ``skip`` holds ``(st_dev, st_ino)`` of directories never to back up (the
    repository, the cache), as Borg's ``skip_inodes``.
    """

    read: ReadOptions = field(default_factory=ReadOptions)
    one_file_system: bool = False
    exclude_caches: bool = False
    exclude_if_present: tuple[bytes, ...] = ()
    keep_exclude_tags: bool = False
    exclude_nodump: bool = False
    read_special: bool = False
    dry_run: bool = False
    sparse: bool = True
    skip: frozenset[tuple[int, int]] = frozenset()


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
"""Called with (status letter, file system path as given) for each item, in walk order."""

WarningSink = Callable[[HoardWarning], None]

StoredSize = Callable[[bytes], int | None]
"""``stored_size(chunk_id)``: the chunk's stored length, None if the repository lacks it."""

CheckpointSink = Callable[[list[bytes], ArchiveStats], None]
"""Stores a checkpoint archive record of these root tree ids and figures."""


@dataclass(frozen=True)
class Checkpointing:
    """Store a checkpoint every ``interval`` seconds (0: only on Ctrl-C) through ``store``."""

    interval: float
    store: CheckpointSink


@dataclass
class _Partial:
    """A file being read: where it goes, its entry, the chunks queued so far.

    ``prefix``: the first chunks, taken from an interrupted backup (the
    queued ones follow them). ``st`` (with ``path`` and the open ``fd``): the
    stat from before the read, for a file whose part may be remembered in
    the files cache at a checkpoint (None: special files, standard input).
    """

    node: DirNode
    entry: Entry
    futures: list[Future[ChunkResult]] = field(default_factory=list)
    prefix: list[ChunkRef] = field(default_factory=list)
    path: bytes = b""
    st: os.stat_result | None = None
    fd: int = -1


def archive_path(path: bytes, *, file: bool = False) -> bytes:
    """The archive path of ``path``: the one function every path entering an
    archive goes through (source paths after the slashdot cut, the items of
    ``--paths-from-stdin``/``--paths-from-command``, ``--stdin-name``).

    Borg's rules: normalised (``a//b``, ``./a``, ``a/./b``, ``a/../b``), no
    leading ``/`` or ``../``; ``/``, ``.`` and ``..`` map to ``b""``, the
    archive root. Raises InvalidArchivePath for a path with a NUL byte (no
    file name can hold one), and with ``file`` (the name of a file, as
    ``--stdin-name``) for one that is empty or normalises to the root.
    """
    if b"\0" in path:
        raise InvalidArchivePath(os.fsdecode(path), "it contains a NUL byte")
    if _is_normal_relative(path):  # most paths of a walk: nothing to normalise or cut
        return path
    safe = _UNSAFE_PREFIX.sub(b"", os.path.normpath(path)) if path else b""
    safe = b"" if safe in (b".", b"..") else safe
    if file and not safe:
        reason = "it is empty" if not path else "it normalises to the archive root, not a file"
        raise InvalidArchivePath(os.fsdecode(path), reason)
    return safe


def _is_normal_relative(path: bytes) -> bool:
    """``path`` is what :func:`archive_path` makes of it: not empty, no leading ``/``
    or ``.``, no empty, ``.`` or ``..`` component, no trailing ``/`` (a name
    starting with a dot inside the path just takes the long way)."""
    return (
        path[:1] not in (b"", b"/", b".")
        and b"//" not in path
        and b"/." not in path
        and path[-1:] != b"/"
    )


def _valid_source(given: bytes) -> None:
    """A source path that no file and no archive path can have is an item error."""
    try:
        archive_path(given)
    except InvalidArchivePath as exc:
        shown = os.fsdecode(given).replace("\0", "\\0")  # shown escaped, not as a raw NUL
        raise ItemError(BackupWarning(shown, exc.reason)) from None


def strip_prefix(path: bytes) -> bytes | None:
    """Borg's slashdot hack: ``/a/b/./c`` archives ``c``; returns ``/a/b/`` (or None)."""
    pos = path.find(b"/./")
    if pos <= 0:
        return None
    return os.path.normpath(path[:pos]) + b"/"


def _child_path(path: bytes, name: bytes) -> bytes:
    """``os.path.normpath(os.path.join(path, name))`` for a normal ``path`` and a
    name from its listing (no ``/``, never ``.`` or ``..``), without the cost."""
    if path == b".":
        return name
    return path + name if path[-1:] == b"/" else path + b"/" + name


def item_warning(path: bytes, op: str, exc: OSError, *, root: bool = False) -> HoardWarning:
    """The warning Borg gives for an OSError while backing up ``path`` during ``op``
    (:func:`~hoard.archive.oserrors.os_warning`).

    Borg names the file as it opened it: by its name in its directory, or
    by the whole path for a path given on the command line (``root``).
    """
    name = path if root else (os.path.basename(path) or path)
    return os_warning(os.fsdecode(path), op, exc, name=name)


def _failed(path: bytes, op: str, exc: OSError) -> ItemError:
    return ItemError(item_warning(path, op, exc))


def _hardlink_id(st: os.stat_result) -> bytes:
    """Stable per (device, inode), so an unchanged directory stays the same object."""
    return hashlib.blake2b(f"{st.st_dev}:{st.st_ino}".encode(), digest_size=16).digest()


def _is_special(mode: int) -> bool:
    return stat.S_ISBLK(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _update_check(path: bytes, before: os.stat_result, now: os.stat_result) -> os.stat_result:
    """Borg's ``stat_update_check``: same type and inode as listed, or a race warning."""
    if not same_object(before, now):
        raise ItemError(BackupRaceConditionWarning(os.fsdecode(path)))
    return now


def _fstat(path: bytes, fd: int) -> os.stat_result:
    try:
        return os.fstat(fd)
    except OSError as exc:
        raise _failed(path, "fstat", exc) from None


_open_noatime = open_noatime


def is_cachedir(path: bytes) -> bool:
    """The CACHEDIR.TAG protocol: a tag file that starts with the signature."""
    try:
        with open(os.path.join(path, CACHEDIR_TAG), "rb") as f:
            return f.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False


def has_nodump_flag(path: bytes) -> bool:
    """Whether ``path`` carries the nodump inode flag (symlinks and failures: no)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY)
    except OSError:
        return False
    try:
        buf = bytearray(struct.calcsize("l"))
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
    except OSError:
        return False
    finally:
        os.close(fd)
    return bool(struct.unpack("l", bytes(buf))[0] & FS_NODUMP_FL)


_KNOWN_SIZES_MAX = 1 << 16
"""Bound of ``Creator._known_sizes`` (answers not accounted, e.g. of an ``M`` file, stay)."""


class Creator:
    """Builds one archive's tree; ``run`` returns the root tree ids, ``stats`` the figures.

    ``store``, ``pipeline`` and ``chunker`` may be None for a dry run, which
    reads and stores nothing and reports status ``-`` (Borg's). ``interrupted``
    is polled between items and chunks: once it answers True the walk stops
    with BackupInterrupted (the first Ctrl-C), after storing a checkpoint
    when ``checkpoints`` is given.

    ``files_cache`` (with ``stored_size``, which answers for the repository)
    lets unchanged regular files go unread (status ``U``). ``checkpoints``:
    every interval, between items or between chunks of a file, the tree of
    what is done so far is stored (:meth:`checkpoint_tree`) and handed to
    ``checkpoints.store``; then the files cache is saved (without ageing),
    with a partial entry for a file being read: a rerun takes that file's
    stored chunks and reads it only from the last one's end on, if the file
    is unchanged (docs/design/checkpoints.md, "Resuming").
    """

    def __init__(
        self,
        store: ObjectStore | None,
        pipeline: ChunkPipeline | None,
        chunker: Chunker | None,
        matcher: PatternMatcher,
        options: CreateOptions,
        *,
        report: Reporter,
        warn: WarningSink,
        progress: Callable[[ArchiveStats, bytes], None] | None = None,
        interrupted: Callable[[], bool] = lambda: False,
        files_cache: FilesCache | None = None,
        stored_size: StoredSize | None = None,
        checkpoints: Checkpointing | None = None,
        file_pool: FilePool | None = None,
    ) -> None:
        if not options.dry_run and (store is None or pipeline is None or chunker is None):
            raise ValueError("a real run needs a store, a pipeline and a chunker")
        self.store = store
        self._trees: ObjectWriter | None = pipeline if pipeline is not None else store
        """Where directories go: the pipeline seals and stores them on its threads."""
        self.pipeline = pipeline
        self.chunker = chunker
        self.matcher = matcher
        self.options = options
        self.report = report
        self.warn = warn
        self.progress = progress
        self.interrupted = interrupted
        self.files_cache = files_cache if stored_size is not None else None
        self._stored_size: StoredSize = stored_size or (lambda _id: None)
        self._known_sizes: dict[bytes, int] = {}
        """Stored sizes found by the files cache's presence checks, until accounted."""
        self.checkpoints = None if options.dry_run else checkpoints
        self._last_checkpoint = time.monotonic()
        self._stack: list[DirNode] = []
        """Directories being walked, outermost first (not in ``TreeBuilder.open`` unless kept)."""
        self.stats = ArchiveStats()
        self._metadata_before = store.metadata_added if store is not None else 0
        """What the store had added of metadata when this backup began (see ``_finish``)."""
        self.read_stats = ReadStats()
        self._hardlinks: dict[tuple[int, int], Pending] = {}
        self._seen_ids: set[bytes] = set()
        self._skip: set[tuple[int, int]] = set(options.skip)
        self._strip: bytes | None = None
        self._restrict_dev: int | None = None
        self.file_pool = None if options.dry_run else file_pool
        self._out = OrderedOutput()
        self._tree = TreeBuilder(self._trees, options.read, self._complete_file)
        """The tree building stage: directories, kept nodes, deferred directories."""

    # -- top level ----------------------------------------------------------------------

    def run(self, paths: Iterable[bytes]) -> list[bytes]:
        """Archive ``paths`` (recursion roots, as given); returns the root TREE ids."""
        for given in paths:
            self._check_interrupt()
            self._backup_root(given)
        return self._finish()

    def run_items(self, paths: Iterable[bytes]) -> list[bytes]:
        """Archive exactly these items (``--paths-from-stdin``/``--paths-from-command``).

        As Borg: nothing below a directory is entered, and no pattern, tag or
        ``-x`` applies ("all control is external"). Parents not listed become
        implicit directories.
        """
        for given in paths:
            self._check_interrupt()
            self._strip = strip_prefix(given)
            path = os.path.normpath(given)
            status: str | None
            try:
                _valid_source(given)
                st = self._lstat(path, root=True)
                if stat.S_ISDIR(st.st_mode):
                    status = self._process_single_dir(path, st)
                else:
                    status = self._process_any(path, st, None)
            except ItemError as failure:
                self._warn(failure.warning)
                status = "E"
            self._item_done(path, status, excluded=False)
        return self._finish()

    def _process_single_dir(self, path: bytes, st: os.stat_result) -> str:
        if self.options.dry_run:
            return "-"
        try:
            fd = _open_noatime(path, _DIR_FLAGS)
        except OSError as exc:
            raise _failed(path, "dir_open", exc) from None
        try:
            st = _update_check(path, st, _fstat(path, fd))
            node = self._dir_node(path, st, fd, None)
        finally:
            os.close(fd)
        return "x" if node is None else "d"

    def run_stream(self, stream: IO[bytes], meta: StreamMeta) -> list[bytes]:
        """Archive the bytes of ``stream`` as one regular file (``create -``)."""
        path = meta.path
        apath = archive_path(path, file=True)
        self._report("-" if self.options.dry_run else "i", path)
        if not self.options.dry_run:
            self._read_stream(stream, meta, path, apath)
        return self._finish()

    def _read_stream(self, stream: IO[bytes], meta: StreamMeta, path: bytes, apath: bytes) -> None:
        now = int(time.time()) * 1_000_000_000  # whole seconds, as Borg
        entry = Entry(
            name=apath_name(apath),
            mode=stat.S_IFREG | (meta.mode & 0o7777),
            uid=meta.uid,
            gid=meta.gid,
            user=meta.user,
            group=meta.group,
            mtime=now,
            ctime=now,
            atime=now if self.options.read.atime else None,
        )
        data = iter(lambda: stream.read(DEFAULT_BUFFER_SIZE), b"")
        node = self._tree.open_node(parent_apath(apath), b"")
        try:
            futures = self._submit_all(as_fragments(data), _Partial(node, entry))
        except OSError as exc:
            self._warn(item_warning(path, "read", exc))
            self._report("E", path)
            return
        node.put_pending(Pending(entry, futures))
        self.stats.nfiles += 1

    def _backup_root(self, given: bytes) -> None:
        self._strip = strip_prefix(given)
        path = os.path.normpath(given)
        try:
            _valid_source(given)
        except ItemError as failure:  # as a root that cannot be stat'ed: no status line
            self._warn(failure.warning)
            return
        try:
            st = os.lstat(path)
        except OSError as exc:  # Borg: a warning, no status line
            self._warn(item_warning(path, "stat", exc, root=True))
            return
        self._restrict_dev = st.st_dev if self.options.one_file_system else None
        self._walk(path, None, st)
        self._skip.add((st.st_dev, st.st_ino))  # never enter this root again

    def _check_interrupt(self, partial: _Partial | None = None) -> None:
        """Stop at a Ctrl-C (after a checkpoint); take a checkpoint when one is due."""
        if self.interrupted():
            if self.checkpoints is not None:
                self._checkpoint(partial)
            raise BackupInterrupted()
        every = self.checkpoints.interval if self.checkpoints is not None else 0
        if every > 0 and time.monotonic() - self._last_checkpoint >= every:
            self._checkpoint(partial)

    # -- checkpoints ----------------------------------------------------------------------

    def _checkpoint(self, partial: _Partial | None) -> None:
        assert self.checkpoints is not None
        root = self.checkpoint_tree(partial)
        self.checkpoints.store(root, replace(self.stats))
        self._last_checkpoint = time.monotonic()
        self._save_files_cache(partial)

    def _save_files_cache(self, partial: _Partial | None) -> None:
        """After a checkpoint (its chunks are flushed and indexed): save the files cache,
        with the part of ``partial`` stored so far, so that a rerun resumes after it."""
        cache = self.files_cache
        if cache is None:
            return
        if partial is not None and partial.st is not None and self._unchanged(partial):
            cache.remember_partial(partial.path, partial.st, self._partial_chunks(partial))
        try:
            cache.save(checkpoint=True)
        except OSError as exc:
            self._warn(HoardWarning(f"files cache not saved: {exc}"))

    @staticmethod
    def _unchanged(partial: _Partial) -> bool:
        """The file being read has the ctime it had when its read began."""
        assert partial.st is not None
        try:
            return os.fstat(partial.fd).st_ctime_ns == partial.st.st_ctime_ns
        except OSError:
            return False

    def checkpoint_tree(self, partial: _Partial | None = None) -> list[bytes]:
        """Store the tree of what is done so far; returns its root TREE ids.

        The walk is not disturbed: finished directories are in their parents
        already; the directories being walked (and the kept ones) are stored
        as copies holding the entries finished so far (files in flight are
        waited for), and ``partial``, a file being read, as a regular file
        named ``<name>.hoard_part`` holding the chunks stored so far.
        """
        extra = None if partial is None else (partial.node.apath, self._part_entry(partial))
        root = self._tree.snapshot(self._stack, extra)
        self._trees_stored()
        return root

    @staticmethod
    def _partial_chunks(partial: _Partial) -> list[ChunkRef]:
        """The chunks of a file being read, so far (waits for the queued ones)."""
        queued = [ChunkRef(r.id, r.size) for r in (f.result() for f in partial.futures)]
        return [*partial.prefix, *queued]

    def _part_entry(self, partial: _Partial) -> Entry:
        chunks = self._partial_chunks(partial)
        name = partial.entry.name + PART_SUFFIX
        size = sum(c.size for c in chunks)
        return replace(partial.entry, name=name, chunks=chunks, size=size, hardlink_id=None)

    @contextlib.contextmanager
    def _descending(self, node: DirNode | None) -> Iterator[None]:
        """``node`` is being walked: a checkpoint meanwhile stores what it holds so far."""
        if node is None:
            yield
            return
        self._stack.append(node)
        try:
            yield
        finally:
            self._stack.pop()

    # -- the walk (Borg's _rec_walk) ----------------------------------------------------

    def _walk(self, path: bytes, parent: DirNode | None, st: os.stat_result | None) -> None:
        """Back up ``path`` and, for a directory, what is below it.

        ``parent`` is the node the item goes into; None means "by its archive
        path, among the kept nodes" (recursion roots, children of stripped
        directories). ``st`` is the lstat result if already known.
        """
        self._check_interrupt()
        status: str | None = None
        decision = self.matcher.decide(path)
        excluded_dir = not decision.included
        if excluded_dir:
            self._report("x", path)
            if not decision.recurse_dir:
                return
        try:
            if st is None:
                st = self._lstat(path)
            if excluded_dir and not stat.S_ISDIR(st.st_mode):
                return
            if (st.st_dev, st.st_ino) in self._skip:
                return
            if self.options.exclude_nodump and has_nodump_flag(path):
                self._report("x", path)
                return
            if stat.S_ISDIR(st.st_mode):
                status = self._process_dir(path, st, parent, excluded=excluded_dir)
            else:
                status = self._process_any(path, st, parent)
        except ItemError as failure:
            self._warn(failure.warning)
            status = "E"
        self._item_done(path, status, excluded=excluded_dir)

    def _item_done(self, path: bytes, status: str | None, *, excluded: bool) -> None:
        """The final status of an item: ``C`` also warns; None was reported already
        (or comes from the file pool). Stores what the pool has finished meanwhile."""
        if status == "C":
            self._warn(FileChangedWarning(os.fsdecode(path)))
        if not excluded and status is not None:
            self._report(status, path)
        if self._tree.deferred:
            self._tree.store_ready_dirs()
        self._out.drain()

    @staticmethod
    def _lstat(path: bytes, *, root: bool = False) -> os.stat_result:
        try:
            return os.lstat(path)
        except OSError as exc:
            raise ItemError(item_warning(path, "stat", exc, root=root)) from None

    def _process_dir(
        self, path: bytes, st: os.stat_result, parent: DirNode | None, *, excluded: bool
    ) -> str | None:
        recurse = self._restrict_dev is None or st.st_dev == self._restrict_dev
        try:
            fd = _open_noatime(path, _DIR_FLAGS)
        except OSError as exc:
            raise _failed(path, "dir_open", exc) from None
        try:
            st = _update_check(path, st, _fstat(path, fd))
            tags = self._tags(path) if recurse else []
            if tags:
                if not excluded:
                    self._tagged_dir(path, st, fd, parent, tags)
                return None
            node = self._dir_node(path, st, fd, parent, implicit=excluded)
            status = self._dir_status(node, excluded)
            try:
                if recurse:
                    with self._descending(node):
                        self._walk_children(path, fd, node)
            finally:
                if node is not None:
                    self._tree.close_dir(node, parent)
            return status
        finally:
            os.close(fd)

    def _dir_status(self, node: DirNode | None, excluded: bool) -> str | None:
        if excluded:
            return None  # "x" was reported already
        if self.options.dry_run:
            return "-"
        return "x" if node is None else "d"  # None: above the slashdot, not archived (Borg)

    def _tagged_dir(
        self, path: bytes, st: os.stat_result, fd: int, parent: DirNode | None, tags: list[bytes]
    ) -> None:
        """A directory excluded by a tag: dropped, or with --keep-exclude-tags
        kept with nothing but its tags (status ``x`` either way, as Borg)."""
        if self.options.keep_exclude_tags:
            node = None if self.options.dry_run else self._dir_node(path, st, fd, parent)
            try:
                with self._descending(node):
                    for tag in tags:
                        self._walk(os.path.join(path, tag), node, None)
            finally:
                if node is not None:
                    self._tree.close_dir(node, parent)
        self._report("x", path)

    def _tags(self, path: bytes) -> list[bytes]:
        """Borg's ``dir_is_tagged``: the tag names that exclude this directory."""
        tags: list[bytes] = []
        if self.options.exclude_caches and is_cachedir(path):
            tags.append(CACHEDIR_TAG)
        for tag in self.options.exclude_if_present:
            if os.path.exists(os.path.join(path, tag)):
                tags.append(tag)
        return tags

    def _walk_children(self, path: bytes, fd: int, node: DirNode | None) -> None:
        try:
            with os.scandir(fd) as it:
                names = sorted(os.fsencode(d.name) for d in it)
        except OSError as exc:
            raise _failed(path, "scandir", exc) from None
        for name in names:
            self._walk(_child_path(path, name), node, None)

    def _dir_node(
        self,
        path: bytes,
        st: os.stat_result,
        fd: int,
        parent: DirNode | None,
        *,
        implicit: bool = False,
    ) -> DirNode | None:
        """The node collecting a directory's items (None above the slashdot).

        ``implicit``: the directory is excluded itself; it is kept (marked
        implicit) only if something below it is included.
        """
        apath = self._apath(path)
        if apath is None:
            return None
        origin = Origin.of(path, st)
        node = self._tree.open.get(apath)
        if node is None and parent is None:
            node = self._tree.open_node(apath, path, path, origin)  # claims the name in its parent
        elif apath:
            owner = self._tree.open[parent_apath(apath)] if node is not None else parent
            assert owner is not None  # no kept node and no parent was the first case
            self._tree.claim(owner, apath_name(apath), origin, path)
        entry = self._entry(path, apath_name(apath), st, fd=fd)
        entry.implicit = implicit
        if node is not None:  # kept until the end; an explicit entry wins over an implicit one
            if node.entry is None or node.entry.implicit or not implicit:
                node.entry = entry
            return node
        return DirNode(apath, path, entry)

    # -- non-directories (Borg's _process_any) ----------------------------------------------

    def _process_any(self, path: bytes, st: os.stat_result, parent: DirNode | None) -> str | None:
        if self.options.dry_run:
            if not stat.S_ISSOCK(st.st_mode):
                self._place(path, st, parent)  # a collision is reported in a dry run too
            return "-"
        mode = st.st_mode
        if stat.S_ISREG(mode):
            return self._process_file(path, st, parent)
        if stat.S_ISLNK(mode):
            target = self._special_target(path) if self.options.read_special else None
            if target is not None:
                return self._process_file(path, target, parent, special=True, follow=True)
            return self._process_symlink(path, st, parent)
        if _is_special(mode):
            if self.options.read_special:
                return self._process_file(path, st, parent, special=True)
            return self._process_special(path, st, parent)
        if stat.S_ISSOCK(mode):
            return None  # sockets are not archived (Borg)
        raise ItemError(BackupWarning(os.fsdecode(path), "unknown file type"))

    @staticmethod
    def _special_target(path: bytes) -> os.stat_result | None:
        """--read-special follows a symlink only to a device or FIFO."""
        try:
            target = os.stat(path)
        except OSError:
            return None
        return target if _is_special(target.st_mode) else None

    def _place(
        self, path: bytes, st: os.stat_result, parent: DirNode | None
    ) -> tuple[DirNode, bytes] | None:
        """The node an item goes into and its name there (None above the slashdot).

        Raises the collision warning if the name is taken there by another item.
        """
        apath = self._apath(path)
        if not apath:
            return None
        if parent is None:
            parent = self._tree.open_node(parent_apath(apath), os.path.dirname(path), path)
        name = apath_name(apath)
        if self._tree.is_kept(parent):  # else no name to claim (_claim)
            self._tree.claim(parent, name, Origin.of(path, st), path)
        return parent, name

    def _entry(self, path: bytes, name: bytes, st: os.stat_result, fd: int | None = None) -> Entry:
        """Metadata of one item: stat fields, xattrs and ACLs, flags (with an fd)."""
        entry = entry_from_stat(name, st, self.options.read)
        try:
            entry.xattrs = read_xattrs(path if fd is None else fd, self.options.read)
        except OSError as exc:
            raise _failed(path, "xattrs", exc) from None
        if fd is not None and self.options.read.flags:
            entry.flags = read_flags(fd)
        return entry

    def _process_symlink(self, path: bytes, st: os.stat_result, parent: DirNode | None) -> str:
        place = self._place(path, st, parent)
        if place is None:
            return "x"
        node, name = place
        entry = self._entry(path, name, st)
        try:
            entry.link_target = os.readlink(path)
        except OSError as exc:
            raise _failed(path, "readlink", exc) from None
        node.put(entry)
        return "s"

    def _process_special(self, path: bytes, st: os.stat_result, parent: DirNode | None) -> str:
        place = self._place(path, st, parent)
        if place is None:
            return "x"
        node, name = place
        node.put(self._entry(path, name, st))
        return "f" if stat.S_ISFIFO(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else "c"

    def _process_file(
        self,
        path: bytes,
        st: os.stat_result,
        parent: DirNode | None,
        *,
        special: bool = False,
        follow: bool = False,
    ) -> str | None:
        """A regular file, or with --read-special a device or FIFO read like one.

        Prints ``A`` once the file is open (as Borg, before reading); returns
        ``C`` if its ctime changed while it was read, else None.
        """
        place = self._place(path, st, parent)
        if place is None:
            return "x"
        node, name = place
        key = (st.st_dev, st.st_ino)
        if not special and st.st_nlink > 1 and key in self._hardlinks:
            node.put_pending(self._hardlink_member(path, name, st, self._hardlinks[key]))
            return "h"
        lookup: FileLookup | None = None
        if self._pooled(st, special, follow):
            lookup = self._lookup(path, st, False)
            # A file the files cache knows is only described: cheaper here than
            # a message to a worker. One an interrupted backup began goes on here.
            if lookup.chunks is None and not self._resumable(path, st, False):
                self._submit_file(path, node, name, st, lookup)
                return None
        flags = _SPECIAL_FLAGS if special else _FILE_FLAGS
        try:
            fd = _open_noatime(path, flags if follow else flags | os.O_NOFOLLOW)
        except OSError as exc:
            raise _failed(path, "open", exc) from None
        try:
            pending, changed = self._read_file(path, node, name, st, fd, special, lookup)
        finally:
            os.close(fd)
        node.put_pending(pending)
        if not special and st.st_nlink > 1:
            pending.entry.hardlink_id = _hardlink_id(st)
            self._hardlinks[key] = pending
        self.stats.nfiles += 1
        return "C" if changed else None

    def _pooled(self, st: os.stat_result, special: bool, follow: bool) -> bool:
        """A file for the file pool: a small regular file with one link (hard
        links and special files stay on the walker thread, which tracks them)."""
        if self.file_pool is None or special or follow or st.st_nlink != 1:
            return False
        return self.file_pool.takes(st.st_size)

    def _submit_file(
        self, path: bytes, node: DirNode, name: bytes, st: os.stat_result, lookup: FileLookup
    ) -> None:
        """Hand a file to the file pool; its entry (and its ``--list`` line) comes later.

        A file the files cache knows (``U``) is only opened and described
        there; its chunks are the cached ones.
        """
        assert self.file_pool is not None
        job = FileJob(path, name, st, read=lookup.chunks is None)
        ticket = self.file_pool.submit(job)
        placeholder = Entry(name=name, mode=st.st_mode)
        pending = Pending(placeholder, [], path=path, cached=lookup.chunks, file=ticket)
        pending.path_key = lookup.key
        node.put_pending(pending)
        node.last_file = ticket
        self._out.after(ticket, lambda: self._file_messages(path, lookup.status, ticket))

    def _file_messages(self, path: bytes, status: str, ticket: FileTicket) -> None:
        """The ``--list`` line and warnings of a pooled file, in walk order."""
        if ticket.future.exception() is not None:
            return  # the backup fails with it (Creator._resolve_pooled)
        outcome = ticket.result().outcome
        if outcome.entry is None:
            self.warn(self._read_failure(path, outcome.failure, outcome.race).warning)
            self._print("E", path)
            return
        self._print(status, path)
        if outcome.changed:
            self.warn(FileChangedWarning(os.fsdecode(path)))
            self._print("C", path)

    @staticmethod
    def _read_failure(path: bytes, failure: tuple[str, OSError] | None, race: bool) -> ItemError:
        if race or failure is None:
            return ItemError(BackupRaceConditionWarning(os.fsdecode(path)))
        return _failed(path, *failure)

    def _read_file(
        self,
        path: bytes,
        node: DirNode,
        name: bytes,
        st: os.stat_result,
        fd: int,
        special: bool,
        lookup: FileLookup | None = None,
    ) -> tuple[Pending, bool]:
        """Read and chunk an open file, unless the files cache knows it unchanged (``U``;
        ``lookup``: what the files cache said already)."""
        st = _update_check(path, st, _fstat(path, fd))
        entry = self._entry(path, name, st, fd=fd)
        if special:  # stored as the regular file it reads like (Borg)
            entry.mode = stat.S_IFREG | stat.S_IMODE(st.st_mode)
        if lookup is None:
            lookup = self._lookup(path, st, special)
        self._report(lookup.status, path)
        if lookup.chunks is not None:
            return Pending(entry, [], cached=lookup.chunks), False
        prefix = self._resumable(path, st, special)
        partial = _Partial(node, entry, [], prefix, path, None if special else st, fd)
        chunker = self.chunker
        try:
            if prefix:  # go on at the cut where the interrupted backup stopped
                os.lseek(fd, sum(c.size for c in prefix), os.SEEK_SET)
                chunker = self._restarted_chunker()
            # Devices answer SEEK_DATA/SEEK_HOLE strangely (/dev/null: data and
            # hole both at 0): read them plainly, holes are a file system matter.
            sparse = self.options.sparse and not special
            fragments = read_fragments(fd, sparse=sparse, stats=self.read_stats)
            futures = self._submit_all(fragments, partial, chunker)
            after = os.fstat(fd)
        except OSError as exc:
            raise _failed(path, "read", exc) from None
        changed = not special and after.st_ctime_ns != st.st_ctime_ns
        remember = None if special or changed else st
        pending = Pending(entry, futures, path=path, st=remember, prefix=prefix)
        pending.path_key = lookup.key
        return pending, changed

    def _resumable(self, path: bytes, st: os.stat_result, special: bool) -> list[ChunkRef]:
        """The first chunks of a file an interrupted backup was reading, if still valid.

        The files cache's partial entry of the file is dropped either way: a
        checkpoint while this read goes on records a new one.
        """
        if special or self.files_cache is None or not self.files_cache.has_partials:
            return []
        chunks = self.files_cache.resumable(path, st, self._contains) or []
        self.files_cache.forget_partial(path)
        if chunks:
            offset = sum(c.size for c in chunks)
            logger.debug(
                "Resuming %s at offset %d (%d chunks stored by an interrupted backup).",
                os.fsdecode(path),
                offset,
                len(chunks),
            )
        return chunks

    def _restarted_chunker(self) -> Chunker:
        """The chunker that cuts the rest of a file after a cut as the whole file would be.

        A content-defined cut depends only on the bytes since the previous
        cut (docs/design/chunking.md), so the same chunker serves; a fixed
        chunker's header chunk is behind us, the block grid goes on.
        """
        assert self.chunker is not None
        params = self.chunker.params
        if params.algorithm == "fixed" and params.header_size:
            return FixedChunker(ChunkerParams.fixed(params.block_size))
        return self.chunker

    def _lookup(self, path: bytes, st: os.stat_result, special: bool) -> FileLookup:
        """The files cache's status of a regular file (``A`` without a cache)."""
        if special or self.files_cache is None:
            return FileLookup("A")
        return self.files_cache.lookup(path, st, self._contains)

    def _contains(self, chunk_id: bytes) -> bool:
        size = self._stored_size(chunk_id)
        if size is not None and len(self._known_sizes) < _KNOWN_SIZES_MAX:
            self._known_sizes[chunk_id] = size  # _account_cached needs it: one lookup, not two
        return size is not None

    def _submit_all(
        self, fragments: FragmentSource, partial: _Partial, chunker: Chunker | None = None
    ) -> list[Future[ChunkResult]]:
        """Chunk ``fragments`` (with ``chunker``, default the backup's) and queue every
        chunk into ``partial.futures``; stops at an interruption.

        A checkpoint taken meanwhile holds the chunks so far as a part file.
        """
        chunker = chunker or self.chunker
        assert chunker is not None and self.pipeline is not None
        futures = partial.futures
        for chunk in chunker.chunks(fragments):
            futures.append(self.pipeline.submit(chunk))
            self._check_interrupt(partial)
        return futures

    def _hardlink_member(
        self, path: bytes, name: bytes, st: os.stat_result, first: Pending
    ) -> Pending:
        """A second or later hard link: its own metadata, the first member's chunks.

        Every member carries the chunk list (each extracts alone); the bytes
        are counted once, and the file once (Borg's "Number of files").
        """
        entry = self._entry(path, name, st)
        entry.hardlink_id = first.entry.hardlink_id
        return Pending(
            entry, first.futures, counted=False, cached=first.cached, prefix=first.prefix
        )

    # -- archive paths and kept nodes ------------------------------------------------------

    def _apath(self, path: bytes) -> bytes | None:
        """The archive path of ``path``; None for directories above the slashdot,
        the root (b"") for the slashdot directory itself (Borg's ``.`` item)."""
        if self._strip is not None:
            base = path.rstrip(b"/") + b"/"
            if base == self._strip:
                return b""
            if self._strip.startswith(base):
                return None
            path = path.removeprefix(self._strip)
        return archive_path(path)

    def _finish(self) -> list[bytes]:
        """Store what is left of the tree; returns the archive root's tree ids."""
        if self.file_pool is not None:
            self.file_pool.flush()
        root = self._tree.finish()
        self._trees_stored()
        if self.store is not None:  # its new trees are part of what it added (as Borg's items)
            self.stats.deduplicated_size += self.store.metadata_added - self._metadata_before
        self._out.drain(wait=True)
        return root

    def _trees_stored(self) -> None:
        """Every directory object put so far is in the repository (pending in packs):
        the barrier before a record that names them."""
        if self.pipeline is not None:
            self.pipeline.wait_objects()

    # -- completing files (the tree builder's complete_file) ---------------------------------

    def _complete_file(self, pending: Pending) -> None:
        """Complete a file's entry with its chunk list (waiting for its chunks) and
        count it; the files cache remembers a file read whole and unchanged."""
        if pending.file is not None:
            self._resolve_pooled(pending, pending.file)
            return
        if pending.cached is not None:
            chunks = pending.cached
            if pending.counted:
                self._account_cached(chunks)
        else:
            if pending.prefix and pending.counted:
                self._account_cached(pending.prefix)
            chunks = [*pending.prefix, *self._stored_chunks(pending)]
            if pending.st is not None and pending.counted and self.files_cache is not None:
                self.files_cache.remember(pending.path, pending.st, chunks, pending.path_key)
        size = sum(c.size for c in chunks)
        pending.entry.chunks = chunks
        pending.entry.size = size
        if pending.counted:
            self.stats.original_size += size

    def _resolve_pooled(self, pending: Pending, ticket: FileTicket) -> None:
        """A file the file pool read: its entry, chunks and figures (or nothing, if
        it could not be read: its warning is in the ordered output)."""
        if not ticket.done():
            assert self.file_pool is not None
            self.file_pool.flush()  # it may still be in the batch being filled
        stored = ticket.result()
        outcome = stored.outcome
        if outcome.entry is None:
            pending.dropped = True
            return
        self.read_stats.merge(outcome.bytes_read, outcome.reads, outcome.hole_bytes)
        entry = pending.entry = outcome.entry
        if pending.cached is not None:
            chunks = pending.cached
            self._account_cached(chunks)
        else:
            chunks = [ChunkRef(r.id, r.size) for r in stored.results]
            for result in stored.results:
                self._account(result)
            if not outcome.changed and self.files_cache is not None and outcome.st is not None:
                self.files_cache.remember(pending.path, outcome.st, chunks, pending.path_key)
        entry.chunks = chunks
        entry.size = sum(c.size for c in chunks)
        self.stats.original_size += entry.size
        self.stats.nfiles += 1

    def _stored_chunks(self, pending: Pending) -> list[ChunkRef]:
        chunks: list[ChunkRef] = []
        for future in pending.futures:
            result = future.result()
            chunks.append(ChunkRef(result.id, result.size))
            if pending.counted:
                self._account(result)
        return chunks

    def _account_cached(self, chunks: list[ChunkRef]) -> None:
        """Chunks from the files cache (a file, or the part of one an interrupted
        backup stored): they are in the repository, nothing new."""
        self.stats.nchunks += len(chunks)
        for chunk in chunks:
            if chunk.id != ZERO_ID:
                size = self._known_sizes.pop(chunk.id, None)
                self.stats.compressed_size += size or self._stored_size(chunk.id) or 0

    def _account(self, result: ChunkResult) -> None:
        self.stats.nchunks += 1
        self.stats.compressed_size += result.csize
        if result.new and result.id not in self._seen_ids:
            self._seen_ids.add(result.id)
            self.stats.deduplicated_size += result.csize

    def _report(self, status: str, path: bytes) -> None:
        self._out.now(lambda: self._print(status, path))

    def _print(self, status: str, path: bytes) -> None:
        self.report(status, path)
        if self.progress is not None:
            self.progress(self.stats, path)

    def _warn(self, warning: HoardWarning) -> None:
        """Give a warning in walk order (behind the messages of files still being read)."""
        self._out.now(lambda: self.warn(warning))
