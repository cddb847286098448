"""Borg 1.4's pattern language: the cases of "borg help patterns" and of Borg's
own test suite, plus the create/extract walks checked against borg 1.4.1."""

from __future__ import annotations

import io
import re
import sys

import pytest

from hoard.archive.patterns import (
    Action,
    Decision,
    FnmatchPattern,
    PathFullPattern,
    PathPrefixPattern,
    Pattern,
    PatternMatcher,
    PatternRule,
    PatternStyle,
    RegexPattern,
    RootPath,
    ShellPattern,
    StyleChange,
    build_matcher,
    load_exclude_file,
    load_pattern_file,
    parse_exclude_pattern,
    parse_inclexcl_line,
    parse_pattern,
    shell_translate,
)
from hoard.errors import InputError, PatternError

TREE = [
    "etc/server/config",
    "etc/server/hosts",
    "home",
    "home/user/.profile",
    "home/user/.bashrc",
    "home/user2/.profile",
    "home/user2/public_html/index.html",
    "srv",
    "srv/messages",
    "srv/dmesg",
    "srv2",
    "srv2/blafasel",
    "home/foo/.thumbnails",
    "home/foo/bar/.thumbnails",
]


def matching(pattern: Pattern, paths: list[str] = TREE) -> list[str]:
    return [p for p in paths if pattern.match(p)]


ALL = None  # marker: every path matches


def expect(paths: list[str] | None, universe: list[str] = TREE) -> list[str]:
    return universe if paths is None else paths


# --- the five styles ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/", []),
        ("/home", ["home"]),
        ("/home///", ["home"]),
        ("/./home", ["home"]),
        ("home", ["home"]),
        ("./home", ["home"]),
        ("/srv", ["srv"]),
        ("/home/user/.bashrc", ["home/user/.bashrc"]),
        ("/home/user", []),
        ("home/../srv2/blafasel", ["srv2/blafasel"]),
    ],
)
def test_path_full(text: str, expected: list[str]) -> None:
    assert matching(PathFullPattern(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/", ALL),
        ("/./", ALL),
        ("", []),
        ("/home/u", []),
        ("/home/user", ["home/user/.profile", "home/user/.bashrc"]),
        ("/etc", ["etc/server/config", "etc/server/hosts"]),
        ("///etc//////", ["etc/server/config", "etc/server/hosts"]),
        ("/./home//..//home/user2", ["home/user2/.profile", "home/user2/public_html/index.html"]),
        ("srv", ["srv", "srv/messages", "srv/dmesg"]),
        ("srv/", ["srv", "srv/messages", "srv/dmesg"]),
    ],
)
def test_path_prefix(text: str, expected: list[str] | None) -> None:
    assert matching(PathPrefixPattern(text)) == expect(expected)


