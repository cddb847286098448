"""``hoard key export|import|change-passphrase`` as a user runs them (Borg 1.4's commands)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hoard.objects.paperkey import parse_data_line, parse_id_line
from tests.cli.conftest import Hoard


def make_repo(hoard: Hoard, tmp_path: Path, mode: str = "repokey") -> Path:
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("precious\n")
    hoard("init", "-e", mode, repo)
    hoard("create", f"{repo}::a", "src", cwd=tmp_path)
    return repo


def repo_id(repo: Path) -> str:
    return str(json.loads((repo / "config").read_text())["id"])


def lose_key(hoard: Hoard, repo: Path, mode: str) -> None:
    if mode == "keyfile":
        for key in (hoard.base / ".config" / "hoard" / "keys").iterdir():
            key.unlink()
    else:
        for key in (repo / "keys").iterdir():
            key.unlink()
    lost = hoard.run("list", repo)
    assert lost.rc == 2 and "key" in lost.err.lower(), str(lost)


def assert_restores(hoard: Hoard, repo: Path, tmp_path: Path) -> None:
    assert hoard("list", "--short", repo).out.split() == ["a"]
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    hoard("extract", f"{repo}::a", cwd=out)
    assert (out / "src" / "file").read_text() == "precious\n"


@pytest.mark.parametrize("mode", ["repokey", "keyfile", "authenticated"])
def test_an_exported_key_restores_access_after_the_key_is_lost(
    hoard: Hoard, tmp_path: Path, mode: str
) -> None:
    repo = make_repo(hoard, tmp_path, mode)
    to_stdout = hoard("key", "export", repo).out
    assert to_stdout.startswith("HOARD KEY ")
    hoard("key", "export", repo, tmp_path / "exported")
    assert (tmp_path / "exported").read_text() == to_stdout
    lose_key(hoard, repo, mode)
    hoard("key", "import", repo, tmp_path / "exported")
    assert_restores(hoard, repo, tmp_path)
    lose_key(hoard, repo, mode)
    hoard("key", "import", repo, "-", input=to_stdout.encode())
    assert_restores(hoard, repo, tmp_path)


def paper_lines(text: str) -> list[str]:
    """What a user types: the id line's text, then each data line's."""
    lines = text.splitlines()
    assert lines[2] == "HOARD PAPER KEY v1"
    return [line.split(": ", 1)[1] for line in lines[3:]]


def test_paper_export_typed_back_in_with_a_typo(hoard: Hoard, tmp_path: Path) -> None:
    repo = make_repo(hoard, tmp_path)
    text = hoard("key", "export", "--paper", repo).out
    typed = paper_lines(text)
    parse_id_line(typed[0])
    for index, line in enumerate(typed[1:], 1):
        parse_data_line(index, line)  # every printed line checks
    lose_key(hoard, repo, "repokey")
    third = typed[3]
    wrong = third.replace(third[0], "f" if third[0] != "f" else "e", 1)
    answers = [typed[0], typed[1], typed[2], wrong, *typed[3:]]
    imported = hoard("key", "import", "--paper", repo, input="\n".join(answers).encode() + b"\n")
    assert "line checksum did not match, try line 3 again" in imported.err
    assert_restores(hoard, repo, tmp_path)


def test_paper_import_aborts_cleanly(hoard: Hoard, tmp_path: Path) -> None:
    repo = make_repo(hoard, tmp_path)
    typed = paper_lines(hoard("key", "export", "--paper", repo).out)
    before = {p.name: p.read_bytes() for p in (repo / "keys").iterdir()}
    aborted = hoard(
        "key", "import", "--paper", repo, input=f"{typed[0]}\n{typed[1]}\n\ny\n".encode()
    )
    assert "aborted" in aborted.err
    assert {p.name: p.read_bytes() for p in (repo / "keys").iterdir()} == before


def test_a_key_of_another_repository_is_refused(hoard: Hoard, tmp_path: Path) -> None:
    repo = make_repo(hoard, tmp_path)
    other = tmp_path / "other"
    hoard("init", "-e", "repokey", other)
    hoard("key", "export", other, tmp_path / "other-key")
    refused = hoard.run("key", "import", repo, tmp_path / "other-key")
    assert refused.rc == 2
    assert (
        f"Mismatch between repository {repo_id(repo)} and key file {tmp_path / 'other-key'}"
        in refused.err
    )
    typed = paper_lines(hoard("key", "export", "--paper", other).out)
    paper = hoard.run("key", "import", "--paper", repo, input="\n".join(typed).encode())
    assert paper.rc == 2 and "different backup repository" in paper.err
    assert_restores(hoard, repo, tmp_path)


def test_key_errors(hoard: Hoard, tmp_path: Path) -> None:
    repo = make_repo(hoard, tmp_path)
    plain = tmp_path / "plain"
    hoard("init", "-e", "none", plain)
    none = hoard.run("key", "export", plain)
    assert none.rc == 2 and "Key management not available for unencrypted repositories." in none.err
    missing = hoard.run("key", "import", repo, tmp_path / "nothere")
    assert missing.rc == 2 and f"input file does not exist: {tmp_path / 'nothere'}" in missing.err
    (tmp_path / "garbage").write_text("not a key\n")
    garbage = hoard.run("key", "import", repo, tmp_path / "garbage")
    assert garbage.rc == 2
    unwritable = hoard.run("key", "export", repo, tmp_path / "no" / "such" / "dir")
    assert unwritable.rc == 2 and "cannot write the key" in unwritable.err
    qr = hoard.run("key", "export", "--qr-html", repo, tmp_path / "key.html")
    assert qr.rc == 2 and "--qr-html" in qr.err and not (tmp_path / "key.html").exists()
    assert hoard.run("key", "import", repo).rc == 2  # no PATH and no --paper
    assert hoard.run("key", "import", "--paper", repo, tmp_path / "x").rc == 2
    usage = hoard("key")
    assert "export" in usage.out and "change-passphrase" in usage.out
    assert_restores(hoard, repo, tmp_path)


@pytest.mark.parametrize("command", [["key", "change-passphrase"], ["change-passphrase"]])
@pytest.mark.parametrize("mode", ["repokey", "keyfile"])
def test_change_passphrase(hoard: Hoard, tmp_path: Path, command: list[str], mode: str) -> None:
    repo = make_repo(hoard, tmp_path, mode)
    hoard.run(*command, repo, env={"BORG_NEW_PASSPHRASE": "new one"})
    changed = hoard.run(
        "--info", *command, repo, env={"BORG_PASSPHRASE": "new one", "BORG_NEW_PASSPHRASE": "x"}
    )
    assert changed.rc == 0 and "Key updated" in changed.err, str(changed)
    assert ("Key location:" in changed.err) == (mode == "keyfile")
    old = hoard.run("list", repo)
    assert old.rc == 2 and "incorrect" in old.err
    assert hoard("list", "--short", repo, env={"BORG_PASSPHRASE": "x"}).out.split() == ["a"]
    wrong = hoard.run(*command, repo, env={"BORG_PASSPHRASE": "wrong", "BORG_NEW_PASSPHRASE": "y"})
    assert wrong.rc == 2
    assert hoard("list", "--short", repo, env={"BORG_PASSPHRASE": "x"}).out.split() == ["a"]


def _killed_at(hoard: Hoard, base: Path, limit: int, *args: str | Path) -> tuple[int, int]:
    count = base / "changes"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "tests.killer", str(limit), str(count), *map(str, args)],
        env={**hoard.env, "PYTHONPATH": str(root), "BORG_NEW_PASSPHRASE": "new one"},
        cwd=base,
        capture_output=True,
        timeout=300,
        check=False,
    )
    return done.returncode, int(count.read_text())


@pytest.mark.slow
def test_change_passphrase_killed_at_every_step_keeps_a_key(hoard: Hoard, tmp_path: Path) -> None:
    """kill -9 before each storage change: the old or the new passphrase opens it."""
    repo = make_repo(hoard, tmp_path)
    pristine = tmp_path / "pristine"
    subprocess.run(["cp", "-a", str(repo), str(pristine)], check=True)
    rc, steps = _killed_at(hoard, tmp_path, -1, "key", "change-passphrase", repo)
    assert rc == 0 and steps == 2  # the key's copy, then the key
    for limit in range(steps):
        subprocess.run(["rm", "-rf", str(repo)], check=True)
        subprocess.run(["cp", "-a", str(pristine), str(repo)], check=True)
        rc, _ = _killed_at(hoard, tmp_path, limit, "key", "change-passphrase", repo)
        assert rc == -9
        opened = [
            passphrase
            for passphrase in ("secret passphrase", "new one")
            if hoard.run("list", "--short", repo, env={"BORG_PASSPHRASE": passphrase}).rc == 0
        ]
        assert opened, f"no passphrase opens the repository after a kill at step {limit}"
        assert hoard.run("list", repo, env={"BORG_PASSPHRASE": "wrong"}).rc == 2
