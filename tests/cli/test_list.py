"""``hoard list``: archives and items, formats, JSON, filters, errors.

The expected text was produced by borg 1.4.1 on the same tree (built by
:func:`build_tree`) and differs only where hoard differs on purpose: every
hard-link member shows its real size (Borg 1.4: 0 for all but one), and
which member is "first" follows name order (Borg: its traversal order).
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
from pathlib import Path

import pytest
import xxhash

from tests.cli.conftest import Hoard, Result

MTIME_NS = 1_609_556_645_123_456_789  # Sat, 2021-01-02 03:04:05.123456789 UTC
MTIME_TEXT = "Sat, 2021-01-02 03:04:05"
NUMBERS = bytes(range(256)) * 400
FILES = {
    b"data/caf\xe9": b"cafe",
    b"data/empty": b"",
    b"data/hello.txt": b"hello\n",
    b"data/sub/numbers.bin": NUMBERS,
}
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def build_tree(root: Path) -> Path:
    """``root/data`` with fixed contents, modes and times; returns ``root``.

    data/caf\\xe9 (not UTF-8), data/empty, data/hello.txt, data/link ->
    hello.txt, data/sub/numbers.bin, data/zz-hard (hard link of hello.txt).
    """
    broot = os.fsencode(root)
    os.makedirs(os.path.join(broot, b"data", b"sub"))
    for rel, content in FILES.items():
        path = os.path.join(broot, rel)
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, 0o644)
    os.symlink(b"hello.txt", os.path.join(broot, b"data/link"))
    os.link(os.path.join(broot, b"data/hello.txt"), os.path.join(broot, b"data/zz-hard"))
    for rel in (b"data/sub", b"data"):
        os.chmod(os.path.join(broot, rel), 0o755)
    for rel in (*FILES, b"data/link", b"data/sub", b"data"):
        os.utime(os.path.join(broot, rel), ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    return root


@pytest.fixture
def utc_hoard(hoard: Hoard) -> Hoard:
    """All times in UTC, so expected output does not depend on the machine."""
    hoard.env["TZ"] = "UTC"
    return hoard


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "src")


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with archive ``arch1`` of ``data`` (relative paths) made at a fixed time.

    Shared by the tests of this module, which only read it (each runs hoard
    with its own base directory, so caches are not shared).
    """
    hoard, tree, repo = setup_repository(tmp_path_factory.mktemp("archived"))
    create(hoard, repo, "arch1", tree, "--comment", "first one")
    return repo


def setup_repository(base: Path) -> tuple[Hoard, Path, Path]:
    """A Hoard (UTC) with its own home, the fixed tree and an initialised repository."""
    (base / "home").mkdir()
    hoard = Hoard(base / "home")
    hoard.env["TZ"] = "UTC"
    repo = base / "repo"
    hoard("init", "--encryption", "repokey", repo)
    return hoard, build_tree(base / "src"), repo


def create(hoard: Hoard, repo: Path, name: str, tree: Path, *options: str, day: int = 4) -> None:
    timestamp = f"2022-03-{day:02d}T05:06:07+00:00"
    hoard("create", "--timestamp", timestamp, *options, f"{repo}::{name}", "data", cwd=tree)


def assert_error(result: Result, message: str) -> None:
    """Exit code 2, exactly one line on stderr containing ``message``, no traceback."""
    assert result.rc == 2, str(result)
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, str(result)
    assert message in lines[0]


def item_line(mode: str, size: int, path: str, extra: str = "") -> str:
    return f"{mode} {USER:6} {GROUP:6} {size:8} {MTIME_TEXT} {path}{extra}"


