"""``hoard undelete``: restore archives deleted in an append-only repository.

Not a Borg command (Borg 1.4 has none; an append-only Borg repository is
rolled back by hand). In an append-only repository ``delete`` and ``prune``
only hide an archive behind a deletion record; ``list --consider-deleted``
shows such archives and this command brings them back by storing the next
record of the archive's deletion counter (docs/design/repository-format.md,
"Deletion records"), which needs no delete or overwrite, so it works in
append-only mode. An archive whose record was removed for real (compact
after append-only was switched off) cannot be restored.

``REPO::NAME`` restores the newest deleted archive of that name; the archive
filters (``-a``, ``--first``, ``--last``, ``--sort-by``) select among the
deleted archives. A name that a visible archive already has is refused
(named: an error; selected by a filter: a warning, exit code 1), since two
archives of one name could not be told apart.
"""

from __future__ import annotations

import argparse
import logging

from hoard.archive.catalog import select
from hoard.archive.formatter import format_archive_line
from hoard.archive.record import ArchiveRecord
from hoard.commands.archiveargs import (
    add_archive_filter_arguments,
    archive_selection,
    filters_given,
)
from hoard.commands.base import Context
from hoard.commands.repo import OpenRepository, open_repository, repository_location
from hoard.commands.with_lock import command_lock
from hoard.errors import (
    ArchiveAlreadyExists,
    ArchiveDoesNotExist,
    ArchiveNotRestoredWarning,
    ArchiveRecordNotFound,
    CommandError,
)

logger = logging.getLogger("hoard")

NAME = "undelete"
HELP = "Restore archives deleted in an append-only repository"
DESCRIPTION = """This command restores archives that 'hoard delete' or 'hoard prune' deleted
in an append-only repository.

In append-only mode nothing is removed from the repository: a deleted
archive is only hidden behind a deletion record. 'hoard list
--consider-deleted' shows the hidden archives (marked [deleted]); this
command makes them visible again. Once append-only mode is switched off,
'hoard compact' removes hidden archives for real; after that they cannot be
restored.

Give REPOSITORY::ARCHIVE to restore the newest deleted archive of that name,
or select deleted archives with the archive filters (e.g. -a 'host-*')."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--dry-run", dest="dry_run", action="store_true", help="do not change repository"
    )
    parser.add_argument(
        "--list", dest="output_list", action="store_true",
        help="output verbose list of archives",
    )  # fmt: skip
    add_archive_filter_arguments(parser)
    parser.add_argument(
        "location", nargs="?", default="", metavar="REPOSITORY_OR_ARCHIVE",
        help="repository or archive to restore",
    )  # fmt: skip


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    selection = archive_selection(ctx, args, consider_checkpoints=True)
    filtered = filters_given(args)
    if filtered and location.archive:
        raise CommandError("Mixing archive filters and explicitly named archives is not supported.")
    if not filtered and not location.archive:
        raise CommandError("No archive given: use REPOSITORY::ARCHIVE or an archive filter (-a).")
    with (
        open_repository(ctx, location.omit_archive(), operation="write") as repo,
        command_lock(ctx, repo.repository.storage, exclusive=False),
    ):
        records = repo.records(include_hidden=True)
        hidden_ids = repo.objects.hidden_archives(r.id for r in records)
        hidden = [r for r in records if r.id in hidden_ids]
        visible = {r.name for r in records if r.id not in hidden_ids}
        if location.archive:
            named = [r for r in hidden if r.name == location.archive]
            if not named:
                raise ArchiveDoesNotExist(f"{location.archive} (among the deleted archives)")
            if location.archive in visible:
                raise ArchiveAlreadyExists(location.archive)
            targets = [max(named, key=lambda r: (r.time, r.id))]
        else:
            targets = select(hidden, selection)
        _restore(ctx, args, repo, targets, visible)


def _restore(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    targets: list[ArchiveRecord],
    visible: set[str],
) -> None:
    verb = "Would restore archive" if args.dry_run else "Restoring archive"
    for i, record in enumerate(targets, 1):
        if record.name in visible:
            ctx.warn(ArchiveNotRestoredWarning(record.name))
            continue
        if args.output_list:
            ctx.out.message(f"{verb}: {format_archive_line(record)} ({i}/{len(targets)})")
        if not args.dry_run:
            try:
                repo.objects.undelete_archive(record.id)
            except ArchiveRecordNotFound:  # restored (or removed) by another client meanwhile
                logger.info("Archive %s was restored or removed meanwhile.", record.name)
                continue
        visible.add(record.name)