HOME_ALL = [
    "home/user/.profile",
    "home/user/.bashrc",
    "home/user2/.profile",
    "home/user2/public_html/index.html",
    "home/foo/.thumbnails",
    "home/foo/bar/.thumbnails",
]
NOT_TOPLEVEL = [p for p in TREE if "/" in p]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/*", ALL),
        ("/./*", ALL),
        ("*", ALL),
        ("*/*", NOT_TOPLEVEL),
        ("*///*", NOT_TOPLEVEL),
        ("/home/u", []),
        ("/home/*", HOME_ALL),
        ("/home/user/*", ["home/user/.profile", "home/user/.bashrc"]),
        ("*/.pr????e", ["home/user/.profile", "home/user2/.profile"]),
        ("/./home//..//home/user2/*", ["home/user2/.profile", "home/user2/public_html/index.html"]),
        # '*' crosses '/' in fnmatch, unlike sh:
        ("/home/*/.thumbnails", ["home/foo/.thumbnails", "home/foo/bar/.thumbnails"]),
        ("/srv*", ["srv", "srv/messages", "srv/dmesg", "srv2", "srv2/blafasel"]),
        # trailing slash: the contents, not the directory itself
        ("srv/", ["srv/messages", "srv/dmesg"]),
        ("srv", ["srv", "srv/messages", "srv/dmesg"]),
    ],
)
def test_fnmatch(text: str, expected: list[str] | None) -> None:
    assert matching(FnmatchPattern(text)) == expect(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", ALL),
        ("**/*", ALL),
        ("/**/*", ALL),
        ("*/*", NOT_TOPLEVEL),
        ("/home/*", HOME_ALL),
        ("/etc/*/*", ["etc/server/config", "etc/server/hosts"]),
        ("/etc/**/*", ["etc/server/config", "etc/server/hosts"]),
        ("/etc/**/*/*", ["etc/server/config", "etc/server/hosts"]),
        ("*/.pr????e", []),
        ("**/.pr????e", ["home/user/.profile", "home/user2/.profile"]),
        ("/./home//..//home/user2/", ["home/user2/.profile", "home/user2/public_html/index.html"]),
        ("/srv*/", ["srv/messages", "srv/dmesg", "srv2/blafasel"]),
        ("/srv*", ["srv", "srv/messages", "srv/dmesg", "srv2", "srv2/blafasel"]),
        ("/srv/*", ["srv/messages", "srv/dmesg"]),
        ("/srv2/**", ["srv2", "srv2/blafasel"]),
        ("/srv2/**/", ["srv2/blafasel"]),
        # '*' does not cross '/' in sh:
        ("/home/*/.thumbnails", ["home/foo/.thumbnails"]),
        ("/home/*/*/.thumbnails", ["home/foo/bar/.thumbnails"]),
        ("home/**/.thumbnails", ["home/foo/.thumbnails", "home/foo/bar/.thumbnails"]),
    ],
)
def test_shell(text: str, expected: list[str] | None) -> None:
    assert matching(ShellPattern(text)) == expect(expected)


ABSOLUTE = ["/srv/data", "/foo/bar", "/home", "/home/user/.profile", "/opt/log/dmesg.txt"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ALL),
        (".*", ALL),
        ("^/", ALL),
        ("^abc$", []),
        ("^[^/]", []),
        ("^(?!/srv|/foo|/opt)", ["/home", "/home/user/.profile"]),
        ("txt$", ["/opt/log/dmesg.txt"]),
        ("(?i)HOME", ["/home", "/home/user/.profile"]),
    ],
)
def test_regex_is_a_search_of_the_verbatim_path(text: str, expected: list[str] | None) -> None:
    pattern = RegexPattern(text)
    assert pattern.pattern == text == str(pattern)
    assert matching(pattern, ABSOLUTE) == expect(expected, ABSOLUTE)


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("foo/bar", "foo/bar"),
        ("foo\\bar", "foo\\bar"),
        ("foo/c/\u0152/e/bar", "**/\u0152/*/*"),
        ("\u00e4\u00f6\u00dc", "[\u00e4][\u00f6][\u00dc]"),
        ("foo", "f?o"),
        ("", "*"),
        ("foo", "***"),
        ("foo/bar", "foo*/bar"),
        ("foo/1/22/333/bar", "foo/**/bar"),
        ("foo/bar", "foo/**/bar"),
        ("foo/", "foo/**/"),
        ("foo/bar/baz", "foo/**/*"),
        ("f??f", "f[?][?]f"),
        ("foo]", "foo[]]"),
        ("foo3", "foo[!12]"),
        ("foo^", "foo[^!]"),
        ("a[b", "a[b"),
        ("a&b", "a[&~|]b"),
        ("a[b", "a[[]b"),
    ],
)
def test_shell_translate_matches(path: str, pattern: str) -> None:
    assert re.match(shell_translate(pattern), path)


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("", "?"),
        ("", "[]"),
        ("foo/ar", "foo?ar"),
        ("foo/bar", "*"),
        ("foo/bar", "foo*bar"),
        ("foobar", "foo/**/bar"),
        ("foo/bar", "**"),
        ("foo/bar", "**/"),
        ("foo3", "foo[12]"),
        ("foo1", "foo[!12]"),
    ],
)
def test_shell_translate_mismatches(path: str, pattern: str) -> None:
    assert not re.match(shell_translate(pattern), path)


# --- selectors, normalisation, errors -----------------------------------------


