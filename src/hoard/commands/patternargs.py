"""Borg's include/exclude options, shared by create, extract, list, diff, export-tar.

``--exclude``, ``--exclude-from``, ``--pattern`` and ``--patterns-from``
take effect in the order they appear on the command line (as real Borg
1.4 does), so they all append to one list through :class:`_RuleAction`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from hoard.archive.patterns import (
    PatternMatcher,
    PatternRule,
    RootPath,
    StyleChange,
    build_matcher,
    load_exclude_file,
    load_pattern_file,
    parse_exclude_pattern,
    parse_inclexcl_line,
)
from hoard.errors import InputError


class _RuleAction(argparse.Action):
    """Append ``(option, value)`` to ``namespace.pattern_args`` in command-line order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        items = list(getattr(namespace, "pattern_args", None) or [])
        items.append((self.dest, values))
        namespace.pattern_args = items


def add_pattern_arguments(parser: argparse.ArgumentParser, *, create: bool) -> None:
    group = parser.add_argument_group("Include/Exclude options")
    group.set_defaults(pattern_args=[])
    group.add_argument(
        "-e", "--exclude", dest="exclude", action=_RuleAction, metavar="PATTERN",
        help="exclude paths matching PATTERN",
    )  # fmt: skip
    group.add_argument(
        "--exclude-from", dest="exclude_from", action=_RuleAction, metavar="EXCLUDEFILE"
    )
    group.add_argument("--pattern", dest="pattern", action=_RuleAction, metavar="PATTERN")
    group.add_argument(
        "--patterns-from", dest="patterns_from", action=_RuleAction, metavar="PATTERNFILE"
    )
    if create:
        group.add_argument("--exclude-caches", action="store_true")
        group.add_argument("--exclude-if-present", action="append", default=[], metavar="NAME")
        group.add_argument("--keep-exclude-tags", action="store_true")


def _read_file(path: str) -> list[bytes]:
    """The lines of a pattern file (binary: names that are not UTF-8 survive)."""
    try:
        with open(path, "rb") as f:
            return f.readlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


class _NamedLines(list[bytes]):
    """File lines that carry the file's name, so pattern errors can name it."""

    def __init__(self, path: str) -> None:
        super().__init__(_read_file(path))
        self.name = path


def collect_rules(args: argparse.Namespace) -> tuple[list[PatternRule], list[str]]:
    """The rules in command-line order, and the recursion roots of pattern files."""
    rules: list[PatternRule] = []
    roots: list[str] = []
    for option, value in args.pattern_args:
        if option == "exclude":
            rules.append(parse_exclude_pattern(value))
        elif option == "exclude_from":
            rules.extend(load_exclude_file(_NamedLines(value)))
        elif option == "pattern":
            _add_line(parse_inclexcl_line(value), rules, roots)
        else:
            file_roots, file_rules = load_pattern_file(_NamedLines(value))
            roots.extend(file_roots)
            rules.extend(file_rules)
    return rules, roots


def _add_line(
    item: RootPath | StyleChange | PatternRule, rules: list[PatternRule], roots: list[str]
) -> None:
    if isinstance(item, RootPath):
        roots.append(item.path)
    elif isinstance(item, PatternRule):
        rules.append(item)


def create_matcher(args: argparse.Namespace) -> tuple[PatternMatcher, list[str]]:
    """The matcher for ``create`` (everything not excluded) and extra roots."""
    rules, roots = collect_rules(args)
    matcher = PatternMatcher(fallback=True)
    matcher.add_rules(rules)
    return matcher, roots


def selection_matcher(args: argparse.Namespace, paths: Sequence[str | bytes]) -> PatternMatcher:
    """The matcher for extract/list/diff: rules, then PATH arguments as ``pp:`` includes."""
    rules, _ = collect_rules(args)
    return build_matcher(rules, paths)
