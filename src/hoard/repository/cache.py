"""The local chunk-index cache: catching up costs what changed, not the repo size.

Under ``<cache_dir>/<repo-id-hex>/`` two files (docs/design/repository-format.md,
"Local index cache"):

- ``chunks``: the ChunkIndex (``ChunkIndex.save`` format, SHA-256 trailer);
- ``merged``: the names of the index files whose entries ``chunks`` holds, the
  names known to be superseded, and the trailer digest of the ``chunks`` file
  they belong to, the whole checksummed.

Both are replaced atomically; the digest ties the pair together, so a crash
between the two renames (or two processes racing) yields a mismatch and a
rebuild, never a cache that claims index files it does not hold.

``sync`` lists ``index/``: when every index file merged before is still there
it merges only the new ones; when one vanished or is superseded by a new one
(compaction rewrote the index), or the cache is missing or damaged, it
rebuilds from all index files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hoard.errors import IntegrityError, ObjectNotFound
from hoard.repository.chunkindex import ChunkIndex
from hoard.repository.indexfile import IndexFile
from hoard.repository.indexnames import index_path, list_index_names
from hoard.repository.pack import HEADER_SIZE, salvage_pack
from hoard.storage.base import Storage
from hoard.storage.localfile import write_atomically

STATE_MAGIC = b"hoard-index-cache 1\n"
CHUNKS_FILE = "chunks"
STATE_FILE = "merged"


@dataclass(frozen=True)
class SyncReport:
    """What ``IndexCache.sync`` did.

    ``merged``: index files whose entries were merged in this sync (all of the
    live ones on a rebuild); ``rebuilt``: whether the index was built from
    scratch; ``reason``: why it was rebuilt (empty for an incremental sync);
    ``index_files``: index files present in the repository.
    """

    merged: int
    rebuilt: bool
    reason: str
    index_files: int


@dataclass
class _State:
    """Index-file names accounted for by a chunk index."""

    merged: set[str] = field(default_factory=set)
    superseded: set[str] = field(default_factory=set)

    def encode(self, chunks_digest: bytes) -> bytes:
        body = json.dumps(
            {
                "chunks_sha256": chunks_digest.hex(),
                "merged": sorted(self.merged),
                "superseded": sorted(self.superseded),
            },
            sort_keys=True,
        ).encode()
        content = STATE_MAGIC + body + b"\n"
        return content + hashlib.sha256(content).hexdigest().encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> tuple[_State, bytes]:
        """The state and the chunks digest it expects; ValueError if damaged."""
        content, _, trailer = data.rstrip(b"\n").rpartition(b"\n")
        content += b"\n"
        if not content.startswith(STATE_MAGIC):
            raise ValueError("bad magic")
        if hashlib.sha256(content).hexdigest().encode() != trailer:
            raise ValueError("checksum mismatch")
        doc = json.loads(content[len(STATE_MAGIC) :])
        state = cls(set(doc["merged"]), set(doc["superseded"]))
        return state, bytes.fromhex(doc["chunks_sha256"])


logger = logging.getLogger("hoard")
_PACK_NAME = re.compile(r"^packs/([0-9a-f]{2})/(\1[0-9a-f]{62})$")


def read_index_files(storage: Storage, names: Iterable[str]) -> dict[str, IndexFile]:
    """Load and verify index files; IntegrityError names a damaged one."""
    return {name: IndexFile.decode(name, storage.load(index_path(name))) for name in names}


def _read_readable(
    storage: Storage, names: Iterable[str]
) -> tuple[dict[str, IndexFile], list[str]]:
    """Like ``read_index_files``, but a damaged (or vanished) index file is
    skipped with a warning instead of failing every command: one damaged
    index file costs only itself (its packs are then read from their headers)."""
    files: dict[str, IndexFile] = {}
    damaged: list[str] = []
    for name in names:
        try:
            files[name] = IndexFile.decode(name, storage.load(index_path(name)))
        except ObjectNotFound:
            continue
        except IntegrityError as exc:
            logger.warning(
                "Index file %s is damaged and skipped (%s); the packs it lists are read "
                "from their own headers. Run 'hoard check --repair'.",
                name,
                exc,
                extra={"msgid": "IndexFileDamaged"},
            )
            damaged.append(name)
    return files, damaged


def _index_uncovered_packs(storage: Storage, index: ChunkIndex) -> None:
    """Add the blobs of every pack no merged index file covers, from the
    packs' own headers (unauthenticated, but the objects layer authenticates
    every blob it reads). Only done when an index file is damaged, since a
    running backup's fresh packs are uncovered too, and harmlessly so."""
    covered = {index.pack_name(n) for n in range(index.pack_count)}
    for info in storage.list("packs/"):
        match = _PACK_NAME.match(info.name)
        if match is None or bytes.fromhex(match.group(2)) in covered:
            continue
        try:
            data = storage.load(info.name)
        except ObjectNotFound:
            continue
        number = index.add_pack(bytes.fromhex(match.group(2)))
        for e in salvage_pack(data):
            index.add(e.id, number, e.offset, e.length, e.type)


def _drop_unbacked(storage: Storage, index: ChunkIndex) -> dict[str, bool]:
    """On a rebuild (which reads every index file anyway), one listing of
    ``packs/`` more: entries in packs that are missing or shorter than the
    index says are not trusted (the next backup stores that data again).
    Returns the packs concerned: hex name -> True if truncated, False if
    missing."""
    sizes = {}
    for info in storage.list("packs/"):
        match = _PACK_NAME.match(info.name)
        if match is not None:
            sizes[bytes.fromhex(match.group(2))] = info.size
    _, packs = index.discard_unbacked(sizes, HEADER_SIZE)
    return {p.hex(): p in sizes for p in packs}


