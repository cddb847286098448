"""``hoard create``: back up paths into a new archive.

Borg 1.4's command line and behaviour: placeholders in the archive name and
``--comment``, the include/exclude options, ``--list``/``--filter`` status
lines, ``--stats``/``--json``, ``-`` for standard input, ``--dry-run``
(which, as in Borg, does not even open the repository, so it cannot write
to it), Ctrl-C (the first one stops the backup at the next item or chunk,
storing a checkpoint archive of what is done, exit code 2; a second one
interrupts at once).

Files the files cache knows unchanged are not read (``U``); the cache is
saved only after the archive record is stored. Every
``--checkpoint-interval`` seconds a checkpoint archive ``NAME.checkpoint``
of what is done so far replaces the previous one; once the archive is
stored, the checkpoints of its name are deleted (docs/design/checkpoints.md).

The backup holds a shared repository lock, so backups from several clients
run at the same time; the archive name is checked before the walk and again
just before the archive record is stored.
"""

from __future__ import annotations

import argparse
import grp
import io
import logging
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import FrameType
from typing import IO

from hoard.archive.catalog import exists
from hoard.archive.checkpoints import CheckpointSeries
from hoard.archive.chunker import ChunkerParams, make_chunker
from hoard.archive.create import (
    Checkpointing,
    CreateOptions,
    Creator,
    StreamMeta,
    archive_path,
)
from hoard.archive.filepool import FilePool
from hoard.archive.filescache import FilesCache, FilesCacheMode
from hoard.archive.filework import ReaderSetup
from hoard.archive.metadata import ReadOptions, group_id, user_id
from hoard.archive.patterns import PatternMatcher
from hoard.archive.pipeline import ChunkPipeline
from hoard.archive.placeholders import expand_placeholders
from hoard.archive.record import ArchiveRecord, ArchiveStats
from hoard.commands.archiveargs import add_chunking_arguments, parse_timestamp
from hoard.commands.base import Context
from hoard.commands.patternargs import add_pattern_arguments, create_matcher
from hoard.commands.repo import (
    OpenRepository,
    host_identity,
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
    format_file_size,
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
    HoardWarning,
    InputError,
    InvalidArchivePath,
    LockLost,
    PacksLostWarning,
    UsageError,
)
from hoard.objects.compression import CompressionSpec
from hoard.repository.lock import Lock
from hoard.storage.location import Location

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
run), M (modified) and U (unchanged: known to the files cache, not read);
--filter=AME shows only the given letters."""

FILTER_CHARS = set("AMUCEdbchsfix-?")


def _filter(text: str) -> str:
    bad = set(text) - FILTER_CHARS
    if bad:
        raise argparse.ArgumentTypeError(f"invalid status characters: {''.join(sorted(bad))}")
    return text


def _interval(text: str) -> float:
    """--checkpoint-interval: seconds, 0 for checkpoints only on Ctrl-C."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r} (seconds, 0 or more)")
    return value


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
        "--quick-stats",
        action="store_true",
        help="print only archive statistics, skipping repository-wide statistics",
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
        type=parse_timestamp,
        default=None,
        metavar="TIMESTAMP",
        help="the archive's start time (UTC yyyy-mm-ddThh:mm:ss) or a reference file",
    )
    ar.add_argument(
        "-c",
        "--checkpoint-interval",
        type=_interval,
        default=1800,
        metavar="SECONDS",
        help="write a checkpoint every SECONDS seconds (default: 1800; 0: only on Ctrl-C)",
    )
    add_chunking_arguments(ar)


# --- running --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """The command line, checked and converted once by :func:`_request` before
    anything is opened, so the helpers below get typed values and none of them
    depends on argparse's attribute names.

    ``--sparse``, ``--nobirthtime`` and ``--no-cache-sync`` are accepted for
    Borg's command lines and change nothing, so they have no field.
    """

    location: Location
    name: str
    """``location.archive``, known to be there (placeholders already expanded)."""
    comment: str
    """Placeholders expanded, as Borg does."""
    matcher: PatternMatcher
    paths: tuple[str, ...]
    """The PATH arguments, then the ``R`` roots of pattern files."""
    paths_from_stdin: bool
    paths_from_command: bool
    content_from_command: bool
    paths_delimiter: bytes
    stream: StreamMeta | None
    """Set for ``-`` or --content-from-command, so a bad --stdin-* fails up front."""
    files_cache_mode: FilesCacheMode
    """``disabled`` when the input is a stream (``stream`` is set): a stream
    has no file whose state the cache could know."""
    timestamp: datetime | None
    """None: the archive's time is taken once the repository is open."""
    chunker_params: ChunkerParams
    compression: CompressionSpec
    checkpoint_interval: float
    options: CreateOptions
    """What shapes the archive, all but ``skip`` (which needs the open
    repository: see :func:`_options`)."""
    output_list: bool
    list_filter: frozenset[str] | None
    """None: --list shows every status."""
    stats: bool
    quick_stats: bool
    """The archive's figures without the repository-wide ones (Borg 1.4)."""
    json: bool

    @property
    def dry_run(self) -> bool:
        return self.options.dry_run


