"""Blobs in a dict, for tests and for throw-away repositories.

It keeps the same contract as the on-disk backends (checked by the same
conformance suite), so code tested against it behaves the same on disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from hoard.errors import ObjectExists, ObjectNotFound
from hoard.storage.base import ObjectInfo, Storage, check_name, check_prefix


class MemoryStorage(Storage):
    """Named blobs in process memory, guarded by one lock."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._mtimes: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return f"memory:{id(self):x}"

    def store(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        check_name(name)
        # Copied before taking the lock: the caller may reuse its buffer, and
        # a large copy should not block other threads.
        blob = bytes(data)
        with self._lock:
            if not overwrite and name in self._blobs:
                raise ObjectExists(name)
            self._blobs[name] = blob
            self._mtimes[name] = time.time()

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"negative range {offset}, {length} for {name!r}")
        blob = self._get(name)
        if offset == 0 and length is None:
            return blob
        end = None if length is None else offset + length
        return blob[offset:end]

    def delete(self, name: str) -> None:
        check_name(name)
        with self._lock:
            if self._blobs.pop(name, None) is None:
                raise ObjectNotFound(name)
            self._mtimes.pop(name, None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        with self._lock:
            # A snapshot: callers may store or delete while iterating.
            found = [
                ObjectInfo(n, len(b), self._mtimes.get(n))
                for n, b in self._blobs.items()
                if n.startswith(prefix)
            ]
        return iter(found)

    def info(self, name: str) -> ObjectInfo:
        blob = self._get(name)
        return ObjectInfo(name, len(blob), self._mtimes.get(name))

    def set_mtime(self, name: str, mtime: float) -> None:
        """Backdate (or postdate) a blob, for tests of grace periods."""
        with self._lock:
            if name not in self._blobs:
                raise ObjectNotFound(name)
            self._mtimes[name] = mtime

    def _get(self, name: str) -> bytes:
        check_name(name)
        with self._lock:
            blob = self._blobs.get(name)
        if blob is None:
            raise ObjectNotFound(name)
        return blob
