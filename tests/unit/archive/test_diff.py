"""hoard.archive.diff: Borg 1.4's change lines, and unchanged directories left unread."""

from __future__ import annotations

import hashlib
import stat
from datetime import datetime

from hoard.archive.diff import ArchiveDiff, DiffOptions
from hoard.archive.items import ChunkRef, Entry
from hoard.archive.patterns import PatternMatcher
from hoard.archive.tree import store_directory
from hoard.commands.stats import format_file_size, format_time
from hoard.objects.types import ObjectType


class CountingStore:
    """Tree objects in memory by content hash (as ids are in a repository:
    the same directory is the same object), counting the reads a diff makes."""

    def __init__(self) -> None:
        self.objects: dict[bytes, bytes] = {}
        self.reads = 0

    def put(self, type: ObjectType, data: bytes) -> bytes:
        id_ = hashlib.sha256(data).digest()
        self.objects[id_] = data
        return id_

    def get(self, type: ObjectType, id: bytes) -> bytes:
        self.reads += 1
        return self.objects[id]


FILE = stat.S_IFREG | 0o644
DIR = stat.S_IFDIR | 0o755


def file(name: str, *chunks: tuple[int, int], mode: int = FILE, **kw: object) -> Entry:
    refs = [ChunkRef(bytes([i]) * 32, size) for i, size in chunks]
    return Entry(
        name.encode(), mode, size=sum(c.size for c in refs), chunks=refs, user="u", group="g", **kw
    )  # type: ignore[arg-type]


def tree(store: CountingStore, files: int, changed: int | None) -> list[bytes]:
    """1,000 directories of ``files`` files; file 0 of directory ``changed`` differs."""
    dirs = []
    for d in range(1000):
        entries = [file(f"f{i}", (i % 200 + 1, 10)) for i in range(files)]
        if d == changed:
            entries[0] = file("f0", (250, 12))
        dirs.append(Entry(f"d{d:04d}".encode(), DIR, tree=store_directory(store, entries)))
    return store_directory(store, dirs)


def differ(store: CountingStore, **options: bool) -> ArchiveDiff:
    return ArchiveDiff(
        store, PatternMatcher(), DiffOptions(**options), format_file_size, format_time
    )


def test_only_the_changed_directory_is_read() -> None:
    store = CountingStore()
    old, new = tree(store, 10, None), tree(store, 10, 500)
    store.reads = 0
    (diff,) = list(differ(store).compare(old, new))
    assert diff.path == b"d0500/f0"
    assert [c.text for c in diff.changes] == ["    +12 B     -10 B"]
    assert store.reads == 4  # both roots, both copies of d0500: not the other 999


def test_borgs_change_texts_in_borgs_order() -> None:
    store = CountingStore()
    t1 = datetime(2020, 1, 2, 3, 4, 5).timestamp()
    old = file("f", (1, 100), (2, 50), mtime=int(t1 * 1e9), ctime=int(t1 * 1e9))
    new = file(
        "f",
        (1, 100),
        (3, 70),
        mode=stat.S_IFREG | 0o755,
        mtime=int(t1 * 1e9),
        ctime=int((t1 + 60) * 1e9),
    )
    new.user = "other"
    changes = differ(store).item_changes(old, new)
    assert [c.text for c in changes] == [
        "    +70 B     -50 B",
        "[u:g -> other:g]",
        "[-rw-r--r-- -> -rwxr-xr-x]",
        "[ctime: Thu, 2020-01-02 03:04:05 -> Thu, 2020-01-02 03:05:05]",
    ]
    assert changes[3].data == {
        "type": "ctime",
        "old_ctime": "2020-01-02T03:04:05.000000",
        "new_ctime": "2020-01-02T03:05:05.000000",
    }
    assert [c.text for c in differ(store, content_only=True).item_changes(old, new)] == [
        "    +70 B     -50 B"
    ]
    assert differ(store).item_changes(old, old) == []


def test_added_removed_and_links() -> None:
    store = CountingStore()
    big = file("big", (1, 123_456))
    link = Entry(b"l", stat.S_IFLNK | 0o777, link_target=b"a")
    assert [c.text for c in differ(store).item_changes(None, big)] == ["added     123.46 kB"]
    assert [c.text for c in differ(store).item_changes(big, None)] == ["removed   123.46 kB"]
    assert [c.text for c in differ(store).item_changes(None, link)] == ["added link"]
    moved = Entry(b"l", stat.S_IFLNK | 0o777, link_target=b"b")
    assert [c.kind for c in differ(store).item_changes(link, moved)] == ["changed link"]
    folder = Entry(b"d", DIR)
    assert [c.text for c in differ(store).item_changes(folder, None)] == ["removed directory"]
    fifo = Entry(b"p", stat.S_IFIFO | 0o644)
    assert [c.text for c in differ(store).item_changes(None, fifo)] == ["added           0 B"]
