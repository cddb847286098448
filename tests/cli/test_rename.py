"""``hoard rename``: a new name (placeholders expanded), a new id, nothing else changed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from hoard.repository.lock import Lock
from hoard.storage.local import LocalStorage
from tests.cli.conftest import Hoard
from tests.cli.test_list import assert_error, build_tree, create


@pytest.fixture
def two(hoard: Hoard, repo: Path, tmp_path: Path) -> Path:
    """Archives ``a`` (with a comment) and ``b``."""
    hoard.env["TZ"] = "UTC"
    tree = build_tree(tmp_path / "src")
    create(hoard, repo, "a", tree, "--comment", "keep me")
    create(hoard, repo, "b", tree, day=5)
    return repo


def archives(hoard: Hoard, repo: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(hoard("info", "--json", "-a", "*", str(repo)).out)
    return {a["name"]: a for a in data["archives"]}


def test_rename_keeps_everything_but_name_and_id(hoard: Hoard, two: Path) -> None:
    before = archives(hoard, two)
    items = hoard("list", f"{two}::a").out
    result = hoard("rename", f"{two}::a", "renamed")
    assert (result.out, result.err) == ("", "")
    after = archives(hoard, two)
    assert sorted(after) == ["b", "renamed"]
    old, new = before["a"], after["renamed"]
    assert new["id"] != old["id"]
    assert {**new, "name": "a", "id": old["id"]} == old
    assert after["b"] == before["b"]
    assert hoard("list", f"{two}::renamed").out == items
    assert hoard("list", "--short", str(two)).out == "renamed\nb\n"


def test_new_name_takes_placeholders(hoard: Hoard, two: Path) -> None:
    hoard("rename", f"{two}::b", "b-{now:%Y}-{user}")
    (renamed,) = [n for n in archives(hoard, two) if n.startswith("b-")]
    year = time.strftime("%Y")
    assert renamed.startswith(f"b-{year}-")
    assert len(renamed) > len(f"b-{year}-")


def test_existing_name_is_refused(hoard: Hoard, two: Path) -> None:
    assert_error(hoard.run("rename", f"{two}::a", "b"), "Archive b already exists")
    assert sorted(archives(hoard, two)) == ["a", "b"]


def test_unknown_archive(hoard: Hoard, two: Path) -> None:
    assert_error(hoard.run("rename", f"{two}::nope", "c"), "Archive nope does not exist")


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("x/y", 'Invalid archive name: "x/y"'),
        ("x::y", 'Invalid archive name: "x::y"'),
        ("", 'Invalid archive name: ""'),
        ("{nope}", "Invalid placeholder"),
    ],
)
def test_invalid_new_names(hoard: Hoard, two: Path, new: str, message: str) -> None:
    assert_error(hoard.run("rename", f"{two}::a", new), message)
    assert sorted(archives(hoard, two)) == ["a", "b"]


def test_needs_an_archive(hoard: Hoard, two: Path, tmp_path: Path) -> None:
    assert_error(hoard.run("rename", str(two), "c"), "rename needs an archive")
    missing = tmp_path / "missing"
    assert_error(hoard.run("rename", f"{missing}::a", "c"), f"Repository {missing} does not exist")


def test_an_exclusive_lock_holder_blocks_renaming(hoard: Hoard, two: Path) -> None:
    with Lock(LocalStorage(two), exclusive=True, lock_wait=0, command="test"):
        result = hoard.run("--lock-wait", "0", "rename", f"{two}::a", "c")
        assert_error(result, "Failed to create/acquire the lock")
    assert sorted(archives(hoard, two)) == ["a", "b"]
