"""The set of archives in a repository: loading records, selecting, naming, counting.

Borg's archive selection options (``-a/--glob-archives``, ``--sort-by``,
``--first``, ``--last``, ``--consider-checkpoints``) are implemented once
here, so every command selects archives the same way. :class:`ReferenceGraph`
counts how often the archives reference each object, which is what Borg's
chunks cache knows and what "deduplicated size" figures need.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hoard.archive.checkpoints import looks_like_checkpoint
from hoard.archive.items import ZERO_ID
from hoard.archive.patterns import shell_translate
from hoard.archive.record import ArchiveRecord
from hoard.archive.tree import ObjectReader, read_directory
from hoard.errors import ArchiveDoesNotExist, InputError, IntegrityError

SORT_KEYS = ("timestamp", "archive", "name", "id")


DamagedRecord = Callable[[bytes, IntegrityError], None]
"""Told of an archive record that cannot be read (its id, why): it is skipped."""


class ArchiveStore(Protocol):
    def load_archives(
        self, on_damaged: DamagedRecord | None = None, *, include_hidden: bool = False
    ) -> dict[bytes, bytes]:
        """Plaintext archive records by id (``ObjectStore.load_archives``);
        archives hidden by a deletion record only with ``include_hidden``."""
        ...


@dataclass(frozen=True)
class Selection:
    """Borg's archive filter options, as parsed from the command line."""

    glob: str | None = None
    sort_by: str = "timestamp"
    first: int | None = None
    last: int | None = None
    consider_checkpoints: bool = False


def load_records(
    store: ArchiveStore,
    on_damaged: DamagedRecord | None = None,
    *,
    include_hidden: bool = False,
) -> list[ArchiveRecord]:
    """Every archive record in the repository, in start-time order; archives
    deleted in append-only mode (hidden) only with ``include_hidden``.

    Cost: one listing of the archive records plus a read of each record this
    client has not seen before (the repository keeps a local record cache).
    A record that does not authenticate or decode raises IntegrityError, or,
    given ``on_damaged``, is skipped and handed to it, so one damaged record
    does not block the commands working on the others.
    """
    records = []
    loaded = store.load_archives(on_damaged, include_hidden=include_hidden)
    for id_, data in loaded.items():
        try:
            records.append(ArchiveRecord.decode(data, id_))
        except IntegrityError as exc:
            if on_damaged is None:
                raise
            on_damaged(id_, exc)
    records.sort(key=lambda r: (r.time, r.name))
    return records


def glob_to_regex(pattern: str, match_end: str = r"\Z") -> re.Pattern[str]:
    """Borg's ``sh:``-style archive glob, anchored at both ends (``*`` does not cross ``/``).

    ``match_end``: a regex allowed after the glob (Borg's ``match_end``).
    """
    return re.compile(shell_translate(pattern.removeprefix("sh:"), match_end))


def select(records: Sequence[ArchiveRecord], selection: Selection) -> list[ArchiveRecord]:
    """Apply glob, checkpoint filter, sort, first/last, as Borg does (in this order)."""
    chosen = list(records)
    if not selection.consider_checkpoints:
        chosen = [r for r in chosen if not is_checkpoint(r)]
    if selection.glob:
        regex = glob_to_regex(selection.glob)
        chosen = [r for r in chosen if regex.match(r.name)]
    chosen.sort(key=_sort_key(selection.sort_by))
    if selection.first is not None:
        chosen = chosen[: selection.first]
    elif selection.last is not None:
        chosen = chosen[-selection.last :] if selection.last else []
    return chosen


def _sort_key(spec: str) -> Callable[[ArchiveRecord], tuple[Any, ...]]:
    keys = [k.strip() for k in spec.split(",") if k.strip()]
    for name in keys:
        if name not in SORT_KEYS:
            raise InputError(f"Invalid sort key {name!r}; choose from {', '.join(SORT_KEYS)}")

    def sort_key(r: ArchiveRecord) -> tuple[Any, ...]:
        values = {"timestamp": r.time, "archive": r.name, "name": r.name, "id": r.id}
        return tuple(values[k] for k in keys)

    return sort_key


def is_checkpoint(record: ArchiveRecord) -> bool:
    """A checkpoint: flagged as one, or named ``NAME.checkpoint`` / ``NAME.checkpoint.N`` (Borg)."""
    return record.checkpoint or looks_like_checkpoint(record.name)


