"""Damage never spreads, never blocks: what commands other than ``check`` do with it.

Each case copies one real backup (tiny packs, as in test_check.py, whose
damage helpers are reused) and damages it, then drives the commands a user
would run next, with the same client (same cache) unless said otherwise:

- ``extract`` goes past damaged files, names each with the byte ranges lost
  (zero-filled) and exits 2; every other file equals the source;
- the client stops trusting what it found damaged, so the next ``create`` of
  the same source stores that data again and its archive extracts completely;
- ``create`` alone notices packs that are missing or truncated;
- a damaged archive record is skipped with a warning naming it (exit 1) by
  ``list``, ``info``, ``create``, ``delete`` and ``extract``; ``check`` still
  reports it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import Hoard, set_pack_size
from tests.cli.test_check import (
    _extract,
    _make_source,
    _packs,
    _same_files,
    delete_data,
    flip_data,
    flip_tree,
    truncate_data,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("damage-template")
    hoard = Hoard(base / "home")
    (base / "home").mkdir()
    _make_source(base / "src")
    hoard("init", "--encryption", "repokey", base / "repo")
    set_pack_size(base / "repo", 100_000)  # several data packs and tree packs
    hoard("create", f"{base / 'repo'}::one", "src", cwd=base)
    return base


@pytest.fixture
def case(template: Path, tmp_path: Path) -> tuple[Hoard, Path]:
    for name in ("home", "repo", "src"):
        shutil.copytree(template / name, tmp_path / name, symlinks=True)
    return Hoard(tmp_path / "home"), tmp_path


DATA_DAMAGE: dict[str, Callable[[Path], None]] = {
    "data-bitflip": flip_data,
    "truncated-pack": truncate_data,
    "deleted-pack": delete_data,
}


def _damage_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": damaged, " in line]


@pytest.mark.parametrize("damage", list(DATA_DAMAGE))
def test_extract_restores_all_it_can_then_create_heals(
    case: tuple[Hoard, Path], damage: str
) -> None:
    hoard, base = case
    repo = base / "repo"
    DATA_DAMAGE[damage](repo)

    restored, rc = _extract(hoard, base, "one")
    assert rc == 2
    same, differ = _same_files(base / "src", restored)
    assert same and differ, (same, differ)
    for rel in differ:  # a damaged file is there, of its size, its lost ranges zero-filled
        path = restored / rel
        assert path.stat().st_size == (base / "src" / rel).stat().st_size

    hoard("create", f"{repo}::two", "src", cwd=base)  # the same client: it forgot the bad copies
    restored, rc = _extract(hoard, base, "two")
    assert rc == 0
    assert _same_files(base / "src", restored)[1] == []


def test_extract_error_lines_name_each_file_and_range(case: tuple[Hoard, Path]) -> None:
    hoard, base = case
    repo = base / "repo"
    delete_data(repo)
    target = base / "out"
    target.mkdir()
    result = hoard.run("extract", f"{repo}::one", cwd=target)
    assert result.rc == 2 and "Traceback" not in result.err, result
    lines = _damage_lines(result.err)
    assert lines, result
    restored = target / "src"
    _, differ = _same_files(base / "src", restored)
    assert sorted(line.split(": damaged, ")[0] for line in lines) == sorted(
        f"src/{rel}" for rel in differ
    )
    for line in lines:
        assert "lost, zero-filled" in line and "the pack is missing" in line
    last = result.err.splitlines()[-1]
    assert last == (
        f"Extraction incomplete: {len(lines)} damaged item(s), named above "
        "(lost byte ranges are zero-filled)."
    )
    # the client forgot those entries, yet a second run says what is wrong just as well
    again = hoard.run("extract", f"{repo}::one", cwd=target)
    assert again.rc == 2 and _damage_lines(again.err) == lines, again


def test_a_damaged_tree_loses_one_directory_and_create_heals(case: tuple[Hoard, Path]) -> None:
    hoard, base = case
    repo = base / "repo"
    flip_tree(repo)
    target = base / "out"
    target.mkdir()
    result = hoard.run("extract", f"{repo}::one", cwd=target)
    assert result.rc == 2 and "Traceback" not in result.err, result
    assert _damage_lines(result.err), result
    hoard("create", f"{repo}::two", "src", cwd=base)
    restored, rc = _extract(hoard, base, "two")
    assert rc == 0
    assert _same_files(base / "src", restored)[1] == []


@pytest.mark.parametrize("damage", ["truncated-pack", "deleted-pack"])
def test_create_alone_notices_missing_and_truncated_packs(
    case: tuple[Hoard, Path], damage: str
) -> None:
    hoard, base = case
    repo = base / "repo"
    lost = _packs(repo, 0)[-1 if damage == "deleted-pack" else 0].name
    DATA_DAMAGE[damage](repo)
    created = hoard.run("create", f"{repo}::two", "src", cwd=base)
    assert created.rc == 1, created
    assert lost in created.err and "hoard check --repair" in created.err, created
    restored, rc = _extract(hoard, base, "two")
    assert rc == 0
    assert _same_files(base / "src", restored)[1] == []
    again = hoard.run("create", f"{repo}::three", "src", cwd=base)
    assert again.rc == 0, again  # the lost entries were forgotten for good


def test_a_fresh_client_notices_too(case: tuple[Hoard, Path], tmp_path: Path) -> None:
    _, base = case
    repo = base / "repo"
    delete_data(repo)
    (tmp_path / "other").mkdir()
    other = Hoard(tmp_path / "other")  # no cache at all: rebuilt from the index files
    created = other.run("create", f"{repo}::two", "src", cwd=base)
    assert created.rc == 1, created
    restored, rc = _extract(other, base, "two")
    assert rc == 0
    assert _same_files(base / "src", restored)[1] == []


def _second_archive_and_flipped_first(hoard: Hoard, base: Path) -> str:
    repo = base / "repo"
    hoard("create", f"{repo}::two", "src", cwd=base)
    listed = json.loads(hoard("list", "--json", repo).out)
    one = next(a["id"] for a in listed["archives"] if a["name"] == "one")
    path = repo / "archives" / one
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    return one


def _warns_about(result: object, record: str) -> None:
    rc, err = result.rc, result.err  # type: ignore[attr-defined]
    assert rc == 1, result
    assert "Traceback" not in err
    assert f"Archive record {record} is damaged and skipped" in err, result


def test_a_damaged_record_is_skipped_with_a_warning(
    case: tuple[Hoard, Path], tmp_path: Path
) -> None:
    hoard, base = case
    repo = base / "repo"
    bad = _second_archive_and_flipped_first(hoard, base)
    (tmp_path / "fresh").mkdir()
    fresh = Hoard(tmp_path / "fresh")  # has not read the record before: reads the damaged one

    listing = fresh.run("list", "--short", repo)
    _warns_about(listing, bad)
    assert listing.out.split() == ["two"]
    _warns_about(fresh.run("info", repo), bad)
    _warns_about(fresh.run("info", f"{repo}::two"), bad)
    target = base / "out"
    target.mkdir()
    _warns_about(fresh.run("extract", f"{repo}::two", cwd=target), bad)
    assert _same_files(base / "src", target / "src")[1] == []
    _warns_about(fresh.run("create", f"{repo}::three", "src", cwd=base), bad)
    _warns_about(fresh.run("delete", f"{repo}::three"), bad)
    assert fresh.run("list", "--short", repo).out.split() == ["two"]

    checked = fresh.run("check", repo)
    assert checked.rc == 2, checked
    assert bad in checked.out + checked.err


def test_a_client_that_cached_the_record_keeps_its_good_copy(case: tuple[Hoard, Path]) -> None:
    """The record cache holds the copy this client once authenticated: it
    serves that; only ``check``, which reads every record fresh, reports it."""
    hoard, base = case
    repo = base / "repo"
    bad = _second_archive_and_flipped_first(hoard, base)
    assert hoard("list", "--short", repo).out.split() == ["one", "two"]
    checked = hoard.run("check", repo)
    assert checked.rc == 2 and bad in checked.out + checked.err, checked


@pytest.mark.parametrize("damage", list(DATA_DAMAGE))
def test_another_client_reads_the_copy_the_healing_backup_stored(
    case: tuple[Hoard, Path], tmp_path: Path, damage: str
) -> None:
    """The healing ``create`` stored a second copy of each lost chunk. A
    client that builds its index from the index files may index the damaged
    copy (an id is indexed once): on reading it, it finds the other copy."""
    hoard, base = case
    repo = base / "repo"
    DATA_DAMAGE[damage](repo)
    assert _extract(hoard, base, "one")[1] == 2
    hoard("create", f"{repo}::two", "src", cwd=base)
    (tmp_path / "other").mkdir()
    other = Hoard(tmp_path / "other")
    for n in range(2):  # a fresh cache, then the cache that first run left
        restored, rc = _extract(other, base, "two")
        assert rc == 0, n
        assert _same_files(base / "src", restored)[1] == []
