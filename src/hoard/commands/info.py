"""``hoard info``: details and sizes of a repository or of some of its archives.

Borg 1.4's layout and JSON. ``info REPO`` describes the repository (id,
location, encryption, cache and security directories, totals);
``info REPO::ARCHIVE``, or any archive filter (``-a``, ``--first``,
``--last``, ``-P``), describes archives, checkpoints included (as Borg).

An archive's deduplicated size is what deleting it would free (after
``compact``): the objects no other archive references. hoard has no
reference-count cache, so this reads the tree objects of all archives (each
shared directory once); the other figures come from the archive records.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from hoard.archive.catalog import ReferenceGraph, find, select
from hoard.archive.record import ArchiveRecord
from hoard.commands.archiveargs import (
    add_archive_filter_arguments,
    archive_selection,
    filters_given,
)
from hoard.commands.base import Context
from hoard.commands.repo import OpenRepository, open_repository, repository_location
from hoard.commands.stats import (
    RepositoryTotals,
    archive_info_text,
    archive_json,
    cache_json,
    current_stats,
    encryption_json,
    last_modified,
    path_text,
    repository_info_text,
    repository_json,
    repository_places,
    repository_totals,
)

NAME = "info"
HELP = "Show archive details such as disk space used"
DESCRIPTION = """This command displays detailed information about the specified archive or
repository.

Please note that the deduplicated sizes of the individual archives do not add
up to the deduplicated size of the repository ("all archives"), because the
two are meaning different things:

This archive / deduplicated size = amount of data stored ONLY for this archive
= unique chunks of this archive.
All archives / deduplicated size = amount of data stored in the repo
= all chunks in the repository (until compact, also those of deleted archives)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="format output as JSON")
    add_archive_filter_arguments(parser)
    parser.add_argument(
        "location", nargs="?", default="", metavar="REPOSITORY_OR_ARCHIVE",
        help="repository or archive to display information about",
    )  # fmt: skip


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    selection = archive_selection(ctx, args, consider_checkpoints=True)  # checked in any case
    with open_repository(ctx, location) as repo:
        records = repo.records()
        totals = repository_totals(repo, records)
        if location.archive:
            chosen = [find(records, location.archive)]
        elif filters_given(args):
            chosen = select(records, selection)
        else:
            _info_repository(ctx, args, repo, records, totals)
            return
        _info_archives(ctx, args, repo, records, chosen, totals)


def _common_json(
    ctx: Context, repo: OpenRepository, records: list[ArchiveRecord], totals: RepositoryTotals
) -> dict[str, Any]:
    """Borg's ``basic_json_data`` with the cache object."""
    places = repository_places(repo, ctx.cache_dir, ctx.security_dir, ctx.keys_dir)
    return {
        "cache": cache_json(repo, totals, str(places.cache)),
        "encryption": encryption_json(repo, places.keyfile),
        "repository": repository_json(repo, last_modified(records)),
    }


def _info_repository(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    records: list[ArchiveRecord],
    totals: RepositoryTotals,
) -> None:
    places = repository_places(repo, ctx.cache_dir, ctx.security_dir, ctx.keys_dir)
    if args.json:
        data = _common_json(ctx, repo, records, totals)
        data["security_dir"] = path_text(places.security)
        ctx.out.json(data)
    else:
        ctx.out.print(repository_info_text(repo, places, totals, iec=ctx.iec))


def _info_archives(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    records: list[ArchiveRecord],
    chosen: list[ArchiveRecord],
    totals: RepositoryTotals,
) -> None:
    graph = ReferenceGraph(repo.objects)
    all_counts = graph.refcounts(records) if chosen else Counter[bytes]()
    current = [(r, current_stats(repo, graph, all_counts, r)) for r in chosen]
    if args.json:
        data = _common_json(ctx, repo, records, totals)
        data["archives"] = [archive_json(record, stats) for record, stats in current]
        ctx.out.json(data)
        return
    for i, (record, stats) in enumerate(current):
        if i:
            ctx.out.print()
        ctx.out.print(archive_info_text(record, stats, totals, iec=ctx.iec))
