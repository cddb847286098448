"""A write session of another process: packs and index files, deduplicated against a view.

``create``'s worker processes store the chunks of the files they read
themselves (docs/design/create-pipeline.md) instead of sending them to the
main process, whose pack writing and unpickling held the GIL the walker
needs. Each worker writes through a :class:`SessionWriter`: data packs of its
own, and at every :meth:`SessionWriter.flush` one index file covering the
packs it stored since the last one (the format takes any number of writers:
every object has a content name, docs/design/write-order.md, "Several
clients at once"). The main process decides when to flush (before every
archive record), adopts the index files into its chunk index, and alone
writes records, so the write order stays what write-order.md says.

The writer has no chunk index: it deduplicates against a read-only view of
the index as the backup found it (:class:`~hoard.repository.chunkindex.KnownIds`),
the blobs it stored itself, and the ids the main process tells it other
writers stored (:meth:`SessionWriter.learn`). Two writers may still both
store a chunk they read at the same moment; both copies are valid, readers
keep one, ``compact`` frees the other once no index entry is live for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from hoard.errors import ObjectExists
from hoard.repository.chunkindex import KnownIds
from hoard.repository.indexfile import IndexFile
from hoard.repository.indexnames import index_path
from hoard.repository.pack import DATA_TYPE, PackEntry, PackWriter, pack_path
from hoard.storage.base import Storage

IndexFileData = tuple[str, bytes]
"""An index file as stored: its name and its bytes."""


class SessionWriter:
    """Data blobs into packs of this writer's own; one thread only.

    ``storage`` is the repository's storage opened in this process through the
    same guards (``guarded_storage``: append-only, quota) as the main process's.
    """

    def __init__(self, storage: Storage, pack_size: int, known: KnownIds | None = None) -> None:
        self._storage = storage
        self._known = known
        self._pack_size = pack_size
        self._writer = PackWriter(pack_size)
        self._stored: dict[bytes, int] = {}
        """Blobs this writer stored or other writers did (``learn``): id -> length."""
        self._unindexed: list[tuple[bytes, list[PackEntry]]] = []

    def stored_size(self, id_: bytes) -> int | None:
        """Stored length of ``id_`` if the repository has it as far as this writer
        knows (the view, its own blobs, what it learned), else None."""
        length = self._stored.get(id_)
        if length is None and self._known is not None:
            length = self._known.length_of(id_)
        return length

    def learn(self, stored: Iterable[tuple[bytes, int]]) -> None:
        """Blobs other writers of this backup stored (id, length): not stored again."""
        self._stored.update(stored)

    def put(self, id_: bytes, blob: bytes) -> bool:
        """Add a data blob unless known; True if added. A full pack is stored at once."""
        if self.stored_size(id_) is not None:
            return False
        if not self._writer.fits(len(blob)):
            self._store_pack()
        self._writer.add(DATA_TYPE, id_, blob)
        self._stored[id_] = len(blob)
        if self._writer.full:
            self._store_pack()
        return True

    def _store_pack(self) -> None:
        """Store the pack being filled; it waits for an index file (``flush``).
        On a failure the writer keeps it, so a later flush may store it again."""
        if not len(self._writer):
            return
        name, data = self._writer.finish()
        with contextlib.suppress(ObjectExists):  # content-named: the same bytes
            self._storage.store(pack_path(name), data)
        self._unindexed.append((bytes.fromhex(name), self._writer.entries))
        self._writer = PackWriter(self._pack_size)

    def flush(self) -> IndexFileData | None:
        """Store the pending pack, then one index file for every pack stored since
        the last flush. When this returns, every blob put before is durable and
        findable by a client that reads ``index/``; returns that index file
        (None when nothing was stored) for the main process to adopt."""
        self._store_pack()
        if not self._unindexed:
            return None
        name, data = IndexFile.from_packs(self._unindexed).encode()
        with contextlib.suppress(ObjectExists):
            self._storage.store(index_path(name), data)
        self._unindexed = []
        return name, data
