"""Repository locks as lock records in the storage: ``locks/<32 hex digits>``.

A lock is one small JSON object stored with the storage's plain atomic
create (``store`` without ``overwrite``), so locking works on every backend
that implements :class:`~hoard.storage.base.Storage` (local directories,
network file systems, memory; ssh and S3 later) without ``flock``, ``mkdir``
semantics or server support. The protocol (docs/design/repository-format.md,
section "Locks"):

1. Write our own record under a fresh random name.
2. List all records; remove the stale ones (below); if a live record
   conflicts with ours (any other record for an exclusive lock, an
   exclusive record for a shared lock), delete our record, sleep a jittered,
   growing delay and start again, until ``lock_wait`` seconds have passed:
   then :class:`~hoard.errors.LockTimeout` names a holder.
3. Otherwise we hold the lock. A daemon thread rewrites the record every
   ``refresh_interval`` seconds with the current time; ``release`` deletes it.

Mutual exclusion: of two conflicting requests, the one that lists second
has written its record after the first one's record was written, so at
least one of them sees the other and backs off (both may; the jitter makes
one win a later round). This needs only atomic create, list-after-write and
delete from the storage.

A record is stale when its process is known to be dead (same host: the pid
does not run, is a zombie, or runs with another start time, i.e. the pid was
reused) or when it was not refreshed for ``stale_after`` seconds. Records of
other hosts are stale by age only. Whoever finds a stale record removes it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from types import TracebackType
from typing import Any, Literal

from hoard.errors import (
    HoardError,
    LockFailed,
    LockLost,
    LockTimeout,
    NotLocked,
    NotMyLock,
    ObjectExists,
    ObjectNotFound,
    StorageError,
)
from hoard.storage.base import Storage

logger = logging.getLogger(__name__)

LOCKS_PREFIX = "locks/"
RECORD_VERSION = 1
DEFAULT_LOCK_WAIT = 1.0
DEFAULT_REFRESH_INTERVAL = 300.0
DEFAULT_STALE_AFTER = 1800.0
_NAME_HEX_DIGITS = 32
_FIRST_DELAY = 0.02
_MAX_DELAY = 1.0
_COMMAND_IN_MESSAGES = 80

Kind = Literal["shared", "exclusive"]


def utc_now() -> datetime:
    """The default clock of :class:`Lock`: aware UTC time."""
    return datetime.now(UTC)


# --- this host and its processes -------------------------------------------------


@dataclass(frozen=True)
class HostIdentity:
    """What makes two lock records come from the same process namespace.

    ``hostname`` alone is not enough: containers and cloned VMs share names
    ("localhost"), and a pid is only meaningful in one pid namespace of one
    boot. So pids are compared only when hostname, boot id and pid namespace
    (where the platform has them) are all equal.
    """

    hostname: str
    boot_id: str | None
    pid_ns: int | None

    @staticmethod
    @cache
    def current() -> HostIdentity:
        return HostIdentity(socket.gethostname(), _read_boot_id(), _read_pid_namespace())


def _read_boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _read_pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), else None.

    Together with the pid it identifies a process: a reused pid has another
    start time.
    """
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, starttime) from ``/proc/<pid>/stat``, None if unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces
    # or parentheses itself; the fields after the last ")" are fixed.
    fields = text[text.rfind(")") + 1 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, start_time: int | None) -> bool:
    """True unless process ``pid`` (on this host) is known not to run.

    Dead: no such process, a zombie, or a process with another start time
    than ``start_time`` (the pid was reused). When in doubt (no /proc, an
    unexpected error) the process counts as alive, so its lock is kept.
    """
    if pid <= 0:
        return True  # not a process id; never signal a process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # EPERM: it exists but belongs to another user
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):
        return False
    return start_time is None or started == start_time


# --- lock records ---------------------------------------------------------------


