"""``hoard import-tar REPO::ARCHIVE FILE``: Borg 1.4's import-tar."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

import lz4.frame
import zstandard

from hoard.archive.catalog import exists
from hoard.archive.chunker import make_chunker
from hoard.archive.record import ArchiveRecord, ArchiveStats
from hoard.archive.tarexport import compression_by_name
from hoard.archive.tarimport import TarImporter
from hoard.commands.archiveargs import (
    add_chunking_arguments,
    expand_archive_name,
    parse_timestamp,
)
from hoard.commands.base import Context
from hoard.commands.repo import (
    OpenRepository,
    host_identity,
    open_repository,
    repository_location,
)
from hoard.commands.stats import (
    SEPARATOR,
    archive_json,
    archive_stats_text,
    encryption_json,
    keyfile_path,
    last_modified,
    repository_json,
    repository_totals,
)
from hoard.commands.with_lock import command_lock
from hoard.errors import ArchiveAlreadyExists, CommandError, HoardWarning, InputError

NAME = "import-tar"
HELP = "Create a backup archive from a tarball"
DESCRIPTION = """This command creates a backup archive from a tarball.

When giving '-' as path, hoard reads a tar stream from standard input.

By default (--tar-filter=auto) the decompression follows the file name:
.tar.gz or .tgz (gzip), .tar.bz2 (bzip2), .tar.xz or .txz (xz), .tar.zst
or .tar.zstd (zstd), .tar.lz4 (lz4); a plain .tar, and gzip, bzip2 and xz
streams from standard input, are recognised by their content. --tar-filter
CMD pipes the file through a shell command instead (e.g. "pigz -cd").

Everything tar carries is kept: names as they are (also non-UTF-8 ones),
owners, modes, hard links, symlinks, devices, FIFOs, and from PAX archives
nanosecond times and extended attributes (SCHILY.xattr). Members whose
name leaves the archive (with '..') are left out and reported; leading '/'
is removed, as GNU tar does.

--list shows one line per item with Borg's status letters (A file, d
directory, s symlink, h hard link, c/b device, f FIFO)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "location",
        metavar="ARCHIVE",
        help="name of archive to create (must be also a valid directory name)",
    )
    parser.add_argument(
        "tarfile", metavar="TARFILE", help='input tar file. "-" to read from stdin instead.'
    )
    parser.add_argument("--tar-filter", default="auto", help="filter program to pipe data through")
    parser.add_argument(
        "-s", "--stats", action="store_true", help="print statistics for the created archive"
    )
    parser.add_argument(
        "--list",
        dest="output_list",
        action="store_true",
        help="output verbose list of items (files, dirs, ...)",
    )
    parser.add_argument(
        "--json", action="store_true", help="output stats as JSON (implies --stats)"
    )
    parser.add_argument(
        "--ignore-zeros", action="store_true", help="ignore zero-filled blocks in the input tarball"
    )
    parser.add_argument(
        "--comment", default="", metavar="COMMENT", help="add a comment text to the archive"
    )
    parser.add_argument(
        "--timestamp",
        type=parse_timestamp,
        default=None,
        metavar="TIMESTAMP",
        help="manually specify the archive creation date/time (UTC, yyyy-mm-ddThh:mm:ss format)",
    )
    add_chunking_arguments(parser)


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    if not location.archive:
        raise InputError("import-tar needs REPOSITORY::ARCHIVE TARFILE")
    name = expand_archive_name(ctx, location.archive)
    started = args.timestamp or datetime.now(UTC)
    began = time.monotonic()
    lister = _lister(ctx) if args.output_list else None
    with (
        open_repository(
            ctx, location.omit_archive(), operation="write", compression=args.compression
        ) as repo,
        command_lock(ctx, repo.repository.storage, exclusive=False),
    ):
        if exists(repo.records(), name):
            raise ArchiveAlreadyExists(name)
        chunker = make_chunker(args.chunker_params, repo.key.chunker_key)
        importer = TarImporter(repo.objects, chunker, on_item=lister)
        metadata_before = repo.objects.metadata_added
        with _input(args.tarfile, args.tar_filter) as stream:
            root = importer.run(stream, ignore_zeros=args.ignore_zeros)
        stats = importer.stats
        for member, why in stats.refused:
            ctx.warn(HoardWarning(f"{member}: left out ({why})"))
        hostname, username = host_identity(ctx)
        start_ns = int(started.timestamp() * 1e9)
        record = ArchiveRecord(
            name=name,
            time=start_ns,
            end=start_ns + int((time.monotonic() - began) * 1e9),
            hostname=hostname,
            username=username,
            root=root,
            cmdline=ctx.cmdline,
            cwd=os.getcwd(),
            comment=args.comment,
            chunker=str(args.chunker_params),
            compression=str(args.compression),
            stats=ArchiveStats(
                nfiles=stats.nfiles,
                nchunks=stats.nchunks,
                original_size=stats.original_size,
                compressed_size=stats.compressed_size,
                deduplicated_size=stats.new_data + repo.objects.metadata_added - metadata_before,
            ),
        )
        records = repo.records()
        if exists(records, name):  # another client took the name meanwhile
            raise ArchiveAlreadyExists(name)
        record.id = repo.objects.put_archive(record.encode())
        if args.stats or args.json:
            _report(ctx, args, repo, record, [*records, record])