@pytest.mark.parametrize(
    ("text", "cls", "normal"),
    [
        ("", FnmatchPattern, "./*"),
        ("*", FnmatchPattern, "*/*"),
        ("/data/*", FnmatchPattern, "data/*/*"),
        ("fm:fm:/data/*", FnmatchPattern, "fm:/data/*/*"),
        ("re:", RegexPattern, ""),
        ("re:re:^/x/", RegexPattern, "re:^/x/"),
        ("pp:/", PathPrefixPattern, ""),
        ("pp:pp:/data/", PathPrefixPattern, "pp:/data/"),
        ("sh:/data/*", ShellPattern, "data/*/**/*"),
        ("sh:home/", ShellPattern, "home/**/*/"),
        ("pf:/a//b/./c/", PathFullPattern, "a/b/c"),
        # not a selector: only two alphanumerics followed by ':' are one
        ("a:b", FnmatchPattern, "a:b/*"),
        ("abc:d", FnmatchPattern, "abc:d/*"),
        ("-x:y", FnmatchPattern, "-x:y/*"),
    ],
)
def test_parse_pattern_selector(text: str, cls: type[Pattern], normal: str) -> None:
    pattern = parse_pattern(text)
    assert type(pattern) is cls
    assert pattern.pattern == normal


def test_parse_pattern_default_style() -> None:
    assert type(parse_pattern("x", PatternStyle.SHELL)) is ShellPattern
    assert type(parse_pattern("x", PatternStyle.PATH_PREFIX)) is PathPrefixPattern
    assert type(parse_pattern("fm:x", PatternStyle.PATH_PREFIX)) is FnmatchPattern


@pytest.mark.parametrize(
    "leading", ["home/user", "/home/user", "./home/user", "//home/user", "/./home/user"]
)
@pytest.mark.parametrize("style", ["fm:", "sh:", "pp:", "pf:"])
def test_leading_slash_and_dot_are_normalised_away(style: str, leading: str) -> None:
    pattern = parse_pattern(style + leading)
    assert pattern.match("home/user")
    assert not pattern.match("home/user2")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("aa:", "unknown pattern style 'aa'"),
        ("fo:*", "unknown pattern style 'fo'"),
        ("x1:abc", "unknown pattern style 'x1'"),
        ("re:(", "not a valid regular expression"),
        ("re:a{2,1}", "not a valid regular expression"),
        ("sh:[z-a]", "not a valid regular expression"),
    ],
)
def test_parse_pattern_errors(text: str, reason: str) -> None:
    with pytest.raises(PatternError) as info:
        parse_pattern(text)
    assert isinstance(info.value, InputError)
    assert info.value.args[0] == text
    assert reason in str(info.value)
    assert str(info.value).startswith(f"Invalid pattern {text!r}: ")


def test_pattern_str_equality_and_hash() -> None:
    assert str(parse_pattern("sh:/home/*")) == "/home/*"
    assert parse_pattern("sh:/home") == ShellPattern("/home")
    assert parse_pattern("sh:/home") != FnmatchPattern("/home")
    assert len({ShellPattern("a"), ShellPattern("a"), PathPrefixPattern("a")}) == 2


# --- names that are not UTF-8, Unicode forms ---------------------------------

LATIN1_NAME = b"home/caf\xe9/notes"  # a non-UTF-8 name as the OS hands it out


@pytest.mark.parametrize(
    "pattern_bytes",
    [
        b"home/caf\xe9",
        b"sh:home/caf\xe9/*",
        b"pp:home/caf\xe9",
        b"re:caf\xe9/",
        b"pf:" + LATIN1_NAME,
    ],
)
def test_non_utf8_name_matches_pattern_from_binary_file(pattern_bytes: bytes) -> None:
    rules = load_exclude_file(io.BytesIO(b"# latin-1 names\n" + pattern_bytes + b"\n"))
    matcher = PatternMatcher()
    matcher.add_rules(rules)
    assert not matcher.match(LATIN1_NAME)
    assert not matcher.match("/" + LATIN1_NAME.decode("utf-8", "surrogateescape"))
    assert matcher.match(b"home/caf\xc3\xa9/notes")  # the UTF-8 spelling is another name


