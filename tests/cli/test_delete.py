"""``hoard delete``: archives by name or filter, --stats, and the whole repository."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hoard.repository.lock import Lock
from hoard.storage.local import LocalStorage
from tests.cli.conftest import Hoard
from tests.cli.test_list import assert_error, build_tree, create

SEPARATOR = "-" * 78
CONFIRM = "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "src")


@pytest.fixture
def several(hoard: Hoard, repo: Path, tree: Path) -> Path:
    """mon-1, tue-1, mon-2, mon-3.checkpoint (days 4 to 7)."""
    hoard.env["TZ"] = "UTC"
    for day, name in enumerate(("mon-1", "tue-1", "mon-2", "mon-3.checkpoint"), start=4):
        create(hoard, repo, name, tree, day=day)
    return repo


def remaining(hoard: Hoard, repo: Path) -> list[str]:
    listed = hoard("list", "--consider-checkpoints", "--format", "{archive}{NL}", str(repo))
    return listed.out.splitlines()


def archive_ids(hoard: Hoard, repo: Path) -> dict[str, str]:
    data = json.loads(hoard("list", "--json", "--consider-checkpoints", str(repo)).out)
    return {a["name"]: a["id"] for a in data["archives"]}


# --- archives -------------------------------------------------------------------------------


def test_delete_one_archive(hoard: Hoard, several: Path) -> None:
    result = hoard("delete", f"{several}::tue-1")
    assert (result.out, result.err) == ("", "")
    assert remaining(hoard, several) == ["mon-1", "mon-2", "mon-3.checkpoint"]
    assert hoard("list", "--short", f"{several}::mon-2").out.startswith("data\n")


def test_delete_several_names_warns_about_unknown_ones(hoard: Hoard, several: Path) -> None:
    result = hoard.run("delete", f"{several}::mon-1", "nope", "mon-2")
    assert result.rc == 1, str(result)
    assert result.err == "Archive nope not found (2/3).\n"
    assert remaining(hoard, several) == ["tue-1", "mon-3.checkpoint"]
    result = hoard.run("delete", str(several), "tue-1", "tue-1")
    assert result.rc == 1
    assert result.err == "Archive tue-1 not found (2/2).\n"
    assert remaining(hoard, several) == ["mon-3.checkpoint"]


def test_unknown_archive_alone_is_a_warning(hoard: Hoard, several: Path) -> None:
    result = hoard.run("delete", f"{several}::nope")
    assert (result.rc, result.err) == (1, "Archive nope not found (1/1).\n")
    assert len(remaining(hoard, several)) == 4


def test_dry_run_list(hoard: Hoard, several: Path) -> None:
    ids = archive_ids(hoard, several)
    result = hoard("delete", "--dry-run", "--list", "-a", "mon-*", str(several))
    assert result.out == ""
    assert result.err.splitlines() == [
        f"Would delete archive: {'mon-1':<36} Fri, 2022-03-04 05:06:07 [{ids['mon-1']}] (1/3)",
        f"Would delete archive: {'mon-2':<36} Sun, 2022-03-06 05:06:07 [{ids['mon-2']}] (2/3)",
        f"Would delete archive: {'mon-3.checkpoint':<36} Mon, 2022-03-07 05:06:07 "
        f"[{ids['mon-3.checkpoint']}] (3/3)",
    ]
    assert len(remaining(hoard, several)) == 4


def test_list_shows_what_is_deleted(hoard: Hoard, several: Path) -> None:
    ids = archive_ids(hoard, several)
    result = hoard("delete", "--list", f"{several}::tue-1")
    assert result.err == (
        f"Deleting archive: {'tue-1':<36} Sat, 2022-03-05 05:06:07 [{ids['tue-1']}] (1/1)\n"
    )


@pytest.mark.parametrize(
    ("options", "left"),
    [
        (["-a", "mon-*"], ["tue-1"]),  # checkpoints are included when filtering
        (["--first", "2"], ["mon-2", "mon-3.checkpoint"]),
        (["--last", "1"], ["mon-1", "tue-1", "mon-2"]),
        (["--last", "1", "--sort-by", "name"], ["mon-1", "mon-2", "mon-3.checkpoint"]),
        (["-P", "mon"], ["tue-1"]),
        (["-a", "nothing*"], ["mon-1", "tue-1", "mon-2", "mon-3.checkpoint"]),
    ],
)
def test_filters(hoard: Hoard, several: Path, options: list[str], left: list[str]) -> None:
    hoard("delete", *options, str(several))
    assert remaining(hoard, several) == left


def test_stats(hoard: Hoard, repo: Path, tree: Path) -> None:
    hoard.env["TZ"] = "UTC"
    create(hoard, repo, "one", tree)
    create(hoard, repo, "same", tree, day=5)
    (tree / "data" / "big.bin").write_bytes(random.Random(1).randbytes(2_000_000))
    create(hoard, repo, "bigger", tree, day=6)
    info = json.loads(hoard("info", "--json", "-a", "*", str(repo)).out)
    stats = {a["name"]: a["stats"] for a in info["archives"]}
    result = hoard("delete", "--stats", f"{repo}::bigger")
    lines = result.err.splitlines()
    assert lines[0] == SEPARATOR
    assert lines[1].split() == ["Original", "size", "Compressed", "size", "Deduplicated", "size"]
    deleted = lines[2].split()
    assert deleted[:2] == ["Deleted", "data:"]
    assert deleted[2] == f"-{stats['bigger']['original_size'] / 1e6:.2f}"
    assert deleted[-2:] == [f"-{stats['bigger']['deduplicated_size'] / 1e6:.2f}", "MB"]
    assert stats["bigger"]["deduplicated_size"] > 2_000_000  # big.bin is only there
    assert lines[3].startswith("All archives:")
    assert lines[-1] == SEPARATOR
    result = hoard("delete", "--stats", f"{repo}::same")
    assert result.err.splitlines()[2].split()[-2:] == ["0", "B"]  # "one" holds the same


def test_mixing_names_and_filters_is_refused(hoard: Hoard, several: Path) -> None:
    result = hoard.run("delete", "-a", "mon-*", str(several), "tue-1")
    assert_error(
        result, "Command Error: Mixing archive filters and explicitly named archives is not"
    )
    assert_error(hoard.run("delete", "--last", "1", f"{several}::mon-1"), "Mixing archive")
    assert len(remaining(hoard, several)) == 4


def test_bad_filter_values(hoard: Hoard, several: Path) -> None:
    assert_error(hoard.run("delete", "--first", "0", str(several)), "positive integer")
    assert_error(hoard.run("delete", "--sort-by", "x", "-a", "*", str(several)), "Invalid sort key")


def test_missing_repository(hoard: Hoard, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert_error(hoard.run("delete", f"{missing}::a"), f"Repository {missing} does not exist")
    assert_error(
        hoard.run("delete", str(missing), env={CONFIRM: "YES"}),
        f"Repository {missing} does not exist",
    )


# --- the whole repository ----------------------------------------------------------------------


def local_state(hoard: Hoard, repo: Path) -> tuple[Path, Path]:
    repo_id = json.loads(hoard("info", "--json", str(repo)).out)["repository"]["id"]
    cache = hoard.base / ".cache" / "hoard" / repo_id
    security = hoard.base / ".config" / "hoard" / "security" / repo_id
    security.mkdir(parents=True, exist_ok=True)  # as a later hoard may keep one
    assert cache.is_dir()
    return cache, security


def test_repository_delete_asks_and_no_answer_cancels(hoard: Hoard, several: Path) -> None:
    ids = archive_ids(hoard, several)
    repo_id = json.loads(hoard("info", "--json", str(several)).out)["repository"]["id"]
    result = hoard.run("delete", "--list", str(several), input=b"")
    assert result.rc == 2
    assert result.err.splitlines() == [
        "You requested to completely DELETE the following repository *including* 4 archives "
        "it contains:",
        SEPARATOR,
        f"Repository ID: {repo_id}",
        f"Location: {several}",
        "",
        "Archives:",
        f"{'mon-1':<36} Fri, 2022-03-04 05:06:07 [{ids['mon-1']}]",
        f"{'tue-1':<36} Sat, 2022-03-05 05:06:07 [{ids['tue-1']}]",
        f"{'mon-2':<36} Sun, 2022-03-06 05:06:07 [{ids['mon-2']}]",
        f"{'mon-3.checkpoint':<36} Mon, 2022-03-07 05:06:07 [{ids['mon-3.checkpoint']}]",
        SEPARATOR,
        "Type 'YES' if you understand this and want to continue: Aborting.",
        "Cancelled by user.",
    ]
    assert "Traceback" not in result.err
    assert (several / "config").is_file()


@pytest.mark.parametrize(
    ("answer", "message"),
    [(b"no\n", "Aborting."), (b"yes\n", "Invalid answer, aborting."), (b"\n", None)],
)
def test_anything_but_yes_cancels(
    hoard: Hoard, repo: Path, answer: bytes, message: str | None
) -> None:
    result = hoard.run("delete", str(repo), input=answer)
    assert result.rc == 2
    lines = result.err.splitlines()
    prompt = "Type 'YES' if you understand this and want to continue: "
    if message is None:  # an empty answer means "the default": no, silently
        assert lines[-1] == prompt + "Cancelled by user."
    else:
        assert lines[-2:] == [prompt + message, "Cancelled by user."]
    assert "*including* 0 archives" in lines[0]
    assert (repo / "config").is_file()
    assert hoard.run("delete", str(repo), env={CONFIRM: "no"}).rc == 2
    assert (repo / "config").is_file()


def test_typed_yes_deletes_repository_cache_and_security_info(hoard: Hoard, several: Path) -> None:
    cache, security = local_state(hoard, several)
    result = hoard("delete", str(several), input=b"YES\n")
    assert result.err.splitlines()[-1] == "Type 'YES' if you understand this and want to continue: "
    assert not several.exists()
    assert not cache.exists()
    assert not security.exists()


@pytest.mark.parametrize("variable", [CONFIRM, "HOARD_DELETE_I_KNOW_WHAT_I_AM_DOING"])
def test_environment_answers(hoard: Hoard, repo: Path, variable: str) -> None:
    result = hoard("delete", "--keep-security-info", str(repo), env={variable: "YES"})
    assert result.err.splitlines()[-1].endswith(f"continue: YES (from {variable})")
    assert not repo.exists()


def test_keep_security_info_and_key_file(hoard: Hoard, tmp_path: Path) -> None:
    repo = tmp_path / "krepo"
    hoard("init", "--encryption", "keyfile", repo)
    cache, security = local_state(hoard, repo)
    keyfile = Path(json.loads(hoard("info", "--json", str(repo)).out)["encryption"]["keyfile"])
    hoard("delete", "--keep-security-info", str(repo), env={CONFIRM: "YES"})
    assert not repo.exists()
    assert not cache.exists()
    assert security.is_dir()
    assert keyfile.is_file()  # as Borg: a copy of the repository may still need it


def test_force_does_not_ask(hoard: Hoard, repo: Path) -> None:
    result = hoard("delete", "--force", str(repo), input=b"")
    assert (result.out, result.err) == ("", "")
    assert not repo.exists()


def test_dry_run_keeps_everything(hoard: Hoard, repo: Path) -> None:
    cache, security = local_state(hoard, repo)
    result = hoard("delete", "--dry-run", "--force", "--info", str(repo))
    assert result.err.splitlines() == [
        "Would delete repository.",
        "Would delete security info.",
        "Would delete cache.",
    ]
    assert (repo / "config").is_file()
    assert cache.is_dir()
    assert security.is_dir()


def test_cache_only(hoard: Hoard, repo: Path) -> None:
    cache, security = local_state(hoard, repo)
    hoard("delete", "--cache-only", str(repo))
    assert not cache.exists()
    assert security.is_dir()
    assert (repo / "config").is_file()
    assert hoard("list", str(repo)).rc == 0


def test_an_exclusive_lock_holder_blocks_deleting(hoard: Hoard, several: Path) -> None:
    with Lock(LocalStorage(several), exclusive=True, lock_wait=0, command="test"):
        for args in (["delete", f"{several}::mon-1"], ["delete", "--force", str(several)]):
            result = hoard.run("--lock-wait", "0", *args)
            assert_error(result, "Failed to create/acquire the lock")
    assert len(remaining(hoard, several)) == 4
    hoard("delete", f"{several}::mon-1")  # released: shared lock taken and given back
    hoard("delete", "--force", str(several))
    assert not several.exists()
