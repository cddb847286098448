"""BORG_*/HOARD_* variables and the per-user directories."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from hoard.cli.environment import Dirs, ensure_dir, getenv
from hoard.errors import HoardError

# --- getenv ----------------------------------------------------------------------


def test_getenv_borg() -> None:
    assert getenv("PASSPHRASE", {"BORG_PASSPHRASE": "b"}) == "b"


def test_getenv_hoard() -> None:
    assert getenv("PASSPHRASE", {"HOARD_PASSPHRASE": "h"}) == "h"


def test_getenv_hoard_wins() -> None:
    env = {"BORG_PASSPHRASE": "b", "HOARD_PASSPHRASE": "h"}
    assert getenv("PASSPHRASE", env) == "h"


def test_getenv_empty_counts_as_set() -> None:
    assert getenv("PASSPHRASE", {"BORG_PASSPHRASE": ""}) == ""
    assert getenv("PASSPHRASE", {"HOARD_PASSPHRASE": "", "BORG_PASSPHRASE": "b"}) == ""


def test_getenv_unset() -> None:
    assert getenv("PASSPHRASE", {"PASSPHRASE": "x", "BORG_OTHER": "y"}) is None


def test_getenv_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BORG_HOARD_TEST_VALUE", "from os.environ")
    monkeypatch.delenv("HOARD_HOARD_TEST_VALUE", raising=False)
    assert getenv("HOARD_TEST_VALUE") == "from os.environ"


# --- Dirs ------------------------------------------------------------------------


def test_dirs_default_from_home() -> None:
    dirs = Dirs.from_env({"HOME": "/home/u"})
    assert dirs == Dirs(
        base=Path("/home/u"),
        cache=Path("/home/u/.cache/hoard"),
        config=Path("/home/u/.config/hoard"),
        keys=Path("/home/u/.config/hoard/keys"),
        security=Path("/home/u/.config/hoard/security"),
    )


def test_dirs_follow_xdg() -> None:
    dirs = Dirs.from_env({"HOME": "/home/u", "XDG_CACHE_HOME": "/xc", "XDG_CONFIG_HOME": "/xg"})
    assert dirs.base == Path("/home/u")
    assert dirs.cache == Path("/xc/hoard")
    assert dirs.config == Path("/xg/hoard")
    assert dirs.keys == Path("/xg/hoard/keys")
    assert dirs.security == Path("/xg/hoard/security")


def test_base_dir_overrides_home_and_xdg() -> None:
    env = {"HOME": "/home/u", "XDG_CACHE_HOME": "/xc", "XDG_CONFIG_HOME": "/xg"}
    dirs = Dirs.from_env({**env, "BORG_BASE_DIR": "/b"})
    assert dirs.base == Path("/b")
    assert dirs.cache == Path("/b/.cache/hoard")
    assert dirs.config == Path("/b/.config/hoard")
    assert dirs.keys == Path("/b/.config/hoard/keys")
    assert dirs.security == Path("/b/.config/hoard/security")


def test_each_dir_overridden() -> None:
    env = {
        "HOME": "/home/u",
        "BORG_CACHE_DIR": "/c",
        "BORG_CONFIG_DIR": "/g",
        "BORG_KEYS_DIR": "/k",
        "BORG_SECURITY_DIR": "/s",
    }
    dirs = Dirs.from_env(env)
    assert dirs == Dirs(Path("/home/u"), Path("/c"), Path("/g"), Path("/k"), Path("/s"))


def test_config_dir_moves_keys_and_security() -> None:
    dirs = Dirs.from_env({"HOME": "/home/u", "BORG_CONFIG_DIR": "/g"})
    assert dirs.keys == Path("/g/keys")
    assert dirs.security == Path("/g/security")
    assert dirs.cache == Path("/home/u/.cache/hoard")


def test_hoard_variables_win_for_dirs() -> None:
    env = {
        "HOME": "/home/u",
        "BORG_BASE_DIR": "/borg",
        "HOARD_BASE_DIR": "/hoard",
        "BORG_KEYS_DIR": "/borgkeys",
        "HOARD_KEYS_DIR": "/hoardkeys",
        "HOARD_CACHE_DIR": "/hoardcache",
        "BORG_SECURITY_DIR": "/borgsec",
    }
    dirs = Dirs.from_env(env)
    assert dirs.base == Path("/hoard")
    assert dirs.config == Path("/hoard/.config/hoard")
    assert dirs.keys == Path("/hoardkeys")
    assert dirs.cache == Path("/hoardcache")
    assert dirs.security == Path("/borgsec")


def test_empty_dir_variables_count_as_unset() -> None:
    env = {"HOME": "/home/u", "BORG_BASE_DIR": "", "XDG_CACHE_HOME": "", "BORG_KEYS_DIR": ""}
    dirs = Dirs.from_env(env)
    assert dirs.base == Path("/home/u")
    assert dirs.cache == Path("/home/u/.cache/hoard")
    assert dirs.keys == Path("/home/u/.config/hoard/keys")


def test_without_home_uses_user_then_current_user() -> None:
    root_home = Path(pwd.getpwnam("root").pw_dir)
    assert Dirs.from_env({"USER": "root"}).base == root_home
    own_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert Dirs.from_env({}).base == own_home
    assert Dirs.from_env({"HOME": ""}).base == own_home
    assert Dirs.from_env({"USER": "no-such-user-hoard"}).base == own_home


def test_dirs_default_to_process_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("BASE_DIR", "CACHE_DIR", "CONFIG_DIR", "KEYS_DIR", "SECURITY_DIR"):
        monkeypatch.delenv(f"BORG_{name}", raising=False)
        monkeypatch.delenv(f"HOARD_{name}", raising=False)
    monkeypatch.setenv("HOARD_BASE_DIR", str(tmp_path))
    assert Dirs.from_env().cache == tmp_path / ".cache" / "hoard"


def test_dirs_creates_nothing(tmp_path: Path) -> None:
    Dirs.from_env({"HOME": str(tmp_path)})
    assert list(tmp_path.iterdir()) == []


# --- ensure_dir --------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_dir_creates_private_dirs(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "keys"
    assert ensure_dir(target) == target
    for path in (tmp_path / "a", tmp_path / "a" / "b", target):
        assert path.is_dir()
        assert mode(path) == 0o700


def test_ensure_dir_keeps_existing(tmp_path: Path) -> None:
    target = tmp_path / "existing"
    target.mkdir()
    target.chmod(0o755)
    (target / "file").write_text("kept")
    assert ensure_dir(target) == target
    assert mode(target) == 0o755
    assert (target / "file").read_text() == "kept"


def test_ensure_dir_refuses_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(HoardError, match="not a directory"):
        ensure_dir(tmp_path / "file" / "below")


def test_ensure_dir_refuses_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    with pytest.raises(HoardError, match="not a directory"):
        ensure_dir(tmp_path / "link")


def test_ensure_dir_reports_os_errors(tmp_path: Path) -> None:
    with pytest.raises(HoardError, match="File name too long"):
        ensure_dir(tmp_path / ("x" * 300) / "keys")
