"""``hoard diff REPO::ARCHIVE1 ARCHIVE2 [PATH...]``: Borg 1.4's diff.

The comparison is ``hoard.archive.diff``; here are Borg's options, its
output lines (``{changes:<19} {path}``) or JSON lines, and its sorting.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from hoard.archive.catalog import find
from hoard.archive.diff import ArchiveDiff, DiffOptions, ItemDiff
from hoard.archive.formatter import remove_surrogates
from hoard.commands.base import Context
from hoard.commands.patternargs import add_pattern_arguments, selection_matcher
from hoard.commands.repo import open_repository, repository_location
from hoard.commands.stats import format_file_size, format_time
from hoard.errors import IncludePatternNeverMatchedWarning, InputError, UsageError

logger = logging.getLogger(__name__)

NAME = "diff"
HELP = "find differences in archive contents"
DESCRIPTION = """This command finds differences (file contents, user/group/mode, times)
between archives.

A repository location and an archive name must be specified for
REPO::ARCHIVE1. ARCHIVE2 is just another archive name in the same repository
(no repository location allowed).

For each matching item in both archives, the changes are reported: content
changes as the bytes of the chunks added and removed (from chunk ids when
both archives were made with the same chunker parameters, else by comparing
the bytes: "modified"), "added SIZE" and "removed SIZE" for items that only
one archive has, "changed link", and metadata changes inline as
"[old -> new]" (owner, mode, ctime, mtime); --content-only leaves those out.
Directories whose contents are the same in both archives are skipped
without being read.

--sort-by FIELDS sorts by a comma-separated list of fields, applied stably
from last to first; prefix a field with ">" for descending order. Fields:
path, size_added, size_removed, size_diff, size (in ARCHIVE2), user, group,
uid, gid, ctime, mtime (of the item in ARCHIVE2, else ARCHIVE1), ctime_diff,
mtime_diff. --sort is the same as --sort-by=path.

