"""``create`` with its file reader processes (HOARD_WORKERS) against the walker alone.

Enough small files that the pool starts (it starts after the first 500),
in many directories, so directories wait for their files while the walk
goes on. The archive, the ``--list`` lines and the figures must be those
of ``HOARD_WORKERS=0`` (every file read on the walker thread).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.conftest import Hoard

FILES = 700
LIST_FORMAT = "{mode} {user} {size} {mtime} {path} {xxh64}{NL}"


def _tree(base: Path) -> Path:
    top = base / "data"
    for n in range(FILES):
        path = top / f"d{n // 20:02d}" / f"s{n % 3}" / f"f{n:04d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(n % 97) + b"line\n" * (n % 50))
    (top / "big").write_bytes(os.urandom(5 * 1024 * 1024))  # above the pool's limit
    return top


def _create(hoard: Hoard, repo: Path, name: str, cwd: Path, workers: str) -> tuple[str, dict]:
    result = hoard.run(
        "create", "--list", "--json", f"{repo}::{name}", "data",
        cwd=cwd, env={"HOARD_WORKERS": workers},
    )  # fmt: skip
    assert result.rc == 0, str(result)
    stats = json.loads(result.out)["archive"]["stats"]
    return result.err, stats


def test_workers_give_the_archive_of_the_walker_alone(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    _tree(tmp_path)
    listed0, stats0 = _create(hoard, repo, "alone", tmp_path, "0")
    listed2, stats2 = _create(hoard, repo, "pooled", tmp_path, "2")
    assert listed2 == listed0 and listed0.count("\nA data/") == FILES
    assert {k: v for k, v in stats2.items() if k != "deduplicated_size"} == {
        k: v for k, v in stats0.items() if k != "deduplicated_size"
    }
    assert stats2["nfiles"] == FILES + 1
    contents = [
        hoard("list", "--format", LIST_FORMAT, f"{repo}::{name}").out
        for name in ("alone", "pooled")
    ]
    assert contents[0] == contents[1] and len(contents[0].splitlines()) > FILES


@pytest.mark.parametrize("value", ["-1", "many", "1000"])
def test_a_bad_worker_count_is_a_one_line_error(
    hoard: Hoard, repo: Path, tmp_path: Path, value: str
) -> None:
    (tmp_path / "data").mkdir()
    result = hoard.run("create", f"{repo}::a", "data", cwd=tmp_path, env={"HOARD_WORKERS": value})
    assert result.rc == 2
    assert result.err.strip().splitlines() == [
        f"HOARD_WORKERS must be a number from 0 to 256, not {value!r}"
    ]
    assert hoard("list", "--short", str(repo)).out == ""
