"""``hoard diff`` as a user runs it; expected lines are Borg 1.4.5's for the same changes
(borg diff r::a1 a2 on the same tree, see each test)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.cli.conftest import Hoard
from tests.cli.trees import TreeInfo, build_tree

FIXED = 1_600_000_000  # every mtime set to this, so the lines are exact


def make_tree(root: Path) -> None:
    (root / "d").mkdir(parents=True)
    (root / "gone").mkdir()
    for name, text in (
        ("f1", "one\n"),
        ("f2", "two\n"),
        ("f3", "three\n"),
        ("d/inner", "x\n"),
        ("gone/g", "z\n"),
    ):
        (root / name).write_text(text)
    (root / "ln").symlink_to("f1")
    (root / "big").write_bytes(os.urandom(100_000))


def change_tree(root: Path) -> None:
    with (root / "f1").open("a") as out:
        out.write("one-more\n")
    (root / "f2").chmod(0o755)
    (root / "f3").unlink()
    (root / "f4").write_text("new\n")
    (root / "ln").unlink()
    (root / "ln").symlink_to("f2")
    shutil.rmtree(root / "gone")
    (root / "newdir").mkdir()
    (root / "newdir" / "n").write_text("n\n")
    with (root / "big").open("r+b") as out:
        out.seek(5000)
        out.write(os.urandom(100))


def fix_mtimes(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.utime(path, (FIXED, FIXED), follow_symlinks=False)


def two_archives(hoard: Hoard, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    hoard("init", "-e", "none", repo)
    make_tree(tmp_path / "s")
    fix_mtimes(tmp_path / "s")
    hoard("create", f"{repo}::a1", "s", cwd=tmp_path)
    change_tree(tmp_path / "s")
    fix_mtimes(tmp_path / "s")
    hoard("create", f"{repo}::a2", "s", cwd=tmp_path)
    return repo


def test_content_lines_as_borg(hoard: Hoard, tmp_path: Path) -> None:
    repo = two_archives(hoard, tmp_path)
    # borg 1.4.5: borg diff --content-only --sort-by=path r::a1 a2 (same changes)
    assert hoard("diff", "--content-only", f"{repo}::a1", "a2").out.splitlines() == [
        "+100.0 kB -100.0 kB s/big",
        "    +13 B      -4 B s/f1",
        "removed         6 B s/f3",
        "added           4 B s/f4",
        "removed directory   s/gone",
        "removed         2 B s/gone/g",
        "changed link        s/ln",
        "added directory     s/newdir",
        "added           2 B s/newdir/n",
    ]


def test_metadata_changes_inline(hoard: Hoard, tmp_path: Path) -> None:
    repo = two_archives(hoard, tmp_path)
    lines = hoard("diff", f"{repo}::a1", "a2").out.splitlines()
    f2 = next(line for line in lines if line.endswith(" s/f2"))
    assert f2.startswith("[-rw-r--r-- -> -rwxr-xr-x] [ctime: ")
    assert "[mtime:" not in f2  # mtimes were set to the same value
    only_d = hoard("diff", f"{repo}::a1", "a2", "s/d").out.splitlines()
    assert [line.rsplit(" ", 1)[1] for line in only_d] == ["s/d", "s/d/inner"]
    assert all(line.startswith("[ctime: ") and "] " in line for line in only_d)  # utime's ctime


def test_json_lines_as_borg(hoard: Hoard, tmp_path: Path) -> None:
    repo = two_archives(hoard, tmp_path)
    out = hoard("diff", "--json-lines", "--content-only", f"{repo}::a1", "a2").out
    records = {r["path"]: r["changes"] for r in map(json.loads, out.splitlines())}
    assert records["s/f1"] == [{"type": "modified", "added": 13, "removed": 4}]
    assert records["s/f4"] == [{"type": "added", "size": 4}]
    assert records["s/f3"] == [{"type": "removed", "size": 6}]
    assert records["s/gone"] == [{"type": "removed directory"}]
    assert records["s/ln"] == [{"type": "changed link"}]
    full = hoard("diff", "--json-lines", f"{repo}::a1", "a2").out
    f2 = next(json.loads(line) for line in full.splitlines() if '"s/f2"' in line)
    assert f2["changes"][0] == {"type": "mode", "old_mode": "-rw-r--r--", "new_mode": "-rwxr-xr-x"}


def test_sorting(hoard: Hoard, tmp_path: Path) -> None:
    repo = two_archives(hoard, tmp_path)
    out = hoard("diff", "--content-only", "--sort-by=>size_added,path", f"{repo}::a1", "a2").out
    assert [line.split()[-1] for line in out.splitlines()][:3] == ["s/big", "s/f1", "s/f4"]
    legacy = hoard("diff", "--sort", "--content-only", f"{repo}::a1", "a2")
    assert '"--sort" is deprecated. Use "--sort-by=path" instead.' in legacy.err
    bad = hoard.run("diff", "--sort-by", "colour", f"{repo}::a1", "a2")
    assert bad.rc == 2 and "Invalid field name: colour" in bad.err


def test_patterns_and_unmatched_paths(hoard: Hoard, tmp_path: Path) -> None:
    repo = two_archives(hoard, tmp_path)
    out = hoard("diff", "--content-only", "-e", "s/gone", f"{repo}::a1", "a2", "s").out
    assert "s/gone" not in out and "s/f4" in out
    missing = hoard.run("diff", f"{repo}::a1", "a2", "s/nothing")
    assert missing.rc == 1 and "s/nothing" in missing.err


def test_numeric_ids_and_differently_chunked_archives(hoard: Hoard, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    hoard("init", "-e", "none", repo)
    src = tmp_path / "s"
    src.mkdir()
    (src / "same").write_bytes(os.urandom(300_000))
    (src / "owned").write_text("x\n")
    hoard("create", f"{repo}::a1", "s", cwd=tmp_path)
    os.chown(src / "owned", 1234, 5678)
    hoard(
        "create", "--files-cache", "disabled", "--chunker-params", "buzhash,10,16,12,4095",
        f"{repo}::a2", "s", cwd=tmp_path,
    )  # fmt: skip
    slow = hoard("diff", "--numeric-ids", f"{repo}::a1", "a2")
    assert "--chunker-params are different between archives, diff will be slow." in slow.err
    owned = next(line for line in slow.out.splitlines() if line.endswith("s/owned"))
    assert owned.startswith("[0:0 -> 1234:5678]")
    assert "s/same" not in slow.out  # the same bytes, chunked otherwise: equal
    forced = hoard("diff", "--same-chunker-params", "--content-only", f"{repo}::a1", "a2")
    assert forced.err == "" and "s/same" in forced.out  # ids compared: all look new


def test_round_trip_tree_with_non_utf8_names(hoard: Hoard, tmp_path: Path) -> None:
    info: TreeInfo = build_tree(tmp_path / "src")
    repo = tmp_path / "repo"
    hoard("init", "-e", "none", repo)
    hoard("create", f"{repo}::a1", "src", cwd=tmp_path)
    hoard("create", f"{repo}::a2", "src", cwd=tmp_path)
    assert hoard("diff", "--content-only", f"{repo}::a1", "a2").out == ""
    latin = tmp_path / "src" / os.fsdecode(b"names/caf\xe9")
    with open(latin, "ab") as out:
        out.write(b"more")
    hoard("create", f"{repo}::a3", "src", cwd=tmp_path)
    lines = hoard("diff", "--content-only", f"{repo}::a2", "a3").out.splitlines()
    assert len(lines) == 1 and lines[0].endswith(" src/names/caf?"), lines
    assert lines[0].lstrip().startswith("+")
    assert info.root.exists()
