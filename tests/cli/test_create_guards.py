"""``create`` refusing to lose or misfile data: a lost lock, colliding archive
paths, names that cannot be archive paths, unreadable and vanished files."""

from __future__ import annotations

import os
from pathlib import Path

from hoard.repository.lock import LockRecord, lock_names, utc_now
from hoard.storage.local import LocalStorage

from .conftest import Hoard
from .test_create import MiB, archive_names, archived_paths, fifo_writer

MODERN = {"BORG_EXIT_CODES": "modern"}


# --- a lost lock ----------------------------------------------------------------------------


def blocked_tree(tmp_path: Path) -> Path:
    """A tree whose first file takes a while to store and whose second is a FIFO."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "0-data").write_bytes(os.urandom(2 * MiB))
    os.mkfifo(src / "a-pipe")
    return src


def test_lock_broken_during_create_aborts_before_the_archive(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    src = blocked_tree(tmp_path)

    def break_lock() -> None:  # a second process, as a user would
        assert lock_names(LocalStorage(repo)) != []
        hoard("break-lock", str(repo))

    with fifo_writer(src / "a-pipe", break_lock):
        result = hoard.run(
            "create", "--read-special", "-c", "0.001", f"{repo}::a", "src", cwd=tmp_path
        )
    assert result.rc == 2, str(result)
    [line] = result.err.splitlines()  # one line, no release failure after it
    assert line.startswith(f"Lost the lock {repo}/locks/"), line
    assert "it disappeared (break-lock, or removed as stale by another client)" in line
    assert line.endswith(
        "the backup was aborted before archive 'a' was stored;"
        " its last checkpoint 'a.checkpoint' is kept."
    ), line
    assert archive_names(hoard, repo) == ["a.checkpoint"]
    assert "src/0-data" in archived_paths(hoard, repo, "a.checkpoint")
    hoard("check", str(repo))
    hoard("create", f"{repo}::a", "src/0-data", cwd=tmp_path)  # nothing left locked
    assert sorted(archive_names(hoard, repo)) == ["a"]


def test_lock_replaced_during_create_is_lost_and_left_alone(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    src = blocked_tree(tmp_path)
    storage = LocalStorage(repo)
    stolen: list[str] = []

    def replace_lock() -> None:
        [name] = lock_names(storage)
        record = LockRecord(name, "shared", "elsewhere.example", 777, utc_now())
        storage.store(name, record.to_json(), overwrite=True)
        stolen.append(name)

    with fifo_writer(src / "a-pipe", replace_lock):
        result = hoard.run(
            "create", "--read-special", "-c", "0", f"{repo}::a", "src", env=MODERN, cwd=tmp_path
        )
    assert result.rc == 74, str(result)
    [line] = result.err.splitlines()
    assert line == (
        f"Lost the lock {repo}/{stolen[0]}: it was replaced by another client's lock record;"
        " the backup was aborted before archive 'a' was stored."
    )
    assert archive_names(hoard, repo) == []  # -c 0: no checkpoint was due
    assert lock_names(storage) == stolen  # the other client's record is not ours to delete


def test_bypass_lock_is_not_watched(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    src = blocked_tree(tmp_path)
    with fifo_writer(src / "a-pipe", lambda: hoard("break-lock", str(repo))):
        hoard("create", "--bypass-lock", "--read-special", f"{repo}::a", "src", cwd=tmp_path)
    assert archive_names(hoard, repo) == ["a"]
