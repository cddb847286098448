"""Checkpoint archives of ``hoard create``: periodic, on Ctrl-C, inside a file, after SIGKILL.

A checkpoint ``NAME.checkpoint`` is a complete archive of what was backed
up so far; a file being read when it was taken is in it as
``<file>.hoard_part`` with the data stored so far. These tests run the real
executable with real signals: a FIFO fed slowly by a thread
(``--read-special``) makes the timing deterministic, the SIGINT waits until
hoard has read a good part of a big file (``/proc/PID/io``), and the SIGKILLs
land at varied delays.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.cli.conftest import HOARD, Hoard
from tests.cli.trees import compare_trees, make_big_file

MiB = 1024 * 1024


def names(hoard: Hoard, repo: Path) -> list[str]:
    """Every archive, checkpoints included, in time order."""
    out = hoard("list", "--consider-checkpoints", "--format", "{archive}{NL}", repo).out
    return out.splitlines()


def record_ids(hoard: Hoard, repo: Path) -> dict[str, str]:
    """Archive name -> record id, checkpoints included."""
    out = hoard("list", "--consider-checkpoints", "--format", "{archive} {id}{NL}", repo).out
    return dict(line.split(" ") for line in out.splitlines())


def feed(writer: BinaryIO, sent: bytearray, seconds: float) -> None:
    """Write random blocks to the FIFO for ``seconds``, slowly."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        block = os.urandom(256 * 1024)
        writer.write(block)
        writer.flush()
        sent += block
        time.sleep(0.3)


def repo_size(repo: Path) -> int:
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())


