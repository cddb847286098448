"""The one file container of the client caches (chunk index, archive records, files cache).

A client cache is a local file that may be thrown away and rebuilt at any
time, but must never be trusted when it is damaged, belongs to another
repository or was written by a hoard with another layout. Every cache file is
therefore one container (docs/design/repository-format.md, "Client caches")::

    header  magic "HOARDCF\\x01" (8) | kind (8, NUL-padded ASCII) | version u16
            | reserved u16 (0) | repository id (32) | body length u64
    body    the cache's own layout, written and read as a stream
    trailer BLAKE3 of body then header (32; the header is written last, when
            the body's length is known): keyed when the cache has a key (the
            files cache: its checksum doubles as a MAC), plain otherwise

``write_cache`` writes atomically (temporary file, fsync, rename, fsync of
the directory) and sweeps the temporary files crashed writers left next to
the target. ``read_cache`` checks the header and the size before it hands
the body to the parser, and the trailer after, so a parser only ever sees a
body of the announced length from a file that is whole; ``CacheUnusableError``
says what was wrong, for the one-line warning before the cache is rebuilt.
"""

from __future__ import annotations

import hmac
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import blake3

from hoard.storage.localfile import write_atomically

MAGIC = b"HOARDCF\x01"
_HEADER = struct.Struct("<8s8sHH32sQ")
HEADER_SIZE = _HEADER.size
TRAILER_SIZE = 32
REPOSITORY_ID_SIZE = 32
STALE_TEMPORARY_SECONDS = 3600.0
"""A writer's temporary file older than this is a crashed writer's."""

T = TypeVar("T")


class CacheUnusableError(ValueError):
    """The cache file cannot be used; the message says why (the caller rebuilds)."""


@dataclass(frozen=True)
class CacheKind:
    """What a cache file holds: its name in the header and the body layout's version."""

    name: str
    version: int

    def __post_init__(self) -> None:
        if not 0 < len(self.name.encode("ascii")) <= 8:
            raise ValueError(f"cache kind {self.name!r} must be 1-8 ASCII characters")

    @property
    def tag(self) -> bytes:
        return self.name.encode("ascii").ljust(8, b"\0")


class BodyWriter:
    """Where a cache's body goes: ``write`` feeds the file and the checksum."""

    def __init__(self, f: BinaryIO, hasher: Any) -> None:
        self._f = f
        self._hasher = hasher
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._hasher.update(data)
        self._f.write(data)
        self.size += len(data)


class BodyReader:
    """The body of a cache file, of exactly the announced length, as a stream.

    Reading past the end raises CacheUnusableError ("truncated"): the length was
    checked against the file's size, so that only happens for a body whose
    own counts disagree with its length.
    """

    def __init__(self, f: BinaryIO, hasher: Any, length: int) -> None:
        self._f = f
        self._hasher = hasher
        self.remaining = length

    def read(self, n: int) -> bytes:
        if n > self.remaining:
            raise CacheUnusableError("truncated (the body is shorter than its content says)")
        data = self._f.read(n)
        if len(data) != n:
            raise CacheUnusableError("truncated")
        self._hasher.update(data)
        self.remaining -= n
        return data

    def readinto(self, buffer: memoryview) -> None:
        """Fill ``buffer`` completely (for numpy columns: no extra copy)."""
        n = buffer.nbytes
        if n > self.remaining:
            raise CacheUnusableError("truncated (the body is shorter than its content says)")
        if self._f.readinto(buffer) != n:  # type: ignore[attr-defined]
            raise CacheUnusableError("truncated")
        self._hasher.update(buffer)
        self.remaining -= n


def _hasher(key: bytes | None) -> Any:
    return blake3.blake3(key=key) if key is not None else blake3.blake3()