For more help on include/exclude patterns, see the "hoard help patterns" command output."""

SORT_FIELDS = (
    "path",
    "size_added",
    "size_removed",
    "size_diff",
    "size",
    "user",
    "group",
    "uid",
    "gid",
    "ctime",
    "mtime",
    "ctime_diff",
    "mtime_diff",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "location", metavar="REPO::ARCHIVE1", help="repository location and ARCHIVE1 name"
    )
    parser.add_argument(
        "archive2", metavar="ARCHIVE2", help="ARCHIVE2 name (no repository location allowed)"
    )
    parser.add_argument(
        "paths",
        metavar="PATH",
        nargs="*",
        help="paths of items inside the archives to compare; patterns are supported",
    )
    parser.add_argument(
        "--numeric-ids",
        "--numeric-owner",
        dest="numeric_ids",
        action="store_true",
        help="only consider numeric user and group identifiers",
    )
    parser.add_argument(
        "--same-chunker-params", action="store_true", help="Override check of chunker parameters."
    )
    parser.add_argument(
        "--sort",
        action="store_true",
        help="Sort the output by path (deprecated, use --sort-by=path).",
    )
    parser.add_argument("--sort-by", metavar="FIELDS", help="Advanced sorting (see above)")
    parser.add_argument(
        "--content-only",
        action="store_true",
        help="Only compare differences in content (exclude metadata differences)",
    )
    parser.add_argument("--json-lines", action="store_true", help="Format output as JSON Lines.")
    add_pattern_arguments(parser, create=False)


def run(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    if not location.archive:
        raise InputError("diff needs REPO::ARCHIVE1 ARCHIVE2")
    if "::" in args.archive2 or "/" in args.archive2:
        raise InputError(f"ARCHIVE2 is an archive name, not a location: {args.archive2}")
    specs = _sort_specs(args)
    if args.sort and not args.sort_by:
        logger.warning('"--sort" is deprecated. Use "--sort-by=path" instead.')
    matcher = selection_matcher(args, args.paths)
    with open_repository(ctx, location.omit_archive()) as repo:
        records = repo.records()
        first, second = find(records, location.archive), find(records, args.archive2)
        options = DiffOptions(
            numeric_ids=args.numeric_ids,
            content_only=args.content_only,
            compare_ids=_chunked_alike(first.chunker, second.chunker, args.same_chunker_params),
        )
        size = _sizer(ctx.iec)
        differ = ArchiveDiff(repo.objects, matcher, options, size, format_time)
        diffs = differ.compare(first.root, second.root)
        for diff in _sorted(list(diffs), specs) if specs else diffs:
            _show(ctx, diff, json_lines=args.json_lines)
    for pattern in matcher.get_unmatched_include_patterns():
        ctx.warn(IncludePatternNeverMatchedWarning(str(pattern)))


def _sizer(iec: bool) -> Callable[..., str]:
    def size(value: int, *, precision: int = 2, sign: bool = False) -> str:
        return format_file_size(value, iec=iec, precision=precision, sign=sign)

    return size


def _chunked_alike(first: str, second: str, forced: bool) -> bool:
    """Whether equal chunk ids may stand for equal content (Borg's check and warnings)."""
    if forced:
        return True
    if first and second:
        if first == second:
            return True
        logger.warning("--chunker-params are different between archives, diff will be slow.")
        return False
    logger.warning(
        "--chunker-params might be different between archives, diff will be slow.\n"
        "If you know for certain that they are the same, pass --same-chunker-params "
        "to override this check."
    )
    return False


def _show(ctx: Context, diff: ItemDiff, *, json_lines: bool) -> None:
    path = remove_surrogates(os.fsdecode(diff.path))
    if json_lines:
        changes = [change.data for change in diff.changes]
        ctx.out.print(json.dumps({"path": path, "changes": changes}, sort_keys=True))
    else:
        ctx.out.print("{:<19} {}".format(" ".join(c.text for c in diff.changes), path))


def _sort_specs(args: argparse.Namespace) -> list[tuple[str, bool]]:
    """(field, descending) from --sort-by (or --sort); UsageError for a bad field."""
    text = args.sort_by or ("path" if args.sort else "")
    specs = []
    for raw in text.split(","):
        spec = raw.strip()
        if not spec:
            continue
        descending = spec[0] == ">"
        field = spec[1:] if spec[0] in "<>" else spec
        if field not in SORT_FIELDS:
            raise UsageError(f"Invalid field name: {field} (valid: {', '.join(SORT_FIELDS)})")
        specs.append((field, descending))
    return specs


def _sorted(diffs: list[ItemDiff], specs: list[tuple[str, bool]]) -> list[ItemDiff]:
    for field, descending in reversed(specs):
        diffs.sort(key=lambda diff, f=field: _sort_key(f, diff), reverse=descending)  # type: ignore[misc]
    return diffs


def _sort_key(field: str, diff: ItemDiff) -> Any:
    if field == "path":
        return diff.path
    if field.startswith("size_"):
        added, removed = _sizes(diff)
        return {"size_added": added, "size_removed": removed, "size_diff": added - removed}[field]
    if field == "size":
        return diff.new.size if diff.new is not None else 0
    if field.endswith("_diff"):
        name = field.removesuffix("_diff")
        return _time(diff.new, name) - _time(diff.old, name)
    item = diff.new or diff.old
    assert item is not None
    defaults: dict[str, Any] = {"user": "", "group": "", "uid": -1, "gid": -1}
    if field in ("ctime", "mtime"):
        return _time(item, field)
    value = getattr(item, field)
    return defaults[field] if value is None else value


def _sizes(diff: ItemDiff) -> tuple[int, int]:
    added = removed = 0
    for change in diff.changes:
        if change.kind == "modified":
            added += int(change.data.get("added", 0))
            removed += int(change.data.get("removed", 0))
        elif change.kind == "added":
            added += int(change.data["size"])
        elif change.kind == "removed":
            removed += int(change.data["size"])
    return added, removed


def _time(entry: Any, name: str) -> int:
    if entry is None:
        return 0
    value = getattr(entry, name)
    return int(value) if value is not None else 0
