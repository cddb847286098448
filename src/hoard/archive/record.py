"""The archive record: an archive's name, provenance, statistics and root tree.

Storing the record is the commit point of a backup (packs and index files
are written before it). See ``docs/design/archive-format.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from hoard.archive.items import packb, unpackb
from hoard.errors import IntegrityError

RECORD_VERSION = 1


@dataclass
class ArchiveStats:
    nfiles: int = 0
    nchunks: int = 0
    original_size: int = 0
    compressed_size: int = 0
    deduplicated_size: int = 0


@dataclass
class ArchiveRecord:
    name: str
    time: int
    """Start of the backup, ns since the epoch (UTC)."""
    end: int
    hostname: str
    username: str
    root: list[bytes]
    cmdline: list[str] = field(default_factory=list)
    cwd: str = ""
    """The working directory of the ``create`` (Borg's ``Working Directory``;
    empty in records made before it was kept, or when it was gone)."""
    comment: str = ""
    chunker: str = ""
    compression: str = ""
    stats: ArchiveStats = field(default_factory=ArchiveStats)
    checkpoint: bool = False
    id: bytes = b""
    """Set when stored or loaded; not part of the encoding (it is the id of it)."""

    def encode(self) -> bytes:
        data = {
            "v": RECORD_VERSION,
            "name": self.name,
            "time": self.time,
            "end": self.end,
            "hostname": self.hostname,
            "username": self.username,
            "root": self.root,
            "cmdline": self.cmdline,
            "cwd": self.cwd,
            "comment": self.comment,
            "chunker": self.chunker,
            "compression": self.compression,
            "stats": asdict(self.stats),
            "checkpoint": self.checkpoint,
        }
        return packb(data)

    @classmethod
    def decode(cls, data: bytes, id: bytes) -> ArchiveRecord:
        m = unpackb(data, f"archive record {id.hex()}")
        if not isinstance(m, dict) or m.get("v") != RECORD_VERSION:
            raise IntegrityError(f"archive record {id.hex()} has an unknown format")
        try:
            return cls(
                name=m["name"],
                time=m["time"],
                end=m["end"],
                hostname=m["hostname"],
                username=m["username"],
                root=list(m["root"]),
                cmdline=list(m.get("cmdline", [])),
                cwd=m.get("cwd", ""),
                comment=m.get("comment", ""),
                chunker=m.get("chunker", ""),
                compression=m.get("compression", ""),
                stats=ArchiveStats(**m.get("stats", {})),
                checkpoint=bool(m.get("checkpoint", False)),
                id=id,
            )
        except (KeyError, TypeError) as exc:
            raise IntegrityError(f"archive record {id.hex()} is malformed: {exc!r}") from None

    @property
    def start_dt(self) -> datetime:
        return datetime.fromtimestamp(self.time / 1e9, UTC)

    @property
    def end_dt(self) -> datetime:
        return datetime.fromtimestamp(self.end / 1e9, UTC)

    @property
    def duration(self) -> float:
        return max(0.0, (self.end - self.time) / 1e9)

    def as_json_fields(self) -> dict[str, Any]:
        """Borg's ``list --json`` fields of one archive."""
        return {
            "archive": self.name,
            "name": self.name,
            "barchive": self.name,
            "id": self.id.hex(),
            "start": local_iso(self.start_dt),
            "time": local_iso(self.start_dt),
        }


def local_iso(dt: datetime) -> str:
    """Borg's timestamp format in JSON: local time, microseconds, no offset."""
    return dt.astimezone().replace(tzinfo=None).isoformat(timespec="microseconds")
