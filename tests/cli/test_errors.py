"""Every user error: one line on stderr, exit code 2 (Borg 1.4's modern code with
``BORG_EXIT_CODES=modern``), no traceback, and the repository left exactly as it was.

Each scenario prepares a repository holding archive ``a`` (or breaks it in
one way), hashes every file of it, runs one command line, and checks the
outcome. argparse errors (a bad option value, an unknown option) print
argparse's usage before the message, as Borg's do; for them the last line
is the message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli.conftest import Hoard, Result
from tests.cli.test_create import assert_one_line, tree_hashes
from tests.cli.test_init import run_with_fd

DATA = os.urandom(300_000)


@dataclass
class Setup:
    """What a scenario works on: the tree, its repository, hoard's environment."""

    hoard: Hoard
    base: Path
    repo: Path
    env: dict[str, str] = field(default_factory=dict)


def packs(repo: Path) -> list[Path]:
    """Pack files, biggest (the data pack) first."""
    found = [p for p in (repo / "packs").rglob("*") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_size, reverse=True)


def flip_byte(path: Path, offset: int) -> None:
    content = bytearray(path.read_bytes())
    content[offset] ^= 0x40
    path.chmod(0o600)
    path.write_bytes(bytes(content))


def edit_config(repo: Path, **changes: object) -> None:
    path = repo / "config"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.chmod(0o600)
    path.write_text(json.dumps(doc))


@pytest.fixture
def setup(hoard: Hoard, tmp_path: Path) -> Setup:
    (tmp_path / "src").mkdir()
    (tmp_path / "src/data.bin").write_bytes(DATA)
    repo = tmp_path / "repo"
    hoard("init", "-e", "repokey", repo)
    hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    return Setup(hoard, tmp_path, repo)


@dataclass(frozen=True)
class Scenario:
    name: str
    prepare: Callable[[Setup], list[str]]
    """Breaks something if needed; returns the command line."""
    modern: int
    fragment: str


def _no_repository(s: Setup) -> list[str]:
    return ["create", f"{s.base / 'nothing-here'}::a", "src"]


def _empty_directory(s: Setup) -> list[str]:
    (s.base / "empty").mkdir()
    return ["create", f"{s.base / 'empty'}::a", "src"]


def _repository_exists(s: Setup) -> list[str]:
    return ["init", "-e", "repokey", str(s.repo)]


def _archive_exists(s: Setup) -> list[str]:
    return ["create", f"{s.repo}::a", "src"]


def _archive_does_not_exist(s: Setup) -> list[str]:
    return ["list", f"{s.repo}::nope"]


def _wrong_passphrase(s: Setup) -> list[str]:
    s.env["BORG_PASSPHRASE"] = "wrong"
    return ["create", f"{s.repo}::b", "src"]


def _wrong_passcommand(s: Setup) -> list[str]:
    del s.hoard.env["BORG_PASSPHRASE"]
    s.env["BORG_PASSCOMMAND"] = "echo wrong"
    return ["create", f"{s.repo}::b", "src"]


def _failing_passcommand(s: Setup) -> list[str]:
    del s.hoard.env["BORG_PASSPHRASE"]
    s.env["BORG_PASSCOMMAND"] = "false"
    return ["create", f"{s.repo}::b", "src"]


def _missing_key_file(s: Setup) -> list[str]:
    s.hoard("init", "-e", "keyfile", s.base / "kf")
    s.hoard("create", f"{s.base / 'kf'}::a", "src", cwd=s.base)
    for key in (s.hoard.base / ".config/hoard/keys").iterdir():
        key.unlink()
    s.repo = s.base / "kf"
    return ["create", f"{s.repo}::b", "src"]


def _missing_repokey(s: Setup) -> list[str]:
    (s.repo / "keys/repokey").unlink()
    (s.repo / "keys/repokey.copy").unlink()
    return ["create", f"{s.repo}::b", "src"]


def _corrupt_metadata_pack(s: Setup) -> list[str]:
    flip_byte(packs(s.repo)[-1], -1)
    return ["list", f"{s.repo}::a"]


def _corrupt_config(s: Setup) -> list[str]:
    for name in ("config", "config.copy"):  # "{" becomes ";": not JSON any more
        flip_byte(s.repo / name, 0)
    return ["create", f"{s.repo}::b", "src"]


def _corrupt_key_blob(s: Setup) -> list[str]:
    for name in ("repokey", "repokey.copy"):  # the checksum no longer matches
        flip_byte(s.repo / "keys" / name, -1)
    return ["create", f"{s.repo}::b", "src"]


def _future_format_version(s: Setup) -> list[str]:
    edit_config(s.repo, version=2)
    return ["create", f"{s.repo}::b", "src"]


def _unknown_mandatory_feature(s: Setup) -> list[str]:
    edit_config(s.repo, features={"write": ["from-the-future"]})
    return ["create", f"{s.repo}::b", "src"]


