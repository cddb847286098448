"""The create walker (hoard.archive.create) on real trees in tmp_path.

A real ObjectStore on a MemoryStorage repository stores what the walker
produces; the archive is read back with ``hoard.archive.tree.walk``. Races
(a file vanishing or changing while it is backed up) are made deterministic
through the walker's own ``report`` callback, which runs after a file is
opened and before it is read, exactly where a real race would hit.
"""

from __future__ import annotations

import os
import random
import re
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hoard.archive.chunker import ChunkerParams, make_chunker
from hoard.archive.create import (
    CACHEDIR_SIGNATURE,
    CreateOptions,
    Creator,
    StreamMeta,
    _child_path,
    archive_path,
    strip_prefix,
)
from hoard.archive.filescache import FilesCache
from hoard.archive.items import ZERO_ID, Entry
from hoard.archive.patterns import (
    PatternMatcher,
    PatternRule,
    parse_exclude_pattern,
    parse_inclexcl_line,
)
from hoard.archive.pipeline import ChunkPipeline
from hoard.archive.tree import walk
from hoard.errors import (
    ArchivePathCollisionWarning,
    BackupFileNotFoundWarning,
    BackupInterrupted,
    FileChangedWarning,
    HoardWarning,
    InvalidArchivePath,
)
from hoard.objects.keys import EncryptionMode, KeyMaterial
from hoard.objects.store import ObjectStore
from hoard.objects.types import ObjectType
from hoard.repository.repository import Repository
from hoard.storage.memory import MemoryStorage
from tests.unit.archive.test_filescache import wait_for_ctime_after

MiB = 1024 * 1024


@dataclass
class Backup:
    """What one run produced: archive entries by path, --list lines, warnings."""

    entries: dict[str, Entry]
    reports: list[tuple[str, str]]
    warnings: list[HoardWarning]
    creator: Creator
    store: ObjectStore

    def listed(self) -> set[str]:
        """The paths ``hoard list`` shows (implicit directories hidden)."""
        return {p for p, e in self.entries.items() if not e.implicit}

    def status(self, path: str | Path) -> list[str]:
        return [s for s, p in self.reports if p == str(path)]

    def content(self, path: str) -> bytes:
        chunks = self.entries[path].chunks or []
        return b"".join(
            bytes(c.size) if c.id == ZERO_ID else self.store.get(ObjectType.DATA, c.id)
            for c in chunks
        )


@dataclass
class Harness:
    """Runs the walker with a real object store; ``on_report`` hooks into the walk."""

    on_report: Callable[[str, bytes], None] | None = None
    interrupted: Callable[[], bool] = lambda: False
    stores: list[ObjectStore] = field(default_factory=list)

    def store(self) -> ObjectStore:
        repository = Repository.create(MemoryStorage(), key_mode="none")
        key = KeyMaterial.generate(EncryptionMode.NONE, repository.id)
        store = ObjectStore(repository, key)
        self.stores.append(store)
        return store

    def run(
        self,
        paths: list[str | Path],
        *,
        matcher: PatternMatcher | None = None,
        stream: tuple[object, StreamMeta] | None = None,
        **options: object,
    ) -> Backup:
        store = self.store()
        dry = bool(options.get("dry_run", False))
        pipeline = None if dry else ChunkPipeline(store)
        chunker = (
            None if dry else make_chunker(ChunkerParams.parse("default"), store.key.chunker_key)
        )
        reports: list[tuple[str, str]] = []
        warnings: list[HoardWarning] = []

        def report(status: str, path: bytes) -> None:
            reports.append((status, os.fsdecode(path)))
            if self.on_report is not None:
                self.on_report(status, path)

        creator = Creator(
            None if dry else store,
            pipeline,
            chunker,
            matcher or PatternMatcher(),
            CreateOptions(**options),  # type: ignore[arg-type]
            report=report,
            warn=warnings.append,
            interrupted=self.interrupted,
        )
        try:
            if stream is not None:
                root = creator.run_stream(stream[0], stream[1])  # type: ignore[arg-type]
            else:
                root = creator.run([os.fsencode(p) for p in paths])
        finally:
            if pipeline is not None:
                pipeline.close()
        entries = {} if dry else {os.fsdecode(w.path): w.entry for w in walk(store, root)}
        return Backup(entries, reports, warnings, creator, store)


