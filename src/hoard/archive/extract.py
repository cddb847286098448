"""Restoring an archive's tree into a directory (``hoard extract``), as Borg 1.4 does.

The work is split in three, so that the repository is read ahead of the disk
writes and both cores are busy on big files:

1. :class:`_Planner` walks the archive tree (depth first, name order, one
   directory object at a time), decides per entry whether it is extracted
   (pattern matcher, ``--strip-components``, implicit directories) and how
   (written from its chunks, or hard-linked to an earlier member of its
   group), and emits a flat stream of steps: an item, then one step per
   chunk of a regular file, and a "leave" step when a directory's contents
   are done.
2. :class:`_Prefetcher` submits the fetch (read, decrypt, decompress, verify;
   the C parts release the GIL) of every data chunk in that stream to a small
   thread pool, small chunks in batches (one thread hand-off for many), keeping
   a bounded number of bytes in flight, and hands the steps back in order with
   a handle on each chunk's result.
3. :class:`Extractor` executes the steps: creates directories first, writes
   files as their chunks arrive (all-zero chunks as zeros, or as holes with
   ``--sparse``), makes symlinks, FIFOs, devices and hard links, and applies
   a directory's metadata only when it is left, so restoring mode and times
   of a directory is not undone by writing into it.

Behaviour follows Borg 1.4 (``borg/archive.py: extract_item``,
``borg/archiver.py: do_extract``): an existing file at a target path is
removed first; a file that cannot be written is a warning (exit 1) and the
extraction goes on; ``--dry-run`` reads and verifies every chunk but writes
nothing; ``--stdout``
writes the contents of the selected regular files, concatenated, and
nothing else.

Damage never stops an extraction (docs/maintenance.md, "Damage"): a chunk
that is missing or fails verification is written as zeros (a hole with
``--sparse``) and the extraction goes on; a directory whose tree object
cannot be read loses its contents and the walk goes on with its siblings.
Each damaged item is handed to ``on_damage`` as a :class:`Damage` naming the
byte ranges lost and why; the command reports them and fails at the end.

Safety: every name read from the archive is checked (no empty name, ``.``,
``..``, ``/`` or NUL), so no path leaves the target directory; nothing is
ever written through a symlink this extraction created (possible only with
``--strip-components`` collisions or a malformed tree with duplicate names).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, TypeVar

from hoard.archive.items import ZERO_ID, ChunkRef, Entry
from hoard.archive.metadata import RestoreOptions, restore
from hoard.archive.oserrors import os_warning
from hoard.archive.patterns import PatternMatcher
from hoard.archive.tree import read_directory
from hoard.errors import (
    BackupWarning,
    BrokenFileWarning,
    ChunkNotFound,
    HoardError,
    HoardWarning,
    IntegrityError,
)
from hoard.objects.types import ObjectType

DEFAULT_WORKERS = 2
DEFAULT_WINDOW_BYTES = 16 * 1024 * 1024
"""Bytes of chunks fetched ahead of the writer (bounds memory on big files)."""
DEFAULT_WINDOW_STEPS = 1024
"""Steps planned ahead of the writer (bounds memory on many small files)."""
DEFAULT_BATCH_BYTES = 1024 * 1024
"""Chunks (or small files) up to this many bytes are one task (fewer thread hand-offs)."""
TREES_AHEAD = 256
"""At most this many tree objects are fetched ahead of the walk (bounds memory)."""
TREE_BATCH = 16
"""Tree objects fetched ahead by one task."""
DEFAULT_BATCH_FILES = 64
"""At most this many small files are one task (their results come back together)."""
DEFAULT_WHOLE_FILE_BYTES = 1024 * 1024
"""Regular files up to this size are written whole by a worker, ahead of the writer."""
ZERO_BLOCK = bytes(1024 * 1024)
"""Written repeatedly for all-zero chunks without ``--sparse`` (a hole may be huge)."""

_UNSAFE_NAMES = (b"", b".", b"..")


class ObjectReader(Protocol):
    """What extraction needs of the objects layer (``ObjectStore`` has it); thread-safe."""

    def get(self, type_: ObjectType, id_: bytes) -> bytes: ...

    def get_many(self, type_: ObjectType, ids: Sequence[bytes]) -> list[bytes | HoardError]: ...


@dataclass(frozen=True)
class ExtractOptions:
    """``extract``'s options that shape what is written and how."""

    restore: RestoreOptions = field(default_factory=RestoreOptions)
    sparse: bool = False
    strip_components: int = 0
    dry_run: bool = False
    stdout: bool = False


