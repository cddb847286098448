"""``hoard compact``: freeing the space of deleted archives, safely.

Real repositories made by ``hoard init``/``create``; the repository's files
are aged with ``os.utime`` where a test needs them past the 2-hour grace
period (what a day-old backup looks like), instead of any test-only knob.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hoard.repository.pack import PACK_MAGIC, pack_path, parse_pack
from hoard.storage.local import TEMP_MARKER
from tests.cli.conftest import HOARD, Hoard, set_pack_size
from tests.cli.test_list import assert_error, create
from tests.cli.trees import compare_trees

DAY = 24 * 3600


def _source(root: Path, seed: int, files: int = 3, size: int = 120_000) -> Path:
    """``root/data`` with incompressible files of its own plus one shared by all."""
    data = root / "data"
    data.mkdir(parents=True)
    for n in range(files):
        (data / f"f{n}").write_bytes(hashlib.shake_256(b"%d-%d" % (seed, n)).digest(size))
    (data / "shared").write_bytes(hashlib.shake_256(b"shared").digest(50_000))
    return root


def _age(repo: Path, seconds: float = DAY) -> None:
    """Make every file of the repository look ``seconds`` old."""
    stamp = time.time() - seconds
    for path in repo.rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))


def _packs_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "packs").rglob("*") if p.is_file())


def _listing(repo: Path) -> list[str]:
    return sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if "locks" not in p.parts)


@pytest.fixture(scope="module")
def four_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """Built once per module: a repository with archives a0..a3 of four
    sources, aged by a day, and the sources (never modified by the tests)."""
    base = tmp_path_factory.mktemp("four")
    (base / "home").mkdir()
    maker = Hoard(base / "home")
    repo = base / "repo"
    maker("init", "--encryption", "repokey", repo)
    sources = {}
    for n in range(4):
        sources[f"a{n}"] = _source(base / f"src{n}", seed=n)
        create(maker, repo, f"a{n}", sources[f"a{n}"], "--compression", "none", day=4 + n)
    _age(repo)
    return repo, sources


@pytest.fixture
def four(repo: Path, four_template: tuple[Path, dict[str, Path]]) -> dict[str, Path]:
    """``repo`` replaced by a copy of the template (times preserved)."""
    template, sources = four_template
    shutil.rmtree(repo)
    shutil.copytree(template, repo, ignore=shutil.ignore_patterns("locks"))
    return sources


def _extracts_identically(hoard: Hoard, repo: Path, name: str, source: Path, dest: Path) -> None:
    dest.mkdir()
    hoard("extract", f"{repo}::{name}", cwd=dest)
    assert compare_trees(source / "data", dest / "data") == []


def test_compact_frees_the_space_only_deleted_archives_used(
    hoard: Hoard, repo: Path, four: dict[str, Path], tmp_path: Path
) -> None:
    before = _packs_bytes(repo)
    hoard("delete", f"{repo}::a1")
    hoard("delete", f"{repo}::a3")
    only_theirs = 2 * 3 * 120_000  # their own files; "shared" is still used by a0 and a2
    result = hoard("compact", "-v", repo)
    assert "compaction freed about" in result.err
    assert "repository space." in result.err
    assert before - _packs_bytes(repo) >= 0.9 * only_theirs
    for name in ("a0", "a2"):
        _extracts_identically(hoard, repo, name, four[name], tmp_path / f"x-{name}")
    assert hoard.run("check", repo).rc == 0
    # A second compaction finds nothing more to do.
    again = _packs_bytes(repo)
    hoard("compact", repo)
    assert _packs_bytes(repo) == again


def test_compact_without_deletions_keeps_every_archive(
    hoard: Hoard, repo: Path, four: dict[str, Path], tmp_path: Path
) -> None:
    listing = _listing(repo)
    result = hoard("compact", "-v", repo)
    assert "compaction freed about 0 B repository space." in result.err
    assert _listing(repo) == listing
    _extracts_identically(hoard, repo, "a3", four["a3"], tmp_path / "x")


def test_young_packs_are_kept(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    """A just-written pack may belong to a backup that is still running."""
    create(hoard, repo, "a", _source(tmp_path / "s", seed=9))
    hoard("delete", f"{repo}::a")
    before = _packs_bytes(repo)
    hoard("compact", repo)
    assert _packs_bytes(repo) == before
    _age(repo)
    hoard("compact", repo)
    assert _packs_bytes(repo) == 0


def test_dry_run_changes_nothing(hoard: Hoard, repo: Path, four: dict[str, Path]) -> None:
    hoard("delete", f"{repo}::a1")
    listing = _listing(repo)
    result = hoard("compact", "-n", "-v", repo)
    assert "compaction would free about" in result.err
    assert _listing(repo) == listing


def test_orphans_and_stale_temporary_files_go_young_temporary_files_stay(
    hoard: Hoard, repo: Path, four: dict[str, Path], tmp_path: Path
) -> None:
    orphan_data = PACK_MAGIC + b"\x00" * 37
    orphan = repo / pack_path(hashlib.sha256(orphan_data).hexdigest())
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(orphan_data)
    stale = orphan.with_name(f"{'ab' * 32}{TEMP_MARKER}{'1' * 16}")
    stale.write_bytes(b"half a pack of a killed backup")
    _age(repo)
    young = orphan.with_name(f"{'cd' * 32}{TEMP_MARKER}{'2' * 16}")
    young.write_bytes(b"a backup writing right now")
    check = hoard.run("check", repo)
    assert check.rc == 1, str(check)  # garbage only
    hoard("compact", repo)
    assert not orphan.exists()
    assert not stale.exists()
    assert young.exists()
    _extracts_identically(hoard, repo, "a0", four["a0"], tmp_path / "x")


@pytest.mark.parametrize(("threshold", "rewritten"), [("100", False), ("0", True)])
def test_threshold(
    hoard: Hoard, repo: Path, tmp_path: Path, threshold: str, rewritten: bool
) -> None:
    """One backup (one pack) of which half is deleted: rewritten or not."""
    src = _source(tmp_path / "s", seed=5, files=2)
    create(hoard, repo, "both", src, "--compression", "none")
    (src / "data" / "f1").unlink()
    create(hoard, repo, "one", src, "--compression", "none")
    hoard("delete", f"{repo}::both")
    _age(repo)
    before = _packs_bytes(repo)
    hoard("compact", "--threshold", threshold, repo)
    freed = before - _packs_bytes(repo)
    assert (freed >= 120_000) is rewritten, (before, freed)
    _extracts_identically(hoard, repo, "one", src, tmp_path / "x")
    assert hoard.run("check", repo).rc == 0


def test_append_only_is_refused(hoard: Hoard, tmp_path: Path) -> None:
    repo = tmp_path / "ao"
    hoard("init", "--encryption", "repokey", "--append-only", repo)
    create(hoard, repo, "a", _source(tmp_path / "s", seed=1))
    _age(repo)
    listing = _listing(repo)
    result = hoard.run("compact", repo)
    assert_error(result, "is append-only")
    assert _listing(repo) == listing


def test_unreadable_archive_record_is_refused(
    hoard: Hoard, repo: Path, four: dict[str, Path]
) -> None:
    hoard("delete", f"{repo}::a1")
    (record,) = sorted((repo / "archives").iterdir())[:1]
    data = bytearray(record.read_bytes())
    data[len(data) // 2] ^= 1
    record.write_bytes(bytes(data))
    listing = _listing(repo)
    result = hoard.run("compact", repo)
    assert_error(result, "check --repair")
    assert "cannot be read" in result.err
    assert _listing(repo) == listing


def _tree_packs(repo: Path) -> list[Path]:
    """The packs holding tree objects (type 1)."""
    found = []
    for path in sorted((repo / "packs").rglob("*")):
        if not path.is_file() or TEMP_MARKER in path.name:
            continue
        if any(e.type == 1 for e in parse_pack(path.read_bytes(), path.name)):
            found.append(path)
    return found


def test_unreadable_tree_is_refused(hoard: Hoard, repo: Path, four: dict[str, Path]) -> None:
    hoard("delete", f"{repo}::a1")
    for tree_pack in _tree_packs(repo):  # (which pack holds the kept archives' trees varies)
        tree_pack.unlink()
    listing = _listing(repo)
    result = hoard.run("compact", repo)
    assert result.rc == 2, str(result)
    assert "Traceback" not in result.err
    assert "tree object" in result.err and "check --repair" in result.err
    assert _listing(repo) == listing


def test_damaged_index_file_is_refused(hoard: Hoard, repo: Path, four: dict[str, Path]) -> None:
    hoard("delete", f"{repo}::a1")
    index_file = sorted((repo / "index").iterdir())[0]
    data = bytearray(index_file.read_bytes())
    data[-3] ^= 1
    index_file.write_bytes(bytes(data))
    listing = _listing(repo)
    result = hoard.run("compact", repo)
    assert result.rc == 2, str(result)
    assert "Traceback" not in result.err
    assert "Compaction refused, nothing was deleted" in result.err
    assert _listing(repo) == listing


def test_bad_arguments(hoard: Hoard, repo: Path) -> None:
    result = hoard.run("compact", "--threshold", "x", repo)
    assert result.rc == 2 and "Traceback" not in result.err
    result = hoard.run("compact", "--threshold", "101", repo)
    assert result.rc == 2 and "percentage" in result.err
    assert_error(hoard.run("compact", f"{repo}::a"), "No archive can be specified")
    assert_error(hoard.run("compact", "--cleanup-commits", repo / "nope"), "does not exist")


def test_cleanup_commits_is_a_normal_compaction(
    hoard: Hoard, repo: Path, four: dict[str, Path]
) -> None:
    hoard("delete", f"{repo}::a1")
    before = _packs_bytes(repo)
    result = hoard("compact", "--cleanup-commits", "-v", repo)
    assert "no commit-only segment files" in result.err
    assert _packs_bytes(repo) < before


def test_progress_json(hoard: Hoard, repo: Path, four: dict[str, Path]) -> None:
    hoard("delete", f"{repo}::a1")
    result = hoard("compact", "--progress", "--log-json", "--threshold", "0", repo)
    records = [json.loads(line) for line in result.err.splitlines()]
    progress = [r for r in records if r.get("msgid") == "repository.compact_segments"]
    assert progress, result.err
    assert all(r["type"] == "progress_percent" for r in progress)
    assert progress[-1]["finished"] is True
    assert any(r.get("message", "").startswith("Compacting segments") for r in progress)


def _objects(repo: Path) -> set[str]:
    try:
        return {str(p) for d in ("packs", "index") for p in (repo / d).rglob("*")}
    except FileNotFoundError:  # a directory removed while listing
        return set()


def _kill_after_first_change(repo: Path, env: dict[str, str], delay: float) -> bool:
    """Run compact, SIGKILL it ``delay`` seconds after it first changed
    ``packs/`` or ``index/``; True if it was killed (not finished before)."""
    before = _objects(repo)
    command = [HOARD, "compact", "--threshold", "0", str(repo)]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    while proc.poll() is None and _objects(repo) == before:
        time.sleep(0.0005)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_kill_9_at_any_moment_loses_nothing(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    """A real SIGKILL at several moments of the sweep; then check, compact, extract."""
    set_pack_size(repo, 100_000)  # a pack per file: many storage operations to land between
    sources = {}
    for n in range(6):
        sources[f"a{n}"] = _source(tmp_path / f"src{n}", seed=20 + n, files=4)
        create(hoard, repo, f"a{n}", sources[f"a{n}"], "--compression", "none")
    for name in ("a1", "a3", "a5"):
        hoard("delete", f"{repo}::{name}")
    killed_with_garbage = 0
    for n, delay in enumerate((0.0, 0.002, 0.005, 0.01, 0.02, 0.05)):
        _age(repo)
        killed = _kill_after_first_change(repo, hoard.env, delay)
        check = hoard.run("check", repo)
        assert check.rc in (0, 1), str(check)  # 1: garbage only (orphans, temporary files)
        killed_with_garbage += killed and check.rc == 1
        hoard("extract", "--dry-run", f"{repo}::{('a0', 'a2', 'a4')[n % 3]}")
        create(hoard, repo, f"extra{n}", sources["a0"])
    assert killed_with_garbage  # some kill did land between two storage operations
    _age(repo)
    hoard("compact", repo)
    assert hoard.run("check", repo).rc == 0
    for name in ("a0", "a2", "a4"):
        _extracts_identically(hoard, repo, name, sources[name], tmp_path / f"x-{name}")
