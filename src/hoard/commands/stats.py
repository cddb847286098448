"""Borg's human and JSON renderings of sizes, archives and repositories.

Shared by ``create --stats``/``--json``, ``info``, ``list --json`` and
``delete --stats`` so that every command prints the same figures the same
way, and tools written for Borg's JSON (borgmatic, Vorta) parse ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hoard.archive.record import ArchiveRecord, local_iso
from hoard.commands.repo import OpenRepository

SEPARATOR = "-" * 78
_DECIMAL = ("", "k", "M", "G", "T", "P", "E", "Z", "Y")
_IEC = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi")


def format_file_size(value: float, *, iec: bool = False, precision: int = 2) -> str:
    """``1.23 MB`` (or ``1.17 MiB`` with --iec), exactly as Borg rounds."""
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
    return f"{num:.{decimals}f} {unit}B"


def format_time(dt: datetime) -> str:
    """Borg's human timestamp: ``Thu, 2026-11-26 14:00:00`` in local time."""
    return dt.astimezone().strftime("%a, %Y-%m-%d %H:%M:%S")


def format_duration(seconds: float) -> str:
    """Borg's ``format_timedelta``: ``1 minutes 3.25 seconds``."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.2f} seconds"
    if hours or minutes:
        text = f"{int(minutes)} minutes {text}"
    if hours:
        text = f"{int(hours)} hours {text}"
    return text


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
    ids = index.list_ids()
    stored = sum(index.stored_size(i) or 0 for i in ids)
    return RepositoryTotals(
        original_size=sum(r.stats.original_size for r in records),
        compressed_size=sum(r.stats.compressed_size for r in records),
        deduplicated_size=stored,
        unique_chunks=len(ids),
        total_chunks=sum(r.stats.nchunks for r in records),
    )


def size_row(label: str, original: int, compressed: int, dedup: int, *, iec: bool) -> str:
    return (
        f"{label:<22}{format_file_size(original, iec=iec):>20}"
        f"{format_file_size(compressed, iec=iec):>20}{format_file_size(dedup, iec=iec):>20}"
    )


def archive_stats_text(
    repo: OpenRepository, record: ArchiveRecord, totals: RepositoryTotals, *, iec: bool
) -> str:
    """The block ``create --stats`` and ``info ::archive`` print."""
    s = record.stats
    lines = [
        f"Repository: {repo.location.canonical_path()}",
        f"Archive name: {record.name}",
        f"Archive fingerprint: {record.id.hex()}",
        f"Time (start): {format_time(record.start_dt)}",
        f"Time (end):   {format_time(record.end_dt)}",
        f"Duration: {format_duration(record.duration)}",
        f"Number of files: {s.nfiles}",
        "Utilization of max. archive size: 0%",
        SEPARATOR,
        f"{'':<22}{'Original size':>20}{'Compressed size':>20}{'Deduplicated size':>20}",
        size_row("This archive:", s.original_size, s.compressed_size, s.deduplicated_size, iec=iec),
        size_row(
            "All archives:",
            totals.original_size,
            totals.compressed_size,
            totals.deduplicated_size,
            iec=iec,
        ),
        "",
        f"{'':<22}{'Unique chunks':>20}{'Total chunks':>20}",
        f"{'Chunk index:':<22}{totals.unique_chunks:>20}{totals.total_chunks:>20}",
    ]
    return "\n".join(lines)


def repository_json(repo: OpenRepository, last_modified: datetime | None = None) -> dict[str, Any]:
    """Borg's ``repository`` object."""
    data: dict[str, Any] = {
        "id": repo.repository.id.hex(),
        "location": repo.location.canonical_path(),
    }
    if last_modified is not None:
        data["last_modified"] = local_iso(last_modified)
    return data


def encryption_json(repo: OpenRepository) -> dict[str, Any]:
    """Borg's ``encryption`` object (``mode`` plus ``keyfile`` in keyfile mode)."""
    return {"mode": repo.mode.value}


def cache_json(repo: OpenRepository, totals: RepositoryTotals, cache_path: str) -> dict[str, Any]:
    """Borg's ``cache`` object: path and repository-wide chunk statistics."""
    return {
        "path": cache_path,
        "stats": {
            "total_chunks": totals.total_chunks,
            "total_csize": totals.compressed_size,
            "total_size": totals.original_size,
            "total_unique_chunks": totals.unique_chunks,
            "unique_csize": totals.deduplicated_size,
            "unique_size": totals.deduplicated_size,
        },
    }


def archive_json(record: ArchiveRecord) -> dict[str, Any]:
    """Borg's per-archive object of ``create --json`` and ``info --json``."""
    s = record.stats
    return {
        "name": record.name,
        "id": record.id.hex(),
        "start": local_iso(record.start_dt),
        "end": local_iso(record.end_dt),
        "duration": record.duration,
        "hostname": record.hostname,
        "username": record.username,
        "comment": record.comment,
        "command_line": record.cmdline,
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
