"""Test trees with every case a backup must keep, and a file-by-file comparison.

:func:`build_tree` makes a directory holding a slice of the Python standard
library (real-world text and many small files) plus every file type and
metadata oddity hoard promises to round-trip (see REQUIREMENTS.md section 8):
empty and odd-mode files, nested and sticky directories, symlinks (to a
file, a directory, nowhere, an absolute path), three hard links to one
inode, a FIFO, device nodes and a setuid file (when root), a UNIX socket
(which must *not* come back), user xattrs and POSIX ACLs, non-UTF-8 names,
names with spaces and newlines, a sparse file, and nanosecond mtimes.

:func:`compare_trees` compares two trees file by file and returns the
differences as readable lines, so a test can ``assert not diffs`` and show
all of them at once.

Reusable by any test (list, diff, mount, export-tar...): nothing here
depends on hoard.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024
STDLIB_PACKAGES = ("json", "email", "asyncio", "http")
NON_UTF8_NAMES = (b"caf\xe9", b"\xff\xfe")
ODD_NAMES = (b"with space", b"new\nline", b" leading and trailing ", b"-dash", b"star*?[x]")
SPARSE_SIZE = 64 * MiB
SPARSE_WRITES = {0: b"start", 10 * MiB + 123: b"middle" * 100, SPARSE_SIZE - 7: b"the end"}
BIG_NAME = "random.bin"
# Fixed nanosecond timestamps (not multiples of 1000: microsecond rounding would show).
MTIME_NS = 1_234_567_890_123_456_789
DIR_MTIME_NS = 1_500_000_000_987_654_321
LINK_MTIME_NS = 1_600_000_000_000_000_007


def is_root() -> bool:
    return os.geteuid() == 0


def require_acl_tools() -> str:
    """The path of ``setfacl``; fails loudly (never skips) when the tool is missing."""
    tool = shutil.which("setfacl")
    if tool is None:
        raise RuntimeError(
            "setfacl is missing: install the 'acl' package (scripts/bootstrap.sh --test-tools)"
        )
    return tool


def make_big_file(path: Path, size: int = 200 * MiB, block: int = 4 * MiB) -> Path:
    """Incompressible content written in blocks (memory stays small)."""
    with path.open("wb") as f:
        for offset in range(0, size, block):
            f.write(os.urandom(min(block, size - offset)))
    return path


def make_sparse_file(path: Path) -> bytes:
    """A file with holes: truncate, then small writes at offsets; returns its content hash."""
    with path.open("wb") as f:
        f.truncate(SPARSE_SIZE)
        for offset, data in SPARSE_WRITES.items():
            f.seek(offset)
            f.write(data)
    return _hash(bytes(path))


def _hash(path: bytes) -> bytes:
    digest = hashlib.blake2b()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            digest.update(block)
    return digest.digest()


@dataclass
class TreeInfo:
    """What :func:`build_tree` made, for tests that pick single items."""

    root: Path
    hardlinks: list[bytes] = field(default_factory=list)
    """Archive-relative paths (below ``root``) of the three hard links."""
    sparse: bytes = b"sparse.img"
    socket: bytes | None = None


def build_tree(root: Path, *, big_file: Path | None = None) -> TreeInfo:
    """Populate ``root`` (created if needed) with every case; returns what it made.

    ``big_file``, if given, is hard-linked (or copied) into the tree as
    ``random.bin``, so a large file made once per session costs nothing here.
    """
    root.mkdir(parents=True, exist_ok=True)
    broot = bytes(root)
    info = TreeInfo(root)
    _stdlib_slice(root / "stdlib")
    _regular_files(broot)
    _nested_dirs(broot)
    _symlinks(broot)
    info.hardlinks = _hardlinks(broot)
    _specials(broot)
    info.socket = _unix_socket(broot)
    _names(broot)
    make_sparse_file(root / "sparse.img")
    if big_file is not None:
        _place_big_file(big_file, root / BIG_NAME)
    _xattrs_and_acls(broot)
    _odd_modes(broot)
    _set_times(broot)
    return info


def _stdlib_slice(dest: Path) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for package in STDLIB_PACKAGES:
        shutil.copytree(
            stdlib / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )


def _write(path: bytes, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _regular_files(root: bytes) -> None:
    _write(root + b"/empty", b"")
    _write(root + b"/small.txt", b"hello, hoard\n")
    _write(root + b"/zeros.bin", bytes(3 * MiB))  # all-zero chunks, not holes
    _write(root + b"/mixed.bin", os.urandom(MiB) + bytes(2 * MiB) + os.urandom(MiB))
    _write(root + b"/no-perms", b"nobody may read this\n")


def _nested_dirs(root: bytes) -> None:
    deep = root + b"/nested/a/b/c/d/e"
    os.makedirs(deep)
    _write(deep + b"/leaf", b"deep leaf\n")
    os.mkdir(root + b"/emptydir")
    os.mkdir(root + b"/sticky")
    _write(root + b"/sticky/inside", b"in a sticky dir\n")


def _symlinks(root: bytes) -> None:
    os.symlink(b"small.txt", root + b"/link-to-file")
    os.symlink(b"nested/a", root + b"/link-to-dir")
    os.symlink(b"does/not/exist", root + b"/link-dangling")
    os.symlink(b"/etc/hostname", root + b"/link-absolute")


def _hardlinks(root: bytes) -> list[bytes]:
    os.mkdir(root + b"/links")
    first = b"links/one"
    names = [first, b"links/two", b"nested/a/three"]
    _write(root + b"/" + first, b"one inode, three names\n" * 1000)
    for name in names[1:]:
        os.link(root + b"/" + first, root + b"/" + name)
    return names


def _specials(root: bytes) -> None:
    os.mkfifo(root + b"/fifo")
    if is_root():
        os.mknod(root + b"/chardev", stat.S_IFCHR | 0o640, os.makedev(1, 3))
        os.mknod(root + b"/blockdev", stat.S_IFBLK | 0o660, os.makedev(7, 200))


def _unix_socket(root: bytes) -> bytes:
    """A bound socket file; bound by a short relative name (sun_path is 108 bytes)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("socket")
    finally:
        os.chdir(cwd)
    return b"socket"