def _bad_pattern(s: Setup) -> list[str]:
    return ["create", "--exclude", "xx:nope", f"{s.repo}::b", "src"]


def _missing_patterns_file(s: Setup) -> list[str]:
    return ["create", "--patterns-from", "no-such-file", f"{s.repo}::b", "src"]


def _bad_placeholder(s: Setup) -> list[str]:
    return ["create", f"{s.repo}::{{nope}}", "src"]


def _no_archive_name(s: Setup) -> list[str]:
    return ["create", str(s.repo), "src"]


def _no_path(s: Setup) -> list[str]:
    return ["create", f"{s.repo}::b"]


SCENARIOS = [
    Scenario("no-repository", _no_repository, 13, "does not exist"),
    Scenario("empty-directory", _empty_directory, 15, "is not a valid repository"),
    Scenario("repository-exists", _repository_exists, 10, "A repository already exists at"),
    Scenario("archive-exists", _archive_exists, 30, "Archive a already exists"),
    Scenario("archive-does-not-exist", _archive_does_not_exist, 31, "nope"),
    Scenario("wrong-passphrase", _wrong_passphrase, 52, "passphrase supplied in BORG_PASSPHRASE"),
    Scenario("wrong-passcommand", _wrong_passcommand, 52, "is incorrect"),
    Scenario("failing-passcommand", _failing_passcommand, 51, "passcommand supplied"),
    Scenario("missing-key-file", _missing_key_file, 42, "No key file for repository"),
    Scenario("missing-repokey", _missing_repokey, 44, "No key entry found"),
    Scenario("corrupt-metadata-pack", _corrupt_metadata_pack, 90, "Data integrity error"),
    Scenario("corrupt-config", _corrupt_config, 15, "is not a valid repository"),
    Scenario("corrupt-key-blob", _corrupt_key_blob, 40, "is damaged"),
    Scenario("future-format-version", _future_format_version, 16, "Upgrade hoard"),
    Scenario("unknown-feature", _unknown_mandatory_feature, 25, "from-the-future"),
    Scenario("bad-pattern", _bad_pattern, 2, "xx:nope"),
    Scenario("missing-patterns-file", _missing_patterns_file, 2, "no-such-file"),
    Scenario("bad-placeholder", _bad_placeholder, 6, "nope"),
    Scenario("no-archive-name", _no_archive_name, 2, "archive name"),
    Scenario("no-path", _no_path, 2, "PATH"),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_error_is_one_line_and_changes_nothing(setup: Setup, scenario: Scenario) -> None:
    args = scenario.prepare(setup)
    before = tree_hashes(setup.repo)
    for env, rc in (({}, 2), ({"BORG_EXIT_CODES": "modern"}, scenario.modern)):
        result = setup.hoard.run(*args, env={**setup.env, **env}, cwd=setup.base)
        assert_one_line(result, rc, scenario.fragment)
        assert tree_hashes(setup.repo) == before, "the repository changed"
    assert not (setup.base / "nothing-here").exists()


def test_wrong_passphrase_from_a_descriptor(setup: Setup) -> None:
    before = tree_hashes(setup.repo)
    result = run_with_fd(
        setup.hoard, b"wrong\n", "create", f"{setup.repo}::b", "src", cwd=setup.base
    )
    assert_one_line(result, 2, "passphrase supplied in BORG_PASSPHRASE")
    assert tree_hashes(setup.repo) == before


def assert_argparse_error(result: Result, *fragments: str) -> None:
    """argparse's usage, then ``hoard <cmd>: error: ...`` as the last line; exit code 2."""
    assert result.rc == 2, str(result)
    assert "Traceback" not in result.err, str(result)
    lines = result.err.rstrip("\n").split("\n")
    assert lines[0].startswith("usage: hoard"), str(result)
    assert ": error: " in lines[-1], str(result)
    for fragment in fragments:
        assert fragment in lines[-1], str(result)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["create", "--compression", "snappy", "R::b", "src"], ("--compression", "snappy")),
        (["create", "--chunker-params", "1,2", "R::b", "src"], ("--chunker-params", "'1,2'")),
        (["create", "--stdin-mode", "rwx", "R::b", "-"], ("--stdin-mode",)),
        (["create", "--timestamp", "yesterday", "R::b", "src"], ("--timestamp",)),
        (["create", "--filter", "AQ", "R::b", "src"], ("--filter", "Q")),
        (["create", "--no-such-option", "R::b", "src"], ("unrecognized arguments",)),
        (["init", "-e", "rot13", "R2"], ("--encryption", "rot13")),
        (["init", "R2"], ("--encryption",)),
        (["--umask", "999", "init", "-e", "none", "R2"], ("--umask",)),
        (["--lock-wait", "soon", "list", "R"], ("--lock-wait",)),
        (["no-such-command"], ("invalid choice",)),
    ],
)
def test_bad_option_values_are_argparse_errors(
    setup: Setup, args: list[str], fragments: tuple[str, ...]
) -> None:
    before = tree_hashes(setup.repo)
    args = [a.replace("R::", f"{setup.repo}::").replace("R2", str(setup.base / "r2")) for a in args]
    args = [str(setup.repo) if a == "R" else a for a in args]
    for env in ({}, {"BORG_EXIT_CODES": "modern"}):
        result = setup.hoard.run(*args, env=env, cwd=setup.base)
        assert_argparse_error(result, *fragments)
    assert tree_hashes(setup.repo) == before
    assert not (setup.base / "r2").exists()


