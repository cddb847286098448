"""``hoard prune``: --list wording, --dry-run, checkpoints, -a/--prefix, --stats, errors.

The repository is made once per module (archives of series ``a-`` and
``b-`` at fixed UTC times, two checkpoints) and copied for every test, so
each test prunes its own copy with its own cache.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hoard.commands.stats import format_file_size
from hoard.repository.lock import Lock
from hoard.storage.local import LocalStorage
from tests.cli.conftest import Hoard, Result
from tests.cli.test_list import assert_error, build_tree

ARCHIVES = {
    "a-0.checkpoint": "2023-05-31T10:00:00",
    "a-1": "2023-06-01T10:00:00",
    "a-2": "2023-06-02T10:00:00",
    "b-1": "2023-06-02T12:00:00",
    "a-3": "2023-06-03T08:00:00",
    "a-3b": "2023-06-03T20:00:00",
    "a-4.checkpoint": "2023-06-04T09:00:00",
}
"""Name -> start time (UTC); each archive has a file only it holds."""

DAY_NAMES = {"31": "Wed", "01": "Thu", "02": "Fri", "03": "Sat", "04": "Sun"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("prune")
    (base / "home").mkdir()
    hoard = Hoard(base / "home")
    repo = base / "repo"
    hoard("init", "--encryption", "repokey", repo)
    tree = build_tree(base / "src")
    for name, when in ARCHIVES.items():
        (tree / "data" / "own.txt").write_text(f"only in {name}\n" * 50)
        hoard("create", "--timestamp", when + "+00:00", f"{repo}::{name}", "data", cwd=tree)
    return repo


@pytest.fixture
def repo(template: Path, tmp_path: Path, hoard: Hoard) -> Path:
    hoard.env["TZ"] = "UTC"
    copy = tmp_path / "repo"
    shutil.copytree(template, copy)
    return copy


def remaining(hoard: Hoard, repo: Path) -> list[str]:
    listed = hoard("list", "--consider-checkpoints", "--format", "{archive}{NL}", str(repo))
    return sorted(listed.out.splitlines())


def archive_ids(hoard: Hoard, repo: Path) -> dict[str, str]:
    data = json.loads(hoard("list", "--json", "--consider-checkpoints", str(repo)).out)
    return {a["name"]: a["id"] for a in data["archives"]}


def line(message: str, name: str, ids: dict[str, str], when: str | None = None) -> str:
    """Borg's ``--list`` line: message padded to 44, then the archive line (UTC)."""
    stamp = when or ARCHIVES[name]
    day, clock = stamp.split("T")
    shown = f"{DAY_NAMES[day[-2:]]}, {day} {clock}"
    return f"{message:<44} {name:<36} {shown} [{ids[name]}]"


def prune(hoard: Hoard, repo: Path, *args: str) -> Result:
    return hoard("prune", *args, str(repo))


# --- --list, --dry-run, deleting ---------------------------------------------------------


def test_dry_run_lists_what_it_would_do(hoard: Hoard, repo: Path) -> None:
    ids = archive_ids(hoard, repo)
    result = prune(hoard, repo, "--list", "--dry-run", "--keep-daily", "2", "-a", "a-*")
    assert result.out == ""
    assert result.err.splitlines() == [
        line("Keeping checkpoint archive:", "a-4.checkpoint", ids),
        line("Keeping archive (rule: daily #1):", "a-3b", ids),
        line("Would prune:", "a-3", ids),
        line("Keeping archive (rule: daily #2):", "a-2", ids),
        line("Would prune:", "a-1", ids),
        line("Would prune:", "a-0.checkpoint", ids),
    ]
    assert remaining(hoard, repo) == sorted(ARCHIVES)


def test_prune_deletes_newest_first(hoard: Hoard, repo: Path) -> None:
    ids = archive_ids(hoard, repo)
    result = prune(hoard, repo, "--list", "-d", "2", "-a", "a-*")
    assert result.err.splitlines() == [
        line("Keeping checkpoint archive:", "a-4.checkpoint", ids),
        line("Keeping archive (rule: daily #1):", "a-3b", ids),
        line("Pruning archive (1/3):", "a-3", ids),
        line("Keeping archive (rule: daily #2):", "a-2", ids),
        line("Pruning archive (2/3):", "a-1", ids),
        line("Pruning archive (3/3):", "a-0.checkpoint", ids),
    ]
    assert remaining(hoard, repo) == ["a-2", "a-3b", "a-4.checkpoint", "b-1"]
    # the kept archives are intact
    assert "data/own.txt" in hoard("list", "--short", f"{repo}::a-2").out.splitlines()


