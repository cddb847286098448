"""The key-file text format and where key files live.

A key file is ASCII text (docs/design/crypto.md, "Key file")::

    HOARD KEY <repository id, 64 hex digits>\\n
    <base64 of the key blob, 76-character lines>\\n

It is what ``keyfile`` mode keeps under the keys directory and what ``key
export`` prints for either mode. The file is named after the repository id
when hoard writes it, but the user may rename it (as with Borg), so lookup
reads the header line of every file in the directory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
from pathlib import Path

HEADER_PREFIX = "HOARD KEY "
LINE_LENGTH = 76
FILE_MODE = 0o600
DIR_MODE = 0o700
_MAX_HEADER = len(HEADER_PREFIX) + 64 + 2


class MalformedKeyTextError(ValueError):
    """The text is not a key file; the caller turns this into a HoardError with context."""


def format_key_text(repository_id: bytes, blob: bytes) -> str:
    """The key-file text for ``blob`` of repository ``repository_id``."""
    encoded = base64.b64encode(blob).decode("ascii")
    lines = [encoded[i : i + LINE_LENGTH] for i in range(0, len(encoded), LINE_LENGTH)]
    return f"{HEADER_PREFIX}{repository_id.hex()}\n" + "\n".join(lines) + "\n"


def parse_key_text(text: str) -> tuple[bytes, bytes]:
    """Return (repository id, key blob) from key-file text.

    Raises MalformedKeyTextError for text that is not a key file.
    """
    header, _, body = text.partition("\n")
    repository_id = _parse_header(header.rstrip("\r"))
    if repository_id is None:
        raise MalformedKeyTextError(f"first line is not '{HEADER_PREFIX}<repository id hex>'")
    try:
        blob = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedKeyTextError(f"body is not base64: {exc}") from None
    if not blob:
        raise MalformedKeyTextError("empty body")
    return repository_id, blob


def _parse_header(line: str) -> bytes | None:
    if not line.startswith(HEADER_PREFIX):
        return None
    try:
        repository_id = bytes.fromhex(line[len(HEADER_PREFIX) :])
    except ValueError:
        return None
    return repository_id if len(repository_id) == 32 else None


def find_key_file(keys_dir: Path, repository_id: bytes) -> Path | None:
    """The key file in ``keys_dir`` whose header names ``repository_id``, or None.

    The file named after the id is tried first (the usual case costs one
    read); then every regular file, because the user may have renamed it.
    """
    preferred = keys_dir / repository_id.hex()
    if _header_id(preferred) == repository_id:
        return preferred
    try:
        candidates = sorted(keys_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return None
    for path in candidates:
        if path != preferred and _header_id(path) == repository_id:
            return path
    return None


def _header_id(path: Path) -> bytes | None:
    """The repository id in ``path``'s header line, or None for anything else."""
    if not path.is_file():  # never open a FIFO or device: that could block or have effects
        return None
    try:
        with path.open("rb") as f:
            head = f.readline(_MAX_HEADER)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None
    try:
        return _parse_header(head.decode("ascii").rstrip("\r\n"))
    except UnicodeDecodeError:
        return None


def write_key_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600.

    Durable when it returns: temp file in the same directory, fsync, rename
    over ``path``, fsync of the directory. The directory is created (0700)
    if missing. A crash leaves either the old file or the new one.
    """
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
