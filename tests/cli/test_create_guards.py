"""``create`` refusing to lose or misfile data: a lost lock, colliding archive
paths, names that cannot be archive paths, unreadable and vanished files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from hoard.repository.lock import LockRecord, lock_names, utc_now
from hoard.storage.local import LocalStorage

from .conftest import Hoard, Result
from .test_create import (
    MiB,
    archive_names,
    archived_paths,
    assert_one_line,
    fifo_writer,
    is_root,
    list_lines,
    run_as_nobody,
    shared_dir,
)

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
    # the file whole, or (when a checkpoint came while it was read) its first part
    kept = archived_paths(hoard, repo, "a.checkpoint")
    assert {"src/0-data", "src/0-data.hoard_part"} & kept, kept
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


# --- colliding archive paths ----------------------------------------------------------------


def two_sources(tmp_path: Path) -> None:
    """``x/f`` and ``y/f`` (files), ``d/f`` (a directory): all map to ``f`` after ``/./``."""
    for where, content in (("x", "from x\n"), ("y", "from y\n")):
        (tmp_path / where).mkdir()
        (tmp_path / where / "f").write_text(content)
    (tmp_path / "d/f").mkdir(parents=True)
    (tmp_path / "d/f/inside").write_text("inside\n")


def extracted(hoard: Hoard, repo: Path, name: str, where: Path) -> dict[str, str]:
    where.mkdir()
    hoard("extract", f"{repo}::{name}", cwd=where)
    return {str(p.relative_to(where)): p.read_text() for p in where.rglob("*") if p.is_file()}


def test_slashdot_collision_keeps_the_first_and_warns(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    two_sources(tmp_path)
    result = hoard.run("create", "--list", f"{repo}::a", "x/./f", "y/./f", cwd=tmp_path)
    assert result.rc == 1, str(result)
    assert list_lines(result) == [("A", "x/f"), ("E", "y/f")]  # --list tells the truth
    assert "y/f: not archived: archive path 'f' is taken by x/f" in result.err
    assert extracted(hoard, repo, "a", tmp_path / "out") == {"f": "from x\n"}
    modern = hoard.run("create", f"{repo}::b", "x/./f", "y/./f", env=MODERN, cwd=tmp_path)
    assert modern.rc == 102, str(modern)


def test_file_and_directory_on_one_archive_path_never_drop_silently(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    two_sources(tmp_path)
    result = hoard.run("create", "--list", f"{repo}::a", "d/./f", "x/./f", cwd=tmp_path)
    assert result.rc == 1, str(result)
    assert "x/f: not archived: archive path 'f' is taken by d/f" in result.err
    assert extracted(hoard, repo, "a", tmp_path / "a") == {"f/inside": "inside\n"}
    # the file first: the directory is not archived (its contents neither), and says so
    result = hoard.run("create", "--list", f"{repo}::b", "x/./f", "d/./f", cwd=tmp_path)
    assert result.rc == 1, str(result)
    assert ("E", "d/f") in list_lines(result)
    assert "d/f: not archived: archive path 'f' is taken by x/f" in result.err
    assert extracted(hoard, repo, "b", tmp_path / "b") == {"f": "from x\n"}
    # a file where a deeper root needs a directory
    result = hoard.run("create", f"{repo}::c", "x/./f", "d/./f/inside", cwd=tmp_path)
    assert result.rc == 1, str(result)
    assert "d/f/inside: not archived: archive path 'f' is taken by x/f" in result.err
    assert extracted(hoard, repo, "c", tmp_path / "c") == {"f": "from x\n"}


def test_two_directories_on_one_archive_path_are_merged_and_their_items_checked(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    for where in ("p", "q"):
        (tmp_path / where / "top").mkdir(parents=True)
        (tmp_path / where / "top" / f"only-{where}").write_text(where)
        (tmp_path / where / "top" / "both").write_text(f"both from {where}")
    result = hoard.run("create", f"{repo}::a", "p/./top", "q/./top", cwd=tmp_path)
    assert result.rc == 1, str(result)
    assert "q/top/both: not archived: archive path 'top/both' is taken by p/top/both" in (
        result.err
    )
    assert extracted(hoard, repo, "a", tmp_path / "out") == {
        "top/only-p": "p",
        "top/only-q": "q",
        "top/both": "both from p",
    }


def test_a_root_into_a_directory_already_stored_is_a_collision(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    """``x/./d`` is walked and stored before ``y/./d/sub`` comes: ``d/sub`` cannot
    take more items then, so the later root is reported, not lost silently."""
    for where, name in (("x", "f"), ("y", "g")):
        (tmp_path / where / "d/sub").mkdir(parents=True)
        (tmp_path / where / "d/sub" / name).write_text(name)
    for n, later in enumerate(("y/./d/sub", "y/./d/sub/g")):
        result = hoard.run("create", f"{repo}::a{n}", "x/./d", later, cwd=tmp_path)
        assert result.rc == 1, str(result)
        shown = later.replace("/./", "/")
        assert f"{shown}: not archived: archive path 'd/sub' is taken by x/d/sub" in result.err
        assert archived_paths(hoard, repo, f"a{n}") == {"d", "d/sub", "d/sub/f"}
    # the other order: d/sub is still open when x/./d comes, and the two merge
    hoard("create", f"{repo}::b", "y/./d/sub/g", "x/./d", cwd=tmp_path)
    assert archived_paths(hoard, repo, "b") == {"d", "d/sub", "d/sub/f", "d/sub/g"}


def test_same_source_twice_and_overlapping_roots_are_no_collision(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "src/sub").mkdir(parents=True)
    (tmp_path / "src/sub/f").write_text("f\n")
    (tmp_path / "src/g").write_text("g\n")
    for name, roots in (
        ("a", ["src", "src"]),
        ("b", ["src", "src/sub"]),
        ("c", ["src/sub", "src"]),
        ("d", ["src", "src/sub/f"]),  # inside a directory already stored: the same file
        ("e", ["src/sub/f", "src"]),
    ):
        result = hoard.run("create", f"{repo}::{name}", *roots, cwd=tmp_path)
        assert result.rc == 0, str(result)
        assert result.err == ""
        assert archived_paths(hoard, repo, name) == {"src", "src/sub", "src/sub/f", "src/g"}


def test_paths_from_stdin_collision_warns(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    two_sources(tmp_path)
    result = hoard.run(
        "create",
        "--list",
        "--paths-from-stdin",
        f"{repo}::a",
        input=b"x/./f\ny/./f\nx/f\n",
        cwd=tmp_path,
    )
    assert result.rc == 1, str(result)
    assert list_lines(result) == [("A", "x/f"), ("E", "y/f"), ("A", "x/f")]
    assert "y/f: not archived: archive path 'f' is taken by x/f" in result.err
    assert extracted(hoard, repo, "a", tmp_path / "out") == {"f": "from x\n", "x/f": "from x\n"}


def test_dry_run_reports_a_collision(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    two_sources(tmp_path)
    result = hoard.run("create", "-n", "--list", f"{repo}::a", "x/./f", "y/./f", cwd=tmp_path)
    assert result.rc == 1, str(result)
    assert list_lines(result) == [("-", "x/f"), ("E", "y/f")]


# --- names that cannot be archive paths -----------------------------------------------------


def test_stdin_name_that_cannot_be_an_archive_path_is_a_one_line_error(
    hoard: Hoard, repo: Path
) -> None:
    for name, reason in (
        ("a/..", "it normalises to the archive root, not a file"),
        ("/", "it normalises to the archive root, not a file"),
        ("./.", "it normalises to the archive root, not a file"),
        ("", "it is empty"),
    ):
        result = hoard.run("create", "--stdin-name", name, f"{repo}::a", "-", input=b"data")
        assert_one_line(result, 2, f"--stdin-name {name!r} cannot be an archive path: {reason}")
        command = ["--content-from-command", f"{repo}::a", "--", "echo", "hi"]
        result = hoard.run("create", "--stdin-name", name, *command)
        assert_one_line(result, 2, f"--stdin-name {name!r} cannot be an archive path: {reason}")
    assert archive_names(hoard, repo) == []


def test_dash_among_other_paths_fails_before_the_repository_is_opened(
    hoard: Hoard, tmp_path: Path
) -> None:
    (tmp_path / "d").mkdir()
    missing = tmp_path / "no-repo"
    result = hoard.run("create", f"{missing}::a", "-", str(tmp_path / "d"), input=b"data")
    assert_one_line(result, 2, "'-' (standard input) must be the only PATH")
    assert not missing.exists()


def test_a_command_option_without_a_command_is_borgs_usage_error(hoard: Hoard, repo: Path) -> None:
    # borg create --content-from-command repo::a  ->  usage, then
    # "borg: error: No command given.", rc 2 (likewise --paths-from-command)
    for option in ("--content-from-command", "--paths-from-command"):
        result = hoard.run("create", option, f"{repo}::a")
        assert result.rc == 2
        assert result.err.startswith("usage: hoard ")
        assert result.err.splitlines()[-1] == "hoard: error: No command given."
    assert archive_names(hoard, repo) == []


def test_a_dash_root_in_a_patterns_file_is_a_stream_without_files_cache(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    patterns = tmp_path / "patterns"
    patterns.write_text("R -\n")
    hoard("create", "--patterns-from", str(patterns), f"{repo}::s", input=b"streamed")
    assert archived_paths(hoard, repo, "s") == {"stdin"}
    cache = hoard.base / ".cache"
    assert not [p for p in cache.rglob("files*") if p.is_file()]  # nothing to remember


def test_stdin_name_is_normalised_as_every_archive_path(hoard: Hoard, repo: Path) -> None:
    for n, name in enumerate(("/abs/name", "../up", "a//b/./c", "d/../e")):
        hoard("create", "--stdin-name", name, f"{repo}::s{n}", "-", input=b"data")
    assert [archived_paths(hoard, repo, f"s{n}") for n in range(4)] == [
        {"abs/name"},  # the parents are implicit directories, not shown
        {"up"},
        {"a/b/c"},
        {"e"},
    ]


def test_listed_path_with_a_nul_byte_is_a_warning(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("f\n")
    for option, extra in (
        ("--paths-from-stdin", []),
        ("--paths-from-command", ["--", "printf", "f\\na\\000b\\n"]),
    ):
        name = option.removeprefix("--")
        result = hoard.run(
            "create", option, f"{repo}::{name}", *extra, input=b"f\na\0b\n", cwd=tmp_path
        )
        assert result.rc == 1, str(result)
        assert "a\\0b: it contains a NUL byte" in result.err
        assert "Traceback" not in result.err
        assert archived_paths(hoard, repo, name) == {"f"}


# --- OSErrors on source and target files: Borg's warnings -----------------------------------


def as_unprivileged(hoard: Hoard, where: Path) -> Callable[..., Result]:
    """A runner as an unprivileged user (root reads and writes everything)."""
    hoard.env["BORG_BASE_DIR"] = str(where / "home")

    def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
        if is_root():
            return run_as_nobody(hoard, *args, cwd=cwd, env=env or {})
        return hoard.run(*args, cwd=cwd, env=env)

    return run


def test_unreadable_directory_is_a_warning_and_the_rest_is_backed_up(hoard: Hoard) -> None:
    with shared_dir() as where:
        src = where / "src"
        (src / "locked").mkdir(parents=True)
        (src / "locked/inside").write_text("hidden")
        (src / "open.txt").write_text("fine")
        os.chmod(src / "open.txt", 0o644)
        os.chmod(src / "locked", 0o000)
        os.chmod(src, 0o755)
        run = as_unprivileged(hoard, where)
        assert run("init", "-e", "none", str(where / "repo"), cwd=where).rc == 0
        result = run("create", "--list", f"{where / 'repo'}::a", "src", cwd=where, env=MODERN)
        os.chmod(src / "locked", 0o755)
        assert result.rc == 105, str(result)
        assert ("E", "src/locked") in list_lines(result)
        assert "src/locked: dir_open: [Errno 13] Permission denied: 'locked'" in result.err
        assert archived_paths(hoard, where / "repo", "a") == {"src", "src/open.txt"}


def test_unwritable_target_is_a_warning_and_extract_goes_on(hoard: Hoard) -> None:
    with shared_dir() as where:
        src = where / "src"
        for sub in ("a", "b"):
            (src / sub).mkdir(parents=True)
            (src / sub / "file").write_text(f"{sub}\n")
            os.chmod(src / sub / "file", 0o644)
            os.chmod(src / sub, 0o755)
        os.chmod(src, 0o755)
        run = as_unprivileged(hoard, where)
        repo = where / "repo"
        assert run("init", "-e", "none", str(repo), cwd=where).rc == 0
        assert run("create", f"{repo}::a", "a", "b", cwd=src).rc == 0
        out = where / "out"
        (out / "b").mkdir(parents=True)
        (out / "b/keep").write_text("a non-empty directory stays\n")
        os.chmod(out, 0o777)
        os.chmod(out / "b", 0o555)  # not writable by the extracting user
        for modern, rc in ((False, 1), (True, 105)):
            result = run("extract", f"{repo}::a", cwd=out, env=MODERN if modern else {})
            assert result.rc == rc, str(result)
            assert (
                f"b/file: open: [Errno 13] Permission denied: '{out / 'b/file'}'" in result.err
            ), str(result)
            assert "Traceback" not in result.err
            assert (out / "a/file").read_text() == "a\n"
            assert not (out / "b/file").exists()
        os.chmod(out / "b", 0o755)  # so that the directory can be removed
