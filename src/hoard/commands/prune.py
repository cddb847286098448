"""``hoard prune``: delete the archives no retention rule keeps (Borg 1.4's command).

Which archives stay is decided by :func:`hoard.archive.prune.plan_prune`
alone, from the archive records, the rules and the current time; this
module reads the options, prints what Borg prints (the three counts at
``--info``, ``--list`` lines, ``--stats``) and deletes the rest, newest
first, through the same ``ObjectStore.delete_archive`` call as ``delete``,
so whatever the repository does on a deletion (e.g. append-only deletion
records) prune does as well. Like ``delete`` it takes the shared lock:
archive records are independent files, and a record another client removed
meanwhile is reported, not fatal.

The archive filter (``-a``, or the deprecated ``--prefix`` which becomes
``PREFIX*``) also matches the checkpoints of the matching archives
(``NAME.checkpoint``, ``NAME.checkpoint.N``), as Borg's does.
"""

from __future__ import annotations

import argparse
import logging

from hoard.archive.catalog import glob_to_regex, is_checkpoint
from hoard.archive.checkpoints import CHECKPOINT_TAIL
from hoard.archive.formatter import format_archive_line
from hoard.archive.prune import (
    Decision,
    PruneCandidate,
    PrunePlan,
    PruneRules,
    parse_interval,
    plan_prune,
)
from hoard.archive.record import ArchiveRecord
from hoard.commands.archiveargs import add_archive_filter_arguments, archive_selection
from hoard.commands.base import Context
from hoard.commands.repo import OpenRepository, open_repository, repository_location
from hoard.commands.stats import deletion_stats_text
from hoard.commands.with_lock import command_lock
from hoard.errors import ArchiveNotFoundWarning, ArchiveRecordNotFound, CommandError, InputError

logger = logging.getLogger("hoard")

NAME = "prune"
HELP = "prune archives"
DESCRIPTION = """Prune repository archives according to specified rules

The prune command prunes a repository by deleting all archives not matching
any of the specified retention options.

Important: Repository disk space is **not** freed until you run ``hoard compact``.

This command is normally used by automated backup scripts wanting to keep a
certain number of historic backups. This retention policy is commonly referred to as
GFS (Grandfather-father-son) backup rotation scheme.

Also, prune automatically removes checkpoint archives (incomplete archives left
behind by interrupted backup runs) except if the checkpoint is the latest
archive (and thus still needed). Checkpoint archives are not considered when
comparing archive counts against the retention limits (``--keep-X``).

If a prefix is set with -P, then only archives that start with the prefix are
considered for deletion and only those archives count towards the totals
specified by the rules.
Otherwise, *all* archives in the repository are candidates for deletion!
There is no automatic distinction between archives representing different
contents. These need to be distinguished by specifying matching prefixes.

If you have multiple sequences of archives with different data sets (e.g.
from different machines) in one shared repository, use one prune call per
data set that matches only the respective archives using the -a option.

The ``--keep-within`` option takes an argument of the form "<int><char>",
where char is "H", "d", "w", "m", "y". For example, ``--keep-within 2d`` means
to keep all archives that were created within the past 48 hours.
"1m" is taken to mean "31d". The archives kept with this option do not
count towards the totals specified by any other options.

A good procedure is to thin out more and more the older your backups get.
As an example, ``--keep-daily 7`` means to keep the latest backup on each day,
up to 7 most recent days with backups (days without backups do not count).
The rules are applied from secondly to yearly, and backups selected by previous
rules do not count towards those of later rules. The time that each backup
starts is used for pruning purposes. Dates and times are interpreted in
the local time zone, and weeks go from Monday to Sunday. Specifying a
negative number of archives to keep means that there is no limit.
The oldest archive is retained if any of the secondly, minutely,
hourly, daily, weekly, monthly, quarterly, or yearly rules was not otherwise
able to meet its retention target. This enables the first chronological archive
to continue aging until it is replaced by a newer archive that meets the
retention criteria.

The ``--keep-13weekly`` and ``--keep-3monthly`` rules are two different
strategies for keeping archives every quarter year.

The ``--keep-last N`` option is doing the same as ``--keep-secondly N`` (and it will
keep the last N archives under the assumption that you do not create more than one
backup archive in the same second).

When using ``--stats``, you will get some statistics about how much data was
deleted - the "Deleted data" deduplicated size there is most interesting as
that is how much your repository will shrink (once compacted).
Please note that the "All archives" stats refer to the state after pruning.
``--quick-stats`` skips the repository-wide "All archives" statistics.
``--stats`` / ``--quick-stats`` are ignored (with a warning) with ``--dry-run``."""

