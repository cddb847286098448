"""``hoard export-tar REPO::ARCHIVE FILE [PATH...]``: Borg 1.4's export-tar."""

from __future__ import annotations

import argparse
import bz2
import contextlib
import gzip
import logging
import lzma
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import IO, Any

import lz4.frame
import zstandard

from hoard.archive.catalog import find
from hoard.archive.extract import display_path
from hoard.archive.tarexport import FORMATS, TarExporter, TarOptions, compression_by_name
from hoard.commands.base import Context
from hoard.commands.patternargs import add_pattern_arguments, selection_matcher
from hoard.commands.repo import open_repository, repository_location
from hoard.errors import (
    CommandError,
    DamagedFileError,
    ExtractIncomplete,
    HoardWarning,
    IncludePatternNeverMatchedWarning,
    InputError,
)

logger = logging.getLogger(__name__)

NAME = "export-tar"
HELP = "create tarball from archive"
DESCRIPTION = """This command creates a tarball from an archive.

When giving '-' as the output FILE, hoard writes a tar stream to standard
output. By default (--tar-filter=auto) the compression follows the file
name: .tar.gz or .tgz (gzip), .tar.bz2 (bzip2), .tar.xz or .txz (xz),
.tar.zst or .tar.zstd (zstd), .tar.lz4 (lz4); anything else is an
uncompressed tar. --tar-filter CMD pipes the tar stream through a shell
command instead (e.g. "pigz -9"); --tar-filter=cat (or none) means no
compression.

--tar-format: GNU (the default, as Borg) or PAX. PAX adds what GNU tar
headers cannot hold: nanosecond mtime, atime and ctime, and extended
attributes (SCHILY.xattr, as GNU tar writes them). Borg's own BORG format
holds Borg's item metadata, which hoard does not have: use PAX.

Hard links are exported as tar hard links, the first member holding the
data. Sockets are left out (tar has no such type). A file with a damaged
chunk is exported with zeros in its place and reported.

Examples:
    hoard export-tar /path/to/repo::Monday Monday.tar.gz --exclude '*.so'
    hoard export-tar --tar-filter="gzip -9" repo::Monday Monday.tar.gz
    hoard export-tar repo::Monday - | tar -t"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="ARCHIVE", help="archive to export")
    parser.add_argument("tarfile", metavar="FILE", help='output tar file. "-" to write to stdout')
    parser.add_argument(
        "paths", metavar="PATH", nargs="*", help="paths to extract; patterns are supported"
    )
    parser.add_argument(
        "--tar-filter", default="auto", help="filter program to pipe data through (default: auto)"
    )
    parser.add_argument(
        "--list", dest="output_list", action="store_true", help="output verbose list of items"
    )
    parser.add_argument(
        "--tar-format",
        choices=("BORG", "PAX", "GNU"),
        default="GNU",
        help="select tar format: PAX or GNU (BORG is refused, see above)",
    )
    parser.add_argument(
        "--strip-components",
        type=int,
        default=0,
        metavar="NUMBER",
        help="Remove the specified number of leading path elements.",
    )
    add_pattern_arguments(parser, create=False)


def run(ctx: Context, args: argparse.Namespace) -> None:
    if args.tar_format not in FORMATS:
        raise InputError(
            "--tar-format=BORG holds Borg's own item metadata: hoard writes PAX or GNU"
        )
    location = repository_location(ctx, args.location)
    if not location.archive:
        raise InputError("export-tar needs an archive: REPOSITORY::ARCHIVE FILE")
    matcher = selection_matcher(args, args.paths)
    options = TarOptions(tar_format=args.tar_format, strip_components=args.strip_components)
    lister = _lister(ctx) if args.output_list else None
    with open_repository(ctx, location) as repo:
        record = find(repo.records(), location.archive)
        exporter = TarExporter(repo.objects, matcher, options, on_item=lister)
        with _output(ctx, args.tarfile, args.tar_filter) as out:
            stats = exporter.write(record.root, out)
    for path, name in stats.skipped_xattrs:
        ctx.warn(
            HoardWarning(
                f"{display_path(path)}: extended attribute {name!r} left out "
                "(tar needs UTF-8 names)"
            )
        )
    for path, why in stats.damaged:
        logger.error(DamagedFileError(os.fsdecode(path), why).get_message())
    for pattern in matcher.get_unmatched_include_patterns():
        ctx.warn(IncludePatternNeverMatchedWarning(str(pattern)))
    if stats.damaged:
        raise ExtractIncomplete(len({path for path, _ in stats.damaged}))


def _lister(ctx: Context) -> Callable[[bytes], None]:
    """Borg's --list: the bare path of each exported item on stderr."""

    def lister(path: bytes) -> None:
        ctx.out.message(display_path(path), topic="list")

    return lister


@contextlib.contextmanager
def _output(ctx: Context, target: str, tar_filter: str) -> Iterator[IO[bytes]]:
    """The (compressed) stream to write the tar into; a file that could not be
    written completely is removed, not left half-written."""
    raw: IO[bytes] = _StdoutWriter(ctx) if target == "-" else _open_file(target)  # type: ignore[assignment]
    try:
        with _filtered(raw, _filter_for(target, tar_filter)) as stream:
            yield stream
        raw.close()
    except BaseException:
        with contextlib.suppress(OSError):
            raw.close()
        if target != "-":
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise


def _open_file(target: str) -> IO[bytes]:
    try:
        return open(target, "wb")
    except OSError as exc:
        raise CommandError(f"cannot write {target}: {exc.strerror}") from None


def _filter_for(target: str, tar_filter: str) -> str | None:
    """The compression to use: a name from the suffix table, a command, or None."""
    if tar_filter == "auto":
        return compression_by_name(target)
    if tar_filter in ("cat", "none", ""):
        return None
    return f"!{tar_filter}"  # a user's shell command


@contextlib.contextmanager
def _filtered(raw: IO[bytes], how: str | None) -> Iterator[IO[bytes]]:
    if how is None:
        yield raw
    elif how.startswith("!"):
        yield from _through_command(raw, how[1:])
    else:
        with _compressor(how, raw) as stream:
            yield stream


def _compressor(name: str, raw: IO[bytes]) -> Any:
    """The library compressors stand in for Borg's gzip/bzip2/xz/zstd/lz4 programs."""
    if name == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)
    if name == "bzip2":
        return bz2.BZ2File(raw, mode="wb")
    if name == "xz":
        return lzma.LZMAFile(raw, mode="wb")
    if name == "zstd":
        return zstandard.ZstdCompressor().stream_writer(raw, closefd=False)
    return lz4.frame.LZ4FrameFile(raw, mode="wb")


def _through_command(raw: IO[bytes], command: str) -> Iterator[IO[bytes]]:
    """Pipe the tar stream through ``sh -c COMMAND``, whose output is the file
    (or, for ``-``, hoard's own standard output)."""
    target = None if isinstance(raw, _StdoutWriter) else raw.fileno()
    process = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, stdout=target)
    assert process.stdin is not None
    ended_early = False
    try:
        yield process.stdin
    except BrokenPipeError:
        ended_early = True  # the filter stopped reading: its status says why
    finally:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        rc = process.wait()
    if rc != 0:
        raise CommandError(f"--tar-filter {command!r} exited with status {rc}")
    if ended_early:
        raise CommandError(f"--tar-filter {command!r} ended before reading the whole tar stream")


class _StdoutWriter:
    """``-``: the tar stream through the command's output (binary stdout)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def write(self, data: bytes) -> int:
        self._ctx.out.print_bytes(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
