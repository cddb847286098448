"""``hoard create``: back up paths into a new archive.

Borg 1.4's command line and behaviour: placeholders in the archive name and
``--comment``, the include/exclude options, ``--list``/``--filter`` status
lines, ``--stats``/``--json``, ``-`` for standard input, ``--dry-run``
(which, as in Borg, does not even open the repository, so it cannot write
to it), Ctrl-C (the first one stops the backup at the next item and saves
no archive, exit code 2; a second one interrupts at once).

The backup holds a shared repository lock, so backups from several clients
run at the same time; the archive name is checked before the walk and again
just before the archive record is stored.
"""

from __future__ import annotations

import argparse
import getpass
import grp
import io
import logging
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import IO

from hoard.archive.catalog import exists, load_records
from hoard.archive.chunker import ChunkerParams, make_chunker
from hoard.archive.create import CreateOptions, Creator, StreamMeta
from hoard.archive.metadata import ReadOptions, group_id, user_id
from hoard.archive.patterns import PatternMatcher
from hoard.archive.pipeline import ChunkPipeline
from hoard.archive.placeholders import expand_placeholders
from hoard.archive.record import ArchiveRecord, ArchiveStats
from hoard.commands.base import Context
from hoard.commands.patternargs import add_pattern_arguments, create_matcher
from hoard.commands.repo import (
    OpenRepository,
    open_repository,
    placeholder_context,
    repository_location,
)
from hoard.commands.stats import (
    SEPARATOR,
    archive_json,
    archive_stats_text,
    cache_json,
    encryption_json,
    keyfile_path,
    last_modified,
    repository_json,
    repository_totals,
)
from hoard.commands.with_lock import command_lock
from hoard.errors import (
    ArchiveAlreadyExists,
    BackupInterrupted,
    CommandError,
    HoardError,
    InputError,
)
from hoard.objects.compression import DEFAULT_COMPRESSION, parse_compression

logger = logging.getLogger("hoard")

NAME = "create"
HELP = "Create backup"
DESCRIPTION = """Create a backup archive of all files found while recursively
traversing the given PATHs. ARCHIVE may contain placeholders such as
{hostname} and {now:%Y-%m-%d}. '-' as PATH reads the content to back up from
standard input (stored as --stdin-name). A path like /srv/./data is archived
as 'data' (everything before '/./' is stripped).

--list shows one line per item: A (regular file, added), E (error), C
(changed while it was read), d (directory), s (symlink), h (hard link), f
(FIFO), c/b (char/block device), i (standard input), x (excluded), - (dry
run); --filter=AME shows only the given letters."""

FILTER_CHARS = set("AMUCEdbchsfix-?")
TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S+00:00",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y-%j",
)
"""Borg 1.4's ``--timestamp`` formats, all read as UTC."""


def _timestamp(text: str) -> datetime:
    """Borg's --timestamp: a reference file's mtime, or a UTC time in one of Borg's formats.

    A time with an explicit UTC offset (``2024-01-02T03:04:05+02:00``) is
    also accepted, and means what it says.
    """
    try:
        return datetime.fromtimestamp(os.stat(text).st_mtime, UTC)
    except OSError:
        pass
    for fmt in TIMESTAMP_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"invalid timestamp {text!r} (UTC yyyy-mm-ddThh:mm:ss, or a reference file)"
        )
    return value


def _filter(text: str) -> str:
    bad = set(text) - FILTER_CHARS
    if bad:
        raise argparse.ArgumentTypeError(f"invalid status characters: {''.join(sorted(bad))}")
    return text


def _octal_mode(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid mode {text!r} (octal, e.g. 0660)") from None


def _default_user() -> str:
    """Borg's default --stdin-user: the name of uid 0."""
    try:
        return pwd.getpwuid(0).pw_name
    except KeyError:
        return "root"


def _default_group() -> str:
    try:
        return grp.getgrgid(0).gr_name
    except KeyError:
        return "root"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--dry-run", action="store_true", help="do not create a backup archive"
    )
    parser.add_argument(
        "-s", "--stats", action="store_true", help="print statistics for the created archive"
    )
    parser.add_argument(
        "--list", action="store_true", dest="output_list", help="output verbose list of items"
    )
    parser.add_argument(
        "--filter",
        type=_filter,
        metavar="STATUSCHARS",
        help="only display items with the given status characters",
    )
    parser.add_argument(
        "--json", action="store_true", help="output stats as JSON (implies --stats)"
    )
    parser.add_argument(
        "--no-cache-sync", action="store_true", help="accepted for Borg compatibility"
    )
    _stdin_arguments(parser)
    _input_arguments(parser)
    add_pattern_arguments(parser, create=True)
    _filesystem_arguments(parser.add_argument_group("Filesystem options"))
    _archive_arguments(parser.add_argument_group("Archive options"))
    parser.add_argument("location", metavar="ARCHIVE", help="name of archive to create")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="paths to archive")


