"""``hoard export-tar`` read back by GNU tar (and Python's decompressors)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import subprocess
import tarfile
from pathlib import Path

import lz4.frame
import pytest
import zstandard

from tests.cli.conftest import Hoard
from tests.cli.test_check import flip_data
from tests.cli.trees import build_tree, compare_trees


@pytest.fixture
def archive(hoard: Hoard, tmp_path: Path) -> Path:
    build_tree(tmp_path / "src")
    repo = tmp_path / "repo"
    hoard("init", "-e", "repokey", repo)
    hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    return repo


def gnu_tar_extract(tar: Path, into: Path, *extra: str) -> None:
    into.mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", str(tar), *extra],
        cwd=into,
        check=True,
        capture_output=True,
    )


def test_pax_round_trip_through_gnu_tar(hoard: Hoard, archive: Path, tmp_path: Path) -> None:
    exported = hoard.run("export-tar", "--tar-format", "PAX", f"{archive}::a", tmp_path / "a.tar")
    # the one attribute with a non-UTF-8 name cannot be a pax keyword: said, exit 1
    assert exported.rc == 1 and "extended attribute b'user.\\xff' left out" in exported.err
    gnu_tar_extract(tmp_path / "a.tar", tmp_path / "out")
    diffs = compare_trees(tmp_path / "src", tmp_path / "out" / "src")
    assert all("user.\\xff" in line for line in diffs), diffs


def test_gnu_format_names_links_and_devices(hoard: Hoard, archive: Path, tmp_path: Path) -> None:
    hoard("export-tar", f"{archive}::a", tmp_path / "a.tar")
    listing = subprocess.run(
        ["tar", "--quoting-style=literal", "-tf", str(tmp_path / "a.tar")],
        check=True,
        capture_output=True,
    ).stdout
    assert b"src/names/caf\xe9\n" in listing  # the name's own bytes
    with tarfile.open(tmp_path / "a.tar", encoding="utf-8", errors="surrogateescape") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "src/socket" not in members
    assert members["src/fifo"].isfifo()
    links = [m for m in members.values() if m.islnk()]
    assert links and all(members[m.linkname].isfile() for m in links)
    gnu_tar_extract(tmp_path / "a.tar", tmp_path / "out")
    for path in (tmp_path / "src").rglob("*"):
        if path.is_file() and not path.is_symlink():
            copy = tmp_path / "out" / path.relative_to(tmp_path)
            assert copy.read_bytes() == path.read_bytes(), path


@pytest.mark.parametrize(
    ("suffix", "opener"),
    [
        (".tar.gz", gzip.decompress),
        (".tgz", gzip.decompress),
        (".tar.bz2", bz2.decompress),
        (".tar.xz", lzma.decompress),
        (".tar.zst", lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)),
        (".tar.lz4", lz4.frame.decompress),
        (".tar", lambda data: data),
    ],
)
def test_compression_follows_the_file_name(
    hoard: Hoard, archive: Path, tmp_path: Path, suffix: str, opener: object
) -> None:
    target = tmp_path / f"a{suffix}"
    hoard("export-tar", f"{archive}::a", target, "src/nested")
    data = opener(target.read_bytes())  # type: ignore[operator]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert names[0] == "src/nested" and all(n.startswith("src/nested") for n in names)


def test_filter_command_stdout_strip_and_list(hoard: Hoard, archive: Path, tmp_path: Path) -> None:
    hoard("export-tar", "--tar-filter", "gzip -1", f"{archive}::a", tmp_path / "f.tar.gz")
    with tarfile.open(tmp_path / "f.tar.gz") as tar:
        assert "src/small.txt" in tar.getnames()
    piped = hoard(
        "export-tar", "--strip-components", "1", "--list", f"{archive}::a", "-", "src/nested"
    )
    with tarfile.open(fileobj=io.BytesIO(piped.stdout_bytes)) as tar:
        names = tar.getnames()
    assert names and all(not n.startswith("src") for n in names)
    assert piped.err.splitlines()[0] == "nested"


def test_bad_input_leaves_no_file(hoard: Hoard, archive: Path, tmp_path: Path) -> None:
    failing = hoard.run("export-tar", "--tar-filter", "exit 3", f"{archive}::a", tmp_path / "x.tar")
    assert failing.rc == 2 and "exited with status" in failing.err
    assert not (tmp_path / "x.tar").exists()
    borg = hoard.run("export-tar", "--tar-format", "BORG", f"{archive}::a", tmp_path / "y.tar")
    assert borg.rc == 2 and "PAX" in borg.err and not (tmp_path / "y.tar").exists()
    nowhere = hoard.run("export-tar", f"{archive}::a", tmp_path / "no" / "dir" / "z.tar")
    assert nowhere.rc == 2 and "cannot write" in nowhere.err
    unmatched = hoard.run("export-tar", f"{archive}::a", tmp_path / "u.tar", "src/nothing")
    assert unmatched.rc == 1 and "src/nothing" in unmatched.err


def test_damaged_chunk_is_zero_filled_and_reported(hoard: Hoard, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    hoard("init", "-e", "repokey", repo)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "file").write_bytes(os.urandom(2_000_000))
    hoard("create", f"{repo}::a", "data", cwd=tmp_path)
    flip_data(repo)
    damaged = hoard.run("export-tar", f"{repo}::a", tmp_path / "d.tar")
    assert damaged.rc == 2 and "damaged" in damaged.err.lower()
    with tarfile.open(tmp_path / "d.tar") as tar:
        member = tar.getmember("data/file")
        assert member.size == 2_000_000
        content = tar.extractfile(member)
        assert content is not None and len(content.read()) == 2_000_000