def test_without_list_prune_is_silent(hoard: Hoard, repo: Path) -> None:
    result = prune(hoard, repo, "--keep-last", "2")
    assert (result.out, result.err) == ("", "")
    # all series together: the newest checkpoint is the newest archive, so it stays
    assert remaining(hoard, repo) == ["a-3", "a-3b", "a-4.checkpoint"]


def test_info_counts(hoard: Hoard, repo: Path) -> None:
    result = prune(hoard, repo, "-v", "--dry-run", "-d", "2", "-a", "a-*")
    assert result.err.splitlines() == [
        "Repository contains 5 normal archives and 2 checkpoint archives.",
        "Applying rules to the matching 4 archives and 2 checkpoints...",
        "Keeping 2 archives and 1 checkpoints, pruning 2 archives and 1 checkpoints.",
    ]


def test_oldest_kept_when_a_rule_is_not_filled(hoard: Hoard, repo: Path) -> None:
    ids = archive_ids(hoard, repo)
    result = prune(hoard, repo, "--list", "--dry-run", "--keep-monthly", "3", "-a", "b-*")
    assert result.err.splitlines() == [line("Keeping archive (rule: monthly #1):", "b-1", ids)]
    result = prune(hoard, repo, "--list", "--dry-run", "-d", "1", "-m", "3", "-a", "a-[123]*")
    assert result.err.splitlines()[-1] == line(
        "Keeping archive (rule: monthly[oldest] #1):", "a-1", ids
    )


def test_rules_use_local_time(hoard: Hoard, repo: Path) -> None:
    """In Tokyo a-3 (17:00) and a-3b (05:00 next day) are on different days."""
    hoard.env["TZ"] = "Asia/Tokyo"
    prune(hoard, repo, "-d", "2", "-a", "a-*")
    assert remaining(hoard, repo) == ["a-3", "a-3b", "a-4.checkpoint", "b-1"]


