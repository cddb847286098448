"""The local archive-record cache: listing archives costs what changed.

Commands that list archives need every archive record. Without a cache that
is one storage read per archive, on every run. Archive records are immutable
and named by their id (``archives/<idhex>``), so a client can keep the ones
it has read: under ``<cache_dir>/<repo-id-hex>/archives`` (next to the index
cache) the sealed record blobs, byte for byte as stored. The repository
layer is key-agnostic, so this cache holds only what the repository already
holds, nothing in clear; the objects layer authenticates every blob it
opens, whether it came from the cache or the repository.

``RecordCache.sync`` lists ``archives/`` once, reads only the records not in
the cache, drops cached records whose archive is gone, and saves the cache
when it changed. The listing is authoritative: a cached record is returned
only while its name is listed, so a stale cache can cost reads but never
show a deleted archive. Format and rules: docs/design/repository-format.md,
"Client caches".
"""

from __future__ import annotations

import logging
import re
import struct
import threading
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hoard.errors import ObjectNotFound
from hoard.storage.base import Storage
from hoard.storage.cachefile import (
    BodyReader,
    BodyWriter,
    CacheKind,
    CacheUnusableError,
    read_cache,
    write_cache,
)

ARCHIVES_PREFIX = "archives/"
RECORDS_FILE = "archives"
CACHE_KIND = CacheKind("archives", 1)
LOAD_THREADS = 8
"""Records read at once when several are new (hides round trips over ssh or S3)."""

_COUNT = struct.Struct("<Q")  # number of records
_ENTRY = struct.Struct("<32sI")  # record id, blob length
_HEX_ID = re.compile(r"^[0-9a-f]{64}$")

logger = logging.getLogger(__name__)


def archive_path(id_: bytes, prefix: str = ARCHIVES_PREFIX) -> str:
    """The storage name of archive record ``id_`` (or of a record under ``prefix``)."""
    return prefix + id_.hex()


def list_archive_ids(storage: Storage, prefix: str = ARCHIVES_PREFIX) -> set[bytes]:
    """Ids of the archive records in ``storage`` (one ``list``; stray names
    ignored); with ``prefix``, of the id-named records under it."""
    names = (info.name[len(prefix) :] for info in storage.list(prefix))
    return {bytes.fromhex(name) for name in names if _HEX_ID.match(name)}


@dataclass(frozen=True)
class RecordSyncReport:
    """What ``RecordCache.sync`` did.

    ``loaded``: records read from the repository; ``dropped``: cached records
    whose archive is gone (deleted, renamed); ``cached``: records served from
    the cache without a storage read; ``reason``: why the cache on disk was
    not used (``"no cache"``, ``"cache damaged: ..."``, ``"no persistent
    cache"``), empty when it was or when this object had read it before.
    """

    loaded: int
    dropped: int
    cached: int
    reason: str


def save_records(path: Path, repo_id: bytes, records: Mapping[bytes, bytes]) -> None:
    """Write the cache file (container kind ``archives``): a count, then the
    entries sorted by id, each its id, its length and the sealed blob."""

    def write(body: BodyWriter) -> None:
        body.write(_COUNT.pack(len(records)))
        for id_ in sorted(records):
            blob = records[id_]
            body.write(_ENTRY.pack(id_, len(blob)))
            body.write(blob)

    write_cache(path, CACHE_KIND, repo_id, write)


def load_records_file(path: Path, repo_id: bytes) -> dict[bytes, bytes]:
    """Read a cache file of repository ``repo_id``.

    FileNotFoundError when there is none; CacheUnusableError names any damage
    (the container's checks, then: the count matches, ids strictly increase).
    """

    def read(body: BodyReader) -> dict[bytes, bytes]:
        (count,) = _COUNT.unpack(body.read(_COUNT.size))
        records: dict[bytes, bytes] = {}
        previous = b""
        for _ in range(count):
            id_, length = _ENTRY.unpack(body.read(_ENTRY.size))
            if id_ <= previous:
                raise CacheUnusableError("unsorted ids")
            records[id_] = body.read(length)
            previous = id_
        return records

    records, _ = read_cache(path, CACHE_KIND, repo_id, read)
    return records


