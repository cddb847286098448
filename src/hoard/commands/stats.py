"""Borg's human and JSON renderings of sizes, archives and repositories.

Shared by ``create --stats``/``--json``, ``info``, ``list --json``,
``delete --stats`` and ``prune --stats`` so that every command prints the same figures the same
way, and tools written for Borg's JSON (borgmatic, Vorta) parse ours. The
text layouts are Borg 1.4.1's, column for column.

What the figures mean in hoard (Borg keeps per-chunk reference counts in
its cache; hoard computes what it needs):

- "All archives": original and compressed sizes are sums over the archive
  records; the deduplicated size is what the repository's packs hold now
  (data and metadata), which includes what deleted archives left behind
  until ``compact`` runs.
- "Chunk index": unique chunks are the file-content chunks stored; total
  chunks are the chunk references of all archives.
- "This archive" in ``info``: the deduplicated size is what deleting this
  archive (and compacting) would free, computed by the caller.
"""

from __future__ import annotations

import os
import shlex
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from hoard.archive.catalog import ReferenceGraph, unique_objects
from hoard.archive.formatter import remove_surrogates
from hoard.archive.record import ArchiveRecord, ArchiveStats, local_iso
from hoard.commands.repo import OpenRepository
from hoard.objects.keyfile import find_key_file
from hoard.objects.keys import EncryptionMode, KeyLocation
from hoard.objects.types import ObjectType
from hoard.storage.location import Location

SEPARATOR = "-" * 78
STATS_HEADER = "                       Original size      Compressed size    Deduplicated size"
CHUNKS_HEADER = "                       Unique chunks         Total chunks"
_DECIMAL = ("", "k", "M", "G", "T", "P", "E", "Z", "Y")
_IEC = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi")


def format_file_size(
    value: float, *, iec: bool = False, precision: int = 2, sign: bool = False
) -> str:
    """``1.23 MB`` (or ``1.17 MiB`` with --iec), exactly as Borg rounds;
    ``sign`` puts ``+`` before a positive size (``diff``'s ``+13 B``)."""
    plus = "+" if sign and value > 0 else ""
    units, power = (_IEC, 1024) if iec else (_DECIMAL, 1000)
    num = float(value)
    decimals = 0
    unit = units[-1]
    for candidate in units[:-1]:
        if abs(round(num, precision)) < power:
            unit = candidate
            break
        num /= power
        decimals = precision
    return f"{num:{plus}.{decimals}f} {unit}B"


def format_time(dt: datetime) -> str:
    """Borg's human timestamp: ``Thu, 2026-11-26 14:00:00`` in local time."""
    return dt.astimezone().strftime("%a, %Y-%m-%d %H:%M:%S")


def format_duration(seconds: float) -> str:
    """Borg's ``format_timedelta``: ``1 days 2 hours 1 minutes 3.25 seconds``."""
    days, rest = divmod(seconds, 86400)
    text = f"{rest % 60:.2f} seconds"
    minutes = int(rest / 60) % 60
    hours = int(rest / 3600) % 24
    if minutes:
        text = f"{minutes} minutes {text}"
    if hours:
        text = f"{hours} hours {text}"
    if days:
        text = f"{int(days)} days {text}"
    return text


def location_text(location: Location) -> str:
    """The repository as Borg names it in output: local paths made absolute.

    Text only (undecodable bytes become ``?``), so it prints on any terminal
    and fits into JSON.
    """
    if location.proto == "file":
        return remove_surrogates(os.path.abspath(location.path))
    return remove_surrogates(location.canonical_path())


@dataclass(frozen=True)
class RepositoryTotals:
    """Repository-wide figures for "All archives" and the chunk index line."""

    original_size: int
    compressed_size: int
    deduplicated_size: int
    unique_chunks: int
    total_chunks: int


def repository_totals(repo: OpenRepository, records: list[ArchiveRecord]) -> RepositoryTotals:
    """Sums over archive records; the deduplicated size is what the packs hold."""
    index = repo.repository
    stored = sum(index.stored_size(i) or 0 for i in index.list_ids())
    return RepositoryTotals(
        original_size=sum(r.stats.original_size for r in records),
        compressed_size=sum(r.stats.compressed_size for r in records),
        deduplicated_size=stored,
        unique_chunks=len(index.list_ids(ObjectType.DATA)),
        total_chunks=sum(r.stats.nchunks for r in records),
    )


def freed_size(
    repo: OpenRepository,
    graph: ReferenceGraph,
    all_counts: Counter[bytes],
    group: list[ArchiveRecord],
) -> int:
    """Stored bytes only ``group`` references: what deleting it and compacting frees.

    ``all_counts`` are the reference counts of every archive (from ``graph``).
    """
    index = repo.repository
    unique = unique_objects(all_counts, graph.refcounts(group))
    return sum(index.stored_size(i) or 0 for i in unique)


def current_stats(
    repo: OpenRepository,
    graph: ReferenceGraph,
    all_counts: Counter[bytes],
    record: ArchiveRecord,
) -> ArchiveStats:
    """The record's figures with today's deduplicated size (what deleting it frees)."""
    return replace(record.stats, deduplicated_size=freed_size(repo, graph, all_counts, [record]))