def test_keep_within(hoard: Hoard, tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    hoard("init", "--encryption", "none", repo)
    tree = build_tree(tmp_path / "src")
    now = datetime.now(UTC).replace(microsecond=0)
    for name, age in (("old", timedelta(days=3)), ("new", timedelta(hours=1))):
        stamp = (now - age).isoformat()
        hoard("create", "--timestamp", stamp, f"{repo}::{name}", "data", cwd=tree)
    result = prune(hoard, repo, "--list", "--keep-within", "2d")
    kept, pruned = result.err.splitlines()
    assert kept.startswith(f"{'Keeping archive (rule: within #1):':<44} new ")
    assert pruned.startswith(f"{'Pruning archive (1/1):':<44} old ")
    assert remaining(hoard, repo) == ["new"]


# --- checkpoints and the archive filter -------------------------------------------------


def test_glob_matches_the_archives_checkpoints(hoard: Hoard, repo: Path) -> None:
    """``-a a-0`` matches ``a-0.checkpoint``; the only (so newest) match is kept."""
    ids = archive_ids(hoard, repo)
    result = prune(hoard, repo, "--list", "--dry-run", "--keep-last", "1", "-a", "a-0")
    assert result.err.splitlines() == [line("Keeping checkpoint archive:", "a-0.checkpoint", ids)]


def test_checkpoint_older_than_an_archive_is_pruned(hoard: Hoard, repo: Path) -> None:
    prune(hoard, repo, "--keep-last", "10", "-a", "a-[01]*")
    assert "a-0.checkpoint" not in remaining(hoard, repo)
    assert "a-1" in remaining(hoard, repo)


def test_prefix_is_deprecated_but_works(hoard: Hoard, repo: Path) -> None:
    result = prune(hoard, repo, "--list", "--dry-run", "--keep-last", "1", "--prefix", "b-")
    lines = result.err.splitlines()
    assert lines[0] == (
        'Warning: "--prefix" has been deprecated. '
        "Use \"--glob-archives 'yourprefix*'\" (-a) instead."
    )
    assert [x[45:].split()[0] for x in lines[1:]] == ["b-1"]
    short = prune(hoard, repo, "--list", "--dry-run", "--keep-last", "1", "-P", "b-")
    assert short.err.splitlines() == lines[1:]


# --- --stats ---------------------------------------------------------------------------------


def stats_lines(result: Result) -> list[str]:
    return [x for x in result.err.splitlines() if x.startswith(("Deleted data:", "All archives:"))]


def test_stats(hoard: Hoard, repo: Path) -> None:
    info = json.loads(hoard("info", "--json", "-a", "*", str(repo)).out)
    sizes = {a["name"]: a["stats"]["original_size"] for a in info["archives"]}
    original = sizes["a-3"] + sizes["a-1"] + sizes["a-0.checkpoint"]
    result = prune(hoard, repo, "--stats", "-d", "2", "-a", "a-*")
    assert result.err.startswith("-" * 78 + "\n")
    deleted, total = stats_lines(result)
    figures = deleted.split()[2:]
    assert " ".join(figures[:2]) == format_file_size(-original)
    assert all(value.startswith("-") for value in figures[::2]), deleted
    assert figures[-2] != "0"  # each archive had a file of its own: compact will free it
    assert total.startswith("All archives:")
    assert "Chunk index:" in result.err


def test_quick_stats_leave_out_the_repository(hoard: Hoard, repo: Path) -> None:
    result = prune(hoard, repo, "--quick-stats", "-d", "2", "-a", "a-*")
    assert [x.split(":")[0] for x in stats_lines(result)] == ["Deleted data"]
    assert "Chunk index:" not in result.err


def test_stats_are_ignored_on_a_dry_run(hoard: Hoard, repo: Path) -> None:
    result = prune(hoard, repo, "--stats", "--dry-run", "-d", "1")
    assert result.err == "Ignoring --stats. It is not supported when using --dry-run.\n"
    assert remaining(hoard, repo) == sorted(ARCHIVES)


def test_progress_json(hoard: Hoard, repo: Path) -> None:
    result = prune(hoard, repo, "--progress", "--log-json", "-d", "1", "-a", "a-*")
    records = [json.loads(x) for x in result.err.splitlines()]
    shown = [r for r in records if not r["finished"]]  # at most 5 a second: the first at least
    assert (shown[0]["message"], shown[0]["current"], shown[0]["total"]) == (
        "Pruning archives   0%",
        0,
        4,
    )
    assert {r["msgid"] for r in records} == {"prune"}
    assert records[-1]["finished"] is True


# --- errors ----------------------------------------------------------------------------------


def test_no_rule_is_an_error(hoard: Hoard, repo: Path) -> None:
    result = hoard.run("prune", "--list", str(repo))
    assert_error(result, 'Command Error: At least one of the "keep-within", "keep-last", ')
    assert result.err.rstrip().endswith('or "keep-yearly" settings must be specified.')
    assert remaining(hoard, repo) == sorted(ARCHIVES)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--keep-within", "5"],
            'argument --keep-within: Unexpected interval time unit "5": '
            "expected one of ['H', 'd', 'w', 'm', 'y']",
        ),
        (
            ["--keep-within", "food"],
            'argument --keep-within: Unexpected interval number "foo": '
            "expected an integer greater than 0",
        ),
        (["--keep-daily", "x"], "argument -d/--keep-daily: invalid int value: 'x'"),
        (
            ["--keep-13weekly", "1", "--keep-3monthly", "1"],
            "argument --keep-3monthly: not allowed with argument --keep-13weekly",
        ),
    ],
)
def test_bad_options_are_argparse_errors(
    hoard: Hoard, repo: Path, args: list[str], message: str
) -> None:
    result = hoard.run("prune", *args, str(repo))
    assert result.rc == 2, str(result)
    assert "Traceback" not in result.err
    assert result.err.splitlines()[-1] == f"hoard prune: error: {message}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-d", "1", "{repo}::a-1"],
            'argument REPOSITORY: "{repo}::a-1": No archive can be specified',
        ),
        (["-d", "1", "-a", "a*", "-P", "a", "{repo}"], "not allowed with argument -P/--prefix"),
        (["-d", "1", "-a", "a*", "-a", "b*", "{repo}"], "There can be only one."),
        (["-d", "1", "{repo}-missing"], "does not exist"),
    ],
)
def test_errors_are_one_line(hoard: Hoard, repo: Path, args: list[str], message: str) -> None:
    result = hoard.run("prune", *[a.format(repo=repo) for a in args])
    assert_error(result, message.format(repo=repo))
    assert remaining(hoard, repo) == sorted(ARCHIVES)


def test_an_exclusive_lock_holder_blocks_pruning(hoard: Hoard, repo: Path) -> None:
    with Lock(LocalStorage(repo), exclusive=True, lock_wait=0, command="test"):
        result = hoard.run("--lock-wait", "0", "prune", "-d", "1", str(repo))
        assert_error(result, "Failed to create/acquire the lock")
    assert remaining(hoard, repo) == sorted(ARCHIVES)
    prune(hoard, repo, "-d", "1")  # released: the shared lock is taken and given back
    assert remaining(hoard, repo) == ["a-3b", "a-4.checkpoint"]
