"""The files cache in ``hoard create``: unchanged files are not read again.

What a backup read is taken from its ``--debug`` log line ``Files read: N
bytes``, the count of bytes the Creator's reader actually got from the
file system (``ReadStats``), so "not read" is measured, not inferred from
timing. Trees are made older than the racy-timestamp window (2 s before
the backup's start) by waiting, as ctimes cannot be set; and, as Borg's FAQ
advises, a small stamp file is written just before each backup, so that it,
not a file of the tree, is the newest file, which is never trusted from the
cache (see docs/design/files-cache.md, racy timestamps).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from tests.cli.conftest import Hoard, Result
from tests.cli.trees import compare_trees

RACY_WINDOW = 2.1
"""Seconds after which a file's ctime is older than (backup start - 2 s)."""
STAMP = "src/zz-stamp"


def list_lines(result: Result) -> dict[str, str]:
    """path -> status letter of ``create --list`` (stderr, as Borg)."""
    lines: dict[str, str] = {}
    for line in result.err.splitlines():
        status, sep, path = line.partition(" ")
        if sep and len(status) == 1 and not line.startswith(("Files", "Checkpoint")):
            lines[path] = status
    return lines


def bytes_read(result: Result) -> int:
    found = re.search(r"Files read: (\d+) bytes", result.err)
    assert found, str(result)
    return int(found.group(1))


def backup(
    hoard: Hoard,
    repo: Path,
    name: str,
    tmp_path: Path,
    *options: str,
    env: dict[str, str] | None = None,
) -> Result:
    """Write the stamp (the newest file), then ``create --debug --list``."""
    (tmp_path / STAMP).write_text(f"{time.time_ns()}\n")
    args = ("--debug", "create", "--list", *options, f"{repo}::{name}", "src")
    return hoard(*args, cwd=tmp_path, env=env)


def file_statuses(result: Result) -> dict[str, str]:
    """Status of each file of the tree (the stamp and directories left out)."""
    return {p: s for p, s in list_lines(result).items() if s != "d" and p != STAMP}


def stamp_size(tmp_path: Path) -> int:
    return (tmp_path / STAMP).stat().st_size


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        sub = root / f"d{i % 20:02}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05}").write_bytes(os.urandom(200 + i % 1500))
    (root / "big").write_bytes(os.urandom(3 * 1024 * 1024))


def extracted(hoard: Hoard, repo: Path, name: str, tmp_path: Path) -> Path:
    dest = tmp_path / f"x-{name}"
    dest.mkdir()
    hoard("extract", f"{repo}::{name}", cwd=dest)
    return dest / "src"