@dataclass(frozen=True)
class LockRecord:
    """One lock record: who holds which kind of lock since when.

    ``time`` is refreshed while the lock is held; ``acquired`` is not.
    ``thread`` and ``command`` are for people reading the record.
    """

    name: str
    kind: Kind
    host: str
    pid: int
    time: datetime
    boot_id: str | None = None
    pid_ns: int | None = None
    pid_start: int | None = None
    thread: int | None = None
    acquired: datetime | None = None
    command: str = ""
    version: int = RECORD_VERSION

    @property
    def exclusive(self) -> bool:
        return self.kind == "exclusive"

    def same_holder(self, other: LockRecord) -> bool:
        """True if ``other`` is the same lock (everything but the refresh time)."""
        return replace(other, time=self.time) == self

    def on_host(self, here: HostIdentity) -> bool:
        """True if this record's pid is a pid of the process namespace ``here``."""
        return (self.host, self.boot_id, self.pid_ns) == (here.hostname, here.boot_id, here.pid_ns)

    def describe(self) -> str:
        """A short human-readable holder description for messages."""
        text = f"{self.kind} lock of pid {self.pid} on host {self.host}"
        command = self.command
        if len(command) > _COMMAND_IN_MESSAGES:
            command = command[: _COMMAND_IN_MESSAGES - 3] + "..."
        return f"{text} ({command})" if command else text

    def to_json(self) -> bytes:
        """Compact JSON, keys sorted, trailing newline."""
        doc: dict[str, Any] = {
            "version": self.version,
            "kind": self.kind,
            "host": self.host,
            "boot_id": self.boot_id,
            "pid_ns": self.pid_ns,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "thread": self.thread,
            "time": _format_time(self.time),
            "acquired": None if self.acquired is None else _format_time(self.acquired),
            "command": self.command,
        }
        return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_json(cls, name: str, data: bytes) -> LockRecord:
        """Parse a record; unknown keys are ignored (newer writers may add some).

        Raises ValueError naming what is wrong.
        """
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        kind = doc.get("kind")
        if kind not in ("shared", "exclusive"):
            raise ValueError(f"bad kind {kind!r}")
        acquired = doc.get("acquired")
        return cls(
            name=name,
            kind=kind,
            host=_field(doc, "host", str),
            pid=_positive(doc, "pid"),
            time=_parse_time(doc.get("time")),
            boot_id=_optional(doc, "boot_id", str),
            pid_ns=_optional(doc, "pid_ns", int),
            pid_start=_optional(doc, "pid_start", int),
            thread=_optional(doc, "thread", int),
            acquired=None if acquired is None else _parse_time(acquired),
            command=_optional(doc, "command", str) or "",
            version=_positive(doc, "version"),
        )


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_time(value: object) -> datetime:
    """ISO 8601; a time without zone is UTC."""
    if not isinstance(value, str):
        raise ValueError(f"bad time {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"bad time {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _field(doc: dict[str, Any], key: str, type_: type[Any]) -> Any:
    value = doc.get(key)
    if not isinstance(value, type_) or isinstance(value, bool):
        raise ValueError(f"bad {key} {value!r}")
    return value


def _optional(doc: dict[str, Any], key: str, type_: type[Any]) -> Any:
    return None if doc.get(key) is None else _field(doc, key, type_)


def _positive(doc: dict[str, Any], key: str) -> int:
    value: int = _field(doc, key, int)
    if value <= 0:
        raise ValueError(f"bad {key} {value!r}")
    return value


def _loss_text(lost: HoardError) -> str:
    if isinstance(lost, NotLocked):
        return "disappeared (break-lock, or removed as stale by another client)"
    return "was replaced by another client's lock record"


def is_lock_name(name: str) -> bool:
    """True for names of the shape ``locks/<32 lowercase hex digits>``."""
    tail = name[len(LOCKS_PREFIX) :]
    return (
        name.startswith(LOCKS_PREFIX)
        and len(tail) == _NAME_HEX_DIGITS
        and all(c in "0123456789abcdef" for c in tail)
    )


def lock_names(storage: Storage) -> list[str]:
    """Names of all lock records (other names under ``locks/`` are ignored)."""
    return sorted(info.name for info in storage.list(LOCKS_PREFIX) if is_lock_name(info.name))


@dataclass(frozen=True)
class Unreadable:
    """A lock record that does not parse: it blocks everyone until break-lock.

    Stores are atomic, so no crash produces one; it is damage or a foreign
    format, and guessing it away could break a lock that is in use.
    """

    name: str
    reason: str

    def describe(self) -> str:
        return f"unreadable lock record {self.name} ({self.reason}; remove it with break-lock)"


def read_record(storage: Storage, name: str) -> LockRecord | Unreadable | None:
    """Load and parse one record; None if it vanished meanwhile."""
    try:
        data = storage.load(name)
    except ObjectNotFound:
        return None
    try:
        return LockRecord.from_json(name, data)
    except ValueError as exc:
        return Unreadable(name, str(exc))


def list_locks(storage: Storage) -> list[LockRecord]:
    """All readable lock records, live or stale, sorted by name."""
    found = [read_record(storage, name) for name in lock_names(storage)]
    return [record for record in found if isinstance(record, LockRecord)]


def break_locks(storage: Storage) -> int:
    """Remove every lock record, whoever holds it; returns how many were removed.

    Only safe while no hoard uses the repository: a process whose record is
    removed keeps running and reports NotLocked when it releases.
    """
    removed = 0
    for name in lock_names(storage):
        try:
            storage.delete(name)
        except ObjectNotFound:
            continue
        logger.info("Removed lock %s", name)
        removed += 1
    return removed


def stale_reason(
    record: LockRecord, now: datetime, stale_after: float, here: HostIdentity
) -> str | None:
    """Why ``record`` is stale, or None if it counts as live."""
    age = (now - record.time).total_seconds()
    if age > stale_after:
        return f"not refreshed for {timedelta(seconds=int(age))}"
    if record.on_host(here) and not process_alive(record.pid, record.pid_start):
        return "its process is not running"
    return None


# --- the lock --------------------------------------------------------------------


class Lock:
    """A shared or exclusive repository lock; a context manager.

    ``acquire`` waits up to ``lock_wait`` seconds (0: one attempt) and raises
    LockTimeout naming a holder, or LockFailed when the storage refuses the
    record (read-only medium: use --bypass-lock). While held, a daemon thread
    refreshes the record every ``refresh_interval`` seconds. If the record
    disappears (break-lock, or another client judged it stale), the thread
    notes it (``lost``) and stops; an operation that must not go on without
    the lock polls ``lost`` and calls ``verify`` before committing, which
    raises LockLost; otherwise ``release`` raises NotLocked (NotMyLock if
    the record was replaced by someone else's). ``release`` of a lock not
    held does nothing, so releasing twice is harmless. On leaving a ``with``
    block because of an exception, release errors are logged, not raised, so
    they never mask the original error.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        exclusive: bool,
        lock_wait: float = DEFAULT_LOCK_WAIT,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        stale_after: float = DEFAULT_STALE_AFTER,
        now: Callable[[], datetime] = utc_now,
        command: str = "",
    ) -> None:
        if not 0 < refresh_interval < stale_after:
            raise ValueError("need 0 < refresh_interval < stale_after")
        self._storage = storage
        self._kind: Kind = "exclusive" if exclusive else "shared"
        self._lock_wait = max(0.0, lock_wait)
        self._refresh_interval = refresh_interval
        self._stale_after = stale_after
        self._now = now
        self._command = command
        self._record: LockRecord | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: HoardError | None = None
        self._loss_raised = False

    @property
    def exclusive(self) -> bool:
        return self._kind == "exclusive"

    @property
    def held(self) -> bool:
        """True between a successful ``acquire`` and ``release``."""
        return self._record is not None

    @property
    def name(self) -> str | None:
        """The storage name of our record while held."""
        return None if self._record is None else self._record.name

    @property
    def lost(self) -> bool:
        """True once the refresh thread found our record gone or replaced."""
        return self._lost is not None

    @property
    def _where(self) -> str:
        return f"{self._storage.location}/{LOCKS_PREFIX.rstrip('/')}"

    # --- acquiring ----------------------------------------------------------------

    def acquire(self) -> Lock:
        """Take the lock (see the class docstring); returns self. Idempotent."""
        if self._record is not None:
            return self
        deadline = time.monotonic() + self._lock_wait
        delay = _FIRST_DELAY
        while True:
            record = self._store_new_record()
            conflict = self._first_conflict(record)
            if conflict is None:
                self._hold(record)
                return self
            self._delete_quietly(record.name)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout(f"{self._where}: {conflict.describe()}")
            logger.debug("lock busy (%s), retrying", conflict.describe())
            time.sleep(min(remaining, random.uniform(delay / 2, delay)))
            delay = min(delay * 2, _MAX_DELAY)

    def _new_record(self) -> LockRecord:
        here = HostIdentity.current()
        moment = self._now()
        return LockRecord(
            name=LOCKS_PREFIX + secrets.token_hex(_NAME_HEX_DIGITS // 2),
            kind=self._kind,
            host=here.hostname,
            pid=os.getpid(),
            time=moment,
            boot_id=here.boot_id,
            pid_ns=here.pid_ns,
            pid_start=process_start_time(os.getpid()),
            thread=threading.get_native_id(),
            acquired=moment,
            command=self._command,
        )

    def _store_new_record(self) -> LockRecord:
        """Store a record under a fresh name; LockFailed if the storage refuses."""
        while True:
            record = self._new_record()
            try:
                self._storage.store(record.name, record.to_json())
            except ObjectExists:
                continue  # 128 random bits collided: take another name
            except StorageError as exc:
                raise LockFailed(self._where, exc.get_message()) from exc
            return record

    def _first_conflict(self, own: LockRecord) -> LockRecord | Unreadable | None:
        """Look at every other record, removing stale ones; return a live
        record that conflicts with ``own``, or None."""
        here = HostIdentity.current()
        try:
            for name in lock_names(self._storage):
                if name == own.name:
                    continue
                other = read_record(self._storage, name)
                if other is None or self._removed_if_stale(other, here):
                    continue
                if self.exclusive or isinstance(other, Unreadable) or other.exclusive:
                    return other
        except StorageError as exc:
            self._delete_quietly(own.name)
            raise LockFailed(self._where, exc.get_message()) from exc
        return None

    def _removed_if_stale(self, other: LockRecord | Unreadable, here: HostIdentity) -> bool:
        if isinstance(other, Unreadable):
            return False
        reason = stale_reason(other, self._now(), self._stale_after, here)
        if reason is None:
            return False
        try:
            self._storage.delete(other.name)
        except ObjectNotFound:
            return True  # someone else removed it first
        logger.info("Removed stale lock %s, %s: %s", other.name, other.describe(), reason)
        return True

    def _delete_quietly(self, name: str) -> None:
        """Remove our own record when backing off; a failure only leaves a
        record that turns stale (our process ends, or it is not refreshed)."""
        try:
            self._storage.delete(name)
        except StorageError as exc:
            logger.warning("Could not remove lock record %s: %s", name, exc)

    def _hold(self, record: LockRecord) -> None:
        self._record = record
        self._lost = None
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._refresh_loop, name=f"hoard-lock-refresh-{record.name}", daemon=True
        )
        self._thread.start()

    # --- refreshing ---------------------------------------------------------------

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh_interval):
            if not self.refresh():
                return

    def refresh(self) -> bool:
        """Rewrite our record with the current time (the thread calls this).

        Returns False when the lock is not held or was lost (logged as an
        error: the operation continues, ``release`` reports it). A storage
        error is logged and the next refresh tries again.
        """
        with self._mutex:
            record = self._record
            if record is None or self._lost is not None:
                return False
            try:
                self._lost = self._check_ours(record)
                if self._lost is not None:
                    self._report_loss(record, self._lost)
                    return False
                record = replace(record, time=self._now())
                self._storage.store(record.name, record.to_json(), overwrite=True)
                self._record = record
            except StorageError as exc:
                logger.warning("Could not refresh lock %s: %s", record.name, exc)
            return True

    def _report_loss(self, record: LockRecord, lost: HoardError) -> None:
        """Logged for --debug only: the holder reports it (``verify`` or ``release``)."""
        where = f"{self._storage.location}/{record.name}"
        logger.debug("Lock %s %s", where, _loss_text(lost))

    def verify(self, consequence: str = "stopped before writing anything more") -> None:
        """Raise LockLost if our record is gone or replaced: checked in the storage now.

        For an operation about to commit (``create`` before each checkpoint
        and before its archive record): what it wrote since the loss must not
        become part of the repository, since an exclusive holder (compact,
        check --repair) may have run meanwhile. ``consequence`` ends the
        message. Once raised, ``release`` does not report the loss again.
        Nothing is checked while the lock is not held.
        """
        with self._mutex:
            record = self._record
            if record is None:
                return
            if self._lost is None:
                self._lost = self._check_ours(record)
            if self._lost is None:
                return
            self._loss_raised = True
            where = f"{self._storage.location}/{record.name}"
            raise LockLost(where, _loss_text(self._lost), consequence)

    def _check_ours(self, record: LockRecord) -> HoardError | None:
        """NotLocked if our record is gone, NotMyLock if it is not ours any more.

        (A break-lock between this check and the rewrite that follows would
        be undone by the rewrite; the window is one storage round trip.)
        """
        found = read_record(self._storage, record.name)
        where = f"{self._storage.location}/{record.name}"
        if found is None:
            return NotLocked(where)
        if isinstance(found, Unreadable) or not found.same_holder(record):
            return NotMyLock(where)
        return None

    # --- releasing ----------------------------------------------------------------

    def release(self) -> None:
        """Delete our record. NotLocked/NotMyLock if it was lost (see class).

        The lock counts as released afterwards in every case.
        """
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join()
        with self._mutex:
            record, self._record = self._record, None
            if record is None:
                return
            if self._loss_raised:  # the operation was told already (verify)
                self._lost, self._loss_raised = None, False
                return
            lost, self._lost = self._lost or self._check_ours(record), None
            if lost is not None:
                raise lost
            try:
                self._storage.delete(record.name)
            except ObjectNotFound:
                raise NotLocked(f"{self._storage.location}/{record.name}") from None

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.release()
            return
        try:
            self.release()
        except HoardError as error:
            logger.error("%s", error.get_message())
