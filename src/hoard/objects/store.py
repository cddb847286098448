"""ObjectStore: plaintext objects in, sealed blobs in a Repository out.

This is where the layers meet: ids are keyed MACs of the plaintext,
payloads are compressed then sealed (AEAD with the type and id as
associated data), and the key-agnostic repository stores the result. Reading
reverses it and, in mode ``none`` where nothing is authenticated, checks the
plaintext against its id instead, so corruption is never silent.

Thread safety: every method may be called from several threads (the create
pipeline's workers call ``put_data`` concurrently).
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from hoard.errors import (
    ArchiveRecordNotFound,
    ChunkNotFound,
    HoardError,
    IntegrityError,
    PackNotFound,
)
from hoard.objects.compression import DEFAULT_COMPRESSION, CompressionSpec, compress, decompress
from hoard.objects.deletions import DeletionRecord, latest_states
from hoard.objects.envelope import Envelope
from hoard.objects.ids import IdHasher
from hoard.objects.keys import KeyMaterial
from hoard.objects.types import Buffer, ObjectType
from hoard.repository.repository import Repository

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PutResult:
    """Outcome of storing a data chunk: ``size`` plaintext bytes, ``csize``
    stored bytes, ``new`` False when the repository had it already."""

    id: bytes
    size: int
    csize: int
    new: bool

    def __reduce__(self) -> tuple[type[PutResult], tuple[bytes, int, int, bool]]:
        """Pickled as a tuple (create's workers send one per chunk): a frozen
        slots dataclass's default pickling is several times slower."""
        return (PutResult, (self.id, self.size, self.csize, self.new))


class ObjectStore:
    """Typed, compressed, sealed objects on a repository, under one key."""

    def __init__(
        self,
        repository: Repository,
        key: KeyMaterial,
        compression: CompressionSpec = DEFAULT_COMPRESSION,
    ) -> None:
        self.repository = repository
        self.key = key
        self.compression = compression
        self._hasher = IdHasher.from_key(key)
        self._envelope = Envelope.from_key(key)
        self._added_lock = threading.Lock()
        self._metadata_added = 0

    @property
    def session_id(self) -> bytes:
        """The envelope session of this store (empty for unencrypted modes)."""
        return self._envelope.session_id

    def id_of(self, data: Buffer) -> bytes:
        return self._hasher.id_of(data)

    def _seal(self, type_: ObjectType, id_: bytes, data: Buffer) -> bytes:
        return self._envelope.seal(type_, id_, compress(self.compression, data))

    def put_data(self, data: Buffer) -> PutResult:
        """Store a file-content chunk unless the repository has it (dedup)."""
        id_ = self._hasher.id_of(data)
        stored = self.repository.stored_size(id_)
        if stored is not None:
            return PutResult(id_, len(data), stored, False)
        blob = self._seal(ObjectType.DATA, id_, data)
        new = self.repository.put(ObjectType.DATA, id_, blob)
        return PutResult(id_, len(data), len(blob), new)

    def put_sealed_data(self, id_: bytes, size: int, blob: bytes) -> PutResult:
        """Store a data chunk another process sealed (``size`` plaintext bytes under
        ``id_``) unless the repository has it; as :meth:`put_data` otherwise.

        The sealer used an envelope session of its own and the same key, so
        the blob opens like one sealed here (``archive/filework.py``).
        """
        stored = self.repository.stored_size(id_)
        if stored is not None:
            return PutResult(id_, size, stored, False)
        new = self.repository.put(ObjectType.DATA, id_, blob)
        return PutResult(id_, size, len(blob), new)

    def put(self, type_: ObjectType, data: bytes) -> bytes:
        """Store a metadata object (tree, meta); returns its id."""
        id_ = self._hasher.id_of(data)
        if not self.repository.contains(id_):
            blob = self._seal(type_, id_, data)
            if self.repository.put(type_, id_, blob):  # True for exactly one putter
                with self._added_lock:
                    self._metadata_added += len(blob)
        return id_

    @property
    def metadata_added(self) -> int:
        """Stored bytes of the metadata objects :meth:`put` added (not those it
        found): a backup's deduplicated size counts its new trees, as Borg's
        counts its new item metadata, so ``create --stats`` and ``info`` agree."""
        with self._added_lock:
            return self._metadata_added

    def get(self, type_: ObjectType, id_: bytes) -> bytes:
        """The plaintext of object ``id_``.

        ChunkNotFound if no index entry has it; IntegrityError (PackNotFound
        for a missing pack) naming the object, its type and its pack if it
        cannot be read or is not authentic. Either way this client stops
        trusting the damaged copy (``Repository.forget``/``forget_pack``), so
        its next backup stores the data again.
        """
        try:
            return self._get(type_, id_)
        except (IntegrityError, ChunkNotFound):
            # Another copy may be in the index files: one a later backup
            # stored, or (ChunkNotFound) the copy an earlier session forgot,
            # which is then read once more so the error says what is wrong.
            if not self.repository.relocate(id_):
                raise
        return self.get(type_, id_)

    def get_many(self, type_: ObjectType, ids: Sequence[bytes]) -> list[bytes | HoardError]:
        """The plaintexts of objects ``ids``, each one or the error ``get``
        would raise for it (ChunkNotFound, IntegrityError, PackNotFound).

        ``extract`` reads many small chunks this way: neighbouring blobs of a
        pack come in one read (``Repository.get_many``). A blob that cannot
        be read or opened goes through ``get`` once more, which names and
        forgets the damaged copy and tries any other copy, so the outcome is
        exactly that of ``get``; damage costs one extra read of the damaged
        blob only.
        """
        outcomes = self.repository.get_many(ids)
        for n, (id_, blob) in enumerate(zip(ids, outcomes, strict=True)):
            if not isinstance(blob, HoardError):
                try:
                    outcomes[n] = self._open(type_, id_, blob)
                    continue
                except IntegrityError:
                    pass
            try:
                outcomes[n] = self.get(type_, id_)
            except (IntegrityError, ChunkNotFound) as exc:
                outcomes[n] = exc
        return outcomes

    def _get(self, type_: ObjectType, id_: bytes) -> bytes:
        try:
            return self._open(type_, id_, self.repository.get(id_))
        except ChunkNotFound:
            raise ChunkNotFound(id_, type_.name) from None
        except PackNotFound as exc:
            if exc.pack is not None:
                self.repository.forget_pack(exc.pack, exc)
            raise PackNotFound(
                exc.reason, object_id=id_, object_type=type_.name, pack=exc.pack
            ) from None
        except IntegrityError as exc:
            typed = type(exc)(
                exc.reason,
                object_id=id_,
                object_type=type_.name,
                pack=exc.pack or self._pack_of(id_),
            )
            self.repository.forget(id_, typed)
            raise typed from None

    def _pack_of(self, id_: bytes) -> str | None:
        located = self.repository.locate(id_)
        return None if located is None else located[0]

    def open_blob(self, type_: ObjectType, id_: bytes, blob: bytes) -> bytes:
        """Authenticate and decode a blob read by other means than ``get``
        (``check`` reads the blobs of damaged packs and raw archive records);
        IntegrityError if it is not the authentic object ``id_``."""
        return self._open(type_, id_, blob)

    def _open(self, type_: ObjectType, id_: bytes, blob: bytes) -> bytes:
        payload = self._envelope.open(type_, id_, blob)
        try:
            data = decompress(payload)
        except IntegrityError as exc:  # mode none: nothing authenticated the payload
            raise IntegrityError(exc.reason, object_id=id_, object_type=type_.name) from None
        if not self._hasher.keyed and not hmac.compare_digest(self._hasher.id_of(data), id_):
            raise IntegrityError("content does not match id", object_id=id_, object_type=type_.name)
        return data

    def contains(self, id_: bytes) -> bool:
        return self.repository.contains(id_)

    def flush(self) -> None:
        """Make everything put so far durable (packs, then index)."""
        self.repository.flush()

    # --- archive records -----------------------------------------------------------------

    def put_archive(self, data: bytes) -> bytes:
        """Store an archive record (after flushing packs and index); returns its id."""
        id_ = self._hasher.id_of(data)
        self.repository.store_archive(id_, self._seal(ObjectType.ARCHIVE, id_, data))
        return id_

    def get_archive(self, id_: bytes) -> bytes:
        return self._open(ObjectType.ARCHIVE, id_, self.repository.load_archive(id_))

    def load_archives(
        self,
        on_damaged: Callable[[bytes, IntegrityError], None] | None = None,
        *,
        include_hidden: bool = False,
    ) -> dict[bytes, bytes]:
        """The plaintext of every archive record, by id (in id order).

        Archives hidden behind a deletion record (deleted in append-only
        mode) are left out unless ``include_hidden``: every command that
        lists archives through here skips them.

        Goes through the repository's record cache: one listing plus a read
        per record this client has not seen. A cached blob that does not open
        is never trusted: it is read again from the repository, and only a
        record damaged there counts as damaged: it is left out and handed to
        ``on_damaged`` (id, error), or, without one, raises IntegrityError.
        """
        blobs = self.repository.load_archives()
        records: dict[bytes, bytes] = {}
        damaged: list[bytes] = []
        for id_, blob in blobs.items():
            try:
                records[id_] = self._open(ObjectType.ARCHIVE, id_, blob)
            except IntegrityError:
                damaged.append(id_)
        if damaged:
            fresh = self.repository.load_archives(refetch=damaged)
            for id_ in damaged:
                if id_ not in fresh:  # deleted meanwhile
                    continue
                try:
                    records[id_] = self._open(ObjectType.ARCHIVE, id_, fresh[id_])
                except IntegrityError as exc:
                    if on_damaged is None:
                        raise
                    on_damaged(id_, exc)
        if not include_hidden and records:
            for id_ in self.hidden_archives(records):
                records.pop(id_, None)
        return dict(sorted(records.items()))

    def delete_archive(self, id_: bytes) -> None:
        """Delete archive ``id_``: in an append-only repository hide it behind a
        deletion record (``undelete`` restores it), else remove its record
        (and any deletion records of it). ArchiveRecordNotFound if there is no such
        archive, or (append-only) if it is hidden already. Outside append-only
        mode a hidden archive is removed too. ``delete`` and ``prune`` both
        come here, so both follow the repository's mode."""
        if self.repository.config.append_only:
            self._flip(id_, hide=True)
            return
        self.repository.delete_archive(id_)
        self._drop_deletion_records({id_})

    def hide_archive(self, id_: bytes) -> None:
        """Hide archive ``id_`` behind a deletion record in any mode (``check
        --repair`` keeps a repaired hidden archive hidden). ArchiveRecordNotFound if
        there is no such archive or it is hidden already."""
        self._flip(id_, hide=True)

    def undelete_archive(self, id_: bytes) -> None:
        """Restore archive ``id_`` hidden by a deletion record, by storing the
        next record of its generation counter (never a delete or overwrite,
        so it works in append-only mode). ArchiveRecordNotFound unless it is hidden."""
        self._flip(id_, hide=False)

    def _flip(self, id_: bytes, *, hide: bool) -> None:
        if not self.repository.archive_exists(id_):
            raise ArchiveRecordNotFound(id_)
        current = self.deletion_states().get(id_)
        hidden = current is not None and current.hidden
        if hidden == hide:
            raise ArchiveRecordNotFound(id_)
        record = DeletionRecord.next_for(id_, current)
        data = record.encode()
        record_id = self._hasher.id_of(data)
        self.repository.store_deletion(record_id, self._seal(ObjectType.DELETION, record_id, data))

    def _deletion_records(self) -> list[tuple[bytes, DeletionRecord]]:
        """Every deletion record that opens, with its id; damaged ones are
        logged and ignored (so an archive is at worst shown, never lost)."""
        blobs = self.repository.load_deletions()
        found: list[tuple[bytes, DeletionRecord]] = []
        damaged: list[bytes] = []
        for id_, blob in blobs.items():
            try:
                found.append(
                    (id_, DeletionRecord.decode(self._open(ObjectType.DELETION, id_, blob)))
                )
            except (IntegrityError, ValueError):
                damaged.append(id_)
        if damaged:  # a damaged cached copy is read again before it is given up
            fresh = self.repository.load_deletions(refetch=damaged)
            for id_ in damaged:
                if id_ not in fresh:
                    continue
                try:
                    plain = self._open(ObjectType.DELETION, id_, fresh[id_])
                    found.append((id_, DeletionRecord.decode(plain)))
                except (IntegrityError, ValueError) as exc:
                    logger.warning("Deletion record %s is damaged and ignored: %s", id_.hex(), exc)
        return found

    def deletion_states(self) -> dict[bytes, DeletionRecord]:
        """Per archive id, its current deletion record (highest generation)."""
        return latest_states(record for _, record in self._deletion_records())

    def hidden_archives(self, present: Iterable[bytes] | None = None) -> set[bytes]:
        """Ids of the archives hidden behind a deletion record, of those whose
        archive record exists (``present``; default: the listing). What
        ``list --consider-deleted`` marks, ``undelete`` restores and, once
        append-only is off, ``purge_hidden_archives`` removes for real."""
        states = self.deletion_states()
        if not states:
            return set()
        ids = set(self.repository.list_archives() if present is None else present)
        return {a for a, r in states.items() if r.hidden and a in ids}

    def purge_hidden_archives(self) -> list[bytes]:
        """Remove the hidden archives for real: their archive records, then
        their deletion records (a crash in between leaves deletion records of
        a missing archive, which are ignored). Their data is then garbage for
        ``compact``. Refused (AppendOnlyViolation) in append-only mode.
        Returns the archive ids removed."""
        hidden = sorted(self.hidden_archives())
        for id_ in hidden:
            try:
                self.repository.delete_archive(id_)
            except ArchiveRecordNotFound:
                continue
        self._drop_deletion_records(set(hidden))
        return hidden

    def _drop_deletion_records(self, archives: set[bytes]) -> None:
        """Remove the deletion records of ``archives`` (outside append-only mode)."""
        if not archives:
            return
        for record_id, record in self._deletion_records():
            if record.archive in archives:
                self.repository.delete_deletion(record_id)

    def list_archives(self) -> list[bytes]:
        return self.repository.list_archives()
