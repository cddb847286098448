"""Environment variables and the per-user directories derived from them.

hoard reads Borg's variables so existing scripts and tools such as borgmatic
work unchanged; each ``BORG_X`` also exists as ``HOARD_X``, which wins when
both are set, so hoard can be configured next to Borg on the same machine.
Only the ``cli`` layer reads the environment; lower layers get values.
"""

from __future__ import annotations

import errno
import os
import pwd
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from hoard.errors import HoardError

PREFIXES = ("HOARD_", "BORG_")
APP_NAME = "hoard"


def getenv(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """Value of ``HOARD_<name>``, else of ``BORG_<name>``, else None.

    ``name`` is the suffix, e.g. ``"PASSPHRASE"``. A variable set to the
    empty string counts as set: an empty ``BORG_PASSPHRASE`` is a valid
    passphrase, as in Borg.
    """
    source = os.environ if env is None else env
    for prefix in PREFIXES:
        value = source.get(prefix + name)
        if value is not None:
            return value
    return None


def _nonempty(value: str | None) -> str | None:
    """Directory variables set to "" count as unset.

    An empty path would silently mean the current directory; the XDG spec
    says the same of its own variables.
    """
    return value or None


def _dir_var(env: Mapping[str, str], name: str) -> Path | None:
    value = _nonempty(getenv(name, env))
    return Path(value) if value is not None else None


def _home(env: Mapping[str, str]) -> Path:
    """$HOME, else the home directory of $USER, else of the current user.

    Borg's order. The password database is asked directly (not
    ``expanduser("~")``) so the answer depends only on ``env``.
    """
    home = _nonempty(env.get("HOME"))
    if home is not None:
        return Path(home)
    user = env.get("USER")
    try:
        entry = pwd.getpwnam(user) if user else pwd.getpwuid(os.getuid())
    except KeyError:
        entry = pwd.getpwuid(os.getuid())
    return Path(entry.pw_dir)


def _app_dir(env: Mapping[str, str], base: Path, explicit_base: bool, kind: str) -> Path:
    """``$XDG_<kind>_HOME/hoard``, or ``<base>/.<kind>/hoard`` if that is
    unset or if a base directory was given explicitly (it then decides)."""
    xdg = None if explicit_base else _nonempty(env.get(f"XDG_{kind.upper()}_HOME"))
    home = Path(xdg) if xdg is not None else base / f".{kind}"
    return home / APP_NAME


@dataclass(frozen=True)
class Dirs:
    """Where hoard keeps per-user state, computed as Borg 1.4 does.

    ``base``: ``BASE_DIR``, else ``$HOME`` (else ``~$USER``).
    ``cache``: ``CACHE_DIR``, else ``$XDG_CACHE_HOME/hoard``, else
    ``<base>/.cache/hoard`` (XDG is ignored when ``BASE_DIR`` is set).
    ``config``: ``CONFIG_DIR``, else ``$XDG_CONFIG_HOME/hoard``, else
    ``<base>/.config/hoard``. ``keys``: ``KEYS_DIR``, else ``<config>/keys``.
    ``security``: ``SECURITY_DIR``, else ``<config>/security``.
    Each ``X_DIR`` is read as ``HOARD_X_DIR`` or ``BORG_X_DIR``. Nothing is
    created here: a command that only reads must not leave directories behind.
    """

    base: Path
    cache: Path
    config: Path
    keys: Path
    security: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Dirs:
        source = os.environ if env is None else env
        given_base = _dir_var(source, "BASE_DIR")
        base = given_base or _home(source)
        explicit = given_base is not None
        config = _dir_var(source, "CONFIG_DIR") or _app_dir(source, base, explicit, "config")
        return cls(
            base=base,
            cache=_dir_var(source, "CACHE_DIR") or _app_dir(source, base, explicit, "cache"),
            config=config,
            keys=_dir_var(source, "KEYS_DIR") or config / "keys",
            security=_dir_var(source, "SECURITY_DIR") or config / "security",
        )


def ensure_dir(path: Path) -> Path:
    """Create ``path`` and missing parents with mode 0o700; return ``path``.

    Keys, security records and caches reveal things about the backups, so
    directories hoard creates are private to the user. Existing directories
    keep their mode: the user may have chosen it. Raises HoardError naming
    the directory and the reason.
    """
    try:
        _make_private_dirs(path)
    except OSError as exc:
        raise HoardError(f"cannot create directory {path}: {exc.strerror}") from exc
    return path


def _make_private_dirs(path: Path) -> None:
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        if probe.is_symlink() or probe.exists():
            raise NotADirectoryError(errno.ENOTDIR, f"{probe} is not a directory", str(probe))
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        # Another hoard process may make it at the same moment; that is fine.
        with suppress(FileExistsError):
            os.mkdir(directory, 0o700)
