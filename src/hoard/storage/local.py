"""Blobs as files in a local directory.

A blob named ``packs/3f/3f9a...`` is the file ``<root>/packs/3f/3f9a...``.
Every write goes to a temporary file ``<name>.tmp-<16 hex digits>`` in the
target directory, is fsynced, and then becomes visible under its final name
in one step, after which the directory is fsynced: a crash at any point
leaves either no blob or the whole blob, plus at worst a temporary file that
``list`` never reports.

Refusing to overwrite is race-free between processes because the final step
is ``link(tmp, final)``, which the kernel fails with EEXIST atomically when
``final`` exists. This needs a filesystem with hard links (every POSIX one;
not vfat/exFAT). Replacing (``overwrite=True``) uses ``rename``, which is
atomic for readers.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from hoard.errors import InvalidName, ObjectExists, ObjectNotFound, StorageError, StorageFull
from hoard.storage.base import ObjectInfo, Storage, check_name, check_prefix

TEMP_MARKER = ".tmp-"
_TEMP_NAME = re.compile(r"\.tmp-[0-9a-f]{16}$")
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Errors meaning "there is no blob by that name": a missing file, a path
# through a file ("config/x"), or a directory where a blob was expected.
_MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR})
_READ_BLOCK = 1 << 30


def is_temp_name(filename: str) -> bool:
    """True for the temporary files of unfinished or crashed writes."""
    return _TEMP_NAME.search(filename) is not None


@functools.lru_cache(maxsize=4096)
def _check_blob_name(name: str) -> str:
    """check_name, and also refuse names that look like our temporary files.

    Such a blob would be stored but never listed, so it is refused up front.
    Cached: reads name the same few packs thousands of times (``check``,
    ``extract``), and a name's validity never changes.
    """
    check_name(name)
    if is_temp_name(name):
        raise InvalidName(name)
    return name


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries (new, renamed or removed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _pread_all(fd: int, offset: int, length: int) -> bytes:
    """Read up to ``length`` bytes at ``offset``; fewer only at end of file."""
    parts: list[bytes] = []
    while length > 0:
        part = os.pread(fd, min(length, _READ_BLOCK), offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
        length -= len(part)
    return b"".join(parts)


def _remove_quietly(path: Path) -> None:
    """Best-effort removal of a temporary file while another error propagates."""
    with suppress(OSError):
        os.unlink(path)


class LocalStorage(Storage):
    """A storage rooted at a local directory (created on first ``store``)."""

    def __init__(self, root: Path | str) -> None:
        # Absolute, so that a later chdir() of the process cannot move it.
        self._root = Path(os.path.abspath(root))
        self._prefix = os.path.join(self._root, "")  # for reads: no Path object per blob

    @property
    def root(self) -> Path:
        return self._root

    @property
    def location(self) -> str:
        return str(self._root)

    def path_of(self, name: str) -> Path:
        """The file that holds blob ``name`` (whether or not it exists)."""
        return self._root / _check_blob_name(name)

    # --- writing ---------------------------------------------------------------

    def store(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        path = self.path_of(name)
        with self._errors(name, path, not_found=False):
            self._make_dirs(path.parent)
            tmp = self._write_temp(path, data)
            try:
                self._publish(name, tmp, path, overwrite)
            except BaseException:
                _remove_quietly(tmp)
                raise
            _fsync_dir(path.parent)

    def _write_temp(self, path: Path, data: bytes | memoryview) -> Path:
        """Write ``data`` to a fresh, fsynced temporary file next to ``path``.

        Mode 0o666 lets the process umask (Borg's ``--umask``, default 0077)
        decide the permissions, as for every other file hoard creates.
        """
        tmp = path.with_name(f"{path.name}{TEMP_MARKER}{secrets.token_hex(8)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o666)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _remove_quietly(tmp)
            raise
        os.close(fd)
        return tmp

    def _publish(self, name: str, tmp: Path, path: Path, overwrite: bool) -> None:
        """Give the finished temporary file its final name."""
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise ObjectExists(name) from None
        # The blob is stored now; a temporary name we fail to remove is only
        # clutter that list() never reports, not a reason to report failure.
        _remove_quietly(tmp)

    def _make_dirs(self, directory: Path) -> None:
        """Create ``directory`` and missing ancestors, each made durable.

        Every new directory's parent is fsynced, or a crash could lose the
        directory together with the blobs already fsynced inside it.
        """
        missing: list[Path] = []
        while not self._is_dir(directory):
            missing.append(directory)
            directory = directory.parent
        for new_dir in reversed(missing):
            try:
                os.mkdir(new_dir)
            except FileExistsError:
                if not new_dir.is_dir():
                    raise
                # Made by a concurrent writer that may not have fsynced its
                # parent yet; our blob's durability must not depend on it.
            _fsync_dir(new_dir.parent)

    @staticmethod
    def _is_dir(path: Path) -> bool:
        """True for a directory, False if nothing is there; raises otherwise.

        Unlike Path.is_dir, a permission error or a file in the way is an
        error here, not a reason to try to create the directory.
        """
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        return True

    def delete(self, name: str) -> None:
        path = self.path_of(name)
        with self._errors(name, path):
            os.unlink(path)
            _fsync_dir(path.parent)

    # --- reading ---------------------------------------------------------------

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"negative range {offset}, {length} for {name!r}")
        path = self._prefix + _check_blob_name(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                size = self._regular_size(name, os.fstat(fd))
                wanted = max(0, size - offset) if length is None else length
                return _pread_all(fd, offset, wanted)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _storage_error(name, Path(path), exc, not_found=True) from exc

    def info(self, name: str) -> ObjectInfo:
        path = self.path_of(name)
        with self._errors(name, path):
            st = os.stat(path)
            return ObjectInfo(name, self._regular_size(name, st), st.st_mtime)

    @staticmethod
    def _regular_size(name: str, st: os.stat_result) -> int:
        """Only regular files are blobs; a directory of the same name is not."""
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(name)
        return st.st_size

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Validated here, not in the generator, so a bad prefix fails at the call.
        check_prefix(prefix)
        directory, _, start = prefix.rpartition("/")
        return self._walk(directory, start, temporary=False)

    def list_temporary(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        directory, _, start = prefix.rpartition("/")
        return self._walk(directory, start, temporary=True)

    def delete_temporary(self, name: str) -> None:
        check_name(name)
        if not is_temp_name(name):
            raise InvalidName(name)
        path = self._root / name
        with self._errors(name, path):
            os.unlink(path)
            _fsync_dir(path.parent)

    def _walk(self, directory: str, start: str, *, temporary: bool) -> Iterator[ObjectInfo]:
        """Yield blobs (or, with ``temporary``, temporary files) in
        ``directory`` (relative) whose first segment begins with ``start``,
        descending into matching subdirectories."""
        path = self._root / directory if directory else self._root
        base = f"{directory}/" if directory else ""
        with self._errors(directory or ".", path):
            try:
                entries = list(os.scandir(path))
            except OSError as exc:
                if exc.errno in _MISSING_ERRNOS:
                    return
                raise
            for entry in entries:
                if not entry.name.startswith(start):
                    continue
                yield from self._visit(entry, base, temporary)

    def _visit(self, entry: os.DirEntry[str], base: str, temporary: bool) -> Iterator[ObjectInfo]:
        name = base + entry.name
        try:
            check_name(name)
        except InvalidName:
            return  # not ours (e.g. "lost+found"): no valid name can refer to it
        if entry.is_dir(follow_symlinks=False):
            yield from self._walk(name, "", temporary=temporary)
        elif entry.is_file(follow_symlinks=False) and is_temp_name(entry.name) == temporary:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                return  # deleted while we were listing
            yield ObjectInfo(name, st.st_size, st.st_mtime)

    def free_space(self) -> int | None:
        """Free bytes of the filesystem holding the root (its nearest existing
        ancestor before the first store); None if it cannot be asked."""
        path = self._root
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            return shutil.disk_usage(path).free
        except OSError:
            return None

    # --- errors ----------------------------------------------------------------

    @contextmanager
    def _errors(self, name: str, path: Path, *, not_found: bool = True) -> Iterator[None]:
        """Turn OSError into hoard's storage errors, naming the path.

        When reading or deleting, a missing file is ObjectNotFound (while
        storing it means something else went wrong: a StorageError). A full
        medium or quota is StorageFull, anything else (permissions, read-only
        filesystem, I/O errors) a StorageError with the path and the reason.
        """
        try:
            yield
        except OSError as exc:
            raise _storage_error(name, path, exc, not_found=not_found) from exc


def _storage_error(name: str, path: Path, exc: OSError, *, not_found: bool) -> Exception:
    """The storage error an OSError about ``name`` (at ``path``) means (see ``_errors``)."""
    if not_found and exc.errno in _MISSING_ERRNOS:
        return ObjectNotFound(name)
    if exc.errno in _FULL_ERRNOS:
        return StorageFull(path, exc.strerror)
    culprit = exc.filename if exc.filename is not None else path
    return StorageError(f"{culprit}: {exc.strerror}")