def start(hoard: Hoard, tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [HOARD, "create", *args],
        env=hoard.env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def extract(hoard: Hoard, repo: Path, name: str, dest: Path) -> Path:
    dest.mkdir(parents=True)
    hoard("extract", f"{repo}::{name}", cwd=dest)
    return dest


def bytes_read_by(pid: int) -> int:
    """What process ``pid`` has read so far (``rchar``: read calls, any source)."""
    with open(f"/proc/{pid}/io") as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    return int(fields["rchar"])


def test_periodic_checkpoint_while_a_fifo_is_read(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a-file").write_bytes(os.urandom(100_000))
    os.mkfifo(src / "z-pipe")
    args = ("--read-special", "-c", "1", "--chunker-params", "fixed,65536", f"{repo}::a", "src")
    proc = start(hoard, tmp_path, *args)
    sent = bytearray()
    with open(src / "z-pipe", "wb") as writer:  # returns once hoard opened the FIFO
        deadline = time.monotonic() + 30
        while "a.checkpoint" not in names(hoard, repo):
            assert time.monotonic() < deadline, "no checkpoint within 30 s"
            feed(writer, sent, 0.3)
        first = record_ids(hoard, repo)
        assert list(first) == ["a.checkpoint"]
        assert hoard("list", repo).out == ""  # hidden without --consider-checkpoints
        part = extract(hoard, repo, "a.checkpoint", tmp_path / "cp") / "src" / "z-pipe.hoard_part"
        assert (part.parent / "a-file").read_bytes() == (src / "a-file").read_bytes()
        data = part.read_bytes()
        assert 0 < len(data) <= len(sent)
        assert data == sent[: len(data)]
        feed(writer, sent, 2.5)
        later = record_ids(hoard, repo)
        assert list(later) == ["a.checkpoint"]  # a newer checkpoint replaced the first
        assert later != first
        tail = os.urandom(100_000)
        writer.write(tail)
        sent += tail
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert names(hoard, repo) == ["a"]  # the checkpoint went once the archive was stored
    done = extract(hoard, repo, "a", tmp_path / "final") / "src"
    assert (done / "z-pipe").read_bytes() == bytes(sent)
    assert not (done / "z-pipe.hoard_part").exists()


def interrupt_in_big_file(hoard: Hoard, repo: Path, tmp_path: Path, *options: str) -> None:
    """Start ``create`` of ``src`` and Ctrl-C it once it has read 64 MiB; check exit and message."""
    proc = start(hoard, tmp_path, *options, f"{repo}::a", "src")
    deadline = time.monotonic() + 60
    while bytes_read_by(proc.pid) < 64 * MiB:  # well into the big file
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.decode() == "Error: Got Ctrl-C / SIGINT.\n"
    assert names(hoard, repo) == ["a.checkpoint"]


def test_ctrl_c_in_a_big_file_leaves_a_checkpoint_and_resumes(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a-small").write_bytes(os.urandom(50_000))
    size = 256 * MiB
    big = make_big_file(src / "big", size)
    interrupt_in_big_file(hoard, repo, tmp_path)
    got = extract(hoard, repo, "a.checkpoint", tmp_path / "cp") / "src"
    assert (got / "a-small").read_bytes() == (src / "a-small").read_bytes()
    part = got / "big.hoard_part"
    assert not (got / "big").exists()
    done = part.stat().st_size
    assert 0 < done < size
    with big.open("rb") as f:
        assert hashlib.sha256(f.read(done)).digest() == hashlib.sha256(part.read_bytes()).digest()
    shutil.rmtree(tmp_path / "cp")
    before = repo_size(repo)
    hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    assert repo_size(repo) - before < (size - done) + size // 10  # only the rest was sent
    assert names(hoard, repo) == ["a"]
    restored = extract(hoard, repo, "a", tmp_path / "final") / "src"
    assert compare_trees(src, restored) == []


MAX_CHUNK = 8 * MiB  # the default chunker params' largest chunk
RACY_WINDOW = 2.1  # files changed this close to a backup's start are not trusted
FILES_READ = re.compile(r"Files read: (\d+) bytes in \d+ reads")


def part_size(hoard: Hoard, repo: Path) -> int:
    """The size of ``src/big.hoard_part`` in the checkpoint."""
    out = hoard("list", "--format", "{size} {path}{NL}", f"{repo}::a.checkpoint").out
    sizes = {path: int(size) for size, path in (line.split(" ", 1) for line in out.splitlines())}
    return sizes["src/big.hoard_part"]


@pytest.mark.parametrize(
    ("touched", "params"),
    [(False, "default"), (True, "default"), (False, "fixed,4194304,1000000")],
    ids=["unchanged", "touched", "fixed-with-header"],
)
def test_rerun_reads_only_the_rest_of_an_interrupted_big_file(
    hoard: Hoard, repo: Path, tmp_path: Path, touched: bool, params: str
) -> None:
    """The files cache saved at the checkpoint holds the big file's stored part:
    the rerun seeks past it and reads the rest, unless the file changed since.
    The resumed file has the chunks a backup from scratch cuts: a second
    archive read with the files cache disabled stores nothing new."""
    src = tmp_path / "src"
    src.mkdir()
    small = 50_000
    (src / "a-small").write_bytes(os.urandom(small))
    size = 256 * MiB
    big = make_big_file(src / "big", size)
    time.sleep(RACY_WINDOW)  # not racy: the files cache may trust these timestamps
    options = ("--chunker-params", params)
    interrupt_in_big_file(hoard, repo, tmp_path, *options)
    done = part_size(hoard, repo)
    assert 0 < done < size
    if touched:
        os.utime(big)  # new mtime and ctime: the stored part is not trusted
    run = hoard("create", "--debug", "--list", *options, f"{repo}::a", "src", cwd=tmp_path)
    match = FILES_READ.search(run.err)
    assert match is not None, run.err
    read = int(match.group(1))
    assert "A src/big" in run.err.splitlines()
    if touched:
        assert read >= size
        assert "Resuming" not in run.err
    else:
        assert f"Resuming src/big at offset {done} " in run.err
        assert size - done <= read < (size - done) + MAX_CHUNK + small
    assert names(hoard, repo) == ["a"]
    restored = extract(hoard, repo, "a", tmp_path / "final") / "src"
    assert compare_trees(src, restored) == []
    with big.open("rb") as f:
        assert (
            hashlib.sha256(f.read()).digest()
            == hashlib.sha256((restored / "big").read_bytes()).digest()
        )
    again = hoard(
        "create", "--json", "--files-cache", "disabled", *options, f"{repo}::b", "src", cwd=tmp_path
    )
    assert json.loads(again.out)["archive"]["stats"]["deduplicated_size"] == 0


KILL_BIG = 48 * MiB


def make_kill_tree(src: Path) -> None:
    for d in range(3):
        sub = src / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"f{i:03}").write_bytes(os.urandom(1000 + 97 * i))
    for name in ("big1", "big2"):
        make_big_file(src / "d1" / name, KILL_BIG)


def test_sigkill_at_any_point_leaves_a_usable_repository(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_kill_tree(src)
    checked: set[str] = set()  # record ids: each record extracted once (records never change)
    checkpoints: set[str] = set()  # record ids: two runs' checkpoints may share a name
    delays = [0.25 + 0.1 * n for n in range(11)]  # from start-up to the end of a run
    for i, delay in enumerate(delays):
        make_big_file(src / "d1" / f"big{1 + i % 2}", KILL_BIG)  # new data to store each run
        (src / "d2" / "f050").write_bytes(os.urandom(5000))
        before = set((repo / "archives").rglob("*"))
        proc = start(hoard, tmp_path, "-c", "0.1", f"{repo}::a", "src")
        if i % 2:  # just after this run's first checkpoint record, if it writes one
            until = time.monotonic() + 10 * delay
            while proc.poll() is None and time.monotonic() < until:
                if set((repo / "archives").rglob("*")) - before:
                    time.sleep(delay / 20)
                    break
                time.sleep(0.005)
        else:  # at a fixed time: start-up, walk, commit
            time.sleep(delay)
        proc.kill()
        proc.communicate(timeout=60)
        ids = record_ids(hoard, repo)
        for name, record in sorted(ids.items()):
            if name.startswith("a.checkpoint"):
                checkpoints.add(record)
            if record not in checked:
                shutil.rmtree(extract(hoard, repo, name, tmp_path / f"x{i}" / record))
                checked.add(record)
        if "a" in ids:  # that run finished before the kill
            hoard("delete", f"{repo}::a")
    assert len(checkpoints) >= 2, checked
    hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    assert names(hoard, repo) == ["a"]
    assert compare_trees(src, extract(hoard, repo, "a", tmp_path / "final") / "src") == []
