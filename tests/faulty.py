"""Fault injection around a real storage, for crash and error-path tests.

``FaultyStorage(inner, fail_after_stores=N)`` lets N stores through, then the
next one fails. With ``crash=True`` (the default) the storage then behaves like
a dead process: every further call raises ``SimulatedCrash``, so the code under
test cannot "clean up" anything a real crash would not let it clean up; the
test then reopens ``inner`` with fresh objects, as a restarted process would.
With ``crash=False`` only that one store fails (a transient error) and the
storage keeps working afterwards.

``torn=True`` also leaves what a process killed in the middle of a write
leaves behind on a LocalStorage: a half-written temporary file next to the
target (named as LocalStorage names its temporary files, so never listed).
``prefix`` restricts counting and failing to names starting with it (for
example ``"index/"``). ``corrupt_load`` may rewrite what ``load`` returns (bit
flips on the way from the medium).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

from hoard.errors import StorageError
from hoard.storage.base import ObjectInfo, Storage
from hoard.storage.local import TEMP_MARKER, LocalStorage


class SimulatedCrash(Exception):  # noqa: N818 - it stands for an event, not an error class
    """Raised by FaultyStorage where the process would have died."""


class FaultyStorage(Storage):
    """A wrapper that fails the store after ``fail_after_stores`` successful ones.

    ``error`` builds the exception raised for the failing store (default:
    SimulatedCrash); ``stores`` counts successful stores that matched ``prefix``.
    """

    def __init__(
        self,
        inner: Storage,
        *,
        fail_after_stores: int | None = None,
        crash: bool = True,
        torn: bool = False,
        prefix: str = "",
        error: Callable[[str], BaseException] | None = None,
        corrupt_load: Callable[[str, bytes], bytes] | None = None,
    ) -> None:
        self.inner = inner
        self.fail_after_stores = fail_after_stores
        self.crash = crash
        self.torn = torn
        self.prefix = prefix
        self.error = error or (lambda name: SimulatedCrash(f"crash while storing {name}"))
        self.corrupt_load = corrupt_load
        self.stores = 0
        self.failures = 0
        self.crashed = False

    @property
    def location(self) -> str:
        return self.inner.location

    def _alive(self) -> None:
        if self.crashed:
            raise SimulatedCrash("the process is gone")

    def store(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        self._alive()
        counted = name.startswith(self.prefix)
        if counted and self.fail_after_stores is not None and self.stores >= self.fail_after_stores:
            self._fail(name, data)
        self.inner.store(name, data, overwrite=overwrite)
        if counted:
            self.stores += 1

    def _fail(self, name: str, data: bytes | memoryview) -> None:
        self.failures += 1
        if self.torn and isinstance(self.inner, LocalStorage):
            target = self.inner.path_of(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = bytes(data)[: len(data) // 2]
            target.with_name(f"{target.name}{TEMP_MARKER}{secrets.token_hex(8)}").write_bytes(
                partial
            )
        if self.crash:
            self.crashed = True
        else:
            self.fail_after_stores = None
        raise self.error(name)

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self._alive()
        data = self.inner.load(name, offset, length)
        return data if self.corrupt_load is None else self.corrupt_load(name, data)

    def delete(self, name: str) -> None:
        self._alive()
        self.inner.delete(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._alive()
        return self.inner.list(prefix)

    def info(self, name: str) -> ObjectInfo:
        self._alive()
        return self.inner.info(name)


def transient_error(name: str) -> StorageError:
    """An ``error`` factory for FaultyStorage: a plain storage error."""
    return StorageError(f"injected failure while storing {name}")