def run(ctx: Context, args: argparse.Namespace) -> None:
    request = _request(ctx, args)
    with _ctrl_c_stops() as interrupted:
        if request.dry_run:
            _dry_run(ctx, request, interrupted)
            return
        with (
            open_repository(
                ctx, request.location, operation="write", compression=request.compression
            ) as repo,
            command_lock(ctx, repo.repository.storage, exclusive=False) as lock,
        ):
            guard = _LockGuard(lock if isinstance(lock, Lock) else None)
            _create(ctx, request, repo, guard.stopping(interrupted), guard)


def _request(ctx: Context, args: argparse.Namespace) -> CreateRequest:
    """The only reader of ``args``: what the command line can get wrong fails
    here, before the repository is opened (no passphrase prompt, no lock), in
    the order of these checks, so of two mistakes the same one is reported.

    The environment (BORG_FILES_CACHE_TTL, HOARD_WORKERS) is checked later,
    where it is used: after the repository is opened, unless --dry-run.
    """
    location = repository_location(ctx, args.location)
    if not location.archive:
        raise InputError("create needs an archive name: REPOSITORY::ARCHIVE")
    matcher, roots = create_matcher(args)
    paths = (*args.paths, *roots)
    if (args.content_from_command or args.paths_from_command) and not args.paths:
        raise UsageError("No command given.")  # Borg's words
    if not paths and not args.paths_from_stdin:
        raise InputError("create needs at least one PATH (or R lines in a patterns file)")
    if args.paths_from_stdin and paths:
        raise InputError("--paths-from-stdin takes no PATH")
    commands = args.content_from_command or args.paths_from_command  # PATHs are its argv
    if not commands and "-" in paths and paths != ("-",):
        raise InputError("'-' (standard input) must be the only PATH")
    files_cache_mode = FilesCacheMode.parse(args.files_cache)  # a bad one fails even for a stream
    comment = expand_placeholders(args.comment, placeholder_context(ctx))
    stream = None
    if args.content_from_command or paths == ("-",):  # "-" alone, as a PATH or an R root
        stream = _stream_meta(
            name=args.stdin_name, user=args.stdin_user, group=args.stdin_group, mode=args.stdin_mode
        )
        files_cache_mode = FilesCacheMode.parse("disabled")
    return CreateRequest(
        location=location,
        name=location.archive,
        comment=comment,
        matcher=matcher,
        paths=paths,
        paths_from_stdin=args.paths_from_stdin,
        paths_from_command=args.paths_from_command,
        content_from_command=args.content_from_command,
        paths_delimiter=args.paths_delimiter,
        stream=stream,
        files_cache_mode=files_cache_mode,
        timestamp=args.timestamp,
        chunker_params=args.chunker_params,
        compression=args.compression,
        checkpoint_interval=args.checkpoint_interval,
        options=CreateOptions(
            read=ReadOptions(
                numeric_ids=args.numeric_ids,
                atime=args.atime and not args.noatime,
                ctime=not args.noctime,
                flags=not args.noflags,
                acls=not args.noacls,
                xattrs=not args.noxattrs,
            ),
            one_file_system=args.one_file_system,
            exclude_caches=args.exclude_caches,
            exclude_if_present=tuple(os.fsencode(n) for n in args.exclude_if_present),
            keep_exclude_tags=args.keep_exclude_tags,
            exclude_nodump=args.exclude_nodump,
            read_special=args.read_special,
            dry_run=args.dry_run,
        ),
        output_list=args.output_list,
        list_filter=frozenset(args.filter) if args.filter else None,
        stats=args.stats,
        quick_stats=args.quick_stats,
        json=args.json,
    )