def find(records: Sequence[ArchiveRecord], name: str) -> ArchiveRecord:
    """The archive called ``name`` (checkpoints included, as Borg)."""
    for record in records:
        if record.name == name:
            return record
    raise ArchiveDoesNotExist(name)


def exists(records: Sequence[ArchiveRecord], name: str) -> bool:
    return any(r.name == name for r in records)


# --- reference counts -------------------------------------------------------------------


@dataclass(slots=True)
class _TreeNode:
    """What one TREE object references: the trees of its subdirectories and
    the data chunks of its files (each with its multiplicity)."""

    children: list[bytes] = field(default_factory=list)
    chunks: Counter[bytes] = field(default_factory=Counter)


class ReferenceGraph:
    """The tree objects reachable from some archives and what each references.

    Borg keeps a reference count per chunk in its chunks cache. hoard keeps
    none (so concurrent writers never contend on one) and computes counts
    when a command asks: ``info`` (deduplicated size of an archive),
    ``delete --stats`` (what ``compact`` will free) and the ``dsize`` keys of
    ``list``. Directory trees are content-addressed and shared between
    archives, so each tree object is read once, however many archives
    contain it, and counts are propagated through the tree graph instead of
    walking every archive.

    A count is Borg's reference count: how many references all the given
    archives make, a tree object shared by two archives counting twice, a
    chunk used twice in one file counting twice. Zero runs (``ZERO_ID``) are
    not objects and are never counted.
    """

    def __init__(self, store: ObjectReader) -> None:
        self._store = store
        self._nodes: dict[bytes, _TreeNode] = {}

    def load(self, roots: Iterable[bytes]) -> None:
        """Read every tree object reachable from ``roots`` that is not known yet."""
        pending = [r for r in roots if r not in self._nodes]
        while pending:
            tree_id = pending.pop()
            if tree_id in self._nodes:
                continue
            node = _TreeNode()
            for entry in read_directory(self._store, [tree_id]):
                if entry.tree:
                    node.children.extend(entry.tree)
                if entry.chunks:
                    node.chunks.update(c.id for c in entry.chunks if c.id != ZERO_ID)
            self._nodes[tree_id] = node
            pending.extend(c for c in node.children if c not in self._nodes)

    def refcounts(self, archives: Iterable[ArchiveRecord]) -> Counter[bytes]:
        """Object id -> references made by ``archives`` (tree objects and data chunks).

        Loads what is missing first. Cost: one pass over the tree objects
        these archives reach.
        """
        root_lists = [r.root for r in archives]
        for roots in root_lists:
            self.load(roots)
        paths = self._path_counts(root_lists)
        counts: Counter[bytes] = Counter()
        for tree_id, times in paths.items():
            counts[tree_id] += times
            for chunk_id, n in self._nodes[tree_id].chunks.items():
                counts[chunk_id] += times * n
        return counts

    def _path_counts(self, root_lists: list[list[bytes]]) -> Counter[bytes]:
        """How often each reachable tree is referenced (roots once per archive).

        Kahn's algorithm over the reachable part of the graph (a DAG: an
        object's id is the hash of its content, so it cannot contain itself):
        a tree's count is final once all trees referencing it are done.
        """
        counts: Counter[bytes] = Counter()
        for roots in root_lists:
            counts.update(roots)
        indegree: Counter[bytes] = Counter()
        for tree_id in self._reachable(counts):
            indegree.update(self._nodes[tree_id].children)
        ready = deque(t for t in counts if indegree[t] == 0)
        while ready:
            tree_id = ready.popleft()
            for child in self._nodes[tree_id].children:
                counts[child] += counts[tree_id]
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)
        return counts

    def _reachable(self, roots: Iterable[bytes]) -> set[bytes]:
        seen: set[bytes] = set()
        pending = list(roots)
        while pending:
            tree_id = pending.pop()
            if tree_id not in seen:
                seen.add(tree_id)
                pending.extend(self._nodes[tree_id].children)
        return seen


def unique_objects(all_counts: Counter[bytes], group_counts: Counter[bytes]) -> list[bytes]:
    """Objects referenced only by the group: what deleting the group frees (after compact)."""
    return [i for i, n in group_counts.items() if all_counts[i] == n]
