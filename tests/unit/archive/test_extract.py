"""Tests of hoard.archive.extract on real objects (in-memory repository) and real files.

Archives are built entry by entry here, so that cases ``create`` never
produces (unsafe names, strip-component collisions, missing chunks, a size
that disagrees with the chunks) can be tested as well as ordinary ones.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hoard.archive.extract import ExtractOptions, Extractor, ExtractStats, strip_path
from hoard.archive.items import ZERO_ID, ChunkRef, Entry
from hoard.archive.metadata import RestoreOptions
from hoard.archive.patterns import PatternMatcher, build_matcher, parse_exclude_pattern
from hoard.archive.tree import store_directory
from hoard.errors import HoardWarning, IntegrityError
from hoard.objects.keys import EncryptionMode, KeyMaterial
from hoard.objects.store import ObjectStore
from hoard.repository.repository import Repository
from hoard.storage.memory import MemoryStorage

MiB = 1024 * 1024
MTIME = 1_234_567_890_123_456_789
FILE = stat.S_IFREG
DIR = stat.S_IFDIR


class Archive:
    """Builds archive trees in a real (in-memory, encrypted) repository."""

    def __init__(self) -> None:
        mode = EncryptionMode.REPOKEY_CHACHA20_POLY1305
        repo = Repository.create(MemoryStorage(), key_mode=mode.value)
        self.objects = ObjectStore(repo, KeyMaterial.generate(mode, repo.id))

    def chunks(self, data: bytes, size: int = 64 * 1024) -> list[ChunkRef]:
        refs = []
        for offset in range(0, len(data), size):
            piece = data[offset : offset + size]
            if piece == bytes(len(piece)):
                refs.append(ChunkRef(ZERO_ID, len(piece)))
            else:
                refs.append(ChunkRef(self.objects.put_data(piece).id, len(piece)))
        return refs

    def file(self, name: bytes, data: bytes, mode: int = 0o644, **kw: object) -> Entry:
        return Entry(name, FILE | mode, mtime=MTIME, size=len(data), chunks=self.chunks(data), **kw)  # type: ignore[arg-type]

    def dir(self, name: bytes, entries: list[Entry], mode: int = 0o755, **kw: object) -> Entry:
        tree = store_directory(self.objects, entries)
        return Entry(name, DIR | mode, mtime=MTIME, tree=tree, **kw)  # type: ignore[arg-type]

    def root(self, entries: list[Entry]) -> list[bytes]:
        return store_directory(self.objects, entries)


class Run:
    """One extraction into ``target`` collecting warnings, listed paths and stdout bytes."""

    def __init__(self, target: Path, whole_file_bytes: int = 1024 * 1024) -> None:
        self.target = target
        self.whole_file_bytes = whole_file_bytes
        self.warnings: list[HoardWarning] = []
        self.listed: list[bytes] = []
        self.out = bytearray()
        self.progress: list[tuple[int, int, bytes]] = []

    def __call__(
        self,
        archive: Archive,
        root: list[bytes],
        matcher: PatternMatcher | None = None,
        **options: object,
    ) -> ExtractStats:
        extractor = Extractor(
            archive.objects,
            matcher or PatternMatcher(),
            ExtractOptions(**options),  # type: ignore[arg-type]
            target=bytes(self.target),
            sink=self.out.extend,
            lister=self.listed.append,
            warn=self.warnings.append,
            progress=lambda done, total, path: self.progress.append((done, total, path)),
            window_bytes=128 * 1024,  # small: the prefetch window must wrap many times
            whole_file_bytes=self.whole_file_bytes,
        )
        return extractor.run(root)


@pytest.fixture
def archive() -> Archive:
    return Archive()


@pytest.fixture(params=["whole", "chunked"])
def run(tmp_path: Path, request: pytest.FixtureRequest) -> Run:
    """Small files written whole by workers (the default), or every file
    chunk by chunk by the writer: both paths must behave the same."""
    target = tmp_path / "out"
    target.mkdir()
    return Run(target, 1024 * 1024 if request.param == "whole" else -1)


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_files_dirs_symlinks_fifos_and_their_metadata(archive: Archive, run: Run) -> None:
    data = os.urandom(MiB)
    inner = [
        archive.file(b"big", data, mode=0o600),
        archive.file(b"empty", b"", mode=0o000),
        Entry(b"link", stat.S_IFLNK | 0o777, mtime=MTIME + 1, link_target=b"big"),
        Entry(b"fifo", stat.S_IFIFO | 0o640, mtime=MTIME + 2),
    ]
    root = archive.root([archive.dir(b"d", inner, mode=0o1750, xattrs={b"user.k": b"v"})])
    stats = run(archive, root)
    out = run.target
    assert (out / "d/big").read_bytes() == data
    assert stat.S_IMODE((out / "d/big").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "d/empty").stat().st_mode) == 0o000
    assert os.readlink(out / "d/link") == "big"
    assert os.lstat(out / "d/link").st_mtime_ns == MTIME + 1
    assert stat.S_ISFIFO((out / "d/fifo").lstat().st_mode)
    assert stat.S_IMODE((out / "d").stat().st_mode) == 0o1750
    # directory metadata comes after its contents: writing them did not change the mtime
    assert (out / "d").stat().st_mtime_ns == MTIME
    assert (out / "d/big").stat().st_mtime_ns == MTIME
    assert os.getxattr(out / "d", "user.k") == b"v"
    assert run.listed == [b"d", b"d/big", b"d/empty", b"d/fifo", b"d/link"]
    assert stats.items == 5 and stats.nbytes == MiB
    assert run.progress[-1] == (MiB, MiB, b"d/big")
    assert run.warnings == [] and run.out == b""


def test_zero_chunks_are_written_or_become_holes_with_sparse(
    archive: Archive, run: Run, tmp_path: Path
) -> None:
    data = b"x" * 4096 + bytes(8 * MiB) + b"y" * 4096 + bytes(4 * MiB)  # ends in a hole
    root = archive.root([archive.file(b"f", data)])
    run(archive, root)
    dense = (run.target / "f").stat()
    assert (run.target / "f").read_bytes() == data
    sparse_run = Run(tmp_path / "sparse")
    sparse_run.target.mkdir()
    sparse_run(archive, root, sparse=True)
    sparse = (sparse_run.target / "f").stat()
    assert (sparse_run.target / "f").read_bytes() == data
    assert sparse.st_size == len(data)
    assert dense.st_blocks * 512 >= 12 * MiB
    assert sparse.st_blocks * 512 < MiB


def test_hard_links_are_linked_and_a_lone_member_is_written(
    archive: Archive, run: Run, tmp_path: Path
) -> None:
    group = os.urandom(16)
    data = os.urandom(200_000)
    root = archive.root(
        [
            archive.file(b"a", data, hardlink_id=group),
            archive.dir(b"sub", [archive.file(b"b", data, hardlink_id=group)]),
            archive.file(b"c", data, hardlink_id=group),
        ]
    )
    run(archive, root)
    inodes = {(run.target / p).stat().st_ino for p in ("a", "sub/b", "c")}
    assert len(inodes) == 1
    assert (run.target / "c").stat().st_nlink == 3
    alone = Run(tmp_path / "alone")
    alone.target.mkdir()
    alone(archive, root, build_matcher([], ["sub/b"]))
    assert files_below(alone.target) == ["sub", "sub/b"]
    assert (alone.target / "sub/b").read_bytes() == data
    assert (alone.target / "sub/b").stat().st_nlink == 1


def test_stdout_writes_contents_once_per_hard_link_group(archive: Archive, run: Run) -> None:
    group = os.urandom(16)
    root = archive.root(
        [
            archive.file(b"a", b"first\n"),
            archive.file(b"b", b"linked\n" + bytes(70_000), hardlink_id=group),
            archive.file(b"c", b"linked\n" + bytes(70_000), hardlink_id=group),
            archive.dir(b"d", [archive.file(b"e", b"last\n")]),
        ]
    )
    run(archive, root, stdout=True)
    assert bytes(run.out) == b"first\n" + b"linked\n" + bytes(70_000) + b"last\n"
    assert files_below(run.target) == []


def test_dry_run_reads_everything_and_writes_nothing(archive: Archive, run: Run) -> None:
    root = archive.root([archive.dir(b"d", [archive.file(b"f", os.urandom(300_000))])])
    stats = run(archive, root, dry_run=True)
    assert files_below(run.target) == []
    assert run.listed == [b"d", b"d/f"]
    assert stats.nbytes == 300_000


def test_dry_run_still_detects_a_missing_chunk(archive: Archive, run: Run) -> None:
    broken = Entry(b"f", FILE | 0o644, size=10, chunks=[ChunkRef(b"\x01" * 32, 10)])
    stats = run(archive, archive.root([broken]), dry_run=True)
    (damage,) = stats.damaged
    assert damage.path == b"f" and damage.lost == [(0, 10)]
    assert damage.reasons == [f"Object {'01' * 32} is not in the repository."]
    assert files_below(run.target) == []


def test_a_corrupt_chunk_is_zero_filled_and_the_rest_extracted(archive: Archive, run: Run) -> None:
    good = archive.file(b"a", b"fine\n")
    # a chunk list pointing at an object of another size: what a tampered tree would say
    other = archive.objects.put_data(b"12345").id
    head = archive.objects.put_data(b"head").id
    bad = Entry(b"b", FILE | 0o644, size=14, chunks=[ChunkRef(head, 4), ChunkRef(other, 10)])
    later = archive.file(b"c", b"reached\n")
    stats = run(archive, archive.root([good, bad, later]))
    assert (run.target / "a").read_bytes() == b"fine\n"
    assert (run.target / "b").read_bytes() == b"head" + bytes(10)
    assert (run.target / "c").read_bytes() == b"reached\n"
    (damage,) = stats.damaged
    assert damage.path == b"b" and damage.lost == [(4, 14)]
    assert f"object {other.hex()} (DATA) has 5 bytes" in damage.reasons[0]
    assert damage.describe_lost() == "bytes 4-13 (10 bytes) lost, zero-filled"


def test_lost_ranges_are_merged_and_holes_with_sparse(archive: Archive, run: Run) -> None:
    data = os.urandom(4 * 65536)
    entry = archive.file(b"f", data)
    assert entry.chunks is not None
    lost = [ChunkRef(b"\x03" * 32, 65536), ChunkRef(b"\x04" * 32, 65536)]
    entry.chunks = [entry.chunks[0], *lost, entry.chunks[3]]
    stats = run(archive, archive.root([entry]), sparse=True)
    out = (run.target / "f").read_bytes()
    assert out == data[:65536] + bytes(2 * 65536) + data[3 * 65536 :]
    (damage,) = stats.damaged
    assert damage.lost == [(65536, 3 * 65536)] and len(damage.reasons) == 2
    st = (run.target / "f").stat()
    assert st.st_blocks * 512 < st.st_size  # the lost range is a hole


def test_an_error_is_reported_for_the_file_owning_the_chunk(archive: Archive, run: Run) -> None:
    """Small chunks are fetched in batches; a bad one must not be blamed on a neighbour."""
    files = [archive.file(b"f%03d" % i, b"content %d\n" % i) for i in range(50)]
    files[30].chunks = [ChunkRef(b"\x02" * 32, files[30].size)]
    reported: list[bytes] = []
    extractor = Extractor(
        archive.objects,
        PatternMatcher(),
        ExtractOptions(),
        target=bytes(run.target),
        warn=run.warnings.append,
        on_damage=lambda d: reported.append(d.path),
    )
    stats = extractor.run(archive.root(files))
    assert reported == [b"f030"] and [d.path for d in stats.damaged] == [b"f030"]
    assert (run.target / "f029").read_bytes() == b"content 29\n"
    assert (run.target / "f031").read_bytes() == b"content 31\n"
    assert (run.target / "f030").read_bytes() == bytes(files[30].size)


def test_an_unreadable_directory_is_named_and_its_siblings_extracted(
    archive: Archive, run: Run
) -> None:
    lost = Entry(b"lost", DIR | 0o755, mtime=MTIME, tree=[b"\x05" * 32])
    root = archive.root([archive.file(b"a", b"a\n"), lost, archive.file(b"z", b"z\n")])
    stats = run(archive, root)
    assert files_below(run.target) == ["a", "lost", "z"]
    (damage,) = stats.damaged
    assert damage.path == b"lost" and damage.contents_lost
    assert "0505" in damage.reasons[0]


def test_strip_components(archive: Archive, run: Run) -> None:
    root = archive.root(
        [
            archive.file(b"top", b"skipped: too few components\n"),
            archive.dir(b"a", [archive.dir(b"b", [archive.file(b"f", b"kept\n")])]),
        ]
    )
    run(archive, root, strip_components=1)
    assert files_below(run.target) == ["b", "b/f"]
    assert run.listed == [b"b", b"b/f"]
    assert strip_path(b"a/b/c", 2) == b"c"
    assert strip_path(b"a/b", 2) == b""


def test_implicit_directories_are_created_but_not_listed(archive: Archive, run: Run) -> None:
    implicit = archive.dir(b"home", [archive.file(b"f", b"x\n")], mode=0o700, implicit=True)
    run(archive, archive.root([implicit]))
    assert run.listed == [b"home/f"]
    assert (run.target / "home/f").read_bytes() == b"x\n"
    # implicit parents get nothing restored (Borg cannot either): today's mtime, umask mode
    assert (run.target / "home").stat().st_mtime_ns != MTIME


@pytest.mark.parametrize("name", [b"..", b".", b"", b"a/b", b"x\0y"])
def test_unsafe_names_are_refused(archive: Archive, run: Run, name: bytes) -> None:
    root = archive.root([archive.dir(b"d", [archive.file(name, b"evil\n")])])
    with pytest.raises(IntegrityError, match="unsafe entry name"):
        run(archive, root)
    assert files_below(run.target) in ([], ["d"])


def test_never_writes_through_a_symlink_it_created(
    archive: Archive, run: Run, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = archive.root(
        [
            archive.dir(b"a", [Entry(b"l", stat.S_IFLNK | 0o777, link_target=bytes(outside))]),
            archive.dir(b"b", [archive.dir(b"l", [archive.file(b"f", b"evil\n")], implicit=True)]),
        ]
    )
    run(archive, root, strip_components=1)
    assert list(outside.iterdir()) == []
    assert [str(w) for w in run.warnings] == [
        "b/l/f: makedirs: [Errno 40] a parent is a symlink created by extract"
    ]


def test_existing_files_are_replaced_and_write_errors_are_warnings(
    archive: Archive, run: Run
) -> None:
    (run.target / "old").write_bytes(b"previous content that is longer\n")
    (run.target / "link").symlink_to("/")
    blocked = run.target / "blocked"
    blocked.mkdir()
    (blocked / "keep").write_bytes(b"a non-empty directory where a file goes\n")
    root = archive.root(
        [
            archive.file(b"blocked", b"cannot be written\n"),
            archive.file(b"link", b"replaces the symlink, not its target\n"),
            archive.file(b"old", b"new\n"),
        ]
    )
    run(archive, root)
    assert (run.target / "old").read_bytes() == b"new\n"
    assert not (run.target / "link").is_symlink()
    assert (run.target / "link").read_bytes() == b"replaces the symlink, not its target\n"
    assert [str(w) for w in run.warnings] == [  # Borg's: the path extract opened
        f"blocked: open: [Errno 17] File exists: '{run.target / 'blocked'}'"
    ]
    assert (blocked / "keep").exists()


def test_size_mismatch_is_a_warning(archive: Archive, run: Run) -> None:
    entry = archive.file(b"f", b"12345")
    entry.size = 6
    run(archive, archive.root([entry]))
    assert [str(w) for w in run.warnings] == [
        "f: Size inconsistency detected: size 6, chunks size 5"
    ]


def test_patterns_select_items_and_directories_are_descended(archive: Archive, run: Run) -> None:
    root = archive.root(
        [
            archive.dir(
                b"src",
                [
                    archive.file(b"a.py", b"a\n"),
                    archive.file(b"b.txt", b"b\n"),
                    archive.dir(b"sub", [archive.file(b"c.py", b"c\n")]),
                ],
            )
        ]
    )
    matcher = build_matcher([parse_exclude_pattern("*.txt")], ["src"])
    run(archive, root, matcher)
    assert files_below(run.target) == ["src", "src/a.py", "src/sub", "src/sub/c.py"]
    assert matcher.get_unmatched_include_patterns() == []


def test_numeric_ids_and_owner_restore_as_root(archive: Archive, run: Run) -> None:
    if os.geteuid() != 0:
        entry = archive.file(b"f", b"x\n", uid=os.getuid(), gid=os.getgid())
        run(archive, archive.root([entry]))
        assert (run.target / "f").stat().st_uid == os.getuid()
        return
    entry = archive.file(b"f", b"x\n", uid=12345, gid=23456, user="root", group="root")
    run(archive, archive.root([entry]), restore=RestoreOptions(numeric_ids=True))
    st = (run.target / "f").stat()
    assert (st.st_uid, st.st_gid) == (12345, 23456)
    by_name = Run(run.target / "by-name")
    by_name.target.mkdir()
    by_name(archive, archive.root([entry]))
    st = (by_name.target / "f").stat()
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_a_deep_tree_does_not_hit_the_recursion_limit(archive: Archive, run: Run) -> None:
    entry = archive.file(b"leaf", b"deep\n")
    for _ in range(1500):
        entry = archive.dir(b"d", [entry])
    # a path of 1500 levels exceeds PATH_MAX: the walk must still complete (with warnings)
    run(archive, archive.root([entry]), dry_run=True)
    assert run.listed[-1] == b"/".join([b"d"] * 1500) + b"/leaf"