def _report(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    record: ArchiveRecord,
    records: list[ArchiveRecord],
) -> None:
    totals = repository_totals(repo, records)
    if args.json:
        ctx.out.json(
            {
                "archive": archive_json(record),
                "repository": repository_json(repo, last_modified(records)),
                "encryption": encryption_json(repo, keyfile_path(repo, ctx.keys_dir)),
            }
        )
    else:
        text = archive_stats_text(repo, record, totals, iec=ctx.iec)
        ctx.out.message(f"{SEPARATOR}\n{text}\n{SEPARATOR}", topic="stats")


def _lister(ctx: Context) -> Callable[[str, str], None]:
    def lister(status: str, name: str) -> None:
        ctx.out.message(f"{status} {name}", topic="list")

    return lister


@contextlib.contextmanager
def _input(source: str, tar_filter: str) -> Iterator[IO[bytes]]:
    """The (decompressed) tar stream of ``source`` (``-``: standard input)."""
    raw: IO[bytes] = sys.stdin.buffer if source == "-" else _open(source)
    try:
        how = _filter_for(source, tar_filter)
        if how is None:
            yield raw
        elif how.startswith("!"):
            yield from _through_command(raw, how[1:])
        else:
            with _decompressor(how, raw) as stream:
                yield stream
    finally:
        if source != "-":
            raw.close()


def _open(source: str) -> IO[bytes]:
    try:
        return open(source, "rb")
    except FileNotFoundError:
        raise CommandError(f"input file does not exist: {source}") from None
    except OSError as exc:
        raise CommandError(f"cannot read {source}: {exc.strerror}") from None


def _filter_for(source: str, tar_filter: str) -> str | None:
    if tar_filter == "auto":
        found = compression_by_name(source)
        # gzip, bzip2 and xz are recognised by tarfile itself ("r|*"): only
        # the two it does not know need a decompressor here
        return found if found in ("zstd", "lz4") else None
    if tar_filter in ("cat", "none", ""):
        return None
    return f"!{tar_filter}"


def _decompressor(how: str, raw: IO[bytes]) -> Any:
    if how == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=False)
    return lz4.frame.LZ4FrameFile(raw, mode="rb")


def _through_command(raw: IO[bytes], command: str) -> Iterator[IO[bytes]]:
    process = subprocess.Popen(command, shell=True, stdin=raw, stdout=subprocess.PIPE)
    assert process.stdout is not None
    try:
        yield process.stdout
    finally:
        process.stdout.close()
        rc = process.wait()
    if rc not in (0, -13):  # -13: SIGPIPE, the tar ended before the filter's output
        raise CommandError(f"--tar-filter {command!r} exited with status {rc}")