@dataclass(frozen=True)
class _LockGuard:
    """The backup's repository lock (None with --bypass-lock), watched while it runs.

    A lost lock (break-lock, or another client judged it stale) stops the
    backup: between items and chunks when the refresh thread noticed it, and
    at the latest by the check in the storage before each checkpoint record
    and before the archive record, so nothing written after the loss is
    committed. An exclusive holder (compact, check --repair) may have run
    meanwhile and removed chunks this backup deduplicated against.
    """

    lock: Lock | None

    def stopping(self, interrupted: Callable[[], bool]) -> Callable[[], bool]:
        """``interrupted`` for the walker: also raises LockLost once the refresh found it."""

        def poll() -> bool:
            if self.lock is not None and self.lock.lost:
                self.lock.verify()
            return interrupted()

        return poll

    def verify(self) -> None:
        """Before committing: the lock is still ours (asked of the storage), else LockLost."""
        if self.lock is not None:
            self.lock.verify()


def _create(
    ctx: Context,
    request: CreateRequest,
    repo: OpenRepository,
    interrupted: Callable[[], bool],
    guard: _LockGuard,
) -> None:
    if exists(repo.records(), request.name):
        raise ArchiveAlreadyExists(request.name)
    _audit_packs(ctx, repo)
    timing = _Timing(request.timestamp or datetime.now(UTC), time.monotonic())
    checkpoints = CheckpointSeries(
        repo.objects,
        request.name,
        lambda name, root, stats: _record(ctx, request, name, timing, root, stats, checkpoint=True),
        verify=guard.verify,
        records=repo.records,
    )
    try:
        root, stats, files_cache = _backup(ctx, request, repo, interrupted, checkpoints)
        records = repo.records()
        if exists(records, request.name):  # another client took the name meanwhile
            raise ArchiveAlreadyExists(request.name)
        guard.verify()
    except LockLost as lost:
        raise LockLost(lost.where, lost.what, checkpoints.aborted_text()) from None
    record = _record(ctx, request, request.name, timing, root, stats)
    record.id = repo.objects.put_archive(record.encode())
    _save_files_cache(ctx, files_cache)
    gone = checkpoints.remove(records)
    _report(ctx, request, repo, record, [*(r for r in records if r.id not in gone), record])


def _audit_packs(ctx: Context, repo: OpenRepository) -> None:
    """Before deduplicating against anything: forget the index entries of
    packs that are missing or truncated (one listing of ``packs/``), so this
    backup stores that data again instead of referencing lost copies."""
    audit = repo.repository.audit_packs()
    lost = [*audit.missing, *audit.truncated]
    if lost:
        shown = ", ".join(lost[:3]) + (f" and {len(lost) - 3} more" if len(lost) > 3 else "")
        ctx.warn(PacksLostWarning(len(lost), shown))


@dataclass(frozen=True)
class _Timing:
    start: datetime
    """The archive's time (--timestamp or now)."""
    began: float
    """time.monotonic() at the start: the duration is measured with it."""


def _record(
    ctx: Context,
    request: CreateRequest,
    name: str,
    timing: _Timing,
    root: list[bytes],
    stats: ArchiveStats,
    *,
    checkpoint: bool = False,
) -> ArchiveRecord:
    start_ns = int(timing.start.timestamp() * 1e9)
    hostname, username = host_identity(ctx)
    return ArchiveRecord(
        name=name,
        time=start_ns,
        end=start_ns + int((time.monotonic() - timing.began) * 1e9),
        hostname=hostname,
        username=username,
        root=root,
        cmdline=ctx.cmdline,
        cwd=_working_directory(),
        comment=request.comment,
        chunker=str(request.chunker_params),
        compression=str(request.compression),
        stats=stats,
        checkpoint=checkpoint,
    )


def _working_directory() -> str:
    """Borg's ``cwd`` of the archive: where relative PATHs were taken from."""
    try:
        return os.getcwd()
    except OSError:  # removed meanwhile: the archive is still good
        return ""


def _files_cache(
    ctx: Context, mode: FilesCacheMode, repo: OpenRepository, start_ns: int
) -> FilesCache:
    """The files cache of this repository; BORG_FILES_CACHE_TTL and
    BORG_FILES_CACHE_SUFFIX are checked here, once the repository is open."""
    text = ctx.getenv("FILES_CACHE_TTL") or "20"
    try:
        ttl = int(text)
    except ValueError:
        raise InputError(f"BORG_FILES_CACHE_TTL must be a whole number: {text!r}") from None
    suffix = ctx.getenv("FILES_CACHE_SUFFIX") or ""
    if "/" in suffix:
        raise InputError(f"BORG_FILES_CACHE_SUFFIX must not contain '/': {suffix!r}")
    secret = repo.key.id_key or repo.repository.id
    repo_id = repo.repository.id
    return FilesCache.load(
        ctx.cache_dir, repo_id, secret, mode, start_ns=start_ns, ttl=ttl, suffix=suffix
    )


