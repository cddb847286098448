"""``hoard delete``: delete archives, or a whole repository.

Borg 1.4's command and messages. Archives are named (``REPO::ARCHIVE``, and
more names after it) or selected with the archive filters (checkpoints
included, as Borg); mixing both is refused. Deleting an archive removes its
record; the space its data occupies is reclaimed by ``compact``, which is
why ``--stats`` reports what compact will free ("Deleted data"), computed
from the references of all archives.

Without an archive, the whole repository is deleted after confirmation
(unless ``--force``): the prompt lists what would be lost, and only the
answer ``YES`` (typed, piped, or in ``BORG_DELETE_I_KNOW_WHAT_I_AM_DOING`` /
``HOARD_DELETE_I_KNOW_WHAT_I_AM_DOING``) goes ahead; anything else, or no
answer, ends with CancelledByUser. Its local cache and security directory go
too (``--keep-security-info`` keeps the latter); a key file is kept, as Borg
keeps it: a copy of the repository elsewhere may still need it.

Unknown archive names are warnings ("Archive x not found (2/3).", exit code
1) and the other names are still deleted, as in Borg 1.4.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
from pathlib import Path

from hoard.archive.catalog import Selection, select
from hoard.archive.formatter import format_archive_line
from hoard.archive.record import ArchiveRecord
from hoard.commands.archiveargs import (
    add_archive_filter_arguments,
    archive_selection,
    filters_given,
)
from hoard.commands.base import Context
from hoard.commands.confirm import confirm
from hoard.commands.repo import (
    OpenRepository,
    open_repository,
    repository_location,
    repository_storage,
)
from hoard.commands.stats import SEPARATOR, deletion_stats_text, location_text
from hoard.commands.with_lock import command_lock
from hoard.errors import (
    AppendOnlyViolation,
    ArchiveNotFoundWarning,
    ArchiveRecordNotFound,
    CommandError,
    ObjectNotFound,
    RepositoryError,
)
from hoard.repository.config import CONFIG_COPY_NAME, CONFIG_NAME, RepoConfig
from hoard.storage.base import Storage
from hoard.storage.location import Location

logger = logging.getLogger("hoard")

NAME = "delete"
HELP = "Delete an existing repository or archives"
DESCRIPTION = """This command deletes an archive from the repository or the complete repository.

Important: When deleting archives, repository disk space is not freed until
you run hoard compact.

When you delete a complete repository, the security info and local cache for it
(if any) are also deleted. Alternatively, you can delete just the local cache
with the --cache-only option, or keep the security info with the
--keep-security-info option.

When in doubt, use --dry-run --list to see what would be deleted.

When using --stats, you will get some statistics about how much data was
deleted - the "Deleted data" deduplicated size there is most interesting as
that is how much your repository will shrink (once compacted).
Please note that the "All archives" stats show what the repository holds now.

