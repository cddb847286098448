"""``hoard benchmark crud`` prints Borg's lines and leaves nothing behind."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.conftest import Hoard

LINE = re.compile(
    r"^[CRUD]-[ZR]-TEST {5}\s*\d+\.\d\d MB/s \(1 \* 1 B (all-zero|random) files: \d+\.\d\ds\)$"
)


def test_crud_lines_and_cleanup(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # Borg's test switch: one 1-byte file per data set instead of gigabytes
    result = hoard("benchmark", "crud", repo, data, env={"_BORG_BENCHMARK_CRUD_TEST": "1"})
    lines = result.out.splitlines()
    assert [line[:8] for line in lines] == [
        f"{step}-{kind}-TEST" for kind in "ZR" for step in "CRUD"
    ]
    assert all(LINE.match(line) for line in lines), lines
    assert list(data.iterdir()) == []
    assert hoard("list", repo).out == ""


def test_crud_needs_an_existing_repository(hoard: Hoard, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    missing = hoard.run(
        "benchmark",
        "crud",
        tmp_path / "nothing",
        tmp_path / "data",
        env={"_BORG_BENCHMARK_CRUD_TEST": "1"},
    )
    assert missing.rc == 2 and "benchmark step 'hoard create' failed" in missing.err
    assert list((tmp_path / "data").iterdir()) == []
    assert hoard("benchmark").out.count("crud") == 1