@pytest.fixture
def harness() -> Harness:
    return Harness()


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def chdir(tmp_path: Path) -> Iterator[Path]:
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


# --- archive paths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (b"/tmp/x/y", b"tmp/x/y"),
        (b"src", b"src"),
        (b"./src/", b"src"),
        (b"src/../other", b"other"),
        (b"../up/x", b"up/x"),
        (b"../../x", b"x"),
        (b"//double//slash", b"double/slash"),
        (b"/", b""),
        (b".", b""),
        (b"..", b""),
    ],
)
def test_archive_path(given: bytes, expected: bytes) -> None:
    assert archive_path(given) == expected
    if expected:
        assert archive_path(given, file=True) == expected


@pytest.mark.parametrize(
    ("given", "file", "reason"),
    [
        (b"a\0b", False, "it contains a NUL byte"),
        (b"/x/\0", True, "it contains a NUL byte"),
        (b"", True, "it is empty"),
        (b"a/..", True, "it normalises to the archive root, not a file"),
        (b"/", True, "it normalises to the archive root, not a file"),
        (b"..", True, "it normalises to the archive root, not a file"),
    ],
)
def test_what_cannot_be_an_archive_path(given: bytes, file: bool, reason: str) -> None:
    with pytest.raises(InvalidArchivePath) as caught:
        archive_path(given, file=file)
    assert caught.value.reason == reason
    assert str(caught.value) == f"{os.fsdecode(given)!r} cannot be an archive path: {reason}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (b"/srv/./data", b"/srv/"),
        (b"/a/b/./c/./d", b"/a/b/"),
        (b"a//b/./c", b"a/b/"),
        (b"./x", None),
        (b"/./x", None),
        (b"/plain/path", None),
    ],
)
def test_strip_prefix(given: bytes, expected: bytes | None) -> None:
    assert strip_prefix(given) == expected


# --- what is archived ------------------------------------------------------------------