def _save_files_cache(ctx: Context, files_cache: FilesCache, *, checkpoint: bool = False) -> None:
    try:
        files_cache.save(checkpoint=checkpoint)
    except OSError as exc:
        ctx.warn(HoardWarning(f"files cache not saved: {exc}"))


def _options(ctx: Context, request: CreateRequest, repo: OpenRepository | None) -> CreateOptions:
    """The request's options with ``skip``: what to skip depends on the open repository."""
    return replace(request.options, skip=_skipped_dirs(ctx, repo))


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
    request: CreateRequest,
    repo: OpenRepository,
    interrupted: Callable[[], bool],
    checkpoints: CheckpointSeries,
) -> tuple[list[bytes], ArchiveStats, FilesCache]:
    """Walk and store; on Ctrl-C, keep what was stored (indexed) for the next run."""
    files_cache = _files_cache(ctx, request.files_cache_mode, repo, time.time_ns())
    options = _options(ctx, request, repo)
    pipeline = ChunkPipeline(repo.objects)
    pool = _file_pool(ctx, request.chunker_params, repo, options)
    creator = Creator(
        repo.objects,
        pipeline,
        make_chunker(request.chunker_params, repo.key.chunker_key),
        request.matcher,
        options,
        report=_reporter(ctx, request),
        warn=ctx.warn,
        progress=_progress(ctx) if ctx.progress else None,
        interrupted=interrupted,
        files_cache=files_cache,
        stored_size=repo.repository.stored_size,
        checkpoints=Checkpointing(request.checkpoint_interval, checkpoints.store),
        file_pool=pool,
    )
    try:
        root = _walk(ctx, creator, request)
        if interrupted():  # after the last item: everything is a checkpoint
            checkpoints.store(root, creator.stats)
            _save_files_cache(ctx, files_cache, checkpoint=True)
            raise BackupInterrupted()
    except BackupInterrupted:
        _close(pipeline, pool, cancel=True)
        repo.objects.flush()  # a rerun finds these chunks and does not send them again
        raise
    except BaseException:  # LockLost (nothing more is written: the lock is gone), failures
        _close(pipeline, pool, cancel=True, keep=False)
        raise
    finally:
        _close(pipeline, pool)
        read = creator.read_stats
        logger.debug(
            "Files read: %d bytes in %d reads (%d bytes of holes skipped).",
            read.bytes_read,
            read.reads,
            read.hole_bytes,
        )
    checkpoints.verify()  # the final flush writes an index file
    repo.objects.flush()
    return root, creator.stats, files_cache


def _close(
    pipeline: ChunkPipeline, pool: FilePool | None, *, cancel: bool = False, keep: bool = True
) -> None:
    """Stop the file pool and the chunk pipeline (``cancel``: drop what is not started;
    ``keep`` False: the workers stop without flushing, as this process's own
    pending packs are dropped after a failure)."""
    try:
        if pool is not None:
            pool.close(cancel=cancel, keep=keep)
    finally:
        pipeline.close(cancel=cancel)


def _file_pool(
    ctx: Context, chunker: ChunkerParams, repo: OpenRepository, options: CreateOptions
) -> FilePool | None:
    """The worker processes that read small files (HOARD_WORKERS of them, default
    one per core; 0: every file is read on the walker thread)."""
    workers = _workers(ctx)
    if workers == 0 or options.dry_run:
        return None
    setup = ReaderSetup(
        key=repo.key,
        compression=repo.objects.compression,
        chunker=chunker,
        read=options.read,
        sparse=options.sparse,
    )
    scratch = ctx.cache_dir / repo.repository.id.hex()
    return FilePool(repo.objects, setup, workers=None if workers < 0 else workers, scratch=scratch)


def _workers(ctx: Context) -> int:
    """HOARD_WORKERS: a count of file reader processes (0 for none); unset: one per core."""
    text = ctx.getenv("WORKERS")
    if text is None or not text.strip():
        return -1
    try:
        workers = int(text)
    except ValueError:
        workers = -1
    if not 0 <= workers <= 256:
        raise InputError(f"HOARD_WORKERS must be a number from 0 to 256, not {text!r}")
    return workers


