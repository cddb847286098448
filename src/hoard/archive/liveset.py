"""The mark half of ``compact``: every object some archive still references.

hoard keeps no reference counts (concurrent writers would contend on them),
so ``compact`` traces the references when it runs: every archive record,
the tree objects reachable from it, the data chunks of their files (and the
original chunks of files a repair zero-filled, ``chunks_healthy``, so a
later backup can still heal them). Each tree object is read once however
many archives share it.

The trace must be complete, or the sweep would delete live data: an archive
record that does not open, a listed record that could not be read, or a
tree object that cannot be read leaves the live set unknown, and ``mark``
then raises ``CompactRefused`` naming it (``check --repair`` deals with
those first).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from hoard.archive.check import scan_records
from hoard.archive.items import ZERO_ID
from hoard.archive.record import ArchiveRecord
from hoard.archive.tree import read_directory
from hoard.errors import ChunkNotFound, CompactRefused, IntegrityError
from hoard.objects.store import ObjectStore

REPAIR_HINT = "Run 'hoard check --repair' first."


@dataclass
class LiveSet:
    """The ids of the tree objects and data chunks the archives reference."""

    records: list[ArchiveRecord] = field(default_factory=list)
    trees: set[bytes] = field(default_factory=set)
    chunks: set[bytes] = field(default_factory=set)

    @property
    def ids(self) -> set[bytes]:
        return self.trees | self.chunks


def mark(store: ObjectStore, *, skip: Collection[bytes] = frozenset()) -> LiveSet:
    """Trace every archive of the repository; CompactRefused if one cannot be traced.

    Records are read from the repository itself (not the local record
    cache) and compared with a listing taken afterwards, so a record that
    vanished or appeared meanwhile, or one that does not open, stops it.
    Archives in ``skip`` are not traced (a dry run's archives that a real
    run would remove first).
    """
    scan = scan_records(store)
    if scan.damaged:
        id_, reason = sorted(scan.damaged.items())[0]
        raise CompactRefused(
            f"archive record {id_.hex()} cannot be read ({reason}), so what it references "
            f"is unknown. {REPAIR_HINT}"
        )
    decoded = {r.id for r in scan.records}
    unread = sorted(set(store.repository.list_archives()) ^ decoded)
    if unread:
        raise CompactRefused(
            f"archive record {unread[0].hex()} changed while the archives were read "
            "(another client without the lock?); run compact again"
        )
    live = LiveSet(records=[r for r in scan.records if r.id not in skip])
    for record in live.records:
        _trace(store, record, live)
    return live


def _trace(store: ObjectStore, record: ArchiveRecord, live: LiveSet) -> None:
    pending = [t for t in record.root if t not in live.trees]
    while pending:
        tree_id = pending.pop()
        if tree_id in live.trees:
            continue
        try:
            entries = list(read_directory(store, [tree_id]))
        except (IntegrityError, ChunkNotFound) as exc:
            raise CompactRefused(
                f"tree object {tree_id.hex()} of archive {record.name} cannot be read ({exc}), "
                f"so what it references is unknown. {REPAIR_HINT}"
            ) from None
        live.trees.add(tree_id)
        for entry in entries:
            if entry.tree:
                pending.extend(t for t in entry.tree if t not in live.trees)
            for chunks in (entry.chunks, entry.chunks_healthy):
                if chunks:
                    live.chunks.update(c.id for c in chunks if c.id != ZERO_ID)
