"""borgmatic 2.1 driving hoard through ``local_path``, as a borgmatic user
switches: its default action sequence and the actions that have a hoard
command, against a real repository (borgmatic from PyPI, a dev dependency)."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import HOARD, Hoard

BORGMATIC = Path(sys.executable).with_name("borgmatic")


@pytest.fixture
def borgmatic(hoard: Hoard, tmp_path: Path) -> tuple[list[str], dict[str, str], Path]:
    if not BORGMATIC.exists():
        pytest.fail(f"borgmatic is a dev dependency (pyproject.toml) and is missing: {BORGMATIC}")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n" * 100)
    (data / "sub" / "b.bin").write_bytes(bytes(range(256)) * 64)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"source_directories:\n    - {data}\n"
        f"repositories:\n    - path: {tmp_path / 'repo'}\n      label: local\n"
        f"local_path: {HOARD}\n"
        "encryption_passphrase: secret passphrase\n"
        "keep_daily: 7\n"
        "checks:\n    - name: repository\n    - name: archives\n"
    )
    env = {**hoard.env, "HOME": str(tmp_path / "home")}
    return [str(BORGMATIC), "--config", str(config)], env, data


def _run(command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def _json(command: list[str], env: dict[str, str], *args: str) -> dict[str, object]:
    (data,) = json.loads(_run(command, env, *args, "--json").stdout)  # one repository
    assert isinstance(data, dict)
    return data


def test_borgmatic_runs_hoard(
    borgmatic: tuple[list[str], dict[str, str], Path], tmp_path: Path
) -> None:
    command, env, data = borgmatic
    _run(command, env, "repo-create", "--encryption", "repokey")
    _run(command, env)  # the default sequence: create, prune, compact, check
    listed = _json(command, env, "list")
    (archive,) = listed["archives"]  # type: ignore[misc]
    name = archive["name"]
    assert listed["encryption"] == {"mode": "repokey", "cipher": "chacha20-poly1305"}
    assert _json(command, env, "repo-info")["encryption"] == listed["encryption"]
    (shown,) = _json(command, env, "info", "--archive", name)["archives"]  # type: ignore[misc]
    assert shown["name"] == name and shown["stats"]["nfiles"] >= 2

    target = tmp_path / "restore"
    target.mkdir()
    _run(command, env, "extract", "--archive", name, "--destination", str(target))
    restored = target / data.relative_to("/")
    compare = filecmp.dircmp(data, restored)
    assert compare.left_only == compare.right_only == compare.diff_files == []
    assert filecmp.cmp(data / "sub" / "b.bin", restored / "sub" / "b.bin", shallow=False)

    assert name in _run(command, env, "borg", "list").stdout  # the passthrough action
    _run(command, env, "break-lock")
    _run(command, env, "delete", "--archive", name)
    assert _json(command, env, "repo-list")["archives"] == []
