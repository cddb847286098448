"""``create`` with its file reader processes (HOARD_WORKERS) against the walker alone.

Enough small files that the pool starts (it starts after the first 500),
in many directories, so directories wait for their files while the walk
goes on. The archive, the ``--list`` lines and the figures must be those
of ``HOARD_WORKERS=0`` (every file read on the walker thread).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.conftest import HOARD, Hoard, set_pack_size

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
    """Every file read (files cache off: the second backup must not trust the first's)."""
    result = hoard.run(
        "create", "--list", "--json", "--files-cache=disabled", f"{repo}::{name}", "data",
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


def _start_on_fifo(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> tuple[Path, subprocess.Popen[bytes]]:
    """``create`` of the tree with a FIFO last: the walker blocks on it after
    handing the small files to the pool."""
    top = _tree(tmp_path)
    os.mkfifo(top / "z-pipe")
    proc = subprocess.Popen(
        [HOARD, "create", "--read-special", f"{repo}::a", "data"],
        env={**hoard.env, "HOARD_WORKERS": "2"}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    return top, proc


def test_ctrl_c_with_files_in_the_pool_leaves_a_complete_checkpoint(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    """The walker blocks on a FIFO after handing files to the pool; a Ctrl-C
    then stores a checkpoint holding every one of them, and a rerun finishes."""
    top, proc = _start_on_fifo(hoard, repo, tmp_path)
    writer = open(top / "z-pipe", "wb")  # noqa: SIM115 - returns once hoard opened the FIFO
    with contextlib.suppress(BrokenPipeError), writer:  # hoard closes it when it stops
        writer.write(os.urandom(300_000))
        writer.flush()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while proc.poll() is None:  # the next chunk of the FIFO lets it see the Ctrl-C
            assert time.monotonic() < deadline
            writer.write(os.urandom(1 << 20))
            writer.flush()
            time.sleep(0.2)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.decode() == "Error: Got Ctrl-C / SIGINT.\n"
    listing = hoard("list", "--format", "{path}{NL}", f"{repo}::a.checkpoint").out.splitlines()
    assert sum(1 for p in listing if "/f" in p) == FILES  # every pooled file is in it
    (top / "z-pipe").unlink()
    hoard("create", "--read-special", f"{repo}::a", "data", cwd=tmp_path)
    out = hoard("list", "--consider-checkpoints", "--format", "{archive}{NL}", str(repo)).out
    assert out.splitlines() == ["a"]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie waiting for its new parent is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_workers_end_with_a_killed_main_process(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    """SIGKILL (the OOM killer, a cron timeout) leaves no worker behind holding
    the caller's stdout and stderr open, and nothing is printed."""
    top, proc = _start_on_fifo(hoard, repo, tmp_path)
    with open(top / "z-pipe", "wb") as writer:  # returns once hoard opened the FIFO
        writer.write(b"x" * 1000)
        writer.flush()
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while len(workers) < 2:  # the pool's workers and multiprocessing's resource tracker
            assert time.monotonic() < deadline and proc.poll() is None
            workers = _children(proc.pid)
            time.sleep(0.05)
        proc.kill()
        out, err = proc.communicate(timeout=30)  # EOF: every holder of the pipes ended
    assert proc.returncode == -signal.SIGKILL and (out, err) == (b"", b"")
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in workers):
        assert time.monotonic() < deadline, [p for p in workers if _running(p)]
        time.sleep(0.05)


def _workers_of(pid: int) -> list[int]:
    """The pool's worker processes among ``pid``'s children (not the resource tracker)."""
    found = []
    for child in _children(pid):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def _packs(repo: Path) -> int:
    return sum(1 for p in (repo / "packs").glob("*/*") if len(p.name) == 64)


def _age(repo: Path) -> None:
    """Every file of the repository a day old: past compact's grace period."""
    stamp = time.time() - 86400
    for path in repo.rglob("*"):
        os.utime(path, (stamp, stamp))


def test_a_worker_killed_mid_backup_fails_it_and_leaves_only_garbage(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    """A worker SIGKILLed with packs stored and not yet named by an index file:
    create fails (exit 2) without an archive, ``check`` finds garbage only, a
    rerun completes, and ``compact`` frees the dead worker's packs."""
    set_pack_size(repo, 64 * 1024)
    top, proc = _start_on_fifo(hoard, repo, tmp_path)
    for n in range(300):  # enough data that the workers store packs while the walker waits
        (top / "d00" / f"r{n:03d}").write_bytes(os.urandom(3000))
    with open(top / "z-pipe", "wb") as writer:  # returns once hoard opened the FIFO
        deadline = time.monotonic() + 60
        while len(_workers_of(proc.pid)) < 2 or _packs(repo) < 4:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.kill(_workers_of(proc.pid)[0], signal.SIGKILL)
        writer.write(b"x" * 1000)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "A file reader process of create failed" in err.decode()
    assert hoard("list", "--consider-checkpoints", "--short", str(repo)).out == ""
    check = hoard.run("check", str(repo))
    assert check.rc in (0, 1) and "Traceback" not in check.err, str(check)
    if check.rc == 1:
        assert "only garbage found, which 'hoard compact' frees" in check.err, str(check)
    (top / "z-pipe").unlink()
    hoard("create", f"{repo}::a", "data", cwd=tmp_path)
    _age(repo)
    hoard("compact", str(repo))
    assert hoard.run("check", "--verify-data", str(repo)).rc == 0
    out = tmp_path / "out"
    out.mkdir()
    hoard("extract", f"{repo}::a", cwd=out)
    assert (out / "data/d00/r007").read_bytes() == (top / "d00/r007").read_bytes()


def test_the_workers_and_the_main_process_share_one_storage_quota(
    hoard: Hoard, tmp_path: Path
) -> None:
    """Each process stores packs, all of them claim from one running total: the
    packs stay within the quota, and the backup fails with Borg's error."""
    repo = tmp_path / "small"
    hoard("init", "--encryption", "repokey", "--storage-quota", "10M", repo)
    set_pack_size(repo, 256 * 1024)
    top = tmp_path / "data"
    (top / "a").mkdir(parents=True)
    for n in range(500):  # the walker reads the first 500 small files itself
        (top / "a" / f"f{n:03d}").write_bytes(b"%d" % n)
    for n in range(1500):  # 18 MB that does not compress, all of it for the workers
        path = top / f"d{n // 50:02d}" / f"f{n:04d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(12_000))
    result = hoard.run("create", f"{repo}::a", "data", cwd=tmp_path, env={"HOARD_WORKERS": "2"})
    assert result.rc == 2, str(result)
    assert "The storage quota (10.00 MB) has been exceeded" in result.err, str(result)
    assert "Traceback" not in result.err
    stored = sum(p.stat().st_size for p in (repo / "packs").glob("*/*"))
    assert 5_000_000 < stored <= 10_000_000
    check = hoard.run("check", str(repo))
    assert check.rc == 1 and "only garbage found" in check.err, str(check)
