"""The paper key format against Borg 1.4.5's own ``borg key export --paper`` output."""

from __future__ import annotations

import pytest

from hoard.objects.paperkey import (
    PaperLineError,
    matches_repository,
    paper_text,
    parse_data_line,
    parse_id_line,
    whole_matches,
)

# borg 1.4.5: borg init -e repokey small; borg key export --paper small
# (borg config small id: 34611cc33faa6050e2119c8c80ab41bc73bcd7603ff273be4a672cf1049c0631)
BORG_REPOSITORY_ID = bytes.fromhex(
    "34611cc33faa6050e2119c8c80ab41bc73bcd7603ff273be4a672cf1049c0631"
)
BORG_PAPER = """\
To restore key use borg key import --paper /path/to/repo

BORG PAPER KEY v1
id: 20 / 34611c c33faa 6050e2 / 82ad12 4c5390 - 16
 1: 86a961 6c676f 726974 686da6 736861 323536 - 14
 2: a46461 7461da 00de8a 0ba552 013756 984417 - 81
 3: 217e7e 91577a 78f606 43a7b4 e0ce11 da2cc7 - 9e
 4: 152393 1fe6fc e0f580 11f521 7d860e fdb63c - a8
 5: 0aa6c2 05b4d4 3d2191 69a967 fc839c 1d4731 - be
 6: b7c2b0 588d7f 35706f f93dd7 9af8c5 6a0080 - 5d
 7: 0850f3 d3013d cb8b8f 06b0a6 74ef46 cc053c - 34
 8: b9433a ca46c1 0bf6f0 fc446b ddc504 409329 - c2
 9: e7b829 53cb44 0e6125 4ac1cb fdaa66 8780b0 - 0f
10: d6e414 61f6fa 38ec47 f6e3fb 3438ea fbb567 - 28
11: 70e923 02a64f d46a41 a86021 6ede0a 7c24ae - 3d
12: b3b7d0 0db35d 733b86 2f9e29 95ebbb 9d1ce1 - 29
13: eb61fc 86fc96 99ca7d 50e546 ed1021 45fb6a - ab
14: 1f2d65 0c5dd6 25cbc1 8039ac d00aa4 686173 - ad
15: 68da00 209f3a a076f4 9e47fd 887e14 cdffc2 - ff
16: 3e5de3 99c730 994ce2 bc6570 e6bbf1 296a54 - 9f
17: aa6974 657261 74696f 6e73ce 000186 a0a473 - 15
18: 616c74 da0020 b265e5 26bf4f d997a2 da6b02 - 9c
19: ba94ca 4f09a9 364258 052c88 de935d da2a9f - 5d
20: 9799a7 766572 73696f 6e01 - c3
"""


def borg_lines() -> tuple[str, list[str]]:
    lines = BORG_PAPER.splitlines()
    return lines[3], lines[4:]


def test_hoard_writes_borgs_lines_for_the_same_blob() -> None:
    id_line, data_lines = borg_lines()
    header = parse_id_line(id_line)
    blob = b"".join(parse_data_line(i, line) for i, line in enumerate(data_lines, 1))
    assert header.lines == len(data_lines)
    assert matches_repository(header, BORG_REPOSITORY_ID) and whole_matches(header, blob)
    ours = paper_text(BORG_REPOSITORY_ID, blob).splitlines()
    assert ours[0] == "To restore key use hoard key import --paper /path/to/repo"
    assert ours[2] == "HOARD PAPER KEY v1"
    assert ours[3:] == BORG_PAPER.splitlines()[3:]


def test_typing_errors_are_caught_on_their_line() -> None:
    id_line, data_lines = borg_lines()
    line = data_lines[2]
    typo = line.replace(line[5], "f" if line[5] != "f" else "e", 1)
    with pytest.raises(PaperLineError, match="try line 3 again"):
        parse_data_line(3, typo)
    with pytest.raises(PaperLineError, match="try same line again"):
        parse_id_line(id_line.replace("20", "21", 1))
    with pytest.raises(PaperLineError, match="exactly one '-'"):
        parse_data_line(1, "86a961 6c676f")
    with pytest.raises(PaperLineError, match="only characters 0-9"):
        parse_data_line(1, "zz - 00")
    with pytest.raises(PaperLineError, match="three '/'"):
        parse_id_line("20 / 34611c - 16")


def test_lines_may_be_typed_with_or_without_their_prefix_and_spaces() -> None:
    id_line, data_lines = borg_lines()
    assert parse_id_line(id_line) == parse_id_line(id_line.removeprefix("id: ").replace(" ", ""))
    first = data_lines[0]
    assert parse_data_line(1, first) == parse_data_line(1, first.split(": ", 1)[1].upper())


def test_a_blob_of_another_repository_or_incomplete_is_noticed() -> None:
    id_line, data_lines = borg_lines()
    header = parse_id_line(id_line)
    assert not matches_repository(header, bytes(32))
    partial = b"".join(parse_data_line(i, line) for i, line in enumerate(data_lines[:-1], 1))
    assert not whole_matches(header, partial)
