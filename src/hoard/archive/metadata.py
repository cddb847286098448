"""Reading and restoring file metadata: owner, mode, times, xattrs, ACLs, flags.

POSIX ACLs are kept as the ``system.posix_acl_access`` and
``system.posix_acl_default`` extended attributes in their binary kernel form,
which is what ``getfacl``/``setfacl`` use underneath; no libacl is needed and
the values round-trip exactly. Restoring follows Borg's order: owner, then
mode (chown clears set-id bits), then xattrs and ACLs, then times, flags last
(an immutable flag would forbid everything after it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import pwd
import stat
import struct
from dataclasses import dataclass
from functools import lru_cache

from hoard.archive.items import Entry

ACL_XATTRS = (b"system.posix_acl_access", b"system.posix_acl_default")
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
# Flags worth restoring (Borg restores a similar set): immutable, append-only,
# nodump, noatime, ... but never the ones the kernel manages itself.
RESTORABLE_FLAGS = 0x00000010 | 0x00000020 | 0x00000040 | 0x00000080 | 0x00004000
_LONG = struct.Struct("l")
_NO_FLAGS = bytes(_LONG.size)


@dataclass(frozen=True)
class ReadOptions:
    """``create``'s --numeric-ids, --noatime/--atime, --noctime, --noflags, --noacls, --noxattrs."""

    numeric_ids: bool = False
    atime: bool = False
    ctime: bool = True
    flags: bool = True
    acls: bool = True
    xattrs: bool = True


@dataclass(frozen=True)
class RestoreOptions:
    """``extract``'s --numeric-ids, --noacls, --noxattrs, --noflags."""

    numeric_ids: bool = False
    acls: bool = True
    xattrs: bool = True
    flags: bool = True
    owner: bool = True


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def user_id(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def entry_from_stat(name: bytes, st: os.stat_result, options: ReadOptions) -> Entry:
    """The stat part of an entry (no xattrs, no content)."""
    mode, uid, gid = st.st_mode, st.st_uid, st.st_gid
    named = not options.numeric_ids
    # Positional, in Entry's field order: keyword parsing was a third of the
    # cost of this call, which runs for every item (tests/unit/archive/test_tree.py).
    entry = Entry(
        name,
        mode,
        uid,
        gid,
        user_name(uid) if named else None,
        group_name(gid) if named else None,
        st.st_mtime_ns,
        st.st_ctime_ns if options.ctime else None,
        st.st_atime_ns if options.atime else None,
        None,  # birthtime, below
        st.st_size if stat.S_ISREG(mode) else 0,
    )
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        entry.rdev = st.st_rdev
    birthtime = getattr(st, "st_birthtime_ns", None)
    if birthtime is not None:
        entry.birthtime = birthtime
    return entry


def read_xattrs(path: bytes | int, options: ReadOptions) -> dict[bytes, bytes]:
    """Extended attributes (ACLs included unless --noacls); none if unsupported."""
    if not (options.xattrs or options.acls):
        return {}
    follow = isinstance(path, int)
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENOENT):
            return {}
        raise
    result: dict[bytes, bytes] = {}
    for name in names:
        key = os.fsencode(name)
        if key in ACL_XATTRS:
            if not options.acls:
                continue
        elif not options.xattrs:
            continue
        try:
            result[key] = os.getxattr(path, name, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
    return result


def read_flags(fd: int) -> int | None:
    """Linux inode flags (chattr) of an open file; None where unsupported."""
    try:  # an immutable argument: the kernel's answer comes back as new bytes
        raw = fcntl.ioctl(fd, FS_IOC_GETFLAGS, _NO_FLAGS)
    except OSError:
        return None
    flags = _LONG.unpack(raw)[0] & RESTORABLE_FLAGS
    return flags or None


def _owner_ids(entry: Entry, options: RestoreOptions) -> tuple[int, int]:
    """Ids to restore: by name when the name exists here (as Borg), else numeric."""
    uid, gid = entry.uid, entry.gid
    if not options.numeric_ids:
        by_name_uid = user_id(entry.user) if entry.user is not None else None
        by_name_gid = group_id(entry.group) if entry.group is not None else None
        uid = uid if by_name_uid is None else by_name_uid
        gid = gid if by_name_gid is None else by_name_gid
    return uid, gid


def restore(path: bytes, entry: Entry, options: RestoreOptions, fd: int | None = None) -> None:
    """Apply owner, mode, xattrs/ACLs, times and flags of ``entry`` to ``path``.

    With ``fd``, the regular file just written and still open, every call
    goes to the descriptor (fchown, fchmod, fsetxattr, futimens, ioctl), as
    Borg does: no path lookups, which is most of the cost on many small files.
    Ownership is restored only when running as root (as Borg); other
    failures of optional metadata (xattrs on a file system without them) are
    ignored quietly, as Borg does.
    """
    is_link = stat.S_ISLNK(entry.mode)
    target: bytes | int = path if fd is None else fd
    if options.owner and _running_as_root():
        uid, gid = _owner_ids(entry, options)
        with contextlib.suppress(OSError):
            if fd is None:
                os.chown(path, uid, gid, follow_symlinks=False)
            else:
                os.fchown(fd, uid, gid)
    if not is_link:
        os.chmod(target, stat.S_IMODE(entry.mode))
    if entry.xattrs:
        _restore_xattrs(target, entry, options)
    mtime = entry.mtime
    atime = entry.atime if entry.atime is not None else mtime
    with contextlib.suppress(OSError):
        if fd is None:
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)
        else:
            os.utime(fd, ns=(atime, mtime))
    if options.flags and entry.flags and not is_link:
        if fd is None:
            _restore_flags(path, entry.flags)
        else:
            _set_flags(fd, entry.flags)


@lru_cache(maxsize=1)
def _running_as_root() -> bool:
    return os.geteuid() == 0


def _restore_xattrs(target: bytes | int, entry: Entry, options: RestoreOptions) -> None:
    # A descriptor is the file itself: no symlink to (not) follow.
    follow = isinstance(target, int)
    for key, value in entry.xattrs.items():
        if key in ACL_XATTRS:
            if not options.acls or stat.S_ISLNK(entry.mode):
                continue
        elif not options.xattrs:
            continue
        with contextlib.suppress(OSError):
            os.setxattr(target, key, value, follow_symlinks=follow)


def _restore_flags(path: bytes, flags: int) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        _set_flags(fd, flags)
    finally:
        os.close(fd)


def _set_flags(fd: int, flags: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("l", flags & RESTORABLE_FLAGS))