You can delete multiple archives by specifying a shell pattern to match
multiple archives using the --glob-archives GLOB option (for more info on
these patterns, see "hoard help patterns")."""

CONFIRM_VARIABLE = "DELETE_I_KNOW_WHAT_I_AM_DOING"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--dry-run", dest="dry_run", action="store_true", help="do not change repository"
    )
    parser.add_argument(
        "--list", dest="output_list", action="store_true",
        help="output verbose list of archives",
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
        "--cache-only", dest="cache_only", action="store_true",
        help="delete only the local cache for the given repository",
    )  # fmt: skip
    parser.add_argument(
        "--force", dest="forced", action="count", default=0,
        help="delete a repository without asking; archives: accepted for Borg "
        "compatibility (deleting an archive record never needs forcing)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-security-info", dest="keep_security_info", action="store_true",
        help="keep the local security info when deleting a repository",
    )  # fmt: skip
    parser.add_argument(
        "--save-space", dest="save_space", action="store_true",
        help="accepted for Borg compatibility (deleting never needs extra space)",
    )  # fmt: skip
    parser.add_argument(
        "-c", "--checkpoint-interval", dest="checkpoint_interval", type=int, default=1800,
        metavar="SECONDS",
        help="accepted for Borg compatibility (each deletion is final at once)",
    )  # fmt: skip
    add_archive_filter_arguments(parser)
    parser.add_argument(
        "location", nargs="?", default="", metavar="REPOSITORY_OR_ARCHIVE",
        help="repository or archive to delete",
    )  # fmt: skip
    parser.add_argument("archives", nargs="*", metavar="ARCHIVE", help="archives to delete")


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    selection = archive_selection(ctx, args, consider_checkpoints=True)  # checked in any case
    filtered = filters_given(args)
    explicit = bool(location.archive or args.archives)
    if filtered and explicit:
        raise CommandError("Mixing archive filters and explicitly named archives is not supported.")
    if filtered or explicit:
        _delete_archives(ctx, args, location, selection)
    else:
        _delete_repository(ctx, args, location)


# --- archives -----------------------------------------------------------------------------


def _delete_archives(
    ctx: Context, args: argparse.Namespace, location: Location, selection: Selection
) -> None:
    names = [n for n in (location.archive, *args.archives) if n]
    with (
        open_repository(ctx, location.omit_archive(), operation="delete") as repo,
        command_lock(ctx, repo.repository.storage, exclusive=False),
    ):
        records = repo.records()
        if names:
            targets = [(name, [r for r in records if r.name == name]) for name in names]
        else:
            targets = [(r.name, [r]) for r in select(records, selection)]
            if not targets:
                return  # as Borg: a filter matching nothing is no error and prints nothing
        deleted = _delete_targets(ctx, args, repo, targets)
        if args.stats or args.quick_stats:
            text = deletion_stats_text(repo, records, deleted, iec=ctx.iec, totals=args.stats)
            ctx.out.message(text, topic="stats")


def _delete_targets(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    targets: list[tuple[str, list[ArchiveRecord]]],
) -> list[ArchiveRecord]:
    """Delete (or, with --dry-run, pretend to) in order; returns what went."""
    verb = "Would delete archive" if args.dry_run else "Deleting archive"
    deleted: list[ArchiveRecord] = []
    gone: set[bytes] = set()
    for i, (name, found) in enumerate(targets, 1):
        present = [r for r in found if r.id not in gone]
        if not present:
            ctx.warn(ArchiveNotFoundWarning(name, i, len(targets)))
            continue
        for record in present:
            if args.output_list:
                line = f"{verb}: {format_archive_line(record)} ({i}/{len(targets)})"
                ctx.out.message(line, topic="list")
            if not args.dry_run and not _delete_record(repo, record):
                ctx.warn(ArchiveNotFoundWarning(name, i, len(targets)))
                continue
            if not args.dry_run:
                gone.add(record.id)
            deleted.append(record)
    return deleted


def _delete_record(repo: OpenRepository, record: ArchiveRecord) -> bool:
    """Remove the record; False if another client removed it first."""
    try:
        repo.objects.delete_archive(record.id)
    except ArchiveRecordNotFound:
        return False
    return True


# --- the whole repository -------------------------------------------------------------------


def _delete_repository(ctx: Context, args: argparse.Namespace, location: Location) -> None:
    if args.cache_only:
        repo_id = _repository_id(ctx, location)
    else:
        repo_id = _unmake_repository(ctx, args, location)
        _destroy(ctx, args, location, repo_id)
    cache = ctx.cache_dir / repo_id.hex()
    if args.dry_run:
        logger.info("Would delete cache.")
        return
    _remove_tree(cache)
    logger.info("Cache deleted.")


def _unmake_repository(ctx: Context, args: argparse.Namespace, location: Location) -> bytes:
    """Under the exclusive lock: ask (unless --force), then remove the config.

    Without its config the directory is no repository any more: nobody can
    open it after the lock is released, and a crash while the rest is
    removed leaves nothing that could be mistaken for one. Returns the id.
    """
    if args.forced:
        bare = repository_storage(ctx, location)
        try:
            config = RepoConfig.load(bare, "delete")
            _refuse_append_only(config, bare)
            with command_lock(ctx, bare, exclusive=True):
                _remove_config(args, bare)
        finally:
            bare.close()
        return config.id
    with open_repository(ctx, location, operation="delete") as repo:
        storage = repo.repository.storage
        _refuse_append_only(repo.repository.config, storage)
        with command_lock(ctx, storage, exclusive=True):
            _ask(ctx, _confirmation_text(repo, repo.records(), listing=args.output_list))
            _remove_config(args, storage)
        return repo.repository.id


def _refuse_append_only(config: RepoConfig, storage: Storage) -> None:
    """An append-only repository is never deleted by hoard (as Borg's
    ``destroy``): switch append-only off first ('hoard config REPO
    append_only 0' on the machine that holds it)."""
    if config.append_only:
        raise AppendOnlyViolation(storage.location, "delete the repository")


def _remove_config(args: argparse.Namespace, storage: Storage) -> None:
    """The copy first: a crash in between leaves a repository that still works."""
    if not args.dry_run:
        with contextlib.suppress(ObjectNotFound):
            storage.delete(CONFIG_COPY_NAME)
        storage.delete(CONFIG_NAME)


def _repository_id(ctx: Context, location: Location) -> bytes:
    """The id of the repository at ``location``, read from its config (no key needed)."""
    storage = repository_storage(ctx, location)
    try:
        return RepoConfig.load(storage, "delete").id
    finally:
        storage.close()


def _confirmation_text(repo: OpenRepository, records: list[ArchiveRecord], *, listing: bool) -> str:
    """Borg 1.4's question before deleting a repository (``--list`` adds the archives)."""
    lines = [
        "You requested to completely DELETE the following repository "
        f"*including* {len(records)} archives it contains:",
        SEPARATOR,
        f"Repository ID: {repo.repository.id.hex()}",
        f"Location: {location_text(repo.location)}",
    ]
    if listing:
        lines += ["", "Archives:"]
        lines += [format_archive_line(r) for r in records]
        if not records:
            lines.append("This repository seems to not have any archives.")
    lines += [SEPARATOR, "Type 'YES' if you understand this and want to continue: "]
    return "\n".join(lines)


def _ask(ctx: Context, question: str) -> None:
    """Borg's ``yes()`` with ``truish=('YES',)`` and no retry; CancelledByUser unless YES."""
    confirm(ctx, question, CONFIRM_VARIABLE)


def _destroy(ctx: Context, args: argparse.Namespace, location: Location, repo_id: bytes) -> None:
    """Remove the (config-less) repository directory and its security directory."""
    keep = args.keep_security_info
    if args.dry_run:
        logger.info("Would delete repository.")
        logger.info("Would %s security info.", "keep" if keep else "delete")
        return
    _remove_tree(Path(location.path))
    logger.info("Repository deleted.")
    if not keep:
        _remove_tree(ctx.security_dir / repo_id.hex())


def _remove_tree(path: Path) -> None:
    """Remove a directory tree; one that is not there is fine."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RepositoryError(f"cannot delete {path}: {exc.strerror}") from None
