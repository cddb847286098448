"""``hoard extract`` through the real executable: errors, warnings and output formats.

Every error must be exactly one line on stderr (nothing ignored, no
traceback) with Borg's exit code; round trips are in test_roundtrip.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hoard.repository.pack import HEADER_SIZE, parse_pack
from tests.cli.conftest import Hoard, Result

DATA = os.urandom(100_000)  # one chunk, incompressible


@pytest.fixture
def archived(hoard: Hoard, repo: Path, tmp_path: Path) -> Path:
    """``repo::a`` holding ``src/data.bin`` and ``src/small.txt``; returns the extract dir."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(DATA)
    (src / "small.txt").write_text("small\n")
    hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    return out


def assert_one_line(result: Result, rc: int, *fragments: str) -> str:
    """Exit code ``rc``, stderr exactly one non-empty line holding every fragment."""
    assert result.rc == rc, str(result)
    assert "Traceback" not in result.err, str(result)
    lines = result.err.split("\n")
    assert len(lines) == 2 and lines[0].strip() and lines[1] == "", str(result)
    for fragment in fragments:
        assert fragment in lines[0], str(result)
    return lines[0]


def data_pack(repo: Path) -> Path:
    """The pack holding file data: data and metadata never share a pack; data is the bigger."""
    packs = [p for p in (repo / "packs").rglob("*") if p.is_file()]
    return max(packs, key=lambda p: p.stat().st_size)


def test_unknown_archive(hoard: Hoard, repo: Path, archived: Path) -> None:
    result = hoard.run("extract", f"{repo}::nope", cwd=archived)
    assert_one_line(result, 2, "nope")
    assert os.listdir(archived) == []


def test_missing_archive_name(hoard: Hoard, repo: Path, archived: Path) -> None:
    assert_one_line(hoard.run("extract", repo, cwd=archived), 2, "archive")


def test_missing_repository(hoard: Hoard, tmp_path: Path) -> None:
    result = hoard.run("extract", f"{tmp_path / 'nothere'}::a", cwd=tmp_path)
    assert_one_line(result, 2, "nothere", "does not exist")


def test_wrong_passphrase(hoard: Hoard, repo: Path, archived: Path) -> None:
    result = hoard.run(
        "extract", f"{repo}::a", cwd=archived, env={"BORG_PASSPHRASE": "not the one"}
    )
    assert_one_line(result, 2, "passphrase")
    assert os.listdir(archived) == []


@pytest.mark.parametrize("mode", ["repokey", "none"])
def test_corrupted_chunk_is_zero_filled_named_with_its_range_and_exit_2(
    hoard: Hoard, tmp_path: Path, mode: str
) -> None:
    repo = tmp_path / f"repo-{mode}"
    hoard("init", "--encryption", mode, repo)
    (tmp_path / "src").mkdir()
    (tmp_path / "src/data.bin").write_bytes(DATA)
    (tmp_path / "src/later.txt").write_text("later\n")
    hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    pack = data_pack(repo)
    content = bytearray(pack.read_bytes())
    big = max(parse_pack(bytes(content), pack.name), key=lambda e: e.length)
    content[big.offset + HEADER_SIZE + big.length - 1] ^= 0x01  # data.bin's chunk
    pack.chmod(0o600)
    pack.write_bytes(bytes(content))
    out = tmp_path / "out"
    out.mkdir()
    result = hoard.run("extract", f"{repo}::a", cwd=out)
    assert result.rc == 2, result
    assert "Traceback" not in result.err
    damaged, summary, end = result.err.split("\n")
    assert damaged.startswith("src/data.bin: damaged, bytes 0-99999 (100000 bytes) lost")
    assert "(DATA)" in damaged and pack.name in damaged
    assert summary.startswith("Extraction incomplete: 1 damaged item")
    assert end == ""
    assert (out / "src/data.bin").read_bytes() == bytes(len(DATA))
    assert (out / "src/later.txt").read_text() == "later\n"
    dry = hoard.run("extract", "--dry-run", f"{repo}::a", cwd=out)
    assert dry.rc == 2 and "src/data.bin: damaged" in dry.err, dry
    log = hoard.run("extract", "--log-json", "--dry-run", f"{repo}::a", cwd=out)
    msgids = [json.loads(line).get("msgid") for line in log.err.splitlines()]
    assert "DamagedFileError" in msgids and "ExtractIncomplete" in msgids


def test_missing_pack_zero_fills_its_files_and_extracts_the_rest(
    hoard: Hoard, repo: Path, archived: Path
) -> None:
    data_pack(repo).unlink()
    result = hoard.run("extract", "--sparse", f"{repo}::a", cwd=archived)
    assert result.rc == 2, result
    lines = result.err.splitlines()
    assert len(lines) == 3, result  # data.bin, small.txt (same pack), the summary
    assert all("the pack is missing" in line for line in lines[:2])
    assert lines[0].startswith("src/data.bin: damaged, bytes 0-99999")
    assert (archived / "src/data.bin").read_bytes() == bytes(len(DATA))
    assert (archived / "src/data.bin").stat().st_blocks == 0  # --sparse: a hole


