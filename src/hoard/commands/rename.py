"""``hoard rename``: give an archive a new name.

The new name may contain placeholders (``{now}``, ``{hostname}``...), as in
Borg. An archive record's id is the hash of its content, so renaming stores
a new record (everything but the name unchanged, hence a new id) and then
deletes the old one: a crash in between leaves both names, never none.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses

from hoard.archive.catalog import exists, find
from hoard.commands.archiveargs import expand_archive_name
from hoard.commands.base import Context
from hoard.commands.repo import open_repository, repository_location
from hoard.commands.with_lock import command_lock
from hoard.errors import ArchiveAlreadyExists, ArchiveRecordNotFound, InputError

NAME = "rename"
HELP = "Rename an existing archive"
DESCRIPTION = """This command renames an archive in the repository.

This results in a different archive ID."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="ARCHIVE", help="archive to rename")
    parser.add_argument("name", metavar="NEWNAME", help="the new archive name to use")


def new_archive_name(ctx: Context, text: str) -> str:
    """NEWNAME with placeholders expanded; InputError for a name Borg refuses."""
    name = expand_archive_name(ctx, text)
    if "/" in name or "::" in name or not name:
        raise InputError(f'Invalid archive name: "{name}"')
    return name


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    if not location.archive:
        raise InputError("rename needs an archive: REPOSITORY::ARCHIVE NEWNAME")
    name = new_archive_name(ctx, args.name)
    with (
        open_repository(ctx, location.omit_archive(), operation="write") as repo,
        command_lock(ctx, repo.repository.storage, exclusive=False),
    ):
        records = repo.records()
        old = find(records, location.archive)
        if exists(records, name):
            raise ArchiveAlreadyExists(name)
        renamed = dataclasses.replace(old, name=name, id=b"")
        repo.objects.put_archive(renamed.encode())
        # Another client may have deleted it meanwhile; the new name stands.
        with contextlib.suppress(ArchiveRecordNotFound):
            repo.objects.delete_archive(old.id)