def test_listing_archives_does_not_load_the_chunk_index(hoard: Hoard, archived: Path) -> None:
    """``list REPO`` reads archive records only: numpy (the chunk and index
    file arrays, about 50 ms of start-up) must not even be imported."""
    result = hoard("list", archived, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.out.startswith("arch1 ")
    imported = {line.split("|")[-1].strip() for line in result.err.splitlines()}
    assert "hoard.repository.repository" in imported  # the import log is there
    assert not {m for m in imported if m.split(".")[0] == "numpy"}, sorted(imported)


# --- items ----------------------------------------------------------------------------------


def test_default_item_format(utc_hoard: Hoard, archived: Path) -> None:
    result = utc_hoard("list", f"{archived}::arch1")
    assert result.out.splitlines() == [
        item_line("drwxr-xr-x", 0, "data"),
        item_line("-rw-r--r--", 4, "data/caf?"),
        item_line("-rw-r--r--", 0, "data/empty"),
        item_line("-rw-r--r--", 6, "data/hello.txt"),
        item_line("lrwxrwxrwx", 9, "data/link", " -> hello.txt"),
        item_line("drwxr-xr-x", 0, "data/sub"),
        item_line("-rw-r--r--", len(NUMBERS), "data/sub/numbers.bin"),
        item_line("hrw-r--r--", 6, "data/zz-hard", " link to data/hello.txt"),
    ]
    assert result.err == ""


def test_short_lists_paths(utc_hoard: Hoard, archived: Path) -> None:
    result = utc_hoard("list", "--short", f"{archived}::arch1")
    assert result.stdout_bytes == (
        b"data\ndata/caf\xe9\ndata/empty\ndata/hello.txt\ndata/link\n"
        b"data/sub\ndata/sub/numbers.bin\ndata/zz-hard\n"
    ).replace(b"caf\xe9", b"caf?")


def test_bpath_is_verbatim_and_nul_separates(utc_hoard: Hoard, archived: Path) -> None:
    result = utc_hoard("list", "--format", "{bpath}{NUL}", f"{archived}::arch1", "data/caf\udce9")
    assert result.stdout_bytes == b"data/caf\xe9\0"


def test_hash_keys_match_hashlib(utc_hoard: Hoard, archived: Path) -> None:
    algorithms = ["md5", "sha1", "sha256", "sha512", "blake2b", "sha3_256", "xxh64"]
    fmt = "{path} " + " ".join(f"{{{a}}}" for a in algorithms) + "{NL}"
    result = utc_hoard("list", "--format", fmt, f"{archived}::arch1")
    lines = {line.split(" ")[0]: line.split(" ")[1:] for line in result.out.splitlines()}

    def digests(content: bytes) -> list[str]:
        return [
            xxhash.xxh64(content).hexdigest()
            if a == "xxh64"
            else hashlib.new(a, content).hexdigest()
            for a in algorithms
        ]

    assert lines["data/sub/numbers.bin"] == digests(NUMBERS)
    assert lines["data/hello.txt"] == digests(b"hello\n")
    assert lines["data/zz-hard"] == digests(b"hello\n")
    assert lines["data/empty"] == digests(b"")
    assert lines["data/caf?"] == digests(b"cafe")
    assert lines["data/link"] == [""] * len(algorithms)
    assert lines["data"] == [""] * len(algorithms)


def test_many_item_keys(utc_hoard: Hoard, archived: Path) -> None:
    fmt = (
        "{type}|{mode}|{uid}|{gid}|{user}|{group}|{path}|{source}|{linktarget}|{flags}|"
        "{size}|{num_chunks}|{mtime}|{isomtime}|{mtime:%Y}|{archivename}|{health}"
        "{extra}{TAB}{SPACE}{LF}"
    )
    result = utc_hoard("list", "--format", fmt, f"{archived}::arch1", "data/link", "data/zz-hard")
    ids = f"{os.getuid()}|{os.getgid()}|{USER}|{GROUP}"
    iso = "2021-01-02T03:04:05.123457"
    assert result.out.split("\n") == [
        f"l|lrwxrwxrwx|{ids}|data/link|hello.txt|hello.txt|0|9|0|{MTIME_TEXT}|{iso}|2021|"
        "arch1|healthy -> hello.txt\t ",
        f"-|hrw-r--r--|{ids}|data/zz-hard|data/hello.txt|data/hello.txt|0|6|1|{MTIME_TEXT}|"
        f"{iso}|2021|arch1|healthy link to data/hello.txt\t ",
        "",
    ]


def test_archiveid_matches_the_archive(utc_hoard: Hoard, archived: Path) -> None:
    ids = utc_hoard("list", "--format", "{id}", str(archived)).out
    items = utc_hoard("list", "--format", "{archiveid}{NL}", f"{archived}::arch1", "data/sub")
    assert items.out.splitlines() == [ids, ids]


def test_json_lines(utc_hoard: Hoard, archived: Path) -> None:
    result = utc_hoard("list", "--json-lines", f"{archived}::arch1")
    objects = [json.loads(line) for line in result.out.splitlines()]
    assert [o["path"] for o in objects][:3] == ["data", "data/caf?", "data/empty"]
    link = objects[4]
    assert link == {
        "type": "l",
        "mode": "lrwxrwxrwx",
        "user": USER,
        "group": GROUP,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "path": "data/link",
        "healthy": True,
        "source": "hello.txt",
        "linktarget": "hello.txt",
        "flags": 0,
        "mtime": "2021-01-02T03:04:05.123457",
        "size": 9,
    }
    assert objects[-1]["mode"] == "hrw-r--r--"
    assert objects[-1]["source"] == "data/hello.txt"


def test_json_lines_take_the_keys_of_the_format(utc_hoard: Hoard, archived: Path) -> None:
    result = utc_hoard(
        "list", "--json-lines", "--format", "{sha256} {isoctime}", f"{archived}::arch1",
        "data/hello.txt",
    )  # fmt: skip
    (obj,) = [json.loads(line) for line in result.out.splitlines()]
    assert obj["sha256"] == hashlib.sha256(b"hello\n").hexdigest()
    assert "isoctime" in obj
    assert "size" not in obj
    assert "mtime" not in obj
    short = utc_hoard("list", "--json-lines", "--short", f"{archived}::arch1", "data/empty")
    assert "size" not in json.loads(short.out)


def test_paths_and_patterns_select_items(utc_hoard: Hoard, archived: Path) -> None:
    def listed(*args: str) -> list[str]:
        return utc_hoard("list", "--short", f"{archived}::arch1", *args).out.splitlines()

    assert listed("data/sub") == ["data/sub", "data/sub/numbers.bin"]
    assert listed("data/sub", "data/link") == ["data/link", "data/sub", "data/sub/numbers.bin"]
    assert listed("--exclude", "*.txt", "--exclude", "data/sub") == [
        "data",
        "data/caf?",
        "data/empty",
        "data/link",
        "data/zz-hard",
    ]
    assert listed("--pattern=+data/sub/*", "--pattern=-data/*") == [
        "data",
        "data/sub/numbers.bin",
    ]
    assert listed("re:hard$") == ["data/zz-hard"]


def test_implicit_parent_directories_are_not_listed(
    utc_hoard: Hoard, repo: Path, tree: Path
) -> None:
    utc_hoard("create", f"{repo}::abs", str(tree / "data" / "sub"))
    lines = utc_hoard("list", "--short", f"{repo}::abs").out.splitlines()
    relative = str(tree / "data" / "sub").lstrip("/")
    assert lines == [relative, f"{relative}/numbers.bin"]


def test_dsize_counts_what_only_this_file_holds(utc_hoard: Hoard, repo: Path, tree: Path) -> None:
    create(utc_hoard, repo, "arch1", tree)
    (tree / "data" / "new.txt").write_bytes(b"only in the second archive\n")
    create(utc_hoard, repo, "arch2", tree, day=5)
    fmt = "{path} {size} {csize} {dsize} {dcsize} {num_chunks} {unique_chunks}{NL}"
    paths = ("data/empty", "data/hello.txt", "data/new.txt")
    result = utc_hoard("list", "--format", fmt, f"{repo}::arch2", *paths)
    rows = {path: list(map(int, rest)) for path, *rest in map(str.split, result.out.splitlines())}
    assert rows["data/empty"] == [0, 0, 0, 0, 0, 0]
    size, csize, dsize, dcsize, chunks, unique = rows["data/new.txt"]
    assert (size, dsize, chunks, unique) == (27, 27, 1, 1)
    assert csize == dcsize > 0
    # hello.txt is also in arch1 (and hard-linked): nothing of it is unique
    size, csize, dsize, dcsize, chunks, unique = rows["data/hello.txt"]
    assert (size, dsize, dcsize, chunks, unique) == (6, 0, 0, 1, 0)
    assert csize > 0


# --- archives -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def several(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mon-1 (day 4), tue-1 (day 5), mon-2 (day 6), mon-3.checkpoint (day 7)."""
    hoard, tree, repo = setup_repository(tmp_path_factory.mktemp("several"))
    for day, name in enumerate(("mon-1", "tue-1", "mon-2", "mon-3.checkpoint"), start=4):
        create(hoard, repo, name, tree, day=day)
    return repo


def names(hoard: Hoard, repo: Path, *options: str) -> list[str]:
    return hoard("list", "--format", "{archive}{NL}", *options, str(repo)).out.splitlines()


def test_default_archive_format(utc_hoard: Hoard, archived: Path) -> None:
    archive_id = utc_hoard("list", "--format", "{id}", str(archived)).out
    assert len(archive_id) == 64
    result = utc_hoard("list", str(archived))
    assert result.out == f"{'arch1':<36} Fri, 2022-03-04 05:06:07 [{archive_id}]\n"
    assert utc_hoard("list", "--short", str(archived)).out == "arch1\n"


def test_archive_keys(utc_hoard: Hoard, archived: Path) -> None:
    fmt = "{name}|{barchive}|{comment}|{bcomment}|{start}|{end:%Y}|{hostname}|{username}|{tam}"
    result = utc_hoard("list", "--format", fmt, str(archived))
    fields = result.out.split("|")
    assert fields[:6] == [
        "arch1",
        "arch1",
        "first one",
        "first one",
        "Fri, 2022-03-04 05:06:07",
        "2022",
    ]
    assert fields[8] == "verified"
    line = utc_hoard("list", "--format", "{command_line}", str(archived)).out
    assert line.endswith(f"--comment 'first one' {archived}::arch1 data")


def test_json_archives_match_info(utc_hoard: Hoard, archived: Path) -> None:
    listed = json.loads(utc_hoard("list", "--json", str(archived)).out)
    info = json.loads(utc_hoard("info", "--json", f"{archived}::arch1").out)
    (archive,) = listed["archives"]
    assert archive == {
        "archive": "arch1",
        "barchive": "arch1",
        "name": "arch1",
        "id": info["archives"][0]["id"],
        "start": "2022-03-04T05:06:07.000000",
        "time": "2022-03-04T05:06:07.000000",
    }
    assert listed["repository"]["id"] == info["repository"]["id"]
    assert listed["repository"]["location"] == str(archived)
    assert listed["encryption"] == {"mode": "repokey", "cipher": "chacha20-poly1305"}
    with_keys = json.loads(
        utc_hoard("list", "--json", "--format", "{comment}{end}", str(archived)).out
    )
    assert with_keys["archives"][0]["comment"] == "first one"
    assert with_keys["archives"][0]["end"].startswith("2022-03-04T05:06:07")


def test_checkpoints_are_hidden_unless_considered(utc_hoard: Hoard, several: Path) -> None:
    assert names(utc_hoard, several) == ["mon-1", "tue-1", "mon-2"]
    assert names(utc_hoard, several, "--consider-checkpoints") == [
        "mon-1", "tue-1", "mon-2", "mon-3.checkpoint",
    ]  # fmt: skip


def test_glob_first_last_and_sort(utc_hoard: Hoard, several: Path) -> None:
    assert names(utc_hoard, several, "-a", "mon-*") == ["mon-1", "mon-2"]
    assert names(utc_hoard, several, "--glob-archives", "*-1") == ["mon-1", "tue-1"]
    assert names(utc_hoard, several, "-P", "tue") == ["tue-1"]
    assert names(utc_hoard, several, "--first", "2") == ["mon-1", "tue-1"]
    assert names(utc_hoard, several, "--last", "1") == ["mon-2"]
    assert names(utc_hoard, several, "--last", "9") == ["mon-1", "tue-1", "mon-2"]
    assert names(utc_hoard, several, "--sort-by", "name") == ["mon-1", "mon-2", "tue-1"]
    assert names(utc_hoard, several, "--sort-by", "archive", "--last", "2") == ["mon-2", "tue-1"]
    assert names(utc_hoard, several, "-a", "mon-*", "--sort-by", "timestamp", "--first", "1") == [
        "mon-1"
    ]
    by_id = utc_hoard("list", "--sort-by", "id", "--format", "{id}{NL}", str(several)).out
    assert by_id.splitlines() == sorted(by_id.splitlines())


def test_archive_filters_expand_placeholders(utc_hoard: Hoard, several: Path) -> None:
    assert names(utc_hoard, several, "-a", "{now:%Y}*") == []
    assert names(utc_hoard, several, "-a", "{now:mon}-{now:1}") == ["mon-1"]
    assert names(utc_hoard, several, "-P", "{now:tue}") == ["tue-1"]


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["::nope"], "Archive nope does not exist"),
        (["--format", "{foo}", "::arch1"], "Invalid --format '{foo}': unknown key {foo}"),
        (["--format", "{foo}"], "Invalid --format '{foo}': unknown key {foo}"),
        (["--format", "{size:x<y}", "::arch1"], "Invalid --format"),
        (["--sort-by", "size"], "argument --sort-by: Invalid sort key: size"),
        (["--first", "0"], "argument --first: A positive integer is required: 0"),
        (["--last", "x"], "argument --last: invalid int value: 'x'"),
        (["--first", "1", "--last", "1"], "argument --last: not allowed with argument --first"),
        (["-a", "x*", "-a", "y*"], "argument -a/--glob-archives: There can be only one."),
        (["-a", "x*", "-P", "y"], "not allowed with argument -P/--prefix"),
        (["--json", "::arch1"], "The --json option is only valid for listing archives"),
        (["--json-lines"], "The --json-lines option is only valid for listing archive contents"),
        (["-a", "{nope}"], "Invalid placeholder"),
    ],
)
def test_errors_are_one_line(
    utc_hoard: Hoard, archived: Path, args: list[str], message: str
) -> None:
    full = [a.replace("::", f"{archived}::") if a.startswith("::") else a for a in args]
    if not any(a.startswith(str(archived)) for a in full):
        full.append(str(archived))
    assert_error(utc_hoard.run("list", *full), message)


def test_missing_repository(utc_hoard: Hoard, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert_error(utc_hoard.run("list", str(missing)), f"Repository {missing} does not exist")
    assert_error(utc_hoard.run("list", f"{missing}::a"), f"Repository {missing} does not exist")
