"""The set of archives in a repository: loading records, selecting, naming.

Borg's archive selection options (``-a/--glob-archives``, ``--sort-by``,
``--first``, ``--last``, ``--consider-checkpoints``) are implemented once
here, so every command selects archives the same way.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hoard.archive.record import CHECKPOINT_SUFFIX, ArchiveRecord
from hoard.errors import ArchiveDoesNotExist, InputError

SORT_KEYS = ("timestamp", "archive", "name", "id")


class ArchiveStore(Protocol):
    def list_archives(self) -> list[bytes]: ...

    def get_archive(self, id: bytes) -> bytes: ...


@dataclass(frozen=True)
class Selection:
    """Borg's archive filter options, as parsed from the command line."""

    glob: str | None = None
    sort_by: str = "timestamp"
    first: int | None = None
    last: int | None = None
    consider_checkpoints: bool = False


def load_records(store: ArchiveStore) -> list[ArchiveRecord]:
    """Every archive record in the repository, in start-time order."""
    records = [ArchiveRecord.decode(store.get_archive(i), i) for i in store.list_archives()]
    records.sort(key=lambda r: (r.time, r.name))
    return records


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Borg's ``sh:``-style archive glob (``*`` does not cross ``/``; archive names have none)."""
    return re.compile(fnmatch.translate(pattern.removeprefix("sh:")))


def select(records: Sequence[ArchiveRecord], selection: Selection) -> list[ArchiveRecord]:
    """Apply glob, checkpoint filter, sort, first/last, as Borg does (in this order)."""
    chosen = list(records)
    if not selection.consider_checkpoints:
        chosen = [r for r in chosen if not is_checkpoint(r)]
    if selection.glob:
        regex = glob_to_regex(selection.glob)
        chosen = [r for r in chosen if regex.match(r.name)]
    chosen.sort(key=_sort_key(selection.sort_by))
    if selection.first is not None:
        chosen = chosen[: selection.first]
    elif selection.last is not None:
        chosen = chosen[-selection.last :] if selection.last else []
    return chosen


def _sort_key(spec: str) -> Callable[[ArchiveRecord], tuple[Any, ...]]:
    keys = [k.strip() for k in spec.split(",") if k.strip()]
    for name in keys:
        if name not in SORT_KEYS:
            raise InputError(f"Invalid sort key {name!r}; choose from {', '.join(SORT_KEYS)}")

    def sort_key(r: ArchiveRecord) -> tuple[Any, ...]:
        values = {"timestamp": r.time, "archive": r.name, "name": r.name, "id": r.id}
        return tuple(values[k] for k in keys)

    return sort_key


def is_checkpoint(record: ArchiveRecord) -> bool:
    return record.checkpoint or record.name.endswith(CHECKPOINT_SUFFIX)


def find(records: Sequence[ArchiveRecord], name: str) -> ArchiveRecord:
    """The archive called ``name`` (checkpoints included, as Borg)."""
    for record in records:
        if record.name == name:
            return record
    raise ArchiveDoesNotExist(name)


def exists(records: Sequence[ArchiveRecord], name: str) -> bool:
    return any(r.name == name for r in records)
