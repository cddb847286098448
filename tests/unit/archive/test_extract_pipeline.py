"""The extract pipeline: workers write small files ahead, the writer reports in walk order.

What can break when work runs ahead on threads: the order of ``--list``
lines, warnings and damage reports; a problem blamed on the wrong file;
directory metadata restored before the workers are done writing into it;
memory growing with the archive instead of the window; an archive whose
names are not unique; an error in a worker that gets lost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from hoard.archive.extract import Damage, ExtractOptions, Extractor
from hoard.archive.items import ChunkRef, Entry, packb
from hoard.archive.patterns import PatternMatcher
from hoard.archive.tree import TREE_VERSION
from hoard.errors import HoardError, HoardWarning
from hoard.objects.store import ObjectStore
from hoard.objects.types import ObjectType

from .test_extract import DIR, MTIME, Archive, Run, files_below

KiB = 1024


@pytest.fixture
def archive() -> Archive:
    return Archive()


@pytest.fixture
def run(tmp_path: Path) -> Run:
    target = tmp_path / "out"
    target.mkdir()
    return Run(target)


def _tree(archive: Archive, n_dirs: int, n_files: int) -> tuple[list[bytes], list[bytes]]:
    """A root of ``n_dirs`` directories of ``n_files`` small files; the root
    and the walk order of the paths."""
    dirs, order = [], []
    for d in range(n_dirs):
        name = b"d%02d" % d
        order.append(name)
        files = []
        for f in range(n_files):
            files.append(archive.file(b"f%03d" % f, b"%d/%d\n" % (d, f)))
            order.append(name + b"/f%03d" % f)
        dirs.append(archive.dir(name, files, mode=0o750))
    return archive.root(dirs), order


def test_many_small_files_keep_walk_order_and_their_own_problems(
    archive: Archive, run: Run
) -> None:
    root, order = _tree(archive, 6, 70)
    blocked = run.target / "d02" / "f013"  # a non-empty directory where a file goes
    blocked.mkdir(parents=True)
    (blocked / "keep").write_bytes(b"x")
    reported: list[bytes] = []
    extractor = Extractor(
        archive.objects,
        PatternMatcher(),
        ExtractOptions(),
        target=bytes(run.target),
        lister=run.listed.append,
        warn=run.warnings.append,
        on_damage=lambda d: reported.append(d.path),
    )
    stats = extractor.run(root)
    assert run.listed == order
    assert [str(w).split(":")[0:2] for w in run.warnings] == [["d02/f013", " open"]]
    assert reported == [] and stats.items == len(order)
    for d in range(6):
        for f in range(70):
            if (d, f) != (2, 13):
                assert (run.target / f"d{d:02d}/f{f:03d}").read_bytes() == b"%d/%d\n" % (d, f)
        st = (run.target / f"d{d:02d}").stat()
        assert st.st_mtime_ns == MTIME  # restored after the workers wrote into it
        assert st.st_mode & 0o777 == 0o750


def test_a_lost_chunk_is_reported_for_its_file_in_walk_order(archive: Archive, run: Run) -> None:
    files = [archive.file(b"f%03d" % i, b"content %d\n" % i) for i in range(200)]
    for i in (17, 150):
        files[i].chunks = [ChunkRef(bytes([i]) * 32, files[i].size)]
    events: list[str] = []
    extractor = Extractor(
        archive.objects,
        PatternMatcher(),
        ExtractOptions(),
        target=bytes(run.target),
        lister=lambda p: events.append(f"list {p.decode()}"),
        warn=run.warnings.append,
        on_damage=lambda d: events.append(f"damage {d.path.decode()}"),
    )
    extractor.run(archive.root(files))
    assert events.index("damage f017") == events.index("list f017") + 1
    assert events.index("damage f150") == events.index("list f150") + 1
    assert [e for e in events if e.startswith("damage")] == ["damage f017", "damage f150"]
    assert (run.target / "f016").read_bytes() == b"content 16\n"
    assert (run.target / "f151").read_bytes() == b"content 151\n"


def _malformed_root(archive: Archive, entries: list[Entry]) -> list[bytes]:
    """A root tree object with the entries as given (duplicates, any order):
    ``store_directory`` would sort them, but a damaged archive need not be."""
    data = packb({"v": TREE_VERSION, "e": [e.to_msgpack_map() for e in entries]})
    return [archive.objects.put(ObjectType.TREE, data)]


def test_a_duplicate_name_is_extracted_as_without_running_ahead(
    archive: Archive, tmp_path: Path
) -> None:
    entries = [
        *(archive.file(b"a%02d" % i, b"a\n") for i in range(30)),
        archive.file(b"dup", b"a file, then a directory of the same name\n"),
        archive.dir(b"dup", [archive.file(b"x", b"inside\n")]),
        archive.file(b"twice", b"first\n"),
        archive.file(b"twice", b"second\n"),
        archive.file(b"z", b"last\n"),
    ]
    root = _malformed_root(archive, entries)
    results = []
    for whole in (1024 * 1024, -1):  # ahead (then drained), and never ahead
        target = tmp_path / f"out{whole}"
        target.mkdir()
        one = Run(target, whole)
        one(archive, root)
        results.append((files_below(target), [str(w) for w in one.warnings], one.listed))
        assert (target / "dup" / "x").read_bytes() == b"inside\n"  # as Borg: the last wins
        assert (target / "twice").read_bytes() == b"second\n"
    assert results[0] == results[1]


class CountingStore:
    """The real object store, counting the content bytes handed out."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.fetched = 0

    def get(self, type_: ObjectType, id_: bytes) -> bytes:
        return self.store.get(type_, id_)

    def get_many(self, type_: ObjectType, ids: Sequence[bytes]) -> list[bytes | HoardError]:
        outcomes = self.store.get_many(type_, ids)
        if type_ is ObjectType.DATA:
            self.fetched += sum(len(o) for o in outcomes if isinstance(o, bytes))
        return outcomes


