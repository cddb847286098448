"""Directory trees: a directory's entries stored as ``TREE`` objects.

Writing: :func:`store_directory` takes a directory's entries, sorts them by
name and stores them in runs of bounded size, so one directory never becomes
one huge object and an unchanged directory is the same objects again.
Reading: :func:`read_directory` and :func:`walk` give entries back lazily, so
listing or extracting one path does not load the whole archive.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

import msgpack

from hoard.archive.items import Entry, packb, unpackb
from hoard.errors import IntegrityError
from hoard.objects.types import ObjectType

TREE_VERSION = 1
MAX_ENTRIES_PER_OBJECT = 4096
MAX_BYTES_PER_OBJECT = 1 << 20


class ObjectWriter(Protocol):
    def put(self, type: ObjectType, data: bytes) -> bytes: ...


class ObjectReader(Protocol):
    def get(self, type: ObjectType, id: bytes) -> bytes: ...


def store_directory(store: ObjectWriter, entries: Iterable[Entry]) -> list[bytes]:
    """Store a directory's entries; returns the ids of its TREE objects in order.

    Entries are sorted by name here, so the result does not depend on the
    order the file system listed them in. An empty directory is one object.
    """
    ordered = sorted(entries, key=_by_name)
    ids: list[bytes] = []
    run: list[bytes] = []
    run_bytes = 0
    for entry in ordered:
        encoded = packb(entry.to_msgpack_map())
        size = len(encoded)
        if run and (len(run) >= MAX_ENTRIES_PER_OBJECT or run_bytes + size > MAX_BYTES_PER_OBJECT):
            ids.append(_store_run(store, run))
            run, run_bytes = [], 0
        run.append(encoded)
        run_bytes += size
    if run or not ids:
        ids.append(_store_run(store, run))
    return ids


_by_name = attrgetter("name")
_RUN_HEAD = packb({"v": TREE_VERSION, "e": []})[:-1]
"""The packed tree object up to its entry array's header (the ``[]``'s one byte cut off)."""


def encode_run(packed_entries: list[bytes]) -> bytes:
    """``packb({"v": TREE_VERSION, "e": [entry maps]})`` from the entries packed one by one.

    The same bytes (msgpack packs an array as its header and then the
    elements), with each entry packed once: its size decides the runs anyway.
    """
    header = msgpack.Packer().pack_array_header(len(packed_entries))
    return b"".join([_RUN_HEAD, header, *packed_entries])


def _store_run(store: ObjectWriter, run: list[bytes]) -> bytes:
    return store.put(ObjectType.TREE, encode_run(run))


def read_directory(store: ObjectReader, tree_ids: list[bytes]) -> Iterator[Entry]:
    """The entries of a directory, in name order."""
    for tree_id in tree_ids:
        data = unpackb(store.get(ObjectType.TREE, tree_id), f"tree object {tree_id.hex()}")
        if not isinstance(data, dict) or data.get("v") != TREE_VERSION:
            raise IntegrityError(f"tree object {tree_id.hex()} has an unknown format")
        for m in data.get("e", []):
            yield Entry.from_msgpack_map(m)


@dataclass(frozen=True, slots=True)
class Walked:
    """An entry with its archive path (``/``-separated, no leading slash, bytes)."""

    path: bytes
    entry: Entry


def walk(store: ObjectReader, root: list[bytes], prefix: bytes = b"") -> Iterator[Walked]:
    """Depth-first, name-ordered walk; a directory comes before its contents."""
    for entry in read_directory(store, root):
        path = prefix + entry.name
        yield Walked(path, entry)
        if entry.is_dir and entry.tree:
            yield from walk(store, entry.tree, path + b"/")


def lookup(store: ObjectReader, root: list[bytes], path: bytes) -> Entry | None:
    """The entry at ``path`` (no leading slash), reading only the directories on the way."""
    parts = [p for p in path.split(b"/") if p]
    tree = root
    entry: Entry | None = None
    for i, part in enumerate(parts):
        entry = next((e for e in read_directory(store, tree) if e.name == part), None)
        if entry is None:
            return None
        if i < len(parts) - 1:
            if not entry.is_dir or not entry.tree:
                return None
            tree = entry.tree
    return entry
