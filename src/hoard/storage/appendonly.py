"""Append-only enforcement at the storage boundary.

A repository whose config says ``append_only`` is opened through
:class:`AppendOnlyStorage` (and a server serving such a repository wraps its
storage the same way), so nothing above the storage layer can delete or
replace a stored object, whatever a command's own checks say: the guarantee
lives here, not in each command.

What is still allowed, because nothing stored is lost by it:

- storing new objects (``store`` of a name that does not exist yet; with
  ``overwrite=True`` too, then refused atomically if the name exists);
- everything under ``locks/``: lock records are created, refreshed
  (replaced) and removed by every locking command;
- the temporary files of the backend's own atomic writes, which it creates
  and removes inside one ``store`` (the wrapper never sees them). Stale
  temporary files of crashed writes (``delete_temporary``) are kept, except
  under ``locks/``.
"""

from __future__ import annotations

from collections.abc import Iterator

from hoard.errors import AppendOnlyViolation, ObjectExists
from hoard.storage.base import ObjectInfo, Storage, check_name

MUTABLE_PREFIXES = ("locks/",)
"""Name prefixes whose objects may be replaced and deleted in append-only mode."""


def is_mutable(name: str) -> bool:
    """True for names that append-only mode still lets change (lock records)."""
    return name.startswith(MUTABLE_PREFIXES)


class AppendOnlyStorage(Storage):
    """Wraps a storage and refuses every delete and overwrite outside ``locks/``.

    A refused operation raises AppendOnlyViolation naming the location, the
    operation and the object; the inner storage is not touched. Reads and
    listings pass through unchanged.
    """

    def __init__(self, inner: Storage) -> None:
        self._inner = inner

    @property
    def inner(self) -> Storage:
        """The wrapped storage (the repository owner's way around the wrapper)."""
        return self._inner

    @property
    def location(self) -> str:
        return self._inner.location

    @property
    def enforces_append_only(self) -> bool:
        return True

    def _refuse(self, what: str, name: str) -> AppendOnlyViolation:
        return AppendOnlyViolation(self.location, f"{what} {name}")

    def store(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        if overwrite and not is_mutable(check_name(name)):
            # Creating a new object is fine; only replacing one is refused, and
            # the inner store's atomic refusal decides which of the two it is.
            try:
                self._inner.store(name, data, overwrite=False)
            except ObjectExists:
                raise self._refuse("overwrite", name) from None
            return
        self._inner.store(name, data, overwrite=overwrite)

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._inner.load(name, offset, length)

    def delete(self, name: str) -> None:
        if not is_mutable(check_name(name)):
            raise self._refuse("delete", name)
        self._inner.delete(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._inner.list(prefix)

    def info(self, name: str) -> ObjectInfo:
        return self._inner.info(name)

    def exists(self, name: str) -> bool:
        return self._inner.exists(name)

    def list_temporary(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._inner.list_temporary(prefix)

    def delete_temporary(self, name: str) -> None:
        if not is_mutable(check_name(name)):
            raise self._refuse("delete the temporary file", name)
        self._inner.delete_temporary(name)

    def free_space(self) -> int | None:
        return self._inner.free_space()

    def close(self) -> None:
        self._inner.close()
