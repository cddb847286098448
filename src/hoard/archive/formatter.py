"""Borg 1.4's ``--format`` keys for archives and archive items (``hoard list``).

:class:`ArchiveFormatter` and :class:`ItemFormatter` mirror Borg's
``ArchiveFormatter`` and ``ItemFormatter`` (``borg/helpers/parseformat.py``):
the same keys, the same values, the same text and JSON forms, checked side
by side with Borg 1.4.1. The format is Python's ``str.format_map`` over a
dict of keys; keys that cost something (content hashes read every chunk,
``csize`` asks the index, ``dsize`` needs reference counts over all
archives) are computed only when the format names them, as Borg does.

Differences from Borg, on purpose:

- Unknown keys and bad format specs raise :class:`InvalidFormat` (one line)
  before anything is printed; Borg crashes with a traceback.
- Every member of a hard-link group carries its chunk list (see
  archive-format.md), so ``size``, ``num_chunks`` and the hashes are the
  real values for every member. Borg 1.4 gives 0 and empty hashes for all
  but the first member. As in Borg, later members show mode ``h...`` and
  ``source``/``extra`` name the first member listed.
- ``bpath`` and ``barchive`` really are verbatim: the caller writes the
  formatted text as bytes (``os.fsencode``), so a non-UTF-8 name comes out
  as its original bytes. Borg's stdout replaces them with ``?`` although
  its help promises the verbatim name.
- ``dsize``/``dcsize``/``unique_chunks``: Borg counts a chunk as unique to
  an item when its repository-wide reference count equals its count in the
  item; the counts come from the caller (``hoard.archive.catalog``), over
  all archives. Each member of a hard-link group references the content, so
  none of them holds it uniquely (removing one member frees nothing).

Times: item times are shown in local time from their nanoseconds exactly as
Borg converts them; ``{mtime}`` is ``Sat, 2021-01-02 03:04:05`` and
``{mtime:%Y}`` takes any strftime format (so, as in Borg, a time column
cannot be padded; ``isomtime`` can).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from string import Formatter
from typing import Any, Protocol

import xxhash

from hoard.archive.items import ZERO_ID, ChunkRef, Entry
from hoard.archive.record import ArchiveRecord
from hoard.archive.tree import Walked
from hoard.errors import InvalidFormat
from hoard.objects.types import ObjectType

DEFAULT_TIME_FORMAT = "%a, %Y-%m-%d %H:%M:%S"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"

DEFAULT_ARCHIVE_FORMAT = "{archive:<36} {time} [{id}]{NL}"
SHORT_ARCHIVE_FORMAT = "{archive}{NL}"
DEFAULT_ITEM_FORMAT = "{mode} {user:6} {group:6} {size:8} {mtime} {path}{extra}{NL}"
SHORT_ITEM_FORMAT = "{path}{NL}"

FIXED_KEYS: dict[str, str] = {
    "LF": "\n",
    "SPACE": " ",
    "TAB": "\t",
    "CR": "\r",
    "NUL": "\0",
    "NEWLINE": os.linesep,
    "NL": os.linesep,
}
"""Formatting aids, available in every format (not in JSON)."""

ARCHIVE_KEYS = (
    "archive",
    "name",
    "barchive",
    "comment",
    "bcomment",
    "id",
    "tam",
    "start",
    "time",
    "end",
    "command_line",
    "hostname",
    "username",
)
_ARCHIVE_CALL_KEYS = frozenset(
    ("hostname", "username", "comment", "bcomment", "end", "command_line", "tam")
)

HASH_ALGORITHMS = (
    "blake2b",
    "blake2s",
    "md5",
    "sha1",
    "sha224",
    "sha256",
    "sha384",
    "sha3_224",
    "sha3_256",
    "sha3_384",
    "sha3_512",
    "sha512",
    "xxh64",
)
"""Python's guaranteed hashes without the shake_* ones, plus XXH64: Borg's list."""

_SIZE_KEYS = ("size", "csize", "dsize", "dcsize", "num_chunks", "unique_chunks")
_TIME_KEYS = ("mtime", "ctime", "atime")
_ISO_TIME_KEYS = ("isomtime", "isoctime", "isoatime")
ITEM_KEYS = (
    "type",
    "mode",
    "uid",
    "gid",
    "user",
    "group",
    "path",
    "bpath",
    "source",
    "linktarget",
    "flags",
    *_SIZE_KEYS,
    *_TIME_KEYS,
    *_ISO_TIME_KEYS,
    *HASH_ALGORITHMS,
    "archiveid",
    "archivename",
    "extra",
    "health",
)
_ITEM_CALL_KEYS = frozenset((*_SIZE_KEYS, *_TIME_KEYS, *_ISO_TIME_KEYS, *HASH_ALGORITHMS))
_STORED_SIZE_KEYS = frozenset(("csize", "dcsize"))
_REFCOUNT_KEYS = frozenset(("dsize", "dcsize", "unique_chunks"))
_ZERO_BLOCK = bytes(1 << 20)


def remove_surrogates(text: str) -> str:
    """Borg's text form of a name: undecodable bytes (surrogate escapes) become ``?``."""
    return text.encode("utf-8", "replace").decode("utf-8")


