"""Borg 1.x repository URLs; the table is Borg's documented examples and test
suite, each result checked against borg 1.4.1's Location."""

from __future__ import annotations

import os

import pytest

from hoard.errors import InputError, LocationError
from hoard.storage.location import Location


def loc(
    proto: str,
    path: str,
    *,
    user: str | None = None,
    host: str | None = None,
    port: int | None = None,
    archive: str | None = None,
) -> Location:
    assert proto in ("file", "ssh")
    return Location(
        proto="ssh" if proto == "ssh" else "file",
        user=user,
        host=host,
        port=port,
        path=path,
        archive=archive,
    )


SSH = "ssh"
FILE = "file"

CASES = [
    # ssh:// URLs
    (
        "ssh://user@host:1234/some/path::archive",
        loc(SSH, "/some/path", user="user", host="host", port=1234, archive="archive"),
    ),
    ("ssh://user@host:1234/some/path", loc(SSH, "/some/path", user="user", host="host", port=1234)),
    ("ssh://user@host/some/path", loc(SSH, "/some/path", user="user", host="host")),
    ("ssh://host/some/path", loc(SSH, "/some/path", host="host")),
    (
        "ssh://user@host:2222/./rel/path",
        loc(SSH, "/./rel/path", user="user", host="host", port=2222),
    ),
    ("ssh://user@host/~/some/path", loc(SSH, "/~/some/path", user="user", host="host")),
    ("ssh://user@host/~user/some/path", loc(SSH, "/~user/some/path", user="user", host="host")),
    ("ssh://user@[::1]:22/path", loc(SSH, "/path", user="user", host="::1", port=22)),
    (
        "ssh://user@[::]:1234/some/path::archive",
        loc(SSH, "/some/path", user="user", host="::", port=1234, archive="archive"),
    ),
    (
        "ssh://user@[2001:db8::c0:ffee]/some/path",
        loc(SSH, "/some/path", user="user", host="2001:db8::c0:ffee"),
    ),
    (
        "ssh://user@[2001:db8::192.0.2.1]:1234/p",
        loc(SSH, "/p", user="user", host="2001:db8::192.0.2.1", port=1234),
    ),
    ("ssh://host/a/../b", loc(SSH, "/b", host="host")),
    ("ssh://host/./a/../b", loc(SSH, "/./b", host="host")),
    (
        "ssh://host/path::2016-12-31@23:59:59",
        loc(SSH, "/path", host="host", archive="2016-12-31@23:59:59"),
    ),
    ("ssh://host:0/p", loc(SSH, "/p", host="host")),  # Borg: port 0 is "no port"
    # scp style
    (
        "user@host:/some/path::archive",
        loc(SSH, "/some/path", user="user", host="host", archive="archive"),
    ),
    ("user@host:/some/path", loc(SSH, "/some/path", user="user", host="host")),
    ("user@host:path", loc(SSH, "path", user="user", host="host")),
    ("host:path", loc(SSH, "path", host="host")),
    ("host:~/p", loc(SSH, "~/p", host="host")),
    ("host:~user/some/path::archive", loc(SSH, "~user/some/path", host="host", archive="archive")),
    (
        "user@[::]:/some/path::archive",
        loc(SSH, "/some/path", user="user", host="::", archive="archive"),
    ),
    (
        "user@[2001:db8::c0:ffee]:/some/path",
        loc(SSH, "/some/path", user="user", host="2001:db8::c0:ffee"),
    ),
    (
        "host:path::2016-12-31@23:59:59",
        loc(SSH, "path", host="host", archive="2016-12-31@23:59:59"),
    ),
    # local
    ("/some/absolute/path::archive", loc(FILE, "/some/absolute/path", archive="archive")),
    ("/some/absolute/path", loc(FILE, "/some/absolute/path")),
    ("some/relative/path::archive", loc(FILE, "some/relative/path", archive="archive")),
    ("path", loc(FILE, "path")),
    ("/a/./b/../c", loc(FILE, "/a/c")),
    ("file:///some/path::archive", loc(FILE, "/some/path", archive="archive")),
    ("file:///some/path", loc(FILE, "/some/path")),
    ("file:////server/share/path::archive", loc(FILE, "//server/share/path", archive="archive")),
    ("file://some/path::archive", loc(FILE, "some/path", archive="archive")),
    # colons in local paths and archive names
    ("/abs/path:w:cols::arch:col", loc(FILE, "/abs/path:w:cols", archive="arch:col")),
    ("/abs/path:with:colons", loc(FILE, "/abs/path:with:colons")),
    ("./a:b", loc(FILE, "a:b")),
    ("repo::a::b", loc(FILE, "repo", archive="a::b")),
    # ... but "name:" before any "/" is a host, as in Borg
    ("a:b", loc(SSH, "b", host="a")),
    ("a:b::c", loc(SSH, "b", host="a", archive="c")),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] or "empty" for c in CASES])
def test_parse(text: str, expected: Location) -> None:
    assert Location.parse(text) == expected