def test_include_pattern_never_matched(hoard: Hoard, repo: Path, archived: Path) -> None:
    result = hoard.run("extract", f"{repo}::a", "src/small.txt", "nothere", cwd=archived)
    line = assert_one_line(result, 1)
    assert line == "Include pattern 'nothere' never matched."
    assert (archived / "src/small.txt").read_text() == "small\n"
    assert not (archived / "src/data.bin").exists()
    modern = hoard.run(
        "extract", f"{repo}::a", "nothere", cwd=archived, env={"BORG_EXIT_CODES": "modern"}
    )
    assert_one_line(modern, 101, "nothere")


def test_write_error_is_a_warning_and_extraction_goes_on(
    hoard: Hoard, repo: Path, archived: Path
) -> None:
    blocker = archived / "src" / "data.bin"
    blocker.mkdir(parents=True)
    (blocker / "keep").write_text("a non-empty directory where the file goes\n")
    result = hoard.run("extract", f"{repo}::a", cwd=archived)
    line = assert_one_line(result, 1, "src/data.bin")
    assert line == f"src/data.bin: open: [Errno 17] File exists: '{blocker}'"  # as Borg
    assert (archived / "src/small.txt").read_text() == "small\n"


def test_existing_files_are_replaced(hoard: Hoard, repo: Path, archived: Path) -> None:
    hoard("extract", f"{repo}::a", cwd=archived)
    (archived / "src/small.txt").write_text("changed since, and longer than before\n")
    (archived / "src/data.bin").unlink()
    (archived / "src/data.bin").symlink_to("/etc/hostname")
    result = hoard("extract", f"{repo}::a", cwd=archived)
    assert result.err == ""
    assert (archived / "src/small.txt").read_text() == "small\n"
    assert not (archived / "src/data.bin").is_symlink()
    assert (archived / "src/data.bin").read_bytes() == DATA


def test_progress_with_log_json(hoard: Hoard, repo: Path, archived: Path) -> None:
    result = hoard("extract", "--progress", "--log-json", "--list", f"{repo}::a", cwd=archived)
    records = [json.loads(line) for line in result.err.splitlines()]
    listed = [r["message"] for r in records if r["type"] == "log_message"]
    assert listed == ["src", "src/data.bin", "src/small.txt"]
    progress = [r for r in records if r["type"] == "progress_percent"]
    assert progress and all(r["msgid"] == "extract" for r in progress)
    assert progress[-1]["finished"] is True
    running = [r for r in progress if not r["finished"]]
    assert running
    assert all(r["total"] == len(DATA) + len("small\n") for r in running)
    assert all("Extracting: " in r["message"] for r in running)


def test_negative_strip_components_is_refused(hoard: Hoard, repo: Path, archived: Path) -> None:
    result = hoard.run("extract", "--strip-components", "-1", f"{repo}::a", cwd=archived)
    assert result.rc == 2 and "strip-components" in result.err
    assert os.listdir(archived) == []


def test_the_root_item_dot_as_borg(hoard: Hoard, tmp_path: Path) -> None:
    """borg 1.4: ``borg create r::a .`` and ``r::b src/./`` store the directory
    itself as the item "."; extract gives the target directory its metadata."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("f\n")
    os.chmod(src, 0o750)
    os.utime(src, (1_000_000_000, 1_000_000_000))
    repo = tmp_path / "repo"
    hoard("init", "-e", "none", repo)
    hoard("create", f"{repo}::dot", ".", cwd=src)
    os.utime(src, (1_000_000_000, 1_000_000_000))
    hoard("create", f"{repo}::slashdot", "src/./", cwd=tmp_path)
    for name in ("dot", "slashdot"):
        assert hoard("list", "--short", f"{repo}::{name}").out.splitlines() == [".", "sub", "sub/f"]
        out = tmp_path / f"out-{name}"
        out.mkdir()
        hoard("extract", f"{repo}::{name}", cwd=out)
        st = out.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o750, 1_000_000_000 * 10**9)
        assert (out / "sub" / "f").read_text() == "f\n"
    only = tmp_path / "only-sub"
    only.mkdir()
    hoard("extract", f"{repo}::dot", "sub", cwd=only)
    assert only.stat().st_mtime_ns != 10**18  # "." is not selected by a PATH
    tar = hoard("export-tar", f"{repo}::dot", "-").stdout_bytes
    hoard("import-tar", f"{repo}::from-tar", "-", input=tar)
    assert hoard("list", "--short", f"{repo}::from-tar").out.splitlines()[0] == "."
