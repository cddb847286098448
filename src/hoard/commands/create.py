"""``hoard create``: back up paths into a new archive."""

from __future__ import annotations

import argparse
import getpass
import grp
import os
import socket
import sys
import time
from datetime import datetime

from hoard.archive.catalog import exists, load_records
from hoard.archive.chunker import ChunkerParams, make_chunker
from hoard.archive.create import CreateOptions, Creator, StreamMeta
from hoard.archive.metadata import ReadOptions, group_id, user_id
from hoard.archive.pipeline import ChunkPipeline
from hoard.archive.placeholders import PlaceholderContext, expand_placeholders
from hoard.archive.record import ArchiveRecord, ArchiveStats
from hoard.commands.base import Context
from hoard.commands.patternargs import add_pattern_arguments, create_matcher
from hoard.commands.repo import OpenRepository, open_repository, repository_location
from hoard.commands.stats import (
    SEPARATOR,
    archive_json,
    archive_stats_text,
    cache_json,
    encryption_json,
    repository_json,
    repository_totals,
)
from hoard.commands.version import BORG_COMPAT_VERSION
from hoard.errors import ArchiveAlreadyExists, InputError
from hoard.objects.compression import DEFAULT_COMPRESSION, parse_compression
from hoard.objects.types import ObjectType

NAME = "create"
HELP = "Create backup"
DESCRIPTION = """Create a backup archive of all files found while recursively
traversing the given PATHs. ARCHIVE may contain placeholders such as
{hostname} and {now:%Y-%m-%d}. '-' as PATH reads the content to back up from
standard input (stored as --stdin-name)."""

FILTER_CHARS = set("AMUEdbchsfx-?C")


def _timestamp(text: str) -> datetime:
    """Borg's --timestamp: ISO 8601 (local time unless an offset is given) or a reference file."""
    if os.path.exists(text):
        return datetime.fromtimestamp(os.stat(text).st_mtime).astimezone()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid timestamp {text!r} (yyyy-mm-ddThh:mm:ss[+HH:MM] or a file)"
        ) from None
    return value.astimezone() if value.tzinfo is None else value


def _filter(text: str) -> str:
    bad = set(text) - FILTER_CHARS
    if bad:
        raise argparse.ArgumentTypeError(f"invalid status characters: {''.join(sorted(bad))}")
    return text


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--dry-run", action="store_true", help="do not create a backup archive"
    )
    parser.add_argument("-s", "--stats", action="store_true", help="print statistics")
    parser.add_argument(
        "--list", action="store_true", dest="output_list", help="output verbose list of items"
    )
    parser.add_argument(
        "--filter",
        type=_filter,
        metavar="STATUSCHARS",
        help="only display items with the given status characters",
    )
    parser.add_argument("--json", action="store_true", help="output stats as JSON")
    parser.add_argument(
        "--no-cache-sync", action="store_true", help="accepted for Borg compatibility"
    )
    parser.add_argument("--stdin-name", default="stdin", metavar="NAME")
    parser.add_argument("--stdin-user", default=None, metavar="USER")
    parser.add_argument("--stdin-group", default=None, metavar="GROUP")
    parser.add_argument("--stdin-mode", default="0660", metavar="M")
    add_pattern_arguments(parser, create=True)
    fs = parser.add_argument_group("Filesystem options")
    fs.add_argument("-x", "--one-file-system", action="store_true")
    fs.add_argument("--numeric-ids", "--numeric-owner", action="store_true", dest="numeric_ids")
    fs.add_argument("--noatime", action="store_true", help="do not store atime (default)")
    fs.add_argument("--atime", action="store_true", help="do store atime")
    fs.add_argument("--noctime", action="store_true")
    fs.add_argument("--nobirthtime", action="store_true")
    fs.add_argument("--noflags", "--nobsdflags", action="store_true", dest="noflags")
    fs.add_argument("--noacls", action="store_true")
    fs.add_argument("--noxattrs", action="store_true")
    fs.add_argument("--sparse", action="store_true", help="accepted; holes are always detected")
    fs.add_argument("--files-cache", default="ctime,size,inode", metavar="MODE")
    fs.add_argument("--read-special", action="store_true")
    ar = parser.add_argument_group("Archive options")
    ar.add_argument("--comment", default="", metavar="COMMENT")
    ar.add_argument("--timestamp", type=_timestamp, default=None, metavar="TIMESTAMP")
    ar.add_argument("-c", "--checkpoint-interval", type=int, default=1800, metavar="SECONDS")
    ar.add_argument(
        "--chunker-params",
        type=ChunkerParams.parse,
        default=ChunkerParams.parse("default"),
        metavar="PARAMS",
    )
    ar.add_argument(
        "-C",
        "--compression",
        type=parse_compression,
        default=DEFAULT_COMPRESSION,
        metavar="COMPRESSION",
    )
    parser.add_argument("location", metavar="ARCHIVE")
    parser.add_argument("paths", nargs="*", metavar="PATH")  # fmt: skip


