"""Borg's checks of a local repository path, before opening or creating one.

Used for local locations by the commands, and by ``hoard serve`` for the
paths its clients ask for: a repository over ssh fails with the same errors
(and the same wording) as on the server's own disk.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hoard.errors import (
    NotARepository,
    ParentPathDoesNotExist,
    PathAlreadyExists,
    PathPermissionDenied,
    RepositoryAlreadyExists,
    RepositoryDoesNotExist,
    UnsupportedRepositoryVersion,
)
from hoard.repository.config import CONFIG_COPY_NAME, CONFIG_NAME, RepoConfig
from hoard.storage.local import LocalStorage


def is_repository(path: Path) -> bool:
    """Whether ``path`` holds a hoard repository (a readable ``config`` of ours)."""
    try:
        data = (path / CONFIG_NAME).read_bytes()
    except OSError:
        return False
    try:
        RepoConfig.from_json(data, str(path))
    except UnsupportedRepositoryVersion:
        return True  # a newer hoard's repository is still a repository
    except NotARepository:
        return False
    return True


def check_new_path(path: Path, make_parent_dirs: bool) -> None:
    """Borg's checks before ``init`` (``check_can_create_repository``).

    Nothing there yet, or an empty directory; no repository in any parent
    directory (one inside another would confuse both); the parent exists
    unless ``--make-parent-dirs``.
    """
    shown = os.path.abspath(path)  # as Borg names it
    try:
        st = path.stat()
    except FileNotFoundError:
        pass
    except PermissionError:
        raise PathPermissionDenied(shown) from None
    else:
        if is_repository(path):
            raise RepositoryAlreadyExists(shown)
        if not stat.S_ISDIR(st.st_mode):
            raise PathAlreadyExists(shown)
        try:
            if any(path.iterdir()):
                raise PathAlreadyExists(shown)
        except PermissionError:
            raise PathPermissionDenied(shown) from None
    for parent in Path(os.path.abspath(path)).parents:
        if is_repository(parent):
            raise RepositoryAlreadyExists(str(parent))
    if not path.parent.exists():
        if not make_parent_dirs:
            raise ParentPathDoesNotExist(shown)
        path.parent.mkdir(parents=True, exist_ok=True)


def existing_repository_storage(path: str) -> LocalStorage:
    """The storage of the repository at ``path``, in Borg's order of checks:
    nothing there is DoesNotExist; a file, or a directory without a config
    (or its copy), is not a repository."""
    shown = os.path.abspath(path)  # as Borg names it in these messages
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RepositoryDoesNotExist(shown) from None
    except OSError as exc:
        raise PathPermissionDenied(f"{shown} ({exc.strerror})") from None
    has_config = any(
        os.path.lexists(os.path.join(path, name)) for name in (CONFIG_NAME, CONFIG_COPY_NAME)
    )
    if not stat.S_ISDIR(st.st_mode) or not has_config:
        raise NotARepository(shown)
    return LocalStorage(Path(path))