# --- the common options around errors ----------------------------------------------------------


def test_log_json_error_record_carries_the_msgid(setup: Setup) -> None:
    result = setup.hoard.run("--log-json", "create", f"{setup.repo}::a", "src", cwd=setup.base)
    assert result.rc == 2
    (line,) = result.err.splitlines()
    record = json.loads(line)
    assert record["type"] == "log_message" and record["levelname"] == "ERROR"
    assert record["msgid"] == "Archive.AlreadyExists"  # Borg 1.4.5's msgid
    assert record["message"] == "Archive a already exists"


def test_log_json_warning_records_carry_the_msgid(setup: Setup) -> None:
    result = setup.hoard.run(
        "create", "--log-json", f"{setup.repo}::w", "src", "gone", cwd=setup.base
    )
    assert result.rc == 1
    (record,) = [json.loads(line) for line in result.err.splitlines()]
    # borg --log-json create R::w src gone: "msgid": "BackupFileNotFoundError"
    assert record["msgid"] == "BackupFileNotFoundError" and record["levelname"] == "WARNING"
    assert record["message"] == "gone: stat: [Errno 2] No such file or directory: 'gone'"


def test_log_json_msgids_are_borgs(setup: Setup, tmp_path: Path) -> None:
    # borg --log-json list /nonexistent  ->  "msgid": "Repository.DoesNotExist"
    # borg --log-json list R::nosuch     ->  "msgid": "Archive.DoesNotExist"
    for location, msgid in (
        (str(tmp_path / "nonexistent"), "Repository.DoesNotExist"),
        (f"{setup.repo}::nosuch", "Archive.DoesNotExist"),
    ):
        result = setup.hoard.run("--log-json", "list", location)
        assert result.rc == 2
        (record,) = [json.loads(line) for line in result.err.splitlines()]
        assert record["msgid"] == msgid, record


def test_a_missing_relative_repository_is_named_absolute(setup: Setup, tmp_path: Path) -> None:
    # borg list nonrepo (in /some/dir)  ->  "Repository /some/dir/nonrepo does not exist."
    result = setup.hoard.run("list", "nonrepo", cwd=tmp_path)
    assert result.rc == 2
    assert result.err.strip() == f"Repository {tmp_path / 'nonrepo'} does not exist."


def test_show_rc(setup: Setup) -> None:
    hoard, base, repo = setup.hoard, setup.base, setup.repo
    ok = hoard.run("create", "--show-rc", f"{repo}::ok", "src", cwd=base)
    assert (ok.rc, ok.err) == (0, "terminating with success status, rc 0\n")
    warned = hoard.run("create", "--show-rc", f"{repo}::w", "src", "gone", cwd=base)
    assert warned.rc == 1
    assert warned.err.splitlines()[-1] == "terminating with warning status, rc 1"
    failed = hoard.run("--show-rc", "create", f"{repo}::ok", "src", cwd=base)
    assert failed.rc == 2
    assert failed.err.splitlines() == [
        "Archive ok already exists",
        "terminating with error status, rc 2",
    ]
    modern = hoard.run(
        "--show-rc", "create", f"{repo}::ok", "src", cwd=base, env={"BORG_EXIT_CODES": "modern"}
    )
    assert modern.err.splitlines()[-1] == "terminating with error status, rc 30"


def test_debug_shows_the_traceback(setup: Setup) -> None:
    result = setup.hoard.run("create", "--debug", f"{setup.repo}::a", "src", cwd=setup.base)
    assert result.rc == 2
    assert result.err.startswith("Archive a already exists\n")
    assert "Traceback (most recent call last)" in result.err
    assert "ArchiveAlreadyExists" in result.err


def test_unusable_cache_directory_is_an_error_not_a_traceback(setup: Setup) -> None:
    """An OSError nobody handled is the user's to fix: one error line, exit code 2.

    (The archive record cache warns about the same directory before that.)
    """
    blocker = setup.base / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    env = {"BORG_CACHE_DIR": str(blocker / "cache")}
    before = tree_hashes(setup.repo)
    result = setup.hoard.run("create", f"{setup.repo}::b", "src", cwd=setup.base, env=env)
    assert result.rc == 2, str(result)
    assert "Traceback" not in result.err, str(result)
    last = result.err.splitlines()[-1]
    assert last.startswith("Error: Not a directory: ") and str(blocker) in last
    assert tree_hashes(setup.repo) == before
