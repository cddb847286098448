"""An interrupt matrix: SIGINT and SIGKILL at many points of ``hoard create``.

One repository is used the way a user would: ``create --checkpoint-interval 1
REPO::run-N src`` is started again and again and interrupted by SIGINT
(Ctrl-C), SIGKILL, or a SIGINT followed by a SIGKILL. A point is a delay from
the process start (interpreter start-up, repository open) or from the moment
hoard opens a given source path (``/proc/PID/fd``): the 64 MiB file, the
128 MiB file, a directory of small files, the last directory, and just after
it (the final commit). Hoard reads ~200 MB in well under a second here, so
fixed delays alone would mostly miss the file phases. Before each run every
file's mtime is moved, so each run reads the whole tree again (the files
cache would otherwise skip it once a run finished) while its chunks are
already stored.

After each interruption, :func:`check_structure` verifies the repository
through hoard's Python API (no ``hoard.commands``): every pack parses, every
(non-superseded) index file decodes and each of its entries points at a
record in an existing pack with the same id, type and length, and every new
archive record (checkpoints included) decrypts and all its trees and data
chunks are present. No lock record may be left that is not stale, and
``hoard list --consider-checkpoints`` must work. A final uninterrupted
create then finishes, sends little, and extracts equal to the source.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hoard.archive.catalog import load_records
from hoard.archive.filepool import SMALL_FILE_LIMIT
from hoard.archive.items import ZERO_ID
from hoard.archive.record import ArchiveRecord
from hoard.archive.tree import walk
from hoard.errors import IntegrityError
from hoard.objects.store import ObjectStore
from hoard.repository.indexfile import IndexFile
from hoard.repository.indexnames import index_name_from_path
from hoard.repository.lock import (
    DEFAULT_STALE_AFTER,
    HostIdentity,
    list_locks,
    lock_names,
    stale_reason,
    utc_now,
)
from hoard.repository.pack import parse_pack
from tests.cli.conftest import HOARD, Hoard
from tests.cli.test_create import open_store
from tests.cli.trees import compare_trees, make_big_file

MiB = 1024 * 1024
SMALL_FILES = 3000
BIG_SIZES = {"big-a": 64 * MiB, "big-b": 128 * MiB}
LAST_SIZE = 12 * SMALL_FILE_LIMIT  # 48 MiB, far above the pool's limit: read by the walker
INT, KILL, BOTH = "SIGINT", "SIGKILL", "SIGINT+SIGKILL"


START = ""
"""Phase of a point that is only a delay from the start of the process."""


@dataclass(frozen=True)
class Point:
    phase: str
    """START, or the source path (below ``src``) whose opening starts the delay."""
    delay: float
    how: str


# Walk order is by name: big-a, big-b, then d00..d29 (small files), then the commit.
POINTS = [
    Point(START, 0.05, INT),  # interpreter start-up
    Point(START, 0.12, KILL),
    Point(START, 0.2, INT),  # repository open, lock, caches
    Point(START, 0.25, KILL),
    Point("big-a", 0.0, INT),
    Point("big-a", 0.0, KILL),
    Point("big-a", 0.05, BOTH),
    Point("big-a", 0.1, KILL),
    Point("big-a", 0.1, INT),
    Point("big-b", 0.0, KILL),
    Point("big-b", 0.05, INT),
    Point("big-b", 0.15, INT),
    Point("big-b", 0.1, BOTH),
    Point("d00", 0.0, INT),
    Point("d03", 0.0, KILL),
    Point("d10", 0.0, INT),
    Point("d15", 0.0, BOTH),
    Point("d20", 0.0, KILL),
    Point("d29", 0.0, INT),  # the last directory
    Point("d29", 0.02, KILL),
    Point("d29", 0.05, INT),  # the final commit (or done)
    Point("d29", 0.08, BOTH),
    Point("d29", 0.1, KILL),
    Point("big-b", 0.1, KILL),  # last: the final create finds this SIGKILL's lock record
]


def make_source(src: Path) -> int:
    """SMALL_FILES small files in 30 directories, the large random files and
    d29's last file; total bytes."""
    total = 0
    for i in range(SMALL_FILES):
        sub = src / f"d{i % 30:02}"
        sub.mkdir(parents=True, exist_ok=True)
        size = (i * 7919) % 4000
        (sub / f"f{i:05}").write_bytes(os.urandom(size))
        total += size
    for name, size in BIG_SIZES.items():
        make_big_file(src / name, size)
        total += size
    # The last directory's small files go to the workers in a few milliseconds,
    # less than one poll of ``reached`` may take; a big file last in the walk
    # keeps the walker in d29 long enough to be seen (tens of milliseconds to
    # chunk and hash). One random MiB over and over: a few unique chunks, so
    # the final backup, which may be the first to store it, stays small.
    (src / "d29" / "zz-last").write_bytes(os.urandom(MiB) * (LAST_SIZE // MiB))
    return total + LAST_SIZE


def touch_all(src: Path, when: float) -> None:
    """New mtimes for every file, so the next run cannot trust its files cache."""
    for path in src.rglob("*"):
        if path.is_file():
            os.utime(path, (when, when))


def repo_size(repo: Path) -> int:
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())


def check_structure(store: ObjectStore, checked: set[bytes]) -> list[ArchiveRecord]:
    """Assert the repository is consistent; returns the archive records.

    Archive records are immutable, so only those not in ``checked`` are
    walked (their ids are added to it).
    """
    repository = store.repository
    storage = repository.storage
    packs: dict[bytes, dict[bytes, tuple[int, int, int]]] = {}
    for info in storage.list("packs/"):
        name = info.name.rsplit("/", 1)[-1]
        entries = parse_pack(storage.load(info.name), info.name)
        packs[bytes.fromhex(name)] = {e.id: (e.offset, e.type, e.length) for e in entries}
    indexes: dict[str, IndexFile] = {}
    for info in storage.list("index/"):
        name = index_name_from_path(info.name)
        assert name is not None, f"stray name {info.name}"
        indexes[name] = IndexFile.decode(name, storage.load(info.name))
    superseded = {s for index in indexes.values() for s in index.superseded}
    for name, index in indexes.items():
        if name in superseded:
            continue
        for entry in index.entries:
            pack_name = index.packs[int(entry["pack"])]
            assert pack_name in packs, f"index {name} names a missing pack {pack_name.hex()}"
            blob_id = entry.tobytes()[:32]  # key0 (big-endian) and rest: the id's bytes
            found = packs[pack_name].get(blob_id)
            assert found is not None, f"index {name}: {blob_id.hex()} not in its pack"
            assert found == (int(entry["offset"]), int(entry["type"]), int(entry["length"]))
    records = load_records(store)
    for record in records:
        if record.id in checked:
            continue
        for walked in walk(store, record.root):  # decrypts every tree object
            for chunk in walked.entry.chunks or ():
                if chunk.id != ZERO_ID:
                    assert repository.contains(chunk.id), (record.name, walked.path)
        checked.add(record.id)
    return records


def blocking_locks(store: ObjectStore) -> list[str]:
    """Lock records that would block another client (not stale)."""
    storage = store.repository.storage
    here = HostIdentity.current()
    now = utc_now()
    return [
        r.describe()
        for r in list_locks(storage)
        if stale_reason(r, now, DEFAULT_STALE_AFTER, here) is None
    ]


def reached(proc: subprocess.Popen[bytes], target: Path, timeout: float = 60) -> bool:
    """Wait until ``proc`` or one of its children (the file pool's workers) has
    ``target``, something below it or something after it in walk order open;
    False if it ended first.

    "After" counts because the workers open a small file for well under a
    millisecond: a poll can miss every file of one directory and see the next.
    """
    deadline = time.monotonic() + timeout
    top = target.parent
    while proc.poll() is None:
        assert time.monotonic() < deadline, f"{target} not opened within {timeout} s"
        fds = [fd for pid in [proc.pid, *children(proc.pid)] for fd in list_fds(pid_fds(pid))]
        for fd in fds:
            with contextlib.suppress(OSError):  # closed meanwhile
                path = Path(os.readlink(fd))
                if top in path.parents and path.relative_to(top).parts[0] >= target.name:
                    return True
        time.sleep(0.001)
    return False


def pid_fds(pid: int) -> Path:
    return Path(f"/proc/{pid}/fd")


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the file pool's workers)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def list_fds(fds: Path) -> list[Path]:
    try:
        return list(fds.iterdir())
    except OSError:  # the process ended
        return []


def interrupt(
    hoard: Hoard, tmp_path: Path, repo: Path, n: int, point: Point
) -> tuple[int, str, bool, bool]:
    """Run ``create run-N`` and interrupt it.

    Returns the exit code, stderr, whether the phase was reached and whether
    the process was still alive when signalled.
    """
    proc = subprocess.Popen(
        [HOARD, "create", "--checkpoint-interval", "1", f"{repo}::run-{n}", "src"],
        env=hoard.env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    hit = point.phase == START or reached(proc, tmp_path / "src" / point.phase)
    time.sleep(point.delay)
    alive = proc.poll() is None
    if point.how in (INT, BOTH):
        proc.send_signal(signal.SIGINT)
    if point.how == BOTH:
        time.sleep(0.1)
    if point.how in (KILL, BOTH):
        proc.kill()
    _, err = proc.communicate(timeout=120)
    rc, text = proc.returncode, err.decode("utf-8", "replace")
    if not alive or rc == 0:  # finished before the signal, or took it in the final commit
        assert rc == 0, (n, point, text)
    elif rc == 2:  # Ctrl-C in the backup: a checkpoint, Borg's message
        assert point.how in (INT, BOTH) and text.endswith("Error: Got Ctrl-C / SIGINT.\n"), text
    elif rc == 128 + signal.SIGINT:  # Ctrl-C before the backup began (start-up): Borg's 130
        assert point.how in (INT, BOTH), (n, point, text)
    elif rc == -signal.SIGINT:  # in the interpreter's start-up (a traceback) or shutdown (silent)
        assert point.how in (INT, BOTH), (n, point, text)
        assert "KeyboardInterrupt" in text or not text, (n, point, text)
    else:
        assert point.how in (KILL, BOTH) and rc == -signal.SIGKILL, (n, point, rc, text)
    return rc, text, hit, alive


def test_interrupt_matrix(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    total = make_source(src)
    checked: set[bytes] = set()
    outcomes: list[tuple[Point, int, bool]] = []
    stale_left = 0
    for n, point in enumerate(POINTS):
        touch_all(src, 1_600_000_000 + n)
        rc, text, hit, alive = interrupt(hoard, tmp_path, repo, n, point)
        outcomes.append((point, rc, alive))
        # Every run gets past the lock of the one before (stale after a SIGKILL) and reads.
        assert hit, (n, point, "the phase was never reached", rc)
        store = open_store(hoard, repo)
        names = {r.name for r in check_structure(store, checked)}
        if rc == 0 or (rc == -signal.SIGINT and not text):  # done; SIGINT at interpreter exit
            assert f"run-{n}" in names, (n, point, rc, sorted(names))
        elif rc == 2:  # stopped inside the backup: a checkpoint, no archive
            assert f"run-{n}.checkpoint" in names and f"run-{n}" not in names, (n, sorted(names))
        elif rc != -signal.SIGKILL:  # Ctrl-C before the backup began: nothing of this run
            assert not any(name.startswith(f"run-{n}") for name in names), (n, sorted(names))
        assert blocking_locks(store) == [], (n, point)
        left = lock_names(store.repository.storage)
        if rc == 2:  # a Ctrl-C'd run released its lock
            assert left == [], (n, point)
        stale_left += bool(left)
        hoard("list", "--consider-checkpoints", repo)
    for point, rc, alive in outcomes:
        phase = point.phase or "start"
        print(f"{point.how:15} {phase:6} +{point.delay:4.2f} s: rc {rc:4} alive {alive}")
    codes = [rc for _, rc, alive in outcomes if alive]
    assert codes.count(2) >= 6, codes  # Ctrl-C inside the backup: checkpoint, rc 2
    assert codes.count(-signal.SIGKILL) >= 6, codes
    assert stale_left >= 3  # SIGKILLs left lock records that the next run found stale
    assert len(checked) >= 5  # interrupted runs left checkpoints (or finished archives)

    assert outcomes[-1][1] == -signal.SIGKILL
    assert lock_names(open_store(hoard, repo).repository.storage) != []  # stale, must not block
    before = repo_size(repo)
    hoard("create", f"{repo}::final", "src", cwd=tmp_path)
    grown = repo_size(repo) - before
    print(f"final create: repository grew by {grown} bytes of {total} source bytes")
    assert grown < total * 5 // 100
    store = open_store(hoard, repo)
    check_structure(store, set())  # every record, all at once
    assert blocking_locks(store) == []
    assert lock_names(store.repository.storage) == []  # the stale record was removed
    dest = tmp_path / "restore"
    dest.mkdir()
    hoard("extract", f"{repo}::final", cwd=dest)
    assert compare_trees(src, dest / "src") == []


def test_structure_check_detects_damage(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    """The helper is not vacuous: a missing pack and a damaged pack are found."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_bytes(os.urandom(100_000))
    hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    store = open_store(hoard, repo)
    assert [r.name for r in check_structure(store, set())] == ["a"]
    data_packs = [
        p
        for p in (repo / "packs").rglob("*")
        if p.is_file() and parse_pack(p.read_bytes())[0].type == 0
    ]
    assert len(data_packs) == 1
    content = data_packs[0].read_bytes()
    data_packs[0].write_bytes(content[:-1])  # truncated: the last blob runs past the end
    with pytest.raises(IntegrityError, match="runs past the end"):
        check_structure(open_store(hoard, repo), set())
    data_packs[0].unlink()  # gone: the index names a missing pack
    with pytest.raises(AssertionError, match="missing pack"):
        check_structure(open_store(hoard, repo), set())
