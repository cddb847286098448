"""The archive part of ``check`` and what ``check --repair`` does to archives.

Checking: every archive record opens (authenticates) on its own, so one
damaged record costs only itself; every tree object an archive references
exists and opens; every data chunk it references is indexed, and with
``--verify-data`` opens (all data chunks, each once, on a thread pool: the
AEAD and the decompressors release the GIL). Each problem names the object
and the archive and path that reference it, so a user knows what a damaged
pack costs.

Repairing an archive (``repair_archive``): a file whose chunks are lost
keeps its size, the lost chunks become zero runs (``ZERO_ID``, which are not
stored objects) and the original chunk list is kept in
``Entry.chunks_healthy``; a directory whose tree object is lost becomes an
empty directory. A file repaired before whose every original chunk exists
again (a later backup stored them) gets them back: it is healed. Changed
trees are stored anew up to the root and the archive gets a new record; the
caller deletes the old one afterwards (write order: trees, record, delete).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from hoard.archive.items import ZERO_ID, ChunkRef, Entry
from hoard.archive.record import ArchiveRecord
from hoard.archive.tree import read_directory, store_directory
from hoard.errors import ChunkNotFound, IntegrityError
from hoard.objects.store import ObjectStore
from hoard.objects.types import ObjectType
from hoard.repository.pack import PackEntry

_ReadError = (IntegrityError, ChunkNotFound)


@dataclass(frozen=True)
class ArchiveFinding:
    """A problem in an archive: the object concerned (hex id, or None for the
    record itself), the archive, the path inside it, what is wrong."""

    kind: str
    archive: str
    path: str
    object_id: str | None
    detail: str


@dataclass
class RecordScan:
    """Every archive record: the ones that open, and the ids of those that do not."""

    records: list[ArchiveRecord] = field(default_factory=list)
    damaged: dict[bytes, str] = field(default_factory=dict)


def scan_records(store: ObjectStore) -> RecordScan:
    """Open every archive record on its own; a damaged one is reported, not raised.

    Every record is read from the repository, not from the local record
    cache: the cache holds the copy this client once read, and ``check``
    is about what the repository holds now.
    """
    scan = RecordScan()
    blobs = store.repository.load_archives(refetch=store.repository.list_archives())
    for id_, blob in blobs.items():
        _open_record(store, id_, blob, scan)
    scan.records.sort(key=lambda r: (r.time, r.name))
    return scan


def _open_record(store: ObjectStore, id_: bytes, blob: bytes, scan: RecordScan) -> None:
    try:
        record = ArchiveRecord.decode(store.open_blob(ObjectType.ARCHIVE, id_, blob), id_)
    except IntegrityError as exc:
        scan.damaged[id_] = str(exc)
        return
    scan.records.append(record)


def verify_data(
    store: ObjectStore,
    ids: Iterable[bytes],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[bytes, str]:
    """Open every data chunk in ``ids`` (each once); id -> why it failed.

    Chunks are read pack by pack, each pack with one ranged read, and packs
    are verified on a thread pool (decryption, decompression and reads
    release the GIL). A chunk no index entry has goes through
    ``ObjectStore.get``, which says why.
    """
    todo = set(ids) - {ZERO_ID}
    by_pack: dict[str, list[PackEntry]] = {}
    unlocated: list[bytes] = []
    for id_ in todo:
        where = store.repository.locate(id_)
        if where is None:
            unlocated.append(id_)
        else:
            by_pack.setdefault(where[0], []).append(where[1])
    bad: dict[bytes, str] = {}
    done = 0

    def one(id_: bytes) -> tuple[bytes, str | None]:
        try:
            store.get(ObjectType.DATA, id_)
        except _ReadError as exc:
            return id_, str(exc)
        return id_, None

    def pack_task(pack: str, entries: list[PackEntry]) -> list[tuple[bytes, str | None]]:
        # A blob that fails is read once more through get: it names what is
        # wrong, makes this client forget the damaged copy, and finds another
        # copy if a later backup stored one (then the chunk is fine).
        return [
            (entry.id, None) if _authentic(store, entry, blob) else one(entry.id)
            for entry, blob in store.repository.read_pack_blobs(pack, entries)
        ]

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        futures = [pool.submit(pack_task, p, e) for p, e in sorted(by_pack.items())]
        futures += [pool.submit(lambda i: [one(i)], id_) for id_ in unlocated]
        for future in futures:
            for id_, error in future.result():
                done += 1
                if error is not None:
                    bad[id_] = error
            if progress is not None:
                progress(done, len(todo))
    return bad


def _authentic(store: ObjectStore, entry: PackEntry, blob: bytes | IntegrityError) -> bool:
    """Whether the blob read for ``entry`` is the authentic data chunk."""
    if isinstance(blob, IntegrityError):
        return False
    try:
        store.open_blob(ObjectType.DATA, entry.id, blob)
    except IntegrityError:
        return False
    return True


def data_ids(store: ObjectStore, records: Iterable[ArchiveRecord]) -> set[bytes]:
    """Every data chunk the archives reference (trees that do not read are skipped)."""
    ids: set[bytes] = set()
    seen: set[bytes] = set()
    pending = [tid for r in records for tid in r.root]
    while pending:
        tree_id = pending.pop()
        if tree_id in seen:
            continue
        seen.add(tree_id)
        try:
            entries = list(read_directory(store, [tree_id]))
        except _ReadError:
            continue
        for entry in entries:
            if entry.tree:
                pending.extend(entry.tree)
            if entry.chunks:
                ids.update(c.id for c in entry.chunks)
    ids.discard(ZERO_ID)
    return ids


class ArchiveChecker:
    """Walks archives and reports missing or damaged trees and chunks.

    ``bad``: chunk ids known to be damaged (from the repository part or
    ``--verify-data``). Trees found clean are remembered, so a directory
    shared by many archives is checked once.
    """

    def __init__(self, store: ObjectStore, bad: dict[bytes, str]) -> None:
        self._store = store
        self._bad = bad
        self._clean: set[bytes] = set()

    def check(self, record: ArchiveRecord) -> list[ArchiveFinding]:
        findings: list[ArchiveFinding] = []
        self._tree(record, record.root, "", findings)
        return findings

    def _tree(
        self, record: ArchiveRecord, tree_ids: list[bytes], path: str, out: list[ArchiveFinding]
    ) -> bool:
        """Check one directory; True if nothing below it is wrong."""
        if all(t in self._clean for t in tree_ids):
            return True
        clean = True
        for tree_id in tree_ids:
            if tree_id in self._clean:
                continue
            try:
                entries = list(read_directory(self._store, [tree_id]))
            except _ReadError as exc:
                out.append(
                    ArchiveFinding(
                        "missing_tree" if isinstance(exc, ChunkNotFound) else "damaged_tree",
                        record.name,
                        path or ".",
                        tree_id.hex(),
                        f"directory contents lost: {exc}",
                    )
                )
                clean = False
                continue
            ok = all([self._entry(record, e, path, out) for e in entries])
            if ok:
                self._clean.add(tree_id)
            clean = clean and ok
        return clean

    def _entry(
        self, record: ArchiveRecord, entry: Entry, parent: str, out: list[ArchiveFinding]
    ) -> bool:
        path = f"{parent}/{os.fsdecode(entry.name)}" if parent else os.fsdecode(entry.name)
        ok = True
        if entry.is_broken:
            detail = "file is broken: lost chunks were replaced by zeros in an earlier repair"
            out.append(ArchiveFinding("broken_file", record.name, path, None, detail))
            ok = False
        for offset, ref in _offsets(entry.chunks or []):
            problem = self._chunk_problem(ref.id)
            if problem is not None:
                detail = f"bytes {offset}-{offset + ref.size} lost: {problem[1]}"
                out.append(ArchiveFinding(problem[0], record.name, path, ref.id.hex(), detail))
                ok = False
        if entry.is_dir and entry.tree:
            ok = self._tree(record, entry.tree, path, out) and ok
        return ok

    def _chunk_problem(self, id_: bytes) -> tuple[str, str] | None:
        if id_ == ZERO_ID:
            return None
        if id_ in self._bad:
            return "damaged_chunk", self._bad[id_]
        if not self._store.contains(id_):
            return "missing_chunk", "not in the repository"
        return None


def _offsets(chunks: list[ChunkRef]) -> Iterable[tuple[int, ChunkRef]]:
    offset = 0
    for ref in chunks:
        yield offset, ref
        offset += ref.size


@dataclass
class ArchiveRepair:
    """What ``repair_archive`` changed: the new record (None if nothing
    changed) and one line per loss or healing."""

    record: ArchiveRecord | None
    lost: list[str] = field(default_factory=list)
    healed: list[str] = field(default_factory=list)


class ArchiveRepairer:
    """Rebuilds archives around lost objects (see the module docstring).

    Directories are rebuilt once per tree-id list, so archives sharing
    directories share the repaired trees too.
    """

    def __init__(self, store: ObjectStore, bad: dict[bytes, str]) -> None:
        self._store = store
        self._bad = bad
        self._done: dict[tuple[bytes, ...], tuple[list[bytes], list[str], list[str]]] = {}

    def repair(self, record: ArchiveRecord) -> ArchiveRepair:
        root, lost, healed = self._tree(record.root, "")
        if root == record.root:
            return ArchiveRepair(None)
        new = replace(record, root=root, id=b"")
        new.id = self._store.put_archive(new.encode())
        return ArchiveRepair(new, lost, healed)

    def _usable(self, id_: bytes) -> bool:
        return id_ == ZERO_ID or (id_ not in self._bad and self._store.contains(id_))

    def _tree(self, tree_ids: list[bytes], path: str) -> tuple[list[bytes], list[str], list[str]]:
        key = tuple(tree_ids)
        if key in self._done:
            return self._done[key]
        lost: list[str] = []
        healed: list[str] = []
        try:
            entries = list(read_directory(self._store, tree_ids))
        except _ReadError:
            lost.append(f"{path or '.'}: directory contents lost")
            empty = store_directory(self._store, [])
            self._done[key] = (empty, lost, healed)
            return empty, lost, healed
        changed = False
        for entry in entries:
            entry_path = f"{path}/{os.fsdecode(entry.name)}" if path else os.fsdecode(entry.name)
            if entry.is_dir and entry.tree:
                tree, sub_lost, sub_healed = self._tree(entry.tree, entry_path)
                lost += sub_lost
                healed += sub_healed
                if tree != entry.tree:
                    entry.tree = tree
                    changed = True
            if entry.chunks is not None and self._file(entry, entry_path, lost, healed):
                changed = True
        result: tuple[list[bytes], list[str], list[str]] = (
            store_directory(self._store, entries) if changed else tree_ids, lost, healed
        )  # fmt: skip
        self._done[key] = result
        return result

    def _file(self, entry: Entry, path: str, lost: list[str], healed: list[str]) -> bool:
        """Replace lost chunks by zero runs, or heal; True if the entry changed."""
        assert entry.chunks is not None
        original = entry.chunks_healthy or entry.chunks
        if entry.chunks_healthy is not None and all(self._usable(c.id) for c in original):
            entry.chunks = original
            entry.chunks_healthy = None
            healed.append(f"{path}: healed, all chunks are back")
            return True
        missing = [(o, c) for o, c in _offsets(original) if not self._usable(c.id)]
        replaced = [ChunkRef(ZERO_ID, c.size) if not self._usable(c.id) else c for c in original]
        if not missing or replaced == entry.chunks:
            return False
        entry.chunks = replaced
        entry.chunks_healthy = list(original)
        ranges = ", ".join(f"{o}-{o + c.size}" for o, c in missing)
        lost.append(f"{path}: bytes {ranges} lost, replaced by zeros")
        return True
