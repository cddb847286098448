"""``hoard compact``: free the space of deleted archives and of crashed writes.

Borg 1.4's command line (``-n/--dry-run``, ``--cleanup-commits``,
``--threshold PERCENT``) and messages ("Compacting segments %3.0f%%",
"compaction freed about %s repository space."). Under the exclusive lock:
mark (``hoard.archive.liveset``: every object some archive references),
then sweep (``hoard.repository.compact``: unused packs deleted, packs more
than ``--threshold`` percent unused rewritten, one new index file written
before anything is deleted, orphans and temporary files of crashed writes
removed once older than the grace period).

Unlike Borg, hoard keeps no reference counts in the repository, so the mark
has to read the archives: compact needs the key (passphrase). It refuses,
deleting nothing, when an archive record, a tree or an index file cannot
be read (the live set would be unknown), and in append-only repositories.
"""

from __future__ import annotations

import argparse
import logging

from hoard.archive.liveset import mark
from hoard.commands.base import Context
from hoard.commands.repo import OpenRepository, open_repository, repository_location
from hoard.commands.stats import format_file_size
from hoard.commands.with_lock import command_lock
from hoard.errors import AppendOnlyCompactRefused, CompactWarning, InputError
from hoard.repository.compact import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_THRESHOLD,
    CompactReport,
    Progress,
    compact,
)
from hoard.repository.lock import Lock

logger = logging.getLogger("hoard")
MSGID = "repository.compact_segments"

NAME = "compact"
HELP = "compact segment files / free space in repo"
DESCRIPTION = """This command frees repository space by compacting packs.

Use this regularly to avoid running out of space - you do not need to use this
after each hoard command though. It is especially useful after deleting archives,
because only compaction will really free repository space.

Unlike borg compact, hoard compact needs the key: hoard keeps no reference
counts, so compact reads every archive to find the objects still in use. It
refuses (and deletes nothing) when an archive or directory tree cannot be
read; run hoard check --repair first then.

Packs no archive uses any more are deleted. A pack is rewritten (its used
objects copied to a new pack, the old one deleted) if more than the
percentage given by --threshold of it is unused. If omitted, a threshold of
10% is used. For maximum compaction, use --threshold 0; --threshold 100
rewrites nothing (unused packs are still deleted). Damaged packs are never
rewritten. Packs and temporary files of interrupted backups are deleted once
they are more than 2 hours old, so a backup running meanwhile loses nothing.
When using --verbose, hoard will output an estimate of the freed space.

Compact is refused in append-only repositories: switch append-only off first.
A compact interrupted at any point loses nothing; the next one finishes it."""


def _threshold(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not a percentage from 0 to 100")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--dry-run", dest="dry_run", action="store_true", help="do nothing")
    parser.add_argument(
        "--cleanup-commits", dest="cleanup_commits", action="store_true",
        help="cleanup commit-only 17-byte segment files (Borg 1.1 repositories; hoard "
        "repositories have none, so this is a normal compaction)",
    )  # fmt: skip
    parser.add_argument(
        "--threshold", metavar="PERCENT", dest="threshold", type=_threshold,
        default=DEFAULT_THRESHOLD,
        help="set minimum threshold for saved space in PERCENT (Default: 10)",
    )  # fmt: skip
    parser.add_argument(
        "location", nargs="?", default="", metavar="REPOSITORY", help="repository to compact"
    )


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    if location.archive is not None:
        raise InputError(f'"{args.location}": No archive can be specified')
    if args.cleanup_commits:
        logger.info(
            "--cleanup-commits: hoard repositories have no commit-only segment files; "
            "compacting normally."
        )
    with open_repository(ctx, location, operation="delete") as repo:
        repository = repo.repository
        if repository.config.append_only:
            raise AppendOnlyCompactRefused(location.canonical_path())
        with command_lock(ctx, repository.storage, exclusive=True) as lock:
            _purge_hidden(repo, dry_run=args.dry_run)
            logger.info("Reading the archives to find the objects in use...")
            live = mark(repo.objects, skip=_hidden(repo) if args.dry_run else frozenset())
            report = compact(
                repository,
                live.ids,
                threshold=args.threshold,
                grace=DEFAULT_GRACE_PERIOD,
                progress=_progress(ctx) if ctx.progress else None,
                dry_run=args.dry_run,
                lock_lost=(lambda: lock.lost) if isinstance(lock, Lock) else None,
            )
            if ctx.progress:
                ctx.out.progress(MSGID, "", finished=True, type="progress_percent")
    _report(ctx, report)


def _hidden(repo: OpenRepository) -> frozenset[bytes]:
    return frozenset(repo.objects.hidden_archives())


def _purge_hidden(repo: OpenRepository, *, dry_run: bool) -> None:
    """Archives deleted while the repository was append-only are only hidden;
    now that it is not, their records go for real (then their deletion
    records), so that their data is garbage for this compaction. A dry run
    leaves them and marks as if they were gone."""
    hidden = _hidden(repo)
    if not hidden:
        return
    if dry_run:
        logger.info("Would remove %d archives deleted in append-only mode.", len(hidden))
        return
    removed = repo.objects.purge_hidden_archives()
    logger.info("Removed %d archives deleted in append-only mode.", len(removed))


def _progress(ctx: Context) -> Progress:
    def progress(done: int, total: int, what: str) -> None:
        percent = 100.0 * done / total if total else 100.0
        ctx.out.progress(
            MSGID,
            f"Compacting segments {percent:3.0f}%",
            type="progress_percent",
            current=done,
            total=total,
        )

    return progress


def _report(ctx: Context, report: CompactReport) -> None:
    for pack in report.damaged_packs_kept:
        ctx.warn(
            CompactWarning(
                f"Pack {pack} is damaged (its content does not match its name or the index) "
                "and was not rewritten. Run 'hoard check --repair'."
            )
        )
    if report.missing_blobs:
        ctx.warn(
            CompactWarning(
                f"{report.missing_blobs} objects the archives reference are not in the index; "
                "packs no index file lists were kept. Run 'hoard check --repair'."
            )
        )
    logger.debug(
        "compaction: %d unused packs deleted, %d rewritten into %d, %d orphan packs and "
        "%d temporary files deleted, %d index files replaced, %d young packs kept",
        report.packs_deleted,
        report.packs_rewritten,
        report.packs_written,
        report.orphan_packs_deleted,
        report.temporary_files_deleted,
        report.index_files_deleted,
        report.young_packs_kept,
    )
    freed = format_file_size(report.bytes_freed, iec=ctx.iec)
    if report.dry_run:
        logger.info("compaction would free about %s repository space.", freed)
    else:
        logger.info("compaction freed about %s repository space.", freed)