class OutputTimestamp:
    """A time as Borg shows it: ``Sat, 2021-01-02 03:04:05`` unless a strftime spec is given.

    ``dt`` is already in local time (naive or aware; no offset is printed).
    """

    __slots__ = ("dt",)

    def __init__(self, dt: datetime) -> None:
        self.dt = dt

    def __format__(self, spec: str) -> str:
        return self.dt.strftime(spec or DEFAULT_TIME_FORMAT)

    def __str__(self) -> str:
        return format(self, "")

    def isoformat(self) -> str:
        """ISO 8601 with microseconds and without offset (Borg's JSON timestamps)."""
        return self.dt.strftime(ISO_FORMAT)


def local_timestamp(ns: int) -> OutputTimestamp:
    """An item time (ns since the epoch) in local time, converted exactly as Borg does."""
    return OutputTimestamp(datetime.fromtimestamp(ns / 1e9))


def record_timestamp(dt: datetime) -> OutputTimestamp:
    """An archive time (aware) in local time."""
    return OutputTimestamp(dt.astimezone())


def format_archive_line(record: ArchiveRecord) -> str:
    """Borg's one-line archive description (``delete --list``, repository delete prompt)."""
    when = record_timestamp(record.start_dt)
    return f"{remove_surrogates(record.name):<36} {when} [{record.id.hex()}]"


def format_keys(fmt: str, available: Collection[str]) -> frozenset[str]:
    """The keys ``fmt`` uses; InvalidFormat for a key not in ``available``.

    Only plain names are allowed (no ``{a.b}`` or ``{a[0]}``, no positional
    ``{}``), also in nested specs such as ``{size:{width}}``.
    """
    used: set[str] = set()
    _collect_keys(fmt, fmt, available, used)
    return frozenset(used)


def _collect_keys(fragment: str, fmt: str, available: Collection[str], used: set[str]) -> None:
    try:
        fields = list(Formatter().parse(fragment))
    except ValueError as exc:
        raise InvalidFormat(fmt, f"{exc}; write '{{{{' or '}}}}' for a literal brace") from None
    for _literal, name, spec, _conversion in fields:
        if name is None:
            continue
        if name == "":
            raise InvalidFormat(fmt, "empty key {}; name a key such as {path}")
        if name not in available:
            raise InvalidFormat(fmt, f"unknown key {{{name}}}; see the help of this command")
        used.add(name)
        if spec:
            _collect_keys(spec, fmt, available, used)


def _apply(fmt: str, data: Mapping[str, Any]) -> str:
    try:
        return fmt.format_map(data)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise InvalidFormat(fmt, str(exc)) from None


def jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with timestamps as ISO strings and surrogate escapes replaced.

    JSON carries text only (Borg drops ``bpath``/``barchive`` from it for that
    reason); replacing undecodable bytes keeps every string encodable.
    """
    return {key: _json_value(value) for key, value in data.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, OutputTimestamp):
        return value.isoformat()
    if isinstance(value, str):
        return remove_surrogates(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


class ArchiveFormatter:
    """The keys of one archive (``list REPO``), as text or as Borg's JSON object.

    ``authenticated`` is what ``{tam}`` reports: ``verified`` when archive
    records are authenticated by the key (every mode but ``none``).
    """

    def __init__(self, fmt: str, *, json: bool = False, authenticated: bool = True) -> None:
        self.fmt = fmt
        self.json = json
        self.authenticated = authenticated
        self.used = format_keys(fmt, (*FIXED_KEYS, *ARCHIVE_KEYS))

    def data(self, record: ArchiveRecord) -> dict[str, Any]:
        """Borg's item data: the basic keys, plus the costlier ones the format uses."""
        data: dict[str, Any] = {} if self.json else dict(FIXED_KEYS)
        start = record_timestamp(record.start_dt)
        data.update(
            name=remove_surrogates(record.name),
            archive=remove_surrogates(record.name),
            barchive=record.name,
            id=record.id.hex(),
            time=start,
            start=start,
        )
        for key in self.used & _ARCHIVE_CALL_KEYS:
            data[key] = self._call_key(key, record)
        return data

    def _call_key(self, key: str, record: ArchiveRecord) -> Any:
        if key == "end":
            return record_timestamp(record.end_dt)
        if key == "command_line":
            words = [remove_surrogates(w) for w in record.cmdline]
            return words if self.json else " ".join(shlex.quote(w) for w in words)
        if key == "tam":
            return "verified" if self.authenticated else "none"
        if key == "bcomment":
            return record.comment
        value: str = getattr(record, key)  # hostname, username, comment
        return remove_surrogates(value)

    def format(self, record: ArchiveRecord) -> str:
        return _apply(self.fmt, self.data(record))

    def json_data(self, record: ArchiveRecord) -> dict[str, Any]:
        """The archive's object in ``list --json``."""
        return jsonable(self.data(record))


