"""``hoard import-tar``: tarballs GNU tar wrote (and export-tar wrote) become archives."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.cli.conftest import Hoard
from tests.cli.trees import build_tree, compare_trees


@pytest.fixture
def repo_and_tree(hoard: Hoard, tmp_path: Path) -> tuple[Path, Path]:
    build_tree(tmp_path / "src")
    repo = tmp_path / "repo"
    hoard("init", "-e", "repokey", repo)
    return repo, tmp_path / "src"


def extract_all(hoard: Hoard, repo: Path, archive: str, into: Path) -> Path:
    into.mkdir()
    hoard("extract", f"{repo}::{archive}", cwd=into)
    return into


def test_gnu_tar_pax_round_trip(
    hoard: Hoard, repo_and_tree: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, src = repo_and_tree
    tarball = tmp_path / "gnu.tar"
    subprocess.run(
        ["tar", "--format=pax", "--xattrs", "--xattrs-include=*", "-cf", str(tarball), "src"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    hoard("import-tar", f"{repo}::gnu", tarball)
    out = extract_all(hoard, repo, "gnu", tmp_path / "out")
    diffs = compare_trees(src, out / "src")
    # GNU tar keeps no socket (as hoard) and, in PAX, every time to the nanosecond;
    # it cannot name the one non-UTF-8 xattr either
    assert all("user.\\xff" in line for line in diffs), diffs


def test_export_then_import_keeps_the_tree(
    hoard: Hoard, repo_and_tree: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, src = repo_and_tree
    hoard("create", f"{repo}::orig", "src", cwd=tmp_path)
    hoard.run("export-tar", "--tar-format", "PAX", f"{repo}::orig", tmp_path / "a.tar.zst")
    imported = hoard("import-tar", "--list", f"{repo}::again", tmp_path / "a.tar.zst")
    assert "A src/small.txt" in imported.err.splitlines()
    out = extract_all(hoard, repo, "again", tmp_path / "out")
    diffs = compare_trees(src, out / "src")
    assert all("user.\\xff" in line for line in diffs), diffs
    # the same chunks, deduplicated; not for the sparse file, whose holes the
    # tar stream carried as zeros, cut by the chunker elsewhere than at holes
    same = hoard("diff", "--content-only", "-e", "src/sparse.img", f"{repo}::orig", "again").out
    assert same == ""


def test_stdin_filter_stats_and_metadata(
    hoard: Hoard, repo_and_tree: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, _ = repo_and_tree
    subprocess.run(["tar", "-czf", str(tmp_path / "a.tgz"), "src"], cwd=tmp_path, check=True)
    with (tmp_path / "a.tgz").open("rb") as stdin_data:
        data = stdin_data.read()
    result = hoard(
        "import-tar", "--json", "--comment", "from tar", "--timestamp", "2020-02-03T04:05:06",
        f"{repo}::piped", "-", input=data,
    )  # fmt: skip
    archive = json.loads(result.out)["archive"]
    assert archive["name"] == "piped" and archive["stats"]["nfiles"] > 10
    info = json.loads(hoard("info", "--json", f"{repo}::piped").out)["archives"][0]
    assert info["comment"] == "from tar" and info["start"].startswith("2020-02-03")
    hoard("import-tar", "--tar-filter", "gzip -dc", f"{repo}::filtered", tmp_path / "a.tgz")
    assert hoard("diff", "--content-only", f"{repo}::piped", "filtered").out == ""


def test_bad_input(hoard: Hoard, repo_and_tree: tuple[Path, Path], tmp_path: Path) -> None:
    repo, _ = repo_and_tree
    missing = hoard.run("import-tar", f"{repo}::a", tmp_path / "nothere.tar")
    assert missing.rc == 2 and "input file does not exist" in missing.err
    (tmp_path / "garbage.tar").write_bytes(b"this is not a tar file" * 100)
    garbage = hoard.run("import-tar", f"{repo}::a", tmp_path / "garbage.tar")
    assert garbage.rc == 2 and garbage.err.strip()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("../evil", "ok", "/abs"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "evil.tar").write_bytes(buffer.getvalue())
    evil = hoard.run("import-tar", f"{repo}::evil", tmp_path / "evil.tar")
    assert evil.rc == 1 and "../evil" in evil.err and "leaves the archive" in evil.err
    assert hoard("list", "--short", f"{repo}::evil").out.split() == ["abs", "ok"]
    assert hoard("list", "--short", repo).out.split() == ["evil"]  # nothing of the failed runs
    exists = hoard.run("import-tar", f"{repo}::evil", tmp_path / "evil.tar")
    assert exists.rc == 2 and "already exists" in exists.err


def test_zstd_by_name(hoard: Hoard, repo_and_tree: tuple[Path, Path], tmp_path: Path) -> None:
    repo, _ = repo_and_tree
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("z/file")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"zstd!"))
    (tmp_path / "z.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))
    hoard("import-tar", f"{repo}::z", tmp_path / "z.tar.zst")
    out = extract_all(hoard, repo, "z", tmp_path / "out")
    assert (out / "z" / "file").read_bytes() == b"zstd!"