def size_row(label: str, original: int, compressed: int, dedup: int, *, iec: bool) -> str:
    """One line under STATS_HEADER (Borg's ``Statistics.summary``)."""
    return (
        f"{label:15} {format_file_size(original, iec=iec):>20} "
        f"{format_file_size(compressed, iec=iec):>20} {format_file_size(dedup, iec=iec):>20}"
    )


def totals_text(totals: RepositoryTotals, *, iec: bool) -> str:
    """The "All archives" line and the chunk index table (Borg's ``str(cache)``)."""
    return "\n".join(
        [
            size_row(
                "All archives:",
                totals.original_size,
                totals.compressed_size,
                totals.deduplicated_size,
                iec=iec,
            ),
            "",
            CHUNKS_HEADER,
            f"Chunk index:    {totals.unique_chunks:20d} {totals.total_chunks:20d}",
        ]
    )


def archive_stats_text(
    repo: OpenRepository, record: ArchiveRecord, totals: RepositoryTotals | None, *, iec: bool
) -> str:
    """The block ``create --stats`` prints (between separators); without the
    repository-wide lines when ``totals`` is None (``--quick-stats``)."""
    s = record.stats
    lines = [
        f"Repository: {location_text(repo.location)}",
        f"Archive name: {remove_surrogates(record.name)}",
        f"Archive fingerprint: {record.id.hex()}",
        f"Time (start): {format_time(record.start_dt)}",
        f"Time (end):   {format_time(record.end_dt)}",
        f"Duration: {format_duration(record.duration)}",
        f"Number of files: {s.nfiles}",
        "Utilization of max. archive size: 0%",
        SEPARATOR,
        STATS_HEADER,
        size_row("This archive:", s.original_size, s.compressed_size, s.deduplicated_size, iec=iec),
    ]
    if totals is not None:
        lines.append(totals_text(totals, iec=iec))
    return "\n".join(lines)


def archive_info_text(
    record: ArchiveRecord, stats: ArchiveStats, totals: RepositoryTotals, *, iec: bool
) -> str:
    """``info REPO::ARCHIVE``: Borg 1.4's per-archive block (no trailing newline)."""
    lines = [
        f"Archive name: {remove_surrogates(record.name)}",
        f"Archive fingerprint: {record.id.hex()}",
        f"Comment: {remove_surrogates(record.comment)}",
        f"Hostname: {remove_surrogates(record.hostname)}",
        f"Username: {remove_surrogates(record.username)}",
        f"Time (start): {format_time(record.start_dt)}",
        f"Time (end): {format_time(record.end_dt)}",
        f"Duration: {format_duration(record.duration)}",
        f"Number of files: {stats.nfiles}",
        f"Working Directory: {remove_surrogates(record.cwd)}",
        f"Command line: {command_line_text(record.cmdline)}",
        "Utilization of maximum supported archive size: 0%",
        SEPARATOR,
        STATS_HEADER,
        size_row(
            "This archive:",
            stats.original_size,
            stats.compressed_size,
            stats.deduplicated_size,
            iec=iec,
        ),
        totals_text(totals, iec=iec),
    ]
    return "\n".join(lines)


def command_line_text(cmdline: list[str]) -> str:
    """The stored command line as a shell would need it typed (Borg: ``shlex.join``)."""
    return remove_surrogates(shlex.join(cmdline))


@dataclass(frozen=True)
class RepositoryPlaces:
    """Local places belonging to a repository, shown by ``info REPO``."""

    cache: Path
    security: Path
    keyfile: Path | None


def repository_places(
    repo: OpenRepository, cache_dir: Path, security_dir: Path, keys_dir: Path
) -> RepositoryPlaces:
    """The cache and security directories of ``repo`` and its key file (keyfile modes)."""
    id_hex = repo.repository.id.hex()
    return RepositoryPlaces(
        cache=cache_dir / id_hex,
        security=security_dir / id_hex,
        keyfile=keyfile_path(repo, keys_dir),
    )


def path_text(path: Path) -> str:
    """A local path for output (undecodable bytes become ``?``)."""
    return remove_surrogates(str(path))


def keyfile_path(repo: OpenRepository, keys_dir: Path) -> Path | None:
    """The key file of a keyfile-mode repository (None for other modes)."""
    if repo.mode.location is not KeyLocation.KEYFILE:
        return None
    return find_key_file(keys_dir, repo.repository.id)


def repository_info_text(
    repo: OpenRepository, places: RepositoryPlaces, totals: RepositoryTotals, *, iec: bool
) -> str:
    """``info REPO``: Borg 1.4's repository block."""
    if repo.mode.location is KeyLocation.NOWHERE or repo.mode is EncryptionMode.AUTHENTICATED:
        encryption = "Encrypted: No"
    else:
        encryption = f"Encrypted: Yes ({repo.shown_mode})"
    lines = [
        f"Repository ID: {repo.repository.id.hex()}",
        f"Location: {location_text(repo.location)}",
        encryption,
    ]
    if places.keyfile is not None:
        lines.append(f"Key file: {path_text(places.keyfile)}")
    lines += [
        f"Cache: {path_text(places.cache)}",
        f"Security dir: {path_text(places.security)}",
        SEPARATOR,
        STATS_HEADER,
        totals_text(totals, iec=iec),
    ]
    return "\n".join(lines)


