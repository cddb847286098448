"""``hoard list``: the archives of a repository, or the items of an archive.

Borg 1.4's command: the same default formats, ``--short``, ``--format`` keys
(``hoard.archive.formatter``), ``--json`` for archives and ``--json-lines``
for items, the archive filters and, for items, PATH arguments and
include/exclude patterns matched against every item (as Borg: an excluded
directory's contents are still listed if they match).

Text output is written as bytes (``os.fsencode``): ``{path}`` shows
undecodable bytes as ``?`` as Borg does, ``{bpath}`` and ``{barchive}`` keep
them verbatim. Implicit directories (parents of a backed-up path that were
not themselves given) are not items and are not listed.
"""

from __future__ import annotations

import argparse
import os

from hoard.archive.catalog import ReferenceGraph, find, select
from hoard.archive.formatter import (
    ARCHIVE_KEYS,
    DEFAULT_ARCHIVE_FORMAT,
    DEFAULT_ITEM_FORMAT,
    FIXED_KEYS,
    ITEM_KEYS,
    SHORT_ARCHIVE_FORMAT,
    SHORT_ITEM_FORMAT,
    ArchiveFormatter,
    ItemFormatter,
    ItemSources,
    format_keys,
)
from hoard.archive.record import ArchiveRecord
from hoard.archive.tree import walk
from hoard.commands.archiveargs import (
    add_archive_filter_arguments,
    add_consider_checkpoints_argument,
    archive_selection,
)
from hoard.commands.base import Context
from hoard.commands.patternargs import add_pattern_arguments, selection_matcher
from hoard.commands.repo import OpenRepository, open_repository, repository_location
from hoard.commands.stats import encryption_json, keyfile_path, last_modified, repository_json
from hoard.errors import CommandError
from hoard.objects.keys import EncryptionMode
from hoard.storage.location import Location

NAME = "list"
HELP = "List archive or repository contents"
DESCRIPTION = f"""This command lists the contents of a repository or an archive.

For more help on include/exclude patterns, see the "hoard help patterns" command output.

The FORMAT specifier syntax: Python's format string syntax, e.g.
'{{archive}}{{NL}}' or '{{mode}} {{user:6}} {{size:8}} {{path}}{{NL}}'.
{{VAR:NUMBER}} pads to NUMBER columns (strings left-, numbers right-aligned);
time columns except isomtime, isoctime and isoatime cannot be padded
({{mtime:%Y-%m-%d}} takes a strftime format instead).

The following keys are always available:
{", ".join(FIXED_KEYS)}

Keys available only when listing archives in a repository:
{", ".join(ARCHIVE_KEYS)}

Keys available only when listing files in an archive:
{", ".join(ITEM_KEYS)}

extra: " -> TARGET" for symlinks, " link to PATH" for later members of a
hard-link group. Hash keys read the whole content of every file listed;
dsize, dcsize and unique_chunks count references over all archives."""


DELETED_MARK = " [deleted]"
"""Appended to the line of an archive hidden by a deletion record (``--consider-deleted``)."""


def configure(parser: argparse.ArgumentParser) -> None:
    add_consider_checkpoints_argument(parser)
    parser.add_argument(
        "--consider-deleted", dest="consider_deleted", action="store_true",
        help="also list archives deleted in append-only mode (hidden behind a deletion "
        "record; 'hoard undelete' restores them), marked with [deleted] "
        '(JSON: "deleted": true)',
    )  # fmt: skip
    parser.add_argument(
        "--short", action="store_true", help="only print file/directory names, nothing else"
    )
    parser.add_argument(
        "--format", dest="format", metavar="FORMAT",
        help="specify format for file or archive listing (default for files: "
        f'"{DEFAULT_ITEM_FORMAT}"; for archives: "{DEFAULT_ARCHIVE_FORMAT}")',
    )  # fmt: skip
    parser.add_argument("--list-format", dest="format", help=argparse.SUPPRESS)
    parser.add_argument(
        "--json", action="store_true",
        help="Only valid for listing repository contents. Format output as JSON. "
        "The form of --format is ignored, but keys used in it are added to the JSON output.",
    )  # fmt: skip
    parser.add_argument(
        "--json-lines", dest="json_lines", action="store_true",
        help="Only valid for listing archive contents. Format output as JSON Lines. "
        "The form of --format is ignored, but keys used in it are added to the JSON output.",
    )  # fmt: skip
    add_archive_filter_arguments(parser)
    add_pattern_arguments(parser, create=False)
    parser.add_argument(
        "location", nargs="?", default="", metavar="REPOSITORY_OR_ARCHIVE",
        help="repository or archive to list contents of",
    )  # fmt: skip
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="paths to list; patterns are supported"
    )


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    if location.archive:
        if args.json:
            raise CommandError(
                "The --json option is only valid for listing archives, not archive contents."
            )
        _list_archive(ctx, args, location)
    else:
        if args.json_lines:
            raise CommandError(
                "The --json-lines option is only valid for listing archive contents, not archives."
            )
        _list_repository(ctx, args, location)


