"""Storage quota and minimum free space, enforced at the storage boundary.

``storage_quota`` (Borg's option of the same name) bounds the total size of
everything stored in a repository; ``additional_free_space`` keeps that many
bytes free on the filesystem. :class:`QuotaStorage` wraps the repository's
storage when either is set (a server wraps its storage the same way) and
refuses, before anything is written, a store that would break them.

Only new data is refused: objects under ``packs/`` (file data and trees)
and ``archives/`` (the commit of a backup). A backup that hits the limit so
fails before its archive record is stored, and what it wrote is garbage
(packs no archive references) that ``compact`` frees. The small bookkeeping
objects (index files, deletion records, keys, lock records, config) are
counted but never refused, so that ``delete``, ``compact`` and locking keep
working in a full repository: they are how a user gets below the quota.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from hoard.errors import InsufficientFreeSpace, ObjectNotFound, StorageQuotaExceeded
from hoard.storage.base import ObjectInfo, Storage

LIMITED_PREFIXES = ("packs/", "archives/")
"""Objects that a full repository refuses: the data and commits of backups."""


class QuotaStorage(Storage):
    """Wraps a storage, keeps a running total of its size and enforces the limits.

    ``quota`` (bytes, None or 0: no quota) bounds the total of all stored
    objects; ``additional_free_space`` (bytes, 0: none) is what must stay
    free on the medium after a store (only where the backend reports its
    free space). The total is computed with one listing on the first
    limited store, then kept up to date by this object's own stores and
    deletes (other clients' writes show up at the next open).
    """

    def __init__(
        self, inner: Storage, *, quota: int | None = None, additional_free_space: int = 0
    ) -> None:
        self._inner = inner
        self._quota = quota or None
        self._reserve = additional_free_space
        self._used: int | None = None
        self._lock = threading.Lock()

    @property
    def inner(self) -> Storage:
        return self._inner

    @property
    def location(self) -> str:
        return self._inner.location

    def used(self) -> int:
        """The stored total in bytes (one listing the first time)."""
        with self._lock:
            return self._total()

    def _total(self) -> int:
        if self._used is None:  # lock held
            self._used = sum(info.size for info in self._inner.list(""))
        return self._used

    def _claim(self, name: str, size: int) -> bool:
        """Check the limits for a store of ``size`` bytes and, for a limited
        name, count it at once (under the lock, so that threads storing packs
        at the same time cannot together pass the quota). True if counted."""
        if not name.startswith(LIMITED_PREFIXES):
            return False
        with self._lock:
            after = self._total() + size
            if self._quota is not None and after > self._quota:
                raise StorageQuotaExceeded(self._quota, after)
            if self._reserve:
                free = self._inner.free_space()
                if free is not None and free - size < self._reserve:
                    raise InsufficientFreeSpace(size + self._reserve, free)
            self._used = after
        return True

    def _add(self, delta: int) -> None:
        with self._lock:
            if self._used is not None:
                self._used += delta

    def store(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        size = memoryview(data).nbytes
        claimed = self._claim(name, size)
        try:
            old = 0
            if overwrite:
                try:
                    old = self._inner.info(name).size
                except ObjectNotFound:
                    old = 0
            self._inner.store(name, data, overwrite=overwrite)
        except BaseException:
            if claimed:
                self._add(-size)
            raise
        self._add(-old if claimed else size - old)

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._inner.load(name, offset, length)

    def delete(self, name: str) -> None:
        try:
            size = self._inner.info(name).size
        except ObjectNotFound:
            size = 0
        self._inner.delete(name)
        self._add(-size)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._inner.list(prefix)

    def info(self, name: str) -> ObjectInfo:
        return self._inner.info(name)

    def exists(self, name: str) -> bool:
        return self._inner.exists(name)

    def list_temporary(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._inner.list_temporary(prefix)

    def delete_temporary(self, name: str) -> None:
        self._inner.delete_temporary(name)

    def free_space(self) -> int | None:
        return self._inner.free_space()

    def close(self) -> None:
        self._inner.close()
