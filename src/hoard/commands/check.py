"""``hoard check``: verify the repository and its archives, ``--repair`` what can be.

Borg 1.4's command line and rules. Two parts, each skippable:

- repository: packs (names, headers), index files and packs agreeing,
  missing and orphan packs, temporary files of crashed writes;
  ``--max-duration`` checks packs in slices and resumes next time;
- archives: every archive record opens, every tree and chunk it references
  exists (``--verify-data``: every chunk also opens).

A damaged pack is opened blob by blob, so each problem names the objects
lost and the archives and paths that reference them. Plain ``check`` takes
no lock (it only reads immutable objects, like ``list``); ``--repair`` takes
the exclusive lock. Exit status: 0 clean, 1 everything found was repaired
(or only garbage was found), 2 damage remains.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hoard.archive.catalog import select
from hoard.archive.check import (
    ArchiveChecker,
    ArchiveFinding,
    ArchiveRepairer,
    data_ids,
    scan_records,
    verify_data,
)
from hoard.commands.archiveargs import (
    add_archive_filter_arguments,
    archive_selection,
    filters_given,
)
from hoard.commands.base import Context
from hoard.commands.confirm import confirm
from hoard.commands.repo import OpenRepository, open_repository, repository_location
from hoard.commands.with_lock import command_lock
from hoard.errors import (
    CheckFoundDamage,
    CheckRepairedWarning,
    CommandError,
    IntegrityError,
    ObjectNotFound,
)
from hoard.objects.keys import KEYS_DIR, REPOKEY_NAME
from hoard.objects.types import ObjectType
from hoard.repository.check import (
    DAMAGE,
    DAMAGED_COPY,
    DAMAGED_KEY,
    ORPHAN_PACK,
    STALE_COPY,
    BlobVerifier,
    Finding,
    RepositoryCheck,
    check_config,
    check_repository,
    repair_config,
)
from hoard.repository.pack import PackEntry, pack_path
from hoard.storage.localfile import write_atomically

logger = logging.getLogger("hoard")

NAME = "check"
HELP = "Check repository consistency"
DESCRIPTION = """The check command verifies the consistency of a repository and its archives.
It consists of two major steps:

1. Checking the consistency of the repository itself: every pack's content
   matches its name, its blob headers parse, the index files and the packs
   agree; missing packs, packs no index file mentions and temporary files of
   interrupted writes are listed. With --max-duration the pack scan stops
   after that many seconds and the next check resumes where it stopped.
2. Checking the consistency of the archives: every archive record can be
   read and authenticated, every directory tree and file chunk it refers to
   exists. With --verify-data every chunk is also decrypted and
   authenticated (slow: it reads all data, on all cores).

Every damaged object is reported with the archives and paths that use it.

--repair (asks first, unless BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=YES) rebuilds
the index from the packs without the damaged blobs (so the next backup
stores them again), replaces lost file chunks with zeros of the same size and
marks such files broken (see 'hoard list --format {health}'), heals broken
files whose chunks a later backup brought back, removes archive records that
cannot be read and deletes stale temporary files. It takes the exclusive
lock. In an append-only repository it removes nothing.

Exit status: 0 no problems, 1 everything found was repaired (or only space
that compact frees was found), 2 damage remains."""

CONFIRM_VARIABLE = "CHECK_I_KNOW_WHAT_I_AM_DOING"
REPAIR_QUESTION = """This is a potentially dangerous function.
check --repair might lead to data loss (for kinds of corruption it is not
capable of dealing with). BE VERY CAREFUL!

