"""The repository: typed, id-addressed blobs in packs, and the records around them.

Key-agnostic: a blob is opaque bytes with a one-byte type and a 32-byte id
chosen by the layer above. Writes follow docs/design/write-order.md: packs,
then one index file per ``flush``, then (via ``store_archive``, which flushes
first) the archive record, so a crash never leaves a record pointing at data
that no index file covers.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from hoard.errors import (
    ArchiveRecordNotFound,
    ChunkNotFound,
    HoardError,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    PackNotFound,
    RepositoryAlreadyExists,
    RepositoryError,
)
from hoard.repository.config import DEFAULT_PACK_SIZE, RepoConfig, load_config
from hoard.repository.indexnames import index_path, list_index_names
from hoard.repository.pack import (
    BLOB_HEADER,
    DATA_TYPE,
    HEADER_SIZE,
    ID_SIZE,
    PackEntry,
    PackWriter,
    pack_path,
    parse_pack,
    salvage_pack,
)
from hoard.repository.recordcache import RecordCache, RecordSyncReport, list_archive_ids
from hoard.storage.appendonly import AppendOnlyStorage
from hoard.storage.base import Storage
from hoard.storage.quota import QuotaStorage

if TYPE_CHECKING:  # imported where used: they load numpy, which `list` and `info` never need
    from hoard.repository.cache import IndexCache, SyncReport
    from hoard.repository.chunkindex import ChunkIndex, IndexEntry
    from hoard.repository.indexfile import IndexFile
    from hoard.repository.sharedquota import SharedTotal
    from hoard.repository.writer import IndexFileData

OtherWriters = Callable[[], "Sequence[IndexFileData]"]
"""Flushes the other writers of this session (``Repository.attach_writers``) and
returns the index files they stored."""

ARCHIVES_PREFIX = "archives/"
DELETIONS_PREFIX = "deletions/"
DELETIONS_FILE = "deletions"
"""The local cache file of the deletion records (next to ``archives``)."""
KEYS_PREFIX = "keys/"
PACKS_PREFIX = "packs/"
READ_RUN_BYTES = 4 * 1024 * 1024
"""``get_many`` reads neighbouring blobs of a pack in loads of about this size."""
READ_GAP_BYTES = 64 * 1024
"""... skipping over at most this many bytes of blobs not asked for."""
_PACK_NAME = re.compile(r"^packs/([0-9a-f]{2})/(\1[0-9a-f]{62})$")


def guarded_storage(storage: Storage, config: RepoConfig) -> Storage:
    """``storage`` as a repository with ``config`` must be written: through the
    quota wrapper when a storage quota or a minimum free space is set, and
    through the append-only wrapper (outermost) when the repository is
    append-only, so that no code above can delete or overwrite anything."""
    if config.storage_quota or config.additional_free_space:
        storage = QuotaStorage(
            storage,
            quota=config.storage_quota,
            additional_free_space=config.additional_free_space,
        )
    if config.append_only:
        storage = AppendOnlyStorage(storage)
    return storage


@dataclass(frozen=True)
class RebuildReport:
    """What ``rebuild_index_from_packs`` did.

    ``unreadable_packs``: packs skipped because their structure is broken;
    ``misnamed_packs``: packs indexed although their content no longer hashes
    to their name (some blob in them is damaged; ``check`` finds which).
    """

    index_name: str
    packs: int
    entries: int
    removed_index_files: list[str] = field(default_factory=list)
    unreadable_packs: list[str] = field(default_factory=list)
    misnamed_packs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PackAudit:
    """What ``audit_packs`` found: packs the index knows that are ``missing``
    or ``truncated`` (hex names), and how many index entries it dropped."""

    missing: list[str]
    truncated: list[str]
    dropped: int


@dataclass(eq=False)
class _SealedPack:
    """A full pack taken out of its writer; ``storing`` while a thread writes it."""

    writer: PackWriter
    storing: bool


def _check_id(id_: bytes) -> None:
    if len(id_) != ID_SIZE:
        raise ValueError(f"ids are {ID_SIZE} bytes, not {len(id_)}")


class Repository:
    """A repository on a Storage. Use ``create`` or ``open``.

    Thread safety: every method may be called from several threads. One lock
    guards the in-memory state; a ``put`` that fills a pack hands the full
    pack over to a "sealed" list and stores it *outside* the lock, so other
    threads keep hashing, compressing and putting while the 16 MiB write and
    its fsync run (measured: the lock-held write was the create bottleneck).
    Sealed packs stay readable and deduplicate until they are stored and
    indexed; ``flush`` waits for those in flight before it writes the index
    file. Blob reads from packs run outside the lock. Several processes may
    write one repository at once: each writes its own packs and index files.

    The chunk index is synced lazily, on the first call that needs it, so a
    repository whose index files are damaged still opens (for
    ``rebuild_index_from_packs``). The caller keeps ownership of ``storage``.
    """

    def __init__(self, storage: Storage, config: RepoConfig, cache_dir: Path | None) -> None:
        self._storage = guarded_storage(storage, config)
        self._config = config
        self._cache_dir = cache_dir
        self._index_cache: IndexCache | None = None
        self._records = RecordCache(cache_dir, config.id)
        self._deletions = RecordCache(
            cache_dir, config.id, prefix=DELETIONS_PREFIX, filename=DELETIONS_FILE
        )
        self._lock = threading.RLock()
        self._stored = threading.Condition(self._lock)
        """Notified whenever a sealed pack's store finished (or failed)."""
        self._index: ChunkIndex | None = None
        self._data_writer = PackWriter(config.pack_size)
        self._meta_writer = PackWriter(config.pack_size)
        self._sealed: list[_SealedPack] = []
        """Full packs taken from the writers, not yet stored and indexed; still readable."""
        self._unindexed: list[tuple[bytes, list[PackEntry]]] = []
        self._closed = False
        self.config_damaged: str | None = None
        """Why ``config`` was unusable when its copy was read instead (None: it was fine)."""
        self._forgotten_ids: set[bytes] = set()
        self._forgotten_packs: set[bytes] = set()
        """Entries dropped as damaged, still to be dropped from the local cache."""
        self._lost: dict[bytes, IntegrityError] = {}
        """Why each entry forgotten in this session went: a later read of it
        raises that again instead of a bare ChunkNotFound."""
        self._bad_copies: dict[bytes, set[str]] = {}
        """Packs (hex) where a blob was found damaged: never relocated to again."""
        self._relocated: dict[bytes, tuple[bytes, int, int, int]] = {}
        """Blobs re-pointed at another copy: id -> (raw pack, offset, length, type)."""
        self._index_files: list[IndexFile] | None = None
        """The readable index files, loaded on the first ``relocate``."""
        self._others: OtherWriters | None = None
        self._others_lock = threading.Lock()
        self._others_stored: dict[bytes, int] = {}
        """Blobs other writers of this session stored, not yet adopted: id -> length.
        Own lock: a create worker's results are noted while the walker holds
        ``_lock`` waiting for the workers to flush."""

    # --- lifecycle ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        storage: Storage,
        *,
        pack_size: int = DEFAULT_PACK_SIZE,
        append_only: bool = False,
        storage_quota: int | None = None,
        key_mode: str = "none",
        cache_dir: Path | None = None,
    ) -> Repository:
        """Write a new ``config`` and return the open, empty repository.

        Raises RepositoryAlreadyExists if ``storage`` holds any object (a
        repository or anything else, as Borg refuses a non-empty directory),
        ValueError for out-of-range settings.
        """
        if next(iter(storage.list("")), None) is not None:
            raise RepositoryAlreadyExists(storage.location)
        config = RepoConfig.new(
            pack_size=pack_size,
            append_only=append_only,
            storage_quota=storage_quota,
            key_mode=key_mode,
        )
        try:
            config.save(storage)
        except ObjectExists:
            raise RepositoryAlreadyExists(storage.location) from None
        return cls(storage, config, cache_dir)

    @classmethod
    def open(
        cls, storage: Storage, cache_dir: Path | None, *, operation: str = "read"
    ) -> Repository:
        """Open an existing repository for ``operation`` (read, write, check,
        delete). ``cache_dir`` holds the local index cache (None: rebuild the
        chunk index from the index files on every open). Raises the errors of
        ``load_config``; a damaged ``config`` answered from its copy is
        named in ``config_damaged``, for the caller to warn about."""
        loaded = load_config(storage, operation)
        config = loaded.config
        if storage.enforces_append_only and not config.append_only:
            # A server's --append-only: delete hides, compact refuses, as in
            # a repository configured so (the server refuses the rest anyway).
            config = replace(config, append_only=True)
        repository = cls(storage, config, cache_dir)
        repository.config_damaged = loaded.damaged
        return repository

    @property
    def config(self) -> RepoConfig:
        return self._config

    @property
    def id(self) -> bytes:
        """The 32-byte repository id (also names the local cache directory)."""
        return self._config.id

    @property
    def storage(self) -> Storage:
        return self._storage

    def close(self) -> None:
        """Flush and close. Idempotent. The storage stays open."""
        with self._lock:
            if not self._closed:
                self.flush()
                self._closed = True
                self._persist_forgotten()

    def __enter__(self) -> Repository:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close; after an exception, drop what was not flushed instead of
        writing it, since the failure may have come from the storage."""
        if exc_type is None:
            self.close()
        else:
            self._closed = True
            self._persist_forgotten()  # only drops entries: safe after any failure

    def _check_open(self) -> None:
        if self._closed:
            raise RepositoryError(f"{self._storage.location} is closed")

    # --- the chunk index ---------------------------------------------------------------

    def sync_index(self) -> SyncReport:
        """Load or catch up the chunk index now (otherwise done on first use)
        and say how; raises IntegrityError naming a damaged index file."""
        with self._lock:
            self._chunk_index()
            report = self._cache().last_report
            assert report is not None  # set by every sync
            return report

    def _cache(self) -> IndexCache:
        if self._index_cache is None:
            from hoard.repository.cache import IndexCache  # noqa: PLC0415 - numpy: see TYPE_CHECKING

            self._index_cache = IndexCache(self._cache_dir, self._config.id)
        return self._index_cache

    def _chunk_index(self) -> ChunkIndex:
        if self._index is None:
            self._index = self._cache().sync(self._storage)
        return self._index

    def forget_index(self) -> None:
        """Drop the in-memory chunk index; the next use syncs it from ``index/``.

        For a caller that rewrote the index files itself (``compact``):
        the local cache notices the vanished files and rebuilds.
        """
        with self._lock:
            self._check_open()
            self._index = None

    # --- damage noticed by readers -------------------------------------------------------

    def forget(self, id_: bytes, error: IntegrityError) -> None:
        """Stop trusting blob ``id_``: a reader found it damaged (``error``).
        Its index entry goes (now, and from the local cache when the
        repository is closed, even after an error), so a later ``put`` of the
        same id stores the data again instead of deduplicating against the
        bad copy; a later ``get`` in this session raises ``error`` again."""
        _check_id(id_)
        with self._lock:
            if error.pack is not None:
                self._bad_copies.setdefault(id_, set()).add(error.pack)
            if self._index is not None and self._index.discard([id_]):
                self._forgotten_ids.add(id_)
                self._lost[id_] = error
                self._relocated.pop(id_, None)

    def forget_pack(self, pack: str, error: IntegrityError) -> None:
        """Stop trusting every blob of pack ``pack`` (hex name): it is missing
        (``error``, raised again by a later ``get`` of any of them)."""
        raw = bytes.fromhex(pack)
        with self._lock:
            if self._index is None:
                return
            ids = self._index.discard_packs([raw])
            if ids:
                self._forgotten_packs.add(raw)
                for lost in ids:
                    self._lost[lost] = PackNotFound(error.reason, object_id=lost, pack=pack)
                    self._bad_copies.setdefault(lost, set()).add(pack)
                    self._relocated.pop(lost, None)

    def relocate(self, id_: bytes) -> bool:
        """Point ``id_`` at another copy, after the indexed one was forgotten.

        Several copies of a blob exist when a backup stored again what an
        earlier one had in a damaged pack; a client whose index was built
        from the index files may know the damaged copy only (an id is indexed
        once). This looks the id up in every readable index file (loaded
        once per session, only when damage was found) for a copy in a pack
        not known bad; True if one was found: the next ``get`` reads it, and
        the local cache learns it when the repository is closed.
        """
        _check_id(id_)
        with self._lock:
            self._check_open()
            bad = self._bad_copies.get(id_, set())
            for pack, offset, length, type_ in self._copies_in_index_files(id_):
                if pack.hex() in bad:
                    continue
                index = self._chunk_index()
                if index.contains(id_):
                    return True
                index.add(id_, index.add_pack(pack), offset, length, type_)
                bad.add(pack.hex())  # if this copy fails too, it is not tried again
                self._bad_copies[id_] = bad
                self._relocated[id_] = (pack, offset, length, type_)
                self._lost.pop(id_, None)
                return True
        return False

    def _copies_in_index_files(self, id_: bytes) -> list[tuple[bytes, int, int, int]]:
        import numpy as np  # noqa: PLC0415 - see TYPE_CHECKING above

        from hoard.repository.indexfile import IndexFile  # noqa: PLC0415

        if self._index_files is None:
            self._index_files = []
            for name in sorted(list_index_names(self._storage)):
                with contextlib.suppress(IntegrityError, ObjectNotFound):
                    data = self._storage.load(index_path(name))
                    self._index_files.append(IndexFile.decode(name, data))
        key0 = np.uint64(int.from_bytes(id_[:8], "big"))
        copies = []
        for index_file in self._index_files:
            entries = index_file.entries
            i = int(np.searchsorted(entries["key0"], key0))
            while i < len(entries) and entries["key0"][i] == key0:
                e = entries[i]
                if e["rest"].tobytes() == id_[8:]:
                    copies.append(
                        (
                            index_file.packs[int(e["pack"])],
                            int(e["offset"]),
                            int(e["length"]),
                            int(e["type"]),
                        )
                    )
                i += 1
        return copies

    def _raise_lost(self, id_: bytes) -> None:
        """Raise why ``id_`` was forgotten in this session, if it was."""
        error = self._lost.get(id_)
        if error is not None:
            raise type(error)(error.reason, object_id=id_, pack=error.pack)

    def audit_packs(self) -> PackAudit:
        """Compare one listing of ``packs/`` with the chunk index and forget
        the entries of packs that are missing or shorter than the index says
        (also reporting those a cache rebuild in this session left out).

        ``create`` calls this before it deduplicates, so it never references
        data it could have known to be lost: one listing (names and sizes) and
        one vectorised pass over the index, no pack reads. A bit flip inside
        a pack is not seen here (that needs reading); readers forget those
        blobs when they find them (``forget``).
        """
        with self._lock:
            self._check_open()
            index = self._chunk_index()
            sizes: dict[bytes, int] = {}
            for info in self._storage.list(PACKS_PREFIX):
                match = _PACK_NAME.match(info.name)
                if match is not None:
                    sizes[bytes.fromhex(match.group(2))] = info.size
            ids, packs = index.discard_unbacked(sizes, HEADER_SIZE)
            self._forgotten_ids.update(ids)
            names = {p.hex() for p in packs}
            for dropped in ids:  # never relocated into these packs
                self._bad_copies.setdefault(dropped, set()).update(names)
                self._lost[dropped] = IntegrityError(
                    "its pack is missing or truncated (found by a pack listing)", object_id=dropped
                )
        self._persist_forgotten()
        lost = {p.hex(): p in sizes for p in packs} | self._cache().lost_packs
        missing = sorted(p for p, short in lost.items() if not short)
        truncated = sorted(p for p, short in lost.items() if short)
        return PackAudit(missing, truncated, len(ids))

    def _forget_what_was_forgotten(self) -> None:
        """Drop this session's knowledge of damaged entries (lock held): after
        ``rebuild_index_from_packs`` the index holds only what the packs
        hold intact, and dropping those ids from the rebuilt cache at close
        would hide intact copies."""
        self._forgotten_ids, self._forgotten_packs = set(), set()
        self._lost, self._bad_copies, self._relocated = {}, {}, {}
        self._index_files = None

    def _persist_forgotten(self) -> None:
        with self._lock:
            ids, packs = self._forgotten_ids, self._forgotten_packs
            self._forgotten_ids, self._forgotten_packs = set(), set()
            relocated, self._relocated = self._relocated, {}
        if ids or packs:
            self._cache().forget(ids, packs, relocated)

    # --- blobs ---------------------------------------------------------------------------

    def put(self, type_: int, id_: bytes, blob: bytes) -> bool:
        """Add a blob; True if added, False if ``id_`` was stored or pending already.

        The answer is decided under the lock, so of several threads putting
        the same new id exactly one gets True (deduplicated-size statistics
        rely on it).

        Durable only after ``flush``. Data blobs (type 0) and others go to
        separate packs, so metadata can be read without touching file data.
        Raises ValueError for a bad type, id or size, and storage errors when
        a full pack is written.
        """
        _check_id(id_)
        full: list[_SealedPack] = []
        with self._lock:
            self._check_open()
            if self._chunk_index().contains(id_) or self._pending_type(id_) is not None:
                return False
            if self._others_stored and self._other_length(id_) is not None:
                return False
            data = type_ == DATA_TYPE
            if not self._writer(data).fits(len(blob)):
                full.append(self._seal(data))
            self._writer(data).add(type_, id_, blob)
            if self._writer(data).full:
                full.append(self._seal(data))
        self._store_all(full)  # outside the lock: other threads go on putting meanwhile
        return True

    def contains(self, id_: bytes) -> bool:
        """True if ``id_`` is stored or pending."""
        _check_id(id_)
        with self._lock:
            self._check_open()
            if self._pending_type(id_) is not None or self._chunk_index().contains(id_):
                return True
        return self._other_length(id_) is not None

    def stored_size(self, id_: bytes) -> int | None:
        """Stored length of blob ``id_`` (pending or stored), or None if absent.

        One locked lookup that answers both "is it there" and "what does it
        cost", which the create pipeline asks for every chunk.
        """
        _check_id(id_)
        with self._lock:
            self._check_open()
            for writer in self._pending_writers():
                length = writer.length_of(id_)
                if length is not None:
                    return length
            length = self._chunk_index().length_of(id_)
        if length is None and self._others_stored:
            length = self._other_length(id_)
        return length

    def get_type(self, id_: bytes) -> int:
        """The type ``id_`` was put with, from the index alone (no pack read).

        A separate call rather than part of ``get``: the objects layer checks
        the type it expects, and ``get`` stays a plain bytes lookup.
        """
        _check_id(id_)
        with self._lock:
            self._check_open()
            pending = self._pending_type(id_)
            if pending is not None:
                return pending
            entry = self._chunk_index().lookup(id_)
        if entry is None:
            raise ChunkNotFound(id_)
        return entry.type

    def get(self, id_: bytes) -> bytes:
        """The blob ``id_``, pending or stored.

        Reads only the blob's range of its pack. Raises ChunkNotFound for an
        unknown id, IntegrityError naming the id and the pack if the pack is
        missing or the blob header there disagrees with the index.
        """
        _check_id(id_)
        with self._lock:
            self._check_open()
            for writer in self._pending_writers():
                blob = writer.get(id_)
                if blob is not None:
                    return blob
            index = self._chunk_index()
            entry = index.lookup(id_)
            if entry is None:
                self._raise_lost(id_)
                raise ChunkNotFound(id_)
            pack = index.pack_name(entry.pack).hex()
        return self._read_blob(id_, pack, entry)

    def _read_blob(self, id_: bytes, pack: str, entry: IndexEntry) -> bytes:
        try:
            data = self._storage.load(pack_path(pack), entry.offset, HEADER_SIZE + entry.length)
        except ObjectNotFound:
            raise PackNotFound("the pack is missing", object_id=id_, pack=pack) from None
        expected = BLOB_HEADER.pack(entry.type, id_, entry.length)
        if len(data) != HEADER_SIZE + entry.length or data[:HEADER_SIZE] != expected:
            raise IntegrityError(
                f"header or length at offset {entry.offset} does not match the index",
                object_id=id_,
                pack=pack,
            )
        return data[HEADER_SIZE:]

    def get_many(
        self, ids: Sequence[bytes], *, max_read: int = READ_RUN_BYTES, max_gap: int = READ_GAP_BYTES
    ) -> list[bytes | HoardError]:
        """The blobs ``ids``, each one or the error ``get`` would raise for it.

        For restoring many small chunks: one lock for all the lookups, and
        blobs of one pack that lie within ``max_gap`` bytes of each other are
        read by one ``load`` of at most about ``max_read`` bytes (a big blob is
        read alone), so a tree of small files costs a read per run of blobs,
        not per blob. An error stays with its blob (a missing pack fails the
        blobs read from it, a bad header the one blob), so the caller can
        name exactly what was lost.
        """
        outcomes: list[bytes | HoardError | None] = [None] * len(ids)
        wanted: dict[str, list[_Wanted]] = {}
        with self._lock:
            self._check_open()
            index = self._chunk_index()
            writers = self._pending_writers()
            names: dict[int, str] = {}
            for n, id_ in enumerate(ids):
                _check_id(id_)
                outcome = self._pending_blob(writers, id_) if writers else None
                if outcome is not None:
                    outcomes[n] = outcome
                    continue
                entry = index.lookup(id_)
                if entry is None:
                    outcomes[n] = self._lost_error(id_)
                    continue
                pack = names.get(entry.pack)
                if pack is None:
                    pack = names[entry.pack] = index.pack_name(entry.pack).hex()
                wanted.setdefault(pack, []).append((entry.offset, entry.length, entry.type, n, id_))
        for pack, blobs in wanted.items():
            blobs.sort()
            for run in _read_runs(blobs, max_read, max_gap):
                self._read_run(pack, run, outcomes)
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(ids), "every blob has an outcome"
        return done

    @staticmethod
    def _pending_blob(writers: list[PackWriter], id_: bytes) -> bytes | None:
        for writer in writers:
            blob = writer.get(id_)
            if blob is not None:
                return blob
        return None

    def _lost_error(self, id_: bytes) -> HoardError:
        """What ``get`` raises for an id the index does not have (lock held)."""
        try:
            self._raise_lost(id_)
        except HoardError as exc:
            return exc
        return ChunkNotFound(id_)

    def _read_run(
        self, pack: str, run: list[_Wanted], outcomes: list[bytes | HoardError | None]
    ) -> None:
        """Read neighbouring blobs of ``pack`` with one load; check each header."""
        blobs = self._load_blobs(
            pack, [(offset, length, t, id_) for offset, length, t, _, id_ in run]
        )
        for (_, _, _, n, _), blob in zip(run, blobs, strict=True):
            outcomes[n] = blob

    def _load_blobs(self, pack: str, spans: list[_Span]) -> list[bytes | IntegrityError]:
        """The blobs at ``spans`` (sorted by offset) of ``pack``, read by one
        ranged load, each checked against its header: its bytes, or the
        IntegrityError of a header or length that disagrees (a truncated
        pack included); PackNotFound for each if the pack is missing."""
        start = spans[0][0]
        end = max(offset + HEADER_SIZE + length for offset, length, _, _ in spans)
        try:
            data = self._storage.load(pack_path(pack), start, end - start)
        except ObjectNotFound:
            return [
                PackNotFound("the pack is missing", object_id=id_, pack=pack) for *_, id_ in spans
            ]
        view = memoryview(data)
        found: list[bytes | IntegrityError] = []
        for offset, length, type_, id_ in spans:
            at = offset - start
            piece = view[at : at + HEADER_SIZE + length]
            expected = BLOB_HEADER.pack(type_, id_, length)
            if len(piece) != HEADER_SIZE + length or piece[:HEADER_SIZE] != expected:
                reason = f"header or length at offset {offset} does not match the index"
                found.append(IntegrityError(reason, object_id=id_, pack=pack))
            else:
                found.append(bytes(piece[HEADER_SIZE:]))
        return found

    def list_ids(self, type_: int | None = None) -> list[bytes]:
        """Ids of all stored and pending blobs (of ``type_`` only, if given)."""
        with self._lock:
            self._check_open()
            ids = list(self._chunk_index().ids(type_))
            for writer in self._pending_writers():
                ids.extend(e.id for e in writer.entries if type_ in (None, e.type))
        return ids

    def flush(self) -> str | None:
        """Write pending packs, then one index file covering every pack
        written since the last flush, then update the local cache.

        When it returns, every blob put before is durable and indexed,
        including those of the other writers attached (``attach_writers``),
        which are flushed first. Returns the index file's name, or None when
        this process had nothing to write.
        """
        with self._lock:
            self._check_open()
            adopted = self._flush_others()
            while any(s.storing for s in self._sealed):  # packs other threads are storing
                self._stored.wait()
            for is_data in (True, False):
                if len(self._writer(is_data)):
                    self._seal(is_data)
            for sealed in self._sealed:  # new ones, and any whose store failed before
                sealed.storing = True
            self._store_all(list(self._sealed))
            if not self._unindexed:
                if adopted:  # nothing of its own pending: the index is what is recorded
                    self._cache().record(None, self._chunk_index())
                return None
            from hoard.repository.indexfile import IndexFile  # noqa: PLC0415 - numpy

            name, data = IndexFile.from_packs(self._unindexed).encode()
            self._store_idempotent(index_path(name), data)
            self._unindexed = []
            self._cache().record(name, self._chunk_index())
            return name

    # --- other writers of this session (create's worker processes) -------------------

    def attach_writers(self, flush: OtherWriters | None) -> None:
        """Have every ``flush`` (so every archive record) first flush the other
        writers of this session through ``flush`` and adopt their index files;
        None detaches them. The write order then holds for their blobs too: a
        record never names a blob whose pack and index file are not stored."""
        with self._others_lock:
            self._others = flush

    def note_stored(self, stored: Iterable[tuple[bytes, int]]) -> None:
        """Blobs (id, stored length) another writer of this session stored and
        will index at its next flush: ``put``, ``contains`` and ``stored_size``
        treat them as present, so this process does not store them again."""
        with self._others_lock:
            self._others_stored.update(stored)

    def _other_length(self, id_: bytes) -> int | None:
        with self._others_lock:
            return self._others_stored.get(id_)

    def _flush_others(self) -> bool:
        """Flush the attached writers and adopt their index files (lock held)."""
        with self._others_lock:
            flush = self._others
        if flush is None:
            return False
        files = flush()
        self.adopt_index_files(files)
        return bool(files)

    def adopt_index_files(self, files: Sequence[IndexFileData]) -> None:
        """Merge index files another writer of this session stored (name, bytes
        as stored) into the chunk index, so this session reads their blobs and
        the local cache need not fetch them again. IntegrityError if one does
        not decode (it was damaged on its way here)."""
        if not files:
            return
        from hoard.repository.indexfile import IndexFile  # noqa: PLC0415 - numpy

        decoded = [IndexFile.decode(name, data) for name, data in files]
        with self._lock:
            index = self._chunk_index()
            index.add_index_files(decoded)
            for name, _ in files:
                self._cache().adopt(name)
        ids = [index_file.ids() for index_file in decoded]
        with self._others_lock:
            for batch in ids:
                for id_ in batch:
                    self._others_stored.pop(id_, None)

    def share_quota(self, total: SharedTotal) -> bool:
        """Count this session's stores in ``total`` from now on, against the
        storage quota, with the other processes writing for it (``sharedquota``:
        they join the same total); False if the repository has no quota."""
        from hoard.repository.sharedquota import share_quota  # noqa: PLC0415 - create only

        with self._lock:
            shared = share_quota(self._storage, self._config.storage_quota, total, publish=True)
            if shared is self._storage:
                return False
            self._storage = shared
            return True

    def write_known_ids(self, path: Path) -> None:
        """Write the ids and stored lengths of the chunk index as it is now to
        ``path``, for other writers of this session to deduplicate against
        (``KnownIds``); blobs pending here are not in it."""
        from hoard.repository.chunkindex import KnownIds  # noqa: PLC0415 - numpy

        with self._lock:
            self._check_open()
            index = self._chunk_index()
        KnownIds.write(index, path)

    def _pending_type(self, id_: bytes) -> int | None:
        for writer in self._pending_writers():
            type_ = writer.type_of(id_)
            if type_ is not None:
                return type_
        return None

    def _writer(self, data: bool) -> PackWriter:
        return self._data_writer if data else self._meta_writer

    def _pending_writers(self) -> list[PackWriter]:
        """Every writer whose blobs are not in the chunk index yet (lock held)."""
        writers = [self._data_writer, self._meta_writer]
        if self._sealed:  # asked for every chunk: no generator when there is nothing to add
            writers += [s.writer for s in self._sealed]
        return writers

    def _seal(self, data: bool) -> _SealedPack:
        """Take the current data or metadata writer's pack for storing, and
        start a fresh writer in its place (lock held)."""
        sealed = _SealedPack(self._writer(data), storing=True)
        if data:
            self._data_writer = PackWriter(self._config.pack_size)
        else:
            self._meta_writer = PackWriter(self._config.pack_size)
        self._sealed.append(sealed)
        return sealed

    def _store_all(self, claimed: list[_SealedPack]) -> None:
        """Store sealed packs this thread claimed; after a failure, give the
        rest back unclaimed so that a later ``flush`` stores them."""
        for n, sealed in enumerate(claimed):
            try:
                self._store_sealed(sealed)
            except BaseException:
                with self._lock:
                    for rest in claimed[n + 1 :]:
                        rest.storing = False
                    self._stored.notify_all()
                raise

    def _store_sealed(self, sealed: _SealedPack) -> None:
        """Store a sealed pack, then index its blobs in memory (the index file
        follows at the next flush).

        Called with ``sealed.storing`` set by whoever claimed it. The lock may
        be held (``flush``) or not (``put``): the pack's bytes are built and
        written without touching shared state. On failure the pack stays
        sealed, readable and unclaimed, so the next ``flush`` stores it.
        """
        try:
            name, data = sealed.writer.finish()
            self._store_idempotent(pack_path(name), data)
        except BaseException:
            with self._lock:
                sealed.storing = False
                self._stored.notify_all()
            raise
        with self._lock:
            index = self._chunk_index()
            raw = bytes.fromhex(name)
            number = index.add_pack(raw)
            entries = sealed.writer.entries
            for e in entries:
                index.add(e.id, number, e.offset, e.length, e.type)
            self._unindexed.append((raw, entries))
            self._sealed.remove(sealed)
            self._stored.notify_all()

    def _store_idempotent(self, name: str, data: bytes | memoryview) -> None:
        """Store a content-addressed object; an existing one has these bytes."""
        with contextlib.suppress(ObjectExists):
            self._storage.store(name, data)

    # --- archive records and keys -----------------------------------------------------

    def store_archive(self, id_: bytes, blob: bytes) -> None:
        """Flush, then store the archive record ``id_`` (the commit point).

        Flushing first keeps the write order: the record is written only once
        everything it may reference is in packs and index files. Storing the
        same id again is a no-op (ids are content hashes). The local record
        cache learns the record, so this client never reads it back.
        """
        _check_id(id_)
        with self._lock:
            self.flush()
            self._store_idempotent(ARCHIVES_PREFIX + id_.hex(), blob)
        self._records.remember(id_, blob)

    def load_archive(self, id_: bytes) -> bytes:
        """The archive record ``id_``; ArchiveRecordNotFound if there is none."""
        _check_id(id_)
        try:
            return self._storage.load(ARCHIVES_PREFIX + id_.hex())
        except ObjectNotFound:
            raise ArchiveRecordNotFound(id_) from None

    def archive_exists(self, id_: bytes) -> bool:
        """True if archive record ``id_`` is stored (one ``info``, no read)."""
        _check_id(id_)
        return self._storage.exists(ARCHIVES_PREFIX + id_.hex())

    def delete_archive(self, id_: bytes) -> None:
        """Remove archive record ``id_``; ArchiveRecordNotFound if there is
        none. The blobs it referenced stay until compaction."""
        _check_id(id_)
        try:
            self._storage.delete(ARCHIVES_PREFIX + id_.hex())
        except ObjectNotFound:
            raise ArchiveRecordNotFound(id_) from None

    def list_archives(self) -> list[bytes]:
        """Ids of all archive records, sorted; stray names are ignored."""
        return sorted(list_archive_ids(self._storage))

    def load_archives(self, *, refetch: Collection[bytes] = ()) -> dict[bytes, bytes]:
        """Every archive record: id -> blob as stored, in id order.

        One ``list`` of ``archives/``, then reads only the records the local
        record cache lacks (and those in ``refetch``: cached blobs the caller
        found damaged); records of deleted archives leave the cache.
        ``archive_sync_report`` tells what was read.
        """
        return self._records.sync(self._storage, refetch=refetch)

    @property
    def archive_sync_report(self) -> RecordSyncReport | None:
        """What the last ``load_archives`` did (None before the first)."""
        return self._records.last_report

    # --- deletion records (append-only deletes; see repository-format.md) ------------

    def store_deletion(self, id_: bytes, blob: bytes) -> None:
        """Store deletion record ``deletions/<idhex>`` (opaque here, sealed by
        the objects layer). Immutable and idempotent like archive records."""
        _check_id(id_)
        self._store_idempotent(DELETIONS_PREFIX + id_.hex(), blob)
        self._deletions.remember(id_, blob)

    def load_deletions(self, *, refetch: Collection[bytes] = ()) -> dict[bytes, bytes]:
        """Every deletion record: id -> blob as stored. One listing of
        ``deletions/`` plus a read of each record the local cache lacks."""
        return self._deletions.sync(self._storage, refetch=refetch)

    def delete_deletion(self, id_: bytes) -> None:
        """Remove deletion record ``id_`` (only outside append-only mode, when
        its archive is gone); a record that is gone already is fine."""
        _check_id(id_)
        with contextlib.suppress(ObjectNotFound):
            self._storage.delete(DELETIONS_PREFIX + id_.hex())

    def store_key(self, name: str, blob: bytes, *, overwrite: bool = False) -> None:
        """Store key blob ``keys/<name>``; ObjectExists unless ``overwrite``."""
        self._storage.store(KEYS_PREFIX + name, blob, overwrite=overwrite)

    def load_key(self, name: str) -> bytes:
        """Key blob ``keys/<name>``; ObjectNotFound if missing."""
        return self._storage.load(KEYS_PREFIX + name)

    def list_keys(self) -> list[str]:
        """Names of the stored key blobs, sorted."""
        return sorted(info.name[len(KEYS_PREFIX) :] for info in self._storage.list(KEYS_PREFIX))

    # --- repair ----------------------------------------------------------------------------

    def locate(self, id_: bytes) -> tuple[str, PackEntry] | None:
        """Which stored pack (hex name) holds blob ``id_``, and where; None if
        it is not indexed (pending blobs are not in a pack yet)."""
        _check_id(id_)
        with self._lock:
            self._check_open()
            index = self._chunk_index()
            entry = index.lookup(id_)
            if entry is None:
                return None
            pack = index.pack_name(entry.pack).hex()
        return pack, PackEntry(entry.type, id_, entry.offset, entry.length)

    def read_pack_blobs(
        self, pack: str, entries: list[PackEntry]
    ) -> list[tuple[PackEntry, bytes | IntegrityError]]:
        """The blobs at ``entries`` of pack ``pack`` (hex name), in offset order,
        read with one ranged load of the pack (``check --verify-data`` reads every
        blob of every pack: one read per pack instead of one per blob).

        A blob whose header or length disagrees with its entry, or that lies
        beyond the end of a truncated pack, comes with its IntegrityError; a
        missing pack gives PackNotFound for each.
        """
        ordered = sorted(entries, key=lambda e: e.offset)
        if not ordered:
            return []
        spans = [(e.offset, e.length, e.type, e.id) for e in ordered]
        return list(zip(ordered, self._load_blobs(pack, spans), strict=True))

    def load_pack_blob(self, pack: str, entry: PackEntry) -> bytes:
        """The blob bytes at ``entry`` of pack ``pack`` (hex name), read
        without the index: ``check`` opens the blobs of a damaged pack one by
        one to tell the damaged ones from the intact ones."""
        start = entry.offset + HEADER_SIZE
        return self._storage.load(pack_path(pack), start, entry.length)

    def rebuild_index_from_packs(
        self, exclude: Collection[tuple[str, bytes]] = ()
    ) -> RebuildReport:
        """Write one fresh index file from the blob headers of every pack.

        The new index file supersedes all existing ones, which are then
        deleted (kept in append-only mode; readers ignore them either way).
        Of a structurally broken pack the blobs before the damage are kept
        (``salvage_pack``) and the pack is reported. Blobs in ``exclude``
        ((pack hex name, id) pairs found damaged by the objects layer; an
        intact copy of the same id in another pack stays) are left out, so the next
        backup stores them again instead of deduplicating against them.
        Pending blobs are flushed first. Needs no working index: usable when
        index files are lost or damaged (``check --repair``).
        """
        with self._lock:
            self._check_open()
            if len(self._data_writer) or len(self._meta_writer) or self._sealed or self._unindexed:
                self.flush()
            old = sorted(list_index_names(self._storage))
            packs, unreadable, misnamed = self._scan_packs()
            if exclude:
                dropped = set(exclude)
                packs = [(p, [e for e in es if (p.hex(), e.id) not in dropped]) for p, es in packs]
            packs = [(p, es) for p, es in packs if es]
            from hoard.repository.indexfile import IndexFile  # noqa: PLC0415 - numpy

            index_file = IndexFile.from_packs(packs, superseded=old)
            name, data = index_file.encode()
            self._store_idempotent(index_path(name), data)
            removed = self._remove_index_files(o for o in old if o != name)
            self._index = None
            self._forget_what_was_forgotten()  # the rebuilt index supersedes it
            self._chunk_index()
            return RebuildReport(
                name, len(packs), len(index_file.entries), removed, unreadable, misnamed
            )

    def _scan_packs(self) -> tuple[list[tuple[bytes, list[PackEntry]]], list[str], list[str]]:
        packs: list[tuple[bytes, list[PackEntry]]] = []
        unreadable: list[str] = []
        misnamed: list[str] = []
        for storage_name in sorted(i.name for i in self._storage.list(PACKS_PREFIX)):
            match = _PACK_NAME.match(storage_name)
            if match is None:
                continue
            name = match.group(2)
            data = self._storage.load(storage_name)
            try:
                entries = parse_pack(data, name)
            except IntegrityError:
                unreadable.append(name)
                packs.append((bytes.fromhex(name), salvage_pack(data)))
                continue
            if hashlib.sha256(data).hexdigest() != name:
                misnamed.append(name)
            packs.append((bytes.fromhex(name), entries))
        return packs, unreadable, misnamed

    def _remove_index_files(self, names: Iterable[str]) -> list[str]:
        if self._config.append_only:
            return []
        removed = []
        for name in names:
            try:
                self._storage.delete(index_path(name))
            except ObjectNotFound:
                continue
            removed.append(name)
        return removed


_Wanted = tuple[int, int, int, int, bytes]
"""A blob ``get_many`` reads: (offset, length, type, position in the request, id)."""
_Span = tuple[int, int, int, bytes]
"""Where a blob lies in its pack and what its header says: (offset, length, type, id)."""


def _read_runs(blobs: list[_Wanted], max_read: int, max_gap: int) -> Iterator[list[_Wanted]]:
    """Split blobs of one pack, sorted by offset, into runs read by one load each:
    a gap of more than ``max_gap`` bytes, or a run reaching ``max_read`` bytes,
    starts a new run."""
    run: list[_Wanted] = []
    start = end = 0
    for blob in blobs:
        offset, length = blob[0], blob[1]
        blob_end = offset + HEADER_SIZE + length
        if run and (offset - end > max_gap or blob_end - start > max_read):
            yield run
            run = []
        if not run:
            start = end = offset
        run.append(blob)
        end = max(end, blob_end)
    if run:
        yield run