def write_cache(
    path: Path,
    kind: CacheKind,
    repository_id: bytes,
    write_body: Callable[[BodyWriter], T],
    *,
    key: bytes | None = None,
) -> tuple[T, bytes]:
    """Replace the cache file ``path``; returns ``write_body``'s result and the trailer.

    The body length is patched into the header after the body was written
    (the writer streams, it does not know the size in advance). Temporary
    files of crashed writers of ``path`` older than an hour are removed.
    """
    if len(repository_id) != REPOSITORY_ID_SIZE:
        raise ValueError("repository id must be 32 bytes")

    def write(f: BinaryIO) -> tuple[T, bytes]:
        f.write(bytes(HEADER_SIZE))  # placeholder, the body's length is not known yet
        hasher = _hasher(key)
        body = BodyWriter(f, hasher)
        result = write_body(body)
        header = _HEADER.pack(MAGIC, kind.tag, kind.version, 0, repository_id, body.size)
        digest = _finish(hasher, header)
        f.write(digest)
        f.seek(0)
        f.write(header)
        return result, digest

    path.parent.mkdir(parents=True, exist_ok=True)
    result = write_atomically(path, write)
    sweep_temporary_files(path)
    return result


def _finish(body_hasher: Any, header: bytes) -> bytes:
    """The trailer: the hash of the body, then the header."""
    combined = body_hasher.copy()
    combined.update(header)
    digest: bytes = combined.digest()
    return digest


def read_cache(
    path: Path,
    kind: CacheKind,
    repository_id: bytes,
    read_body: Callable[[BodyReader], T],
    *,
    key: bytes | None = None,
) -> tuple[T, bytes]:
    """Parse the cache file ``path`` with ``read_body``; returns its result and the trailer.

    Raises FileNotFoundError when there is no file, OSError when it cannot
    be read, CacheUnusableError for anything else (another format, kind, version
    or repository, a size that does not match, a checksum mismatch, and
    whatever ``read_body`` finds inconsistent: it raises CacheUnusableError or
    ValueError, which is wrapped).
    """
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        header = f.read(HEADER_SIZE)
        length = _check_header(header, size, kind, repository_id)
        hasher = _hasher(key)
        body = BodyReader(f, hasher, length)
        try:
            result = read_body(body)
        except CacheUnusableError:
            raise
        except (ValueError, struct.error) as exc:
            raise CacheUnusableError(str(exc)) from None
        if body.remaining:
            raise CacheUnusableError("trailing bytes after the content")
        digest = f.read(TRAILER_SIZE)
        if not hmac.compare_digest(digest, _finish(hasher, header)):
            reason = "damaged, or written with another key" if key else "damaged"
            raise CacheUnusableError(f"checksum mismatch ({reason})")
    return result, digest


def _check_header(header: bytes, size: int, kind: CacheKind, repository_id: bytes) -> int:
    if len(header) != HEADER_SIZE:
        raise CacheUnusableError("truncated header")
    magic, tag, version, _, owner, length = _HEADER.unpack(header)
    if magic != MAGIC:
        raise CacheUnusableError("not a hoard cache file (an older hoard's format?)")
    if tag != kind.tag:
        held = tag.rstrip(b"\0").decode("ascii", "replace")
        raise CacheUnusableError(f"it holds {held!r}, not {kind.name!r}")
    if version != kind.version:
        raise CacheUnusableError(f"layout version {version}, this hoard reads {kind.version}")
    if owner != repository_id:
        raise CacheUnusableError(f"it belongs to repository {owner.hex()}")
    if size != HEADER_SIZE + length + TRAILER_SIZE:
        raise CacheUnusableError("truncated (the size does not match the header)")
    return int(length)


def sweep_temporary_files(path: Path, older_than: float = STALE_TEMPORARY_SECONDS) -> None:
    """Delete the temporary files crashed writers of ``path`` left (``write_atomically``'s
    ``.<name>.tmp-*``) that are older than ``older_than`` seconds; a younger
    one may belong to a writer that is still running."""
    prefix = f".{path.name}.tmp-"
    limit = time.time() - older_than
    try:
        with os.scandir(path.parent) as it:
            stale = [e.path for e in it if e.name.startswith(prefix)]
        for name in stale:
            if os.stat(name).st_mtime < limit:
                os.unlink(name)
    except OSError:
        return  # gone meanwhile, or not ours to delete: harmless
