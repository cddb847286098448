"""Borg's paper key format: a key blob as hex lines a person can type back in.

``key export --paper`` prints, after a one-line reminder::

    HOARD PAPER KEY v1
    id: 20 / 990ac6 b2813b 412a8e / 50f7c8 296277 - 55
     1: 86a961 6c676f 726974 686da6 736861 323536 - 14
     ...

The id line holds the number of data lines, the first 18 hex digits of the
repository id, and the first 12 hex digits of SHA-256 over the whole blob;
each data line 18 bytes of the blob in hex. Every line ends with its own
checksum (2 hex digits of SHA-256: of the id line's text, of the line number
as 2 big-endian bytes and the line's bytes), so a typing error is caught on
the line where it happened. Apart from the first line's name, this is
Borg 1.4's format (``borg key export --paper``) line for line.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass

TITLE = "HOARD PAPER KEY v1"
BYTES_PER_LINE = 18
_REPO_ID_DIGITS = 18
_WHOLE_DIGITS = 12


class PaperLineError(ValueError):
    """A typed line that does not check; the message is what to tell the typist."""


def _digest(data: bytes, digits: int) -> str:
    return hashlib.sha256(data).hexdigest()[:digits]


def _grouped(text: str) -> str:
    """Hex digits in groups of six, as Borg prints them."""
    return " ".join(text[i : i + 6] for i in range(0, len(text), 6))


def paper_text(repository_id: bytes, blob: bytes) -> str:
    """The paper export of ``blob`` (the wrapped key) of ``repository_id``."""
    lines = (len(blob) + BYTES_PER_LINE - 1) // BYTES_PER_LINE
    repo = repository_id.hex()[:_REPO_ID_DIGITS]
    whole = _digest(blob, _WHOLE_DIGITS)
    id_data = f"{lines}/{repo}/{whole}"
    out = [
        "To restore key use hoard key import --paper /path/to/repo",
        "",
        TITLE,
        f"id: {lines:d} / {_grouped(repo)} / {_grouped(whole)} - "
        f"{_digest(id_data.encode('ascii'), 2)}",
    ]
    for index in range(1, lines + 1):
        part = blob[(index - 1) * BYTES_PER_LINE : index * BYTES_PER_LINE]
        out.append(f"{index:2d}: {_grouped(part.hex())} - {_line_checksum(index, part)}")
    return "\n".join(out) + "\n"


def _line_checksum(index: int, part: bytes) -> str:
    return _digest(index.to_bytes(2, "big") + part, 2)


@dataclass(frozen=True)
class PaperHeader:
    """What the id line says: how many data lines follow, and the whole blob's checksum."""

    lines: int
    repository_prefix: str
    whole_checksum: str


def _split(typed: str, prefix: str) -> tuple[str, str]:
    """``data - checksum`` without spaces; a copied line's own ``prefix:`` is allowed."""
    text = typed.replace(" ", "").replace("\t", "").lower()
    if text.startswith(prefix + ":"):
        text = text[len(prefix) + 1 :]
    if text.count("-") != 1:
        raise PaperLineError("each line must contain exactly one '-', try again")
    data, checksum = text.split("-")
    return data, checksum


def parse_id_line(typed: str) -> PaperHeader:
    """The id line, checked against its checksum; PaperLineError says what to retype."""
    data, checksum = _split(typed, "id")
    if data.count("/") != 2:
        raise PaperLineError("the id line must contain exactly three '/', try again")
    if _digest(data.encode("ascii", "replace"), 2) != checksum:
        raise PaperLineError("line checksum did not match, try same line again")
    count, repo, whole = data.split("/")
    try:
        lines = int(count)
    except ValueError:
        raise PaperLineError("the number of lines is not a number, try again") from None
    return PaperHeader(lines, repo, whole)


def parse_data_line(index: int, typed: str) -> bytes:
    """The bytes of data line ``index``, checked against its checksum."""
    data, checksum = _split(typed, str(index))
    try:
        part = binascii.unhexlify(data)
    except (binascii.Error, ValueError):
        raise PaperLineError("only characters 0-9 and a-f and '-' are valid, try again") from None
    if _line_checksum(index, part) != checksum:
        raise PaperLineError(f"line checksum did not match, try line {index} again")
    return part


def matches_repository(header: PaperHeader, repository_id: bytes) -> bool:
    return header.repository_prefix == repository_id.hex()[:_REPO_ID_DIGITS]


def whole_matches(header: PaperHeader, blob: bytes) -> bool:
    """Whether the typed lines together are the blob the id line promised."""
    return _digest(blob, _WHOLE_DIGITS) == header.whole_checksum