def _input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--content-from-command",
        action="store_true",
        help="interpret PATH as command and store its stdout (no archive if it fails)",
    )
    parser.add_argument(
        "--paths-from-stdin",
        action="store_true",
        help="read DELIM-separated list of paths to back up from stdin (no recursion)",
    )
    parser.add_argument(
        "--paths-from-command",
        action="store_true",
        help="interpret PATH as command and treat its output as --paths-from-stdin",
    )
    parser.add_argument(
        "--paths-delimiter",
        type=_delimiter,
        default=b"\n",
        metavar="DELIM",
        help="set path delimiter for --paths-from-stdin and --paths-from-command (default: \\n)",
    )


def _delimiter(text: str) -> bytes:
    """Borg's ``eval_escapes``: ``\\0`` is a NUL byte (``find -print0``)."""
    value = os.fsencode(text.encode("ascii", "backslashreplace").decode("unicode-escape"))
    if not value:
        raise argparse.ArgumentTypeError("the delimiter must not be empty")
    return value


def _stdin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stdin-name", default="stdin", metavar="NAME", help="use NAME in archive for stdin data"
    )
    parser.add_argument(
        "--stdin-user",
        default=_default_user(),
        metavar="USER",
        help="set user USER in archive for stdin data (default: %(default)r)",
    )
    parser.add_argument(
        "--stdin-group",
        default=_default_group(),
        metavar="GROUP",
        help="set group GROUP in archive for stdin data (default: %(default)r)",
    )
    parser.add_argument(
        "--stdin-mode",
        type=_octal_mode,
        default=0o660,
        metavar="M",
        help="set mode to M in archive for stdin data (default: 0660)",
    )


def _filesystem_arguments(fs: argparse._ArgumentGroup) -> None:
    fs.add_argument(
        "-x", "--one-file-system", action="store_true", help="stay in the same file system"
    )
    fs.add_argument("--numeric-ids", "--numeric-owner", action="store_true", dest="numeric_ids")
    fs.add_argument("--noatime", action="store_true", help="do not store atime (default)")
    fs.add_argument("--atime", action="store_true", help="do store atime")
    fs.add_argument("--noctime", action="store_true", help="do not store ctime")
    fs.add_argument("--nobirthtime", action="store_true", help="do not store birthtime")
    fs.add_argument("--noflags", "--nobsdflags", action="store_true", dest="noflags")
    fs.add_argument("--noacls", action="store_true", help="do not read and store ACLs")
    fs.add_argument("--noxattrs", action="store_true", help="do not read and store xattrs")
    fs.add_argument("--sparse", action="store_true", help="accepted; holes are always detected")
    fs.add_argument("--files-cache", default="ctime,size,inode", metavar="MODE")
    fs.add_argument(
        "--read-special",
        action="store_true",
        help="open and read block and char devices and FIFOs as if they were regular files",
    )
    fs.add_argument("--exclude-nodump", action="store_true", help="exclude files flagged NODUMP")


def _archive_arguments(ar: argparse._ArgumentGroup) -> None:
    ar.add_argument("--comment", default="", metavar="COMMENT", help="add a comment text")
    ar.add_argument(
        "--timestamp",
        type=_timestamp,
        default=None,
        metavar="TIMESTAMP",
        help="the archive's start time (UTC yyyy-mm-ddThh:mm:ss) or a reference file",
    )
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


# --- running --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What to back up, decided before anything is opened."""

    name: str
    comment: str
    matcher: PatternMatcher
    paths: list[str]


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    if not location.archive:
        raise InputError("create needs an archive name: REPOSITORY::ARCHIVE")
    matcher, roots = create_matcher(args)
    paths = [*args.paths, *roots]
    if not paths and not args.paths_from_stdin:
        raise InputError("create needs at least one PATH (or R lines in a patterns file)")
    if args.paths_from_stdin and paths:
        raise InputError("--paths-from-stdin takes no PATH")
    comment = expand_placeholders(args.comment, placeholder_context(ctx))
    plan = _Plan(location.archive, comment, matcher, paths)
    with _ctrl_c_stops() as interrupted:
        if args.dry_run:
            _dry_run(ctx, args, plan, interrupted)
            return
        with (
            open_repository(ctx, location, operation="write", compression=args.compression) as repo,
            command_lock(ctx, repo.repository.storage, exclusive=False),
        ):
            _create(ctx, args, repo, plan, interrupted)


