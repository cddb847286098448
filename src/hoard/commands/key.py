"""``hoard key export|import|change-passphrase``: Borg 1.4's key management.

The key travels as it is stored: wrapped with the passphrase, so an export
is useless without it and the passphrase is never needed to export or
import. ``--paper`` is Borg's format for printing and typing back in, line
by line with checksums (``hoard.objects.paperkey``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hoard.commands.base import Context, Subcommand
from hoard.commands.repo import KeyAccess, kdf_params, open_keys, repository_location
from hoard.errors import CancelledByUser, CommandError, InputError
from hoard.objects.keys import KeyLocation
from hoard.objects.paperkey import (
    PaperHeader,
    PaperLineError,
    matches_repository,
    paper_text,
    parse_data_line,
    parse_id_line,
    whole_matches,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

NAME = "key"
HELP = "Manage a keyfile or repokey of a repository"
DESCRIPTION = """Manage the key of a repository: export it for safe keeping, import an
exported key, change its passphrase.

An exported key is still protected by the passphrase: to regain access to a
repository, both the exported key and the passphrase are needed."""

EXPORT_DESCRIPTION = """If repository encryption is used, the repository is inaccessible without the
key. This command backs up this essential key. The export does not include the
passphrase (the exported key stays encrypted): to regain access to a
repository, one needs both the exported key and the original passphrase.

There are two backup formats. The normal format is suitable for digital
storage as a file. The --paper format is optimized for printing and typing
in while importing, with per-line checks to reduce problems with manual
input (Borg's format). Without PATH (or with -) the key is written to stdout.

For keyfile repositories the key is only on the machines that back up: back
it up independently of the data. For repokey repositories it is in the
repository; an export guards against the repository's copies being damaged.

Examples:
    hoard key export /path/to/repo > encrypted-key-backup
    hoard key export --paper /path/to/repo > encrypted-key-backup.txt"""

IMPORT_DESCRIPTION = """Restore a key previously backed up with the export command.

If the --paper option is given, the import is interactive: each line is
checked for plausibility before proceeding to the next line; PATH must not
be given then. For keyfile repositories the key file in the keys directory
(BORG_KEYS_DIR) that belongs to the repository is overwritten, or a new one
written; for repokey repositories the key in the repository is replaced."""

CHANGE_DESCRIPTION = """Change the passphrase protecting the repository key.

The current passphrase is asked (or taken from BORG_PASSPHRASE), then the new
one (BORG_NEW_PASSPHRASE, or asked twice). The key itself stays the same: no
data is re-encrypted, exported keys keep working with the old passphrase."""


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="REPOSITORY", nargs="?", default="")
    parser.add_argument("path", metavar="PATH", nargs="?", help="where to store the backup")
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument(
        "--paper",
        action="store_true",
        help="Create an export suitable for printing and later type-in",
    )
    formats.add_argument(
        "--qr-html",
        action="store_true",
        help="Create an html file suitable for printing and later type-in or qr scan "
        "(not available in hoard: refused)",
    )


def _configure_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="REPOSITORY", nargs="?", default="")
    parser.add_argument(
        "path", metavar="PATH", nargs="?", help="path to the backup ('-' to read from stdin)"
    )
    parser.add_argument(
        "--paper", action="store_true", help="interactively import from a backup done with --paper"
    )


def configure_change_passphrase(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="REPOSITORY", nargs="?", default="")


def run_export(ctx: Context, args: argparse.Namespace) -> None:
    if args.qr_html:
        raise InputError("--qr-html is not available in hoard: use --paper and print that")
    with open_keys(ctx, repository_location(ctx, args.location)) as access:
        if args.paper:
            text = paper_text(access.repository.id, access.keys.export_blob())
        else:
            text = access.keys.export_text()
    _write_text(ctx, args.path, text)


def _write_text(ctx: Context, path: str | None, text: str) -> None:
    """To stdout without PATH or with ``-``; else (over) the file, as Borg."""
    if path in (None, "-"):
        ctx.out.print(text, end="")
        return
    try:
        with open(path, "w", encoding="ascii") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise CommandError(f"cannot write the key to {path}: {exc.strerror}") from None


def run_import(ctx: Context, args: argparse.Namespace) -> None:
    if args.paper and args.path is not None:
        raise InputError("with --paper the key is typed in: give no PATH")
    if not args.paper and args.path is None:
        raise InputError("PATH is required: the file to import ('-' for stdin), or --paper")
    with open_keys(ctx, repository_location(ctx, args.location)) as access:
        if args.paper:
            blob = _type_paper_key(ctx, access)
            if blob is None:
                ctx.out.message("\n - aborted")
                return
            access.keys.import_blob(blob)
        else:
            where = "standard input" if args.path == "-" else args.path
            access.keys.import_text(_read_text(args.path), where)
        _say_where(access)


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise CommandError(f"input file does not exist: {path}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not a hoard key export (not ASCII text)") from None
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None


def _type_paper_key(ctx: Context, access: KeyAccess) -> bytes | None:
    """Borg's interactive paper import: the id line, then each data line, each
    retried until its checksum matches; None when the typist gives up (an
    empty line and a yes, or end of input)."""
    while True:
        header = _ask_line(ctx, "id: ", parse_id_line)
        if header is None:
            return None
        if not matches_repository(header, access.repository.id):
            raise CommandError(
                "This key backup seems to be for a different backup repository, aborting."
            )
        blob = _ask_data(ctx, header)
        if blob is None:
            return None
        if whole_matches(header, blob):
            return blob
        ctx.out.message("The overall checksum did not match, retry or enter a blank line to abort.")


def _ask_data(ctx: Context, header: PaperHeader) -> bytes | None:
    parts = []
    for index in range(1, header.lines + 1):
        part = _ask_line(ctx, f"{index:2d}: ", functools.partial(parse_data_line, index))
        if part is None:
            return None
        parts.append(part)
    return b"".join(parts)


def _ask_line(ctx: Context, prompt: str, parse: Callable[[str], T]) -> T | None:
    while True:
        typed = ctx.out.ask(prompt, msgid="BORG_KEY_IMPORT")
        if typed is None:
            return None
        if not typed.strip():
            answer = ctx.out.ask("Abort import? [yN]:", msgid="BORG_KEY_IMPORT_ABORT")
            if answer is None or answer.strip().lower() in ("y", "yes"):
                return None
            continue
        try:
            return parse(typed)
        except PaperLineError as exc:
            ctx.out.message(str(exc))


def run_change_passphrase(ctx: Context, args: argparse.Namespace) -> None:
    with open_keys(ctx, repository_location(ctx, args.location)) as access:
        try:
            access.keys.change_passphrase(ctx.passphrases.get, ctx.passphrases.new, kdf_params(ctx))
        except KeyboardInterrupt:
            raise CancelledByUser() from None
        logger.info("Key updated")
        _say_where(access)


def _say_where(access: KeyAccess) -> None:
    if access.mode.location is KeyLocation.KEYFILE:
        logger.info("Key location: %s", access.keys.key_file_path())


SUBCOMMANDS = {
    "export": Subcommand(
        "export repository key for backup", EXPORT_DESCRIPTION, _configure_export, run_export
    ),
    "import": Subcommand(
        "import repository key from backup", IMPORT_DESCRIPTION, _configure_import, run_import
    ),
    "change-passphrase": Subcommand(
        "change repository passphrase",
        CHANGE_DESCRIPTION,
        configure_change_passphrase,
        run_change_passphrase,
    ),
}