def test_relative_tree_statuses_and_content(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/a.txt", b"alpha")
    write(chdir / "src/sub/b.bin", os.urandom(3 * MiB))
    (chdir / "src/empty").mkdir()
    os.symlink("a.txt", chdir / "src/link")
    result = harness.run(["src"])
    assert result.listed() == {
        "src",
        "src/a.txt",
        "src/sub",
        "src/sub/b.bin",
        "src/empty",
        "src/link",
    }
    assert result.content("src/a.txt") == b"alpha"
    assert result.content("src/sub/b.bin") == (chdir / "src/sub/b.bin").read_bytes()
    assert result.entries["src/link"].link_target == b"a.txt"
    assert result.status("src/a.txt") == ["A"]
    assert result.status("src/link") == ["s"]
    assert result.status("src") == ["d"]
    # A directory's status comes after its contents (Borg's order).
    order = [p for _, p in result.reports]
    assert order.index("src/sub/b.bin") < order.index("src/sub") < order.index("src")
    assert result.creator.stats.nfiles == 2
    assert result.creator.stats.original_size == 5 + 3 * MiB
    assert not result.warnings


def test_absolute_root_gets_implicit_parents_with_their_metadata(
    harness: Harness, tmp_path: Path
) -> None:
    write(tmp_path / "deep/er/src/f")
    os.chmod(tmp_path / "deep", 0o751)
    result = harness.run([tmp_path / "deep/er/src"])
    prefix = archive_path(os.fsencode(tmp_path)).decode()
    assert result.listed() == {f"{prefix}/deep/er/src", f"{prefix}/deep/er/src/f"}
    parent = result.entries[f"{prefix}/deep"]
    assert parent.implicit and parent.is_dir
    assert stat.S_IMODE(parent.mode) == 0o751
    assert result.status(tmp_path / "deep/er/src/f") == ["A"]  # --list shows the path as given


def test_dot_root_puts_contents_at_archive_root(harness: Harness, chdir: Path) -> None:
    write(chdir / "a")
    write(chdir / "d/b")
    result = harness.run(["."])
    # Borg 1.4 (borg create r::a .): the directory itself is the item "."
    assert result.listed() == {".", "a", "d", "d/b"}
    assert result.status(".") == ["d"]
    assert result.entries["."].tree is None and not result.entries["."].implicit


def test_slashdot_strips_the_prefix(harness: Harness, tmp_path: Path) -> None:
    write(tmp_path / "srv/data/x/f")
    result = harness.run([f"{tmp_path}/srv/./data/x"])
    assert result.listed() == {"data/x", "data/x/f"}
    assert result.entries["data"].implicit
    # A root ending in "/./": its directory itself is the archive root, the
    # item "." (Borg 1.4: borg create --list r::a srv/data/./ says "d srv/data")
    result = harness.run([f"{tmp_path}/srv/data/./"])
    assert result.listed() == {".", "x", "x/f"}
    assert result.status(f"{tmp_path}/srv/data") == ["d"]


def test_two_roots_with_the_same_archive_path_merge_and_collide(
    harness: Harness, tmp_path: Path
) -> None:
    write(tmp_path / "one/d/a", b"1")
    write(tmp_path / "two/d/b", b"2")
    write(tmp_path / "two/d/a", b"second")
    result = harness.run([f"{tmp_path}/one/./d", f"{tmp_path}/two/./d"])
    assert result.listed() == {"d", "d/a", "d/b"}
    assert result.content("d/a") == b"1"  # the first keeps the name; the second is reported
    (warning,) = result.warnings
    assert isinstance(warning, ArchivePathCollisionWarning)
    assert warning.get_message() == (
        f"{tmp_path}/two/d/a: not archived: archive path 'd/a' is taken by {tmp_path}/one/d/a"
    )
    assert result.status(f"{tmp_path}/two/d/a") == ["E"]


def test_roots_given_twice_or_nested_are_archived_once(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/sub/f")
    write(chdir / "src/g")
    result = harness.run(["src/sub", "src", "src"])
    assert result.listed() == {"src", "src/g", "src/sub", "src/sub/f"}
    assert result.status("src/sub/f") == ["A"]  # read once: src skips the finished root
    result = harness.run(["src", "src/sub"])
    assert result.listed() == {"src", "src/g", "src/sub", "src/sub/f"}


def test_hard_links(harness: Harness, chdir: Path) -> None:
    data = os.urandom(MiB + 5)
    write(chdir / "src/a", data)
    os.link(chdir / "src/a", chdir / "src/b")
    os.link(chdir / "src/a", chdir / "src/c")
    result = harness.run(["src"])
    a, b, c = (result.entries[f"src/{n}"] for n in "abc")
    assert a.hardlink_id is not None and a.hardlink_id == b.hardlink_id == c.hardlink_id
    assert a.chunks == b.chunks == c.chunks  # every member extracts alone
    assert [result.status(f"src/{n}") for n in "abc"] == [["A"], ["h"], ["h"]]
    assert result.creator.stats.nfiles == 1  # Borg counts the file once
    assert result.creator.stats.original_size == len(data)
    assert result.content("src/c") == data


def test_socket_is_skipped_silently(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/f")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("src/sock")
        result = harness.run(["src"])
    assert "src/sock" not in result.entries
    assert result.status("src/sock") == []
    assert not result.warnings


def test_fifo_without_and_with_read_special(harness: Harness, chdir: Path) -> None:
    (chdir / "src").mkdir()
    os.mkfifo(chdir / "src/pipe")
    result = harness.run(["src"])
    assert stat.S_ISFIFO(result.entries["src/pipe"].mode)
    assert result.status("src/pipe") == ["f"]

    payload = os.urandom(5 * MiB)

    def feed() -> None:
        with open(chdir / "src/pipe", "wb") as f:  # blocks until hoard opens it
            f.write(payload)

    feeder = threading.Thread(target=feed)
    feeder.start()
    result = harness.run(["src"], read_special=True)
    feeder.join(timeout=10)
    entry = result.entries["src/pipe"]
    assert stat.S_ISREG(entry.mode) and entry.size == len(payload)
    assert result.content("src/pipe") == payload
    assert result.status("src/pipe") == ["A"]


def test_read_special_follows_symlinks_to_devices_only(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/f", b"content")
    os.symlink("/dev/null", chdir / "src/to-null")
    os.symlink("f", chdir / "src/to-file")
    result = harness.run(["src"], read_special=True)
    null = result.entries["src/to-null"]
    assert stat.S_ISREG(null.mode) and null.size == 0 and null.link_target is None
    assert result.entries["src/to-file"].link_target == b"f"


def test_dry_run_reads_and_stores_nothing(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/f")
    (chdir / "src/d").mkdir()
    os.mkfifo(chdir / "src/pipe")  # would block forever if it were opened
    result = harness.run(["src"], dry_run=True, read_special=True)
    assert sorted(result.reports) == [
        ("-", "src"),
        ("-", "src/d"),
        ("-", "src/f"),
        ("-", "src/pipe"),
    ]
    assert result.creator.stats.nfiles == 0


def test_stdin_stream(harness: Harness, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB)
    with open(write(tmp_path / "input", data), "rb") as stream:
        meta = StreamMeta(path=b"dumps/db.sql", mode=0o640, uid=0, gid=0, user="root")
        result = harness.run([], stream=(stream, meta))
    entry = result.entries["dumps/db.sql"]
    assert entry.mode == stat.S_IFREG | 0o640 and entry.user == "root"
    assert result.entries["dumps"].implicit
    assert result.content("dumps/db.sql") == data
    assert result.reports == [("i", "dumps/db.sql")]


# --- tags and patterns ------------------------------------------------------------------


def rule(line: str) -> PatternRule:
    parsed = parse_inclexcl_line(line)
    assert isinstance(parsed, PatternRule)
    return parsed


def test_exclude_caches_needs_the_signature(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/cache/CACHEDIR.TAG", CACHEDIR_SIGNATURE + b"\n# a comment\n")
    write(chdir / "src/cache/data")
    write(chdir / "src/fake/CACHEDIR.TAG", b"not the signature")
    result = harness.run(["src"], exclude_caches=True)
    assert result.listed() == {"src", "src/fake", "src/fake/CACHEDIR.TAG"}
    assert result.status("src/cache") == ["x"]
    result = harness.run(["src"], exclude_caches=True, keep_exclude_tags=True)
    assert {"src/cache", "src/cache/CACHEDIR.TAG"} <= result.listed()
    assert "src/cache/data" not in result.entries
    assert result.status("src/cache") == ["x"]  # Borg reports x although the dir is kept


def test_exclude_if_present_tag_may_be_a_directory(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/t/.nobackup/inside")
    write(chdir / "src/t/other")
    result = harness.run(["src"], exclude_if_present=(b".nobackup",))
    assert result.listed() == {"src"}
    result = harness.run(["src"], exclude_if_present=(b".nobackup",), keep_exclude_tags=True)
    assert result.listed() == {"src", "src/t", "src/t/.nobackup", "src/t/.nobackup/inside"}


def test_excluded_directory_keeps_included_items_as_implicit_parent(
    harness: Harness, chdir: Path
) -> None:
    write(chdir / "src/ex/keep/k")
    write(chdir / "src/ex/drop")
    matcher = PatternMatcher()
    matcher.add_rules([rule("+ src/ex/keep"), rule("- src/ex")])
    result = harness.run(["src"], matcher=matcher)
    assert result.listed() == {"src", "src/ex/keep", "src/ex/keep/k"}
    assert result.entries["src/ex"].implicit
    assert result.status("src/ex") == ["x"] and result.status("src/ex/drop") == ["x"]


def test_exclude_does_not_descend(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/ex/keep/k")
    matcher = PatternMatcher()
    matcher.add_rules([parse_exclude_pattern("src/ex")])
    matcher.add_rules([rule("+ src/ex/keep")])
    result = harness.run(["src"], matcher=matcher)
    assert result.listed() == {"src"}
    assert result.status("src/ex/keep") == []  # never even looked at


def test_skip_set_keeps_the_repository_out(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/f")
    write(chdir / "src/repo/config")
    st = os.stat(chdir / "src/repo")
    result = harness.run(["src"], skip=frozenset({(st.st_dev, st.st_ino)}))
    assert result.listed() == {"src", "src/f"}


# --- races, errors, interruption ---------------------------------------------------------


def test_file_vanishing_after_the_listing_is_a_warning(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/a")
    write(chdir / "src/b")

    def delete_b(status: str, path: bytes) -> None:
        if path == b"src/a" and status == "A":
            os.unlink("src/b")

    harness.on_report = delete_b
    result = harness.run(["src"])
    assert result.status("src/b") == ["E"]
    assert "src/b" not in result.entries and "src/a" in result.entries
    (warning,) = result.warnings
    assert isinstance(warning, BackupFileNotFoundWarning) and warning.modern_exit_code == 107
    assert warning.get_message() == "src/b: stat: [Errno 2] No such file or directory: 'b'"


def test_file_changing_while_read_is_flagged(harness: Harness, chdir: Path) -> None:
    write(chdir / "src/a", os.urandom(MiB))

    def grow(status: str, path: bytes) -> None:
        if path == b"src/a" and status == "A":  # open, not read yet
            os.chmod("src/a", 0o600)  # a ctime change, as any write would make

    harness.on_report = grow
    result = harness.run(["src"])
    assert result.status("src/a") == ["A", "C"]  # Borg prints both
    (warning,) = result.warnings
    assert isinstance(warning, FileChangedWarning) and warning.modern_exit_code == 100
    assert "src/a" in result.entries  # archived anyway, flagged


def test_interruption_stops_the_walk(harness: Harness, chdir: Path) -> None:
    for n in range(5):
        write(chdir / f"src/f{n}")
    seen: list[str] = []
    harness.on_report = lambda status, path: seen.append(os.fsdecode(path))
    harness.interrupted = lambda: len(seen) >= 2
    with pytest.raises(BackupInterrupted):
        harness.run(["src"])
    assert seen == ["src/f0", "src/f1"]


def test_device_is_stored_as_metadata(harness: Harness, chdir: Path) -> None:
    result = harness.run(["/dev/null"])
    null = result.entries["dev/null"]
    assert stat.S_ISCHR(null.mode) and null.rdev == os.stat("/dev/null").st_rdev
    assert result.status("/dev/null") == ["c"]


def test_cached_files_ask_the_chunk_index_once_per_chunk(chdir: Path) -> None:
    """A ``U`` file's presence check also gives the compressed size its stats
    need: one chunk-index question per chunk, and the figures of a full read."""
    for n in range(3):
        write(chdir / f"src/f{n}", os.urandom(1000 + n))
    wait_for_ctime_after(
        chdir / "src/zz-stamp", max(os.stat(f"src/f{n}").st_ctime_ns for n in range(3))
    )
    store = Harness().store()
    repository = store.repository
    chunker = make_chunker(ChunkerParams.parse("default"), store.key.chunker_key)
    secret = bytes(32)
    asked: list[bytes] = []

    def stored_size(id_: bytes) -> int | None:
        asked.append(id_)
        return repository.stored_size(id_)

    def backup() -> Creator:
        start = time.time_ns() + 10 * 10**9
        cache = FilesCache.load(chdir / "cache", repository.id, secret, start_ns=start)
        pipeline = ChunkPipeline(store)
        creator = Creator(
            store,
            pipeline,
            chunker,
            PatternMatcher(),
            CreateOptions(),
            report=lambda _status, _path: None,
            warn=lambda w: None,
            files_cache=cache,
            stored_size=stored_size,
        )
        try:
            creator.run([b"src"])
        finally:
            pipeline.close()
        store.flush()
        cache.save()
        return creator

    first = backup()
    asked.clear()
    second = backup()
    files = {b"src/f0", b"src/f1", b"src/f2"}
    assert len(asked) == len(files)  # one question per cached chunk (one chunk per file)
    assert len(set(asked)) == len(files)
    assert second.stats.nfiles == first.stats.nfiles
    assert second.stats.nchunks == first.stats.nchunks
    assert second.stats.original_size == first.stats.original_size
    assert second.stats.compressed_size == first.stats.compressed_size
    assert second.stats.deduplicated_size == 0


@pytest.mark.parametrize("path", [b".", b"..", b"/", b"//", b"a", b"a/b", b"/a", b"../a", b"//a"])
def test_child_path_is_the_normal_join(path: bytes) -> None:
    assert os.path.normpath(path) == path
    assert _child_path(path, b"name") == os.path.normpath(os.path.join(path, b"name"))


def test_archive_path_shortcut_agrees_with_normalising() -> None:
    """Paths taken as they are (already normal) come out as normalising makes them."""
    parts = [b"a", b".", b"..", b"", b".b", b"c.", b"...", b"d..e"]
    rng = random.Random(7)
    for _ in range(3000):
        path = b"/".join(rng.choices(parts, k=rng.randint(1, 4)))
        path = rng.choice([b"", b"/", b"./", b"../"]) + path + rng.choice([b"", b"/"])
        if not path:
            continue
        normal = re.sub(rb"^((\.\.)?/+)+", b"", os.path.normpath(path))
        assert archive_path(path) == (b"" if normal in (b".", b"..") else normal), path
