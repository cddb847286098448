"""``hoard extract``: restore an archive (or part of it) into the current directory."""

from __future__ import annotations

import argparse
import logging
import os

from hoard.archive.catalog import find
from hoard.archive.extract import (
    Damage,
    ExtractOptions,
    Extractor,
    Lister,
    Progress,
    display_path,
)
from hoard.archive.metadata import RestoreOptions
from hoard.commands.base import Context
from hoard.commands.patternargs import add_pattern_arguments, selection_matcher
from hoard.commands.repo import open_repository, repository_location
from hoard.errors import (
    DamagedFileError,
    ExtractIncomplete,
    IncludePatternNeverMatchedWarning,
    InputError,
)

logger = logging.getLogger("hoard")

NAME = "extract"
HELP = "Extract archive contents"
DESCRIPTION = """This command extracts the contents of an archive into the current
directory. By default the entire archive is extracted, but a subset of files
and directories can be selected by passing a list of PATHs as arguments (pp:
path-prefix patterns by default; other pattern styles work too). The
selection can be further restricted with --exclude and --pattern.

By using --dry-run, you can do all extraction steps except actually writing
the output data: reading metadata and data chunks from the repository,
checking their authenticity, decrypting and decompressing.

When parent directories are not extracted (because of a PATH selection or
--strip-components), their metadata (owner, permissions, times) cannot be
restored; they are created with default permissions.

A damaged repository does not stop the extraction: a file whose chunks are
missing or damaged is restored with the lost byte ranges zero-filled (holes
with --sparse) and named in an error line with those ranges; a directory
whose tree cannot be read is named too, and everything else is restored.
The command then exits with an error (2). This client also stops trusting
the damaged objects, so its next create stores that data again."""


def _components(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--list", dest="output_list", action="store_true",
        help="output verbose list of items (files, dirs, ...)",
    )  # fmt: skip
    parser.add_argument(
        "-n", "--dry-run", dest="dry_run", action="store_true",
        help="do not actually change any files",
    )  # fmt: skip
    parser.add_argument(
        "--numeric-owner", dest="numeric_ids", action="store_true",
        help="deprecated, use --numeric-ids instead",
    )  # fmt: skip
    parser.add_argument(
        "--numeric-ids", dest="numeric_ids", action="store_true",
        help="only obey numeric user and group identifiers",
    )  # fmt: skip
    parser.add_argument(
        "--nobsdflags", dest="noflags", action="store_true",
        help="deprecated, use --noflags instead",
    )  # fmt: skip
    parser.add_argument(
        "--noflags", dest="noflags", action="store_true",
        help="do not extract/set flags (e.g. NODUMP, IMMUTABLE)",
    )  # fmt: skip
    parser.add_argument("--noacls", action="store_true", help="do not extract/set ACLs")
    parser.add_argument("--noxattrs", action="store_true", help="do not extract/set xattrs")
    parser.add_argument("--stdout", action="store_true", help="write all extracted data to stdout")
    parser.add_argument(
        "--sparse", action="store_true",
        help="create holes in output sparse file from all-zero chunks",
    )  # fmt: skip
    parser.add_argument("location", metavar="ARCHIVE", help="archive to extract")
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="paths to extract; patterns are supported"
    )
    add_pattern_arguments(parser, create=False)
    parser.add_argument(
        "--strip-components", type=_components, default=0, metavar="NUMBER",
        help="Remove the specified number of leading path elements. "
        "Paths with fewer elements will be silently skipped.",
    )  # fmt: skip


def _options(args: argparse.Namespace) -> ExtractOptions:
    return ExtractOptions(
        restore=RestoreOptions(
            numeric_ids=args.numeric_ids,
            acls=not args.noacls,
            xattrs=not args.noxattrs,
            flags=not args.noflags,
        ),
        sparse=args.sparse,
        strip_components=args.strip_components,
        dry_run=args.dry_run,
        stdout=args.stdout,
    )


def _progress(ctx: Context) -> Progress:
    """Borg's ``progress_percent`` records (msgid ``extract``) / live line."""

    def progress(done: int, total: int, path: bytes) -> None:
        shown = display_path(path)
        percent = 100.0 * done / total if total else 100.0
        ctx.out.progress(
            "extract",
            f"{percent:5.1f}% Extracting: {shown}",
            type="progress_percent",
            current=done,
            total=total,
            info=[shown],
        )

    return progress


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    if not location.archive:
        raise InputError("extract needs an archive: REPOSITORY::ARCHIVE")
    # argv is str decoded with surrogateescape: fsencode gives back the bytes typed.
    matcher = selection_matcher(args, [os.fsencode(p) for p in args.paths])
    with open_repository(ctx, location) as repo:
        record = find(repo.records(), location.archive)
        extractor = Extractor(
            repo.objects,
            matcher,
            _options(args),
            sink=ctx.out.print_bytes if args.stdout else None,
            lister=_lister(ctx) if args.output_list else None,
            warn=ctx.warn,
            on_damage=_report_damage,
            progress=_progress(ctx) if ctx.progress else None,
        )
        stats = extractor.run(record.root)
    if ctx.progress:
        ctx.out.progress("extract", "", finished=True, type="progress_percent")
    for pattern in matcher.get_unmatched_include_patterns():
        ctx.warn(IncludePatternNeverMatchedWarning(str(pattern)))
    if stats.damaged:
        raise ExtractIncomplete(len(stats.damaged))


def _report_damage(damage: Damage) -> None:
    """One error line per damaged item, as it is finished (the run goes on)."""
    reasons = "; ".join(damage.reasons[:3])
    if len(damage.reasons) > 3:
        reasons += f"; and {len(damage.reasons) - 3} more damaged objects"
    error = DamagedFileError(display_path(damage.path) or ".", damage.describe_lost(), reasons)
    logger.error(error.get_message(), extra={"msgid": error.msgid})


def _lister(ctx: Context) -> Lister:
    """Borg's extract --list prints the bare path (no status letter) on stderr."""

    def lister(path: bytes) -> None:
        ctx.out.message(display_path(path))

    return lister
