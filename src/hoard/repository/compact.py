"""Compaction: free the space of blobs no archive references any more.

Mark and sweep, key-agnostic: the caller (which can read archives and trees)
marks, passing the ids of every blob some archive record still references;
this module sweeps the packs (docs/design/write-order.md, "Compaction"):

1. Read every live (not superseded) index file and list ``packs/``.
2. Plan. A pack younger than the grace period is left alone whatever it
   holds (a backup that lost its lock may still index or reference it).
   Of the older ones: a pack no live index file mentions (an orphan of a
   crashed backup) is deleted; a pack none of whose indexed blobs is live is
   deleted; a pack whose unused bytes exceed ``threshold`` percent of its
   size is rewritten: its live blobs' stored bytes are copied (never
   decrypted) into new packs, after its content was checked against its
   name, so that damage is never laundered into a correctly named pack.
3. Store the new packs, then ONE new index file covering every entry that
   stays, listing every index file read as superseded.
4. Only then delete the old packs, then the superseded index files, then
   the temporary files of crashed writes older than the grace period.

A crash at any step leaves a repository whose live index maps every live
blob to an existing pack: before step 3's index file the old index still
holds (new packs are orphans), after it the new one does (old packs are
orphans, old index files superseded). The next compaction removes what is
left over. The caller must hold the repository's exclusive lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hoard.errors import (
    AppendOnlyCompactRefused,
    CompactAborted,
    CompactRefused,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
)
from hoard.repository.cache import read_index_files
from hoard.repository.check import PACK_NAME
from hoard.repository.indexfile import (
    ENTRY_DTYPE,
    Entries,
    IndexFile,
    entries_from_packs,
    sort_entries,
)
from hoard.repository.indexnames import index_path, list_index_names
from hoard.repository.pack import (
    BLOB_HEADER,
    DATA_TYPE,
    HEADER_SIZE,
    PACK_MAGIC,
    PackEntry,
    PackWriter,
    pack_path,
)
from hoard.repository.repository import PACKS_PREFIX, Repository
from hoard.storage.base import ObjectInfo, Storage

DEFAULT_THRESHOLD = 10
"""Percent of a pack's bytes that must be unused before it is rewritten (Borg's default)."""

DEFAULT_GRACE_PERIOD = 2 * 3600.0
"""Seconds. Nothing younger is deleted or rewritten. A backup writes an index
file and a checkpoint archive at least every 30 minutes (``create
--checkpoint-interval``), and its lock counts as stale 30 minutes after its
last refresh; so a backup whose lock was judged stale (a suspended machine)
or broken references, through its last checkpoint, everything it wrote more
than about an hour ago. Two hours doubles that margin, and still frees the
space of yesterday's pruned archives at once."""

Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``: called as packs are rewritten and deleted."""


@dataclass
class CompactReport:
    """What ``compact`` did (or, with ``dry_run``, would do).

    ``packs_deleted``: indexed packs without a live blob; ``orphan_packs_deleted``:
    packs no live index file mentioned; ``packs_rewritten``: packs whose live
    blobs were copied into the ``packs_written`` new ones; ``young_packs_kept``:
    packs that would have been deleted or rewritten but are younger than the
    grace period; ``damaged_packs_kept``: packs to rewrite whose content does
    not match their name or the index (left for ``check --repair``);
    ``missing_blobs``: live ids no index entry covers (damage: orphan packs
    are then kept, as ``check --repair`` may find those blobs in them);
    ``bytes_freed``: bytes deleted minus bytes written.
    """

    packs_deleted: int = 0
    orphan_packs_deleted: int = 0
    packs_rewritten: int = 0
    packs_written: int = 0
    young_packs_kept: int = 0
    index_files_deleted: int = 0
    temporary_files_deleted: int = 0
    bytes_freed: int = 0
    index_name: str | None = None
    damaged_packs_kept: list[str] = field(default_factory=list)
    missing_blobs: int = 0
    dry_run: bool = False


@dataclass
class _LiveIndex:
    """Every live index file merged: entries (ENTRY_DTYPE, unique ids, sorted)
    whose ``pack`` numbers index ``packs`` (raw names, unique)."""

    present: list[str]
    live: list[str]
    packs: list[bytes]
    entries: Entries

    @property
    def superseded_present(self) -> list[str]:
        """Index files still present although a live one supersedes them."""
        return sorted(set(self.present) - set(self.live))


@dataclass
class _Plan:
    """Pack hex names to delete or rewrite, and what they cost."""

    delete: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    rewrite: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass
class _Written:
    """New packs: (raw name, entries) and their total size."""

    packs: list[tuple[bytes, list[PackEntry]]] = field(default_factory=list)
    bytes: int = 0
    damaged: list[str] = field(default_factory=list)


def compact(
    repository: Repository,
    live: Collection[bytes],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    grace: float = DEFAULT_GRACE_PERIOD,
    traced_types: Collection[int] = (0, 1),
    now: float | None = None,
    progress: Progress | None = None,
    dry_run: bool = False,
    lock_lost: Callable[[], bool] | None = None,
) -> CompactReport:
    """Free the space of every blob not in ``live`` (see the module docstring).

    ``live``: ids of the blobs to keep; blobs whose type is not in
    ``traced_types`` (the types whose references the caller followed: data
    and trees) are kept whatever ``live`` says, so a type a newer hoard adds
    is never swept by this one. ``threshold``:
    percent 0..100; ``grace``: seconds; ``now``: the time ages are measured
    from (default: the clock). Raises AppendOnlyCompactRefused in an
    append-only repository, CompactRefused when an index file cannot be read
    (nothing is deleted then: its packs would look unused), storage errors.

    ``lock_lost()`` is asked before the new index file is stored and before
    every deletion; once it says True (the exclusive lock was broken or
    judged stale: another client may be writing) CompactAborted is raised
    and nothing more is changed.
    """
    if repository.config.append_only:
        raise AppendOnlyCompactRefused(repository.storage.location)
    if not 0 <= threshold <= 100:
        raise ValueError(f"threshold {threshold} outside 0..100")
    repository.flush()
    storage = repository.storage
    old = _is_old(grace, time.time() if now is None else now)
    guard = _Guard(lock_lost)
    report = CompactReport(dry_run=dry_run)
    index = _read_live_index(storage)
    packs = _list_packs(storage)
    keep = _live_mask(index.entries, live, traced_types)
    report.missing_blobs = _count_missing(index, packs, live)
    plan = _plan(index, packs, keep, threshold, old, report)
    tick = _Ticker(progress, 2 * len(plan.rewrite) + len(plan.delete) + len(plan.orphans))
    written = _rewrite(storage, index, keep, plan, repository.config.pack_size, dry_run, tick)
    report.damaged_packs_kept = written.damaged
    plan.rewrite = [n for n in plan.rewrite if n not in written.damaged]
    report.packs_rewritten, report.packs_written = len(plan.rewrite), len(written.packs)
    freed = -written.bytes
    superseded = index.superseded_present
    if plan.delete or plan.rewrite:
        report.index_name, data = _new_index(index, keep, plan, written).encode()
        _verify(report.index_name, data, index, keep)
        freed -= len(data)
        if not dry_run:
            guard()
            _store(storage, index_path(report.index_name), data)
        superseded = [n for n in index.present if n != report.index_name]
    created = {raw.hex() for raw, _ in written.packs}
    freed += _delete_packs(storage, plan, created, dry_run, tick, guard)
    report.packs_deleted, report.orphan_packs_deleted = len(plan.delete), len(plan.orphans)
    deleted = _delete_index_files(storage, superseded, dry_run, guard)
    report.index_files_deleted, index_bytes = deleted
    report.temporary_files_deleted, temp_bytes = _delete_temporary(storage, old, dry_run, guard)
    report.bytes_freed = freed + index_bytes + temp_bytes
    if not dry_run:
        repository.forget_index()
    return report


# --- reading ------------------------------------------------------------------------------


def _read_live_index(storage: Storage) -> _LiveIndex:
    """Merge every live index file, as readers do (first occurrence of an id wins)."""
    present = sorted(list_index_names(storage))
    try:
        files = read_index_files(storage, present)
    except IntegrityError as exc:
        raise CompactRefused(
            f"{exc}; the packs it lists would look unused. Run 'hoard check --repair' first."
        ) from None
    except ObjectNotFound as exc:
        raise CompactRefused(f"{exc}: the index changed while it was read") from None
    superseded = {s for f in files.values() for s in f.superseded}
    live = [name for name in present if name not in superseded]
    numbers: dict[bytes, int] = {}
    parts: list[Entries] = []
    for name in live:
        file = files[name]
        remap = np.array([numbers.setdefault(p, len(numbers)) for p in file.packs], np.uint32)
        part = file.entries.copy()
        if len(part):
            part["pack"] = remap[part["pack"]]
        parts.append(part)
    # concatenate canonicalises structured dtypes (native byte order): cast back,
    # or key0 would be written little-endian and the file would not decode.
    merged = np.concatenate(parts).astype(ENTRY_DTYPE) if parts else np.zeros(0, ENTRY_DTYPE)
    return _LiveIndex(present, live, list(numbers), sort_entries(merged))


def _list_packs(storage: Storage) -> dict[str, ObjectInfo]:
    """Hex pack name -> its listing (stray names under ``packs/`` ignored)."""
    packs: dict[str, ObjectInfo] = {}
    for info in storage.list(PACKS_PREFIX):
        match = PACK_NAME.match(info.name)
        if match is not None:
            packs[match.group(2)] = info
    return packs


def _ids(entries: Entries) -> Iterator[bytes]:
    """The 32-byte ids of ``entries``, in order."""
    raw = np.empty(len(entries), dtype=[("key0", ">u8"), ("rest", "V24")])
    raw["key0"] = entries["key0"]
    raw["rest"] = entries["rest"]
    data = raw.tobytes()
    for start in range(0, len(data), 32):
        yield data[start : start + 32]


def _live_mask(
    entries: Entries, live: Collection[bytes], traced_types: Collection[int]
) -> npt.NDArray[np.bool_]:
    keep = np.fromiter((id_ in live for id_ in _ids(entries)), dtype=bool, count=len(entries))
    keep |= ~np.isin(entries["type"], np.array(sorted(traced_types), dtype=np.uint8))
    return keep


def _count_missing(index: _LiveIndex, packs: dict[str, ObjectInfo], live: Collection[bytes]) -> int:
    """Live ids that no index entry maps to an existing pack."""
    present = np.array([p.hex() in packs for p in index.packs] or [False], dtype=bool)
    found = present[index.entries["pack"]] if len(index.entries) else np.zeros(0, bool)
    covered = {id_ for id_, ok in zip(_ids(index.entries), found.tolist(), strict=True) if ok}
    return sum(1 for id_ in live if id_ not in covered)


# --- planning -----------------------------------------------------------------------------


def _is_old(grace: float, now: float) -> Callable[[ObjectInfo], bool]:
    """Whether an object is older than the grace period (unknown age: only when grace <= 0)."""

    def old(info: ObjectInfo) -> bool:
        if grace <= 0:
            return True
        return info.mtime is not None and now - info.mtime >= grace

    return old


def _plan(
    index: _LiveIndex,
    packs: dict[str, ObjectInfo],
    keep: npt.NDArray[np.bool_],
    threshold: float,
    old: Callable[[ObjectInfo], bool],
    report: CompactReport,
) -> _Plan:
    numbers = {raw.hex(): n for n, raw in enumerate(index.packs)}
    entries = index.entries
    weights = entries["length"][keep].astype(np.float64) + HEADER_SIZE
    used = np.bincount(entries["pack"][keep], weights=weights, minlength=len(index.packs))
    plan = _Plan()
    for name in sorted(packs):
        info = packs[name]
        number = numbers.get(name)
        if number is None:
            action = "orphan" if report.missing_blobs == 0 else ""
        else:
            action = _action(info.size, int(used[number]), threshold)
        if not action:
            continue
        if not old(info):
            report.young_packs_kept += 1
            continue
        plan.sizes[name] = info.size
        {"orphan": plan.orphans, "delete": plan.delete, "rewrite": plan.rewrite}[action].append(
            name
        )
    return plan


def _action(size: int, used: int, threshold: float) -> str:
    """ "delete", "rewrite" or "" for an indexed pack with ``used`` live bytes."""
    if used == 0:
        return "delete"
    unused = size - len(PACK_MAGIC) - used
    return "rewrite" if unused > 0 and unused * 100 > threshold * size else ""


# --- rewriting ----------------------------------------------------------------------------


class _Ticker:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, what: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, what)


def _rewrite(
    storage: Storage,
    index: _LiveIndex,
    keep: npt.NDArray[np.bool_],
    plan: _Plan,
    pack_size: int,
    dry_run: bool,
    tick: _Ticker,
) -> _Written:
    """Copy the live blobs of ``plan.rewrite`` into new packs (stored unless
    ``dry_run``); packs found damaged are left out and reported by the caller."""
    written = _Written()
    writers = {True: PackWriter(pack_size), False: PackWriter(pack_size)}
    numbers = {raw.hex(): n for n, raw in enumerate(index.packs)}
    live = index.entries[keep]
    live = live[np.lexsort((live["offset"], live["pack"]))]  # grouped by pack, in pack order
    starts = np.searchsorted(live["pack"], np.arange(len(index.packs) + 1, dtype=np.uint32))
    for name in plan.rewrite:
        number = numbers[name]
        blobs = _live_blobs(storage, name, live[starts[number] : starts[number + 1]])
        tick(f"rewriting pack {name}")
        if blobs is None:
            written.damaged.append(name)
            continue
        for type_, id_, blob in blobs:
            writer = writers[type_ == DATA_TYPE]
            if not writer.fits(len(blob)):
                _finish(storage, writer, written, dry_run)
            writer.add(type_, id_, blob)
            if writer.full:
                _finish(storage, writer, written, dry_run)
    for writer in writers.values():
        if len(writer):
            _finish(storage, writer, written, dry_run)
    return written


def _live_blobs(
    storage: Storage, name: str, rows: Entries
) -> list[tuple[int, bytes, bytes]] | None:
    """(type, id, blob) of the indexed live blobs of pack ``name``, or None
    when the pack is damaged: its content does not hash to its name, or a
    header differs from its index entry."""
    try:
        data = storage.load(pack_path(name))
    except ObjectNotFound:
        return None
    if hashlib.sha256(data).hexdigest() != name:
        return None
    blobs = []
    for id_, row in zip(_ids(rows), rows, strict=True):
        offset, length, type_ = int(row["offset"]), int(row["length"]), int(row["type"])
        end = offset + HEADER_SIZE + length
        if end > len(data) or data[offset : offset + HEADER_SIZE] != BLOB_HEADER.pack(
            type_, id_, length
        ):
            return None
        blobs.append((type_, id_, data[offset + HEADER_SIZE : end]))
    return blobs


def _finish(storage: Storage, writer: PackWriter, written: _Written, dry_run: bool) -> None:
    name, data = writer.finish()
    if not dry_run:
        _store(storage, pack_path(name), data)
    written.packs.append((bytes.fromhex(name), writer.entries))
    written.bytes += len(data)
    writer.reset()


def _store(storage: Storage, name: str, data: bytes | memoryview) -> None:
    """Store a content-named object; one that exists already has these bytes."""
    with contextlib.suppress(ObjectExists):
        storage.store(name, data)


def _new_index(
    index: _LiveIndex, keep: npt.NDArray[np.bool_], plan: _Plan, written: _Written
) -> IndexFile:
    """Every entry that stays (all entries of packs kept, live entries moved
    into new packs), superseding every index file read."""
    gone = {bytes.fromhex(n) for n in (*plan.delete, *plan.rewrite)}
    entries = index.entries
    dropped = np.array([raw in gone for raw in index.packs] or [False], dtype=bool)
    stays = entries[~dropped[entries["pack"]]] if len(entries) else entries
    used_packs = sorted(set(stays["pack"].tolist()))
    remap = np.zeros(max(len(index.packs), 1), dtype=np.uint32)
    remap[used_packs] = np.arange(len(used_packs), dtype=np.uint32)
    stays = stays.copy()
    stays["pack"] = remap[stays["pack"]]
    table = [index.packs[n] for n in used_packs]
    moved = entries_from_packs([entries for _, entries in written.packs])
    moved["pack"] += np.uint32(len(table))
    table += [raw for raw, _ in written.packs]
    merged = sort_entries(np.concatenate([stays, moved]).astype(ENTRY_DTYPE))
    return IndexFile(table, merged, sorted(index.present))


def _verify(name: str, data: bytes, index: _LiveIndex, keep: npt.NDArray[np.bool_]) -> None:
    """Refuse (before anything is stored or deleted) an index file that does
    not decode as readers will decode it, or that lost a live blob."""
    try:
        new = IndexFile.decode(name, data)
    except IntegrityError as exc:
        raise CompactRefused(f"the new index file does not decode (a bug): {exc}") from None
    covered = set(_ids(new.entries))
    lost = sum(1 for id_ in _ids(index.entries[keep]) if id_ not in covered)
    if lost:
        raise CompactRefused(f"the new index would lose {lost} live blobs (a bug)")


# --- deleting -----------------------------------------------------------------------------


class _Guard:
    """Raises CompactAborted once the lock is lost (never without a check)."""

    def __init__(self, lock_lost: Callable[[], bool] | None) -> None:
        self._lock_lost = lock_lost

    def __call__(self) -> None:
        if self._lock_lost is not None and self._lock_lost():
            raise CompactAborted(
                "the repository lock was lost (broken, or judged stale), so another client "
                "may be writing; nothing more is deleted."
            )


def _delete_packs(
    storage: Storage, plan: _Plan, created: set[str], dry_run: bool, tick: _Ticker, guard: _Guard
) -> int:
    """Delete the planned packs (never one just written); returns the bytes freed."""
    freed = 0
    for name in (*plan.rewrite, *plan.delete, *plan.orphans):
        tick(f"deleting pack {name}")
        if name in created:
            continue
        if not dry_run:
            guard()
            try:
                storage.delete(pack_path(name))
            except ObjectNotFound:
                continue
        freed += plan.sizes[name]
    return freed


def _delete_index_files(
    storage: Storage, names: list[str], dry_run: bool, guard: _Guard
) -> tuple[int, int]:
    """Delete superseded index files; (how many, their bytes)."""
    count = size = 0
    for name in names:
        try:
            length = storage.info(index_path(name)).size
            if not dry_run:
                guard()
                storage.delete(index_path(name))
        except ObjectNotFound:
            continue
        count, size = count + 1, size + length
    return count, size


def _delete_temporary(
    storage: Storage, old: Callable[[ObjectInfo], bool], dry_run: bool, guard: _Guard
) -> tuple[int, int]:
    """Delete temporary files of crashed writes older than the grace period."""
    count = size = 0
    for info in list(storage.list_temporary("")):
        if not old(info):
            continue
        if not dry_run:
            guard()
            try:
                storage.delete_temporary(info.name)
            except ObjectNotFound:
                continue
        count, size = count + 1, size + info.size
    return count, size
