"""A 60,000-file tree: the second, unchanged backup reads no file contents.

The files cache must scale: with 60,000 small files in 600 directories, a
second ``hoard create`` of the unchanged tree lists every file as ``U`` and
its ``--debug`` line ``Files read: N bytes in R reads`` shows that only the
stamp file (the newest file, never trusted, see test_incremental.py) was
read. The comparison is of counted bytes, never of time; the wall times are
printed (``pytest -s``) for the record, not asserted. The repository must
barely grow: the second archive shares every chunk and tree of the first.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.cli.conftest import Hoard, Result
from tests.cli.test_incremental import (
    RACY_WINDOW,
    STAMP,
    bytes_read,
    file_statuses,
    list_lines,
    stamp_size,
)

FILES = 60_000
DIRS = 600
MAX_SIZE = 2048
OLD = time.time() - 86_400  # a day ago: far from the racy-timestamp window


def make_big_tree(root: Path) -> int:
    """FILES files of 0..MAX_SIZE bytes, each unique, in DIRS directories; returns total bytes."""
    pool = os.urandom(1 << 20)
    total = 0
    broot = os.fsencode(root)
    os.mkdir(broot)
    for d in range(DIRS):
        sub = broot + b"/d%03d" % d
        os.mkdir(sub)
        for i in range(d, FILES, DIRS):
            size = (i * 7919) % (MAX_SIZE + 1)
            start = (i * 104_729) % (len(pool) - MAX_SIZE)
            data = (i.to_bytes(4, "little") + pool[start : start + size])[:size]
            path = sub + b"/f%05d" % i
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.utime(path, (OLD, OLD))
            total += size
        os.utime(sub, (OLD, OLD))
    return total


def repo_size(repo: Path) -> int:
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())


def create(hoard: Hoard, repo: Path, name: str, tmp_path: Path, *options: str) -> Result:
    """Write the stamp (the newest file), then ``--debug create OPTIONS REPO::NAME src``."""
    (tmp_path / STAMP).write_text(f"{time.time_ns()}\n")
    return hoard("--debug", "create", *options, f"{repo}::{name}", "src", cwd=tmp_path)


def test_unchanged_60000_file_tree_is_not_read(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    total = make_big_tree(tmp_path / "src")
    assert total > 50 * 1024 * 1024  # ~60 MB of content: reading it again would show
    time.sleep(RACY_WINDOW)  # ctimes (not settable) leave the racy window too

    started = time.monotonic()
    first = create(hoard, repo, "one", tmp_path)
    first_wall = time.monotonic() - started
    after_first = repo_size(repo)

    started = time.monotonic()
    second = create(hoard, repo, "two", tmp_path, "--list")
    second_wall = time.monotonic() - started
    after_second = repo_size(repo)
    print(f"\nwall times: first backup {first_wall:.1f} s, second backup {second_wall:.1f} s")
    print(f"bytes read: first {bytes_read(first)}, second {bytes_read(second)}")
    print(f"repository: {after_first} bytes after the first, {after_second} after the second")

    assert bytes_read(first) == total + stamp_size(tmp_path)
    statuses = file_statuses(second)
    assert len(statuses) == FILES
    assert set(statuses.values()) == {"U"}
    assert list_lines(second)[STAMP] == "A"  # the newest file is never trusted (racy)
    assert bytes_read(second) == stamp_size(tmp_path)  # no file of the tree was read
    assert bytes_read(first) / max(1, bytes_read(second)) >= 5
    assert after_second - after_first < after_first / 100
