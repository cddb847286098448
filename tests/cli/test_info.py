"""``hoard info``: repository and archive details, text layout and JSON (Borg 1.4's)."""

from __future__ import annotations

import json
import os
import shlex
import socket
from pathlib import Path
from typing import Any

import pytest

from hoard.commands.stats import format_file_size
from tests.cli.conftest import Hoard
from tests.cli.test_list import USER, assert_error, build_tree, create, setup_repository

SEPARATOR = "-" * 78
STATS_HEADER = "                       Original size      Compressed size    Deduplicated size"
CHUNKS_HEADER = "                       Unique chunks         Total chunks"


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Hoard, Path]:
    """A repository with ``arch1``, read (never changed) by the tests using it."""
    hoard, tree, repo = setup_repository(tmp_path_factory.mktemp("info"))
    create(hoard, repo, "arch1", tree, "--comment", "first one")
    return hoard, repo


@pytest.fixture(scope="module")
def several(tmp_path_factory: pytest.TempPathFactory) -> tuple[Hoard, Path]:
    """mon-1, tue-1 (one more file), mon-2, mon-3.checkpoint."""
    hoard, tree, repo = setup_repository(tmp_path_factory.mktemp("several"))
    create(hoard, repo, "mon-1", tree, day=4)
    (tree / "data" / "new.txt").write_bytes(b"only from tue-1 on\n")
    create(hoard, repo, "tue-1", tree, day=5)
    create(hoard, repo, "mon-2", tree, day=6)
    create(hoard, repo, "mon-3.checkpoint", tree, day=7)
    return hoard, repo


