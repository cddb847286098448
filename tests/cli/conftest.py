"""Fixtures for running the ``hoard`` executable as a user would.

Each test gets its own HOME-like base directory (cache, config, keys), a
passphrase in the environment and Borg's test-only KDF weakening, and runs
``hoard`` as a subprocess, so argument parsing, exit codes and output
streams are exercised exactly as a shell script or borgmatic sees them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sshd import Sshd

HOARD = shutil.which("hoard", path=os.path.dirname(sys.executable)) or "hoard"


@dataclass
class Result:
    rc: int
    out: str
    err: str
    stdout_bytes: bytes

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Hoard:
    """Runs ``hoard`` with a private environment; ``hoard("list", repo)``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("BORG_", "HOARD_"))}
        self.env.update(
            {
                "BORG_BASE_DIR": str(base),
                "BORG_PASSPHRASE": "secret passphrase",
                "BORG_TESTONLY_WEAKEN_KDF": "1",
                "LANG": "C.UTF-8",
            }
        )

        self.sshd: Sshd | None = None

    def use_ssh(self, sshd: Sshd) -> None:
        """Reach repositories through ``sshd``: ``loc`` gives ssh:// locations."""
        self.sshd = sshd
        self.env.update(sshd.env())

    def loc(self, path: str | os.PathLike[str]) -> str:
        """The location of the repository at ``path`` as this run reaches it:
        the path itself, or its ssh:// URL after ``use_ssh``."""
        if self.sshd is None:
            return os.fspath(path)
        return self.sshd.url(os.path.abspath(path))

    def run(
        self,
        *args: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Result:
        full_env = dict(self.env)
        if env:
            full_env.update(env)
        done = subprocess.run(
            [HOARD, *map(os.fspath, args)],
            env=full_env,
            input=input,
            capture_output=True,
            cwd=cwd,
            timeout=600,
            check=False,
        )
        return Result(
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
            done.stdout,
        )

    def __call__(self, *args: str | os.PathLike[str], **kwargs: object) -> Result:
        """Run and require exit code 0."""
        result = self.run(*args, **kwargs)  # type: ignore[arg-type]
        assert result.rc == 0, str(result)
        return result


@pytest.fixture
def hoard(tmp_path: Path) -> Hoard:
    base = tmp_path / "home"
    base.mkdir()
    return Hoard(base)


@pytest.fixture(params=["local", "ssh"])
def hoard_anywhere(request: pytest.FixtureRequest, tmp_path: Path) -> Hoard:
    """A Hoard whose ``loc`` is a local path, then (second run) an ssh://
    location through the test sshd: for tests that every command must pass
    over ssh too. Use it as ``hoard`` with ``hoard.loc(repo)`` for locations."""
    base = tmp_path / "home"
    base.mkdir()
    runner = Hoard(base)
    if request.param == "ssh":
        runner.use_ssh(request.getfixturevalue("sshd"))
    return runner


@pytest.fixture
def repo(hoard: Hoard, tmp_path: Path) -> Path:
    """An initialised repokey repository."""
    path = tmp_path / "repo"
    hoard("init", "--encryption", "repokey", path)
    return path


def set_pack_size(repo: Path, size: int) -> None:
    """Small packs for a test repository: its config and the config's copy
    are rewritten alike (a config differing from its copy is a check finding)."""
    data = (repo / "config").read_text()
    config = json.loads(data)
    config["pack_size"] = size
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    for name in ("config", "config.copy"):
        (repo / name).write_text(text)