def _create(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    plan: _Plan,
    interrupted: Callable[[], bool],
) -> None:
    if exists(load_records(repo.objects), plan.name):
        raise ArchiveAlreadyExists(plan.name)
    start = args.timestamp or datetime.now(UTC)
    began = time.monotonic()
    root, stats = _backup(ctx, args, repo, plan, interrupted)
    records = load_records(repo.objects)
    if exists(records, plan.name):  # another client took the name meanwhile
        raise ArchiveAlreadyExists(plan.name)
    start_ns = int(start.timestamp() * 1e9)
    record = ArchiveRecord(
        name=plan.name,
        time=start_ns,
        end=start_ns + int((time.monotonic() - began) * 1e9),
        hostname=socket.gethostname(),
        username=getpass.getuser(),
        root=root,
        cmdline=ctx.cmdline,
        comment=plan.comment,
        chunker=str(args.chunker_params),
        compression=str(args.compression),
        stats=stats,
    )
    record.id = repo.objects.put_archive(record.encode())
    _report(ctx, args, repo, record, [*records, record])


def _options(ctx: Context, args: argparse.Namespace, repo: OpenRepository | None) -> CreateOptions:
    read = ReadOptions(
        numeric_ids=args.numeric_ids,
        atime=args.atime and not args.noatime,
        ctime=not args.noctime,
        flags=not args.noflags,
        acls=not args.noacls,
        xattrs=not args.noxattrs,
    )
    return CreateOptions(
        read=read,
        one_file_system=args.one_file_system,
        exclude_caches=args.exclude_caches,
        exclude_if_present=tuple(os.fsencode(n) for n in args.exclude_if_present),
        keep_exclude_tags=args.keep_exclude_tags,
        exclude_nodump=args.exclude_nodump,
        read_special=args.read_special,
        dry_run=args.dry_run,
        skip=_skipped_dirs(ctx, repo),
    )


def _skipped_dirs(ctx: Context, repo: OpenRepository | None) -> frozenset[tuple[int, int]]:
    """The cache directory and a local repository are never backed up (Borg's skip_inodes)."""
    places = [str(ctx.cache_dir)]
    if repo is not None and repo.location.proto == "file":
        places.append(repo.location.path)
    skip = set()
    for place in places:
        try:
            st = os.stat(place)
        except OSError:
            continue
        skip.add((st.st_dev, st.st_ino))
    return frozenset(skip)


def _backup(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    plan: _Plan,
    interrupted: Callable[[], bool],
) -> tuple[list[bytes], ArchiveStats]:
    """Walk and store; on Ctrl-C, keep what was stored (indexed) for the next run."""
    pipeline = ChunkPipeline(repo.objects)
    creator = Creator(
        repo.objects,
        pipeline,
        make_chunker(args.chunker_params, repo.key.chunker_key),
        plan.matcher,
        _options(ctx, args, repo),
        report=_reporter(ctx, args),
        warn=ctx.warn,
        progress=_progress(ctx) if ctx.progress else None,
        interrupted=interrupted,
    )
    try:
        root = _walk(ctx, creator, args, plan)
        if interrupted():
            raise BackupInterrupted()
    except BackupInterrupted:
        pipeline.close(cancel=True)
        repo.objects.flush()  # a rerun finds these chunks and does not send them again
        raise
    finally:
        pipeline.close()
    repo.objects.flush()
    return root, creator.stats


def _dry_run(
    ctx: Context, args: argparse.Namespace, plan: _Plan, interrupted: Callable[[], bool]
) -> None:
    """Walk and report without reading file contents or opening the repository (Borg)."""
    creator = Creator(
        None,
        None,
        None,
        plan.matcher,
        _options(ctx, args, None),
        report=_reporter(ctx, args),
        warn=ctx.warn,
        interrupted=interrupted,
    )
    _walk(ctx, creator, args, plan)
    if interrupted():
        raise BackupInterrupted()


