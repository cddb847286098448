"""Reading inode flags (hoard.archive.metadata.read_flags) on real files."""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path

import pytest

from hoard.archive.metadata import FS_IOC_SETFLAGS, read_flags

NODUMP = 0x00000040


def test_read_flags_sees_nodump_and_clears(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("l", NODUMP))
        except OSError as exc:
            pytest.skip(f"no inode flags on this file system: {exc}")
        assert read_flags(fd) == NODUMP
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("l", 0))
        assert read_flags(fd) is None  # nothing restorable set
    finally:
        os.close(fd)


def test_read_flags_of_what_has_none_is_none() -> None:
    fd = os.open("/proc/self/status", os.O_RDONLY)  # procfs: no FS_IOC_GETFLAGS
    try:
        assert read_flags(fd) is None
    finally:
        os.close(fd)
