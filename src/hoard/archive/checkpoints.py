"""A backup's checkpoint archives: their names, and the series one backup writes.

Borg 1.x's scheme, in one place: a checkpoint of the backup ``NAME`` is the
archive ``NAME.checkpoint``, or ``NAME.checkpoint.N`` (the first free N)
while an interrupted earlier run's checkpoint holds that name. Each new
checkpoint of a backup replaces its previous one; once the backup's archive
is stored, its checkpoints and those of earlier interrupted runs of the
same name are deleted (docs/design/checkpoints.md).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable

from hoard.archive.record import ArchiveRecord, ArchiveStats
from hoard.errors import ArchiveRecordNotFound
from hoard.objects.store import ObjectStore

logger = logging.getLogger(__name__)

CHECKPOINT_TAIL = r"\.checkpoint(\.\d+)?"
"""What follows a backup's name in the name of one of its checkpoints."""
_ANY_CHECKPOINT = re.compile(CHECKPOINT_TAIL + r"\Z")


def looks_like_checkpoint(name: str) -> bool:
    """Named as a checkpoint of some backup (Borg 1.x marks checkpoints by name)."""
    return _ANY_CHECKPOINT.search(name) is not None


def is_checkpoint_of(record: ArchiveRecord, name: str) -> bool:
    """``record`` is a checkpoint of the backup called ``name``."""
    return (
        record.checkpoint
        and re.fullmatch(re.escape(name) + CHECKPOINT_TAIL, record.name) is not None
    )


def checkpoint_name(taken: Iterable[str], name: str) -> str:
    """``NAME.checkpoint``, or ``NAME.checkpoint.N`` with the first free N."""
    names = set(taken)
    candidate = f"{name}.checkpoint"
    n = 0
    while candidate in names:
        n += 1
        candidate = f"{name}.checkpoint.{n}"
    return candidate


RecordMaker = Callable[[str, list[bytes], ArchiveStats], ArchiveRecord]
"""Builds the record of a checkpoint (its name, root tree ids, figures so far)."""


class CheckpointSeries:
    """The checkpoints one backup of ``name`` writes: each replaces the previous one.

    ``verify`` runs before each checkpoint record is stored (the lock is
    still ours, else ``LockLost``); ``records`` lists the repository's
    archives (to find a free name).
    """

    def __init__(
        self,
        store: ObjectStore,
        name: str,
        make_record: RecordMaker,
        *,
        verify: Callable[[], None],
        records: Callable[[], list[ArchiveRecord]],
    ) -> None:
        self._store = store
        self._backup = name
        self._make_record = make_record
        self.verify = verify
        self._records = records
        self._name: str | None = None
        self._current: bytes | None = None

    def store(self, root: list[bytes], stats: ArchiveStats) -> None:
        """Store a checkpoint record (flushing packs and index first), then drop the previous."""
        self.verify()
        if self._name is None:
            self._name = checkpoint_name((r.name for r in self._records()), self._backup)
        record = self._make_record(self._name, root, stats)
        new = self._store.put_archive(record.encode())
        if self._current is not None and self._current != new:
            self._store.delete_archive(self._current)
        self._current = new
        logger.debug("Checkpoint %s stored (%d files).", self._name, stats.nfiles)

    def aborted_text(self) -> str:
        """What a lost lock leaves: no archive, this run's last checkpoint (if any) kept."""
        text = f"the backup was aborted before archive {self._backup!r} was stored"
        if self._current is None:
            return text
        return f"{text}; its last checkpoint {self._name!r} is kept"

    def remove(self, records: list[ArchiveRecord]) -> set[bytes]:
        """After the archive is stored: delete this backup's checkpoint and those that
        interrupted runs of the same name left; returns the ids deleted."""
        ids = {r.id for r in records if is_checkpoint_of(r, self._backup)}
        if self._current is not None:
            ids.add(self._current)
        for id_ in ids:
            with contextlib.suppress(ArchiveRecordNotFound):  # deleted meanwhile by another client
                self._store.delete_archive(id_)
        return ids