@pytest.mark.parametrize("text", [text for text, _ in CASES if "::" not in text])
def test_canonical_path_round_trips(text: str) -> None:
    """The canonical form denotes the same place (scp paths gain their /./ or /~ marker)."""
    location = Location.parse(text)
    again = Location.parse(location.canonical_path())
    assert again.canonical_path() == location.canonical_path()
    assert (again.proto, again.user, again.host, again.port) == (
        location.proto,
        location.user,
        location.host,
        location.port,
    )


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("some/path::archive", "some/path"),
        ("./a:b/c", "./a:b/c"),
        ("/a:b/c", "/a:b/c"),
        ("host:some/path::archive", "ssh://host/./some/path"),
        ("host:~user/some/path", "ssh://host/~user/some/path"),
        ("user@host:/abs", "ssh://user@host/abs"),
        ("ssh://user@host:1234/some/path::archive", "ssh://user@host:1234/some/path"),
        ("ssh://user@[2001:db8::1]:22/p", "ssh://user@[2001:db8::1]:22/p"),
        ("user@[::1]:rel", "ssh://user@[::1]/./rel"),
    ],
)
def test_canonical_path(text: str, canonical: str) -> None:
    assert Location.parse(text).canonical_path() == canonical


def test_str_for_messages() -> None:
    assert str(Location.parse("host:repo::arch-1")) == "ssh://host/./repo::arch-1"
    assert str(Location.parse("/srv/repo")) == "/srv/repo"
    assert str(Location.parse("/srv/repo::a")) == "/srv/repo::a"


def test_omit_archive() -> None:
    location = Location.parse("ssh://user@host:1234/repos/x::archive")
    assert location.omit_archive() == Location.parse("ssh://user@host:1234/repos/x")


def test_tilde_is_expanded_for_local_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    assert Location.parse("~/backups/repo::a") == loc(
        FILE, "/home/tester/backups/repo", archive="a"
    )
    assert Location.parse("~") == loc(FILE, "/home/tester")
    assert Location.parse("~root/repo").path == os.path.expanduser("~root/repo")
    # remote ~ is resolved by the server
    assert Location.parse("host:~/repo").path == "~/repo"


DEFAULTS = [
    "ssh://user@host:1234/some/path",
    "user@host:/some/path",
    "file:///some/path",
    "/abs/path:w:cols",
    "some/relative/path",
]


@pytest.mark.parametrize("default_repo", DEFAULTS)
def test_default_repository(default_repo: str) -> None:
    repository = Location.parse(default_repo)
    assert Location.parse("::archive", default_repo=default_repo) == Location(
        proto=repository.proto,
        user=repository.user,
        host=repository.host,
        port=repository.port,
        path=repository.path,
        archive="archive",
    )
    assert Location.parse("::", default_repo=default_repo) == repository
    assert Location.parse("", default_repo=default_repo) == repository
    # a repository given explicitly wins over the default
    assert Location.parse("/other::a", default_repo=default_repo) == loc(
        FILE, "/other", archive="a"
    )


def test_archive_of_default_repo_comes_from_text_only() -> None:
    assert Location.parse("", default_repo="/r::envarch") == loc(FILE, "/r")
    assert Location.parse("::a:b", default_repo="/r::envarch") == loc(FILE, "/r", archive="a:b")


@pytest.mark.parametrize(
    ("text", "default_repo", "reason"),
    [
        ("", None, "no repository given and BORG_REPO is not set"),
        ("::", None, "no repository given and BORG_REPO is not set"),
        ("::archive", None, "no repository given and BORG_REPO is not set"),
        ("repo::", None, "the archive name after '::' is empty"),
        ("/some/path/to/repo::name_with/slashes", None, "archive names must not contain '/'"),
        ("::name_with/slashes", "/r", "archive names must not contain '/'"),
        # the 2nd colon is wrong; correct is ssh://user@host/path
        ("ssh://user@host:/path", None, "expected ssh://[USER@]HOST[:PORT]/PATH"),
        ("ssh://host", None, "expected ssh://"),
        ("ssh://host/", None, "expected ssh://"),
        ("ssh://user@host:22", None, "expected ssh://"),
        (":x", None, "expected PATH, [USER@]HOST:PATH"),
        ("//double/slash", None, "expected PATH"),
    ],
)
def test_invalid(text: str, default_repo: str | None, reason: str) -> None:
    with pytest.raises(LocationError) as info:
        Location.parse(text, default_repo=default_repo)
    assert isinstance(info.value, InputError)
    assert str(info.value).startswith(f'Invalid location format: "{text}" (')
    assert reason in str(info.value)


def test_invalid_default_repository_is_named() -> None:
    with pytest.raises(LocationError) as info:
        Location.parse("::a", default_repo="repo::")
    assert str(info.value).startswith('Invalid location format: "repo::" (from BORG_REPO: ')


def test_location_is_immutable_and_hashable() -> None:
    location = Location.parse("/r::a")
    with pytest.raises(AttributeError):
        location.path = "/x"  # type: ignore[misc]
    assert len({location, Location.parse("/r::a"), location.omit_archive()}) == 2
