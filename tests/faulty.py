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

``fail_after_deletes=N`` does the same for deletes (``delete`` and
``delete_temporary``): N go through, the next one fails (the object stays).
``fail_after_mutations=N`` counts stores and deletes together, so a test can
crash a run after each of its storage operations in turn; ``mutations``
counts them (whether or not they matched ``prefix``).
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
        fail_after_deletes: int | None = None,
        fail_after_mutations: int | None = None,
    ) -> None:
        self.inner = inner
        self.fail_after_stores = fail_after_stores
        self.crash = crash
        self.torn = torn
        self.prefix = prefix
        self.error = error or (lambda name: SimulatedCrash(f"crash while storing {name}"))
        self.corrupt_load = corrupt_load
        self.fail_after_deletes = fail_after_deletes
        self.fail_after_mutations = fail_after_mutations
        self.stores = 0
        self.deletes = 0
        self.mutations = 0
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
        self._mutation(name, data)
        self.inner.store(name, data, overwrite=overwrite)
        self.mutations += 1
        if counted:
            self.stores += 1

    def _mutation(self, name: str, data: bytes | memoryview | None) -> None:
        """Fail here if this store or delete is the one ``fail_after_mutations`` names."""
        limit = self.fail_after_mutations
        if limit is not None and self.mutations >= limit:
            if data is None:
                self._fail_delete(name)
            self._fail(name, data if data is not None else b"")

    def _fail_delete(self, name: str) -> None:
        self.failures += 1
        if self.crash:
            self.crashed = True
        else:
            self.fail_after_deletes = self.fail_after_mutations = None
        raise self.error(name)

    def _deleting(self, name: str) -> None:
        self._alive()
        counted = name.startswith(self.prefix)
        limit = self.fail_after_deletes
        if counted and limit is not None and self.deletes >= limit:
            self._fail_delete(name)
        self._mutation(name, None)

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
            self.fail_after_stores = self.fail_after_mutations = None
        raise self.error(name)

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self._alive()
        data = self.inner.load(name, offset, length)
        return data if self.corrupt_load is None else self.corrupt_load(name, data)

    def delete(self, name: str) -> None:
        self._deleting(name)
        self.inner.delete(name)
        self._deleted(name)

    def _deleted(self, name: str) -> None:
        self.mutations += 1
        if name.startswith(self.prefix):
            self.deletes += 1

    def list_temporary(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._alive()
        return self.inner.list_temporary(prefix)

    def delete_temporary(self, name: str) -> None:
        self._deleting(name)
        self.inner.delete_temporary(name)
        self._deleted(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._alive()
        return self.inner.list(prefix)

    def info(self, name: str) -> ObjectInfo:
        self._alive()
        return self.inner.info(name)


def transient_error(name: str) -> StorageError:
    """An ``error`` factory for FaultyStorage: a plain storage error."""
    return StorageError(f"injected failure while storing {name}")