def test_invalid_unicode_in_str_pattern() -> None:
    for pattern in (PathPrefixPattern("ba\x80"), FnmatchPattern("ba\x80"), ShellPattern("ba\x80")):
        assert pattern.match("ba\x80/foo")
        assert not pattern.match("ba/foo")


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS matches NFD-normalised (as Borg)")
def test_composed_and_decomposed_forms_are_different_names() -> None:
    composed, decomposed = "b\N{LATIN SMALL LETTER A WITH ACUTE}", "ba\N{COMBINING ACUTE ACCENT}"
    assert FnmatchPattern(composed).match(composed + "/foo")
    assert not FnmatchPattern(composed).match(decomposed + "/foo")
    assert not ShellPattern(decomposed).match(composed + "/foo")


# --- pattern-file lines -------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("R /", RootPath("/")),
        ("r  relative/dir", RootPath("relative/dir")),
        ("P fm", StyleChange(PatternStyle.FNMATCH)),
        ("p re", StyleChange(PatternStyle.REGEX)),
        ("+ home/susan", PatternRule(ShellPattern("home/susan"), Action.INCLUDE)),
        ("-home/*", PatternRule(ShellPattern("home/*"), Action.EXCLUDE)),
        ("!\tproc", PatternRule(ShellPattern("proc"), Action.EXCLUDE_NORECURSE)),
        ("+ pf:home/bobby/x", PatternRule(PathFullPattern("home/bobby/x"), Action.INCLUDE)),
        ("- fm:aa:b", PatternRule(FnmatchPattern("aa:b"), Action.EXCLUDE)),
    ],
)
def test_parse_inclexcl_line(line: str, expected: object) -> None:
    assert parse_inclexcl_line(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "must not be empty"),
        ("X /data", "must start with any of: -, !, +, R, r, P, p"),
        ("/data", "must start with any of"),
        ("+", "must have a value part"),
        ("-   ", "must have a value part"),
        ("P xx", "unknown pattern style 'xx'"),
        ("P sh ", "unknown pattern style 'sh '"),
        ("+ aa:b", "unknown pattern style 'aa'"),
        ("! re:(", "not a valid regular expression"),
    ],
)
def test_parse_inclexcl_line_errors(line: str, reason: str) -> None:
    with pytest.raises(PatternError) as info:
        parse_inclexcl_line(line)
    assert info.value.args[0] == line
    assert reason in str(info.value)


def test_exclude_pattern_does_not_recurse() -> None:
    rule = parse_exclude_pattern("home/*/junk")
    assert rule == PatternRule(FnmatchPattern("home/*/junk"), Action.EXCLUDE_NORECURSE)
    assert not rule.action.recurses and not rule.action.includes


def test_load_pattern_file_roots_styles_and_order() -> None:
    text = """\
        # comment
        +0_initial_default_is_shell
        p fm
        +1_fnmatch
        R /home

        P re
        -2_regex
          # indented comment
        !3_more_regex
        P pp
        +4_pathprefix
        r rel
        p sh
        +5_shell
    """
    roots, rules = load_pattern_file(io.StringIO(text))
    assert roots == ["/home", "rel"]
    assert [(type(r.pattern), r.action) for r in rules] == [
        (ShellPattern, Action.INCLUDE),
        (FnmatchPattern, Action.INCLUDE),
        (RegexPattern, Action.EXCLUDE),
        (RegexPattern, Action.EXCLUDE_NORECURSE),
        (PathPrefixPattern, Action.INCLUDE),
        (ShellPattern, Action.INCLUDE),
    ]


def test_load_pattern_file_default_style_is_a_parameter() -> None:
    _, rules = load_pattern_file(["- x"], PatternStyle.FNMATCH)
    assert type(rules[0].pattern) is FnmatchPattern


def test_load_pattern_file_error_names_line_and_file() -> None:
    fileobj = io.StringIO("R /\n# fine\n- ok\nX bad\n")
    fileobj.name = "patterns.lst"
    with pytest.raises(PatternError) as info:
        load_pattern_file(fileobj)
    assert info.value.args[0] == "X bad"
    assert "(line 4 of patterns.lst)" in str(info.value)


def test_load_exclude_file_error_names_line() -> None:
    with pytest.raises(PatternError) as info:
        load_exclude_file(["*.o", "", "re:("])
    assert "(line 3)" in str(info.value)


