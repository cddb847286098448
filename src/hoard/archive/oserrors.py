"""An OSError on a source file (create) or a target file (extract) as Borg's warning.

Borg 1.4 wraps such an error in ``BackupOSError(op, os_error)`` (its
``backup_io`` context) and reports ``BackupWarning(path, error)``: the line
is ``PATH: OP: [Errno N] STRERROR: 'FILENAME'`` and the modern exit code
comes from the errno, by the table in ``borg/archive.py``'s ``BackupIO``:
EPERM, EACCES and EBUSY are permission errors (105), ENOENT "file not
found" (107), EIO an I/O error (106), anything else an OS error (104). The
item is skipped, the command goes on, the exit code is 1 (legacy).

One table for both directions, so ``create`` and ``extract`` cannot drift
apart. An OSError that is not about a source or target file (the
repository, the cache) is not for this module: it is an error, not a
warning.
"""

from __future__ import annotations

import errno
import os

from hoard.errors import (
    BackupFileNotFoundWarning,
    BackupIOWarning,
    BackupOSWarning,
    BackupPermissionWarning,
)

_BY_ERRNO: dict[int, type[BackupOSWarning]] = {
    errno.EPERM: BackupPermissionWarning,
    errno.EACCES: BackupPermissionWarning,
    errno.EBUSY: BackupPermissionWarning,
    errno.ENOENT: BackupFileNotFoundWarning,
    errno.EIO: BackupIOWarning,
}


def oserror_text(exc: OSError, name: bytes | str | None = None) -> str:
    """``[Errno 13] Permission denied: 'name'``: what Python prints for ``exc``
    (Borg shows ``str(os_error)``), with a bytes file name decoded.

    ``name`` replaces the error's own file name: ``create`` names a file as
    Borg opened it (by its name in its directory), not by the path hoard used.
    """
    if exc.errno is None or exc.strerror is None:
        return str(exc)
    text = f"[Errno {exc.errno}] {exc.strerror}"
    filename = exc.filename if name is None else name
    if filename is None:
        return text
    text += f": {_decoded(filename)!r}"
    if name is None and exc.filename2 is not None:
        text += f" -> {_decoded(exc.filename2)!r}"
    return text


def _decoded(filename: object) -> object:
    return os.fsdecode(filename) if isinstance(filename, bytes | str) else filename


def os_warning(
    path: str, op: str, exc: OSError, *, name: bytes | str | None = None
) -> BackupOSWarning:
    """Borg's warning for ``exc`` raised by operation ``op`` (open, read, stat,
    mkdir, ...) on the item shown as ``path``: ``PATH: OP: [Errno N] ...``."""
    warning = _BY_ERRNO.get(exc.errno or 0, BackupOSWarning)
    return warning(path, f"{op}: {oserror_text(exc, name)}")