def info_json(hoard: Hoard, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(hoard("info", "--json", *args).out)
    return data


def size_row(label: str, original: int, compressed: int, dedup: int) -> str:
    sizes = (format_file_size(v) for v in (original, compressed, dedup))
    return f"{label:15} " + " ".join(f"{s:>20}" for s in sizes)


def totals_lines(stats: dict[str, int]) -> list[str]:
    return [
        size_row("All archives:", stats["total_size"], stats["total_csize"], stats["unique_csize"]),
        "",
        CHUNKS_HEADER,
        f"Chunk index:    {stats['total_unique_chunks']:20d} {stats['total_chunks']:20d}",
    ]


@pytest.mark.parametrize(
    ("value", "iec", "text"),
    [  # as borg 1.4.1 prints them
        (0, False, "0 B"),
        (34, False, "34 B"),
        (999, False, "999 B"),
        (1515, False, "1.51 kB"),
        (1876, False, "1.88 kB"),
        (-1300, False, "-1.30 kB"),
        (102410, False, "102.41 kB"),
        (999_999, False, "1.00 MB"),
        (1024, True, "1.00 KiB"),
        (5 * 2**30, True, "5.00 GiB"),
    ],
)
def test_size_format_is_borgs(value: int, iec: bool, text: str) -> None:
    assert format_file_size(value, iec=iec) == text


def test_repository_json(archived: tuple[Hoard, Path]) -> None:
    hoard, repo = archived
    data = info_json(hoard, str(repo))
    assert set(data) == {"cache", "encryption", "repository", "security_dir"}
    repo_id = data["repository"]["id"]
    assert len(bytes.fromhex(repo_id)) == 32
    assert data["repository"]["location"] == str(repo)
    assert data["repository"]["last_modified"].startswith("2022-03-04T05:06:")
    # borg init -e repokey; borg info --json: "encryption": {"mode": "repokey"}
    assert data["encryption"] == {"mode": "repokey", "cipher": "chacha20-poly1305"}
    assert data["cache"]["path"] == str(hoard.base / ".cache" / "hoard" / repo_id)
    assert data["security_dir"] == str(hoard.base / ".config" / "hoard" / "security" / repo_id)
    (archive,) = info_json(hoard, f"{repo}::arch1")["archives"]
    stats = data["cache"]["stats"]
    assert stats["total_size"] == archive["stats"]["original_size"]
    assert stats["total_csize"] == archive["stats"]["compressed_size"]
    # one archive references everything stored
    assert stats["unique_csize"] == archive["stats"]["deduplicated_size"]
    assert 0 < stats["total_unique_chunks"] <= stats["total_chunks"]


def test_archive_json(archived: tuple[Hoard, Path]) -> None:
    hoard, repo = archived
    data = info_json(hoard, f"{repo}::arch1")
    assert set(data) == {"archives", "cache", "encryption", "repository"}
    (archive,) = data["archives"]
    listed = json.loads(hoard("list", "--json", str(repo)).out)["archives"][0]
    assert archive["id"] == listed["id"]
    assert archive["name"] == "arch1"
    assert archive["start"] == "2022-03-04T05:06:07.000000"
    assert archive["end"].startswith("2022-03-04T05:06:")
    assert archive["duration"] >= 0
    assert archive["hostname"] == socket.gethostname().split(".")[0]  # short, as Borg
    assert archive["username"] == USER
    assert archive["cwd"] == str(repo.parent / "src")  # where create ran (Borg's "cwd")
    assert archive["comment"] == "first one"
    assert archive["command_line"][1:] == [
        "create", "--timestamp", "2022-03-04T05:06:07+00:00", "--comment", "first one",
        f"{repo}::arch1", "data",
    ]  # fmt: skip
    assert archive["chunker_params"][0] in ("fastcdc", "buzhash")
    assert archive["limits"] == {"max_archive_size": 0.0}
    assert set(archive["stats"]) == {
        "original_size", "compressed_size", "deduplicated_size", "nfiles",
    }  # fmt: skip
    assert archive["stats"]["original_size"] >= 4 + 6 + 102400
    assert data["repository"] == info_json(hoard, str(repo))["repository"]


def test_archive_text(archived: tuple[Hoard, Path]) -> None:
    hoard, repo = archived
    data = info_json(hoard, f"{repo}::arch1")
    a = data["archives"][0]
    s = a["stats"]
    end = a["end"].replace("T", " ")[:19]
    assert hoard("info", f"{repo}::arch1").out.splitlines() == [
        "Archive name: arch1",
        f"Archive fingerprint: {a['id']}",
        "Comment: first one",
        f"Hostname: {a['hostname']}",
        f"Username: {USER}",
        "Time (start): Fri, 2022-03-04 05:06:07",
        f"Time (end): Fri, {end}",
        f"Duration: {a['duration']:.2f} seconds",
        f"Number of files: {s['nfiles']}",
        f"Working Directory: {repo.parent / 'src'}",
        f"Command line: {shlex.join(a['command_line'])}",
        "Utilization of maximum supported archive size: 0%",
        SEPARATOR,
        STATS_HEADER,
        size_row("This archive:", s["original_size"], s["compressed_size"], s["deduplicated_size"]),
        *totals_lines(data["cache"]["stats"]),
    ]


def test_repository_text(archived: tuple[Hoard, Path]) -> None:
    hoard, repo = archived
    data = info_json(hoard, str(repo))
    assert hoard("info", str(repo)).out.splitlines() == [
        f"Repository ID: {data['repository']['id']}",
        f"Location: {repo}",
        "Encrypted: Yes (repokey)",  # borg init -e repokey; borg info: the same line
        f"Cache: {data['cache']['path']}",
        f"Security dir: {data['security_dir']}",
        SEPARATOR,
        STATS_HEADER,
        *totals_lines(data["cache"]["stats"]),
    ]


def test_relative_location_is_shown_absolute(archived: tuple[Hoard, Path]) -> None:
    hoard, repo = archived
    text = hoard("info", "repo", cwd=repo.parent).out
    assert f"Location: {repo}\n" in text


def test_filters_select_archives_including_checkpoints(several: tuple[Hoard, Path]) -> None:
    hoard, repo = several

    def described(*args: str) -> list[str]:
        return [a["name"] for a in info_json(hoard, *args, str(repo))["archives"]]

    assert described("-a", "mon-*") == ["mon-1", "mon-2", "mon-3.checkpoint"]
    assert described("--last", "1") == ["mon-3.checkpoint"]
    assert described("--first", "2", "--sort-by", "name") == ["mon-1", "mon-2"]
    assert described("-P", "tue") == ["tue-1"]
    assert described("-a", "nothing*") == []
    text = hoard("info", "--first", "2", str(repo)).out
    blocks = text.split("\n\nArchive name: ")
    assert len(blocks) == 2
    assert blocks[0].startswith("Archive name: mon-1\n")
    assert blocks[1].startswith("tue-1\n")


def test_deduplicated_size_is_what_only_the_archive_holds(several: tuple[Hoard, Path]) -> None:
    hoard, repo = several
    data = info_json(hoard, "-a", "*", str(repo))
    dedup = {a["name"]: a["stats"]["deduplicated_size"] for a in data["archives"]}
    # tue-1's content is also in mon-2 and the checkpoint: only its record-specific trees
    # could be its own, and those are the same trees as mon-2's.
    assert dedup == {"mon-1": dedup["mon-1"], "tue-1": 0, "mon-2": 0, "mon-3.checkpoint": 0}
    assert dedup["mon-1"] > 0  # the data directory without new.txt is only in mon-1


def test_keyfile_mode(hoard: Hoard, tmp_path: Path) -> None:
    repo = tmp_path / "krepo"
    hoard("init", "--encryption", "keyfile", repo)
    tree = build_tree(tmp_path / "src")
    create(hoard, repo, "a", tree)
    data = info_json(hoard, str(repo))
    keyfile = Path(data["encryption"]["keyfile"])
    assert data["encryption"]["mode"] == "keyfile"
    assert keyfile.is_file()
    assert keyfile.parent == hoard.base / ".config" / "hoard" / "keys"
    lines = hoard("info", str(repo)).out.splitlines()
    assert lines[2:4] == ["Encrypted: Yes (keyfile)", f"Key file: {keyfile}"]  # as Borg
    assert info_json(hoard, f"{repo}::a")["encryption"]["keyfile"] == str(keyfile)


def test_unencrypted_repository(hoard: Hoard, tmp_path: Path) -> None:
    repo = tmp_path / "plain"
    hoard("init", "--encryption", "none", repo)
    lines = hoard("info", str(repo)).out.splitlines()
    assert lines[2] == "Encrypted: No"
    encryption = json.loads(hoard("info", "--json", str(repo)).out)["encryption"]
    assert encryption == {"mode": "none", "cipher": "none"}
    empty = json.loads(hoard("info", "--json", str(repo)).out)["cache"]["stats"]
    assert empty["total_chunks"] == empty["total_size"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["::nope"], "Archive nope does not exist"),
        (["--sort-by", "size"], "argument --sort-by: Invalid sort key: size"),
        (["--first", "-1"], "argument --first: A positive integer is required: -1"),
    ],
)
def test_errors_are_one_line(archived: tuple[Hoard, Path], args: list[str], message: str) -> None:
    hoard, repo = archived
    full = [f"{repo}{a}" if a.startswith("::") else a for a in args]
    if not any(a.startswith(str(repo)) for a in full):
        full.append(str(repo))
    assert_error(hoard.run("info", *full), message)


