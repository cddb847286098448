"""The file pool (worker processes reading small files) against the reference path.

The reference is the walker thread reading every file itself (no pool). For
the same tree, the pooled walk must give the same archive: the same root
tree ids (an id is the keyed hash of a directory's serialised entries, so
equal ids mean equal items, metadata and chunk lists all the way down), the
same ``--list`` lines in the same order, the same figures. Real worker
processes, a real encrypted object store; the pool is forced on from the
first file with tiny batches so that many batches are in flight at once.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from hoard.archive import filepool
from hoard.archive.chunker import ChunkerParams, make_chunker
from hoard.archive.create import Checkpointing, CreateOptions, Creator
from hoard.archive.filepool import FilePool
from hoard.archive.filework import FileJob, ReaderSetup, SealedChunk
from hoard.archive.items import ZERO_ID, ChunkRef, Entry
from hoard.archive.metadata import ReadOptions
from hoard.archive.patterns import Decision, PatternMatcher
from hoard.archive.pipeline import ChunkPipeline
from hoard.archive.record import ArchiveStats
from hoard.archive.tree import walk
from hoard.errors import (
    BackupFileNotFoundWarning,
    BackupInterrupted,
    FileReaderFailed,
    HoardWarning,
)
from hoard.objects.compression import parse_compression
from hoard.objects.keys import EncryptionMode, KeyMaterial
from hoard.objects.store import ObjectStore, PutResult
from hoard.objects.types import ObjectType
from hoard.repository.check import DAMAGE, ORPHAN_PACK, check_repository
from hoard.repository.indexnames import list_index_names
from hoard.repository.repository import Repository
from hoard.storage.local import LocalStorage
from hoard.storage.memory import MemoryStorage

PARAMS = ChunkerParams.parse("10,14,12,4095")  # 1-16 KiB chunks: files of several chunks


@pytest.fixture(scope="module")
def key() -> KeyMaterial:
    return KeyMaterial.generate(EncryptionMode.parse("repokey"), os.urandom(32))


def _store(key: KeyMaterial) -> ObjectStore:
    """A repository in memory: the workers send their chunks sealed to this process."""
    repository = Repository.create(MemoryStorage(), key_mode="repokey-chacha20-poly1305")
    return ObjectStore(repository, key, parse_compression("lz4"))


def _local_store(key: KeyMaterial, root: Path, pack_size: int = 1 << 20) -> ObjectStore:
    """A repository in a directory: the workers store into packs of their own."""
    repository = Repository.create(
        LocalStorage(root), key_mode="repokey-chacha20-poly1305", pack_size=pack_size
    )
    return ObjectStore(repository, key, parse_compression("lz4"))


def _reopened(store: ObjectStore) -> ObjectStore:
    """The same repository as a new client sees it: only what index files name."""
    storage = store.repository.storage
    return ObjectStore(Repository.open(storage, None), store.key, store.compression)


@dataclass
class Run:
    root: list[bytes]
    reports: list[tuple[str, bytes]]
    warnings: list[HoardWarning]
    stats: ArchiveStats
    store: ObjectStore


def _backup(
    key: KeyMaterial,
    paths: list[bytes],
    *,
    pooled: bool,
    matcher: PatternMatcher | None = None,
    interrupted: Callable[[], bool] = lambda: False,
    checkpoints: Checkpointing | None = None,
    store: ObjectStore | None = None,
    batch_files: int = 3,
    max_inflight_bytes: int = filepool.DEFAULT_MAX_INFLIGHT_BYTES,
) -> Run:
    store = store or _store(key)
    options = CreateOptions()
    pipeline = ChunkPipeline(store)
    setup = ReaderSetup(key, store.compression, PARAMS, ReadOptions(), sparse=True)
    pool = (
        FilePool(
            store,
            setup,
            workers=2,
            batch_files=batch_files,
            start_after=0,
            max_inflight_bytes=max_inflight_bytes,
        )
        if pooled
        else None
    )
    reports: list[tuple[str, bytes]] = []
    warnings: list[HoardWarning] = []
    creator = Creator(
        store,
        pipeline,
        make_chunker(PARAMS, key.chunker_key),
        matcher or PatternMatcher(),
        options,
        report=lambda status, path: reports.append((status, path)),
        warn=warnings.append,
        interrupted=interrupted,
        checkpoints=checkpoints,
        file_pool=pool,
    )
    try:
        root = creator.run(paths)
    finally:
        if pool is not None:
            pool.close()
        pipeline.close()
    return Run(root, reports, warnings, creator.stats, store)


def _tree(base: Path) -> Path:
    """Small files of every kind the pool takes, and the kinds it leaves to the walker."""
    top = base / "tree"
    for d in range(6):
        sub = top / f"d{d}" / "inner"
        sub.mkdir(parents=True)
        for f in range(7):
            (sub / f"f{f}.txt").write_bytes(os.urandom(37 * f + d) + b"text " * (f * 300))
        (top / f"d{d}" / "empty").write_bytes(b"")
    (top / "multi.bin").write_bytes(os.urandom(200_000))  # many chunks
    (top / "same1").write_bytes(b"same content " * 1000)  # duplicates across batches
    (top / "same2").write_bytes(b"same content " * 1000)
    with open(top / "sparse.img", "wb") as f:  # data, a hole, data
        f.write(os.urandom(5000))
        f.seek(3 * 1024 * 1024)
        f.write(b"end")
    (top / "zeros").write_bytes(bytes(100_000))
    os.setxattr(top / "same1", "user.note", b"kept")
    os.symlink("same1", top / "link")
    os.link(top / "same2", top / "hardlink")  # two links: read on the walker thread
    os.mkfifo(top / "fifo")
    (top / "emptydir").mkdir()
    return top


def _source(apath: bytes) -> bytes:
    """The bytes of the file at archive path ``apath`` (an absolute path backed up)."""
    return (Path("/") / os.fsdecode(apath)).read_bytes()


def _regular_files(top: Path) -> int:
    """Regular files as ``Number of files`` counts them: hard links once."""
    inodes = {p.lstat().st_ino for p in top.rglob("*") if p.is_file() and not p.is_symlink()}
    return len(inodes)


def _content(store: ObjectStore, chunks: list[tuple[bytes, int]]) -> bytes:
    return b"".join(
        bytes(size) if id_ == ZERO_ID else store.get(ObjectType.DATA, id_) for id_, size in chunks
    )


def _rooted(tree: Path) -> bytes:
    """``tree`` with Borg's slash-dot: archived as ``tree/...``, without the
    implicit parents above it (/tmp and the pytest directories), whose
    timestamps other processes change between two backups."""
    return os.fsencode(tree.parent) + b"/./" + os.fsencode(tree.name)


def test_the_pool_writes_the_archive_the_reference_path_writes(
    key: KeyMaterial, tmp_path: Path
) -> None:
    tree = _tree(tmp_path)
    top = _rooted(tree)
    reference = _backup(key, [top], pooled=False)
    pooled = _backup(key, [top], pooled=True)
    assert pooled.root == reference.root
    assert pooled.reports == reference.reports
    assert pooled.warnings == reference.warnings == []
    assert pooled.stats == reference.stats
    assert pooled.stats.nfiles == _regular_files(tree) == 53
    for item in walk(pooled.store, pooled.root):  # the workers' blobs open here
        entry = item.entry
        if entry.is_reg and entry.chunks:
            chunks = [(c.id, c.size) for c in entry.chunks]
            source = tmp_path / os.fsdecode(item.path)  # archived relative to tmp_path
            assert _content(pooled.store, chunks) == source.read_bytes()


def test_mixed_runs_and_one_big_batch_agree_too(key: KeyMaterial, tmp_path: Path) -> None:
    top = _rooted(_tree(tmp_path))
    reference = _backup(key, [top], pooled=False)
    one_batch = _backup(key, [top], pooled=True, batch_files=1000)
    assert one_batch.root == reference.root and one_batch.reports == reference.reports


class _DeletingMatcher(PatternMatcher):
    """Deletes ``victim`` when the walk decides about ``trigger``: the victim was
    listed and handed to the pool, and is gone when its worker opens it."""

    def __init__(self, trigger: bytes, victim: Path) -> None:
        super().__init__()
        self.trigger, self.victim = trigger, victim

    def decide(self, path: str | bytes) -> Decision:
        if path == self.trigger and self.victim.exists():
            self.victim.unlink()
        return super().decide(path)


def test_a_file_gone_before_its_worker_opens_it_is_a_warning_in_walk_order(
    key: KeyMaterial, tmp_path: Path
) -> None:
    top = tmp_path / "t"
    top.mkdir()
    for name in "abcd":
        (top / name).write_bytes(name.encode() * 10)
    matcher = _DeletingMatcher(os.fsencode(top / "c"), top / "b")
    run = _backup(key, [os.fsencode(top)], pooled=True, matcher=matcher, batch_files=100)
    statuses = [(s, os.path.basename(p)) for s, p in run.reports]
    assert statuses == [("A", b"a"), ("E", b"b"), ("A", b"c"), ("A", b"d"), ("d", b"t")]
    assert len(run.warnings) == 1 and isinstance(run.warnings[0], BackupFileNotFoundWarning)
    inside = os.fsencode(top).lstrip(b"/") + b"/"
    names = sorted(w.path.removeprefix(inside) for w in walk(run.store, run.root))
    assert [n for n in names if b"/" not in n and len(n) == 1] == [b"a", b"c", b"d"]
    assert run.stats.nfiles == 3


def test_ctrl_c_with_files_in_the_pool_stores_a_checkpoint_of_the_done_ones(
    key: KeyMaterial, tmp_path: Path
) -> None:
    top = os.fsencode(_tree(tmp_path))
    seen: list[int] = []
    stored: list[list[bytes]] = []
    store = _store(key)

    def interrupted() -> bool:
        seen.append(1)
        return len(seen) > 30

    with pytest.raises(BackupInterrupted):
        _backup(
            key,
            [top],
            pooled=True,
            interrupted=interrupted,
            checkpoints=Checkpointing(0, lambda root, _stats: stored.append(root)),
            store=store,
        )
    assert len(stored) == 1
    files = [w for w in walk(store, stored[0]) if w.entry.is_reg]
    assert files  # what was done before the Ctrl-C
    for item in files:
        chunks = [(c.id, c.size) for c in item.entry.chunks or []]
        assert _content(store, chunks) == _source(item.path)


def test_a_dead_worker_fails_the_backup_with_a_clear_error(
    key: KeyMaterial, tmp_path: Path
) -> None:
    store = _store(key)
    setup = ReaderSetup(key, store.compression, PARAMS, ReadOptions(), sparse=True)
    pool = FilePool(store, setup, workers=1, batch_files=1, start_after=0)
    path = tmp_path / "f"
    path.write_bytes(b"data")
    job = FileJob(os.fsencode(path), b"f", os.lstat(path))
    try:
        assert pool.submit(job).result().outcome.entry is not None
        for child in multiprocessing.active_children():
            os.kill(child.pid or 0, signal.SIGKILL)
            child.join()
        with pytest.raises(FileReaderFailed, match="A file reader process of create failed"):
            pool.submit(replace(job)).result()  # refused at once, or the batch fails
    finally:
        pool.close(cancel=True)


def test_only_small_files_after_the_first_ones_go_to_the_pool(key: KeyMaterial) -> None:
    store = _store(key)
    setup = ReaderSetup(key, store.compression, PARAMS, ReadOptions(), sparse=True)
    pool = FilePool(store, setup, workers=1, start_after=2, small_file_limit=100)
    assert [pool.takes(10), pool.takes(10), pool.takes(10), pool.takes(101)] == [
        False,
        False,
        True,
        False,
    ]
    pool.close()


def test_what_crosses_to_and_from_the_workers_pickles_to_equal_objects() -> None:
    """Jobs, chunks and entries have their own ``__reduce__`` (speed): every
    field must survive, defaults and the unhashable ones included."""
    st = os.lstat(".")
    job = FileJob(b"/a/b", b"b", st, read=False)
    chunk = SealedChunk(b"i" * 32, 7, b"sealed")
    hole = SealedChunk(ZERO_ID, 4096, None)
    entry = Entry(
        b"b", 0o100644, uid=1, gid=2, user="u", group="g", mtime=3, ctime=4, atime=5,
        birthtime=6, size=7, chunks=[ChunkRef(b"c" * 32, 7)], tree=[b"t"], link_target=b"l",
        hardlink_id=b"h", rdev=8, xattrs={b"user.x": b"y"}, flags=9, implicit=True,
        chunks_healthy=[ChunkRef(b"d" * 32, 7)],
    )  # fmt: skip
    for obj in (chunk, hole, entry, Entry(b"plain", 0o40755)):
        assert pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)) == obj
    sent = pickle.loads(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
    assert (sent.path, sent.name, sent.read) == (job.path, job.name, job.read)
    assert (sent.st.st_mode, sent.st.st_ino, sent.st.st_size) == (
        st.st_mode,
        st.st_ino,
        st.st_size,
    )
    stored = PutResult(b"i" * 32, 7, 5, True)
    assert pickle.loads(pickle.dumps(stored, protocol=pickle.HIGHEST_PROTOCOL)) == stored


def test_workers_storing_their_own_packs_write_the_archive_of_the_reference_path(
    key: KeyMaterial, tmp_path: Path
) -> None:
    """Same items, same chunks, same figures; the workers' packs and index files
    are in the repository, and a new client reads every file from them."""
    tree = _tree(tmp_path)
    top = _rooted(tree)
    reference = _backup(key, [top], pooled=False)
    store = _local_store(key, tmp_path / "repo")
    pooled = _backup(key, [top], pooled=True, store=store)
    store.flush()
    assert pooled.root == reference.root
    assert pooled.reports == reference.reports
    assert pooled.stats == reference.stats
    storage = store.repository.storage
    assert len(list_index_names(storage)) == 3  # one per worker, one of this process
    assert check_repository(storage).findings == []
    fresh = _reopened(store)
    for item in walk(fresh, pooled.root):
        entry = item.entry
        if entry.is_reg and entry.chunks:
            chunks = [(c.id, c.size) for c in entry.chunks]
            assert _content(fresh, chunks) == (tmp_path / os.fsdecode(item.path)).read_bytes()


def test_every_checkpoint_flushes_the_workers_packs_and_index_files_first(
    key: KeyMaterial, tmp_path: Path
) -> None:
    """A checkpoint taken while the workers hold unflushed packs: when its record
    would be stored (after the flush ``store_archive`` does), a new client finds
    every chunk and tree it names."""
    tree = _tree(tmp_path)
    store = _local_store(key, tmp_path / "repo")
    checked: list[int] = []

    def checkpoint(root: list[bytes], _stats: ArchiveStats) -> None:
        store.flush()  # what Repository.store_archive does before the record
        fresh = _reopened(store)
        files = 0
        for item in walk(fresh, root):
            for chunk in item.entry.chunks or []:
                assert chunk.id == ZERO_ID or fresh.contains(chunk.id)
            files += item.entry.is_reg
        checked.append(files)

    _backup(
        key, [_rooted(tree)], pooled=True, store=store, checkpoints=Checkpointing(1e-9, checkpoint)
    )
    assert len(checked) > 3 and checked[-1] > 0
    assert len(list_index_names(store.repository.storage)) > 3  # workers flushed each time


def test_a_worker_killed_with_packs_not_indexed_fails_every_later_record(
    key: KeyMaterial, tmp_path: Path
) -> None:
    """Packs a dead worker stored after its last flush are garbage (no index file
    names them); a flush (so a record) fails instead of naming their chunks, and
    the repository has no damage: a new backup of the same files completes."""
    store = _local_store(key, tmp_path / "repo", pack_size=4096)
    setup = ReaderSetup(key, store.compression, PARAMS, ReadOptions(), sparse=True)
    pool = FilePool(store, setup, workers=1, batch_files=1, start_after=0, scratch=tmp_path)
    paths = []
    for n in range(3):
        paths.append(tmp_path / f"f{n}")
        paths[-1].write_bytes(os.urandom(6000))  # a pack of its own
    try:
        for path in paths:
            job = FileJob(os.fsencode(path), path.name.encode(), os.lstat(path))
            assert pool.submit(job).result().outcome.entry is not None
        for child in multiprocessing.active_children():
            os.kill(child.pid or 0, signal.SIGKILL)
            child.join()
        with pytest.raises(FileReaderFailed, match="A file reader process of create failed"):
            store.flush()
    finally:
        pool.close(cancel=True)
    findings = check_repository(store.repository.storage).findings
    assert findings and {f.kind for f in findings} == {ORPHAN_PACK}
    assert not [f for f in findings if f.kind in DAMAGE]
    again = _backup(key, [os.fsencode(p) for p in paths], pooled=False, store=_reopened(store))
    assert again.stats.nfiles == 3
    assert not list(tmp_path.glob("known-ids.*"))  # the pool removed its view


def test_index_files_adopted_between_records_change_nothing_in_the_archive(
    key: KeyMaterial, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the workers' index files adopted every few blobs (a backup of millions
    of small files does it every ADOPT_EVERY), the archive is the reference's."""
    monkeypatch.setattr(filepool, "ADOPT_EVERY", 5)
    top = _rooted(_tree(tmp_path))
    reference = _backup(key, [top], pooled=False)
    store = _local_store(key, tmp_path / "repo")
    pooled = _backup(key, [top], pooled=True, store=store, max_inflight_bytes=1)  # one at a time
    store.flush()
    assert (pooled.root, pooled.stats) == (reference.root, reference.stats)
    assert len(list_index_names(store.repository.storage)) > 5
    assert check_repository(store.repository.storage).findings == []


def test_a_scratch_directory_that_cannot_be_made_falls_back_to_the_temporary_one(
    key: KeyMaterial, tmp_path: Path
) -> None:
    """The KnownIds file goes to the temporary directory then; the workers still
    store their own packs, and the file is gone after the pool closes."""
    blocked = tmp_path / "not-a-directory"
    blocked.write_bytes(b"")
    store = _local_store(key, tmp_path / "repo")
    setup = ReaderSetup(key, store.compression, PARAMS, ReadOptions(), sparse=True)
    pool = FilePool(store, setup, workers=1, batch_files=1, start_after=0, scratch=blocked)
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3000))
    try:
        result = pool.submit(FileJob(os.fsencode(path), b"f", os.lstat(path))).result()
        assert result.results and result.results[0].new
        known = Path(tempfile.gettempdir()) / f"known-ids.{os.getpid()}"
        assert known.exists()
    finally:
        pool.close()
    assert not known.exists()
    assert len(list_index_names(store.repository.storage)) == 1  # the worker's