def test_unchanged_tree_is_not_read(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    make_tree(tmp_path / "src", 3000)
    time.sleep(RACY_WINDOW)
    first = backup(hoard, repo, "one", tmp_path)
    second = backup(hoard, repo, "two", tmp_path)
    assert set(file_statuses(first).values()) == {"A"}
    statuses = file_statuses(second)
    assert len(statuses) == 3001
    assert set(statuses.values()) == {"U"}
    assert bytes_read(first) > 3 * 1024 * 1024
    assert list_lines(second)[STAMP] == "A"  # the newest file: never trusted (racy)
    assert bytes_read(second) * 5 < bytes_read(first)
    assert bytes_read(second) == stamp_size(tmp_path)
    assert compare_trees(tmp_path / "src", extracted(hoard, repo, "two", tmp_path)) == []


def test_modified_file_is_read_again(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    make_tree(tmp_path / "src", 30)
    time.sleep(RACY_WINDOW)
    backup(hoard, repo, "one", tmp_path)
    changed = tmp_path / "src" / "d03" / "f00003"
    changed.write_bytes(b"new content")
    result = backup(hoard, repo, "two", tmp_path)
    statuses = file_statuses(result)
    assert statuses.pop("src/d03/f00003") == "M"
    assert set(statuses.values()) == {"U"}
    assert bytes_read(result) == len(b"new content") + stamp_size(tmp_path)
    assert compare_trees(tmp_path / "src", extracted(hoard, repo, "two", tmp_path)) == []


def test_racy_file_is_read_again_once(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "fresh").write_bytes(b"x" * 5000)
    # A second ahead (and no whole second): newer than the stamp the first
    # backup writes, so it is that backup's newest file (Borg's racy rule).
    ahead = time.time_ns() + 1_000_123_457
    os.utime(src / "fresh", ns=(ahead, ahead))
    assert file_statuses(backup(hoard, repo, "one", tmp_path)) == {"src/fresh": "A"}
    time.sleep(RACY_WINDOW)  # now the second backup's stamp is newer than it
    second = backup(hoard, repo, "two", tmp_path)
    third = backup(hoard, repo, "three", tmp_path)
    assert file_statuses(second) == {"src/fresh": "A"}  # as Borg: racy, not trusted
    assert bytes_read(second) == 5000 + stamp_size(tmp_path)
    assert file_statuses(third) == {"src/fresh": "U"}
    assert bytes_read(third) == stamp_size(tmp_path)


def files_cache_path(hoard: Hoard, suffix: str = "") -> Path:
    name = "files" + (f".{suffix}" if suffix else "")
    found = list((hoard.base / ".cache" / "hoard").glob(f"*/{name}"))
    assert len(found) == 1, found
    return found[0]


def test_damaged_files_cache_means_reading_everything(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    make_tree(tmp_path / "src", 50)
    time.sleep(RACY_WINDOW)
    first = backup(hoard, repo, "one", tmp_path)
    cache = files_cache_path(hoard)
    os.truncate(cache, cache.stat().st_size // 2)
    second = backup(hoard, repo, "two", tmp_path)
    assert "discarded" in second.err
    assert set(file_statuses(second).values()) == {"A"}
    assert bytes_read(second) == bytes_read(first)
    assert compare_trees(tmp_path / "src", extracted(hoard, repo, "two", tmp_path)) == []
    third = backup(hoard, repo, "three", tmp_path)  # the cache was rewritten whole
    assert bytes_read(third) == stamp_size(tmp_path)


def test_modes_suffix_and_ttl(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    make_tree(tmp_path / "src", 10)
    time.sleep(RACY_WINDOW)
    backup(hoard, repo, "one", tmp_path, "--files-cache", "disabled")
    assert not list((hoard.base / ".cache" / "hoard").glob("*/files*"))
    backup(hoard, repo, "two", tmp_path, "--files-cache", "inode,size,mtime")
    mtime_mode = backup(hoard, repo, "three", tmp_path, "--files-cache", "mtime,size,inode")
    assert set(file_statuses(mtime_mode).values()) == {"U"}
    rechunk = backup(hoard, repo, "four", tmp_path, "--files-cache", "rechunk,ctime")
    assert set(file_statuses(rechunk).values()) == {"A"}
    env = {"BORG_FILES_CACHE_SUFFIX": "other"}
    other = backup(hoard, repo, "five", tmp_path, env=env)
    assert set(file_statuses(other).values()) == {"A"}
    assert files_cache_path(hoard, "other").is_file()
    again = backup(hoard, repo, "six", tmp_path, env=env)
    assert set(file_statuses(again).values()) == {"U"}


def test_bad_mode_and_ttl_are_errors(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    bad = hoard.run("create", "--files-cache", "ctime,bogus", f"{repo}::a", "src", cwd=tmp_path)
    assert bad.rc == 2
    assert bad.err.count("\n") == 1
    assert "invalid files cache mode 'ctime,bogus'" in bad.err
    env = {"BORG_FILES_CACHE_TTL": "soon"}
    bad_ttl = hoard.run("create", f"{repo}::a", "src", cwd=tmp_path, env=env)
    assert bad_ttl.rc == 2
    assert "BORG_FILES_CACHE_TTL" in bad_ttl.err
    assert hoard("list", "--consider-checkpoints", repo).out == ""