@pytest.mark.parametrize("window", [256 * KiB, 1024 * KiB])
def test_bytes_fetched_ahead_stay_within_the_window(
    archive: Archive, run: Run, window: int
) -> None:
    chunk = 64 * KiB
    data = os.urandom(12 * 1024 * KiB)
    root = archive.root([archive.file(b"big", data)])
    counting = CountingStore(archive.objects)
    ahead: list[int] = []
    extractor = Extractor(
        counting,
        PatternMatcher(),
        ExtractOptions(),
        target=bytes(run.target),
        warn=run.warnings.append,
        progress=lambda done, total, path: ahead.append(counting.fetched - done),
        window_bytes=window,
    )
    extractor.run(root)
    assert (run.target / "big").read_bytes() == data
    assert len(ahead) == len(data) // chunk
    assert max(ahead) <= window + chunk
    assert max(ahead) >= window // 2  # it does read ahead


class FailingStore(CountingStore):
    """A store whose reads of data break (not damage: a failure to report)."""

    def get_many(self, type_: ObjectType, ids: Sequence[bytes]) -> list[bytes | HoardError]:
        if type_ is ObjectType.DATA:
            raise RuntimeError("the storage went away")
        return super().get_many(type_, ids)


@pytest.mark.parametrize("size", [100, 3 * 1024 * KiB], ids=["whole", "chunked"])
def test_an_error_in_a_worker_ends_the_run(archive: Archive, run: Run, size: int) -> None:
    root = archive.root([archive.file(b"f", os.urandom(size)), archive.file(b"g", b"g\n")])
    warnings: list[HoardWarning] = []
    damage: list[Damage] = []
    extractor = Extractor(
        FailingStore(archive.objects),
        PatternMatcher(),
        ExtractOptions(),
        target=bytes(run.target),
        warn=warnings.append,
        on_damage=damage.append,
    )
    with pytest.raises(RuntimeError, match="storage went away"):
        extractor.run(root)
    assert warnings == [] and damage == []


def test_trees_fetched_ahead_keep_damage_reports(archive: Archive, run: Run) -> None:
    lost = [
        Entry(b"lost%d" % i, DIR | 0o755, mtime=MTIME, tree=[bytes([i]) * 32]) for i in range(3)
    ]
    kept = [archive.dir(b"kept%d" % i, [archive.file(b"f", b"%d\n" % i)]) for i in range(3)]
    root = archive.root([*kept, *lost])
    stats = run(archive, root)
    assert [d.path for d in stats.damaged] == [b"lost0", b"lost1", b"lost2"]
    assert all(d.contents_lost for d in stats.damaged)
    assert (run.target / "kept2" / "f").read_bytes() == b"2\n"
