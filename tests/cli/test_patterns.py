"""Borg's include/exclude options on ``hoard create``, case by case, against Borg itself.

Each case is a command line and the set of paths the archive must hold
(what ``list`` shows). hoard's archive is read through the Python API. When
Borg 1.4.1 is installed (``/tmp/borg14``, as on the development machines),
the same command line runs through ``borg create`` + ``borg list --short``
and must give the same set, so the expected sets are Borg's, not guesses;
where Borg is absent (CI) only the written expectations are checked.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from hoard.archive.create import CACHEDIR_SIGNATURE
from tests.cli.conftest import Hoard
from tests.cli.test_create import BORG14, archived_paths

ALL = frozenset(
    {
        "src",
        "src/top.txt",
        "src/top.log",
        "src/a",
        "src/a/a.txt",
        "src/a/a.log",
        "src/a/sub",
        "src/a/sub/deep.txt",
        "src/a/sub/deep.log",
        "src/b",
        "src/b/b.txt",
        "src/b/keep",
        "src/b/keep/k.txt",
        "src/cache",
        "src/cache/CACHEDIR.TAG",
        "src/cache/data.bin",
        "src/badcache",
        "src/badcache/CACHEDIR.TAG",
        "src/badcache/data.bin",
        "src/tagged",
        "src/tagged/.nobackup",
        "src/tagged/t.txt",
        "src/tagged/inner",
        "src/tagged/inner/i.txt",
    }
)
LOGS = frozenset(p for p in ALL if p.endswith(".log"))


def without(*prefixes: str) -> frozenset[str]:
    """ALL minus the given paths and everything below them."""
    return frozenset(p for p in ALL if not any(p == x or p.startswith(x + "/") for x in prefixes))


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    expected: frozenset[str]
    files: tuple[tuple[str, str], ...] = ()
    """Pattern files to write first: (name, content); args refer to them by name."""
    paths: tuple[str, ...] = ("src",)


CASES = [
    Case("nothing", (), ALL),
    Case("fm-default", ("--exclude", "*.log"), ALL - LOGS),
    Case("fm-star-crosses-slash", ("--exclude", "fm:src/*.log"), ALL - LOGS),
    Case("sh-star-stops-at-slash", ("--exclude", "sh:src/*/*.log"), ALL - {"src/a/a.log"}),
    Case("sh-double-star", ("--exclude", "sh:src/**/*.log"), ALL - LOGS),
    Case("re", ("--exclude", r"re:\.log$"), ALL - LOGS),
    Case("re-anchored", ("--exclude", r"re:^src/a/"), without("src/a") | {"src/a"}),
    Case("pp", ("--exclude", "pp:src/a"), without("src/a")),
    Case("pp-is-a-prefix-of-components", ("--exclude", "pp:src/b/kee"), ALL),
    Case("pf", ("--exclude", "pf:src/a/a.txt"), ALL - {"src/a/a.txt"}),
    Case("fm-trailing-slash-keeps-the-dir", ("--exclude", "src/a/"), without("src/a") | {"src/a"}),
    Case(
        "exclude-from",
        ("--exclude-from", "excludes.txt"),
        without("src/b/keep", "src/cache") - LOGS,
        files=(("excludes.txt", "# comment\n\n*.log\nsh:src/b/keep\n  pp:src/cache  \n"),),
    ),
    Case(
        "patterns-from-with-root",
        ("--patterns-from", "patterns.txt"),
        frozenset(
            {
                "src",
                "src/top.txt",
                "src/a",
                "src/a/a.txt",
                "src/a/sub/deep.txt",
                "src/cache",
                "src/cache/CACHEDIR.TAG",
                "src/cache/data.bin",
                "src/badcache",
                "src/badcache/CACHEDIR.TAG",
                "src/badcache/data.bin",
                "src/tagged",
                "src/tagged/.nobackup",
                "src/tagged/t.txt",
                "src/tagged/inner",
                "src/tagged/inner/i.txt",
            }
        ),
        files=(
            (
                "patterns.txt",
                "# recursion root, then rules: the first match decides\n"
                "R src\n"
                "+ src/a/sub/deep.txt\n"
                "- src/a/sub\n"
                "! src/b\n"
                r"- re:\.log$" + "\n",
            ),
        ),
        paths=(),
    ),
    Case(
        "patterns-from-style-change",
        ("--patterns-from", "styles.txt"),
        ALL - {"src/a/a.log", "src/top.txt", "src/top.log"},  # sh: deep.log stays
        files=(("styles.txt", "P sh\n- src/a/*.log\nP fm\n- src/top*\n"),),
    ),
    Case(
        "minus-recurses",
        ("--pattern", "+ src/b/keep", "--pattern", "- src/b"),
        without("src/b") | {"src/b/keep", "src/b/keep/k.txt"},
    ),
    Case(
        "bang-does-not-recurse",
        ("--pattern", "+ src/b/keep", "--pattern", "! src/b"),
        without("src/b"),
    ),
    Case(
        "plus-before-minus",
        ("--pattern", "+ src/a/a.log", "--pattern", "- fm:*.log"),
        (ALL - LOGS) | {"src/a/a.log"},
    ),
    Case(
        "minus-before-plus", ("--pattern", "- fm:*.log", "--pattern", "+ src/a/a.log"), ALL - LOGS
    ),
    Case(
        "exclude-then-pattern-in-command-line-order",
        ("--exclude", "src/b", "--pattern", "+ src/b/keep"),
        without("src/b"),
    ),
    Case("exclude-caches", ("--exclude-caches",), without("src/cache")),
    Case(
        "exclude-caches-keep-tags",
        ("--exclude-caches", "--keep-exclude-tags"),
        without("src/cache") | {"src/cache", "src/cache/CACHEDIR.TAG"},
    ),
    Case("exclude-if-present", ("--exclude-if-present", ".nobackup"), without("src/tagged")),
    Case(
        "exclude-if-present-keep-tags",
        ("--exclude-if-present", ".nobackup", "--keep-exclude-tags"),
        without("src/tagged") | {"src/tagged", "src/tagged/.nobackup"},
    ),
    Case(
        "tag-is-a-directory",
        ("--exclude-if-present", "inner", "--keep-exclude-tags"),
        without("src/tagged") | {"src/tagged", "src/tagged/inner", "src/tagged/inner/i.txt"},
    ),
    Case(
        "tags-and-patterns-together",
        ("--exclude-if-present", ".nobackup", "--keep-exclude-tags", "--exclude", "*/.nobackup"),
        without("src/tagged") | {"src/tagged"},
    ),
]


def make_source(base: Path) -> None:
    for path in sorted(ALL - {"src"}):
        target = base / path
        if "." in target.name:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"{path}\n")
        else:
            target.mkdir(parents=True, exist_ok=True)
    (base / "src/cache/CACHEDIR.TAG").write_bytes(CACHEDIR_SIGNATURE + b"\n")
    (base / "src/badcache/CACHEDIR.TAG").write_text("Signature: not the right one\n")


@dataclass
class Workspace:
    base: Path
    hoard: Hoard
    hoard_repo: Path
    borg_repo: Path | None
    borg_env: dict[str, str]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One source tree and one repository each for hoard and (if present) Borg."""
    base = tmp_path_factory.mktemp("patterns")
    make_source(base)
    home = base / "home"
    home.mkdir()
    hoard = Hoard(home)
    hoard("init", "-e", "none", base / "hoard-repo")
    borg_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BORG_", "HOARD_"))},
        "BORG_BASE_DIR": str(base / "borg-home"),
        "BORG_PASSPHRASE": "",
    }
    borg_repo = None
    if BORG14.exists():
        borg_repo = base / "borg-repo"
        borg(borg_env, base, "init", "-e", "none", str(borg_repo))
    return Workspace(base, hoard, base / "hoard-repo", borg_repo, borg_env)