def test_missing_repository(hoard: Hoard, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert_error(hoard.run("info", os.fspath(missing)), f"Repository {missing} does not exist")


@pytest.mark.parametrize(
    ("given", "cipher"),
    [
        ("repokey", "chacha20-poly1305"),
        ("repokey-blake2", "chacha20-poly1305"),
        ("repokey-aes-gcm", "aes-gcm"),
        ("authenticated", "none"),
    ],
)
def test_encryption_mode_is_the_name_given_at_init(
    hoard: Hoard, tmp_path: Path, given: str, cipher: str
) -> None:
    # borg init -e repokey-blake2 R; borg info --json R: "mode": "repokey-blake2"
    # (borgmatic and Vorta switch on it); hoard adds the cipher it uses.
    repo = tmp_path / "r"
    hoard("init", "--encryption", given, repo)
    for command in ("info", "list"):
        data = json.loads(hoard(command, "--json", str(repo)).out)
        assert data["encryption"] == {"mode": given, "cipher": cipher}
    text = hoard("info", str(repo)).out.splitlines()[2]
    assert text == ("Encrypted: No" if given == "authenticated" else f"Encrypted: Yes ({given})")


def test_create_stats_and_info_agree_on_the_deduplicated_size(hoard: Hoard, tmp_path: Path) -> None:
    # borg create --json R::a src; borg info --json R::a: the same deduplicated_size
    # (both count the archive's new metadata, Borg's items, hoard's trees)
    repo = tmp_path / "r"
    hoard("init", "--encryption", "repokey", repo)
    tree = build_tree(tmp_path / "src")
    created = json.loads(hoard("create", "--json", f"{repo}::a", "data", cwd=tree).out)
    shown = info_json(hoard, f"{repo}::a")["archives"][0]["stats"]
    assert created["archive"]["stats"]["deduplicated_size"] == shown["deduplicated_size"] > 0