def _placeholders(ctx: Context) -> PlaceholderContext:
    return PlaceholderContext.from_system(ctx.now(), borg_version=BORG_COMPAT_VERSION)


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    if not location.archive:
        raise InputError("create needs an archive name: REPOSITORY::ARCHIVE")
    places = _placeholders(ctx)
    name = expand_placeholders(location.archive, places)
    comment = expand_placeholders(args.comment, places)
    matcher, roots = create_matcher(args)
    paths = [*args.paths, *roots]
    if not paths:
        raise InputError("create needs at least one PATH (or R lines in a patterns file)")
    with open_repository(ctx, location, operation="write", compression=args.compression) as repo:
        records = load_records(repo.objects)
        if exists(records, name):
            raise ArchiveAlreadyExists(name)
        start = args.timestamp or ctx.now()
        began = time.monotonic()
        root, stats = _backup(ctx, args, repo, matcher, paths)
        if args.dry_run:
            return
        record = ArchiveRecord(
            name=name,
            time=int(start.timestamp() * 1e9),
            end=int(start.timestamp() * 1e9 + (time.monotonic() - began) * 1e9),
            hostname=socket.gethostname(),
            username=getpass.getuser(),
            root=root,
            cmdline=ctx.cmdline,
            comment=comment,
            chunker=str(args.chunker_params),
            compression=str(args.compression),
            stats=stats,
        )
        record.id = repo.objects.put_archive(record.encode())
        _report(ctx, args, repo, record, [*records, record])


def _read_options(args: argparse.Namespace) -> ReadOptions:
    return ReadOptions(
        numeric_ids=args.numeric_ids,
        atime=args.atime and not args.noatime,
        ctime=not args.noctime,
        flags=not args.noflags,
        acls=not args.noacls,
        xattrs=not args.noxattrs,
    )


def _backup(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    matcher: object,
    paths: list[str],
) -> tuple[list[bytes], ArchiveStats]:
    options = CreateOptions(
        read=_read_options(args),
        one_file_system=args.one_file_system,
        exclude_caches=args.exclude_caches,
        exclude_if_present=tuple(os.fsencode(n) for n in args.exclude_if_present),
        keep_exclude_tags=args.keep_exclude_tags,
        read_special=args.read_special,
        dry_run=args.dry_run,
    )
    chunker = make_chunker(args.chunker_params, repo.key.chunker_key)
    pipeline = ChunkPipeline(repo.objects, dry_run=args.dry_run)
    writer = _DryRunWriter(repo) if args.dry_run else repo.objects
    creator = Creator(
        writer,
        pipeline,
        chunker,
        matcher,  # type: ignore[arg-type]
        options,
        report=_reporter(ctx, args),
        warn=ctx.warn,
        progress=_progress(ctx) if ctx.progress else None,
    )
    try:
        if paths == ["-"]:
            root = creator.run_stream(sys.stdin.buffer, _stream_meta(args))
        else:
            root = creator.run([os.fsencode(p) for p in paths])
    finally:
        pipeline.close()
    if not args.dry_run:
        repo.objects.flush()
    return root, creator.stats


def _stream_meta(args: argparse.Namespace) -> StreamMeta:
    """Borg's defaults: owner is the current user unless --stdin-user/--stdin-group."""
    user = args.stdin_user or getpass.getuser()
    group = args.stdin_group or grp.getgrgid(os.getgid()).gr_name
    uid = user_id(user)
    gid = group_id(group)
    try:
        mode = int(args.stdin_mode, 8)
    except ValueError:
        raise InputError(f"invalid --stdin-mode {args.stdin_mode!r} (octal)") from None
    return StreamMeta(
        path=os.fsencode(args.stdin_name),
        mode=mode,
        uid=os.getuid() if uid is None else uid,
        gid=os.getgid() if gid is None else gid,
        user=user,
        group=group,
    )


class _DryRunWriter:
    """--dry-run: computes tree ids without storing anything."""

    def __init__(self, repo: OpenRepository) -> None:
        self._repo = repo

    def put(self, type: ObjectType, data: bytes) -> bytes:
        return self._repo.objects.id_of(data)


def _reporter(ctx: Context, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    show = args.output_list
    wanted = set(args.filter) if args.filter else None

    def report(status: str, path: bytes) -> None:
        if show and (wanted is None or status in wanted):
            ctx.out.list_item(status, os.fsdecode(path))

    return report


def _progress(ctx: Context):  # type: ignore[no-untyped-def]
    def progress(stats: ArchiveStats, path: bytes) -> None:
        shown = os.fsdecode(path)
        ctx.out.progress(
            "archive_progress",
            f"{stats.original_size} O {stats.compressed_size} C "
            f"{stats.deduplicated_size} D {stats.nfiles} N {shown}",
            type="archive_progress",
            original_size=stats.original_size,
            compressed_size=stats.compressed_size,
            deduplicated_size=stats.deduplicated_size,
            nfiles=stats.nfiles,
            path=shown,
        )

    return progress


def _report(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    record: ArchiveRecord,
    records: list[ArchiveRecord],
) -> None:
    if ctx.progress:
        ctx.out.progress("archive_progress", "", finished=True, type="archive_progress")
    if not (args.stats or args.json):
        return
    totals = repository_totals(repo, records)
    if args.json:
        ctx.out.json(
            {
                "archive": archive_json(record),
                "repository": repository_json(repo, datetime.now().astimezone()),
                "cache": cache_json(repo, totals, str(ctx.cache_dir / repo.repository.id.hex())),
                "encryption": encryption_json(repo),
            }
        )
    else:
        text = archive_stats_text(repo, record, totals, iec=ctx.iec)
        ctx.out.message(f"{SEPARATOR}\n{text}\n{SEPARATOR}")