@dataclass
class Damage:
    """A damaged item extraction went past.

    ``lost``: the byte ranges ``(start, end)`` (end exclusive, adjacent ones
    merged) of a file's content that could not be read and were zero-filled;
    ``contents_lost``: a directory whose entries (some or all) could not be
    read; ``reasons``: why, one line per damaged object (the typed error's
    message, naming object, type and pack).
    """

    path: bytes
    lost: list[tuple[int, int]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    contents_lost: bool = False

    def add(self, start: int, size: int, reason: str) -> None:
        if self.lost and self.lost[-1][1] == start:
            self.lost[-1] = (self.lost[-1][0], start + size)
        else:
            self.lost.append((start, start + size))
        if reason not in self.reasons:
            self.reasons.append(reason)

    def describe_lost(self) -> str:
        """``bytes 0-65535, 131072-140000 (...) lost, zero-filled`` (inclusive
        ends), or what a directory lost."""
        if self.contents_lost:
            return "its entries (some or all) could not be read and are missing"
        ranges = ", ".join(f"{a}-{b - 1}" for a, b in self.lost)
        return f"bytes {ranges} ({sum(b - a for a, b in self.lost)} bytes) lost, zero-filled"


DamageSink = Callable[[Damage], None]


@dataclass
class ExtractStats:
    """What one run did: items extracted (or listed in a dry run), content
    bytes, and the damaged items it went past (``damaged``)."""

    items: int = 0
    nbytes: int = 0
    damaged: list[Damage] = field(default_factory=list)


Lister = Callable[[bytes], None]
"""Called with the (stripped) path of each extracted item, in walk order (``--list``)."""
Progress = Callable[[int, int, bytes], None]
"""Called with (bytes done, bytes total, path) while file contents are processed."""
WarningSink = Callable[[HoardWarning], None]


class _How(Enum):
    """How an item is extracted."""

    DIR = "dir"
    FILE = "file"
    HARDLINK = "hardlink"
    SYMLINK = "symlink"
    FIFO = "fifo"
    DEVICE = "device"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class _Item:
    """An entry selected for extraction; ``dest`` is relative to the target directory."""

    apath: bytes
    dest: bytes
    entry: Entry
    how: _How
    link_to: bytes | None = None
    failed: bool = False
    """Set when making it failed (warned once): its metadata is then not restored."""
    whole: bool = False
    """A small regular file written whole by a worker (no chunk steps follow it)."""
    made: bool = False
    """A directory already made ahead of the writer (its warning, if any, in ``warning``)."""
    warning: HoardWarning | None = None


@dataclass(frozen=True, slots=True)
class _ChunkStep:
    ref: ChunkRef


@dataclass(frozen=True, slots=True)
class _LeaveDir:
    item: _Item


@dataclass(frozen=True, slots=True)
class _Drain:
    """From here on, nothing runs ahead of the writer: everything before must be done."""


_Step = _Item | _ChunkStep | _LeaveDir | _Drain


ROOT_ITEM = b"."
"""The archive root's own entry (Borg's ``.`` item): the metadata of the
source directory of ``create .`` or ``create /src/./``, restored on the
target directory itself, last."""


def check_name(name: bytes, parent: bytes) -> None:
    """Refuse an entry name that could address anything but a child of its
    directory (or, for ``.`` in the root, the target directory itself)."""
    if name == ROOT_ITEM and not parent:
        return
    if name in _UNSAFE_NAMES or b"/" in name or b"\0" in name:
        where = os.fsdecode(parent.rstrip(b"/")) or "the archive root"
        raise IntegrityError(f"unsafe entry name {name!r} in {where}")


def strip_path(apath: bytes, components: int) -> bytes:
    """Borg's ``--strip-components``: drop leading components; b"" if nothing is left."""
    if components <= 0:
        return apath
    return b"/".join(apath.split(b"/")[components:])


def _how(entry: Entry) -> _How:
    mode = entry.mode
    if stat.S_ISDIR(mode):
        return _How.DIR
    if stat.S_ISREG(mode):
        return _How.FILE
    if stat.S_ISLNK(mode):
        return _How.SYMLINK
    if stat.S_ISFIFO(mode):
        return _How.FIFO
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return _How.DEVICE
    return _How.UNKNOWN


class _Planner:
    """Walks the archive and yields the steps of an extraction, in order.

    Stateful (the first selected member of each hard-link group is written,
    the later ones are linked to it), so one planner serves one pass.

    ``ahead``: small regular files may be written whole by workers, ahead of
    the writer, and directories made when planned. That is safe only while
    no two items can have the same destination, which holds for a
    well-formed archive (names unique and sorted in each directory) without
    ``--strip-components``; at the first name out of order the planner
    yields a :class:`_Drain` and plans everything after it for the writer.
    """

    def __init__(
        self,
        store: ObjectReader,
        matcher: PatternMatcher,
        options: ExtractOptions,
        on_damage: DamageSink | None = None,
        *,
        ahead: bool = False,
        whole_bytes: int = DEFAULT_WHOLE_FILE_BYTES,
        executor: ThreadPoolExecutor | None = None,
    ):
        self.store = store
        self.matcher = matcher
        self.options = options
        self.on_damage = on_damage
        self.ahead = ahead
        self.whole_bytes = whole_bytes
        self.executor = executor
        self._first_member: dict[bytes, bytes] = {}
        self._everything = matcher.empty() and matcher.fallback
        """No patterns: every item is selected without asking the matcher."""
        self._trees: dict[bytes, tuple[Future[list[bytes | HoardError]], int]] = {}
        """Tree objects being fetched ahead (with ``executor``): id -> (batch, index)."""

    def get(self, type_: ObjectType, id_: bytes) -> bytes:
        """``read_directory``'s object source: a tree fetched ahead, or the store."""
        ahead = self._trees.pop(id_, None)
        if ahead is None:
            return self.store.get(type_, id_)
        outcome = ahead[0].result()[ahead[1]]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _directory(self, tree_ids: list[bytes]) -> Iterator[Entry]:
        """A directory's entries, one tree object at a time; with an executor
        the trees of the subdirectories in each are fetched ahead (at most
        ``TREES_AHEAD`` at once), so the walk seldom waits for a tree."""
        for tree_id in tree_ids:
            entries = list(read_directory(self, [tree_id]))
            if self.executor is not None:
                self._fetch_ahead([t for e in entries if e.is_dir for t in e.tree or ()])
            yield from entries

    def _fetch_ahead(self, tree_ids: list[bytes]) -> None:
        room = max(0, TREES_AHEAD - len(self._trees))
        wanted = [t for t in tree_ids[:room] if t not in self._trees]
        assert self.executor is not None
        for start in range(0, len(wanted), TREE_BATCH):
            batch = wanted[start : start + TREE_BATCH]
            future = self.executor.submit(self.store.get_many, ObjectType.TREE, batch)
            for n, tree_id in enumerate(batch):
                self._trees[tree_id] = (future, n)

    def steps(self, root: list[bytes]) -> Iterator[_Step]:
        """Depth first and iterative (no recursion limit on deep trees); the
        root's ``.`` item comes last, so nothing written changes its times."""
        stack: list[tuple[Iterator[Entry], bytes, _Item | None, list[bytes]]] = [
            (self._directory(root), b"", None, [b""])
        ]
        root_item: _Item | None = None
        while stack:
            entries, prefix, dir_item, last = stack[-1]
            entry = self._next(entries, prefix)
            if entry is None:
                stack.pop()
                if dir_item is not None:
                    yield _LeaveDir(dir_item)
                continue
            check_name(entry.name, prefix)
            if entry.name == ROOT_ITEM and not prefix:
                root_item = self._select(ROOT_ITEM, entry) if entry.is_dir else None
                continue
            if entry.name <= last[0] and last[0] and self.ahead:
                self.ahead = False  # a duplicate may follow: no more running ahead
                yield _Drain()
            last[0] = entry.name
            apath = prefix + entry.name
            item = self._select(apath, entry)
            if item is not None:
                yield item
                if item.how is _How.FILE and not item.whole:
                    yield from (_ChunkStep(ref) for ref in entry.chunks or ())
            if entry.is_dir:
                children = self._directory(entry.tree or [])
                stack.append((children, apath + b"/", item, [b""]))
        if root_item is not None:
            yield root_item
            yield _LeaveDir(root_item)

    def _next(self, entries: Iterator[Entry], prefix: bytes) -> Entry | None:
        """The directory's next entry; None at its end or where its tree
        objects cannot be read (the rest of the directory is lost, reported)."""
        try:
            return next(entries, None)
        except (IntegrityError, ChunkNotFound) as exc:
            if self.on_damage is not None:
                path = prefix.rstrip(b"/")
                self.on_damage(Damage(path, reasons=[damage_reason(exc)], contents_lost=True))
            return None

    def _select(self, apath: bytes, entry: Entry) -> _Item | None:
        """The item for ``entry``, or None if it is not extracted.

        Implicit directories are never matched (so a ``pf:`` of one does not
        count as a hit); they come into being as parents of what is extracted.
        """
        if entry.implicit or not (self._everything or self.matcher.match(apath)):
            return None
        dest = strip_path(apath, self.options.strip_components)
        if not dest:
            return None
        how = _how(entry)
        if entry.hardlink_id is not None and how is not _How.DIR:
            first = self._first_member.get(entry.hardlink_id)
            if first is not None:
                return _Item(apath, dest, entry, _How.HARDLINK, link_to=first)
            self._first_member[entry.hardlink_id] = dest
        item = _Item(apath, dest, entry, how)
        if how is _How.FILE and self.ahead and entry.size <= self.whole_bytes:
            item.whole = True
        return item


class _Batch:
    """Work handed to one worker at once: consecutive chunks fetched together,
    or small files written whole; one thread hand-off for many.

    Each outcome is kept separately (a chunk's data or the error fetching
    it; a file's :class:`_Written`), so a bad chunk is reported for the file
    that owns it, not for whichever file happens to share its batch.
    """

    __slots__ = ("future", "items", "size")

    def __init__(self) -> None:
        self.items: list[bytes] | list[_Item] = []
        self.size = 0
        self.future: Future[list[bytes | HoardError]] | Future[list[_Written]] | None = None


@dataclass(frozen=True, slots=True)
class _Fetched:
    """Handle on one outcome of a submitted batch."""

    batch: _Batch
    index: int

    def result(self) -> object:
        """The outcome (waits for the batch); re-raises what the worker raised."""
        assert self.batch.future is not None
        return self.batch.future.result()[self.index]


class _Prefetcher:
    """Runs a step stream's work ahead of its consumer; hands steps back in order.

    Chunks are grouped into batches of up to ``batch_bytes`` (a big chunk
    is a batch of its own), so a tree of small files does not pay a thread
    hand-off per chunk, while big files keep both workers busy; small files
    to be written whole (``_Item.whole``) are grouped the same way and
    handed to ``write``. ``dispatch`` sees each step as it is planned,
    before anything after it is submitted. At most ``window_bytes`` of
    content (and ``window_steps`` steps) are between the planner and the
    consumer: that bounds memory, whatever the file sizes.
    """

    def __init__(
        self,
        fetch: Callable[[list[bytes]], list[bytes | HoardError]],
        executor: ThreadPoolExecutor,
        *,
        write: Callable[[list[_Item]], list[_Written]] | None = None,
        dispatch: Callable[[_Step], None] | None = None,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        window_steps: int = DEFAULT_WINDOW_STEPS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        batch_files: int = DEFAULT_BATCH_FILES,
    ) -> None:
        self.fetch = fetch
        self.write = write
        self.dispatch = dispatch
        self.executor = executor
        self.window_bytes = window_bytes
        self.window_steps = window_steps
        self.batch_bytes = batch_bytes
        self.batch_files = batch_files
        self._chunks: _Batch | None = None
        self._files: _Batch | None = None

    def run(self, steps: Iterator[_Step]) -> Iterator[tuple[_Step, _Fetched | None]]:
        queue: deque[tuple[_Step, _Fetched | None, int]] = deque()
        inflight = 0
        for step in steps:
            if isinstance(step, _Drain):
                while queue:
                    inflight -= self._release(queue[0])
                    step_, handle, _ = queue.popleft()
                    yield step_, handle
                continue
            if self.dispatch is not None:
                self.dispatch(step)
            handle, size = self._add(step)
            inflight += size
            queue.append((step, handle, size))
            while queue and (inflight >= self.window_bytes or len(queue) >= self.window_steps):
                inflight -= self._release(queue[0])
                step_, handle, _ = queue.popleft()
                yield step_, handle
        while queue:
            self._release(queue[0])
            step_, handle, _ = queue.popleft()
            yield step_, handle

    def _add(self, step: _Step) -> tuple[_Fetched | None, int]:
        """Put the step's work in a batch; its handle and its bytes in flight."""
        if isinstance(step, _ChunkStep):
            if step.ref.id == ZERO_ID:
                return None, 0
            return self._join(False, step.ref.id, step.ref.size), step.ref.size
        if isinstance(step, _Item) and step.whole and not step.failed:
            assert self.write is not None, "whole files need a writer"
            size = step.entry.size
            return self._join(True, step, size), size
        return None, 0

    def _join(self, files: bool, what: bytes | _Item, size: int) -> _Fetched:
        batch = (self._files if files else self._chunks) or _Batch()
        if files:
            self._files = batch
        else:
            self._chunks = batch
        batch.items.append(what)  # type: ignore[arg-type]  # ids or items, never both
        batch.size += size
        handle = _Fetched(batch, len(batch.items) - 1)
        if batch.size >= self.batch_bytes or (files and len(batch.items) >= self.batch_files):
            self._submit(batch)
        return handle

    def _release(self, entry: tuple[_Step, _Fetched | None, int]) -> int:
        """Before a step goes to the consumer its batch must be on its way; returns its bytes."""
        _, handle, size = entry
        if handle is not None and handle.batch.future is None:
            self._submit(handle.batch)
        return size

    def _submit(self, batch: _Batch) -> None:
        if batch is self._chunks:
            self._chunks = None
            batch.future = self.executor.submit(self.fetch, batch.items)  # type: ignore[arg-type]
        else:
            assert batch is self._files and self.write is not None
            self._files = None
            batch.future = self.executor.submit(self.write, batch.items)  # type: ignore[arg-type]


@dataclass
class _OpenFile:
    """The regular file being written: ``fd`` is None in dry-run/stdout mode or after an error."""

    item: _Item
    path: bytes
    fd: int | None
    written: int = 0
    failed: bool = False
    ends_in_hole: bool = False
    """The last chunk was skipped with a seek: the size must be set with ftruncate."""
    damage: Damage | None = None
    """The byte ranges lost so far (zero-filled), when some chunk could not be read."""
    warnings: list[HoardWarning] = field(default_factory=list)
    """Problems of this file, reported in walk order when it is done."""
    before_damage: int = 0
    """How many of ``warnings`` came before the damage report (Borg's order)."""


@dataclass(frozen=True, slots=True)
class _Written:
    """What writing one small file whole gave (a worker's result for it)."""

    written: int
    damage: Damage | None
    warnings: list[HoardWarning]
    before_damage: int


class _ItemError(Exception):
    """An OSError while extracting one item, with the operation that failed (Borg's ``op``)."""

    def __init__(self, op: str, error: OSError) -> None:
        super().__init__(op, error)
        self.op = op
        self.error = error


@contextlib.contextmanager
def _doing(op: str) -> Iterator[None]:
    """Tag an OSError with the operation, as Borg's ``backup_io(op)``."""
    try:
        yield
    except OSError as exc:
        raise _ItemError(op, exc) from exc


def display_path(path: bytes) -> str:
    """A path for messages: undecodable bytes shown as ``?`` (Borg's remove_surrogates)."""
    return os.fsdecode(path).encode("utf-8", "replace").decode("utf-8")


def _warning(path: bytes, error: _ItemError) -> HoardWarning:
    return os_warning(display_path(path), error.op, error.error)


def damage_reason(exc: ChunkNotFound | IntegrityError) -> str:
    """What was wrong, naming the object (id, type, pack) without the
    error's own "Data integrity error:" prefix: it goes inside another line."""
    return exc.args[0] if isinstance(exc, IntegrityError) else exc.get_message()


def _remove_existing(path: bytes) -> None:
    """Borg replaces what is in the way: rmdir a directory (only if empty), unlink the rest."""
    try:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        pass


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_T = TypeVar("_T")


def _make(path: bytes, op: str, create: Callable[[], _T], *, keep_dir: bool = False) -> _T | None:
    """Create ``path`` with ``create``, optimistically: on a fresh target the
    first try succeeds, with no stat calls before it. Only when something is
    in the way (EEXIST) is it removed as Borg does (``keep_dir``: an existing
    directory is kept instead), and only when the parent is missing (ENOENT)
    are the parents made; then ``create`` runs once more."""
    try:
        return create()
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            if keep_dir and _is_real_dir(path):
                return None
            _remove_existing(path)
        elif exc.errno == errno.ENOENT:
            with _doing("makedirs"):
                _make_parent(path)
        else:
            raise _ItemError(op, exc) from exc
    try:
        return create()
    except OSError as exc:
        raise _ItemError(op, exc) from exc


def _is_real_dir(path: bytes) -> bool:
    """A directory, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _make_parent(path: bytes) -> None:
    """Create missing parent directories (umask permissions; Borg restores nothing on them)."""
    parent = os.path.dirname(path)
    if parent and not os.path.exists(parent):
        os.makedirs(parent, exist_ok=True)  # a worker may be making the same parent


def _write_all(fd: int, data: bytes | memoryview) -> None:
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def _write_zeros(fd: int, size: int) -> None:
    zeros = memoryview(ZERO_BLOCK)
    while size > 0:
        n = min(size, len(zeros))
        _write_all(fd, zeros[:n])
        size -= n


class _FileWriter:
    """Writes regular files: chunk by chunk (big files, by the consumer) or
    whole (small files, by a worker: :meth:`write_whole`). Thread-safe: it
    keeps no state of its own; a file's state is in its :class:`_OpenFile`."""

    def __init__(
        self,
        store: ObjectReader,
        options: ExtractOptions,
        target: bytes,
        sink: Callable[[bytes], None] | None,
    ) -> None:
        self.store = store
        self.options = options
        self.target = target
        self.sink = sink
        self.writes = not (options.dry_run or options.stdout)

    def begin(self, item: _Item) -> _OpenFile:
        """Open the file's destination (in a writing run); failure is noted in the file."""
        path = os.path.join(self.target, item.dest)
        current = _OpenFile(item, path, None)
        if item.entry.is_broken:  # as Borg: restored, with the lost parts as zeros
            current.warnings.append(BrokenFileWarning(display_path(item.apath)))
        if item.failed:  # refused when planned (a parent is a symlink this run made)
            assert item.warning is not None
            current.failed = True
            current.warnings.append(item.warning)
        elif self.writes:
            try:
                current.fd = _make(path, "open", lambda: os.open(path, _CREATE_FLAGS, 0o600))
            except _ItemError as exc:
                current.failed = True
                current.warnings.append(_warning(item.apath, exc))
        return current

    def chunk(self, current: _OpenFile, ref: ChunkRef, outcome: object) -> None:
        """Write one chunk: ``outcome`` is its data, or the error fetching it,
        or None for an all-zero chunk."""
        if current.failed:
            return
        data = self._chunk_data(current, ref, outcome)
        try:
            self._emit(current, ref, data)
        except _ItemError as exc:
            current.failed = True
            self.abandon(current)
            current.warnings.append(_warning(current.item.apath, exc))
            return
        current.written += ref.size

    def _chunk_data(self, current: _OpenFile, ref: ChunkRef, outcome: object) -> bytes | None:
        """The chunk's plaintext (b"" for zeros); None if it is lost: then the
        damage is noted for the file and its range is zero-filled."""
        if outcome is None:
            return b""
        if isinstance(outcome, (ChunkNotFound, IntegrityError)):
            self._lose(current, ref, damage_reason(outcome))
            return None
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, bytes)
        if len(outcome) != ref.size:
            size = len(outcome)
            self._lose(
                current,
                ref,
                f"object {ref.id.hex()} (DATA) has {size} bytes, the archive says {ref.size}",
            )
            return None
        return outcome

    @staticmethod
    def _lose(current: _OpenFile, ref: ChunkRef, reason: str) -> None:
        if current.damage is None:
            current.damage = Damage(current.item.apath)
        current.damage.add(current.written, ref.size, reason)

    def _emit(self, current: _OpenFile, ref: ChunkRef, data: bytes | None) -> None:
        """Write one chunk; ``data`` None (lost) is written as zeros like a zero run."""
        zero = ref.id == ZERO_ID or data is None
        if self.options.stdout:
            assert self.sink is not None
            if zero:
                for offset in range(0, ref.size, len(ZERO_BLOCK)):
                    self.sink(ZERO_BLOCK[: min(len(ZERO_BLOCK), ref.size - offset)])
            else:
                assert data is not None
                self.sink(data)
            return
        fd = current.fd
        if fd is None:
            return
        try:
            if data is not None and not zero:
                _write_all(fd, data)
            elif self.options.sparse:
                os.lseek(fd, ref.size, os.SEEK_CUR)
            else:
                _write_zeros(fd, ref.size)
        except OSError as exc:
            raise _ItemError("write", exc) from exc
        current.ends_in_hole = zero and self.options.sparse

    def finish(self, current: _OpenFile) -> None:
        """Set the size if it ends in a hole, restore metadata, close, check
        the size; as Borg. Problems go to ``current.warnings``.

        (Borg always truncates; on a new file that only costs a journalled
        inode update, so it is done only when a trailing hole needs it.)
        """
        current.before_damage = len(current.warnings)
        if current.failed:
            self.abandon(current)
            return
        fd = current.fd
        if fd is not None:
            op = "truncate"
            try:  # (no context manager per operation here: this runs once per file)
                if current.ends_in_hole:
                    os.ftruncate(fd, current.written)
                op = "attrs"
                restore(current.path, current.item.entry, self.options.restore, fd)
            except OSError as exc:
                self.abandon(current)
                current.warnings.append(_warning(current.item.apath, _ItemError(op, exc)))
                return
            self.abandon(current)
        size = current.item.entry.size
        if size != current.written:
            current.warnings.append(
                BackupWarning(
                    display_path(current.item.apath),
                    f"Size inconsistency detected: size {size}, chunks size {current.written}",
                )
            )

    @staticmethod
    def abandon(current: _OpenFile) -> None:
        """Close the file (if open) without restoring anything."""
        if current.fd is not None:
            fd, current.fd = current.fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def write_whole(self, items: list[_Item]) -> list[_Written]:
        """A worker's task: fetch the chunks of small files (one ``get_many``
        for all of them) and write each file whole, in order. Every file's
        problems stay with that file."""
        ids = [r.id for item in items for r in item.entry.chunks or () if r.id != ZERO_ID]
        fetched = iter(self.store.get_many(ObjectType.DATA, ids) if ids else ())
        results: list[_Written] = []
        for item in items:
            current = self.begin(item)
            try:
                for ref in item.entry.chunks or ():
                    self.chunk(current, ref, None if ref.id == ZERO_ID else next(fetched))
                self.finish(current)
            finally:
                self.abandon(current)  # an unexpected error: never leak the descriptor
            written = _Written(
                current.written, current.damage, current.warnings, current.before_damage
            )
            results.append(written)
        return results


