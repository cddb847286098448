"""The repository part of ``check``: do packs, index files and names agree?

Key-agnostic: this layer cannot authenticate a blob (the objects layer does,
with ``--verify-data`` or when ``check`` looks inside a damaged pack), but it
can see every kind of structural damage a disk, a copy or a crash leaves:

- a pack whose bytes no longer hash to its name (a flipped bit somewhere in
  it), a pack whose blob headers do not parse (truncated, garbled);
- an index file that does not decode;
- index entries that point at a pack that is gone, or at a place in a pack
  where the header there disagrees (type, id, length);
- packs that no live index file mentions (a crash before the index file, or
  a damaged index file), temporary files of crashed writes;
- a ``config`` that is damaged or missing (its copy answered), and a copy
  that is missing, damaged or stale (the key's copies are checked by the
  objects layer, which can decode key blobs; the kinds are defined here).

The pack scan can run in slices (``--max-duration``): packs are visited in
name order and the scan stops after the deadline, returning the last pack
done, from which the next run resumes. The cheap parts (index files, the
listing, temporary files) run every time.

Packs are read and hashed on a pool of threads (reads and SHA-256 release
the GIL), a few packs ahead of the one whose results are taken in name
order, so findings and the cursor are those of a sequential scan and memory
stays at a few packs. With ``verify`` (``--verify-data``) the same read
also hands every indexed blob of a sound pack to the objects layer, which
authenticates it: each pack is read once, not once for its structure and
again for its blobs.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from hoard.errors import IntegrityError, ObjectNotFound
from hoard.repository.config import CONFIG_COPY_NAME, CONFIG_NAME, load_config
from hoard.repository.indexfile import IndexFile
from hoard.repository.indexnames import index_path, list_index_names
from hoard.repository.pack import HEADER_SIZE, PackEntry, pack_path, parse_pack, salvage_pack
from hoard.storage.base import Storage

PACK_NAME = re.compile(r"^packs/([0-9a-f]{2})/(\1[0-9a-f]{62})$")

# Finding kinds (stable strings: they are --json keys and --log-json msgids).
MISNAMED_PACK = "misnamed_pack"
UNREADABLE_PACK = "unreadable_pack"
MISSING_PACK = "missing_pack"
DAMAGED_INDEX = "damaged_index"
INDEX_MISMATCH = "index_mismatch"
UNAUTHENTIC_BLOB = "unauthentic_blob"
"""A blob in a sound pack that does not open as the object its id names
(found by ``--verify-data``: a bug, or a pack rewritten by someone without the key)."""
ORPHAN_PACK = "orphan_pack"
TEMPORARY_FILE = "temporary_file"
DAMAGED_CONFIG = "damaged_config"
DAMAGED_KEY = "damaged_key"
DAMAGED_COPY = "damaged_copy"
STALE_COPY = "stale_copy"
"""A copy of config or key that is missing or differs from the one in force
(a hand-edited config, or a crash between writing the two): not damage, but
the copy would not help if the one in force were damaged."""

DAMAGE = frozenset(
    {
        MISNAMED_PACK,
        UNREADABLE_PACK,
        MISSING_PACK,
        DAMAGED_INDEX,
        INDEX_MISMATCH,
        UNAUTHENTIC_BLOB,
        DAMAGED_CONFIG,
        DAMAGED_KEY,
        DAMAGED_COPY,
    }
)
"""Kinds that mean lost or unreliable data; the others are garbage that only costs space."""

BlobVerifier = Callable[[PackEntry, bytes], "str | None"]
"""Why the blob bytes read for an entry are not the authentic object the entry
names (None: they are). Called from several threads at once."""


@dataclass(frozen=True)
class Finding:
    """One problem: its kind, the storage object it concerns, what is wrong."""

    kind: str
    name: str
    detail: str

    @property
    def is_damage(self) -> bool:
        return self.kind in DAMAGE


@dataclass
class RepositoryCheck:
    """What the repository part found.

    ``suspect_packs``: packs whose content may hold damaged blobs (misnamed,
    unreadable, or with a blob ``verify`` rejected), with the entries that can
    still be located in them, so the objects layer can open each blob and
    tell which ones are damaged.
    ``lost``: ids of blobs the index lists in packs that are missing.
    ``cursor``: the last pack scanned when the scan stopped at its deadline
    (None when it went through to the end).
    """

    findings: list[Finding] = field(default_factory=list)
    packs_scanned: int = 0
    packs_total: int = 0
    suspect_packs: dict[str, list[PackEntry]] = field(default_factory=dict)
    lost: set[bytes] = field(default_factory=set)
    copies: dict[bytes, set[str]] = field(default_factory=dict)
    """For every blob of a suspect pack and every lost blob: the existing
    packs the live index files place it in. A damaged copy costs nothing
    while another pack holds an intact one (a later backup stored it anew)."""
    misplaced: set[tuple[str, bytes]] = field(default_factory=set)
    """(pack, id) of index entries the pack disagrees with (their ids are in ``lost``)."""
    blobs_verified: int = 0
    cursor: str | None = None

    @property
    def complete(self) -> bool:
        return self.cursor is None

    def merge(self, part: RepositoryCheck) -> None:
        """Take in what the scan of one pack found."""
        self.findings.extend(part.findings)
        self.suspect_packs.update(part.suspect_packs)
        self.lost.update(part.lost)
        self.misplaced.update(part.misplaced)
        self.blobs_verified += part.blobs_verified


@dataclass(frozen=True, slots=True)
class _Indexed:
    pack: str
    entry: PackEntry


def _live_index(storage: Storage, findings: list[Finding]) -> dict[str, list[PackEntry]]:
    """pack name -> entries of every live (not superseded) readable index file."""
    files: dict[str, IndexFile] = {}
    for name in sorted(list_index_names(storage)):
        try:
            files[name] = IndexFile.decode(name, storage.load(index_path(name)))
        except ObjectNotFound:
            continue  # removed meanwhile (compact)
        except IntegrityError as exc:
            findings.append(Finding(DAMAGED_INDEX, index_path(name), str(exc)))
    superseded = {s for f in files.values() for s in f.superseded}
    by_pack: dict[str, list[PackEntry]] = {}
    for name, index_file in files.items():
        if name in superseded:
            continue
        packs = [p.hex() for p in index_file.packs]
        e = index_file.entries
        ids = e[["key0", "rest"]].astype([("key0", ">u8"), ("rest", "V24")]).tobytes()
        columns = zip(
            e["type"].tolist(),
            e["pack"].tolist(),
            e["offset"].tolist(),
            e["length"].tolist(),
            strict=True,
        )
        for n, (type_, pack, offset, length) in enumerate(columns):
            entry = PackEntry(type_, ids[32 * n : 32 * n + 32], offset, length)
            by_pack.setdefault(packs[pack], []).append(entry)
    return by_pack


def check_repository(
    storage: Storage,
    *,
    start_after: str | None = None,
    deadline: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    verify: BlobVerifier | None = None,
    workers: int | None = None,
) -> RepositoryCheck:
    """Check the structure of the repository on ``storage``.

    ``start_after``: resume the pack scan after this pack name (from an
    earlier run's ``cursor``); ``deadline`` (``time.monotonic()`` value):
    stop the pack scan once it has passed. ``progress(done, total)`` is
    called after each pack. ``verify``: also authenticate every indexed blob
    of every sound pack (one that fails makes its pack suspect). ``workers``:
    reading threads (default: one per core).
    """
    result = RepositoryCheck()
    indexed = _live_index(storage, result.findings)
    listed = {}
    for info in storage.list("packs/"):
        match = PACK_NAME.match(info.name)
        if match is not None:
            listed[match.group(2)] = info.size
    for pack in sorted(set(indexed) - set(listed)):
        entries = indexed[pack]
        result.lost.update(e.id for e in entries)
        result.findings.append(
            Finding(MISSING_PACK, pack_path(pack), f"missing; {len(entries)} indexed blobs lost")
        )
    names = sorted(listed)
    result.packs_total = len(names)
    todo = [n for n in names if start_after is None or n > start_after]
    threads = max(1, workers or os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="check-pack") as pool:
        work: Callable[[str], RepositoryCheck] = lambda p: _check_pack(  # noqa: E731
            storage, p, indexed.get(p), verify
        )
        scans = _in_order(pool, work, todo, ahead=threads + 1)
        for n, (pack, part) in enumerate(zip(todo, scans, strict=False), 1):
            result.merge(part)
            result.packs_scanned += 1
            if progress is not None:
                progress(result.packs_total - len(todo) + n, result.packs_total)
            if deadline is not None and time.monotonic() >= deadline and n < len(todo):
                result.cursor = pack
                break
        scans.close()  # cancels the packs read ahead of a deadline stop
    _find_copies(indexed, set(listed), result)
    for info in storage.list_temporary(""):
        result.findings.append(
            Finding(
                TEMPORARY_FILE, info.name, f"temporary file of an unfinished write, {info.size} B"
            )
        )
    return result


def _in_order(
    pool: ThreadPoolExecutor,
    work: Callable[[str], RepositoryCheck],
    packs: Sequence[str],
    *,
    ahead: int,
) -> Generator[RepositoryCheck, None, None]:
    """``work`` of each pack, in order, with ``ahead`` packs in flight (one
    more than the threads: they stay busy while memory stays at a few packs)."""
    pending: deque[Future[RepositoryCheck]] = deque()
    try:
        for pack in packs:
            pending.append(pool.submit(work, pack))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _check_pack(
    storage: Storage, pack: str, indexed: list[PackEntry] | None, verify: BlobVerifier | None
) -> RepositoryCheck:
    """What one pack holds wrong (a part to merge: this runs on a pool thread)."""
    part = RepositoryCheck()
    try:
        data = storage.load(pack_path(pack))
    except ObjectNotFound:
        return part  # deleted since the listing (compact): not damage
    name = pack_path(pack)
    entries: list[PackEntry] | None
    try:
        entries = parse_pack(data, pack)
    except IntegrityError as exc:
        part.findings.append(Finding(UNREADABLE_PACK, name, str(exc)))
        part.suspect_packs[pack] = salvage_pack(data)
        entries = None
    else:
        if hashlib.sha256(data).hexdigest() != pack:
            part.findings.append(
                Finding(MISNAMED_PACK, name, "content does not match its name (damaged bytes)")
            )
            part.suspect_packs[pack] = entries
    if indexed is None:
        part.findings.append(Finding(ORPHAN_PACK, name, "no index file mentions this pack"))
        return part
    found = {e.offset: e for e in (entries if entries is not None else salvage_pack(data))}
    sound: list[PackEntry] = []
    for want in indexed:
        got = found.get(want.offset)
        if got is None or (got.type, got.id, got.length) != (want.type, want.id, want.length):
            part.lost.add(want.id)
            part.misplaced.add((pack, want.id))
            part.findings.append(
                Finding(
                    INDEX_MISMATCH,
                    name,
                    f"blob {want.id.hex()} at offset {want.offset}: "
                    "the pack holds something else there",
                )
            )
        else:
            sound.append(want)
    # A suspect pack's blobs are opened one by one anyway. A pack with a blob
    # that fails is repaired like a damaged one: its intact blobs move out.
    if (
        verify is not None
        and pack not in part.suspect_packs
        and not _verify_blobs(pack, data, sound, verify, part)
    ):
        part.suspect_packs[pack] = sound
    return part


def _verify_blobs(
    pack: str, data: bytes, entries: list[PackEntry], verify: BlobVerifier, part: RepositoryCheck
) -> bool:
    """Whether every blob at ``entries`` authenticates (a finding for each one that does not)."""
    authentic = True
    for entry in entries:
        start = entry.offset + HEADER_SIZE
        problem = verify(entry, data[start : start + entry.length])
        if problem is not None:
            authentic = False
            detail = f"blob {entry.id.hex()} at offset {entry.offset}: {problem}"
            part.findings.append(Finding(UNAUTHENTIC_BLOB, pack_path(pack), detail))
    part.blobs_verified += len(entries)
    return authentic


def _find_copies(
    indexed: dict[str, list[PackEntry]], listed: set[str], result: RepositoryCheck
) -> None:
    """Fill ``copies`` for the blobs found damaged or lost (few: one pass of
    the index): the packs that exist and hold the blob where the index says."""
    wanted = set(result.lost)
    wanted.update(e.id for entries in result.suspect_packs.values() for e in entries)
    if not wanted:
        return
    for pack, entries in indexed.items():
        if pack not in listed:
            continue
        for entry in entries:
            if entry.id in wanted and (pack, entry.id) not in result.misplaced:
                result.copies.setdefault(entry.id, set()).add(pack)


# --- config ---------------------------------------------------------------------------------


def check_config(storage: Storage) -> list[Finding]:
    """Findings about ``config`` and its copy (see ``load_config``)."""
    loaded = load_config(storage, "check")
    if loaded.damaged is not None:
        detail = loaded.damaged.removeprefix(f"{CONFIG_NAME} is ")
        return [Finding(DAMAGED_CONFIG, CONFIG_NAME, f"{detail}; its copy is in use")]
    if loaded.copy_problem is None:
        return []
    detail = loaded.copy_problem.removeprefix(f"{CONFIG_COPY_NAME} is ")
    kind = DAMAGED_COPY if detail.startswith("damaged") else STALE_COPY
    return [Finding(kind, CONFIG_COPY_NAME, detail)]


def repair_config(storage: Storage, *, append_only: bool) -> tuple[list[str], list[str]]:
    """Rewrite the bad one of ``config`` and its copy from the good one.

    The good one's exact bytes are copied (a hand-edited config keeps its
    layout). Returns (what was done, what was not: an append-only repository
    only gets a missing copy, since anything else would overwrite)."""
    done: list[str] = []
    left: list[str] = []
    for finding in check_config(storage):
        source = CONFIG_COPY_NAME if finding.name == CONFIG_NAME else CONFIG_NAME
        missing = not storage.exists(finding.name)
        if append_only and not missing:
            left.append(f"Kept {finding.name} ({finding.detail}; append-only)")
            continue
        storage.store(finding.name, storage.load(source), overwrite=not missing)
        done.append(f"Rewrote {finding.name} from {source} ({finding.detail})")
    return done, left