Type 'YES' if you understand this and want to continue: """
TEMP_GRACE = 3600.0
"""Seconds a temporary file is spared by --repair: a backup whose lock was
lost (broken, or judged stale) may still be writing it."""
CURSOR_FILE = "check-resume"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repository-only", dest="repo_only", action="store_true",
        help="only perform repository checks",
    )  # fmt: skip
    parser.add_argument(
        "--archives-only", dest="archives_only", action="store_true",
        help="only perform archives checks",
    )  # fmt: skip
    parser.add_argument(
        "--verify-data", dest="verify_data", action="store_true",
        help="perform cryptographic archive data integrity verification "
        "(conflicts with --repository-only)",
    )  # fmt: skip
    parser.add_argument(
        "--repair", dest="repair", action="store_true",
        help="attempt to repair any inconsistencies found",
    )  # fmt: skip
    parser.add_argument(
        "--save-space", dest="save_space", action="store_true",
        help="accepted for Borg compatibility (repair never needs extra space here)",
    )  # fmt: skip
    parser.add_argument(
        "--max-duration", dest="max_duration", type=int, default=0, metavar="SECONDS",
        help="do only a partial repo check for max. SECONDS seconds (Default: unlimited)",
    )  # fmt: skip
    parser.add_argument(
        "--json", dest="json", action="store_true", help="print a JSON summary on stdout"
    )  # fmt: skip
    add_archive_filter_arguments(parser)
    parser.add_argument(
        "location", nargs="?", default="", metavar="REPOSITORY_OR_ARCHIVE",
        help="repository or archive to check consistency of",
    )  # fmt: skip


def _validate(args: argparse.Namespace) -> None:
    """Borg 1.4's combinations of options (``do_check``)."""
    if args.repo_only and args.archives_only:
        raise CommandError("--repository-only contradicts --archives-only.")
    if args.repo_only and (args.verify_data or filters_given(args)):
        raise CommandError(
            "--repository-only contradicts --first, --last, -a / --glob-archives "
            "and --verify-data arguments."
        )
    if args.repair and args.max_duration:
        raise CommandError("--repair does not allow --max-duration argument.")
    if args.max_duration and not args.repo_only:
        raise CommandError("--repository-only is required for --max-duration support.")
    if args.max_duration < 0:
        raise CommandError("--max-duration must not be negative.")


@dataclass
class _Summary:
    """What the run found and did; the --json output."""

    repository: list[dict[str, str]] = field(default_factory=list)
    archives: list[dict[str, Any]] = field(default_factory=list)
    broken_files: list[dict[str, Any]] = field(default_factory=list)
    """Files an earlier repair zero-filled: known losses, not new damage."""
    damaged_records: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    not_repaired: list[str] = field(default_factory=list)
    packs_checked: int = 0
    archives_checked: int = 0
    chunks_verified: int = 0
    partial: bool = False

    @property
    def damage(self) -> bool:
        return bool(
            any(f["kind"] in DAMAGE for f in self.repository)
            or self.archives
            or self.damaged_records
        )

    @property
    def problems(self) -> bool:
        return self.damage or bool(self.repository)


def run(ctx: Context, args: argparse.Namespace) -> None:
    _validate(args)
    location = repository_location(ctx, args.location)
    selection = archive_selection(ctx, args)
    if location.archive is not None:
        selection = type(selection)(glob=_exact_glob(location.archive), consider_checkpoints=True)
    if args.repair:
        confirm(ctx, REPAIR_QUESTION, CONFIRM_VARIABLE)
    summary = _Summary()
    with contextlib.ExitStack() as stack:
        repo = stack.enter_context(open_repository(ctx, location.omit_archive(), operation="check"))
        if args.repair:
            stack.enter_context(command_lock(ctx, repo.repository.storage, exclusive=True))
        _check(ctx, args, repo, selection, summary)
    _finish(ctx, args, summary)


