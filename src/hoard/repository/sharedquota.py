"""One storage quota for several processes writing a repository for one operation.

``QuotaStorage`` (``hoard.storage.quota``) keeps its running total per
process: it lists the repository once and then counts its own stores. When
``create``'s worker processes write packs of their own, each would so allow
the whole quota that is left, and together they would pass it. This wrapper
keeps the one total all of them claim from, in a :class:`SharedTotal` (a
``multiprocessing.Value``: a 64-bit integer in shared memory with its own
lock): a store of a limited object (``packs/``, ``archives/``) claims its
size under that lock first and is refused, before anything is written, when
the quota would be passed; other objects are counted and never refused, as
``QuotaStorage`` does. Each process's ``QuotaStorage`` below it still checks
its own, smaller total and the free space, so nothing it refused is allowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from hoard.errors import ObjectNotFound, StorageQuotaExceeded
from hoard.storage.base import ObjectInfo, Storage
from hoard.storage.quota import LIMITED_PREFIXES, QuotaStorage


class SharedTotal(Protocol):
    """A running total several processes update under one lock
    (``multiprocessing.Value("q")`` is one)."""

    value: int

    def get_lock(self) -> AbstractContextManager[Any]: ...


def quota_of(storage: Storage) -> QuotaStorage | None:
    """The quota wrapper in ``storage``'s chain of wrappers, if there is one."""
    seen: Storage | None = storage
    while seen is not None:
        if isinstance(seen, QuotaStorage):
            return seen
        seen = getattr(seen, "inner", None)
    return None


class SharedQuotaStorage(Storage):
    """``inner`` (a guarded storage with a ``QuotaStorage`` in it), its stores and
    deletes also counted in ``total`` against ``quota`` bytes."""

    def __init__(self, inner: Storage, quota: int, total: SharedTotal) -> None:
        self._inner = inner
        self._quota = quota
        self._total = total

    @property
    def inner(self) -> Storage:
        return self._inner

    @property
    def location(self) -> str:
        return self._inner.location

    def _claim(self, name: str, size: int) -> None:
        with self._total.get_lock():
            after = self._total.value + size
            if name.startswith(LIMITED_PREFIXES) and after > self._quota:
                raise StorageQuotaExceeded(self._quota, after)
            self._total.value = after

    def _add(self, delta: int) -> None:
        with self._total.get_lock():
            self._total.value += delta

    def store(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        size = memoryview(data).nbytes
        old = 0
        if overwrite:
            try:
                old = self._inner.info(name).size
            except ObjectNotFound:
                old = 0
        self._claim(name, size - old)
        try:
            self._inner.store(name, data, overwrite=overwrite)
        except BaseException:
            self._add(old - size)
            raise

    def delete(self, name: str) -> None:
        try:
            size = self._inner.info(name).size
        except ObjectNotFound:
            size = 0
        self._inner.delete(name)
        self._add(-size)

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._inner.load(name, offset, length)

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


def share_quota(
    storage: Storage, quota: int | None, total: SharedTotal, *, publish: bool
) -> Storage:
    """``storage`` counting its stores in ``total`` against ``quota`` bytes too
    (``storage`` itself without a quota). ``publish``: this process sets
    ``total`` to the repository's size now (the main process, before it starts
    the others; one listing unless its ``QuotaStorage`` has counted already);
    the others only join it."""
    found = quota_of(storage)
    if not quota or found is None:
        return storage
    if publish:
        with total.get_lock():
            total.value = found.used()
    return SharedQuotaStorage(storage, quota, total)
