"""``--quick-stats`` on create, delete and prune, its exclusion with
``--stats`` and both being dropped on a dry run, as Borg 1.4.5 does them
(each expectation names the Borg command line it was taken from)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Hoard


@pytest.fixture
def source(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("hi\n")
    return tmp_path


@pytest.mark.parametrize(
    "command", [["create", "::a", "src"], ["delete", "::a"], ["prune", "--keep-last", "1"]]
)
def test_stats_and_quick_stats_exclude_each_other(
    hoard: Hoard, repo: Path, source: Path, command: list[str]
) -> None:
    # borg create --stats --quick-stats repo::a src  ->  rc 2, usage and:
    # "borg: error: --stats and --quick-stats are mutually exclusive."
    name, *rest = command
    args = [f"{repo}{a}" if a.startswith("::") else a for a in rest]
    if name == "prune":
        args.append(str(repo))
    result = hoard.run(name, "--stats", "--quick-stats", *args, cwd=source)
    assert result.rc == 2
    assert result.err.splitlines()[-1] == (
        "hoard: error: --stats and --quick-stats are mutually exclusive."
    )


def test_create_quick_stats_has_no_repository_totals(
    hoard: Hoard, repo: Path, source: Path
) -> None:
    # borg create --quick-stats repo::a src: the archive block, "This archive:"
    # and no "All archives:" / "Chunk index:" lines
    text = hoard("create", "--quick-stats", f"{repo}::a", "src", cwd=source).err
    assert "This archive:" in text and "Archive name: a" in text
    assert "All archives:" not in text and "Chunk index:" not in text
    full = hoard("create", "--stats", f"{repo}::b", "src", cwd=source).err
    assert "All archives:" in full
    quick_json = hoard("create", "--json", "--quick-stats", f"{repo}::c", "src", cwd=source)
    data = json.loads(quick_json.out)
    assert "cache" not in data and data["archive"]["name"] == "c"  # Borg: cache=None


def test_delete_quick_stats_has_no_repository_totals(
    hoard: Hoard, repo: Path, source: Path
) -> None:
    # borg delete --quick-stats repo::a: "Deleted data:" between dashes, no "All archives:"
    hoard("create", f"{repo}::a", "src", cwd=source)
    text = hoard("delete", "--quick-stats", f"{repo}::a").err
    assert "Deleted data:" in text and "All archives:" not in text


@pytest.mark.parametrize("option", ["--stats", "--quick-stats"])
def test_dry_run_drops_the_stats_with_a_warning(
    hoard: Hoard, repo: Path, source: Path, option: str
) -> None:
    # borg create --dry-run --quick-stats repo::b src  ->  rc 0 and
    # "Ignoring --quick-stats. It is not supported when using --dry-run."
    result = hoard.run("create", "--dry-run", option, f"{repo}::b", "src", cwd=source)
    assert result.rc == 0
    assert f"Ignoring {option}. It is not supported when using --dry-run." in result.err
    assert "This archive:" not in result.err


def test_stats_with_log_json_are_one_record_per_line(
    hoard: Hoard, repo: Path, source: Path
) -> None:
    # borg --log-json create --stats R::a src: a log_message per line of the
    # block, name "borg.output.stats" (hoard: "hoard.output.stats")
    err = hoard("--log-json", "create", "--stats", f"{repo}::a", "src", cwd=source).err
    records = [json.loads(line) for line in err.splitlines()]
    stats = [r for r in records if r.get("name") == "hoard.output.stats"]
    assert stats and all("\n" not in r["message"] for r in stats)
    assert stats[0]["message"] == "-" * 78 and stats[-1]["message"] == "-" * 78
    assert any(r["message"].startswith("This archive:") for r in stats)
    assert all(r["type"] == "log_message" and r["levelname"] == "INFO" for r in stats)