CHECKPOINT_SUFFIX = rf"({CHECKPOINT_TAIL})?\Z"
"""What Borg allows after the archive glob, so an archive's checkpoints match with it."""

NO_RULES = (
    'At least one of the "keep-within", "keep-last", "keep-secondly", "keep-minutely", '
    '"keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-13weekly", '
    '"keep-3monthly", or "keep-yearly" settings must be specified.'
)

PREFIX_DEPRECATED = (
    'Warning: "--prefix" has been deprecated. Use "--glob-archives \'yourprefix*\'" (-a) instead.'
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--dry-run", dest="dry_run", action="store_true", help="do not change repository"
    )
    parser.add_argument(
        "--force", dest="forced", action="count", default=0,
        help="accepted for Borg compatibility (deleting an archive record never needs forcing)",
    )  # fmt: skip
    parser.add_argument(
        "-s", "--stats", dest="stats", action="store_true",
        help="print statistics for the deleted archive",
    )  # fmt: skip
    parser.add_argument(
        "--quick-stats", dest="quick_stats", action="store_true",
        help="print only deletion statistics, skipping repository-wide statistics",
    )  # fmt: skip
    parser.add_argument(
        "--list", dest="output_list", action="store_true",
        help="output verbose list of archives it keeps/prunes",
    )  # fmt: skip
    parser.add_argument(
        "--keep-within", metavar="INTERVAL", dest="within", type=parse_interval,
        help="keep all archives within this time interval",
    )  # fmt: skip
    _keep(parser, "--keep-last", "--keep-secondly", dest="secondly", what="secondly")
    _keep(parser, "--keep-minutely", dest="minutely", what="minutely")
    _keep(parser, "-H", "--keep-hourly", dest="hourly", what="hourly")
    _keep(parser, "-d", "--keep-daily", dest="daily", what="daily")
    _keep(parser, "-w", "--keep-weekly", dest="weekly", what="weekly")
    _keep(parser, "-m", "--keep-monthly", dest="monthly", what="monthly")
    quarterly = parser.add_mutually_exclusive_group()
    _keep(quarterly, "--keep-13weekly", dest="quarterly_13weekly",
          what="quarterly", note=" (13 week strategy)")  # fmt: skip
    _keep(quarterly, "--keep-3monthly", dest="quarterly_3monthly",
          what="quarterly", note=" (3 month strategy)")  # fmt: skip
    _keep(parser, "-y", "--keep-yearly", dest="yearly", what="yearly")
    add_archive_filter_arguments(parser, sort_by=False, first_last=False)
    parser.add_argument(
        "--save-space", dest="save_space", action="store_true",
        help="accepted for Borg compatibility (deleting never needs extra space)",
    )  # fmt: skip
    parser.add_argument(
        "-c", "--checkpoint-interval", dest="checkpoint_interval", type=int, default=1800,
        metavar="SECONDS",
        help="accepted for Borg compatibility (each deletion is final at once)",
    )  # fmt: skip
    parser.add_argument(
        "location", nargs="?", default="", metavar="REPOSITORY", help="repository to prune"
    )


def _keep(
    parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup,
    *flags: str,
    dest: str,
    what: str,
    note: str = "",
) -> None:
    parser.add_argument(
        *flags, dest=dest, type=int, default=0,
        help=f"number of {what} archives to keep{note}",
    )  # fmt: skip


def rules_from_args(args: argparse.Namespace) -> PruneRules:
    """The retention rules the ``--keep-*`` options give."""
    return PruneRules(
        within_hours=args.within,
        secondly=args.secondly,
        minutely=args.minutely,
        hourly=args.hourly,
        daily=args.daily,
        weekly=args.weekly,
        monthly=args.monthly,
        quarterly_13weekly=args.quarterly_13weekly,
        quarterly_3monthly=args.quarterly_3monthly,
        yearly=args.yearly,
    )


