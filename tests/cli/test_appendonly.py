"""Append-only repositories, deletion records, ``undelete``, ``config``, storage quota.

Real repositories made by the real CLI: in append-only mode ``delete`` and
``check --repair`` remove and change nothing on disk (compared file by file),
deleted archives are only hidden, ``list --consider-deleted`` shows them and
``undelete`` brings them back intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hoard.repository.lock import Lock
from hoard.storage.local import LocalStorage
from tests.cli.conftest import Hoard, set_pack_size
from tests.cli.test_check import _packs, flip_data
from tests.cli.test_compact import _age
from tests.cli.test_list import assert_error, build_tree, create

CHECK_OK = {"BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "YES"}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "src")


@pytest.fixture
def aorepo(hoard: Hoard, tmp_path: Path, tree: Path) -> Path:
    """An append-only repository with archives mon (day 4) and tue (day 5)."""
    path = tmp_path / "aorepo"
    hoard("init", "--encryption", "repokey", "--append-only", path)
    create(hoard, path, "mon", tree, day=4)
    create(hoard, path, "tue", tree, day=5)
    return path


def files_of(repo: Path) -> dict[str, bytes]:
    """Every file of the repository (lock records aside) with its content."""
    found = {}
    for dirpath, _, names in os.walk(repo):
        for name in names:
            path = Path(dirpath, name)
            rel = str(path.relative_to(repo))
            if not rel.startswith("locks/"):
                found[rel] = path.read_bytes()
    return found


def names(hoard: Hoard, repo: Path, *options: str) -> list[str]:
    return hoard("list", *options, "--format", "{archive}{NL}", str(repo)).out.splitlines()


def test_delete_and_check_repair_remove_nothing_and_undelete_restores(
    hoard: Hoard, aorepo: Path, tree: Path, tmp_path: Path
) -> None:
    before = files_of(aorepo)
    hoard("delete", f"{aorepo}::mon")
    hoard("check", "--repair", str(aorepo), env=CHECK_OK)
    after = files_of(aorepo)
    assert before.items() <= after.items(), "a file was removed or changed"
    added = sorted(set(after) - set(before))
    assert len(added) == 1 and added[0].startswith("deletions/"), added

    assert names(hoard, aorepo) == ["tue"]
    listed = hoard("list", "--consider-deleted", str(aorepo)).out.splitlines()
    assert listed[0].startswith("mon ") and listed[0].endswith("] [deleted]")
    assert listed[1].startswith("tue ") and "[deleted]" not in listed[1]
    data = json.loads(hoard("list", "--json", "--consider-deleted", str(aorepo)).out)
    assert {a["name"]: a["deleted"] for a in data["archives"]} == {"mon": True, "tue": False}
    assert "deleted" not in json.loads(hoard("list", "--json", str(aorepo)).out)["archives"][0]
    for command in ("info", "extract"):
        result = hoard.run(command, f"{aorepo}::mon")
        assert result.rc == 2 and "mon" in result.err, str(result)

    result = hoard("undelete", "--list", f"{aorepo}::mon")
    assert result.err.startswith("Restoring archive: mon ")
    assert files_of(aorepo).items() >= after.items()
    assert names(hoard, aorepo) == ["mon", "tue"]
    out = tmp_path / "out"
    out.mkdir()
    hoard("extract", f"{aorepo}::mon", cwd=out)
    assert (out / "data/hello.txt").read_bytes() == (tree / "data/hello.txt").read_bytes()
    assert (out / "data/sub/numbers.bin").read_bytes() == (
        tree / "data/sub/numbers.bin"
    ).read_bytes()


def test_undelete_errors_and_globs(hoard: Hoard, aorepo: Path, tree: Path) -> None:
    assert_error(hoard.run("undelete", f"{aorepo}::mon"), "Archive mon (among the deleted")
    assert_error(hoard.run("undelete", str(aorepo)), "No archive given")
    hoard("delete", "-a", "*", str(aorepo))
    assert names(hoard, aorepo) == []
    create(hoard, aorepo, "mon", tree, day=6)  # the name is free again
    assert_error(hoard.run("undelete", f"{aorepo}::mon"), "Archive mon already exists")
    result = hoard.run("undelete", "-a", "*", str(aorepo))
    assert result.rc == 1, str(result)
    assert "Archive mon not restored: an archive of that name exists" in result.err
    assert sorted(names(hoard, aorepo)) == ["mon", "tue"]
    assert len(names(hoard, aorepo, "--consider-deleted")) == 3


def test_append_only_repository_cannot_be_deleted(hoard: Hoard, aorepo: Path) -> None:
    before = files_of(aorepo)
    for options in ((), ("--force",)):
        result = hoard.run(
            "delete", *options, str(aorepo), env={"BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "YES"}
        )
        assert_error(result, f"{aorepo} is in append-only mode: refusing to delete the repository.")
    assert files_of(aorepo) == before


def test_switching_append_only_off_makes_delete_real(hoard: Hoard, aorepo: Path) -> None:
    hoard("delete", f"{aorepo}::mon")
    assert hoard("config", str(aorepo), "append_only").out == "1\n"
    hoard("config", str(aorepo), "append_only", "0")
    assert hoard("config", str(aorepo), "repository.append_only").out == "0\n"
    assert len(names(hoard, aorepo, "--consider-deleted")) == 2  # hidden stays hidden
    records = [n for n in files_of(aorepo) if n.startswith("archives/")]
    hoard("delete", f"{aorepo}::tue")
    assert len([n for n in files_of(aorepo) if n.startswith("archives/")]) == len(records) - 1
    assert names(hoard, aorepo, "--consider-deleted") == ["mon [deleted]"]


def test_config_get_set_list_delete(hoard: Hoard, repo: Path) -> None:
    config = repo / "config"
    listed = hoard("config", "--list", str(repo)).out.splitlines()
    repo_id = json.loads(config.read_text())["id"]
    assert listed == [
        "[repository]",
        "version = 1",
        "pack_size = 16777216",
        "storage_quota = 0",
        "additional_free_space = 0",
        "append_only = 0",
        f"id = {repo_id}",
    ]
    hoard("config", str(repo), "storage_quota", "1.5G")
    hoard("config", str(repo), "additional_free_space", "20M")
    hoard("config", str(repo), "append_only", "1")
    doc = json.loads(config.read_text())
    assert (doc["storage_quota"], doc["additional_free_space"], doc["append_only"]) == (
        1_500_000_000,
        20_000_000,
        True,
    )
    assert hoard("config", str(repo), "storage_quota").out == "1500000000\n"
    assert hoard("config", str(repo), "id").out == f"{repo_id}\n"
    for name in ("storage_quota", "additional_free_space", "append_only"):
        hoard("config", "--delete", str(repo), name)
    doc = json.loads(config.read_text())
    assert (doc["storage_quota"], doc["additional_free_space"], doc["append_only"]) == (
        None,
        0,
        False,
    )
    assert not list(repo.glob("*.tmp-*")) and not list((repo / "locks").glob("*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "No config key name was provided."),
        (("nope",), "Invalid name: nope"),
        (("cache.x",), "Invalid section: cache"),
        (("append_only", "yes"), "Invalid value for append_only: 'yes'"),
        (("storage_quota", "5M"), "Invalid value: storage_quota < 10M"),
        (("additional_free_space", "lots"), "Invalid value: 'lots' is not a size"),
        (("id", "00"), "Invalid name: id cannot be changed"),
        (("--list", "append_only"), "--list takes no key name"),
        (("--delete", "append_only", "1"), "--delete takes no value"),
        (("--cache", "x"), "hoard has no cache config file"),
    ],
)
def test_config_errors(hoard: Hoard, repo: Path, args: tuple[str, ...], message: str) -> None:
    before = (repo / "config").read_bytes()
    options = [a for a in args if a.startswith("-")]
    rest = [a for a in args if not a.startswith("-")]
    assert_error(hoard.run("config", *options, str(repo), *rest), message)
    assert (repo / "config").read_bytes() == before


def test_config_of_missing_or_remote_repository(hoard: Hoard, tmp_path: Path) -> None:
    assert_error(hoard.run("config", str(tmp_path / "nothing"), "append_only"), "does not exist")
    assert_error(
        hoard.run("config", "ssh://host/repo", "append_only"), "only works on local repositories"
    )


def test_quota_exceeded_during_create_leaves_a_consistent_repository(
    hoard: Hoard, tmp_path: Path, tree: Path
) -> None:
    repo = tmp_path / "small"
    hoard("init", "--encryption", "repokey", "--storage-quota", "10M", repo)
    set_pack_size(repo, 1 << 20)  # small packs: some are stored before the quota is hit
    create(hoard, repo, "first", tree)
    big = tmp_path / "big"
    (big / "data").mkdir(parents=True)
    (big / "data" / "noise").write_bytes(os.urandom(12 * 10**6))
    result = hoard.run("create", f"{repo}::second", "data", cwd=big)
    assert result.rc == 2, str(result)
    assert "The storage quota (10.00 MB) has been exceeded" in result.err
    assert "Try deleting some archives." in result.err and "Traceback" not in result.err
    assert names(hoard, repo) == ["first"]
    modern = hoard.run(
        "create", f"{repo}::second", "data", cwd=big, env={"BORG_EXIT_CODES": "modern"}
    )
    assert modern.rc == 20, str(modern)
    check = hoard.run("check", str(repo))
    assert check.rc == 1, str(check)
    assert "no index file mentions this pack" in check.err
    assert "only garbage found, which 'hoard compact' frees" in check.err
    out = tmp_path / "out"
    out.mkdir()
    hoard("extract", f"{repo}::first", cwd=out)
    assert (out / "data/hello.txt").read_bytes() == b"hello\n"
    hoard("config", str(repo), "storage_quota", "0")  # no quota any more
    hoard("create", f"{repo}::second", "data", cwd=big)
    assert names(hoard, repo) == ["first", "second"]


def test_check_repair_of_damage_in_append_only_mode_removes_nothing(
    hoard: Hoard, aorepo: Path
) -> None:
    flip_data(aorepo)
    (aorepo / "packs" / "00").mkdir(exist_ok=True)
    stale = aorepo / "packs" / "00" / ("00" * 32 + ".tmp-0123456789abcdef")
    stale.write_bytes(b"half a pack")
    os.utime(stale, (1, 1))  # long stale: repair would remove it outside append-only mode
    before = files_of(aorepo)
    result = hoard.run("check", "--repair", str(aorepo), env=CHECK_OK)
    assert result.rc == 2, str(result)
    assert "(append-only)" in result.err and "Traceback" not in result.err
    after = files_of(aorepo)
    assert before.items() <= after.items(), "a file was removed or changed"
    assert names(hoard, aorepo) == ["mon", "tue"]


def test_repair_outside_append_only_mode_keeps_hidden_archives_hidden(
    hoard: Hoard, aorepo: Path
) -> None:
    hoard("delete", f"{aorepo}::mon")
    hoard("config", str(aorepo), "append_only", "0")
    for pack in _packs(aorepo, 0):
        pack.unlink()
    result = hoard.run("check", "--repair", str(aorepo), env=CHECK_OK)
    assert result.rc in (1, 2) and "Traceback" not in result.err, str(result)
    assert names(hoard, aorepo) == ["tue"]
    assert names(hoard, aorepo, "--consider-deleted") == ["mon [deleted]", "tue"]
    hoard("undelete", f"{aorepo}::mon")
    assert names(hoard, aorepo) == ["mon", "tue"]


def test_rename_in_append_only_mode_hides_the_old_record(hoard: Hoard, aorepo: Path) -> None:
    before = files_of(aorepo)
    hoard("rename", f"{aorepo}::mon", "monday")
    assert before.items() <= files_of(aorepo).items()
    assert names(hoard, aorepo) == ["monday", "tue"]
    assert names(hoard, aorepo, "--consider-deleted") == ["mon [deleted]", "monday", "tue"]


def test_additional_free_space_refuses_backups(hoard: Hoard, repo: Path, tree: Path) -> None:
    hoard("config", str(repo), "additional_free_space", "1000000P")  # more than any disk
    result = hoard.run("create", f"{repo}::x", "data", cwd=tree)
    assert result.rc == 2, str(result)
    assert "Insufficient free space to complete transaction (required: " in result.err
    assert "Traceback" not in result.err
    assert names(hoard, repo) == []
    modern = hoard.run("create", f"{repo}::x", "data", cwd=tree, env={"BORG_EXIT_CODES": "modern"})
    assert modern.rc == 14, str(modern)
    hoard("config", "--delete", str(repo), "additional_free_space")
    create(hoard, repo, "x", tree)
    assert names(hoard, repo) == ["x"]


def test_config_change_waits_for_the_exclusive_lock(hoard: Hoard, repo: Path) -> None:
    before = (repo / "config").read_bytes()
    with Lock(LocalStorage(repo), exclusive=False, lock_wait=0, command="a running backup"):
        result = hoard.run("--lock-wait", "0", "config", str(repo), "append_only", "1")
        assert_error(result, "Failed to create/acquire the lock")
        assert hoard("config", str(repo), "append_only").out == "0\n"  # reading needs no lock
    assert (repo / "config").read_bytes() == before
    hoard("config", str(repo), "append_only", "1")
    assert json.loads((repo / "config").read_text())["append_only"] is True
    assert [p.name for p in repo.iterdir() if ".tmp-" in p.name] == []


def test_compact_after_append_only_frees_the_hidden_archives(
    hoard: Hoard, aorepo: Path, tree: Path
) -> None:
    """Archives deleted in append-only mode keep their space until append-only
    is off; then compact removes them for real and frees what only they used."""
    (tree / "data" / "unique.bin").write_bytes(os.urandom(300_000))
    create(hoard, aorepo, "big", tree, day=6)
    hoard("delete", f"{aorepo}::big")
    assert_error(hoard.run("compact", str(aorepo)), "append-only")
    assert "big" in hoard("list", "--consider-deleted", str(aorepo)).out

    hoard("config", str(aorepo), "append_only", "0")
    _age(aorepo)
    before = _size(aorepo)
    dry = hoard("compact", "--dry-run", "-v", str(aorepo))
    assert "Would remove 1 archives deleted in append-only mode." in dry.err
    assert _size(aorepo) == before
    hoard("compact", str(aorepo))
    assert before - _size(aorepo) >= 290_000
    assert "big" not in hoard("list", "--consider-deleted", str(aorepo)).out
    assert not any((aorepo / "deletions").iterdir())
    assert names(hoard, aorepo) == ["mon", "tue"]
    assert hoard.run("check", "--verify-data", str(aorepo)).rc == 0


def _size(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "packs").rglob("*") if p.is_file())