# --- the matcher: first match wins, recursion ---------------------------------

EXCL_FILES = [
    "data/something00.txt",
    "more/data",
    "home",
    " #/wsfoobar",
    "\tstart/whitespace",
    "whitespace/end\t",
]


@pytest.mark.parametrize(
    ("lines", "kept"),
    [
        ([], ALL),
        (["# Comment only"], ALL),
        (["*"], []),
        (
            ["# Comment", "*/something00.txt", "  *whitespace*  ", " #/ws*", "", "# EOF"],
            ["more/data", "home", " #/wsfoobar"],
        ),
        ([r"re:.*"], []),
        ([r"re:\s"], ["data/something00.txt", "more/data", "home"]),
        ([r"re:(.)(\1)"], ["more/data", "home", "\tstart/whitespace", "whitespace/end\t"]),
        (
            ["", "# mixed styles", r"re:(?i)BAR|ME$", "", "*whitespace*", "fm:*/something00*"],
            ["more/data"],
        ),
        ([r"  re:^\s  "], ["data/something00.txt", "more/data", "home", "whitespace/end\t"]),
        (
            [r"  re:\s$  "],
            ["data/something00.txt", "more/data", "home", " #/wsfoobar", "\tstart/whitespace"],
        ),
        (["pp:./"], ALL),
        (["pp:/"], []),
        (["pp:aaabbb"], ALL),
        (["pp:/data", "pp: #/", "pp:\tstart", "pp:/whitespace"], ["more/data", "home"]),
        (["/nomatch", "/more/*"], [p for p in EXCL_FILES if p != "more/data"]),
        (["/more/*", "/nomatch"], [p for p in EXCL_FILES if p != "more/data"]),
    ],
)
def test_exclude_file(lines: list[str], kept: list[str] | None) -> None:
    matcher = PatternMatcher(fallback=True)
    matcher.add_rules(load_exclude_file(io.StringIO("\n".join(lines))))
    assert [p for p in EXCL_FILES if matcher.match(p)] == expect(kept, EXCL_FILES)


INCLEXCL_FILES = [
    "data",
    "data/something00.txt",
    "data/subdir/something01.txt",
    "home",
    "home/leo",
    "home/leo/t",
    "home/other",
]
ALL_HOME = ["home", "home/leo", "home/leo/t", "home/other"]


@pytest.mark.parametrize(
    ("lines", "kept"),
    [
        ([], ALL),
        (["- *"], []),
        # sh: is the default, so '*' does not match '/'
        (["-*/something0?.txt"], ["data", "data/subdir/something01.txt", *ALL_HOME]),
        (["-fm:*/something0?.txt"], ["data", *ALL_HOME]),
        (["+/*/something0?.txt", "-/data"], ["data/something00.txt", *ALL_HOME]),
        (["+fm:*/something00.txt", "-/data"], ["data/something00.txt", *ALL_HOME]),
        # include home/leo and exclude the rest of home:
        (["+/home/leo", "-/home/*"], [*INCLEXCL_FILES[:3], "home", "home/leo", "home/leo/t"]),
        # wrong order: home/leo is already excluded by -/home/*
        (["-/home/*", "+/home/leo"], [*INCLEXCL_FILES[:3], "home"]),
        (["+fm:/home/leo", "-/home/"], [*INCLEXCL_FILES[:3], "home", "home/leo", "home/leo/t"]),
    ],
)
def test_patterns_file_first_match_wins(lines: list[str], kept: list[str] | None) -> None:
    _, rules = load_pattern_file(io.StringIO("\n".join(lines)))
    matcher = PatternMatcher(fallback=True)
    matcher.add_rules(rules)
    assert [p for p in INCLEXCL_FILES if matcher.match(p)] == expect(kept, INCLEXCL_FILES)


