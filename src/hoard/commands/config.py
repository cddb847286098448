"""``hoard config``: get, set, delete and list a repository's settings.

Borg 1.4's ``borg config`` for the settings hoard has: ``append_only``,
``storage_quota`` and ``additional_free_space`` can be changed; ``version``,
``id`` and ``pack_size`` can be read. As in Borg, names may carry the section
(``repository.append_only``), values use Borg's syntax (``0``/``1``; sizes
like ``10G``, at least 10M, 0 for none) and the command works only on local
repositories: whoever holds the repository's files decides its mode, which
is how append-only mode is switched off again (``hoard config REPO
append_only 0``) although no client could do it through the repository.

A change takes the exclusive lock (so it waits for running backups and
deletes), re-reads the config under it, and replaces the ``config`` object
atomically (temporary file, fsync, rename): a crash leaves the old or the
new config, whole. Borg's ``--cache`` edits a cache config file, which hoard
does not have: it is refused with a clear message.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import stat
from pathlib import Path

from hoard.commands.base import Context
from hoard.commands.repo import repository_location
from hoard.commands.with_lock import command_lock
from hoard.errors import CommandError, InputError, NotARepository, RepositoryDoesNotExist
from hoard.repository.config import CONFIG_COPY_NAME, CONFIG_NAME, RepoConfig
from hoard.storage.local import LocalStorage
from hoard.storage.location import Location

NAME = "config"
HELP = "get and set configuration values"
DESCRIPTION = """This command gets and sets options in a local repository config file.
For security reasons, this command only works on local repositories.

To delete a config value entirely (back to its default), use --delete. To
list the values of the configuration file or the default values, use
--list. To get an existing key, pass only the key name. To set a key, pass
both the key name and the new value. Keys can be specified in the format
"section.name" or simply "name"; the section is "repository".

Settable keys: append_only (0 or 1), storage_quota and additional_free_space
(sizes such as 500M or 2T, at least 10M; 0 means none). Readable too:
version, id, pack_size.

hoard has no cache config file: --cache is refused."""

SECTION = "repository"
SETTABLE = ("append_only", "storage_quota", "additional_free_space")
READ_ONLY = ("version", "id", "pack_size")
LIST_ORDER = ("version", "pack_size", "storage_quota", "additional_free_space", "append_only", "id")
MIN_SIZE = 10 * 10**6
_UNITS = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--cache", dest="cache", action="store_true",
        help="get and set values from the repo cache (hoard has none: refused)",
    )  # fmt: skip
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-d", "--delete", dest="delete", action="store_true",
        help="delete the key from the config file",
    )  # fmt: skip
    group.add_argument(
        "-l", "--list", dest="list", action="store_true",
        help="list the configuration of the repo",
    )  # fmt: skip
    parser.add_argument(
        "location", nargs="?", default="", metavar="REPOSITORY", help="repository to configure"
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="name of config key")
    parser.add_argument("value", nargs="?", metavar="VALUE", help="new value for key")


def run(ctx: Context, args: argparse.Namespace) -> None:
    if args.cache:
        raise CommandError(
            "hoard has no cache config file (its client caches need no settings): "
            "--cache is not supported."
        )
    location = repository_location(ctx, args.location)
    if location.archive:
        raise InputError(f"config takes a repository, not an archive: {args.location}")
    name = None if args.list else _key_name(args.name)
    if args.list and (args.name is not None or args.value is not None):
        raise CommandError("--list takes no key name or value.")
    if args.delete and args.value is not None:
        raise CommandError("--delete takes no value.")
    storage = _local_storage(location)
    if args.list:
        ctx.out.print(_listing(RepoConfig.load(storage, "read")), end="")
        return
    assert name is not None
    if args.value is None and not args.delete:
        ctx.out.print(_shown(RepoConfig.load(storage, "read"), name))
        return
    if name not in SETTABLE:
        raise InputError(f"Invalid name: {name} cannot be changed")
    changes = {name: _default(name)} if args.delete else {name: _parse(name, args.value)}
    _change(ctx, storage, changes)


def _key_name(text: str | None) -> str:
    """NAME or ``repository.NAME``; Borg's messages for a missing or bad one."""
    if text is None:
        raise CommandError("No config key name was provided.")
    section, dot, name = text.rpartition(".")
    if dot and section != SECTION:
        raise InputError(f"Invalid section: {section} (hoard has only [{SECTION}])")
    if name not in SETTABLE and name not in READ_ONLY:
        raise InputError(f"Invalid name: {name} (known: {', '.join((*SETTABLE, *READ_ONLY))})")
    return name


def _local_storage(location: Location) -> LocalStorage:
    """The repository's own files: config works only on local repositories."""
    if location.proto != "file":
        raise CommandError("For security reasons, hoard config only works on local repositories.")
    shown = location.canonical_path()
    try:
        st = os.stat(location.path)
    except FileNotFoundError:
        raise RepositoryDoesNotExist(shown) from None
    has_config = any(
        os.path.lexists(os.path.join(location.path, name))
        for name in (CONFIG_NAME, CONFIG_COPY_NAME)
    )
    if not stat.S_ISDIR(st.st_mode) or not has_config:
        raise NotARepository(shown)
    return LocalStorage(Path(location.path))


def _shown(config: RepoConfig, name: str) -> str:
    """A value as Borg prints it: ``0``/``1`` for flags, bytes for sizes (0: none)."""
    value = {
        "version": config.version,
        "id": config.id.hex(),
        "pack_size": config.pack_size,
        "storage_quota": config.storage_quota or 0,
        "additional_free_space": config.additional_free_space,
        "append_only": int(config.append_only),
    }[name]
    return str(value)


def _listing(config: RepoConfig) -> str:
    """``--list``: Borg's ini-style section with every key."""
    lines = [f"[{SECTION}]", *(f"{key} = {_shown(config, key)}" for key in LIST_ORDER)]
    return "\n".join(lines) + "\n"


def _default(name: str) -> object:
    return {"append_only": False, "storage_quota": None, "additional_free_space": 0}[name]


def _parse(name: str, text: str) -> object:
    """Borg's validation: ``0``/``1`` for append_only, sizes of at least 10M (or 0)."""
    if name == "append_only":
        if text not in ("0", "1"):
            raise InputError(f"Invalid value for append_only: {text!r} (0 or 1)")
        return text == "1"
    size = parse_file_size(text)
    if size != 0 and size < MIN_SIZE:
        raise InputError(f"Invalid value: {name} < 10M")
    if name == "storage_quota":
        return size or None
    return size


def parse_file_size(text: str) -> int:
    """Borg's ``parse_file_size``: a number with an optional decimal suffix K, M, G, T, P, E."""
    number, factor = text.strip(), 1
    if number and number[-1].upper() in _UNITS:
        number, factor = number[:-1], _UNITS[number[-1].upper()]
    try:
        size = int(float(number) * factor)
    except ValueError:
        raise InputError(f"Invalid value: {text!r} is not a size (e.g. 500M, 2T)") from None
    if size < 0:
        raise InputError(f"Invalid value: {text!r} is negative")
    return size


def _change(ctx: Context, storage: LocalStorage, changes: dict[str, object]) -> None:
    """Under the exclusive lock: re-read, change, replace atomically."""
    with command_lock(ctx, storage, exclusive=True):
        config = RepoConfig.load(storage, "write")
        dataclasses.replace(config, **changes).save(storage, overwrite=True)  # type: ignore[arg-type]
