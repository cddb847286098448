"""Pack files: many blobs in one immutable storage object.

A pack is ``PACK_MAGIC`` followed by blobs, each preceded by a 37-byte header
``type u8 | id 32 bytes | length u32 LE`` (docs/design/repository-format.md,
"Pack files"). The headers make a pack self-describing, so the index can be
rebuilt from the packs alone. A pack is named by the SHA-256 of its bytes:
the name verifies the content, and storing the same pack twice is harmless.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from hoard.errors import IntegrityError

PACK_MAGIC = b"HOARDPK\x01"
BLOB_HEADER = struct.Struct("<B32sI")
HEADER_SIZE = BLOB_HEADER.size  # 37
ID_SIZE = 32
MAX_BLOB_SIZE = 2**32 - 1
DATA_TYPE = 0
"""Blob type 0 is file content; every other type is metadata, packed separately."""


@dataclass(frozen=True, slots=True)
class PackEntry:
    """One blob in a pack. ``offset`` is where its header starts in the pack;
    the blob itself spans ``offset + HEADER_SIZE`` to ``... + length``."""

    type: int
    id: bytes
    offset: int
    length: int


def pack_path(name: str) -> str:
    """Storage name of the pack whose hex name is ``name``."""
    return f"packs/{name[:2]}/{name}"


def encode_header(type_: int, id_: bytes, length: int) -> bytes:
    """The header written before a blob; ValueError for out-of-range fields."""
    if not 0 <= type_ <= 255:
        raise ValueError(f"blob type {type_} outside 0..255")
    if len(id_) != ID_SIZE:
        raise ValueError(f"blob id must be {ID_SIZE} bytes, not {len(id_)}")
    if not 0 <= length <= MAX_BLOB_SIZE:
        raise ValueError(f"blob of {length} bytes is too large for a pack")
    return BLOB_HEADER.pack(type_, id_, length)


class PackWriter:
    """Accumulates blobs for one pack in memory.

    Not thread-safe: the repository serialises access. ``target`` is the pack
    size at which the writer reports itself full; see ``fits``.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self._buffer = bytearray(PACK_MAGIC)
        self._entries: dict[bytes, PackEntry] = {}

    def __len__(self) -> int:
        """Number of blobs held."""
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of the pack so far, magic included."""
        return len(self._buffer)

    @property
    def entries(self) -> list[PackEntry]:
        """The blobs held, in pack order."""
        return list(self._entries.values())

    def fits(self, length: int) -> bool:
        """True if a blob of ``length`` bytes may join this pack.

        An empty pack takes any blob (so a blob larger than the target gets a
        pack of its own); otherwise the pack must stay within the target.
        """
        return not self._entries or self.size + HEADER_SIZE + length <= self.target

    @property
    def full(self) -> bool:
        """True once the pack reached its target size and should be written."""
        return self.size >= self.target

    def add(self, type_: int, id_: bytes, blob: bytes) -> PackEntry:
        """Append a blob; ValueError if its id is already in this pack."""
        if id_ in self._entries:
            raise ValueError(f"blob {id_.hex()} is already in this pack")
        header = encode_header(type_, id_, len(blob))
        entry = PackEntry(type_, bytes(id_), len(self._buffer), len(blob))
        self._buffer += header
        self._buffer += blob
        self._entries[entry.id] = entry
        return entry

    def get(self, id_: bytes) -> bytes | None:
        """The blob ``id_`` if this writer holds it, else None."""
        entry = self._entries.get(id_)
        if entry is None:
            return None
        start = entry.offset + HEADER_SIZE
        return bytes(self._buffer[start : start + entry.length])

    def length_of(self, id_: bytes) -> int | None:
        """The length of blob ``id_`` if this writer holds it, else None."""
        entry = self._entries.get(id_)
        return None if entry is None else entry.length

    def type_of(self, id_: bytes) -> int | None:
        """The type of blob ``id_`` if this writer holds it, else None."""
        entry = self._entries.get(id_)
        return None if entry is None else entry.type

    def finish(self) -> tuple[str, memoryview]:
        """The pack's hex name and bytes. The writer keeps its content until
        ``reset`` so a failed store loses nothing.

        The bytes are a read-only view of the writer's buffer, not a copy: a
        pack is up to 16 MiB, and a copy of each pack while it is stored was
        as much again of the backup's peak memory. Add nothing after this.
        """
        return hashlib.sha256(self._buffer).hexdigest(), memoryview(self._buffer).toreadonly()

    def reset(self) -> None:
        """Forget all blobs: call after the pack was stored."""
        self._buffer = bytearray(PACK_MAGIC)
        self._entries = {}


def parse_pack(data: bytes, name: str = "?") -> list[PackEntry]:
    """Walk the blob headers of a whole pack.

    Raises IntegrityError naming the pack for structural damage: bad magic, a
    header or blob running past the end. Header fields are not authenticated
    here; the objects layer binds type and id to the blob as AEAD associated
    data, so a tampered header fails there.
    """
    if not data.startswith(PACK_MAGIC):
        raise IntegrityError("bad magic", pack=name)
    entries: list[PackEntry] = []
    offset = len(PACK_MAGIC)
    view = memoryview(data)
    while offset < len(data):
        if offset + HEADER_SIZE > len(data):
            raise IntegrityError(f"truncated blob header at offset {offset}", pack=name)
        type_, id_, length = BLOB_HEADER.unpack_from(view, offset)
        if offset + HEADER_SIZE + length > len(data):
            raise IntegrityError("the blob runs past the end of the pack", object_id=id_, pack=name)
        entries.append(PackEntry(type_, id_, offset, length))
        offset += HEADER_SIZE + length
    return entries


def verify_pack_name(data: bytes, name: str) -> None:
    """IntegrityError unless ``name`` is the SHA-256 hex of ``data``."""
    if hashlib.sha256(data).hexdigest() != name:
        raise IntegrityError("content does not match its name", pack=name)


def salvage_pack(data: bytes) -> list[PackEntry]:
    """The blobs of a damaged pack that can still be located: the headers
    from the start up to the first one that runs past the end (a truncated
    pack keeps everything before the cut). Nothing here is verified: each
    blob must still be opened (authenticated) by the objects layer."""
    if not data.startswith(PACK_MAGIC):
        return []
    entries: list[PackEntry] = []
    offset = len(PACK_MAGIC)
    while offset + HEADER_SIZE <= len(data):
        type_, id_, length = BLOB_HEADER.unpack_from(data, offset)
        if offset + HEADER_SIZE + length > len(data):
            break
        entries.append(PackEntry(type_, id_, offset, length))
        offset += HEADER_SIZE + length
    return entries