def _exact_glob(name: str) -> str:
    """A glob matching exactly ``name`` (REPO::ARCHIVE checks that archive)."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _check(
    ctx: Context, args: argparse.Namespace, repo: OpenRepository, selection: Any, summary: _Summary
) -> None:
    bad: dict[bytes, str] = {}
    bad_blobs: set[tuple[str, bytes]] = set()
    repo_result: RepositoryCheck | None = None
    if not args.archives_only:
        repo_result = _repository_part(ctx, args, repo, summary, bad, bad_blobs)
    scan = None
    if not args.repo_only:
        logger.info("Starting archive consistency check...")
        scan = scan_records(repo.objects)
        for id_, reason in sorted(scan.damaged.items()):
            summary.damaged_records.append(id_.hex())
            _problem("damaged_record", f"Archive record {id_.hex()} is damaged: {reason}")
        records = select(scan.records, selection)
        if args.verify_data and args.archives_only:  # else the repository part verified
            bad.update(_verify(ctx, repo, records, summary, bad_blobs))
        checker = ArchiveChecker(repo.objects, bad)
        for n, record in enumerate(records, 1):
            logger.info("Analyzing archive %s (%d/%d)", record.name, n, len(records))
            for finding in checker.check(record):
                if finding.kind == "broken_file":
                    summary.broken_files.append(asdict(finding))
                    _problem(finding.kind, _archive_message(finding), level=logging.WARNING)
                    continue
                summary.archives.append(asdict(finding))
                _problem(finding.kind, _archive_message(finding))
        summary.archives_checked = len(records)
    if args.repair:
        _repair(repo, summary, repo_result, bad, bad_blobs, scan)


def _repository_part(
    ctx: Context,
    args: argparse.Namespace,
    repo: OpenRepository,
    summary: _Summary,
    bad: dict[bytes, str],
    bad_blobs: set[tuple[str, bytes]],
) -> RepositoryCheck:
    logger.info("Starting repository check")
    _check_roots(repo, summary)
    cursor_path = ctx.cache_dir / repo.repository.id.hex() / CURSOR_FILE
    start_after = _load_cursor(cursor_path) if args.max_duration else None
    deadline = time.monotonic() + args.max_duration if args.max_duration else None
    result = check_repository(
        repo.repository.storage,
        start_after=start_after,
        deadline=deadline,
        progress=_progress(ctx, "check.repository", "Checking packs") if ctx.progress else None,
        verify=_blob_verifier(repo) if args.verify_data else None,
    )
    if args.max_duration:
        _save_cursor(cursor_path, result.cursor)
        summary.partial = result.cursor is not None or start_after is not None
    summary.packs_checked = result.packs_scanned
    summary.chunks_verified = result.blobs_verified
    for finding in result.findings:
        summary.repository.append(asdict(finding))
        level = logging.WARNING if not finding.is_damage else logging.ERROR
        _problem(finding.kind, f"{finding.name}: {finding.detail}", level=level)
    damaged: dict[bytes, str] = {}
    for id_ in result.lost:
        damaged[id_] = "its pack is missing or does not hold it"
    for pack, entries in sorted(result.suspect_packs.items()):
        for entry in entries:
            reason = _open_pack_blob(repo, pack, entry)
            if reason is not None:
                damaged[entry.id] = reason
                bad_blobs.add((pack, entry.id))
    for id_, reason in damaged.items():
        intact = result.copies.get(id_, set()) - {p for p, i in bad_blobs if i == id_}
        if not intact:  # no other pack holds a good copy
            bad[id_] = reason
    if result.cursor is not None:
        logger.info(
            "Repository check stopped after %d packs; the next run resumes.", result.packs_scanned
        )
    elif not any(f.is_damage for f in result.findings):
        logger.info("Repository check complete, no problems found.")
    else:
        logger.error("Repository check complete, problems found.")
    return result


def _check_roots(repo: OpenRepository, summary: _Summary) -> None:
    """config, the repository key and their copies (every run: they are tiny)."""
    findings = check_config(repo.repository.storage)
    for name, detail in repo.keys.copy_problems() if repo.keys is not None else []:
        findings.append(Finding(_key_kind(name, detail), KEYS_DIR + name, detail))
    for finding in findings:
        summary.repository.append(asdict(finding))
        level = logging.ERROR if finding.is_damage else logging.WARNING
        _problem(finding.kind, f"{finding.name}: {finding.detail}", level=level)


def _key_kind(name: str, detail: str) -> str:
    if name == REPOKEY_NAME:
        return DAMAGED_KEY
    return DAMAGED_COPY if detail.startswith("damaged") else STALE_COPY


def _open_pack_blob(repo: OpenRepository, pack: str, entry: PackEntry) -> str | None:
    """Why the blob at ``entry`` of a damaged pack does not open (None: it is intact)."""
    try:
        blob = repo.repository.load_pack_blob(pack, entry)
    except (IntegrityError, ObjectNotFound) as exc:
        return f"damaged in pack {pack}: {exc}"
    problem = _blob_verifier(repo)(entry, blob)
    return None if problem is None else f"damaged in pack {pack}: {problem}"


def _blob_verifier(repo: OpenRepository) -> BlobVerifier:
    """Why a blob read for ``entry`` is not the authentic object (None: it is).

    ``--verify-data`` in the repository part: every indexed blob is
    authenticated (and its id checked) as its pack is read, as Borg verifies
    every object of the repository, referenced or not: an unreferenced
    damaged blob would still be deduplicated against by the next backup."""
    objects = repo.objects

    def verify(entry: PackEntry, blob: bytes) -> str | None:
        try:
            objects.open_blob(ObjectType(entry.type), entry.id, blob)
        except (IntegrityError, ValueError) as exc:
            return str(exc)
        return None

    return verify


def _verify(
    ctx: Context,
    repo: OpenRepository,
    records: list[Any],
    summary: _Summary,
    bad_blobs: set[tuple[str, bytes]],
) -> dict[bytes, str]:
    logger.info("Verifying data of %d archives...", len(records))
    ids = data_ids(repo.objects, records)
    progress = _progress(ctx, "check.verify_data", "Verifying data") if ctx.progress else None
    found = verify_data(repo.objects, ids, progress=progress)
    summary.chunks_verified = len(ids)
    for id_ in found:
        where = repo.repository.locate(id_)
        if where is not None:
            bad_blobs.add((where[0], id_))
    return found


def _archive_message(f: ArchiveFinding) -> str:
    what = f"object {f.object_id}: " if f.object_id else ""
    return f"Archive {f.archive}: {f.path}: {what}{f.detail}"


def _problem(kind: str, message: str, *, level: int = logging.ERROR) -> None:
    logger.log(level, message, extra={"msgid": f"check.{kind}"})


def _progress(ctx: Context, msgid: str, what: str) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        percent = 100.0 * done / total if total else 100.0
        ctx.out.progress(
            msgid, f"{what}: {percent:5.1f}%", type="progress_percent", current=done, total=total
        )

    return progress


def _load_cursor(path: Path) -> str | None:
    try:
        doc = json.loads(path.read_text())
        cursor = doc.get("after")
        return cursor if isinstance(cursor, str) else None
    except (OSError, ValueError, AttributeError):
        return None


def _save_cursor(path: Path, cursor: str | None) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"after": cursor}).encode()
        write_atomically(path, lambda f: f.write(data))
    except OSError as exc:
        logger.warning("Cannot save where the check stopped (%s): %s", path, exc.strerror)


# --- repair -------------------------------------------------------------------------------


def _repair(
    repo: OpenRepository,
    summary: _Summary,
    repo_result: RepositoryCheck | None,
    bad: dict[bytes, str],
    bad_blobs: set[tuple[str, bytes]],
    scan: Any,
) -> None:
    """Repository first (index without the damaged blobs, the intact blobs of
    damaged packs moved to new packs), then the archives around what is lost.

    Order for crash safety: the rebuilt index file supersedes the old ones
    before anything is deleted; the intact blobs are stored and indexed anew
    before their damaged pack goes; a repaired archive's record is stored
    before the old one is removed. A repair killed anywhere is completed by
    the next one, which finds the same damage again.
    """
    repository = repo.repository
    append_only = repository.config.append_only
    if repo_result is not None:
        _repair_roots(repo, summary, append_only)
    suspect = repo_result.suspect_packs if repo_result is not None else {}
    structure = repo_result is not None and any(
        f.is_damage or f.kind == ORPHAN_PACK for f in repo_result.findings
    )
    if bad or bad_blobs or structure or summary.archives:
        _rebuild(repo, summary, suspect, bad, bad_blobs, append_only)
    if repo_result is not None:
        _remove_temporary(repo, summary, append_only)
    if scan is None:
        return
    for id_hex in summary.damaged_records:
        if append_only:
            _not_done(summary, f"Archive record {id_hex} is damaged (kept: append-only)")
            continue
        repo.objects.delete_archive(bytes.fromhex(id_hex))
        _did(summary, f"Removed damaged archive record {id_hex}", lost=True)
    if append_only:
        if summary.archives:
            _not_done(summary, "Archives with lost chunks were not rewritten (append-only)")
        return
    repairer = ArchiveRepairer(repo.objects, bad)
    hidden = repo.objects.hidden_archives(r.id for r in scan.records)
    for record in scan.records:
        result = repairer.repair(record)
        if result.record is None:
            continue
        if record.id in hidden:  # deleted in append-only mode: the repaired copy stays hidden
            repo.objects.hide_archive(result.record.id)
        repo.objects.delete_archive(record.id)
        for line in result.lost:
            _did(summary, f"Archive {record.name}: {line}", lost=True)
        for line in result.healed:
            _did(summary, f"Archive {record.name}: {line}")


def _repair_roots(repo: OpenRepository, summary: _Summary, append_only: bool) -> None:
    done, left = repair_config(repo.repository.storage, append_only=append_only)
    for text in done:
        _did(summary, text)
    for text in left:
        _not_done(summary, text)
    if repo.keys is None:
        return
    problems = repo.keys.copy_problems()
    if append_only and any(detail != "missing" for _, detail in problems):
        for name, detail in problems:
            _not_done(summary, f"Kept {KEYS_DIR}{name} ({detail}; append-only)")
        return
    for name in repo.keys.repair_copies():
        _did(summary, f"Rewrote {KEYS_DIR}{name} from the copy of the key that opens")


def _rebuild(
    repo: OpenRepository,
    summary: _Summary,
    suspect: dict[str, list[Any]],
    bad: dict[bytes, str],
    bad_blobs: set[tuple[str, bytes]],
    append_only: bool,
) -> None:
    repository = repo.repository
    intact: list[tuple[Any, bytes]] = []
    for pack, entries in sorted(suspect.items()):
        for entry in entries:
            if (pack, entry.id) not in bad_blobs:
                intact.append((entry, repository.load_pack_blob(pack, entry)))
    exclude = set(bad_blobs) | {(p, e.id) for p, es in suspect.items() for e in es}
    report = repository.rebuild_index_from_packs(exclude=exclude)
    _did(summary, f"Rebuilt the index from {report.packs} packs ({report.entries} blobs)")
    for entry, blob in intact:
        repository.put(entry.type, entry.id, blob)
    repository.flush()
    if intact:
        _did(summary, f"Moved {len(intact)} intact blobs out of {len(suspect)} damaged packs")
    for id_ in list(bad):
        if repository.contains(id_):
            del bad[id_]  # an intact copy elsewhere is indexed now
    for id_, reason in sorted(bad.items()):
        _did(summary, f"Dropped blob {id_.hex()} from the index: {reason}", lost=True)
    for pack in sorted(suspect):
        if append_only:
            _not_done(summary, f"Kept damaged pack {pack} (append-only)")
            continue
        with contextlib.suppress(ObjectNotFound):
            repository.storage.delete(pack_path(pack))
        _did(summary, f"Deleted damaged pack {pack}")


def _remove_temporary(repo: OpenRepository, summary: _Summary, append_only: bool) -> None:
    storage = repo.repository.storage
    now = time.time()
    for info in storage.list_temporary(""):
        if info.mtime is not None and now - info.mtime < TEMP_GRACE:
            logger.info("Kept recent temporary file %s (a backup may be writing it)", info.name)
            continue
        if append_only:
            _not_done(summary, f"Kept temporary file {info.name} (append-only)")
            continue
        try:
            storage.delete_temporary(info.name)
        except ObjectNotFound:
            continue
        _did(summary, f"Deleted temporary file {info.name}")


def _did(summary: _Summary, text: str, *, lost: bool = False) -> None:
    summary.repaired.append(text)
    logger.log(logging.WARNING if lost else logging.INFO, text, extra={"msgid": "check.repaired"})


def _not_done(summary: _Summary, text: str) -> None:
    summary.not_repaired.append(text)
    logger.warning(text, extra={"msgid": "check.not_repaired"})


def _finish(ctx: Context, args: argparse.Namespace, summary: _Summary) -> None:
    if not args.repo_only:
        if summary.archives or summary.damaged_records:
            logger.error("Archive consistency check complete, problems found.")
        else:
            logger.info("Archive consistency check complete, no problems found.")
    if args.json:
        ctx.out.json({**asdict(summary), "ok": not summary.problems})
    if not summary.problems:
        return
    if args.repair and not summary.not_repaired:
        ctx.warn(CheckRepairedWarning(f"{len(summary.repaired)} repairs made"))
    elif not summary.damage:
        if any(f["kind"] == STALE_COPY for f in summary.repository):
            ctx.warn(
                CheckRepairedWarning("stale copies found, which 'hoard check --repair' renews")
            )
        else:
            ctx.warn(CheckRepairedWarning("only garbage found, which 'hoard compact' frees"))
    elif args.repair:
        raise CheckFoundDamage("damage remains that --repair could not remove")
    else:
        raise CheckFoundDamage("run 'hoard check --repair' to salvage what can be")