def test_decide_reports_recursion() -> None:
    matcher = PatternMatcher()
    matcher.add_rules(
        [
            parse_inclexcl_line("- cache"),
            parse_inclexcl_line("! proc"),
            parse_inclexcl_line("+ pf:keep"),
            parse_inclexcl_line("! pf:skip"),
            parse_exclude_pattern("tmp"),
        ]
    )
    assert matcher.decide("cache") == Decision(included=False, recurse_dir=True)
    assert matcher.decide("/proc") == Decision(included=False, recurse_dir=False)
    assert matcher.decide("keep") == Decision(included=True, recurse_dir=True)
    assert matcher.decide("skip") == Decision(included=False, recurse_dir=False)
    assert matcher.decide(b"tmp/x") == Decision(included=False, recurse_dir=False)
    assert matcher.decide("other") == Decision(included=True, recurse_dir=True)
    assert PatternMatcher(fallback=False).decide("x") == Decision(included=False, recurse_dir=True)


def test_path_full_patterns_ignore_order_and_last_one_wins() -> None:
    matcher = PatternMatcher()
    matcher.add_rules(load_pattern_file(["- home", "+ pf:home/a", "- pf:home/b", "+ pf:home/b"])[1])
    assert matcher.match("home/a")  # pf: is looked up before the earlier '- home'
    assert matcher.match("home/b")  # the later pf: for the same path replaced the first
    assert not matcher.match("home/c")


def test_add_with_action() -> None:
    matcher = PatternMatcher(fallback=False)
    matcher.add([parse_pattern("re:^a"), parse_pattern("sh:b")], Action.INCLUDE)
    matcher.add([parse_pattern("re:^a")], Action.EXCLUDE)
    assert [p for p in ["a1", "b", "b/c", "c"] if matcher.match(p)] == ["a1", "b", "b/c"]
    assert not matcher.empty()
    assert PatternMatcher().empty()


def walk_create(tree: dict[str, list[str]], root: str, matcher: PatternMatcher) -> dict[str, str]:
    """Borg 1.4's create recursion (archiver._rec_walk) over an in-memory tree.

    Returns path -> 'a' (archived) or 'x' (excluded, as ``--list`` shows it).
    """
    seen: dict[str, str] = {}

    def visit(path: str) -> None:
        decision = matcher.decide("/" + path)
        seen[path] = "a" if decision.included else "x"
        if path in tree and (decision.included or decision.recurse_dir):
            for child in tree[path]:
                visit(f"{path}/{child}")

    visit(root)
    return seen


DOC_TREE = {
    "t": ["home", "proc"],
    "t/home": ["alice", "bobby", "susan"],
    "t/home/alice": [".cache", "Downloads", "f"],
    "t/home/alice/.cache": ["c"],
    "t/home/alice/Downloads": [],
    "t/home/bobby": ["other", "specialfile.txt"],
    "t/home/susan": [".cache", "docs"],
    "t/home/susan/.cache": ["x"],
    "t/home/susan/docs": ["a"],
    "t/proc": ["1"],
    "t/proc/1": ["status"],
}

DOC_PATTERNS = """\
# "sh:" pattern style is the default, so the following line is not needed:
P sh
R /t
# can be rebuild
- t/home/*/.cache
# they're downloads for a reason
- t/home/*/Downloads
# susan is a nice person
# include susans home
+ t/home/susan
# also back up this exact file
+ pf:t/home/bobby/specialfile.txt
# don't backup the other home directories
- t/home/*
# don't even look in /proc
! t/proc
"""


def test_create_walk_of_the_documented_patterns_file() -> None:
    """Same result as `borg create --list --dry-run --patterns-from` with borg 1.4.1."""
    roots, rules = load_pattern_file(io.StringIO(DOC_PATTERNS))
    assert roots == ["/t"]
    matcher = PatternMatcher(fallback=True)
    matcher.add_rules(rules)
    seen = walk_create(DOC_TREE, "t", matcher)
    assert sorted(p for p, s in seen.items() if s == "a") == [
        "t",
        "t/home",
        "t/home/bobby/specialfile.txt",
        "t/home/susan",
        "t/home/susan/docs",
        "t/home/susan/docs/a",
    ]
    # excluded dirs are still descended into ('-'), but 't/proc' is not ('!')
    assert sorted(p for p, s in seen.items() if s == "x") == [
        "t/home/alice",
        "t/home/alice/.cache",
        "t/home/alice/.cache/c",
        "t/home/alice/Downloads",
        "t/home/alice/f",
        "t/home/bobby",
        "t/home/bobby/other",
        "t/home/susan/.cache",
        "t/home/susan/.cache/x",
        "t/proc",
    ]