def deleted_stats_text(
    original: int, compressed: int, freed: int, totals: RepositoryTotals | None, *, iec: bool
) -> str:
    """``delete --stats``: what the deleted archives held (negative, as Borg) and what is left.

    Without ``totals`` (``prune --quick-stats``) only the "Deleted data" line.
    """
    lines = [
        SEPARATOR,
        STATS_HEADER,
        size_row("Deleted data:", -original, -compressed, -freed, iec=iec),
    ]
    if totals is not None:
        lines.append(totals_text(totals, iec=iec))
    lines.append(SEPARATOR)
    return "\n".join(lines)


def deletion_stats_text(
    repo: OpenRepository,
    records: list[ArchiveRecord],
    deleted: list[ArchiveRecord],
    *,
    iec: bool,
    totals: bool = True,
) -> str:
    """The ``--stats`` block of ``delete`` and ``prune``: the deleted archives' sizes.

    ``records`` are all archives as they were before deleting; the
    deduplicated figure is what only ``deleted`` referenced (what ``compact``
    frees). ``totals`` False leaves out the repository-wide lines (Borg's
    ``--quick-stats``).
    """
    graph = ReferenceGraph(repo.objects)
    freed = freed_size(repo, graph, graph.refcounts(records), deleted) if deleted else 0
    gone = {r.id for r in deleted}
    remaining = [r for r in records if r.id not in gone]
    return deleted_stats_text(
        sum(r.stats.original_size for r in deleted),
        sum(r.stats.compressed_size for r in deleted),
        freed,
        repository_totals(repo, remaining) if totals else None,
        iec=iec,
    )


def last_modified(records: list[ArchiveRecord]) -> datetime | None:
    """When the archive list last changed, as far as the records tell (newest end time).

    Borg reports its manifest's timestamp; hoard has no manifest, and a
    deletion is not dated, so this is the end of the newest backup.
    """
    if not records:
        return None
    return max(r.end_dt for r in records)


def repository_json(repo: OpenRepository, modified: datetime | None = None) -> dict[str, Any]:
    """Borg's ``repository`` object (``last_modified`` when known)."""
    data: dict[str, Any] = {
        "id": repo.repository.id.hex(),
        "location": location_text(repo.location),
    }
    if modified is not None:
        data["last_modified"] = local_iso(modified)
    return data


def encryption_json(repo: OpenRepository, keyfile: Path | None = None) -> dict[str, Any]:
    """Borg's ``encryption`` object: ``mode`` as chosen at ``init`` (wrappers
    such as borgmatic and Vorta switch on it), ``keyfile`` in keyfile mode;
    and hoard's ``cipher``."""
    data: dict[str, Any] = {"mode": repo.shown_mode, "cipher": repo.mode.cipher}
    if keyfile is not None:
        data["keyfile"] = path_text(keyfile)
    return data


def cache_json(repo: OpenRepository, totals: RepositoryTotals, cache_path: str) -> dict[str, Any]:
    """Borg's ``cache`` object: path and repository-wide chunk statistics.

    hoard does not know the uncompressed size of the unique chunks without
    reading them all, so ``unique_size`` repeats the stored size.
    """
    return {
        "path": remove_surrogates(cache_path),
        "stats": {
            "total_chunks": totals.total_chunks,
            "total_csize": totals.compressed_size,
            "total_size": totals.original_size,
            "total_unique_chunks": totals.unique_chunks,
            "unique_csize": totals.deduplicated_size,
            "unique_size": totals.deduplicated_size,
        },
    }


def archive_json(record: ArchiveRecord, stats: ArchiveStats | None = None) -> dict[str, Any]:
    """Borg's per-archive object of ``create --json`` and ``info --json``.

    ``stats`` replaces the record's figures (``info`` passes the archive's
    current deduplicated size); text fields lose undecodable bytes, as JSON
    can only carry text.
    """
    s = stats or record.stats
    return {
        "name": remove_surrogates(record.name),
        "id": record.id.hex(),
        "start": local_iso(record.start_dt),
        "end": local_iso(record.end_dt),
        "duration": record.duration,
        "hostname": remove_surrogates(record.hostname),
        "username": remove_surrogates(record.username),
        "comment": remove_surrogates(record.comment),
        "command_line": [remove_surrogates(w) for w in record.cmdline],
        "cwd": remove_surrogates(record.cwd),
        "chunker_params": _chunker_params_json(record.chunker),
        "limits": {"max_archive_size": 0.0},
        "stats": {
            "original_size": s.original_size,
            "compressed_size": s.compressed_size,
            "deduplicated_size": s.deduplicated_size,
            "nfiles": s.nfiles,
        },
    }


def _chunker_params_json(text: str) -> list[str | int]:
    """Borg lists chunker params as ``["buzhash", 19, 23, 21, 4095]``."""
    return [int(p) if p.isdigit() else p for p in text.split(",") if p]