class IndexCache:
    """The chunk index of one repository, persisted under ``cache_dir``.

    ``cache_dir=None`` keeps nothing on disk: every ``sync`` rebuilds. Methods
    are serialised by a lock; separate processes sharing a cache directory are
    safe (atomic replacement, digest-linked files) but may rebuild needlessly.
    """

    def __init__(self, cache_dir: Path | None, repo_id: bytes) -> None:
        self.path = None if cache_dir is None else cache_dir / repo_id.hex()
        self._repo_id = repo_id
        self._state = _State()
        self._lock = threading.Lock()
        self.last_report: SyncReport | None = None
        self.lost_packs: dict[str, bool] = {}
        """Packs a rebuild found missing (False) or truncated (True), hex
        names; their entries were left out (``Repository.audit_packs`` reports them)."""

    def sync(self, storage: Storage) -> ChunkIndex:
        """Bring the cached chunk index up to date with ``storage``'s ``index/``.

        Returns the index; ``last_report`` tells what was done. Raises
        IntegrityError if an index file that has to be read is damaged.
        """
        with self._lock:
            present = list_index_names(storage)
            loaded, reason = self._load()
            if loaded is not None:
                state, index = loaded
                report = self._catch_up(storage, state, index, present)
                if report is not None:
                    self.last_report = report
                    return index
                reason = "merged index files were superseded"
                if state.merged - present:
                    reason = "merged index files vanished"
            index = self._rebuild(storage, present, reason)
            return index

    def record(self, name: str | None, index: ChunkIndex) -> None:
        """Note that ``index`` now also holds index file ``name`` (None: only
        files noted with ``adopt``) and persist it.

        The caller guarantees that ``index`` holds exactly the entries of the
        recorded and adopted index files (the repository calls this right after
        writing ``name`` with nothing else pending).
        """
        with self._lock:
            if name is not None:
                self._state.merged.add(name)
            self._save(index)

    def adopt(self, name: str) -> None:
        """Note that the in-memory index holds index file ``name``, which another
        writer of this session stored (a create worker): persisted by the next
        ``record``, so a crash before that only costs merging it again."""
        with self._lock:
            self._state.merged.add(name)

    def forget(
        self,
        ids: Collection[bytes],
        packs: Collection[bytes],
        relocated: Mapping[bytes, tuple[bytes, int, int, int]] | None = None,
    ) -> int:
        """Drop ``ids`` and every entry of the (raw-named) ``packs`` from the
        persisted chunk index: they were found missing or damaged, and the
        next backup must store that data again instead of deduplicating
        against it. The cached files are re-read, so this is right whatever
        the caller's in-memory index holds (e.g. entries of packs whose index
        file was never written). Same files, same format; returns how many
        entries were dropped. ``relocated`` (id -> raw pack, offset, length,
        type) are intact copies found in the index files for some of them
        (``Repository.relocate``): they are indexed instead. A later rebuild
        from the index files brings entries of a damaged (not missing) blob
        back until ``check --repair`` rewrites the index (readers then forget
        them again); docs/design/repository-format.md says so."""
        with self._lock:
            loaded, _ = self._load()
            if loaded is None:
                return 0
            state, index = loaded
            dropped = index.discard(ids) + len(index.discard_packs(packs))
            for id_, (pack, offset, length, type_) in (relocated or {}).items():
                if not index.contains(id_):
                    index.add(id_, index.add_pack(pack), offset, length, type_)
                    dropped += 1
            if dropped:
                self._save(index, state)
            return dropped

    def _catch_up(
        self, storage: Storage, state: _State, index: ChunkIndex, present: set[str]
    ) -> SyncReport | None:
        """Merge new index files into ``index``; None when a rebuild is needed."""
        if state.merged - present:
            return None
        new, damaged = _read_readable(storage, sorted(present - state.merged - state.superseded))
        superseded = {s for f in new.values() for s in f.superseded}
        if superseded & state.merged:
            return None
        live = {name: f for name, f in new.items() if name not in superseded}
        index.add_index_files(list(live.values()))
        if damaged:
            _index_uncovered_packs(storage, index)
        state.merged |= live.keys()
        state.superseded = (state.superseded | superseded) & present
        self._state = state
        if new:
            self._save(index)
        return SyncReport(len(live), False, "", len(present))

    def _rebuild(self, storage: Storage, present: set[str], reason: str) -> ChunkIndex:
        files, damaged = _read_readable(storage, sorted(present))
        superseded = {s for f in files.values() for s in f.superseded}
        live = [name for name in sorted(files) if name not in superseded]
        index = ChunkIndex()
        index.add_index_files([files[name] for name in live])
        if damaged:
            _index_uncovered_packs(storage, index)
        self.lost_packs.update(_drop_unbacked(storage, index))
        self._state = _State(set(live), superseded & present)
        self._save(index)
        self.last_report = SyncReport(len(live), True, reason, len(present))
        return index

    def _load(self) -> tuple[tuple[_State, ChunkIndex] | None, str]:
        """The cached state and index, or None and why they cannot be used."""
        if self.path is None:
            return None, "no persistent cache"
        try:
            state, digest = _State.decode((self.path / STATE_FILE).read_bytes())
            index = ChunkIndex.load(self.path / CHUNKS_FILE, self._repo_id, expected_digest=digest)
        except FileNotFoundError:
            return None, "no cache"
        except (OSError, ValueError, KeyError, TypeError, IntegrityError) as exc:
            return None, f"cache damaged: {exc}"
        return (state, index), ""

    def _save(self, index: ChunkIndex, state_: _State | None = None) -> None:
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        digest = index.save(self.path / CHUNKS_FILE, self._repo_id)
        state = (state_ or self._state).encode(digest)
        write_atomically(self.path / STATE_FILE, lambda f: f.write(state))