def _dry_run(ctx: Context, request: CreateRequest, interrupted: Callable[[], bool]) -> None:
    """Walk and report without reading file contents or opening the repository (Borg)."""
    creator = Creator(
        None,
        None,
        None,
        request.matcher,
        _options(ctx, request, None),
        report=_reporter(ctx, request),
        warn=ctx.warn,
        interrupted=interrupted,
    )
    _walk(ctx, creator, request)
    if interrupted():
        raise BackupInterrupted()


def _walk(ctx: Context, creator: Creator, request: CreateRequest) -> list[bytes]:
    """The one backup this command line asks for; returns the root tree ids."""
    stream = request.stream
    if request.content_from_command:
        assert stream is not None  # _request builds it for every stream input
        if request.dry_run:  # Borg: the command is not run
            return creator.run_stream(io.BytesIO(), stream)
        with _command_stdout(ctx, request.paths) as stdout:
            return creator.run_stream(stdout, stream)
    if request.paths_from_command:
        with _command_stdout(ctx, request.paths) as stdout:
            return creator.run_items(split_paths(stdout, request.paths_delimiter))
    if request.paths_from_stdin:
        return creator.run_items(split_paths(sys.stdin.buffer, request.paths_delimiter))
    if request.paths == ("-",):
        assert stream is not None
        return creator.run_stream(sys.stdin.buffer, stream)
    return creator.run([os.fsencode(p) for p in request.paths])


def split_paths(stream: IO[bytes], delimiter: bytes) -> Iterator[bytes]:
    """The paths in ``stream``, separated by ``delimiter``; empty ones are skipped."""
    rest = b""
    while block := stream.read(65536):
        *complete, rest = (rest + block).split(delimiter)
        yield from (path for path in complete if path)
    if rest:
        yield rest


@contextmanager
def _command_stdout(ctx: Context, argv: Sequence[str]) -> Iterator[IO[bytes]]:
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


def _stream_meta(*, name: str, user: str, group: str, mode: int) -> StreamMeta:
    """--stdin-user/--stdin-group must exist here (Borg: "no such user")."""
    uid = user_id(user)
    if uid is None:
        raise HoardError(f"no such user: {user}")
    gid = group_id(group)
    if gid is None:
        raise HoardError(f"no such group: {group}")
    path = os.fsencode(name)
    try:
        archive_path(path, file=True)
    except InvalidArchivePath as exc:
        raise InputError(f"--stdin-name {exc}") from None
    return StreamMeta(path=path, mode=mode, uid=uid, gid=gid, user=user, group=group)


def _reporter(ctx: Context, request: CreateRequest) -> Callable[[str, bytes], None]:
    show = request.output_list
    wanted = request.list_filter

    def report(status: str, path: bytes) -> None:
        if show and (wanted is None or status in wanted):
            ctx.out.list_item(status, os.fsdecode(path))

    return report


def _progress(ctx: Context) -> Callable[[ArchiveStats, bytes], None]:
    def progress(stats: ArchiveStats, path: bytes) -> None:
        shown = os.fsdecode(path)
        sizes = (stats.original_size, stats.compressed_size, stats.deduplicated_size)
        o, c, d = (format_file_size(size, iec=ctx.iec) for size in sizes)
        ctx.out.progress(
            "archive_progress",
            f"{o} O {c} C {d} D {stats.nfiles} N {shown}",  # Borg's PROGRESS_FMT
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
    request: CreateRequest,
    repo: OpenRepository,
    record: ArchiveRecord,
    records: list[ArchiveRecord],
) -> None:
    if ctx.progress:
        ctx.out.progress("archive_progress", "", finished=True, type="archive_progress")
    if not (request.stats or request.quick_stats or request.json):
        return
    # --quick-stats: no repository-wide figures, which take a pass over every archive.
    totals = None if request.quick_stats else repository_totals(repo, records)
    if request.json:
        data = {
            "archive": archive_json(record),
            "repository": repository_json(repo, last_modified(records)),
            "encryption": encryption_json(repo, keyfile_path(repo, ctx.keys_dir)),
        }
        if totals is not None:
            data["cache"] = cache_json(repo, totals, str(ctx.cache_dir / repo.repository.id.hex()))
        ctx.out.json(data)
    else:
        text = archive_stats_text(repo, record, totals, iec=ctx.iec)
        ctx.out.message(f"{SEPARATOR}\n{text}\n{SEPARATOR}", topic="stats")


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
