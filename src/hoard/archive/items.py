"""Entries: what an archive records of one file system object.

The encoding is the ``docs/design/archive-format.md`` table: a msgpack map
with short keys, absent keys meaning "not recorded". Equal metadata encodes
to equal bytes, which is what makes an unchanged directory cost nothing.
"""

from __future__ import annotations

import operator
import stat
import threading
from dataclasses import dataclass, field, fields
from typing import Any

import msgpack

from hoard.errors import IntegrityError

ZERO_ID = bytes(32)
"""Chunk id standing for a run of zeros (read or a hole); such chunks are not stored."""


@dataclass(slots=True)
class ChunkRef:
    id: bytes
    size: int


@dataclass(slots=True)
class Entry:
    """One file system object; ``name`` is its last path component, as bytes."""

    name: bytes
    mode: int
    uid: int = 0
    gid: int = 0
    user: str | None = None
    group: str | None = None
    mtime: int = 0
    ctime: int | None = None
    atime: int | None = None
    birthtime: int | None = None
    size: int = 0
    chunks: list[ChunkRef] | None = None
    tree: list[bytes] | None = None
    link_target: bytes | None = None
    hardlink_id: bytes | None = None
    rdev: int | None = None
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    flags: int | None = None
    implicit: bool = False
    chunks_healthy: list[ChunkRef] | None = None
    """Set by ``check --repair`` on a file whose lost chunks it replaced with
    zero runs: the original chunk list, put back (healed) by a later repair
    once every chunk of it exists again. A file with it is "broken"."""

    def __reduce__(self) -> tuple[type[Entry], tuple[Any, ...]]:
        """Pickled as its field values: file-pool workers send an entry per
        file, and the slots default (a dict of slot names) costs 1.5x more."""
        return (Entry, _entry_values(self))

    @property
    def is_broken(self) -> bool:
        return self.chunks_healthy is not None

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def to_msgpack_map(self) -> dict[str, Any]:
        """The on-disk map; optional fields only when recorded."""
        # Inline tests, not a helper per key: this runs for every item of every backup.
        m: dict[str, Any] = {
            "n": self.name,
            "m": self.mode,
            "u": self.uid,
            "g": self.gid,
            "mt": self.mtime,
            "s": self.size,
        }
        if self.user is not None:
            m["U"] = self.user
        if self.group is not None:
            m["G"] = self.group
        if self.ctime is not None:
            m["ct"] = self.ctime
        if self.atime is not None:
            m["at"] = self.atime
        if self.birthtime is not None:
            m["bt"] = self.birthtime
        if self.chunks is not None:
            m["c"] = [[c.id, c.size] for c in self.chunks]
        if self.tree is not None:
            m["t"] = self.tree
        if self.link_target is not None:
            m["l"] = self.link_target
        if self.hardlink_id is not None:
            m["h"] = self.hardlink_id
        if self.rdev is not None:
            m["r"] = self.rdev
        if self.xattrs:
            m["x"] = dict(sorted(self.xattrs.items()))
        if self.flags is not None:
            m["f"] = self.flags
        if self.implicit:
            m["i"] = True
        if self.chunks_healthy is not None:
            m["ch"] = [[c.id, c.size] for c in self.chunks_healthy]
        return m

    @classmethod
    def from_msgpack_map(cls, m: dict[str, Any]) -> Entry:
        try:
            chunks = m.get("c")
            healthy = m.get("ch")
            return cls(
                name=m["n"],
                mode=m["m"],
                uid=m.get("u", 0),
                gid=m.get("g", 0),
                user=m.get("U"),
                group=m.get("G"),
                mtime=m.get("mt", 0),
                ctime=m.get("ct"),
                atime=m.get("at"),
                birthtime=m.get("bt"),
                size=m.get("s", 0),
                chunks=None if chunks is None else [ChunkRef(c[0], c[1]) for c in chunks],
                tree=m.get("t"),
                link_target=m.get("l"),
                hardlink_id=m.get("h"),
                rdev=m.get("r"),
                xattrs=m.get("x") or {},
                flags=m.get("f"),
                implicit=bool(m.get("i", False)),
                chunks_healthy=None if healthy is None else [ChunkRef(c[0], c[1]) for c in healthy],
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise IntegrityError(f"malformed archive entry: {exc!r}") from None


_entry_values = operator.attrgetter(*(f.name for f in fields(Entry)))

_packers = threading.local()


def packb(obj: Any) -> bytes:
    """msgpack with the settings every archive object uses (bin type for bytes).

    One Packer per thread, kept: making one per call was a third of the cost
    of packing an entry, done for every item of a backup. A Packer resets its
    buffer after each ``pack``, also when packing fails.
    """
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(obj)  # type: ignore[no-any-return]


def unpackb(data: bytes, what: str) -> Any:
    """Inverse of :func:`packb`; garbage raises IntegrityError naming ``what``."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise IntegrityError(f"{what} is not valid msgpack: {exc}") from None