class Extractor:
    """Extracts selected entries of an archive into ``target`` (the current directory).

    ``store.get`` is called from ``workers`` threads. ``sink`` receives file
    contents in ``--stdout`` mode; ``lister`` gets each extracted path
    (``--list``); ``warn`` gets per-item problems; ``on_damage`` each damaged
    item once it is done (they are also in ``stats.damaged``); ``progress``,
    if given, makes a first pass over the archive to learn the total size, as Borg.
    Every callback is called from the calling thread, in walk order.
    """

    def __init__(
        self,
        store: ObjectReader,
        matcher: PatternMatcher,
        options: ExtractOptions,
        *,
        target: bytes | None = None,
        sink: Callable[[bytes], None] | None = None,
        lister: Lister | None = None,
        warn: WarningSink,
        on_damage: DamageSink | None = None,
        progress: Progress | None = None,
        workers: int = DEFAULT_WORKERS,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        whole_file_bytes: int = DEFAULT_WHOLE_FILE_BYTES,
    ) -> None:
        if options.stdout and sink is None:
            raise ValueError("--stdout needs a sink for the file contents")
        self.store = store
        self.matcher = matcher
        self.options = options
        self.target = os.path.abspath(target if target is not None else os.getcwdb())
        self.sink = sink
        self.lister = lister
        self.warn = warn
        self.on_damage = on_damage
        self.progress = progress
        self.workers = workers
        self.window_bytes = window_bytes
        self.whole_file_bytes = whole_file_bytes
        self.stats = ExtractStats()
        self._writes = not (options.dry_run or options.stdout)
        self._writer = _FileWriter(store, options, self.target, sink)
        self._file: _OpenFile | None = None
        self._total = 0
        self._symlinks: set[bytes] = set()

    # -- top level ---------------------------------------------------------------------------

    def run(self, root: list[bytes]) -> ExtractStats:
        """Extract everything selected below the archive root ``root`` (its TREE ids)."""
        if self.progress is not None:
            self._total = self._planned_size(root)
        ahead = self._writes and self.options.strip_components == 0 and self.workers > 0
        executor = ThreadPoolExecutor(max(1, self.workers), thread_name_prefix="hoard-extract")
        planner = _Planner(
            self.store,
            self.matcher,
            self.options,
            self._damaged,
            ahead=ahead,
            whole_bytes=self.whole_file_bytes,
            executor=executor,
        )
        try:
            prefetcher = _Prefetcher(
                self._fetch,
                executor,
                write=self._writer.write_whole,
                dispatch=self._dispatch if ahead else None,
                window_bytes=self.window_bytes,
            )
            for step, fetched in prefetcher.run(planner.steps(root)):
                self._execute(step, fetched)
            self._finish_file()
        finally:
            if self._file is not None:
                self._writer.abandon(self._file)
            executor.shutdown(wait=True, cancel_futures=True)
        return self.stats

    def _planned_size(self, root: list[bytes]) -> int:
        """Bytes of content the extraction will process (Borg's extra pass for --progress)."""
        planner = _Planner(self.store, self.matcher, self.options)
        return sum(s.ref.size for s in planner.steps(root) if isinstance(s, _ChunkStep))

    def _damaged(self, damage: Damage) -> None:
        self.stats.damaged.append(damage)
        if self.on_damage is not None:
            self.on_damage(damage)

    def _fetch(self, ids: list[bytes]) -> list[bytes | HoardError]:
        return self.store.get_many(ObjectType.DATA, ids)

    def _dispatch(self, step: _Step) -> None:
        """As a step is planned (running ahead): make a directory now, so
        that the files written inside it by workers find it, and refuse a
        file below a symlink this run made before a worker could write it."""
        if not isinstance(step, _Item):
            return
        if step.how is _How.DIR:
            step.made = True
            try:
                self._check_no_symlink_parent(step.dest)
                self._create(step, self._path(step.dest))
            except _ItemError as exc:
                step.failed = True
                step.warning = _warning(step.apath, exc)
        elif step.whole:
            self._refuse_below_symlink(step)

    def _refuse_below_symlink(self, item: _Item) -> None:
        """Mark a file below a symlink this run made as failed, with its warning."""
        try:
            self._check_no_symlink_parent(item.dest)
        except _ItemError as exc:
            item.failed = True
            item.warning = _warning(item.apath, exc)

    def _execute(self, step: _Step, fetched: _Fetched | None) -> None:
        if isinstance(step, _ChunkStep):
            self._chunk(step.ref, fetched)
            return
        self._finish_file()
        if isinstance(step, _LeaveDir):
            self._leave_dir(step.item)
        elif isinstance(step, _Item):
            self._item(step, fetched)

    def _path(self, dest: bytes) -> bytes:
        return os.path.join(self.target, dest)

    # -- items ---------------------------------------------------------------------------------

    def _item(self, item: _Item, fetched: _Fetched | None) -> None:
        self.stats.items += 1
        if self.lister is not None:
            self.lister(item.dest)
        if item.how is _How.FILE:
            if item.whole:
                self._whole_file(item, fetched)
                return
            if self._writes:
                self._refuse_below_symlink(item)
            self._file = self._writer.begin(item)
            return
        if not self._writes:
            return
        if item.made:
            if item.warning is not None:
                self.warn(item.warning)
            return
        path = self._path(item.dest)
        try:
            self._check_no_symlink_parent(item.dest)
            self._create(item, path)
        except _ItemError as exc:
            item.failed = True
            self.warn(_warning(item.apath, exc))

    def _whole_file(self, item: _Item, fetched: _Fetched | None) -> None:
        """Report a small file a worker wrote (or the reason it was not written)."""
        if fetched is None:  # refused when planned
            assert item.warning is not None
            self.warn(item.warning)
            return
        result = fetched.result()
        assert isinstance(result, _Written)
        self._report(result.warnings, result.before_damage, result.damage)
        self.stats.nbytes += result.written
        if self.progress is not None and result.written:
            self.progress(self.stats.nbytes, self._total, item.dest)

    def _create(self, item: _Item, path: bytes) -> None:
        """Make a non-regular item (directory metadata is applied when it is left)."""
        if item.how is _How.DIR:
            _make(path, "mkdir", lambda: os.mkdir(path), keep_dir=True)
            self._symlinks.discard(item.dest)
            return
        if item.how is _How.HARDLINK:
            assert item.link_to is not None
            source = self._path(item.link_to)
            _make(path, "link", lambda: os.link(source, path, follow_symlinks=False))
            return
        self._make_special(item, path)
        with _doing("attrs"):
            restore(path, item.entry, self.options.restore)

    def _make_special(self, item: _Item, path: bytes) -> None:
        entry = item.entry
        if item.how is _How.SYMLINK:
            target = entry.link_target or b""
            _make(path, "symlink", lambda: os.symlink(target, path))
            self._symlinks.add(item.dest)
        elif item.how is _How.FIFO:
            _make(path, "mkfifo", lambda: os.mkfifo(path))
        elif item.how is _How.DEVICE:
            _make(path, "mknod", lambda: os.mknod(path, entry.mode, entry.rdev or 0))
        else:
            raise _ItemError(
                "create", OSError(errno.EINVAL, f"unknown file type {stat.S_IFMT(entry.mode):o}")
            )

    def _check_no_symlink_parent(self, dest: bytes) -> None:
        """Never write through a symlink that this extraction made (paths stay inside)."""
        if not self._symlinks:
            return
        parts = dest.split(b"/")
        for i in range(1, len(parts)):
            if b"/".join(parts[:i]) in self._symlinks:
                raise _ItemError(
                    "makedirs", OSError(errno.ELOOP, "a parent is a symlink created by extract")
                )

    def _leave_dir(self, item: _Item) -> None:
        if not self._writes or item.failed:
            return
        path = self._path(item.dest)
        try:
            with _doing("attrs"):
                restore(path, item.entry, self.options.restore)
        except _ItemError as exc:
            self.warn(_warning(item.apath, exc))

    # -- big regular files, chunk by chunk --------------------------------------------------------

    def _chunk(self, ref: ChunkRef, fetched: _Fetched | None) -> None:
        current = self._file
        assert current is not None, "a chunk step always follows its file item"
        if current.failed:
            return
        self._writer.chunk(current, ref, None if fetched is None else fetched.result())
        if current.failed:
            return
        self.stats.nbytes += ref.size
        if self.progress is not None:
            self.progress(self.stats.nbytes, self._total, current.item.dest)

    def _finish_file(self) -> None:
        current, self._file = self._file, None
        if current is None:
            return
        self._writer.finish(current)
        self._report(current.warnings, current.before_damage, current.damage)

    def _report(self, warnings: list[HoardWarning], before: int, damage: Damage | None) -> None:
        """A file's problems, in the order they arose: its warnings up to
        ``before``, then its damage, then the warnings of finishing it."""
        for warning in warnings[:before]:
            self.warn(warning)
        if damage is not None:
            self._damaged(damage)
        for warning in warnings[before:]:
            self.warn(warning)