class ChunkReader(Protocol):
    def get(self, type: ObjectType, id: bytes) -> bytes: ...


@dataclass(frozen=True)
class ItemSources:
    """Where the costly item keys get their data; each is needed only by some keys.

    ``reader``: chunk contents (hash keys). ``stored_size``: bytes a chunk
    occupies in the repository (``csize``, ``dcsize``). ``refcounts``:
    references to each chunk over all archives (``dsize``, ``dcsize``,
    ``unique_chunks``).
    """

    reader: ChunkReader | None = None
    stored_size: Callable[[bytes], int] | None = None
    refcounts: Mapping[bytes, int] | None = None


class ItemFormatter:
    """The keys of the items of one archive (``list REPO::ARCHIVE``).

    Feed every walked item in walk order: :meth:`format` or
    :meth:`json_data` for the items shown, :meth:`remember` for those a
    filter hides, so hard-link groups are described the same whatever is
    shown (the first member walked is the one the others "link to").
    """

    def __init__(
        self,
        fmt: str,
        record: ArchiveRecord,
        sources: ItemSources | None = None,
        *,
        json_lines: bool = False,
    ) -> None:
        self.fmt = fmt
        self.record = record
        self.sources = sources or ItemSources()
        self.json_lines = json_lines
        self.used = format_keys(fmt, (*FIXED_KEYS, *ITEM_KEYS))
        self._calls = self.used & _ITEM_CALL_KEYS
        self._hashes = tuple(k for k in HASH_ALGORITHMS if k in self.used)
        self._first_member: dict[bytes, bytes] = {}
        self._static: dict[str, Any] = {}
        if not json_lines:
            self._static = {
                **FIXED_KEYS,
                "archivename": record.name,
                "archiveid": record.id.hex(),
            }

    @property
    def needs_content(self) -> bool:
        """True if the format has hash keys (every chunk of every file is read)."""
        return bool(self._hashes)

    @property
    def needs_stored_sizes(self) -> bool:
        return bool(self.used & _STORED_SIZE_KEYS)

    @property
    def needs_refcounts(self) -> bool:
        """True if the format needs repository-wide reference counts."""
        return bool(self.used & _REFCOUNT_KEYS)

    def remember(self, walked: Walked) -> None:
        """Note a walked item that is not shown (it may head a hard-link group)."""
        if walked.entry.hardlink_id is not None:
            self._first_member.setdefault(walked.entry.hardlink_id, walked.path)

    def format(self, walked: Walked) -> str:
        return _apply(self.fmt, self.data(walked))

    def json_data(self, walked: Walked) -> dict[str, Any]:
        """One ``--json-lines`` object."""
        return jsonable(self.data(walked))

    def data(self, walked: Walked) -> dict[str, Any]:
        """Borg's item data: the basic keys, plus the costlier ones the format uses."""
        entry = walked.entry
        data = dict(self._static)
        mode = stat.filemode(entry.mode)
        source, follower = self._source(walked)
        extra = ""
        if source:
            if entry.is_link:
                extra = f" -> {source}"
            elif follower:
                mode = "h" + mode[1:]
                extra = f" link to {source}"
        data["type"] = stat.filemode(entry.mode)[0]
        data["mode"] = mode
        data["user"] = entry.user or entry.uid
        data["group"] = entry.group or entry.gid
        data["uid"] = entry.uid
        data["gid"] = entry.gid
        path = os.fsdecode(walked.path)
        data["path"] = remove_surrogates(path)
        if self.json_lines:
            data["healthy"] = not entry.is_broken
        else:
            data["bpath"] = path
            data["extra"] = extra
            data["health"] = "broken" if entry.is_broken else "healthy"
        data["source"] = source
        data["linktarget"] = source
        data["flags"] = entry.flags or 0
        if self._calls:
            data.update(self._call_keys(entry))
        return data

    def _source(self, walked: Walked) -> tuple[str, bool]:
        """(link target or first hard-link member, whether it is a later member)."""
        entry = walked.entry
        if entry.is_link:
            return remove_surrogates(os.fsdecode(entry.link_target or b"")), False
        if entry.hardlink_id is None:
            return "", False
        first = self._first_member.setdefault(entry.hardlink_id, walked.path)
        if first == walked.path:
            return "", False
        return remove_surrogates(os.fsdecode(first)), True

    def _call_keys(self, entry: Entry) -> dict[str, Any]:
        values: dict[str, Any] = {}
        chunks = entry.chunks or []
        for key in self._calls:
            if key in _TIME_KEYS:
                values[key] = _item_time(entry, key)
            elif key in _ISO_TIME_KEYS:
                values[key] = _item_time(entry, key[3:]).isoformat()
        if "size" in self._calls:
            values["size"] = item_size(entry)
        if "num_chunks" in self._calls:
            values["num_chunks"] = len(chunks)
        if "csize" in self._calls:
            # Borg: a symlink "stores" its target, its csize is the target's length.
            link = len(entry.link_target or b"") if entry.is_link else 0
            values["csize"] = link + sum(self._stored(c.id) for c in chunks if c.id != ZERO_ID)
        if self.used & _REFCOUNT_KEYS:
            values.update(self._unique(chunks))
        if self._hashes:
            values.update(self._hash(entry))
        return values

    def _stored(self, chunk_id: bytes) -> int:
        if self.sources.stored_size is None:
            raise ValueError("ItemFormatter needs stored_size for csize/dcsize")
        return self.sources.stored_size(chunk_id)

    def _unique(self, chunks: list[ChunkRef]) -> dict[str, int]:
        """Borg's dsize/dcsize/unique_chunks: chunks referenced nowhere but here."""
        refcounts = self.sources.refcounts
        if refcounts is None:
            raise ValueError("ItemFormatter needs refcounts for dsize/dcsize/unique_chunks")
        stored = [c for c in chunks if c.id != ZERO_ID]
        here = Counter(c.id for c in stored)
        unique = [c for c in stored if refcounts.get(c.id, 0) == here[c.id]]
        values = {"dsize": sum(c.size for c in unique), "unique_chunks": len(unique)}
        if "dcsize" in self.used:
            values["dcsize"] = sum(self._stored(c.id) for c in unique)
        return {k: v for k, v in values.items() if k in self.used}

    def _hash(self, entry: Entry) -> dict[str, str]:
        """All hash keys of the format in one read of the content ("" if it has none)."""
        if entry.chunks is None:
            return dict.fromkeys(self._hashes, "")
        hashers = [_new_hash(name) for name in self._hashes]
        for block in self._content(entry.chunks):
            for hasher in hashers:
                hasher.update(block)
        return {name: h.hexdigest() for name, h in zip(self._hashes, hashers, strict=True)}

    def _content(self, chunks: list[ChunkRef]) -> Iterable[bytes]:
        reader = self.sources.reader
        if reader is None:
            raise ValueError("ItemFormatter needs a reader for hash keys")
        for chunk in chunks:
            if chunk.id == ZERO_ID:
                yield from _zeros(chunk.size)
            else:
                yield reader.get(ObjectType.DATA, chunk.id)


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _new_hash(name: str) -> _Hasher:
    if name == "xxh64":
        hasher: _Hasher = xxhash.xxh64()
        return hasher
    return hashlib.new(name)


def _zeros(size: int) -> Iterable[bytes]:
    while size > 0:
        step = min(size, len(_ZERO_BLOCK))
        yield _ZERO_BLOCK[:step]
        size -= step


def _item_time(entry: Entry, key: str) -> OutputTimestamp:
    """mtime, ctime or atime; a time not recorded falls back to mtime (as Borg)."""
    value = {"mtime": entry.mtime, "ctime": entry.ctime, "atime": entry.atime}[key]
    return local_timestamp(value or entry.mtime)


def item_size(entry: Entry) -> int:
    """Borg's ``size``: file length; a symlink's is the length of its target; else 0."""
    if entry.is_link:
        return len(entry.link_target or b"")
    if entry.is_reg:
        return entry.size
    return 0
