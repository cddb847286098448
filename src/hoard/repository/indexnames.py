"""Names of index files in storage.

Kept apart from ``indexfile`` (which needs numpy for the entry arrays) so
that commands which only name or count index files, and the repository's
start-up, do not pay numpy's import (about 50 ms: `hoard list`).
"""

from __future__ import annotations

import re

from hoard.storage.base import Storage

INDEX_PREFIX = "index/"
_HEX_NAME = re.compile(r"^[0-9a-f]{64}$")


def index_path(name: str) -> str:
    """Storage name of the index file with hex name ``name``."""
    return INDEX_PREFIX + name


def index_name_from_path(path: str) -> str | None:
    """The hex name of an ``index/`` storage object, None for a stray name."""
    name = path[len(INDEX_PREFIX) :] if path.startswith(INDEX_PREFIX) else ""
    return name if _HEX_NAME.match(name) else None


def list_index_names(storage: Storage) -> set[str]:
    """Hex names of the index files in ``storage`` (stray names are ignored)."""
    names = (index_name_from_path(info.name) for info in storage.list(INDEX_PREFIX))
    return {name for name in names if name is not None}
