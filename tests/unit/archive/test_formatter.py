"""Borg's --format keys (hoard.archive.formatter) and the reference counts behind dsize.

Expected values were checked against borg 1.4.1's ArchiveFormatter and
ItemFormatter on the same metadata (see tests/cli/test_list.py for the
end-to-end comparison).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import xxhash

from hoard.archive.catalog import ReferenceGraph, unique_objects
from hoard.archive.formatter import (
    ARCHIVE_KEYS,
    DEFAULT_ARCHIVE_FORMAT,
    DEFAULT_ITEM_FORMAT,
    HASH_ALGORITHMS,
    ITEM_KEYS,
    ArchiveFormatter,
    ItemFormatter,
    ItemSources,
    format_archive_line,
    format_keys,
    remove_surrogates,
)
from hoard.archive.items import ZERO_ID, ChunkRef, Entry
from hoard.archive.record import ArchiveRecord, ArchiveStats
from hoard.archive.tree import Walked, store_directory
from hoard.errors import InvalidFormat
from hoard.objects.keys import EncryptionMode, KeyMaterial
from hoard.objects.store import ObjectStore
from hoard.objects.types import ObjectType
from hoard.repository.repository import Repository
from hoard.storage.memory import MemoryStorage

MTIME = 1609556645_123456789  # 2021-01-02 03:04:05.123456789 UTC
START = datetime(2022, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC, so the expected times are fixed."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def store() -> ObjectStore:
    repository = Repository.create(MemoryStorage())
    key = KeyMaterial.generate(EncryptionMode.REPOKEY_CHACHA20_POLY1305, repository.id)
    return ObjectStore(repository, key)


def record(name: str = "arch1", **changes: object) -> ArchiveRecord:
    values: dict[str, object] = {
        "name": name,
        "time": int(START.timestamp() * 1e9),
        "end": int(START.timestamp() * 1e9) + 1_500_000_000,
        "hostname": "host",
        "username": "alice",
        "root": [],
        "cmdline": ["hoard", "create", "--comment", "two words", "r::arch1", "src"],
        "comment": "a comment",
        "chunker": "fastcdc,19,23,21",
        "stats": ArchiveStats(nfiles=1),
        "id": bytes(range(32)),
    }
    values.update(changes)
    return ArchiveRecord(**values)  # type: ignore[arg-type]


def regular(name: bytes, chunks: list[ChunkRef], **changes: object) -> Entry:
    entry = Entry(
        name=name,
        mode=stat.S_IFREG | 0o644,
        uid=1000,
        gid=100,
        user="alice",
        group="users",
        mtime=MTIME,
        size=sum(c.size for c in chunks),
        chunks=chunks,
    )
    for key, value in changes.items():
        setattr(entry, key, value)
    return entry


def put_chunks(store: ObjectStore, *pieces: bytes) -> list[ChunkRef]:
    return [ChunkRef(store.put_data(p).id, len(p)) for p in pieces]


# --- format keys --------------------------------------------------------------------------


def test_every_borg_key_is_known() -> None:
    assert set(ARCHIVE_KEYS) == {
        "archive", "name", "barchive", "comment", "bcomment", "id", "tam",
        "start", "time", "end", "command_line", "hostname", "username",
    }  # fmt: skip
    borg_items = {
        "type", "mode", "uid", "gid", "user", "group", "path", "bpath", "source",
        "linktarget", "flags", "size", "csize", "dsize", "dcsize", "num_chunks",
        "unique_chunks", "mtime", "ctime", "atime", "isomtime", "isoctime", "isoatime",
        "blake2b", "blake2s", "md5", "sha1", "sha224", "sha256", "sha384", "sha3_224",
        "sha3_256", "sha3_384", "sha3_512", "sha512", "xxh64", "archiveid",
        "archivename", "extra", "health",
    }  # fmt: skip
    assert set(ITEM_KEYS) == borg_items


def test_format_keys_returns_the_keys_used() -> None:
    assert format_keys(DEFAULT_ITEM_FORMAT, (*ITEM_KEYS, "NL")) == {
        "mode", "user", "group", "size", "mtime", "path", "extra", "NL",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("{foo}", "unknown key {foo}"),
        ("{path.x}", "unknown key {path.x}"),
        ("{path[0]}", "unknown key {path[0]}"),
        ("{}", "empty key"),
        ("{path", "expected '}'"),
        ("{size:{width}}", "unknown key {width}"),
    ],
)
def test_bad_formats_are_one_clear_error(fmt: str, message: str) -> None:
    with pytest.raises(InvalidFormat) as info:
        ItemFormatter(fmt, record())
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith(f"Invalid --format {fmt!r}: ")


def test_a_spec_the_value_rejects_is_an_invalid_format(store: ObjectStore) -> None:
    formatter = ItemFormatter("{size:abc}", record())
    with pytest.raises(InvalidFormat, match="Invalid format specifier"):
        formatter.format(Walked(b"f", regular(b"f", [])))


# --- archives -----------------------------------------------------------------------------


def test_archive_default_format_is_borgs() -> None:
    line = ArchiveFormatter(DEFAULT_ARCHIVE_FORMAT).format(record())
    assert line == f"{'arch1':<36} Fri, 2022-03-04 05:06:07 [{bytes(range(32)).hex()}]\n"
    assert format_archive_line(record()) == line.rstrip("\n")


def test_archive_keys_as_text() -> None:
    fmt = (
        "{name}|{barchive}|{comment}|{bcomment}|{start}|{time:%Y}|{end}|"
        "{command_line}|{hostname}|{username}|{tam}{TAB}{NUL}"
    )
    text = ArchiveFormatter(fmt, authenticated=False).format(record())
    assert text == (
        "arch1|arch1|a comment|a comment|Fri, 2022-03-04 05:06:07|2022|"
        "Fri, 2022-03-04 05:06:08|hoard create --comment 'two words' r::arch1 src|"
        "host|alice|none\t\0"
    )


def test_archive_json_has_borgs_fields_and_format_keys() -> None:
    data = ArchiveFormatter("{command_line}{end}{tam}", json=True).json_data(record())
    assert data == {
        "archive": "arch1",
        "barchive": "arch1",
        "name": "arch1",
        "id": bytes(range(32)).hex(),
        "start": "2022-03-04T05:06:07.000000",
        "time": "2022-03-04T05:06:07.000000",
        "end": "2022-03-04T05:06:08.500000",
        "command_line": ["hoard", "create", "--comment", "two words", "r::arch1", "src"],
        "tam": "verified",
    }


def test_undecodable_archive_names_are_replaced_in_text_keys_only() -> None:
    name = os.fsdecode(b"caf\xe9")
    text = ArchiveFormatter("{archive}|{barchive}").format(record(name))
    assert os.fsencode(text) == b"caf?|caf\xe9"
    assert ArchiveFormatter("", json=True).json_data(record(name))["barchive"] == "caf?"
    assert remove_surrogates("é" + name) == "écaf?"


# --- items ----------------------------------------------------------------------------------


def test_default_item_format(store: ObjectStore) -> None:
    chunks = put_chunks(store, b"hello\n")
    line = ItemFormatter(DEFAULT_ITEM_FORMAT, record()).format(
        Walked(b"dir/hello", regular(b"hello", chunks))
    )
    assert line == "-rw-r--r-- alice  users         6 Sat, 2021-01-02 03:04:05 dir/hello\n"


def test_owner_without_name_shows_the_number() -> None:
    entry = regular(b"f", [], user=None, group=None)
    data = ItemFormatter("{user:6}|{group:>6}", record()).format(Walked(b"f", entry))
    assert data == "  1000|   100"  # numbers are right-aligned, as in Borg


def test_symlink_extra_and_size() -> None:
    link = Entry(b"l", stat.S_IFLNK | 0o777, mtime=MTIME, link_target=b"target/file")
    fmt = "{type} {mode} {size} {csize} {source} {linktarget}{extra}"
    text = ItemFormatter(fmt, record(), ItemSources(stored_size=len)).format(Walked(b"d/l", link))
    assert text == "l lrwxrwxrwx 11 11 target/file target/file -> target/file"


def test_later_hardlink_members_link_to_the_first_even_if_it_is_hidden(
    store: ObjectStore,
) -> None:
    chunks = put_chunks(store, b"shared\n")
    group = b"g" * 16
    first = Walked(b"a/one", regular(b"one", chunks, hardlink_id=group))
    second = Walked(b"b/two", regular(b"two", chunks, hardlink_id=group))
    formatter = ItemFormatter("{mode} {size} {source}{extra} {num_chunks}", record())
    formatter.remember(first)
    assert formatter.format(second) == "hrw-r--r-- 7 a/one link to a/one 1"
    fresh = ItemFormatter("{mode} {size} [{source}]", record())
    assert fresh.format(first) == "-rw-r--r-- 7 []"
    assert fresh.format(first) == "-rw-r--r-- 7 []"  # the first stays the first
    assert fresh.format(second) == "hrw-r--r-- 7 [a/one]"


def test_times_and_iso_times() -> None:
    entry = regular(b"f", [], ctime=MTIME + 86400 * 10**9, atime=None)
    fmt = "{mtime}|{ctime}|{atime}|{isomtime}|{isoctime}|{isoatime}|{mtime:%Y-%j}"
    assert ItemFormatter(fmt, record()).format(Walked(b"f", entry)) == (
        "Sat, 2021-01-02 03:04:05|Sun, 2021-01-03 03:04:05|Sat, 2021-01-02 03:04:05|"
        "2021-01-02T03:04:05.123457|2021-01-03T03:04:05.123457|2021-01-02T03:04:05.123457|"
        "2021-002"
    )


def test_static_keys_and_bpath() -> None:
    raw = b"dir/caf\xe9"
    entry = regular(b"caf\xe9", [], flags=0x10)
    fmt = "{path}|{bpath}|{archivename}|{archiveid}|{health}|{flags}|{uid}:{gid}{NL}"
    text = ItemFormatter(fmt, record()).format(Walked(raw, entry))
    expected = b"dir/caf?|dir/caf\xe9|arch1|" + bytes(range(32)).hex().encode() + b"|healthy|16|"
    assert os.fsencode(text) == expected + b"1000:100" + os.linesep.encode()


@pytest.mark.parametrize("algorithm", HASH_ALGORITHMS)
def test_hashes_read_the_content_and_zero_runs(store: ObjectStore, algorithm: str) -> None:
    pieces = [b"first piece ", b"second piece"]
    chunks = put_chunks(store, *pieces)
    chunks.insert(1, ChunkRef(ZERO_ID, 3_000_000))
    content = pieces[0] + bytes(3_000_000) + pieces[1]
    expected = (
        xxhash.xxh64(content).hexdigest()
        if algorithm == "xxh64"
        else hashlib.new(algorithm, content).hexdigest()
    )
    formatter = ItemFormatter(f"{{{algorithm}}}", record(), ItemSources(reader=store))
    assert formatter.needs_content
    assert formatter.format(Walked(b"f", regular(b"f", chunks))) == expected


def test_hashes_of_items_without_content_are_empty(store: ObjectStore) -> None:
    directory = Entry(b"d", stat.S_IFDIR | 0o755, mtime=MTIME, tree=[])
    formatter = ItemFormatter("[{md5}][{sha256}]", record(), ItemSources(reader=store))
    assert formatter.format(Walked(b"d", directory)) == "[][]"
    empty = regular(b"e", [])
    assert formatter.format(Walked(b"e", empty)) == (
        f"[{hashlib.md5(b'').hexdigest()}][{hashlib.sha256(b'').hexdigest()}]"
    )


def test_costly_sources_are_only_needed_when_used() -> None:
    plain = ItemFormatter(DEFAULT_ITEM_FORMAT, record())
    assert not (plain.needs_content or plain.needs_refcounts or plain.needs_stored_sizes)
    costly = ItemFormatter("{dcsize}", record())
    assert costly.needs_refcounts
    assert costly.needs_stored_sizes


def test_unique_chunks_count_references_as_borg(store: ObjectStore) -> None:
    a, b, c = put_chunks(store, b"aaaa", b"bbbbbbbb", b"cc")
    entry = regular(b"f", [a, b, a, c, ChunkRef(ZERO_ID, 100)])
    # a: referenced twice, both here; b: also elsewhere; c: only here
    refcounts = {a.id: 2, b.id: 3, c.id: 1}
    sizes = {a.id: 40, b.id: 80, c.id: 20}
    sources = ItemSources(stored_size=sizes.__getitem__, refcounts=refcounts)
    fmt = "{size} {csize} {dsize} {dcsize} {num_chunks} {unique_chunks}"
    text = ItemFormatter(fmt, record(), sources).format(Walked(b"f", entry))
    assert text == "118 180 10 100 5 3"


def test_json_lines_data_has_borgs_keys(store: ObjectStore) -> None:
    chunks = put_chunks(store, b"hello\n")
    entry = regular(b"caf\xe9", chunks)
    formatter = ItemFormatter(DEFAULT_ITEM_FORMAT, record(), json_lines=True)
    assert formatter.json_data(Walked(b"caf\xe9", entry)) == {
        "type": "-",
        "mode": "-rw-r--r--",
        "user": "alice",
        "group": "users",
        "uid": 1000,
        "gid": 100,
        "path": "caf?",
        "healthy": True,
        "source": "",
        "linktarget": "",
        "flags": 0,
        "mtime": "2021-01-02T03:04:05.123457",
        "size": 6,
    }
    short = ItemFormatter("{path}{NL}", record(), json_lines=True)
    assert "size" not in short.json_data(Walked(b"f", entry))


# --- reference counts ------------------------------------------------------------------


def archive_with(
    store: ObjectStore, name: str, files: dict[bytes, list[ChunkRef]]
) -> ArchiveRecord:
    """An archive holding ``shared/`` (same tree in every archive) and the given files."""
    shared_files = [regular(b"s", put_chunks(store, b"in every archive"))]
    shared = Entry(b"shared", stat.S_IFDIR | 0o755, tree=store_directory(store, shared_files))
    own = [regular(n, chunks) for n, chunks in files.items()]
    root = store_directory(store, [shared, *own])
    return record(name, root=root, id=name.encode().ljust(32, b"\0"))


def test_reference_counts_follow_shared_trees(store: ObjectStore) -> None:
    x, y = put_chunks(store, b"x" * 10, b"y" * 20)
    one = archive_with(store, "one", {b"f": [x, x], b"g": [y]})
    two = archive_with(store, "two", {b"h": [y]})
    graph = ReferenceGraph(store)
    counts = graph.refcounts([one, two])
    shared_chunk = store.id_of(b"in every archive")
    assert counts[shared_chunk] == 2  # the shared tree is reached from both archives
    assert counts[x.id] == 2  # twice in one file
    assert counts[y.id] == 2
    assert ZERO_ID not in counts
    only_one = unique_objects(counts, graph.refcounts([one]))
    assert x.id in only_one
    assert y.id not in only_one
    assert shared_chunk not in only_one
    assert one.root[0] in only_one  # its root tree object is its own
    both = unique_objects(counts, graph.refcounts([one, two]))
    assert set(both) == set(counts)


def test_a_subtree_reached_twice_in_one_archive_counts_twice(store: ObjectStore) -> None:
    (z,) = put_chunks(store, b"zzz")
    inner = store_directory(store, [regular(b"z", [z])])
    dirs = [Entry(n, stat.S_IFDIR | 0o755, tree=inner) for n in (b"a", b"b")]
    root = store_directory(store, dirs)
    counts = ReferenceGraph(store).refcounts([record(root=root)])
    assert counts[z.id] == 2
    assert counts[inner[0]] == 2
    assert counts[root[0]] == 1
    assert store.get(ObjectType.DATA, z.id) == b"zzz"
