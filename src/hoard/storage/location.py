"""Repository locations in Borg 1.x syntax: ``REPOSITORY[::ARCHIVE]``.

Accepted forms (Borg 1.4's ``Location`` regexes, checked side by side with
borg 1.4.1)::

    /abs/path            rel/path            ~/path (~user/path)
    file:///abs/path     file://rel/path (Borg's reading: the relative path "rel/path")
    [user@]host:path     (relative to the remote home)
    [user@]host:/abs     [user@]host:~/path   user@[::1]:/path
    ssh://[user@]host[:port]/abs/path
    ssh://[user@]host[:port]/./rel/path        (relative to the remote cwd)
    ssh://[user@]host[:port]/~/path            (relative to the remote home)
    ssh://user@[2001:db8::1]:22/path           (IPv6 in brackets)

each optionally followed by ``::ARCHIVE`` (an archive name must not contain
``/``). ``::ARCHIVE``, ``::`` and the empty string mean the default
repository (``BORG_REPO``, read by the caller and passed as
``default_repo``) with that archive or none; ``borg mount :: /mnt`` relies
on ``::``. Without a default repository they are an error.

Colons: a repository path may contain single colons, never ``::``. Anything
before the first ``:`` that contains no ``/`` is taken as ``[user@]host``, so
a local directory named ``a:b`` must be written ``./a:b`` or as an absolute
path, exactly as with Borg.

Differences from Borg, on purpose: a local path starting with ``~`` is
expanded to the home directory here (Borg would use a directory literally
named ``~`` in the current directory); remote ``~`` paths are left for the
server to resolve. Placeholders (``{hostname}``...) are expanded by the
caller before parsing (this layer knows nothing of them).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, replace
from typing import Literal

from hoard.errors import LocationError

# user must not contain "@", ":" or "/" ("@" separates it from the host).
_USER = r"(?:(?P<user>[^@:/]+)@)?"

# A host name or IPv4 address (no ":" or "/"), or an IPv6 address in brackets.
_HOST = r"(?P<host>(?!\[)[^:/]+(?<!\])|\[[0-9a-fA-F:.]+\])"

# Paths may contain single colons but never "::", which starts the archive.
_NO_DOUBLE_COLON = r"(?:[^:]|:(?!:))"
_SCP_PATH = rf"(?!:|//|ssh://)(?P<path>{_NO_DOUBLE_COLON}+)"
_FILE_PATH = rf"(?P<path>[^/]*/{_NO_DOUBLE_COLON}+)"
_ABS_PATH = rf"(?P<path>/{_NO_DOUBLE_COLON}+)"
_ARCHIVE = r"(?:::(?P<archive>[^/]+))?$"

_SSH_RE = re.compile(rf"(?P<proto>ssh)://{_USER}{_HOST}(?::(?P<port>\d+))?{_ABS_PATH}{_ARCHIVE}")
_FILE_RE = re.compile(rf"(?P<proto>file)://{_FILE_PATH}{_ARCHIVE}")
_SCP_RE = re.compile(rf"(?:{_USER}{_HOST}:)?{_SCP_PATH}{_ARCHIVE}")  # also local paths
_DEFAULT_REPO_RE = re.compile(rf"::$|{_ARCHIVE}")

_FORMS = (
    "expected PATH, [USER@]HOST:PATH, file:///PATH or ssh://[USER@]HOST[:PORT]/PATH, "
    "optionally followed by ::ARCHIVE"
)


@dataclass(frozen=True, kw_only=True)
class Location:
    """Where a repository (and optionally an archive in it) is.

    ``proto`` is ``"file"`` (local path) or ``"ssh"`` (run ``hoard serve``
    on ``host``). ``host`` has no IPv6 brackets. ``path`` is normalised;
    for ssh a leading ``/./`` means relative to the remote working
    directory, ``/~/`` or ``~`` relative to the remote home, and a path
    without leading ``/`` (scp style) is relative to the remote home too.
    """

    proto: Literal["file", "ssh"]
    user: str | None = None
    host: str | None = None
    port: int | None = None
    path: str
    archive: str | None = None

    @classmethod
    def parse(cls, text: str, *, default_repo: str | None = None) -> Location:
        """Parse ``REPOSITORY[::ARCHIVE]``, ``::ARCHIVE``, ``::`` or ``""``.

        ``default_repo`` (BORG_REPO) is used when ``text`` names no
        repository. Raises LocationError saying what is wrong.
        """
        location = _match(text)
        if location is not None:
            return location
        default = _DEFAULT_REPO_RE.match(text)
        if default is None:
            raise LocationError(text, _diagnose(text))
        if default_repo is None:
            raise LocationError(text, "no repository given and BORG_REPO is not set")
        repository = _match(default_repo)
        if repository is None:
            raise LocationError(default_repo, f"from BORG_REPO: {_diagnose(default_repo)}")
        return replace(repository, archive=default["archive"])

    def canonical_path(self) -> str:
        """The repository (no archive) as a path or ``ssh://`` URL; parses back to itself."""
        if self.proto == "file":
            # "a:b/c" would read as host "a"; "./a:b/c" is the same directory.
            first = self.path.split("/", 1)[0]
            return "./" + self.path if ":" in first else self.path
        if self.path.startswith("~"):
            path = "/" + self.path  # /~/x: x relative to the home directory
        elif not self.path.startswith("/"):
            path = "/./" + self.path  # /./x: x relative to the working directory
        else:
            path = self.path
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"ssh://{user}{host}{port}{path}"

    def omit_archive(self) -> Location:
        """The same repository without an archive."""
        return replace(self, archive=None)

    def __str__(self) -> str:
        """``canonical_path()`` plus ``::ARCHIVE``: the form used in messages."""
        suffix = f"::{self.archive}" if self.archive is not None else ""
        return self.canonical_path() + suffix


def _normpath(path: str) -> str:
    """``posixpath.normpath``, keeping a leading ``/./`` (the "relative to cwd" marker)."""
    relative = path.startswith("/./")
    path = posixpath.normpath(path)
    return "/." + path if relative else path


def _match(text: str) -> Location | None:
    """The Location ``text`` denotes, or None if no form matches."""
    match = _SSH_RE.match(text)
    if match is not None:
        port = int(match["port"]) if match["port"] else None
        return Location(
            proto="ssh",
            user=match["user"],
            host=_strip_brackets(match["host"]),
            port=port or None,  # Borg treats port 0 as "not given"
            path=_normpath(match["path"]),
            archive=match["archive"],
        )
    match = _FILE_RE.match(text) or _SCP_RE.match(text)
    if match is None:
        return None
    host = match.groupdict().get("host")
    if host is not None:
        return Location(
            proto="ssh",
            user=match["user"],
            host=_strip_brackets(host),
            path=_normpath(match["path"]),
            archive=match["archive"],
        )
    return Location(proto="file", path=_local_path(match["path"]), archive=match["archive"])


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


def _local_path(path: str) -> str:
    """Normalise a local repository path and expand a leading ``~``."""
    path = _normpath(path)
    return os.path.expanduser(path) if path.startswith("~") else path


def _diagnose(text: str) -> str:
    """Why ``text`` is not a location, for the error message."""
    if "::" in text:
        archive = text.split("::", 1)[1]
        if not archive:
            return "the archive name after '::' is empty"
        if "/" in archive:
            return "archive names must not contain '/'"
    if text.startswith("ssh://"):
        return "expected ssh://[USER@]HOST[:PORT]/PATH (an IPv6 address in brackets)"
    return _FORMS