def _names(root: bytes) -> None:
    os.mkdir(root + b"/names")
    for name in (*NON_UTF8_NAMES, *ODD_NAMES, "naïve-ünïcödé".encode()):
        _write(root + b"/names/" + name, name + b"\n")
    os.mkdir(root + b"/names/dir-\xe9")
    _write(root + b"/names/dir-\xe9/\xff", b"inside a non-UTF-8 directory\n")


def _place_big_file(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _xattrs_and_acls(root: bytes) -> None:
    os.setxattr(root + b"/small.txt", b"user.comment", b"a value")
    os.setxattr(root + b"/small.txt", b"user.binary", bytes(range(256)))
    os.setxattr(root + b"/nested", b"user.dir", b"on a directory")
    os.setxattr(root + b"/names/caf\xe9", b"user.\xff", b"non-UTF-8 attribute name")
    setfacl = require_acl_tools()
    acl_file = root + b"/acl-file"
    acl_dir = root + b"/acl-dir"
    _write(acl_file, b"file with an access ACL\n")
    os.mkdir(acl_dir)
    for args in (
        ["-m", "u:nobody:rw,g:daemon:r", acl_file],
        ["-m", "u:nobody:rwx", acl_dir],
        ["-d", "-m", "u:nobody:rx,g:daemon:rwx", acl_dir],
    ):
        subprocess.run([setfacl, *args], check=True, capture_output=True)


def _odd_modes(root: bytes) -> None:
    os.chmod(root + b"/sticky", 0o1777)
    os.chmod(root + b"/small.txt", 0o640)
    if is_root():
        # Unreadable files can only be backed up by root; setuid needs root to restore.
        _write(root + b"/setuid", b"#!/bin/sh\n")
        os.chmod(root + b"/setuid", 0o4755)
        os.chmod(root + b"/no-perms", 0o000)
    else:
        os.chmod(root + b"/no-perms", 0o400)


def _set_times(root: bytes) -> None:
    """Nanosecond mtimes everywhere, directories last (writing into one changes its mtime)."""
    for path, st in reversed(list(walk_tree(root))):
        if stat.S_ISLNK(st.st_mode):
            os.utime(path, ns=(LINK_MTIME_NS, LINK_MTIME_NS), follow_symlinks=False)
        elif stat.S_ISDIR(st.st_mode):
            os.utime(path, ns=(DIR_MTIME_NS, DIR_MTIME_NS))
        elif stat.S_ISREG(st.st_mode) and path.endswith(b"/small.txt"):
            os.utime(path, ns=(MTIME_NS, MTIME_NS))
    os.utime(root, ns=(DIR_MTIME_NS, DIR_MTIME_NS + 1))


# --- comparing -----------------------------------------------------------------------------


def walk_tree(root: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """Every path below ``root`` (pre-order, sorted, symlinks not followed) with its lstat."""
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        yield entry.path, st
        if stat.S_ISDIR(st.st_mode):
            yield from walk_tree(entry.path)


def _relative(root: bytes) -> dict[bytes, os.stat_result]:
    prefix = len(root) + 1
    return {path[prefix:]: st for path, st in walk_tree(root)}


def xattrs(path: bytes) -> dict[bytes, bytes]:
    """All extended attributes (ACLs included), not following symlinks."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    result = {}
    for name in names:
        with contextlib.suppress(OSError):
            result[os.fsencode(name)] = os.getxattr(path, name, follow_symlinks=False)
    return result


def _allocated(st: os.stat_result) -> int:
    return st.st_blocks * 512


def _has_hole(path: bytes, size: int) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE) < size
    finally:
        os.close(fd)


def _compare_item(
    name: str, a: bytes, b: bytes, sa: os.stat_result, sb: os.stat_result, check_atime: bool
) -> list[str]:
    diffs: list[str] = []
    if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
        return [f"{name}: type {stat.S_IFMT(sa.st_mode):o} != {stat.S_IFMT(sb.st_mode):o}"]
    link = stat.S_ISLNK(sa.st_mode)
    checks = [
        ("uid", sa.st_uid, sb.st_uid),
        ("gid", sa.st_gid, sb.st_gid),
        ("mtime_ns", sa.st_mtime_ns, sb.st_mtime_ns),
    ]
    if not link:  # a symlink's mode is always 0777 on Linux
        checks.append(("mode", oct(sa.st_mode), oct(sb.st_mode)))
    if check_atime:
        checks.append(("atime_ns", sa.st_atime_ns, sb.st_atime_ns))
    if stat.S_ISREG(sa.st_mode):
        checks.append(("size", sa.st_size, sb.st_size))
        if sa.st_size == sb.st_size:
            checks.append(("content", _hash(a).hex(), _hash(b).hex()))
    if link:
        checks.append(("link target", os.readlink(a), os.readlink(b)))
    if stat.S_ISCHR(sa.st_mode) or stat.S_ISBLK(sa.st_mode):
        checks.append(("rdev", sa.st_rdev, sb.st_rdev))
    checks.append(("xattrs", xattrs(a), xattrs(b)))
    diffs.extend(f"{name}: {what} {x!r} != {y!r}" for what, x, y in checks if x != y)
    return diffs


def _compare_hardlinks(
    src: dict[bytes, os.stat_result], dst: dict[bytes, os.stat_result]
) -> list[str]:
    """Names sharing an inode in ``src`` share one in ``dst``, and no others do."""
    diffs = []
    groups: dict[tuple[int, int], list[bytes]] = {}
    for path, st in src.items():
        if not stat.S_ISDIR(st.st_mode):
            groups.setdefault((st.st_dev, st.st_ino), []).append(path)
    dst_groups: dict[tuple[int, int], set[tuple[int, int]]] = {}
    for key, paths in groups.items():
        inodes = {(dst[p].st_dev, dst[p].st_ino) for p in paths if p in dst}
        if len(inodes) > 1:
            diffs.append(f"hard links {sorted(paths)!r} are {len(inodes)} inodes after restore")
        for inode in inodes:
            dst_groups.setdefault(inode, set()).add(key)
    for inode, keys in dst_groups.items():
        if len(keys) > 1:
            merged = sorted(p for k in keys for p in groups[k])
            diffs.append(f"{merged!r} were separate files and became one inode {inode}")
    return diffs


def _compare_sparse(name: str, a: bytes, b: bytes, sa: os.stat_result, sb: os.stat_result) -> str:
    """A file with holes in ``src`` must have holes, and no more allocated space, in ``dst``."""
    if _allocated(sa) + MiB >= sa.st_size:
        return ""
    slack = 8 * MiB  # chunk granularity: data chunks may carry some zeros
    if not _has_hole(b, sb.st_size) or _allocated(sb) > _allocated(sa) + slack:
        return (
            f"{name}: holes not preserved (allocated {_allocated(sb)} bytes of {sb.st_size}, "
            f"original {_allocated(sa)})"
        )
    return ""


def compare_trees(
    src: str | bytes | os.PathLike[str],
    dst: str | bytes | os.PathLike[str],
    *,
    check_atime: bool = False,
    sparse: bool = False,
) -> list[str]:
    """Differences between two trees (roots included), as readable lines; [] if equal.

    Compared: the set of paths (sockets in ``src`` are expected to be
    absent), type, mode, uid/gid, mtime in ns (atime with ``check_atime``),
    content hash, symlink targets, device numbers, all xattrs (POSIX ACLs
    are ``system.posix_acl_*``), which names share an inode, and with
    ``sparse`` that files with holes still have them.
    """
    broot_a, broot_b = os.fsencode(src), os.fsencode(dst)
    a_items = {p: st for p, st in _relative(broot_a).items() if not stat.S_ISSOCK(st.st_mode)}
    b_items = _relative(broot_b)
    diffs = [f"missing after restore: {p!r}" for p in sorted(a_items.keys() - b_items.keys())]
    diffs += [f"not in the original: {p!r}" for p in sorted(b_items.keys() - a_items.keys())]
    pairs = [(b".", broot_a, broot_b, os.lstat(broot_a), os.lstat(broot_b))]
    for rel in sorted(a_items.keys() & b_items.keys()):
        pairs.append((rel, broot_a + b"/" + rel, broot_b + b"/" + rel, a_items[rel], b_items[rel]))
    for rel, a, b, sa, sb in pairs:
        name = repr(rel)
        diffs += _compare_item(name, a, b, sa, sb, check_atime)
        if sparse and stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode):
            diffs += [d for d in [_compare_sparse(name, a, b, sa, sb)] if d]
    diffs += _compare_hardlinks(a_items, b_items)
    return diffs
