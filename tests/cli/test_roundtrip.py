"""Round trips through the real executable: init, create, extract, compare file by file.

The source tree (tests/cli/trees.py) holds every file type and metadata
case; it is built once per session, as is the 200 MB random file that only
the repokey run backs up (it dominates the run time). Backups are made with
a relative path from the tree's parent, so the archive holds ``src/...`` and
extraction in an empty directory recreates ``src``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.cli.conftest import Hoard, Result
from tests.cli.trees import (
    BIG_NAME,
    SPARSE_SIZE,
    MiB,
    TreeInfo,
    build_tree,
    compare_trees,
    make_big_file,
    walk_tree,
    xattrs,
)

MODES = ["none", "authenticated", "repokey", "keyfile", "repokey-aes-ocb"]
C_LOCALE = {"LANG": "C", "LC_ALL": "C"}


@pytest.fixture
def hoard(hoard_anywhere: Hoard) -> Hoard:
    """Every round trip runs on a local repository and on one over ssh."""
    return hoard_anywhere


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> TreeInfo:
    return build_tree(tmp_path_factory.mktemp("tree") / "src")


@pytest.fixture(scope="session")
def big_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("big")
    make_big_file(directory / BIG_NAME)
    return directory


def backup(
    hoard: Hoard,
    repo: Path,
    tree: TreeInfo,
    *extra: Path,
    mode: str = "repokey",
    env: dict[str, str] | None = None,
) -> Result:
    """init (unless ``repo`` exists) and ``create repo::a src [extra...]`` from src's parent."""
    if not repo.exists():
        hoard("init", "--encryption", mode, hoard.loc(repo), env=env)
    return hoard("create", f"{hoard.loc(repo)}::a", "src", *extra, cwd=tree.root.parent, env=env)


def extract(
    hoard: Hoard, repo: Path, out: Path, *paths: str, opts: tuple[str, ...] = (), **kw: object
) -> Result:
    """``extract OPTS repo::a PATHS`` in ``out`` (options first: argparse, like Borg's,
    cannot take more PATHs after an option that follows the archive)."""
    out.mkdir(exist_ok=True)
    location = f"{hoard.loc(repo)}::a"
    return hoard("extract", *opts, location, *paths, cwd=out, **kw)  # type: ignore[arg-type]


def assert_same(src: Path, dst: Path, **kw: bool) -> None:
    diffs = compare_trees(src, dst, **kw)
    assert not diffs, "\n".join(diffs)


def relative_files(root: Path) -> list[bytes]:
    """Paths below ``root`` in walk order (hoard's archive order too), sockets left out."""
    prefix = len(bytes(root)) + 1
    return [p[prefix:] for p, st in walk_tree(bytes(root)) if not stat.S_ISSOCK(st.st_mode)]


@pytest.mark.parametrize("mode", MODES)
def test_roundtrip_every_encryption_mode(
    hoard: Hoard, tmp_path: Path, tree: TreeInfo, mode: str, request: pytest.FixtureRequest
) -> None:
    repo = tmp_path / "repo"
    # the 200 MB file in one mode only: it dominates the run time
    extra: list[Path] = [request.getfixturevalue("big_dir")] if mode == "repokey" else []
    created = backup(hoard, repo, tree, *extra, mode=mode)
    assert created.err == ""
    out = tmp_path / "out"
    result = extract(hoard, repo, out)
    assert result.err == "" and result.out == ""
    assert_same(tree.root, out / "src")
    assert not (out / "src" / "socket").exists()
    for big_dir in extra:
        assert (big_dir / BIG_NAME).stat().st_size == 200 * MiB
        assert_same(big_dir, out / big_dir.relative_to("/"))


def test_sparse_restores_holes_and_default_writes_zeros(
    hoard: Hoard, tmp_path: Path, tree: TreeInfo
) -> None:
    repo = tmp_path / "repo"
    backup(hoard, repo, tree)
    sparse = tmp_path / "sparse"
    extract(hoard, repo, sparse, opts=("--sparse",))
    assert_same(tree.root, sparse / "src", sparse=True)
    dense = tmp_path / "dense"
    extract(hoard, repo, dense, "src/sparse.img")
    restored = (dense / "src/sparse.img").stat()
    assert restored.st_size == SPARSE_SIZE
    assert restored.st_blocks * 512 >= SPARSE_SIZE - MiB, "without --sparse zeros are written"


def test_strip_components(hoard: Hoard, tmp_path: Path, tree: TreeInfo) -> None:
    repo = tmp_path / "repo"
    backup(hoard, repo, tree)
    out = tmp_path / "out"
    extract(hoard, repo, out, "src/nested", opts=("--strip-components", "1"))
    assert os.listdir(out) == ["nested"]
    assert_same(tree.root / "nested", out / "nested")
    whole = tmp_path / "whole"
    extract(hoard, repo, whole, opts=("--strip-components", "1"))
    assert relative_files(whole) == relative_files(tree.root)
    too_deep = tmp_path / "too-deep"
    extract(hoard, repo, too_deep, opts=("--strip-components", "99"))
    assert os.listdir(too_deep) == []


