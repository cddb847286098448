"""``hoard init``: create an empty repository and its key."""

from __future__ import annotations

import argparse
import logging

from hoard.commands.base import Context
from hoard.commands.quotaargs import parse_quota
from hoard.commands.repo import create_repository, repository_location
from hoard.errors import InputError
from hoard.objects.keys import EncryptionMode, KeyLocation

logger = logging.getLogger(__name__)

NAME = "init"
HELP = "Initialize an empty repository"
DESCRIPTION = """Initialize a new, empty repository at REPOSITORY.

Encryption modes (-e): none, authenticated, repokey, keyfile (Borg's names,
also with -blake2), and the explicit cipher variants repokey-chacha20-poly1305
(= repokey), repokey-aes-gcm, repokey-aes-ocb and the same for keyfile.
repokey keeps the passphrase-protected key in the repository, keyfile in
~/.config/hoard/keys/ (BORG_KEYS_DIR). Make a backup of the key
('hoard key export'): without it and its passphrase the data is lost."""


def _mode_name(text: str) -> str:
    """The mode as the user wrote it (``repokey``), checked: the repository
    keeps this name and reports it, as Borg reports the one chosen at init."""
    EncryptionMode.parse(text)
    return text


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", nargs="?", default="", metavar="REPOSITORY")
    parser.add_argument(
        "-e",
        "--encryption",
        required=True,
        type=_mode_name,
        metavar="MODE",
        help="select encryption key mode",
    )
    parser.add_argument(
        "--append-only", action="store_true", help="create an append-only mode repository"
    )
    parser.add_argument("--storage-quota", type=parse_quota, default=None, metavar="QUOTA")
    parser.add_argument("--make-parent-dirs", action="store_true")


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    if location.archive:
        raise InputError(f"init takes a repository, not an archive: {args.location}")
    mode = EncryptionMode.parse(args.encryption)
    repo = create_repository(
        ctx,
        location,
        mode,
        mode_name=args.encryption,
        make_parent_dirs=args.make_parent_dirs,
        append_only=args.append_only,
        storage_quota=args.storage_quota,
    )
    try:
        repo.repository.close()
    finally:
        repo.repository.storage.close()
    if mode.location is not KeyLocation.NOWHERE:
        logger.warning(_key_advice(mode))


def _key_advice(mode: EncryptionMode) -> str:
    where = "in the repository" if mode.location is KeyLocation.REPOSITORY else "in a key file"
    return (
        "\nIMPORTANT: you will need both KEY AND PASSPHRASE to access this repo!\n\n"
        f"The key of this repository is stored {where}. You should:\n"
        "1. Export the key and store the result at a safe place:\n"
        "   hoard key export REPOSITORY /safe/place/key-backup\n"
        "2. Write down the passphrase and store it at a safe place.\n"
    )
