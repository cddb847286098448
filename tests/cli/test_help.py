"""``hoard`` alone, ``hoard help [TOPIC]`` and the host and user an archive
records, as Borg 1.4.5 does them (each test names the Borg command its
expectation was taken from)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.cli.conftest import Hoard


def test_hoard_alone_prints_the_help_and_exits_0(hoard: Hoard) -> None:
    # borg > out; echo $?  ->  the top-level help on stdout, 0
    result = hoard.run()
    assert result.rc == 0 and result.err == ""
    assert result.out.startswith("usage: hoard ") and "<command>" in result.out
    assert result.out == hoard("help").out == hoard("-h").out


def test_show_version_alone_names_the_version_then_the_help(hoard: Hoard) -> None:
    # borg --show-version  ->  "borgbackup version 1.4.5" on stderr, the help, 0
    result = hoard.run("--show-version")
    assert result.rc == 0
    assert result.err.startswith("hoard version 1.4.")
    assert result.out.startswith("usage: hoard ")


@pytest.mark.parametrize(
    ("topic", "first_line"),
    [
        ("patterns", "Include and exclude patterns"),
        ("placeholders", "Placeholders"),
        ("compression", "Compression"),
    ],
)
def test_help_topics(hoard: Hoard, topic: str, first_line: str) -> None:
    # borg help patterns|placeholders|compression  ->  the topic's text, 0
    out = hoard("help", topic).out
    assert out.startswith(first_line)
    assert {"patterns": "pf:", "placeholders": "{utcnow}", "compression": "zstd"}[topic] in out


def test_help_of_a_command_is_its_dash_h(hoard: Hoard) -> None:
    # borg help rename  ==  borg rename -h
    assert hoard("help", "rename").out == hoard("rename", "-h").out
    full = hoard("help", "create").out
    epilog = hoard("help", "--epilog-only", "create").out
    usage = hoard("help", "--usage-only", "create").out
    assert epilog.strip() and epilog.strip() in full and "--exclude" not in epilog
    assert "--exclude" in usage and epilog.strip() not in usage


def test_help_on_something_unknown_names_what_there_is(hoard: Hoard) -> None:
    # borg help nosuch  ->  "borg: error: No help available on nosuch." + lists, 2
    result = hoard.run("help", "nosuch")
    assert result.rc == 2
    assert "hoard: error: No help available on nosuch." in result.err
    assert "Commands: benchmark, break-lock, change-passphrase, check," in result.err
    assert "Topics: compression, patterns, placeholders" in result.err


@pytest.mark.parametrize("prefix", ["BORG_", "HOARD_"])
def test_hostname_and_username_overrides(
    hoard: Hoard, repo: Path, tmp_path: Path, prefix: str
) -> None:
    # Borg 1.4.5's test_create_hostname_username_override: the override names
    # the archive through {hostname}-{user} and is what the record stores.
    (tmp_path / "input").mkdir()
    env = {f"{prefix}HOSTNAME": "foo_host", f"{prefix}USERNAME": "bar_user"}
    hoard("create", f"{repo}::{{hostname}}-{{user}}", "input", cwd=tmp_path, env=env)
    info = json.loads(hoard("info", "--json", f"{repo}::foo_host-bar_user").out)
    (archive,) = info["archives"]
    assert (archive["name"], archive["hostname"], archive["username"]) == (
        "foo_host-bar_user", "foo_host", "bar_user"
    )  # fmt: skip


def test_without_overrides_the_record_has_the_short_host_name(
    hoard: Hoard, repo: Path, tmp_path: Path
) -> None:
    # borg create; borg info --json: "hostname" is `hostname --short` (Borg cuts at the dot)
    (tmp_path / "input").mkdir()
    empty = {"BORG_HOSTNAME": "", "BORG_USERNAME": ""}  # empty counts as unset (Borg's `or`)
    hoard("create", f"{repo}::a", "input", cwd=tmp_path, env=empty)
    (archive,) = json.loads(hoard("info", "--json", f"{repo}::a").out)["archives"]
    assert archive["hostname"] == socket.gethostname().split(".")[0]
    assert archive["username"]


def test_version_of_a_repository_is_client_slash_server(hoard: Hoard, repo: Path) -> None:
    # borg version REPO  ->  "1.4.5 / 1.4.5" (a local repository: the client twice)
    own = hoard("--version").out.split()[1]
    assert hoard("version", str(repo)).out == f"{own} / {own}\n"
    assert hoard("version", env={"BORG_REPO": str(repo)}).out == f"{own} / {own}\n"
    # borg version (no REPO, no BORG_REPO)  ->  rc 2, "Invalid location format"
    result = hoard.run("version")
    assert result.rc == 2 and "Invalid location format" in result.err


def test_progress_on_a_stderr_that_is_no_terminal(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    # borg create --progress R::a src 2> log: "0 B O 0 B C 0 B D 0 N src/f" lines
    # ended by \n, then an empty line; other progress messages end in \r
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x" * 1000)
    err = hoard("create", "--progress", f"{repo}::a", "src", cwd=tmp_path).err
    lines = err.split("\n")
    assert any(line.endswith(" N src") or line.endswith(" N src/f") for line in lines), err
    assert " B O " in err and " B C " in err and " B D " in err  # sizes as Borg formats them
    assert lines[-2:] == ["", ""]  # the final empty line, then the end of stderr
    out = hoard("extract", "--progress", f"{repo}::a", cwd=tmp_path / "src").err
    assert "% Extracting: src/f\r" in out and out.endswith("\r")