def run(ctx: Context, args: argparse.Namespace) -> None:
    _warn_deprecated_prefix(ctx)
    location = repository_location(ctx, args.location)
    if location.archive is not None:
        raise InputError(f'argument REPOSITORY: "{args.location}": No archive can be specified')
    selection = archive_selection(ctx, args, consider_checkpoints=True)
    rules = rules_from_args(args)
    with (
        open_repository(ctx, location, operation="delete") as repo,
        command_lock(ctx, repo.repository.storage, exclusive=False),
    ):
        if not rules.any():
            raise CommandError(NO_RULES)
        records = repo.records()
        matching = _matching(records, selection.glob)
        plan = plan_prune([_candidate(r) for r in matching], rules, ctx.now())
        _log_counts(records, plan)
        deleted = _carry_out(ctx, args, repo, plan, {r.id: r for r in matching})
        if args.stats or args.quick_stats:
            text = deletion_stats_text(repo, records, deleted, iec=ctx.iec, totals=args.stats)
            ctx.out.message(text, topic="stats")


def _warn_deprecated_prefix(ctx: Context) -> None:
    """Borg warns about ``--prefix`` (spelled out; ``-P`` is not warned about)."""
    if any(a == "--prefix" or a.startswith("--prefix=") for a in ctx.cmdline[1:]):
        ctx.out.message(PREFIX_DEPRECATED)


def _matching(records: list[ArchiveRecord], glob: str | None) -> list[ArchiveRecord]:
    """The archives the filter matches, with their checkpoints (Borg's ``match_end``)."""
    regex = glob_to_regex(glob or "*", CHECKPOINT_SUFFIX)
    return [r for r in records if regex.match(r.name)]


def _candidate(record: ArchiveRecord) -> PruneCandidate:
    return PruneCandidate(
        id=record.id, name=record.name, time=record.start_dt, checkpoint=is_checkpoint(record)
    )


def _log_counts(records: list[ArchiveRecord], plan: PrunePlan) -> None:
    """Borg's three info lines: the repository, what matched, what is kept and pruned."""
    checkpoints = sum(1 for r in records if is_checkpoint(r))
    logger.info(
        "Repository contains %d normal archives and %d checkpoint archives.",
        len(records) - checkpoints,
        checkpoints,
    )
    logger.info(
        "Applying rules to the matching %d archives and %d checkpoints...",
        plan.archives,
        plan.checkpoints,
    )
    logger.info(
        "Keeping %d archives and %d checkpoints, pruning %d archives and %d checkpoints.",
        plan.count(keep=True, checkpoint=False),
        plan.count(keep=True, checkpoint=True),
        plan.count(keep=False, checkpoint=False),
        plan.count(keep=False, checkpoint=True),
    )


def _carry_out(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    plan: PrunePlan,
    by_id: dict[bytes, ArchiveRecord],
) -> list[ArchiveRecord]:
    """Delete what the plan prunes, newest first, listing every decision; returns what went."""
    total = len(plan.to_delete)
    done = 0
    deleted: list[ArchiveRecord] = []
    for decision in plan.decisions:
        record = by_id[decision.archive.id]
        if decision.keep:
            message = _keeping(decision)
        else:
            if ctx.progress:
                _progress(ctx, done, total)
            done += 1
            if args.dry_run:
                message = "Would prune:"
            else:
                message = f"Pruning archive ({done}/{total}):"
                if _delete_record(repo, record):
                    deleted.append(record)
                else:
                    ctx.warn(ArchiveNotFoundWarning(record.name, done, total))
        if args.output_list:
            ctx.out.message(f"{message:<44} {format_archive_line(record)}", topic="list")
    if ctx.progress:
        ctx.out.progress("prune", "", finished=True, type="progress_percent")
    return deleted


def _keeping(decision: Decision) -> str:
    if decision.rule is None:
        return "Keeping checkpoint archive:"
    return f"Keeping archive (rule: {decision.rule} #{decision.number}):"


def _progress(ctx: Context, done: int, total: int) -> None:
    """Borg's ``ProgressIndicatorPercent`` (msgid ``prune``), shown before each deletion."""
    percent = 100.0 * done / total if total else 100.0
    ctx.out.progress(
        "prune",
        f"Pruning archives {percent:3.0f}%",
        type="progress_percent",
        current=done,
        total=total,
    )


def _delete_record(repo: OpenRepository, record: ArchiveRecord) -> bool:
    """Remove the record as ``delete`` does; False if another client removed it first."""
    try:
        repo.objects.delete_archive(record.id)
    except ArchiveRecordNotFound:
        return False
    return True
