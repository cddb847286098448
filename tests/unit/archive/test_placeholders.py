"""Borg's placeholders; expected values checked against borg 1.4.1's format_line."""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import socket
from datetime import UTC, datetime, timedelta, timezone

import pytest

import hoard
from hoard.archive.placeholders import PlaceholderContext, expand_placeholders
from hoard.errors import InputError, InvalidPlaceholder, PlaceholderError

IST = timezone(timedelta(hours=5, minutes=30))
NOW = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)
CTX = PlaceholderContext(
    now=NOW,
    hostname="web1",
    fqdn="web1.example.org",
    user="alice",
    pid=4242,
    borg_version="1.4.1",
    hoard_version="0.1.0",
    uuid4="3b241101-e2bb-4255-8caf-4136c566a962",
    local_timezone=IST,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("plain", "plain"),
        # {now} is local time (here +05:30, already the next day), ISO 8601 to the second
        ("{now}", "2024-03-01T05:29:58"),
        ("{utcnow}", "2024-02-29T23:59:58"),
        ("{now:%Y-%m-%d}", "2024-03-01"),
        ("{now:%Y-%m-%d_%H:%M:%S}", "2024-03-01_05:29:58"),
        ("{now:%z}", "+0530"),
        ("{utcnow:%H %Z %z}", "23 UTC +0000"),
        ("{utcnow:%Y-%m-%dT%H:%M:%S.%f}", "2024-02-29T23:59:58.123456"),
        ("{hostname}-{user}-{utcnow}", "web1-alice-2024-02-29T23:59:58"),
        ("{fqdn} {reverse-fqdn}", "web1.example.org org.example.web1"),
        ("{pid}", "4242"),
        ("{pid:08d}", "00004242"),
        ("{unixtime}", "1709251198"),
        ("{uuid4}", "3b241101-e2bb-4255-8caf-4136c566a962"),
        ("{borgversion} {borgmajor} {borgminor} {borgpatch}", "1.4.1 1 1.4 1.4.1"),
        ("{hoardversion}", "0.1.0"),
        # escapes
        ("{{literal_text}}", "{literal_text}"),
        ("{{{now:%Y}}}", "{2024}"),
        ("}}{{", "}{"),
        # a nested format spec may use placeholders, as in Borg
        ("{now:{user}}", "alice"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand_placeholders(text, CTX) == expected


def test_borg_version_with_suffix() -> None:
    ctx = dataclasses.replace(CTX, borg_version="1.0.8rc1")
    assert expand_placeholders("{borgversion}|{borgminor}|{borgpatch}", ctx) == "1.0.8rc1|1.0|1.0.8"


def test_reverse_fqdn_of_single_label() -> None:
    ctx = dataclasses.replace(CTX, fqdn="localhost")
    assert expand_placeholders("{reverse-fqdn}", ctx) == "localhost"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("{nope}", "nope"),
        ("backup-{hostnme}-{now}", "hostnme"),
        ("{now!r}", "now"),
        ("{now.year}", "now.year"),
        ("{now.__class__.__init__.__globals__}", "now.__class__.__init__.__globals__"),
        ("{user[0]}", "user[0]"),
        ("{0}", "0"),
        ("{now:{bad}}", "bad"),
    ],
)
def test_unknown_placeholder_is_named(text: str, name: str) -> None:
    with pytest.raises(InvalidPlaceholder) as info:
        expand_placeholders(text, CTX)
    assert isinstance(info.value, InputError)
    assert str(info.value) == f'Invalid placeholder "{name}" in string: {text}'
    assert info.value.modern_exit_code == 6


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "Single '{' encountered"),
        ("a}b", "Single '}' encountered"),
        ("{now:%Y}}", "Single '}' encountered"),
        ("{}", "names no placeholder"),
        ("{pid:%Y}", "Invalid format specifier"),
        ("{hostname:{pid:{user}}}", "Max string recursion exceeded"),
    ],
)
def test_malformed_text(text: str, reason: str) -> None:
    with pytest.raises(PlaceholderError) as info:
        expand_placeholders(text, CTX)
    assert not isinstance(info.value, InvalidPlaceholder)
    assert info.value.modern_exit_code == 5
    assert reason in str(info.value)
    assert repr(text) in str(info.value)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        dataclasses.replace(CTX, now=datetime(2024, 1, 1))


def test_borg_version_must_be_numeric() -> None:
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH"):
        dataclasses.replace(CTX, borg_version="1.4")


def test_system_local_timezone_by_default() -> None:
    ctx = dataclasses.replace(CTX, local_timezone=None)
    assert expand_placeholders("{now}", ctx) == NOW.astimezone().strftime("%Y-%m-%dT%H:%M:%S")


def test_from_system() -> None:
    ctx = PlaceholderContext.from_system(NOW, borg_version="1.4.1")
    assert ctx.now is NOW
    assert ctx.pid == os.getpid()
    assert ctx.hoard_version == hoard.__version__
    assert ctx.hostname == socket.gethostname().split(".")[0]
    assert ctx.fqdn
    assert ctx.user == pwd.getpwuid(os.getuid()).pw_name
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", ctx.uuid4
    )
    assert expand_placeholders("{utcnow}", ctx) == "2024-02-29T23:59:58"
    assert PlaceholderContext.from_system(NOW, borg_version="1.4.1").uuid4 != ctx.uuid4
