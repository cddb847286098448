"""Directory trees (hoard.archive.tree), the entries they hold and how an entry is made.

The encoders are written for speed (each entry packed once, the run's
msgpack assembled from the packed entries); these tests hold them to the
plain encoding, byte for byte: a change of bytes would make every unchanged
directory a new object in the next backup.
"""

from __future__ import annotations

import os
import stat
import threading
from typing import Any

import msgpack
import pytest

from hoard.archive.items import ChunkRef, Entry, packb
from hoard.archive.metadata import ReadOptions, entry_from_stat, group_name, user_name
from hoard.archive.tree import (
    MAX_ENTRIES_PER_OBJECT,
    TREE_VERSION,
    encode_run,
    read_directory,
    store_directory,
)
from hoard.objects.types import ObjectType


class DictStore:
    """Objects by a counter id, in the order put: the runs a directory became."""

    def __init__(self) -> None:
        self.objects: dict[bytes, bytes] = {}

    def put(self, type: ObjectType, data: bytes) -> bytes:
        assert type is ObjectType.TREE
        id_ = len(self.objects).to_bytes(32, "big")
        self.objects[id_] = data
        return id_

    def get(self, type: ObjectType, id: bytes) -> bytes:
        return self.objects[id]


def reference_map(e: Entry) -> dict[str, Any]:
    """The archive-format table's encoding, written plainly (docs/design/archive-format.md)."""
    m: dict[str, Any] = {"n": e.name, "m": e.mode, "u": e.uid, "g": e.gid, "mt": e.mtime}
    m["s"] = e.size
    optional: list[tuple[str, Any]] = [
        ("U", e.user),
        ("G", e.group),
        ("ct", e.ctime),
        ("at", e.atime),
        ("bt", e.birthtime),
        ("c", None if e.chunks is None else [[c.id, c.size] for c in e.chunks]),
        ("t", e.tree),
        ("l", e.link_target),
        ("h", e.hardlink_id),
        ("r", e.rdev),
        ("x", dict(sorted(e.xattrs.items())) or None),
        ("f", e.flags),
        ("i", True if e.implicit else None),
        ("ch", None if e.chunks_healthy is None else [[c.id, c.size] for c in e.chunks_healthy]),
    ]
    m.update((k, v) for k, v in optional if v is not None)
    return m


def full_entry() -> Entry:
    return Entry(
        name=b"f",
        mode=stat.S_IFREG | 0o644,
        uid=1,
        gid=2,
        user="u",
        group="g",
        mtime=3,
        ctime=4,
        atime=5,
        birthtime=6,
        size=7,
        chunks=[ChunkRef(b"\1" * 32, 7)],
        tree=[b"\2" * 32],
        link_target=b"t",
        hardlink_id=b"\3" * 16,
        rdev=8,
        xattrs={b"user.b": b"2", b"user.a": b"1"},
        flags=0x10,
        implicit=True,
        chunks_healthy=[ChunkRef(b"\4" * 32, 7)],
    )


@pytest.mark.parametrize(
    "entry",
    [
        Entry(name=b"plain", mode=stat.S_IFREG | 0o600),
        Entry(name=b"empty-chunks", mode=stat.S_IFREG, chunks=[], flags=0, ctime=0),
        full_entry(),
    ],
)
def test_entry_map_is_the_format_table(entry: Entry) -> None:
    encoded = entry.to_msgpack_map()
    assert packb(encoded) == packb(reference_map(entry))
    assert list(encoded) == list(reference_map(entry))  # key order: equal bytes


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 65535, 65536, 65537])
def test_encode_run_is_the_plain_encoding(n: int) -> None:
    entries = [{"n": b"%d" % i} for i in range(n)]
    packed = [packb(e) for e in entries]
    assert encode_run(packed) == packb({"v": TREE_VERSION, "e": entries})


def test_store_directory_runs_round_trip_in_name_order() -> None:
    store = DictStore()
    names = [b"%05d" % i for i in range(MAX_ENTRIES_PER_OBJECT + 10)]
    entries = [Entry(name=n, mode=stat.S_IFREG | 0o644, size=len(n)) for n in reversed(names)]
    ids = store_directory(store, entries)
    assert len(ids) == 2  # split at the entry limit
    assert [e.name for e in read_directory(store, ids)] == names
    first = store.objects[ids[0]]
    expected = [reference_map(e) for e in sorted(entries, key=lambda e: e.name)]
    assert first == packb({"v": TREE_VERSION, "e": expected[:MAX_ENTRIES_PER_OBJECT]})


def test_empty_directory_is_one_object() -> None:
    store = DictStore()
    ids = store_directory(store, [])
    assert len(ids) == 1
    assert store.objects[ids[0]] == packb({"v": TREE_VERSION, "e": []})


@pytest.mark.parametrize("numeric_ids", [False, True])
@pytest.mark.parametrize("atime", [False, True])
@pytest.mark.parametrize("ctime", [False, True])
def test_entry_from_stat_fills_the_named_fields(
    numeric_ids: bool, atime: bool, ctime: bool
) -> None:
    visible = (stat.S_IFREG | 0o640, 11, 12, 1, os.getuid(), os.getgid(), 4242, 0, 0, 0)
    st = os.stat_result((*visible, 0.0, 0.0, 0.0, 7_000, 8_000, 9_000))  # a, m, c times (ns)
    options = ReadOptions(numeric_ids=numeric_ids, atime=atime, ctime=ctime)
    entry = entry_from_stat(b"name", st, options)
    expected = Entry(
        name=b"name",
        mode=stat.S_IFREG | 0o640,
        uid=os.getuid(),
        gid=os.getgid(),
        user=None if numeric_ids else user_name(os.getuid()),
        group=None if numeric_ids else group_name(os.getgid()),
        mtime=8_000,
        ctime=9_000 if ctime else None,
        atime=7_000 if atime else None,
        size=4242,
    )
    assert entry == expected


def test_entry_from_stat_of_a_device_and_a_directory() -> None:
    dev = entry_from_stat(b"null", os.stat("/dev/null"), ReadOptions())
    assert dev.rdev == os.stat("/dev/null").st_rdev and dev.size == 0
    directory = entry_from_stat(b"d", os.stat("/"), ReadOptions())
    assert directory.rdev is None and directory.size == 0 and directory.is_dir


def test_packb_after_a_failure_and_from_threads_is_plain_msgpack() -> None:
    with pytest.raises(TypeError):
        packb({"n": object()})  # nothing of the failed object stays in the kept packer
    sample = {"n": b"x", "e": [1, "two", None, 2**63]}
    assert packb(sample) == msgpack.packb(sample, use_bin_type=True)
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(packb(sample))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [msgpack.packb(sample, use_bin_type=True)] * 4
