"""Deletion records: how an append-only repository deletes archives.

In an append-only repository nothing stored is ever removed or replaced, so
``delete`` and ``prune`` cannot remove an archive record. They store a
deletion record instead: a small sealed (authenticated) object under
``deletions/`` that says "archive X is hidden, generation n". Restoring
(``undelete``) stores another record with generation n + 1. The records of
one archive form a counter: odd generations hide, even ones restore, and the
record with the highest generation decides. A new state is always a new
object, so neither deleting nor undeleting ever needs a delete or an
overwrite. Two clients that change the same archive at the same time from
the same state both write generation n + 1 with the same meaning.

Format (plaintext before sealing with type DELETION, id = keyed hash of the
plaintext): UTF-8 JSON, keys sorted: ``{"archive": "<64 hex>",
"generation": n, "hidden": bool, "time": "<ISO 8601 UTC>", "version": 1}``;
``hidden`` must equal ``generation`` being odd. docs/design/repository-format.md
("Deletion records") is the normative description.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DELETION_VERSION = 1


@dataclass(frozen=True)
class DeletionRecord:
    """One state change of one archive (see the module docstring)."""

    archive: bytes
    generation: int
    time: str

    @property
    def hidden(self) -> bool:
        """Odd generations hide the archive, even ones restore it."""
        return self.generation % 2 == 1

    @classmethod
    def next_for(cls, archive: bytes, current: DeletionRecord | None) -> DeletionRecord:
        """The record that flips ``archive``'s state from ``current`` (None: visible)."""
        generation = 1 if current is None else current.generation + 1
        return cls(archive, generation, datetime.now(UTC).isoformat(timespec="microseconds"))

    def encode(self) -> bytes:
        doc = {
            "archive": self.archive.hex(),
            "generation": self.generation,
            "hidden": self.hidden,
            "time": self.time,
            "version": DELETION_VERSION,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> DeletionRecord:
        """Parse a record's plaintext; ValueError names what is wrong."""
        try:
            doc: Any = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != DELETION_VERSION:
            raise ValueError("not a version 1 deletion record")
        archive, generation = doc.get("archive"), doc.get("generation")
        if not isinstance(archive, str) or len(archive) != 64:
            raise ValueError("bad archive id")
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
            raise ValueError("bad generation")
        if doc.get("hidden") is not (generation % 2 == 1):
            raise ValueError("hidden does not match the generation")
        time = doc.get("time")
        if not isinstance(time, str):
            raise ValueError("bad time")
        return cls(bytes.fromhex(archive), generation, time)


def latest_states(records: Iterable[DeletionRecord]) -> dict[bytes, DeletionRecord]:
    """Per archive id, the record with the highest generation (the current state)."""
    latest: dict[bytes, DeletionRecord] = {}
    for record in records:
        known = latest.get(record.archive)
        if known is None or record.generation > known.generation:
            latest[record.archive] = record
    return latest
