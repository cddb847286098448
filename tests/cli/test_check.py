"""``hoard check`` and ``check --repair`` against a catalog of real damage.

Each case starts from a copy of one real backup (tiny packs, so data and
trees spread over several packs), damages it the way disks, copies and
crashes do, and then demands: ``check`` reports it (never "ok") naming what
it affects; ``check --repair`` then ``check`` is clean; every file the damage
did not touch extracts equal to the source; the next ``create`` of the same
source extracts completely; and a later ``--repair`` heals the broken files.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hoard.repository.pack import parse_pack
from tests.cli.conftest import Hoard, set_pack_size

REPAIR_ENV = {"BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "YES"}


def _make_source(root: Path) -> None:
    rng = __import__("random").Random(7)
    for d in ("alpha", "beta", "gamma"):
        (root / d).mkdir(parents=True)
        for i in range(4):
            (root / d / f"big{i}").write_bytes(rng.randbytes(120_000))
            (root / d / f"small{i}.txt").write_text(f"{d} {i}\n" * 50)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("check-template")
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


def _packs(repo: Path, type_: int) -> list[Path]:
    found = []
    for path in sorted((repo / "packs").glob("*/*")):
        entries = parse_pack(path.read_bytes(), path.name)
        if entries and entries[0].type == type_:
            found.append(path)
    return found


def _flip(path: Path, where: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x10
    path.write_bytes(bytes(data))


def flip_data(repo: Path) -> None:
    _flip(_packs(repo, 0)[0])


def flip_tree(repo: Path) -> None:
    _flip(_packs(repo, 1)[0])


def truncate_data(repo: Path) -> None:
    path = _packs(repo, 0)[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def delete_data(repo: Path) -> None:
    _packs(repo, 0)[-1].unlink()


def delete_index(repo: Path) -> None:
    for path in (repo / "index").iterdir():
        path.unlink()


def garble_index(repo: Path) -> None:
    for path in (repo / "index").iterdir():
        _flip(path, 0.5)


def flip_record(repo: Path) -> None:
    (path,) = (repo / "archives").iterdir()
    _flip(path, 0.5)


def delete_record(repo: Path) -> None:
    (path,) = (repo / "archives").iterdir()
    path.unlink()


def flip_key(repo: Path) -> None:
    _flip(repo / "keys" / "repokey")


def truncate_config(repo: Path) -> None:
    path = repo / "config"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def delete_config(repo: Path) -> None:
    (repo / "config").unlink()


def orphan_temp(repo: Path) -> None:
    pack = _packs(repo, 0)[0]
    temp = pack.with_name(pack.name[:60] + "00.tmp-0123456789abcdef")
    temp.write_bytes(b"half a pack")
    os.utime(temp, (1_000_000_000, 1_000_000_000))


CATALOG: dict[str, Callable[[Path], None]] = {
    "data-bitflip": flip_data,
    "tree-bitflip": flip_tree,
    "truncated-pack": truncate_data,
    "deleted-pack": delete_data,
    "deleted-index": delete_index,
    "garbled-index": garble_index,
    "bitflipped-record": flip_record,
    "orphan-temp": orphan_temp,
    "damaged-key": flip_key,
    "damaged-config": truncate_config,
    "deleted-config": delete_config,
}


def _extract(hoard: Hoard, base: Path, archive: str) -> tuple[Path, int]:
    n = 0
    while (base / f"out-{archive}-{n}").exists():
        n += 1
    target = base / f"out-{archive}-{n}"
    target.mkdir()
    result = hoard.run("extract", f"{base / 'repo'}::{archive}", cwd=target)
    return target / "src", result.rc


def _same_files(source: Path, restored: Path) -> tuple[list[str], list[str]]:
    """(files equal to the source, files differing or missing)."""
    same, differ = [], []
    for path in sorted(source.rglob("*")):
        if path.is_file():
            rel = path.relative_to(source)
            other = restored / rel
            ok = other.is_file() and filecmp.cmp(path, other, shallow=False)
            (same if ok else differ).append(str(rel))
    return same, differ


@pytest.mark.parametrize("damage", list(CATALOG))
def test_damage_is_reported_repaired_and_healed(case: tuple[Hoard, Path], damage: str) -> None:
    hoard, base = case
    repo = base / "repo"
    CATALOG[damage](repo)

    found = hoard.run("check", repo)
    assert found.rc != 0, found
    assert "Traceback" not in found.err

    repaired = hoard.run("check", "--repair", repo, env=REPAIR_ENV)
    assert repaired.rc in (0, 1), repaired
    assert "Traceback" not in repaired.err
    clean = hoard.run("check", repo)
    assert clean.rc == 0, clean

    listing = hoard.run("list", repo)
    if listing.out.strip():
        restored, _ = _extract(hoard, base, "one")
        same, differ = _same_files(base / "src", restored)
        assert same or damage == "tree-bitflip", (same, differ)

    hoard("create", f"{repo}::two", "src", cwd=base)
    restored, rc = _extract(hoard, base, "two")
    assert rc == 0
    assert _same_files(base / "src", restored)[1] == []

    healed = hoard.run("check", "--repair", repo, env=REPAIR_ENV)
    assert healed.rc in (0, 1), healed
    assert hoard.run("check", "--verify-data", repo).rc == 0
    broken = hoard("list", "--format", "{health} {path}{NL}", f"{repo}::two").out
    assert "broken" not in broken
    if damage in ("data-bitflip", "truncated-pack", "deleted-pack") and "one" in listing.out:
        one = hoard("list", "--format", "{health} {path}{NL}", f"{repo}::one").out
        assert "broken" not in one  # healed: the new backup brought the chunks back
        restored, rc = _extract(hoard, base, "one")
        assert rc == 0 and _same_files(base / "src", restored)[1] == []


def test_data_damage_names_archive_and_path(case: tuple[Hoard, Path]) -> None:
    hoard, base = case
    repo = base / "repo"
    flip_data(repo)
    result = hoard.run("check", "--json", repo)
    assert result.rc == 2
    summary = json.loads(result.out)
    assert summary["ok"] is False
    assert any(f["kind"] == "misnamed_pack" for f in summary["repository"])
    (finding,) = summary["archives"]
    assert finding["archive"] == "one"
    assert finding["path"].startswith("src/") and finding["object_id"]
    assert finding["path"] in result.err


def test_repair_marks_broken_file_and_extract_warns(case: tuple[Hoard, Path]) -> None:
    hoard, base = case
    repo = base / "repo"
    delete_data(repo)
    hoard.run("check", "--repair", repo, env=REPAIR_ENV)
    listing = hoard("list", "--format", "{health} {path}{NL}", f"{repo}::one").out
    broken = [line.split(" ", 1)[1] for line in listing.splitlines() if line.startswith("broken")]
    assert broken
    restored, rc = _extract(hoard, base, "one")
    assert rc == 1  # a warning: the file is broken
    lost = restored / broken[0].removeprefix("src/")
    assert lost.stat().st_size == (base / broken[0]).stat().st_size


def test_repair_asks_and_refuses_without_yes(case: tuple[Hoard, Path]) -> None:
    hoard, base = case
    delete_data(base / "repo")
    before = sorted(p.name for p in (base / "repo").rglob("*"))
    result = hoard.run("check", "--repair", base / "repo", input=b"no\n")
    assert result.rc == 2 and "Aborting." in result.out + result.err
    assert sorted(p.name for p in (base / "repo").rglob("*")) == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--repository-only", "--archives-only"], "contradicts"),
        (["--repository-only", "--verify-data"], "contradicts"),
        (["--repair", "--max-duration", "5"], "--max-duration"),
        (["--max-duration", "5"], "--repository-only is required"),
    ],
)
def test_bad_option_combinations_are_one_line_errors(
    case: tuple[Hoard, Path], options: list[str], message: str
) -> None:
    hoard, base = case
    result = hoard.run("check", *options, base / "repo", env=REPAIR_ENV)
    assert result.rc == 2
    assert message in result.err and "Traceback" not in result.err


def test_max_duration_checks_in_slices_and_resumes(case: tuple[Hoard, Path]) -> None:
    hoard, base = case
    repo = base / "repo"
    first = hoard.run("check", "--repository-only", "--max-duration", "1", "--json", repo)
    assert first.rc == 0, first
    assert json.loads(first.out)["packs_checked"] >= 1
    flip_data(repo)
    found = False
    for _ in range(30):  # the damaged pack is reached within one round of slices
        result = hoard.run("check", "--repository-only", "--max-duration", "1", repo)
        if result.rc == 2:
            found = True
            break
    assert found


def test_check_of_missing_repository_is_one_line(hoard: Hoard, tmp_path: Path) -> None:
    result = hoard.run("check", tmp_path / "nothing")
    assert result.rc == 2 and "does not exist" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("damage", [flip_key, truncate_config, delete_config])
def test_damaged_root_object_warns_and_works(
    case: tuple[Hoard, Path], damage: Callable[[Path], None]
) -> None:
    """A damaged config or key costs a warning, never the repository: its copy opens it."""
    hoard, base = case
    damage(base / "repo")
    listing = hoard.run("list", base / "repo")
    assert listing.rc == 1, listing
    assert "one" in listing.out
    assert "its copy was used instead. Run 'hoard check --repair'." in listing.err
    assert len(listing.err.strip().splitlines()) == 1


def _run_killed(hoard: Hoard, base: Path, limit: int, *args: str | Path) -> tuple[int, int | None]:
    """Run hoard under tests.killer: SIGKILL before storage change ``limit`` + 1."""
    count = base / "changes"
    root = Path(__file__).resolve().parents[2]
    env = {**hoard.env, **REPAIR_ENV, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.killer", str(limit), str(count), *map(str, args)],
        env=env,
        cwd=base,
        capture_output=True,
        timeout=600,
        check=False,
    )
    return done.returncode, int(count.read_text()) if count.exists() else None


@pytest.mark.slow
def test_repair_killed_at_every_step_loses_nothing(case: tuple[Hoard, Path]) -> None:
    """kill -9 before each storage change of ``check --repair``: the next
    repair finishes the job, ``check`` is clean, and every file the damage
    did not touch still extracts equal to the source."""
    hoard, base = case
    flip_data(base / "repo")
    orphan_temp(base / "repo")
    pristine = base / "pristine"
    pristine.mkdir()
    for name in ("home", "repo"):
        shutil.copytree(base / name, pristine / name, symlinks=True)

    rc, steps = _run_killed(hoard, base, -1, "check", "--repair", base / "repo")
    assert rc == 1 and steps is not None and steps >= 5, (rc, steps)
    expected, _ = _same_files(base / "src", _extract(hoard, base, "one")[0])

    for limit in range(steps):
        trial = base / f"kill-{limit}"
        trial.mkdir()
        for name in ("home", "repo"):
            shutil.copytree(pristine / name, trial / name, symlinks=True)
        (trial / "src").symlink_to(base / "src")
        killed = Hoard(trial / "home")
        rc, _ = _run_killed(killed, trial, limit, "check", "--repair", trial / "repo")
        assert rc == -signal.SIGKILL, (limit, rc)
        again = killed.run("check", "--repair", trial / "repo", env=REPAIR_ENV)
        assert again.rc in (0, 1), (limit, again)
        clean = killed.run("check", trial / "repo")
        assert clean.rc == 0, (limit, clean)
        same, _ = _same_files(base / "src", _extract(killed, trial, "one")[0])
        assert set(expected) <= set(same), (limit, sorted(set(expected) - set(same)))


def _forge_blob(repo: Path) -> None:
    """Damage one data blob so that only authentication can tell: the pack is
    renamed to its new hash and the index rebuilt, so the structure is sound."""
    from hoard.repository.pack import HEADER_SIZE  # noqa: PLC0415 - only this case needs it
    from hoard.repository.repository import Repository  # noqa: PLC0415
    from hoard.storage.local import LocalStorage  # noqa: PLC0415

    path = _packs(repo, 0)[0]
    data = bytearray(path.read_bytes())
    entry = parse_pack(bytes(data), path.name)[0]
    data[entry.offset + HEADER_SIZE + entry.length // 2] ^= 0x01
    name = hashlib.sha256(data).hexdigest()
    (repo / "packs" / name[:2]).mkdir(exist_ok=True)
    (repo / "packs" / name[:2] / name).write_bytes(bytes(data))
    path.unlink()
    Repository.open(LocalStorage(repo), None, operation="write").rebuild_index_from_packs()


def test_verify_data_finds_a_blob_only_authentication_can_tell(case: tuple[Hoard, Path]) -> None:
    hoard, base = case
    repo = base / "repo"
    _forge_blob(repo)
    assert hoard.run("check", repo).rc == 0  # every structural check passes

    result = hoard.run("check", "--verify-data", "--json", repo)
    assert result.rc == 2, result
    summary = json.loads(result.out)
    assert [f["kind"] for f in summary["repository"]] == ["unauthentic_blob"]
    (finding,) = summary["archives"]
    assert finding["kind"] == "damaged_chunk" and finding["path"].startswith("src/")
    assert hoard.run("check", "--archives-only", "--verify-data", repo).rc == 2

    hoard.run("check", "--repair", "--verify-data", repo, env=REPAIR_ENV)
    after = json.loads(hoard.run("check", "--verify-data", "--json", repo).out)
    assert after["repository"] == [] and after["archives"] == []
    hoard("create", f"{repo}::two", "src", cwd=base)
    restored, rc = _extract(hoard, base, "two")
    assert rc == 0 and _same_files(base / "src", restored)[1] == []
