"""Borg's ``{placeholder}`` expansion in archive names, repository URLs,
``--prefix``/``--glob-archives``, ``--comment`` and ``--remote-path``.

Placeholders (Borg 1.4, ``borg help placeholders``): ``{hostname}`` (short),
``{fqdn}``, ``{reverse-fqdn}``, ``{now}`` (local time), ``{utcnow}``,
``{user}``, ``{pid}``, ``{borgversion}``, ``{borgmajor}``, ``{borgminor}``,
``{borgpatch}``; also ``{unixtime}`` and ``{uuid4}`` (in Borg 1.4's code,
not its help) and hoard's own ``{hoardversion}``. ``{now}`` and ``{utcnow}``
default to ``%Y-%m-%dT%H:%M:%S`` (ISO 8601 without fraction or zone) and
take any strftime format after a colon (``{now:%Y-%m-%d}``); the others take
ordinary format specs (``{pid:08d}``). ``{{`` and ``}}`` are literal braces.

The syntax is :meth:`str.format_map`, restricted as Borg restricts it:
every field must be a known name, without ``!conversion``, attribute or
index access (``{now.year}`` is rejected, so nothing but the listed values
is reachable). The values come from a :class:`PlaceholderContext`; the
clock is never read here, so one archive name is expanded with one instant
and tests are deterministic.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from string import Formatter

import hoard
from hoard.errors import InvalidPlaceholder, PlaceholderError

ISO_FORMAT_NO_USECS = "%Y-%m-%dT%H:%M:%S"

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


class _Timestamp:
    """A datetime whose empty format spec means ISO 8601 to the second (Borg's default)."""

    __slots__ = ("_dt",)

    def __init__(self, dt: datetime) -> None:
        self._dt = dt

    def __format__(self, spec: str) -> str:
        return format(self._dt, spec or ISO_FORMAT_NO_USECS)


@dataclass(frozen=True)
class PlaceholderContext:
    """The values placeholders expand to.

    ``now`` must be timezone-aware; ``{now}`` shows it in ``local_timezone``
    (None: the system's local zone, as Borg) and ``{utcnow}`` in UTC.
    ``borg_version`` is the Borg version hoard reports compatibility with
    (``{borgversion}`` etc.; wrappers such as borgmatic test it), a string
    starting with ``MAJOR.MINOR.PATCH``.
    """

    now: datetime
    hostname: str
    fqdn: str
    user: str
    pid: int
    borg_version: str
    hoard_version: str
    uuid4: str
    local_timezone: tzinfo | None = None

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("PlaceholderContext.now must be timezone-aware")
        _version_parts(self.borg_version)

    @classmethod
    def from_system(
        cls,
        now: datetime,
        *,
        borg_version: str,
        hostname: str | None = None,
        user: str | None = None,
    ) -> PlaceholderContext:
        """Gather host name, FQDN, user name, pid and a fresh UUID from this machine.

        ``hostname`` and ``user`` replace this machine's (Borg's
        BORG_HOSTNAME and BORG_USERNAME; the FQDN stays the machine's).
        The FQDN lookup may ask DNS, as Borg's does at start-up.
        """
        full_hostname = socket.gethostname()
        return cls(
            now=now,
            hostname=hostname or short_hostname(full_hostname),
            fqdn=_getfqdn(full_hostname),
            user=user or _os_user_name(),
            pid=os.getpid(),
            borg_version=borg_version,
            hoard_version=hoard.__version__,
            uuid4=str(uuid.uuid4()),
        )

    def values(self) -> dict[str, object]:
        """The placeholder name -> value table used by :func:`expand_placeholders`."""
        major, minor, patch = _version_parts(self.borg_version)
        return {
            "hostname": self.hostname,
            "fqdn": self.fqdn,
            "reverse-fqdn": ".".join(reversed(self.fqdn.split("."))),
            "now": _Timestamp(self.now.astimezone(self.local_timezone)),
            "utcnow": _Timestamp(self.now.astimezone(UTC)),
            "unixtime": int(self.now.timestamp()),
            "user": self.user,
            "pid": self.pid,
            "uuid4": self.uuid4,
            "borgversion": self.borg_version,
            "borgmajor": major,
            "borgminor": f"{major}.{minor}",
            "borgpatch": f"{major}.{minor}.{patch}",
            "hoardversion": self.hoard_version,
        }


def expand_placeholders(text: str, context: PlaceholderContext) -> str:
    """Replace the placeholders in ``text``.

    Raises InvalidPlaceholder naming an unknown (or converted, or
    attribute-accessing) placeholder, PlaceholderError for any other misuse
    (a lone ``{``, an empty ``{}``, a format spec the value rejects).
    """
    values = context.values()
    _check_fields(text, text, values)
    try:
        return text.format_map(values)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise PlaceholderError(text, f"{type(exc).__name__}: {exc}") from None


def _check_fields(fragment: str, text: str, values: dict[str, object]) -> None:
    """Reject any field of ``fragment`` (and of nested format specs) Borg rejects."""
    try:
        fields = list(Formatter().parse(fragment))
    except ValueError as exc:
        raise PlaceholderError(text, f"{exc}; write '{{{{' or '}}}}' for a literal brace") from None
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        if name == "":
            raise PlaceholderError(
                text, "'{}' names no placeholder; write '{{}}' for literal braces"
            )
        if conversion is not None or name not in values:
            raise InvalidPlaceholder(name, text)
        if spec:
            _check_fields(spec, text, values)


def _version_parts(version: str) -> tuple[str, str, str]:
    """``("1", "4", "1")`` for ``"1.4.1"`` or ``"1.4.1rc2"``; ValueError otherwise."""
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"borg_version {version!r} is not MAJOR.MINOR.PATCH")
    major, minor, patch = match.groups()
    return major, minor, patch


def short_hostname(full: str | None = None) -> str:
    """This machine's host name up to the first dot: some systems put the FQDN
    into /etc/hostname; cut it like ``hostname --short`` (Borg)."""
    return (socket.gethostname() if full is None else full).split(".")[0]


def _getfqdn(hostname: str) -> str:
    """The canonical name of ``hostname``, or ``hostname`` if it cannot be resolved.

    Borg's patched ``socket.getfqdn`` (Python's may return an unrelated alias,
    https://bugs.python.org/issue5004): the AI_CANONNAME answer of getaddrinfo.
    """
    try:
        infos = socket.getaddrinfo(hostname, None, 0, socket.SOCK_DGRAM, 0, socket.AI_CANONNAME)
    except OSError:
        return hostname
    return next((info[3] for info in infos if info[3]), hostname)


def _os_user_name() -> str:
    """The name of the real user id, or the id as a string if it has no name (as Borg)."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
