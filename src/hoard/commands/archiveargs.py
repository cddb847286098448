"""Borg 1.4's archive filter options, shared by every command that selects archives.

``-P/--prefix`` (deprecated in Borg, kept for old scripts), ``-a/--glob-archives``,
``--sort-by``, ``--first``, ``--last`` and ``--consider-checkpoints`` become one
:class:`hoard.archive.catalog.Selection`, applied by
:func:`hoard.archive.catalog.select`, so ``list``, ``info``, ``delete``,
``prune``... pick the same archives for the same options.

The values are checked when the selection is built, not by argparse, so a
mistake is one line on stderr (argparse would print its usage first), with
Borg's wording: ``argument --sort-by: Invalid sort key: foo``. Placeholders
in ``--glob-archives`` and ``--prefix`` are expanded, as Borg does.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

from hoard.archive.catalog import SORT_KEYS, Selection
from hoard.archive.chunker import ChunkerParams
from hoard.archive.placeholders import PlaceholderContext, expand_placeholders
from hoard.commands.base import Context
from hoard.commands.version import BORG_COMPAT_VERSION
from hoard.errors import InputError
from hoard.objects.compression import DEFAULT_COMPRESSION, parse_compression


def add_archive_filter_arguments(
    parser: argparse.ArgumentParser, *, sort_by: bool = True, first_last: bool = True
) -> None:
    """Borg's "Archive filters" group (``define_archive_filters_group``)."""
    group = parser.add_argument_group(
        "Archive filters", "Archive filters can be applied to repository targets."
    )
    group.add_argument(
        "-P", "--prefix", dest="prefix", action="append", metavar="PREFIX",
        help="only consider archive names starting with this prefix. (deprecated)",
    )  # fmt: skip
    group.add_argument(
        "-a", "--glob-archives", dest="glob_archives", action="append", metavar="GLOB",
        help="only consider archive names matching the glob. sh: rules apply "
        '(without actually using the sh: prefix), see "hoard help patterns".',
    )  # fmt: skip
    if sort_by:
        group.add_argument(
            "--sort-by", dest="sort_by", default="timestamp", metavar="KEYS",
            help="Comma-separated list of sorting keys; valid keys are: "
            f"{', '.join(SORT_KEYS)}; default is: timestamp",
        )  # fmt: skip
    if first_last:
        group.add_argument(
            "--first", dest="first", metavar="N",
            help="consider first N archives after other filters were applied",
        )  # fmt: skip
        group.add_argument(
            "--last", dest="last", metavar="N",
            help="consider last N archives after other filters were applied",
        )  # fmt: skip


def add_consider_checkpoints_argument(parser: argparse.ArgumentParser) -> None:
    """``--consider-checkpoints`` (list, mount, diff...): show checkpoint archives too."""
    parser.add_argument(
        "--consider-checkpoints", action="store_true", dest="consider_checkpoints",
        help="Show checkpoint archives in the repository contents list (default: hidden).",
    )  # fmt: skip


def filters_given(args: argparse.Namespace) -> bool:
    """True if -P, -a, --first or --last was given (Borg: select archives, not the repository)."""
    names = ("prefix", "glob_archives", "first", "last")
    return any(getattr(args, name, None) is not None for name in names)


def archive_selection(
    ctx: Context, args: argparse.Namespace, *, consider_checkpoints: bool | None = None
) -> Selection:
    """The Selection the options describe; InputError (one line) for a bad value.

    ``consider_checkpoints`` overrides the option (Borg's ``info`` and
    ``delete`` always consider checkpoints when filtering).
    """
    prefix = _only_one(args, "prefix", "-P/--prefix")
    glob = _only_one(args, "glob_archives", "-a/--glob-archives")
    if prefix is not None and glob is not None:
        raise InputError("argument -a/--glob-archives: not allowed with argument -P/--prefix")
    first = _positive(args, "first")
    last = _positive(args, "last")
    if first is not None and last is not None:
        raise InputError("argument --last: not allowed with argument --first")
    if prefix is not None:
        glob = expand_archive_name(ctx, prefix) + "*"
    elif glob is not None:
        glob = expand_archive_name(ctx, glob)
    if consider_checkpoints is None:
        consider_checkpoints = bool(getattr(args, "consider_checkpoints", False))
    return Selection(
        glob=glob,
        sort_by=check_sort_keys(getattr(args, "sort_by", "timestamp")),
        first=first,
        last=last,
        consider_checkpoints=consider_checkpoints,
    )


def check_sort_keys(text: str) -> str:
    """Borg's SortBySpec: comma-separated keys from SORT_KEYS."""
    for token in text.split(","):
        if token not in SORT_KEYS:
            raise InputError(f"argument --sort-by: Invalid sort key: {token}")
    return text


def expand_archive_name(ctx: Context, text: str) -> str:
    """``text`` with Borg's placeholders ({hostname}, {now}...) expanded.

    The host and user are looked up only when ``text`` has a placeholder.
    """
    if "{" not in text and "}" not in text:
        return text
    places = PlaceholderContext.from_system(ctx.now(), borg_version=BORG_COMPAT_VERSION)
    return expand_placeholders(text, places)


def _only_one(args: argparse.Namespace, dest: str, option: str) -> str | None:
    values: list[str] | None = getattr(args, dest, None)
    if not values:
        return None
    if len(values) > 1:
        raise InputError(f"argument {option}: There can be only one.")
    return values[0]


def _positive(args: argparse.Namespace, dest: str) -> int | None:
    text: str | None = getattr(args, dest, None)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"argument --{dest}: invalid int value: {text!r}") from None
    if value <= 0:
        raise InputError(f"argument --{dest}: A positive integer is required: {text}")
    return value


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


def parse_timestamp(text: str) -> datetime:
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


def add_chunking_arguments(group: argparse._ActionsContainer) -> None:
    """``--chunker-params`` and ``-C/--compression``, for every command that
    stores file contents (``create``, ``import-tar``)."""
    group.add_argument(
        "--chunker-params",
        type=ChunkerParams.parse,
        default=ChunkerParams.parse("default"),
        metavar="PARAMS",
    )
    group.add_argument(
        "-C",
        "--compression",
        type=parse_compression,
        default=DEFAULT_COMPRESSION,
        metavar="COMPRESSION",
    )