def _list_repository(ctx: Context, args: argparse.Namespace, location: Location) -> None:
    fmt = args.format or (SHORT_ARCHIVE_FORMAT if args.short else DEFAULT_ARCHIVE_FORMAT)
    formatter = ArchiveFormatter(fmt, json=args.json)
    selection = archive_selection(ctx, args)
    with open_repository(ctx, location) as repo:
        formatter.authenticated = repo.mode is not EncryptionMode.NONE
        records = repo.records(include_hidden=args.consider_deleted)
        hidden = (
            repo.objects.hidden_archives(r.id for r in records) if args.consider_deleted else set()
        )
        chosen = select(records, selection)
        if args.json:
            ctx.out.json(
                {
                    "archives": [_json_data(formatter, r, hidden, args) for r in chosen],
                    "encryption": encryption_json(repo, keyfile_path(repo, ctx.keys_dir)),
                    "repository": repository_json(repo, last_modified(records)),
                }
            )
            return
        for record in chosen:
            text = formatter.format(record)
            if record.id in hidden:
                text = (
                    text[:-1] + DELETED_MARK + "\n" if text.endswith("\n") else text + DELETED_MARK
                )
            ctx.out.print_bytes(os.fsencode(text))


def _json_data(
    formatter: ArchiveFormatter, record: ArchiveRecord, hidden: set[bytes], args: argparse.Namespace
) -> dict[str, object]:
    data = formatter.json_data(record)
    if args.consider_deleted:
        data["deleted"] = record.id in hidden
    return data


def _list_archive(ctx: Context, args: argparse.Namespace, location: Location) -> None:
    fmt = args.format or (SHORT_ITEM_FORMAT if args.short else DEFAULT_ITEM_FORMAT)
    format_keys(fmt, (*FIXED_KEYS, *ITEM_KEYS))  # a bad format fails before the passphrase
    archive_selection(ctx, args)  # unused for an archive (as Borg) but still checked
    matcher = selection_matcher(args, args.paths)
    assert location.archive is not None
    with open_repository(ctx, location) as repo:
        records = repo.records()
        record = find(records, location.archive)
        formatter = ItemFormatter(fmt, record, json_lines=args.json_lines)
        formatter.sources = _sources(repo, formatter, records)
        for walked in walk(repo.objects, record.root):
            if walked.entry.implicit or not matcher.match(walked.path):
                formatter.remember(walked)
            elif args.json_lines:
                ctx.out.json_line(formatter.json_data(walked))
            else:
                ctx.out.print_bytes(os.fsencode(formatter.format(walked)))


def _sources(
    repo: OpenRepository, formatter: ItemFormatter, records: list[ArchiveRecord]
) -> ItemSources:
    """Only what the format needs: content, stored sizes, reference counts."""
    refcounts = None
    if formatter.needs_refcounts:
        refcounts = ReferenceGraph(repo.objects).refcounts(records)
    index = repo.repository

    def stored_size(chunk_id: bytes) -> int:
        return index.stored_size(chunk_id) or 0

    return ItemSources(
        reader=repo.objects if formatter.needs_content else None,
        stored_size=stored_size if formatter.needs_stored_sizes else None,
        refcounts=refcounts,
    )