@pytest.mark.parametrize(
    ("exclude", "excluded"),
    [
        # Exclude '/home/user/file.o' but not '/home/user/file.odt':
        ("*.o", ["home/user/file.o"]),
        # Exclude 'home/user/junk' and 'home/user/subdir/junk', not 'importantjunk' or 'etc/junk'
        ("home/*/junk", ["home/user/junk", "home/user/junk/f", "home/user/subdir/junk"]),
        # Exclude the contents of 'home/user/cache' but not the directory itself:
        ("home/user/cache/", ["home/user/cache/important"]),
        # The contents of directories in '/home' are not backed up when their name ends in '.tmp'
        (r"re:^home/[^/]+\.tmp/", ["home/x.tmp/f"]),
        ("sh:home/*/.thumbnails", ["home/user/.thumbnails", "home/user/.thumbnails/t"]),
    ],
)
def test_documented_exclude_examples(exclude: str, excluded: list[str]) -> None:
    paths = [
        "home/user/file.o",
        "home/user/file.odt",
        "home/user/junk",
        "home/user/junk/f",
        "home/user/subdir/junk",
        "home/user/importantjunk",
        "etc/junk",
        "home/user/cache",
        "home/user/cache/important",
        "home/x.tmp",
        "home/x.tmp/f",
        "home/user/.thumbnails",
        "home/user/.thumbnails/t",
    ]
    matcher = PatternMatcher()
    matcher.add_rules([parse_exclude_pattern(exclude)])
    assert [p for p in paths if not matcher.match("/" + p)] == excluded


# --- extract: PATH arguments and patterns -------------------------------------

ARCHIVE = [
    "t",
    "t/home",
    "t/home/alice",
    "t/home/alice/f",
    "t/home/bobby",
    "t/home/bobby/other",
    "t/home/susan",
    "t/home/susan/.cache",
    "t/home/susan/.cache/x",
    "t/home/susan/docs",
    "t/home/susan/docs/a",
]


def test_extract_paths_select_and_excludes_come_first() -> None:
    """`borg extract --exclude t/home/susan/.cache ARCHIVE t/home/susan 'sh:t/*/alice/**'
    nothere pf:t/nothere2` with borg 1.4.1 extracts exactly these."""
    matcher = build_matcher(
        [parse_exclude_pattern("t/home/susan/.cache")],
        ["t/home/susan", "sh:t/*/alice/**", "nothere", b"pf:t/nothere2"],
    )
    assert [p for p in ARCHIVE if matcher.match(p)] == [
        "t/home/alice",
        "t/home/alice/f",
        "t/home/susan",
        "t/home/susan/docs",
        "t/home/susan/docs/a",
    ]
    # Borg warns "Include pattern 'nothere' never matched."; hoard also counts pf:
    assert [str(p) for p in matcher.get_unmatched_include_patterns()] == ["nothere", "t/nothere2"]


def test_extract_include_pattern_before_exclude() -> None:
    """`borg extract --pattern=+t/home/alice/f --pattern=-t/home/alice ARCHIVE t/home`."""
    rules = [parse_inclexcl_line("+t/home/alice/f"), parse_inclexcl_line("-t/home/alice")]
    matcher = build_matcher(rules, ["t/home"])
    assert [p for p in ARCHIVE if matcher.match(p)] == [
        "t/home",
        "t/home/alice/f",
        *ARCHIVE[4:],
    ]
    assert matcher.get_unmatched_include_patterns() == []


def test_extract_without_paths_selects_all_not_excluded() -> None:
    matcher = build_matcher([parse_exclude_pattern("t/home/susan")], [])
    assert matcher.fallback
    assert [p for p in ARCHIVE if matcher.match(p)] == ARCHIVE[:6]
    assert build_matcher([], []).empty()


def test_pf_include_path_counts_as_matched() -> None:
    matcher = build_matcher([], ["pf:t/home/bobby/other"])
    assert [p for p in ARCHIVE if matcher.match(p)] == ["t/home/bobby/other"]
    assert matcher.get_unmatched_include_patterns() == []