def _walk(ctx: Context, creator: Creator, args: argparse.Namespace, plan: _Plan) -> list[bytes]:
    """The one backup this command line asks for; returns the root tree ids."""
    if args.content_from_command:
        if args.dry_run:  # Borg: the command is not run
            return creator.run_stream(io.BytesIO(), _stream_meta(args))
        with _command_stdout(ctx, plan.paths) as stdout:
            return creator.run_stream(stdout, _stream_meta(args))
    if args.paths_from_command:
        with _command_stdout(ctx, plan.paths) as stdout:
            return creator.run_items(split_paths(stdout, args.paths_delimiter))
    if args.paths_from_stdin:
        return creator.run_items(split_paths(sys.stdin.buffer, args.paths_delimiter))
    if plan.paths == ["-"]:
        return creator.run_stream(sys.stdin.buffer, _stream_meta(args))
    if "-" in plan.paths:
        raise InputError("'-' (standard input) must be the only PATH")
    return creator.run([os.fsencode(p) for p in plan.paths])


def split_paths(stream: IO[bytes], delimiter: bytes) -> Iterator[bytes]:
    """The paths in ``stream``, separated by ``delimiter``; empty ones are skipped."""
    rest = b""
    while block := stream.read(65536):
        *complete, rest = (rest + block).split(delimiter)
        yield from (path for path in complete if path)
    if rest:
        yield rest


@contextmanager
def _command_stdout(ctx: Context, argv: list[str]) -> Iterator[IO[bytes]]:
    """Run ``argv``, give its stdout; afterwards, a failed command fails the backup.

    The command runs in its own process group, so a Ctrl-C at the terminal
    reaches hoard only (which then stops in order) and not the command (no
    ``preexec_fn``: the chunk pipeline's threads are running).
    """
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=dict(ctx.env), process_group=0)
    except OSError as exc:
        raise CommandError(f"Failed to execute command: {exc}") from None
    assert proc.stdout is not None
    try:
        yield proc.stdout
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.stdout.close()
        status = proc.wait()
    if status != 0:
        raise CommandError(f"Command {argv[0]!r} exited with status {status}")


def _stream_meta(args: argparse.Namespace) -> StreamMeta:
    """--stdin-user/--stdin-group must exist here (Borg: "no such user")."""
    uid = user_id(args.stdin_user)
    if uid is None:
        raise HoardError(f"no such user: {args.stdin_user}")
    gid = group_id(args.stdin_group)
    if gid is None:
        raise HoardError(f"no such group: {args.stdin_group}")
    name = os.fsencode(args.stdin_name)
    if not name.strip(b"/."):
        raise InputError(f"invalid --stdin-name {args.stdin_name!r}")
    return StreamMeta(
        path=name,
        mode=args.stdin_mode,
        uid=uid,
        gid=gid,
        user=args.stdin_user,
        group=args.stdin_group,
    )


def _reporter(ctx: Context, args: argparse.Namespace) -> Callable[[str, bytes], None]:
    show = args.output_list
    wanted = set(args.filter) if args.filter else None

    def report(status: str, path: bytes) -> None:
        if show and (wanted is None or status in wanted):
            ctx.out.list_item(status, os.fsdecode(path))

    return report


def _progress(ctx: Context) -> Callable[[ArchiveStats, bytes], None]:
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
                "repository": repository_json(repo, last_modified(records)),
                "cache": cache_json(repo, totals, str(ctx.cache_dir / repo.repository.id.hex())),
                "encryption": encryption_json(repo, keyfile_path(repo, ctx.keys_dir)),
            }
        )
    else:
        text = archive_stats_text(repo, record, totals, iec=ctx.iec)
        ctx.out.message(f"{SEPARATOR}\n{text}\n{SEPARATOR}")


# --- Ctrl-C ---------------------------------------------------------------------------------


class _Interrupt:
    """Borg's SigIntManager: the first SIGINT asks the backup to stop at the next
    item; a second one (not a bounce of the same key press) interrupts at once."""

    DEBOUNCE_NS = 20_000_000

    def __init__(self) -> None:
        self.first_ns: int | None = None

    def __call__(self) -> bool:
        return self.first_ns is not None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic_ns()
        if self.first_ns is None:
            self.first_ns = now
        elif now - self.first_ns >= self.DEBOUNCE_NS:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt


@contextmanager
def _ctrl_c_stops() -> Iterator[Callable[[], bool]]:
    """Install the two-step SIGINT handler for the duration (main thread only)."""
    flag = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, flag.handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