def borg(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [str(BORG14), *args], env=env, cwd=cwd, capture_output=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_pattern_case(workspace: Workspace, case: Case) -> None:
    base = workspace.base
    for name, content in case.files:
        (base / name).write_text(content)
    hoard_archive = f"{workspace.hoard_repo}::{case.name}"
    workspace.hoard("create", *case.args, hoard_archive, *case.paths, cwd=base)
    got = archived_paths(workspace.hoard, workspace.hoard_repo, case.name)
    assert got == case.expected, (sorted(got - case.expected), sorted(case.expected - got))
    if workspace.borg_repo is not None:  # the expectations are Borg 1.4.1's behaviour
        borg_archive = f"{workspace.borg_repo}::{case.name}"
        borg(workspace.borg_env, base, "create", *case.args, borg_archive, *case.paths)
        listed = borg(workspace.borg_env, base, "list", "--short", borg_archive)
        borg_paths = set(listed.splitlines())
        assert borg_paths == case.expected, sorted(borg_paths ^ case.expected)


def test_bad_pattern_is_one_line_exit_2(workspace: Workspace) -> None:
    result = workspace.hoard.run(
        "create", "--exclude", "xx:nope", f"{workspace.hoard_repo}::bad", "src", cwd=workspace.base
    )
    assert result.rc == 2 and "Traceback" not in result.err
    assert result.err.count("\n") == 1 and "xx:nope" in result.err
    listed = workspace.hoard("list", "--short", str(workspace.hoard_repo)).out
    assert "bad" not in listed.splitlines()
