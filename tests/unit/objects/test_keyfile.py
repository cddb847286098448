"""Key-file text format, atomic writing, lookup by header."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hoard.objects.keyfile import (
    LINE_LENGTH,
    MalformedKeyTextError,
    find_key_file,
    format_key_text,
    parse_key_text,
    write_key_file,
)

REPO_ID = bytes(range(32))
BLOB = os.urandom(300)


def test_text_format() -> None:
    text = format_key_text(REPO_ID, BLOB)
    lines = text.splitlines()
    assert lines[0] == "HOARD KEY " + REPO_ID.hex()
    assert all(len(line) == LINE_LENGTH for line in lines[1:-1])
    assert 0 < len(lines[-1]) <= LINE_LENGTH
    assert text.endswith("\n")
    assert parse_key_text(text) == (REPO_ID, BLOB)


def test_parse_tolerates_crlf_and_rewrapping() -> None:
    text = format_key_text(REPO_ID, BLOB)
    body = "".join(text.splitlines()[1:])
    rewrapped = f"HOARD KEY {REPO_ID.hex()}\r\n" + "\r\n".join(
        body[i : i + 20] for i in range(0, len(body), 20)
    )
    assert parse_key_text(rewrapped) == (REPO_ID, BLOB)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "BORG_KEY " + REPO_ID.hex() + "\nAAAA\n",
        "HOARD KEY " + REPO_ID.hex()[:-2] + "\nAAAA\n",
        "HOARD KEY zz" + REPO_ID.hex()[2:] + "\nAAAA\n",
        "HOARD KEY " + REPO_ID.hex() + "\n",
        "HOARD KEY " + REPO_ID.hex() + "\n!!!not base64!!!\n",
        "HOARD KEY " + REPO_ID.hex() + "\nAAA\n",
    ],
)
def test_parse_garbage(text: str) -> None:
    with pytest.raises(MalformedKeyTextError):
        parse_key_text(text)


def test_write_is_private_and_atomic(tmp_path: Path) -> None:
    keys_dir = tmp_path / "config" / "keys"
    path = keys_dir / REPO_ID.hex()
    write_key_file(path, "first\n")
    write_key_file(path, "second\n")
    assert path.read_text() == "second\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert os.listdir(keys_dir) == [REPO_ID.hex()]


def test_find_by_name_and_after_rename(tmp_path: Path) -> None:
    text = format_key_text(REPO_ID, BLOB)
    write_key_file(tmp_path / REPO_ID.hex(), text)
    assert find_key_file(tmp_path, REPO_ID) == tmp_path / REPO_ID.hex()
    (tmp_path / REPO_ID.hex()).rename(tmp_path / "my-laptop.key")
    assert find_key_file(tmp_path, REPO_ID) == tmp_path / "my-laptop.key"


def test_find_skips_other_files(tmp_path: Path) -> None:
    other_id = b"\x07" * 32
    write_key_file(tmp_path / "a", format_key_text(other_id, BLOB))
    (tmp_path / "b").write_bytes(b"\xff\xfe binary junk")
    (tmp_path / "c").mkdir()
    os.mkfifo(tmp_path / "d")  # opening a FIFO would block the lookup
    (tmp_path / REPO_ID.hex()).write_text("renamed away, now garbage\n")
    assert find_key_file(tmp_path, REPO_ID) is None
    write_key_file(tmp_path / "e", format_key_text(REPO_ID, BLOB))
    assert find_key_file(tmp_path, REPO_ID) == tmp_path / "e"
    assert find_key_file(tmp_path, other_id) == tmp_path / "a"


def test_find_in_missing_directory(tmp_path: Path) -> None:
    assert find_key_file(tmp_path / "nope", REPO_ID) is None
    (tmp_path / "file").write_text("x")
    assert find_key_file(tmp_path / "file", REPO_ID) is None