def test_single_path_and_patterns(hoard: Hoard, tmp_path: Path, tree: TreeInfo) -> None:
    repo = tmp_path / "repo"
    backup(hoard, repo, tree)
    single = tmp_path / "single"
    extract(hoard, repo, single, "src/small.txt")
    assert relative_files(single) == [b"src", b"src/small.txt"]
    assert (single / "src/small.txt").read_bytes() == (tree.root / "small.txt").read_bytes()
    assert (single / "src/small.txt").stat().st_mtime_ns == (
        tree.root / "small.txt"
    ).stat().st_mtime_ns

    shell = tmp_path / "shell"
    extract(hoard, repo, shell, "sh:src/stdlib/**/*.py")
    restored = [p for p in relative_files(shell) if (shell / os.fsdecode(p)).is_file()]
    expected = [
        b"src/" + p
        for p in relative_files(tree.root)
        if p.startswith(b"stdlib/") and p.endswith(b".py")
    ]
    assert restored == expected and len(expected) > 50

    excluded = tmp_path / "excluded"
    extract(
        hoard, repo, excluded, "src/stdlib", "--exclude", "*.py", "--exclude", "src/stdlib/email"
    )
    names = relative_files(excluded / "src/stdlib")
    assert names and not [n for n in names if n.endswith(b".py") or n.startswith(b"email")]


def test_dry_run_writes_nothing_but_lists(hoard: Hoard, tmp_path: Path, tree: TreeInfo) -> None:
    repo = tmp_path / "repo"
    backup(hoard, repo, tree)
    out = tmp_path / "out"
    result = extract(hoard, repo, out, opts=("--dry-run", "--list"))
    assert os.listdir(out) == []
    # Borg's format: the bare path, undecodable bytes shown as '?', a newline kept as is
    expected = [b"src", *(b"src/" + p for p in relative_files(tree.root))]
    shown = (os.fsdecode(p).encode("utf-8", "replace").decode() for p in expected)
    assert result.err == "".join(f"{p}\n" for p in shown)
    assert "src/names/caf?\n" in result.err


def test_stdout_equals_the_file(hoard: Hoard, tmp_path: Path, tree: TreeInfo) -> None:
    repo = tmp_path / "repo"
    backup(hoard, repo, tree)
    out = tmp_path / "out"
    for name in ("mixed.bin", "sparse.img", "links/two"):
        result = extract(hoard, repo, out, f"src/{name}", opts=("--stdout",))
        assert result.stdout_bytes == (tree.root / name).read_bytes(), name
    result = extract(hoard, repo, out, "src/stdlib/json", opts=("--stdout",))
    files = [p for p, st in walk_tree(bytes(tree.root / "stdlib/json")) if os.path.isfile(p)]
    assert result.stdout_bytes == b"".join(Path(os.fsdecode(p)).read_bytes() for p in files)
    assert os.listdir(out) == []


def test_hard_links_alone_and_together(hoard: Hoard, tmp_path: Path, tree: TreeInfo) -> None:
    repo = tmp_path / "repo"
    backup(hoard, repo, tree)
    first, second, third = (os.fsdecode(p) for p in tree.hardlinks)
    alone = tmp_path / "alone"
    extract(hoard, repo, alone, f"src/{third}")
    restored = alone / "src" / third
    assert restored.read_bytes() == (tree.root / third).read_bytes()
    assert restored.stat().st_nlink == 1
    two = tmp_path / "two"
    extract(hoard, repo, two, "src/links")
    assert (two / "src" / first).stat().st_ino == (two / "src" / second).stat().st_ino
    assert (two / "src" / first).stat().st_nlink == 2
    assert not (two / "src" / third).exists()


def test_c_locale_round_trips_non_utf8_names(hoard: Hoard, tmp_path: Path, tree: TreeInfo) -> None:
    repo = tmp_path / "repo"
    backup(hoard, repo, tree, env=C_LOCALE)
    out = tmp_path / "out"
    extract(hoard, repo, out, env=C_LOCALE)
    assert_same(tree.root, out / "src")
    picked = tmp_path / "picked"
    extract(hoard, repo, picked, os.fsdecode(b"src/names/caf\xe9"), env=C_LOCALE)
    assert relative_files(picked) == [b"src", b"src/names", b"src/names/caf\xe9"]


def test_non_ascii_path_arguments(hoard: Hoard, tmp_path: Path, tree: TreeInfo) -> None:
    repo = tmp_path / "repo"
    backup(hoard, repo, tree)
    out = tmp_path / "out"
    extract(hoard, repo, out, "src/names/naïve-ünïcödé", os.fsdecode(b"src/names/dir-\xe9"))
    assert relative_files(out / "src/names") == [
        b"dir-\xe9",
        b"dir-\xe9/\xff",
        "naïve-ünïcödé".encode(),
    ]


def test_noacls_and_noxattrs(hoard: Hoard, tmp_path: Path, tree: TreeInfo) -> None:
    repo = tmp_path / "repo"
    backup(hoard, repo, tree)
    paths = ("src/acl-file", "src/small.txt")
    no_acls = tmp_path / "no-acls"
    extract(hoard, repo, no_acls, *paths, opts=("--noacls",))
    assert xattrs(bytes(no_acls / "src/acl-file")) == {}
    assert xattrs(bytes(no_acls / "src/small.txt")) == xattrs(bytes(tree.root / "small.txt"))
    no_xattrs = tmp_path / "no-xattrs"
    extract(hoard, repo, no_xattrs, *paths, opts=("--noxattrs",))
    assert xattrs(bytes(no_xattrs / "src/small.txt")) == {}
    acl = xattrs(bytes(no_xattrs / "src/acl-file"))
    assert acl == xattrs(bytes(tree.root / "acl-file"))
    assert list(acl) == [b"system.posix_acl_access"]
