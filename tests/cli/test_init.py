"""``hoard init`` through the real executable: modes, key places, refusals, passphrase sources.

The refusals follow Borg 1.4's ``check_can_create_repository`` (messages and
modern exit codes checked side by side with borg 1.4.1): an existing
repository (10), something else in the way (19), a repository in a parent
directory (10), a missing parent without ``--make-parent-dirs`` (18).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hoard.cli.environment import Dirs
from tests.cli.conftest import HOARD, Hoard, Result
from tests.cli.test_create import archive_names, archived_paths, assert_one_line, tree_hashes

MODERN = {"BORG_EXIT_CODES": "modern"}


def config(repo: Path) -> dict[str, object]:
    return json.loads((repo / "config").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("mode", "stored"),
    [
        ("none", "none"),
        ("authenticated", "authenticated"),
        ("repokey", "repokey"),  # the name as given (it parses to chacha20-poly1305)
        ("repokey-aes-ocb", "repokey-aes-ocb"),
        ("keyfile-blake2", "keyfile-blake2"),
    ],
)
def test_modes_make_usable_repositories(
    hoard: Hoard, tmp_path: Path, mode: str, stored: str
) -> None:
    repo = tmp_path / "repo"
    result = hoard("init", "-e", mode, repo)
    assert config(repo)["key_mode"] == stored
    assert ("IMPORTANT" in result.err) == (mode != "none")
    (tmp_path / "src").mkdir()
    (tmp_path / "src/f").write_text("x")
    hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    assert archived_paths(hoard, repo, "a") == {"src", "src/f"}


def test_keyfile_goes_to_the_keys_directory(hoard: Hoard, tmp_path: Path) -> None:
    hoard("init", "-e", "keyfile", tmp_path / "repo")
    keys = hoard.base / ".config/hoard/keys"
    (key_file,) = keys.iterdir()
    repo_id = config(tmp_path / "repo")["id"]
    assert key_file.name == repo_id
    assert oct(key_file.stat().st_mode & 0o777) == oct(0o600)
    assert not (tmp_path / "repo/keys").exists()  # nothing of the key in the repository
    assert Dirs.from_env(hoard.env).keys == keys


def test_keys_dir_variable_is_respected(hoard: Hoard, tmp_path: Path) -> None:
    elsewhere = tmp_path / "my-keys"
    env = {"BORG_KEYS_DIR": str(elsewhere)}
    hoard("init", "-e", "keyfile", tmp_path / "repo", env=env)
    assert len(list(elsewhere.iterdir())) == 1
    assert not (hoard.base / ".config/hoard/keys").exists()
    (tmp_path / "src").mkdir()
    hoard("create", f"{tmp_path / 'repo'}::a", "src", cwd=tmp_path, env=env)
    result = hoard.run("create", f"{tmp_path / 'repo'}::b", "src", cwd=tmp_path, env=MODERN)
    assert_one_line(result, 42, "No key file for repository")


def test_existing_repository_is_refused(hoard: Hoard, repo: Path) -> None:
    before = tree_hashes(repo)
    assert_one_line(hoard.run("init", "-e", "repokey", repo), 2, "A repository already exists at")
    assert_one_line(hoard.run("init", "-e", "none", repo, env=MODERN), 10, str(repo))
    assert tree_hashes(repo) == before


def test_non_empty_directory_and_file_are_refused(hoard: Hoard, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir/something").write_text("mine")
    (tmp_path / "file").write_text("mine")
    for target in ("dir", "file"):
        result = hoard.run("init", "-e", "none", tmp_path / target, env=MODERN)
        assert_one_line(result, 19, f"There is already something at {tmp_path / target}.")
    assert (tmp_path / "dir/something").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["something"]


def test_empty_directory_is_accepted(hoard: Hoard, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    hoard("init", "-e", "none", tmp_path / "empty")
    assert (tmp_path / "empty/config").is_file()


def test_repository_inside_a_repository_is_refused(hoard: Hoard, repo: Path) -> None:
    result = hoard.run("init", "-e", "none", repo / "inner", env=MODERN)
    assert_one_line(result, 10, f"A repository already exists at {repo}.")
    assert not (repo / "inner").exists()


def test_missing_parent(hoard: Hoard, tmp_path: Path) -> None:
    target = tmp_path / "a/b/repo"
    result = hoard.run("init", "-e", "none", target, env=MODERN)
    assert_one_line(result, 18, f"The parent path of the repo directory [{target}] does not exist.")
    assert not (tmp_path / "a").exists()
    hoard("init", "-e", "none", "--make-parent-dirs", target)
    assert (target / "config").is_file()


def test_storage_quota_and_append_only_are_recorded(hoard: Hoard, tmp_path: Path) -> None:
    hoard("init", "-e", "none", "--storage-quota", "5G", "--append-only", tmp_path / "r")
    doc = config(tmp_path / "r")
    assert doc["storage_quota"] == 5 * 10**9 and doc["append_only"] is True
    hoard("init", "-e", "none", tmp_path / "plain")
    assert config(tmp_path / "plain")["storage_quota"] is None
    result = hoard.run("init", "-e", "none", "--storage-quota", "1M", tmp_path / "small")
    assert result.rc == 2 and "At least 10M are required" in result.err
    assert "Traceback" not in result.err and not (tmp_path / "small").exists()


def test_placeholders_in_the_repository_path(hoard: Hoard, tmp_path: Path) -> None:
    hoard("init", "-e", "none", str(tmp_path / "repo-{user}"))
    (made,) = [p for p in tmp_path.iterdir() if p.name.startswith("repo-")]
    assert made.name != "repo-{user}" and (made / "config").is_file()


def run_with_fd(hoard: Hoard, passphrase: bytes, *args: str, cwd: Path) -> Result:
    """Run hoard with the passphrase in an inherited pipe named by BORG_PASSPHRASE_FD."""
    read_end, write_end = os.pipe()
    os.write(write_end, passphrase)
    os.close(write_end)
    env = {k: v for k, v in hoard.env.items() if k != "BORG_PASSPHRASE"}
    env["BORG_PASSPHRASE_FD"] = str(read_end)
    try:
        done = subprocess.run(
            [HOARD, *args],
            env=env,
            cwd=cwd,
            pass_fds=(read_end,),
            capture_output=True,
            check=False,
            timeout=300,
        )
    finally:
        os.close(read_end)
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode(), done.stdout)


def test_passphrase_from_an_inherited_descriptor(hoard: Hoard, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    repo = str(tmp_path / "repo")
    assert run_with_fd(hoard, b"fd secret\n", "init", "-e", "repokey", repo, cwd=tmp_path).rc == 0
    created = run_with_fd(hoard, b"fd secret", "create", f"{repo}::a", "src", cwd=tmp_path)
    assert created.rc == 0, str(created)
    wrong = run_with_fd(hoard, b"not it", "create", f"{repo}::b", "src", cwd=tmp_path)
    assert_one_line(wrong, 2, "passphrase supplied in BORG_PASSPHRASE")
    hoard.env["BORG_PASSPHRASE"] = "fd secret"
    assert archive_names(hoard, Path(repo)) == ["a"]


def test_passphrase_from_a_command(hoard: Hoard, tmp_path: Path) -> None:
    env = {"BORG_PASSCOMMAND": "echo from-command"}
    del hoard.env["BORG_PASSPHRASE"]
    hoard("init", "-e", "repokey", tmp_path / "repo", env=env)
    (tmp_path / "src").mkdir()
    hoard("create", f"{tmp_path / 'repo'}::a", "src", cwd=tmp_path, env=env)
    result = hoard.run(
        "create",
        f"{tmp_path / 'repo'}::b",
        "src",
        cwd=tmp_path,
        env={"BORG_PASSCOMMAND": "echo wrong", **MODERN},
    )
    assert_one_line(result, 52)


def test_no_passphrase_and_no_terminal(hoard: Hoard, tmp_path: Path) -> None:
    del hoard.env["BORG_PASSPHRASE"]
    result = hoard.run("init", "-e", "repokey", tmp_path / "repo", env=MODERN)
    assert_one_line(result, 50, "can not acquire a passphrase")
    assert not (tmp_path / "repo").exists()


def test_key_that_cannot_be_stored_leaves_no_repository(hoard: Hoard, tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the keys directory should be")
    env = {"BORG_KEYS_DIR": str(tmp_path / "blocker/keys")}
    result = hoard.run("init", "-e", "keyfile", tmp_path / "repo", env=env)
    assert_one_line(result, 2, "Not a directory")
    assert not (tmp_path / "repo/config").exists()
    hoard("init", "-e", "keyfile", tmp_path / "repo")  # the same place works once it can