def read_archive_records(
    storage: Storage, ids: Iterable[bytes], prefix: str = ARCHIVES_PREFIX
) -> dict[bytes, bytes]:
    """Read archive records from ``storage``, several at a time.

    Records that vanish before they are read (a concurrent ``delete``) are
    left out. Storage errors propagate.
    """
    wanted = list(ids)

    def load(id_: bytes) -> bytes | None:
        try:
            return storage.load(archive_path(id_, prefix))
        except ObjectNotFound:
            return None

    if len(wanted) <= 1:
        blobs = [load(id_) for id_ in wanted]
    else:
        with ThreadPoolExecutor(min(LOAD_THREADS, len(wanted))) as pool:
            blobs = list(pool.map(load, wanted))
    return {id_: blob for id_, blob in zip(wanted, blobs, strict=True) if blob is not None}


class RecordCache:
    """The sealed archive records of one repository, persisted under ``cache_dir``.

    ``cache_dir=None`` keeps them in memory only (the first ``sync`` of each
    object reads every record). Methods are serialised by a lock. Processes
    sharing a cache directory are safe: the file is replaced atomically, any
    subset of correct records is a correct cache, and the listing decides
    what exists. A damaged file is discarded with a warning and rebuilt; a
    cache that cannot be written costs a warning, never the operation.
    """

    def __init__(
        self,
        cache_dir: Path | None,
        repo_id: bytes,
        *,
        prefix: str = ARCHIVES_PREFIX,
        filename: str = RECORDS_FILE,
    ) -> None:
        """``prefix``/``filename``: the same cache for other immutable,
        id-named records (the deletion records under ``deletions/``)."""
        self.path = None if cache_dir is None else cache_dir / repo_id.hex() / filename
        self._prefix = prefix
        self._repo_id = repo_id
        self._records: dict[bytes, bytes] | None = None
        """What this object knows; None until the file was read."""
        self._lock = threading.Lock()
        self.last_report: RecordSyncReport | None = None

    def sync(self, storage: Storage, *, refetch: Collection[bytes] = ()) -> dict[bytes, bytes]:
        """Every archive record in ``storage``: id -> sealed blob as stored.

        One ``list`` of ``archives/`` plus one read per record not cached (and
        per id in ``refetch``: cached blobs the caller could not open, read
        again and replaced). ``last_report`` says what was done.
        """
        with self._lock:
            present = list_archive_ids(storage, self._prefix)
            records, reason = self._known()
            dropped = records.keys() - present
            for id_ in dropped | set(refetch):
                records.pop(id_, None)
            new = present - records.keys()
            fetched = read_archive_records(storage, sorted(new), self._prefix)
            records.update(fetched)
            if dropped or fetched or reason:
                self._save(records)
            self.last_report = RecordSyncReport(
                len(fetched), len(dropped), len(present) - len(new), reason
            )
            return {id_: records[id_] for id_ in sorted(present) if id_ in records}

    def remember(self, id_: bytes, blob: bytes) -> None:
        """Add the record this client just stored, so that it never reads it back."""
        with self._lock:
            records, _ = self._known()
            records[id_] = blob
            self._save(records)

    def _known(self) -> tuple[dict[bytes, bytes], str]:
        """The records known to this object (read from disk the first time) and,
        on that first time, why the file could not be used ("" if it could)."""
        if self._records is not None:
            return self._records, ""
        self._records, reason = self._read()
        return self._records, reason

    def _read(self) -> tuple[dict[bytes, bytes], str]:
        if self.path is None:
            return {}, "no persistent cache"
        try:
            return load_records_file(self.path, self._repo_id), ""
        except FileNotFoundError:
            return {}, "no cache"
        except (OSError, CacheUnusableError) as exc:
            logger.warning("Archive record cache %s discarded, rebuilding it: %s", self.path, exc)
            return {}, f"cache damaged: {exc}"

    def _save(self, records: Mapping[bytes, bytes]) -> None:
        if self.path is None:
            return
        try:
            save_records(self.path, self._repo_id, records)
        except OSError as exc:
            logger.warning("Could not save the archive record cache %s: %s", self.path, exc)
