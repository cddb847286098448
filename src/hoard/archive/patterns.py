"""Borg 1.4's include/exclude pattern language.

This module turns ``--exclude``, ``--exclude-from``, ``--pattern``,
``--patterns-from`` and the PATH arguments of ``extract``/``list``/``diff``
into a :class:`PatternMatcher`. The behaviour is Borg 1.4's
(``borg/patterns.py``, ``borg/shellpattern.py``), checked side by side with
Borg 1.4.1; it is pure: no file system access, no environment.

Paths that are matched
    Archive paths are relative (``home/user/file``). :meth:`PatternMatcher.decide`
    accepts ``str`` or ``bytes``; bytes are decoded with :func:`os.fsdecode`
    (UTF-8 with ``surrogateescape`` on POSIX), exactly the ``str`` Borg gets
    for a name, so a non-UTF-8 byte ``\\xe9`` is the character ``\\udce9`` on
    both sides: a pattern read from a file opened in binary mode (or taken
    from ``sys.argv``, which Python decodes the same way) matches the same
    bytes in a file name. Leading ``/`` are stripped from the path before
    matching, nothing else is changed: ``create`` passes ``/home/u/x`` and
    ``extract`` passes ``home/u/x``, both match as ``home/u/x``. (Borg 1.4
    does not strip ``../``: a ``../src`` recursion root is matched as
    ``../src/...`` though it is archived as ``src/...``; callers pass what
    Borg passes.)

How patterns are normalised (as Borg 1.4)
    ``fm:``, ``sh:``, ``pp:`` and ``pf:`` patterns go through
    ``posixpath.normpath`` and lose their leading slashes, so ``/home``,
    ``home``, ``./home``, ``//home`` and ``/./home`` are the same pattern and
    ``a/../b`` is ``b``. A trailing ``/`` on ``fm:``/``sh:`` means "the
    contents, not the directory itself". ``re:`` patterns are used verbatim
    and searched (not anchored) in the path without its leading slash, so
    ``^home/`` matches and ``^/home`` never does. On macOS both sides are
    NFD-normalised, as Borg does, because the file system decomposes names.

Order
    The first matching pattern decides, except that ``pf:`` patterns are
    looked up in a hash table before all others and a later ``pf:`` for the
    same path replaces an earlier one (Borg's documented O(1) shortcut).
    An excluded directory is still descended into (an include below it may
    match) unless the pattern came from ``!``, ``--exclude`` or
    ``--exclude-from``.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import sys
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from hoard.errors import PatternError

_SEP = "/"

# What a pattern-file line may start with, in Borg's order (used in its message).
_COMMAND_CHARS = ("-", "!", "+", "R", "r", "P", "p")


def as_text(path: str | bytes) -> str:
    """Return ``path`` as the ``str`` Borg would see: bytes via ``os.fsdecode``."""
    return os.fsdecode(path) if isinstance(path, bytes) else path


def _normalize_unicode(text: str) -> str:
    """NFD on macOS (HFS+/APFS hand out decomposed names), unchanged elsewhere.

    Users cannot be expected to type the form the file system chose; on other
    systems both forms are distinct valid names, so they must match exactly.
    """
    return unicodedata.normalize("NFD", text) if sys.platform == "darwin" else text


class PatternStyle(Enum):
    """The five pattern styles and their two-letter selectors."""

    FNMATCH = "fm"
    SHELL = "sh"
    REGEX = "re"
    PATH_PREFIX = "pp"
    PATH_FULL = "pf"

    @classmethod
    def from_selector(cls, selector: str) -> PatternStyle:
        """The style for ``fm``, ``sh``, ``re``, ``pp`` or ``pf``; PatternError otherwise."""
        try:
            return cls(selector)
        except ValueError:
            raise PatternError(
                selector,
                f"unknown pattern style {selector!r}; use one of fm, sh, re, pp, pf",
            ) from None


def _compile(regex: str, text: str) -> re.Pattern[str]:
    """Compile ``regex`` (made from pattern ``text``); PatternError on failure."""
    try:
        return re.compile(regex)
    except re.error as exc:
        raise PatternError(text, f"not a valid regular expression ({exc})") from None


class Pattern(ABC):
    """One pattern of some style, compiled.

    ``text`` is what the user wrote after the style selector (``str()`` gives
    it back, as Borg prints it in "Include pattern 'x' never matched.");
    ``pattern`` is the normalised form that is matched. Instances are
    immutable and may be shared between threads.
    """

    style: ClassVar[PatternStyle]
    __slots__ = ("pattern", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pattern = self._prepare(_normalize_unicode(text))

    @abstractmethod
    def _prepare(self, text: str) -> str:
        """Normalise ``text`` (and compile what is needed); return the normal form."""

    @abstractmethod
    def matches_normalized(self, path: str) -> bool:
        """Match a path that has no leading slash and is already Unicode-normalised."""

    def match(self, path: str) -> bool:
        """Match one archive path (without leading slash)."""
        return self.matches_normalized(_normalize_unicode(path))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, Pattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash((type(self), self.text))


class PathFullPattern(Pattern):
    """``pf:`` -- the whole path, nothing else; no wildcards."""

    style = PatternStyle.PATH_FULL
    __slots__ = ()

    def _prepare(self, text: str) -> str:
        return posixpath.normpath(text).lstrip(_SEP)

    def matches_normalized(self, path: str) -> bool:
        return path == self.pattern


class PathPrefixPattern(Pattern):
    """``pp:`` -- a path and everything below it; a trailing slash changes nothing.

    The default style of PATH arguments of ``extract``, ``list``, ``diff``.
    """

    style = PatternStyle.PATH_PREFIX
    __slots__ = ()

    def _prepare(self, text: str) -> str:
        return (posixpath.normpath(text).rstrip(_SEP) + _SEP).lstrip(_SEP)

    def matches_normalized(self, path: str) -> bool:
        return (path + _SEP).startswith(self.pattern)


class _RegexBacked(Pattern):
    """A style implemented by a compiled regular expression."""

    __slots__ = ("_regex",)

    def _prepare(self, text: str) -> str:
        normal = self._normal_form(text)
        self._regex = _compile(self._to_regex(normal), self.text)
        return normal

    @abstractmethod
    def _normal_form(self, text: str) -> str:
        """The normalised pattern text."""

    @abstractmethod
    def _to_regex(self, normal: str) -> str:
        """The regular expression for the normalised pattern text."""

    def matches_normalized(self, path: str) -> bool:
        # The pattern must match the whole path or the path up to just before a
        # separator ("a/b" excludes "a/b/c"); appending one separator to the
        # path and a "/*" to the pattern unifies both cases.
        return self._regex.match(path + _SEP) is not None


class FnmatchPattern(_RegexBacked):
    """``fm:`` -- fnmatch, where ``*`` also matches ``/``; default of ``--exclude``."""

    style = PatternStyle.FNMATCH
    __slots__ = ()

    def _normal_form(self, text: str) -> str:
        if text.endswith(_SEP):
            text = posixpath.normpath(text).rstrip(_SEP) + "/*/"
        else:
            text = posixpath.normpath(text) + "/*"
        return text.lstrip(_SEP)

    def _to_regex(self, normal: str) -> str:
        return fnmatch.translate(normal)


class ShellPattern(_RegexBacked):
    """``sh:`` -- ``*`` stops at ``/``, ``**/`` spans directories; default of ``--pattern``."""

    style = PatternStyle.SHELL
    __slots__ = ()

    def _normal_form(self, text: str) -> str:
        if text.endswith(_SEP):
            text = posixpath.normpath(text).rstrip(_SEP) + "/**/*/"
        else:
            text = posixpath.normpath(text) + "/**/*"
        return text.lstrip(_SEP)

    def _to_regex(self, normal: str) -> str:
        return shell_translate(normal)


class RegexPattern(_RegexBacked):
    """``re:`` -- a Python regular expression searched anywhere in the path."""

    style = PatternStyle.REGEX
    __slots__ = ()

    def _normal_form(self, text: str) -> str:
        return text

    def _to_regex(self, normal: str) -> str:
        return normal

    def matches_normalized(self, path: str) -> bool:
        return self._regex.search(path) is not None


_CLASS_BY_STYLE: dict[PatternStyle, type[Pattern]] = {
    cls.style: cls
    for cls in (FnmatchPattern, ShellPattern, RegexPattern, PathPrefixPattern, PathFullPattern)
}


def shell_translate(pattern: str, match_end: str = r"\Z") -> str:
    """Translate a shell-style pattern to a regular expression (Borg's shellpattern).

    ``**/`` matches zero or more whole directory levels, ``*`` any run of
    characters but ``/``, ``?`` one character but ``/``, ``[...]``/``[!...]``
    a character set; anything else is literal. A ``[`` without its ``]`` is
    literal. The result matches up to the end of the string, or whatever
    ``match_end`` (a regex) says follows (Borg: prune allows a checkpoint
    suffix after the archive glob).
    """
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            if pattern.startswith("*/", i):
                parts.append("(?:[^/]*/)*")
                i += 2
            else:
                parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        elif char == "[":
            i = _translate_set(pattern, i, parts)
        else:
            parts.append(re.escape(char))
    return "(?ms)" + "".join(parts) + match_end


def _translate_set(pattern: str, start: int, parts: list[str]) -> int:
    """Append the regex for the set opened by ``[`` before ``start``; return the next index."""
    end = start
    if end < len(pattern) and pattern[end] == "!":
        end += 1
    if end < len(pattern) and pattern[end] == "]":
        end += 1
    while end < len(pattern) and pattern[end] != "]":
        end += 1
    if end >= len(pattern):
        parts.append("\\[")
        return start
    body = pattern[start:end].replace("\\", "\\\\")
    if body[0] == "!":
        body = "^" + body[1:]
    elif body[0] == "^":
        body = "\\" + body
    # '[', '&', '~', '|' are literal inside a set, as in Borg; escaping them
    # keeps that meaning and avoids Python's "possible nested set" warnings.
    body = re.sub(r"([\[&~|])", r"\\\1", body)
    parts.append(f"[{body}]")
    return end + 1


def parse_pattern(text: str, default_style: PatternStyle = PatternStyle.FNMATCH) -> Pattern:
    """Parse ``[XX:]pattern``; without a selector, ``default_style`` applies.

    As Borg: the first two characters are a selector when both are
    alphanumeric and a ``:`` follows (``fm:aa:x/*`` is the pattern ``aa:x/*``;
    ``aa:x`` alone is an error). Raises PatternError for an unknown selector
    or a pattern that does not compile.
    """
    try:
        if len(text) > 2 and text[2] == ":" and text[:2].isalnum():
            return _CLASS_BY_STYLE[PatternStyle.from_selector(text[:2])](text[3:])
        return _CLASS_BY_STYLE[default_style](text)
    except PatternError as exc:
        raise PatternError(text, exc.args[1]) from None


class Action(Enum):
    """What a matching pattern does to a path."""

    INCLUDE = "+"
    EXCLUDE = "-"
    EXCLUDE_NORECURSE = "!"

    @property
    def includes(self) -> bool:
        """Whether a matching path is included."""
        return self is Action.INCLUDE

    @property
    def recurses(self) -> bool:
        """Whether a matching directory is still descended into."""
        return self is not Action.EXCLUDE_NORECURSE


@dataclass(frozen=True)
class PatternRule:
    """A pattern with its action: one ``+``/``-``/``!`` line or one ``--exclude``."""

    pattern: Pattern
    action: Action


@dataclass(frozen=True)
class RootPath:
    """An ``R path`` line: a recursion root for ``create`` (a plain path, no pattern)."""

    path: str


@dataclass(frozen=True)
class StyleChange:
    """A ``P style`` line: the default style of the following lines of the same file."""

    style: PatternStyle


@dataclass(frozen=True)
class Decision:
    """The verdict on one path.

    ``included``: the item is archived (create) or extracted/listed.
    ``recurse_dir``: if it is a directory, descend into it -- also when it is
    excluded, so that an include pattern can pick something below it.
    """

    included: bool
    recurse_dir: bool


def parse_exclude_pattern(
    text: str, default_style: PatternStyle = PatternStyle.FNMATCH
) -> PatternRule:
    """An ``--exclude`` value or ``--exclude-from`` line: exclude, do not recurse."""
    return PatternRule(parse_pattern(text, default_style), Action.EXCLUDE_NORECURSE)


def parse_inclexcl_line(
    line: str, default_style: PatternStyle = PatternStyle.SHELL
) -> RootPath | StyleChange | PatternRule:
    """Parse a ``--pattern`` value or one ``--patterns-from`` line.

    ``+ pat`` include, ``- pat`` exclude, ``! pat`` exclude without
    recursing, ``R path`` (or ``r``) recursion root, ``P style`` (or ``p``)
    default style for the following lines. Whitespace after the command
    character is optional (``-*.o`` is valid). ``line`` must already be
    stripped; comments are the caller's business (see
    :func:`load_pattern_file`). Raises PatternError.

    Note for ``--pattern``: Borg parses each value with the ``sh`` default and
    forgets a ``P`` change, so ``--pattern='P fm'`` is accepted and has no
    effect; only within a file does ``P`` carry over to the next lines.
    """
    if not line:
        raise PatternError(line, "a pattern/command must not be empty")
    command = line[0]
    if command not in _COMMAND_CHARS:
        raise PatternError(
            line, f"a pattern/command must start with any of: {', '.join(_COMMAND_CHARS)}"
        )
    value = line[1:].lstrip()
    if not value:
        raise PatternError(line, "a pattern/command must have a value part")
    if command in "Rr":
        return RootPath(value)
    try:
        if command in "Pp":
            return StyleChange(PatternStyle.from_selector(value))
        return PatternRule(parse_pattern(value, default_style), Action(command))
    except PatternError as exc:
        raise PatternError(line, exc.args[1]) from None


def clean_lines(lines: Iterable[str | bytes]) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of the lines that carry content.

    Each line is decoded like a file name (bytes via ``os.fsdecode``),
    stripped of whitespace on both ends; empty lines and lines starting with
    ``#`` (after stripping) are dropped. There are no trailing comments, and
    a pattern with leading or trailing spaces can only be written as ``re:``.
    """
    for number, raw in enumerate(lines, start=1):
        line = as_text(raw).strip()
        if line and not line.startswith("#"):
            yield number, line


def _file_error(fileobj: object, number: int, exc: PatternError) -> PatternError:
    """Re-raise ``exc`` naming the line (and the file, when it has a name)."""
    name = getattr(fileobj, "name", None)
    where = f"line {number}"
    if isinstance(name, str | bytes):
        where += f" of {as_text(name)}"
    return PatternError(exc.args[0], f"{exc.args[1]} ({where})")


def load_pattern_file(
    fileobj: Iterable[str | bytes],
    default_style: PatternStyle = PatternStyle.SHELL,
) -> tuple[list[str], list[PatternRule]]:
    """Read a ``--patterns-from`` file: return (recursion roots, rules) in file order.

    ``P`` lines change the default style for the rest of this file only.
    Open the file in binary mode so that non-UTF-8 names survive
    (``surrogateescape``, as for file names). Raises PatternError naming the
    line.
    """
    roots: list[str] = []
    rules: list[PatternRule] = []
    style = default_style
    for number, line in clean_lines(fileobj):
        try:
            parsed = parse_inclexcl_line(line, style)
        except PatternError as exc:
            raise _file_error(fileobj, number, exc) from None
        if isinstance(parsed, RootPath):
            roots.append(parsed.path)
        elif isinstance(parsed, StyleChange):
            style = parsed.style
        else:
            rules.append(parsed)
    return roots, rules


def load_exclude_file(
    fileobj: Iterable[str | bytes],
    default_style: PatternStyle = PatternStyle.FNMATCH,
) -> list[PatternRule]:
    """Read an ``--exclude-from`` file: one exclude pattern per line (``fm`` default).

    Each line acts like ``--exclude``: excluded directories are not descended
    into. Raises PatternError naming the line.
    """
    rules: list[PatternRule] = []
    for number, line in clean_lines(fileobj):
        try:
            rules.append(parse_exclude_pattern(line, default_style))
        except PatternError as exc:
            raise _file_error(fileobj, number, exc) from None
    return rules


class _Entry:
    """A rule inside a matcher, with its precomputed decision and hit count."""

    __slots__ = ("decision", "hits", "pattern")

    def __init__(self, pattern: Pattern, action: Action) -> None:
        self.pattern = pattern
        self.decision = Decision(action.includes, action.recurses)
        self.hits = 0


_INCLUDED_RECURSE = Decision(True, True)
_EXCLUDED_RECURSE = Decision(False, True)


class PatternMatcher:
    """An ordered set of rules deciding which paths are included.

    ``fallback`` is the verdict when no rule matches (``create``: True;
    ``extract`` with PATH arguments: False, see :func:`build_matcher`).
    Unmatched paths are always descended into.

    Thread safety: deciding may happen from several threads; the only state
    it changes is the per-rule hit count, of which only "zero or not" is
    used, so a lost increment cannot change any outcome.
    """

    def __init__(self, fallback: bool = True) -> None:
        self.fallback = fallback
        self._ordered: list[_Entry] = []
        self._full_paths: dict[str, _Entry] = {}
        self._include_paths: list[_Entry] = []

    def _add(self, pattern: Pattern, action: Action) -> _Entry:
        entry = _Entry(pattern, action)
        if isinstance(pattern, PathFullPattern):
            self._full_paths[pattern.pattern] = entry
        else:
            self._ordered.append(entry)
        return entry

    def add(self, patterns: Iterable[Pattern], action: Action) -> None:
        """Append ``patterns``, all with ``action``, after the rules already added."""
        for pattern in patterns:
            self._add(pattern, action)

    def add_rules(self, rules: Iterable[PatternRule]) -> None:
        """Append rules (from ``--exclude``, ``--pattern``, the pattern files) in order."""
        for rule in rules:
            self._add(rule.pattern, rule.action)

    def add_includepaths(self, paths: Iterable[str | bytes]) -> None:
        """Append the PATH arguments of extract/list/diff as include rules.

        Each is a pattern with ``pp:`` as default style. If any are given,
        everything they do not match is excluded (``fallback`` becomes False);
        :meth:`get_unmatched_include_patterns` reports those that matched
        nothing.
        """
        for path in paths:
            pattern = parse_pattern(as_text(path), PatternStyle.PATH_PREFIX)
            self._include_paths.append(self._add(pattern, Action.INCLUDE))
        self.fallback = not self._include_paths

    def empty(self) -> bool:
        """True if no rule was added (extract can then skip per-item matching)."""
        return not self._ordered and not self._full_paths

    def decide(self, path: str | bytes) -> Decision:
        """Whether ``path`` is included and, if a directory, descended into."""
        if not self._ordered and not self._full_paths:  # no rules (create without patterns)
            return _INCLUDED_RECURSE if self.fallback else _EXCLUDED_RECURSE
        text = _normalize_unicode(as_text(path)).lstrip(_SEP)
        entry = self._full_paths.get(text)
        if entry is None:
            entry = next((e for e in self._ordered if e.pattern.matches_normalized(text)), None)
        if entry is None:
            return Decision(self.fallback, True)
        entry.hits += 1
        return entry.decision

    def match(self, path: str | bytes) -> bool:
        """Whether ``path`` is included."""
        return self.decide(path).included

    def get_unmatched_include_patterns(self) -> list[Pattern]:
        """The PATH-argument patterns that matched nothing so far, in order.

        Borg warns "Include pattern 'x' never matched." for each (exit code 1).
        Unlike Borg 1.4, ``pf:`` PATH arguments are counted too (Borg cannot
        count its hash-table hits and so never warns about them).
        """
        return [entry.pattern for entry in self._include_paths if entry.hits == 0]


def build_matcher(
    rules: Iterable[PatternRule], include_paths: Iterable[str | bytes]
) -> PatternMatcher:
    """The matcher ``extract``, ``list``, ``diff``, ``export-tar`` and ``recreate`` use.

    Rules come first, in the order given; then the PATH arguments as ``pp:``
    includes. Without PATH arguments everything not excluded is selected;
    with them, only what they match (and no rule excluded first).
    """
    matcher = PatternMatcher()
    matcher.add_rules(rules)
    matcher.add_includepaths(include_paths)
    return matcher
