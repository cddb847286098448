"""What differs between two archives, item by item, as Borg 1.4's ``diff`` reports it.

The two trees are walked together, directory by directory, entries merged
by name (tree objects keep them in name order). A directory whose tree ids
are the same in both archives has the same contents, so it is not read at
all: diffing two archives of a million files that differ in ten reads only
the directories on the way to those ten.

Per item, the changes are Borg's, in Borg's order: a link's target, a
file's content (bytes of chunks added and removed, from chunk ids; or just
"modified" when the archives were chunked differently and the bytes differ),
a directory appearing or going, then (not with ``content_only``) owner,
mode, ctime and mtime.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hoard.archive.items import ZERO_ID, ChunkRef, Entry
from hoard.archive.patterns import PatternMatcher
from hoard.archive.tree import ObjectReader, read_directory
from hoard.objects.types import ObjectType

ChunkReader = Callable[[bytes], bytes]
"""The plaintext of a data chunk by id (for comparing bytes, not ids)."""


@dataclass(frozen=True)
class Change:
    """One change of an item: its JSON object (Borg's keys) and its text."""

    data: dict[str, Any]
    text: str

    @property
    def kind(self) -> str:
        return str(self.data["type"])


@dataclass(frozen=True)
class ItemDiff:
    """The changes of one archive path; ``old``/``new`` None where it is absent."""

    path: bytes
    old: Entry | None
    new: Entry | None
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class DiffOptions:
    """``--numeric-ids``, ``--content-only``; ``compare_ids``: the archives
    were chunked alike, so equal chunk ids mean equal bytes."""

    numeric_ids: bool = False
    content_only: bool = False
    compare_ids: bool = True


SizeFormat = Callable[..., str]


class ArchiveDiff:
    """Yields the ItemDiff of every path (matching ``matcher``) that changed."""

    def __init__(
        self,
        store: ObjectReader,
        matcher: PatternMatcher,
        options: DiffOptions,
        format_size: SizeFormat,
        format_time: Callable[[datetime], str],
    ) -> None:
        self._store = store
        self._matcher = matcher
        self._options = options
        self._size = format_size
        self._time = format_time

    def compare(self, root1: list[bytes], root2: list[bytes]) -> Iterator[ItemDiff]:
        return self._directories(root1, root2, b"")

    def _directories(
        self, tree1: list[bytes] | None, tree2: list[bytes] | None, prefix: bytes
    ) -> Iterator[ItemDiff]:
        if tree1 == tree2:
            return  # the same tree objects: the same contents, unread
        for old, new in _merge(self._entries(tree1), self._entries(tree2)):
            any_entry = new or old
            assert any_entry is not None
            path = prefix + any_entry.name
            implicit = (old is None or old.implicit) and (new is None or new.implicit)
            if not implicit and self._matcher.match(path):
                changes = self.item_changes(old, new)
                if changes:
                    yield ItemDiff(path, old, new, changes)
            sub1 = old.tree if old is not None and old.is_dir else None
            sub2 = new.tree if new is not None and new.is_dir else None
            if sub1 or sub2:
                yield from self._directories(sub1 or None, sub2 or None, path + b"/")

    def _entries(self, tree: list[bytes] | None) -> Iterator[Entry]:
        return read_directory(self._store, tree) if tree else iter(())

    # --- one item ----------------------------------------------------------------------

    def item_changes(self, old: Entry | None, new: Entry | None) -> list[Change]:
        """Borg's changes of one path, without the "modified 0 B 0 B" non-change."""
        changes: list[Change | None] = []
        if (old is not None and old.is_link) or (new is not None and new.is_link):
            changes.append(_link_change(old, new))
        if _content_applies(old, new):
            changes.append(self._content_change(old, new))
        if (old is not None and old.is_dir) or (new is not None and new.is_dir):
            changes.append(_dir_change(old, new))
        if old is not None and new is not None and not self._options.content_only:
            changes.append(self._owner_change(old, new))
            changes.append(_mode_change(old, new))
            changes.append(self._time_change("ctime", old.ctime, new.ctime))
            changes.append(self._time_change("mtime", old.mtime, new.mtime))
        return [c for c in changes if c is not None]

    def _content_change(self, old: Entry | None, new: Entry | None) -> Change | None:
        if old is None:
            assert new is not None
            return Change({"type": "added", "size": new.size}, f"added {self._size(new.size):>13}")
        if new is None:
            return Change(
                {"type": "removed", "size": old.size}, f"removed {self._size(old.size):>11}"
            )
        chunks1, chunks2 = old.chunks or [], new.chunks or []
        if not self._options.compare_ids:
            if old.size == new.size and self._same_bytes(chunks1, chunks2):
                return None
            return Change({"type": "modified"}, "modified")
        ids1 = {c.id for c in chunks1}
        ids2 = {c.id for c in chunks2}
        added = sum(c.size for c in chunks2 if c.id not in ids1)
        removed = sum(c.size for c in chunks1 if c.id not in ids2)
        if not added and not removed:
            return None
        plus = self._size(added, precision=1, sign=True)
        minus = self._size(-removed, precision=1, sign=True)
        return Change(
            {"type": "modified", "added": added, "removed": removed}, f"{plus:>9} {minus:>9}"
        )

    def _same_bytes(self, chunks1: list[ChunkRef], chunks2: list[ChunkRef]) -> bool:
        """The two chunk lists hold the same bytes (read and compared piece by piece)."""
        stream1, stream2 = self._bytes(chunks1), self._bytes(chunks2)
        a = b = b""
        while True:
            if not a:
                a = next(stream1, b"")
            if not b:
                b = next(stream2, b"")
            if not a or not b:
                return not a and not b
            n = min(len(a), len(b))
            if a[:n] != b[:n]:
                return False
            a, b = a[n:], b[n:]

    def _bytes(self, chunks: list[ChunkRef]) -> Iterator[bytes]:
        for chunk in chunks:
            if chunk.id == ZERO_ID:
                yield bytes(chunk.size)
            else:
                yield self._store.get(ObjectType.DATA, chunk.id)

    def _owner_change(self, old: Entry, new: Entry) -> Change | None:
        if self._options.numeric_ids:
            before: tuple[Any, Any] = (old.uid, old.gid)
            after: tuple[Any, Any] = (new.uid, new.gid)
        else:
            before, after = (old.user, old.group), (new.user, new.group)
        if before == after:
            return None
        data = {
            "type": "owner",
            "old_user": before[0],
            "old_group": before[1],
            "new_user": after[0],
            "new_group": after[1],
        }
        return Change(data, f"[{before[0]}:{before[1]} -> {after[0]}:{after[1]}]")

    def _time_change(self, name: str, old: int | None, new: int | None) -> Change | None:
        if old is None or new is None or old == new:
            return None
        t1, t2 = _local(old), _local(new)
        data = {"type": name, f"old_{name}": _iso(t1), f"new_{name}": _iso(t2)}
        return Change(data, f"[{name}: {self._time(t1)} -> {self._time(t2)}]")


def _merge(
    entries1: Iterator[Entry], entries2: Iterator[Entry]
) -> Iterator[tuple[Entry | None, Entry | None]]:
    """Pairs of same-named entries of two name-ordered directory listings."""
    a, b = next(entries1, None), next(entries2, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a.name < b.name):
            yield a, None
            a = next(entries1, None)
        elif a is None or b.name < a.name:
            yield None, b
            b = next(entries2, None)
        else:
            yield a, b
            a, b = next(entries1, None), next(entries2, None)


def _content_applies(old: Entry | None, new: Entry | None) -> bool:
    """Content is compared between two files, and reported for a file (or a
    FIFO, device...: 0 B) that appeared or went; directories and links have
    their own changes."""
    if old is None or new is None:
        present = new or old
        assert present is not None
        return not present.is_dir and not present.is_link
    return old.is_reg and new.is_reg


def _link_change(old: Entry | None, new: Entry | None) -> Change | None:
    if old is None:
        return Change({"type": "added link"}, "added link")
    if new is None:
        return Change({"type": "removed link"}, "removed link")
    if old.is_link and new.is_link and old.link_target != new.link_target:
        return Change({"type": "changed link"}, "changed link")
    return None


def _dir_change(old: Entry | None, new: Entry | None) -> Change | None:
    if new is None:
        return Change({"type": "removed directory"}, "removed directory")
    if old is None:
        return Change({"type": "added directory"}, "added directory")
    return None


def _mode_change(old: Entry, new: Entry) -> Change | None:
    if old.mode == new.mode:
        return None
    mode1, mode2 = stat.filemode(old.mode), stat.filemode(new.mode)
    return Change({"type": "mode", "old_mode": mode1, "new_mode": mode2}, f"[{mode1} -> {mode2}]")


def _local(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9)


def _iso(dt: datetime) -> str:
    """Borg's JSON timestamps: local time, always with microseconds."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
