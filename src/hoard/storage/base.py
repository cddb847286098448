"""The storage contract every backend fulfils.

A storage is a flat namespace of immutable blobs addressed by names such as
``packs/3f/3f9a...`` or ``config``. Names are relative, ``/``-separated, made
of ``[A-Za-z0-9._-]`` segments, never ``.`` or ``..``. Backends: local
directory, in-memory, remote over ssh, S3; wrappers (read-only, append-only,
rate limit, retry) stack around any backend. The conformance suite in
``tests/unit/storage/conformance.py`` states this contract as tests.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

from hoard.errors import InvalidName, ObjectNotFound

_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid storage name, else raise InvalidName.

    Validating here, not in each backend, keeps a malicious or buggy caller
    from escaping the storage root through ``..`` or an absolute path.
    """
    if not name or name.startswith("/") or name.endswith("/") or "\\" in name:
        raise InvalidName(name)
    for segment in name.split("/"):
        if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
            raise InvalidName(name)
    return name


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if ``list`` may use it, else raise InvalidName.

    A prefix is a valid name, a valid name followed by ``/`` (a directory
    style prefix such as ``packs/``), or empty (everything). Anything else
    could reach outside the storage root or never match a valid name.
    """
    if prefix:
        check_name(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


@dataclass(frozen=True)
class ObjectInfo:
    """What ``info`` and ``list`` report of a stored object.

    ``mtime`` (seconds since the epoch, when the object or temporary file was
    last written) is what grace periods are measured against: ``compact`` and
    ``check --repair`` never remove something a running backup may still be
    writing or about to reference. None where a backend cannot tell; it is
    not part of equality, since two listings of one object must compare equal.
    """

    name: str
    size: int
    mtime: float | None = field(default=None, compare=False)


class Storage(ABC):
    """Named immutable blobs.

    Thread safety: every method may be called from several threads at once.
    Durability: when ``store`` returns, the blob survives a crash or power loss
    of the storage host. Atomicity: a reader sees a blob whole or not at all.
    """

    @abstractmethod
    def store(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        """Write a blob durably and atomically.

        Raises ObjectExists if ``name`` exists, unless ``overwrite`` is true:
        content-addressed blobs are immutable; only the few mutable records
        (``config``, key blobs, lock records) are replaced, atomically, so a
        reader sees the old or the new version whole. InvalidName for a bad
        name, StorageFull when the medium is full (nothing is left behind).
        """

    @abstractmethod
    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``length`` bytes (all to the end when None) from ``offset``.

        A range past the end returns what exists (possibly ``b""``), as a file
        read would. Raises ObjectNotFound.
        """

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove a blob. Raises ObjectNotFound if it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the blobs whose name starts with ``prefix`` (a directory-style
        prefix such as ``packs/`` or ``index/``), in no particular order.
        Temporary files of unfinished writes are never listed."""

    @abstractmethod
    def info(self, name: str) -> ObjectInfo:
        """Size of a blob. Raises ObjectNotFound."""

    def list_temporary(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the temporary files of unfinished (crashed, killed) writes
        below ``prefix``, by their own names (e.g. ``packs/3f/3f9a....tmp-<hex>``),
        with size and mtime. ``list`` never shows them; ``check`` reports them
        and ``compact``/``check --repair`` remove the stale ones. Backends
        whose writes leave no temporary objects yield nothing."""
        check_prefix(prefix)
        return iter(())

    def delete_temporary(self, name: str) -> None:
        """Remove a temporary file that ``list_temporary`` reported.

        Raises InvalidName for a name that is not a temporary file (so this
        can never remove a blob) and ObjectNotFound if it is gone already.
        A backend without temporary objects has no such names at all.
        """
        raise InvalidName(name)

    def free_space(self) -> int | None:
        """Bytes the medium can still take, or None where the backend cannot
        tell (``additional_free_space`` is then not enforced)."""
        return None

    @property
    def enforces_append_only(self) -> bool:
        """True when this storage refuses every delete and overwrite outside
        ``locks/`` whatever the repository's config says (a server started
        with ``--append-only``): the repository then behaves as append-only."""
        return False

    def exists(self, name: str) -> bool:
        """True if ``name`` is stored."""
        try:
            self.info(name)
        except ObjectNotFound:
            return False
        return True

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections or handles. Idempotent."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Human-readable location for messages (a path or URL)."""
