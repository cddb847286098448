"""One table for OSErrors on source and target files: Borg 1.4's warnings and codes."""

from __future__ import annotations

import errno
import os

import pytest

from hoard.archive.oserrors import os_warning, oserror_text
from hoard.errors import (
    BackupFileNotFoundWarning,
    BackupIOWarning,
    BackupOSWarning,
    BackupPermissionWarning,
)


@pytest.mark.parametrize(
    ("code", "kind", "modern"),
    [
        (errno.EPERM, BackupPermissionWarning, 105),
        (errno.EACCES, BackupPermissionWarning, 105),
        (errno.EBUSY, BackupPermissionWarning, 105),  # Borg's table has it; create's lacked it
        (errno.ENOENT, BackupFileNotFoundWarning, 107),
        (errno.EIO, BackupIOWarning, 106),
        (errno.ENOSPC, BackupOSWarning, 104),
        (errno.ELOOP, BackupOSWarning, 104),
    ],
)
def test_errno_decides_the_warning_and_its_modern_code(
    code: int, kind: type[BackupOSWarning], modern: int
) -> None:
    warning = os_warning("src/f", "open", OSError(code, os.strerror(code), b"/abs/src/f"))
    assert type(warning) is kind
    assert warning.exit_code == 1
    assert warning.modern_exit_code == modern
    assert str(warning) == f"src/f: open: [Errno {code}] {os.strerror(code)}: '/abs/src/f'"


def test_text_is_what_python_prints_with_the_file_name_decoded() -> None:
    exc = OSError(errno.EACCES, "Permission denied", b"caf\xc3\xa9")
    assert oserror_text(exc) == "[Errno 13] Permission denied: 'café'"
    assert oserror_text(exc, b"other") == "[Errno 13] Permission denied: 'other'"
    undecodable = OSError(errno.EACCES, "Permission denied", b"\xff")
    assert oserror_text(undecodable) == "[Errno 13] Permission denied: '\\udcff'"
    moved = OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")
    assert oserror_text(moved) == str(moved) == "[Errno 18] Invalid cross-device link: 'a' -> 'b'"
    no_name = OSError(errno.EIO, "Input/output error")
    assert oserror_text(no_name) == str(no_name) == "[Errno 5] Input/output error"
    assert oserror_text(OSError("no errno at all")) == "no errno at all"


def test_a_real_error_from_the_os() -> None:
    try:
        os.lstat(b"/nonexistent/hoard-test")
    except OSError as exc:
        warning = os_warning("x", "stat", exc, name=b"hoard-test")
    assert type(warning) is BackupFileNotFoundWarning
    assert str(warning) == "x: stat: [Errno 2] No such file or directory: 'hoard-test'"
