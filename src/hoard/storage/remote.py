"""A storage on another machine: ``hoard serve`` at the end of an ssh command.

The client runs ``$BORG_RSH [-p PORT] [USER@]HOST hoard serve ...`` (Borg's
command line, so ``~/.ssh/config``, agents, jump hosts and wrapper scripts
keep working) and speaks :mod:`hoard.storage.rpc` over its stdin and
stdout. Everything above the storage (encryption, keys, packs, indexes)
stays here; the server only stores and returns opaque blobs.

Requests are pipelined: every thread that calls a method sends its request
and waits for its own reply, so a pack being stored, index files being read
and a lock being refreshed travel at once, and replies come back as the
server finishes them. One reader thread hands replies to their callers; a
reply that never comes because the connection ended wakes every caller with
ConnectionClosedWithHint, which names what the remote side last printed.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from hoard.errors import (
    ConnectionClosed,
    ConnectionClosedWithHint,
    HoardError,
    ProtocolMismatch,
    UnexpectedRPCDataFormatFromServer,
)
from hoard.storage import rpc
from hoard.storage.base import ObjectInfo, Storage, check_name, check_prefix
from hoard.storage.sshcommand import RemoteOptions, RemoteTarget, ssh_command

logger = logging.getLogger(__name__)

_STDERR_LINES_KEPT = 5
_CLOSE_TIMEOUT = 10.0
_RATE_PIECE = 64 * 1024


class _Pending:
    """One request waiting for its reply."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: rpc.Reply | None = None


class RemoteStorage(Storage):
    """A :class:`Storage` served by ``hoard serve`` through ssh.

    ``connect`` starts the ssh command, agrees on the protocol version and
    opens (or, for ``init``, creates) the repository on the server, which
    checks it exactly as a local one is checked and raises the same errors.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        target: RemoteTarget,
        options: RemoteOptions,
    ) -> None:
        self._process = process
        self._target = target
        assert process.stdin is not None and process.stdout is not None
        self._stdin: IO[bytes] = process.stdin
        self._stdout: IO[bytes] = io.BufferedReader(process.stdout, 1024 * 1024)  # type: ignore[type-var]
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._broken: HoardError | None = None
        self._closed = False
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
        self._limiter = _RateLimiter(options.upload_ratelimit * 1024)
        self._uploader = _Uploader(self._write, options.upload_buffer * 1024 * 1024)
        self.server_version = ""
        self.protocol_version = 0
        self.server_info: dict[str, Any] = {}
        """What the server said of the opened repository (``storage_quota``...)."""
        self._reader = threading.Thread(
            target=self._read_replies, name="hoard-rpc-reader", daemon=True
        )
        self._stderr_reader = threading.Thread(
            target=self._read_stderr, name="hoard-rpc-stderr", daemon=True
        )
        self._stderr_reader.start()  # first: the reader joins it when the connection ends
        self._reader.start()

    @classmethod
    def connect(
        cls, target: RemoteTarget, options: RemoteOptions, client_version: str
    ) -> RemoteStorage:
        """Start ssh, say hello, open the repository. Raises ConnectionClosed
        (with what ssh printed) when ssh or the remote hoard cannot start,
        ProtocolMismatch for a server of another protocol version, and the
        server's errors for the repository (DoesNotExist, PathNotAllowed...)."""
        command = ssh_command(target, options)
        logger.debug("Starting remote: %s", shlex.join(command))
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                preexec_fn=_ignore_sigint,  # noqa: PLW1509 - only a signal disposition
            )
        except OSError as exc:
            raise ConnectionClosedWithHint(f"Cannot run {command[0]!r}: {exc.strerror}.") from None
        storage = cls(process, target, options)
        try:
            storage._hello(client_version)
            info = storage._call(
                "open",
                path=target.path,
                create=target.create,
                make_parent_dirs=target.make_parent_dirs,
            )
            if not isinstance(info, dict):
                raise UnexpectedRPCDataFormatFromServer(f"open: {info!r}"[:128])
            storage.server_info = info
        except BaseException:
            storage.close()
            raise
        return storage

    # --- the connection --------------------------------------------------------------

    def _hello(self, client_version: str) -> None:
        reply = self._call(
            "hello",
            versions=[rpc.OLDEST_PROTOCOL_VERSION, rpc.PROTOCOL_VERSION],
            client=client_version,
        )
        if not isinstance(reply, dict) or not isinstance(reply.get("version"), int):
            raise UnexpectedRPCDataFormatFromServer(repr(reply)[:128])
        self.protocol_version = reply["version"]
        self.server_version = str(reply.get("server", "?"))
        if not rpc.OLDEST_PROTOCOL_VERSION <= self.protocol_version <= rpc.PROTOCOL_VERSION:
            raise ProtocolMismatch(
                client_version,
                _versions(rpc.OLDEST_PROTOCOL_VERSION, rpc.PROTOCOL_VERSION),
                self.server_version,
                self.protocol_version,
            )

    def _call(self, method: str, **args: Any) -> Any:
        """Send one request and wait for its reply; the server's error is raised here."""
        return self._request(method, b"", args).value

    def _request(self, method: str, payload: bytes | memoryview, args: dict[str, Any]) -> rpc.Reply:
        pending = _Pending()
        with self._lock:
            if self._broken is not None:
                raise self._broken
            msgid = self._next_id
            self._next_id += 1
            self._pending[msgid] = pending
        try:
            self._uploader.send(rpc.request_frame(msgid, method, args, payload))
        except OSError:
            self._connection_lost(None)
        pending.done.wait()
        reply = pending.reply
        if reply is None:
            assert self._broken is not None
            raise self._broken
        if not reply.ok:
            raise rpc.decode_error(reply.value)
        return reply

    def _write(self, parts: list[bytes | memoryview]) -> None:
        """Write a frame to ssh's stdin, paced by ``--upload-ratelimit``."""
        with self._send_lock:
            for part in parts:
                view = memoryview(part)
                while view:
                    piece = view[:_RATE_PIECE] if self._limiter.active else view
                    self._limiter.wait(len(piece))
                    written = self._stdin.write(piece)
                    view = view[written or 0 :]

    def _read_replies(self) -> None:
        """The reader thread: hand each reply to its caller until the end."""
        error: HoardError | None = None
        try:
            while True:
                received = rpc.read_frame(self._stdout, rpc.REPLY_LIMIT, rpc.REPLY_LIMIT)
                if received is None:
                    break
                reply = rpc.decode_reply(received)
                if reply.msgid == 0:
                    message = rpc.decode_error(reply.value).get_message() if not reply.ok else ""
                    error = UnexpectedRPCDataFormatFromServer(
                        f"server refused a request: {message}"
                    )
                    break
                with self._lock:
                    pending = self._pending.pop(reply.msgid, None)
                if pending is None:
                    error = UnexpectedRPCDataFormatFromServer(
                        f"reply to unknown request {reply.msgid}"
                    )
                    break
                pending.reply = reply
                pending.done.set()
        except (EOFError, OSError, ValueError):
            pass
        except (rpc.GarbledError, rpc.FrameTooLargeError) as exc:
            error = UnexpectedRPCDataFormatFromServer(str(exc))
        self._connection_lost(error)

    def _read_stderr(self) -> None:
        """Show what the remote side prints (ssh's and the server's messages),
        as Borg does, prefixed ``Remote:``; keep the last lines for the error."""
        assert self._process.stderr is not None
        for raw in iter(self._process.stderr.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._stderr_tail.append(line)
                logger.warning("Remote: %s", line)

    def _connection_lost(self, error: HoardError | None) -> None:
        """Fail every waiting and later call with one clear error."""
        if error is None and self._broken is None:
            error = self._closed_error()
        with self._lock:
            if self._broken is None:
                self._broken = error
            waiting = list(self._pending.values())
            self._pending.clear()
        for pending in waiting:
            pending.done.set()

    def _closed_error(self) -> HoardError:
        if self._closed:
            return ConnectionClosed()
        self._stderr_reader.join(timeout=1.0)  # ssh's last words come just before its exit
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=1.0)
        code = self._process.poll()
        said = " | ".join(self._stderr_tail)
        parts = [f"{self._target.shown or self._target.host}:"]
        if code is not None:
            parts.append(f"the ssh command exited with status {code}.")
        if said:
            parts.append(f"It said: {said}.")
        parts.append(_hint(code, said))
        return ConnectionClosedWithHint(" ".join(parts))

    # --- Storage ---------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self._target.shown or f"{self._target.host}:{self._target.path}"

    def store(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        self._request("store", data, {"name": check_name(name), "overwrite": overwrite})

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"negative range {offset}, {length} for {name!r}")
        args = {"name": check_name(name), "offset": offset, "length": length}
        return self._request("load", b"", args).payload

    def delete(self, name: str) -> None:
        self._call("delete", name=check_name(name))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(_infos(self._call("list", prefix=check_prefix(prefix))))

    def info(self, name: str) -> ObjectInfo:
        return _info(self._call("info", name=check_name(name)))

    def exists(self, name: str) -> bool:
        return bool(self._call("exists", name=check_name(name)))

    def list_temporary(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(_infos(self._call("list_temporary", prefix=check_prefix(prefix))))

    def delete_temporary(self, name: str) -> None:
        self._call("delete_temporary", name=name)

    def free_space(self) -> int | None:
        value = self._call("free_space")
        return value if isinstance(value, int) else None

    @property
    def enforces_append_only(self) -> bool:
        """The server was started with ``--append-only``."""
        return self.server_info.get("append_only") is True

    @property
    def server_quota(self) -> int | None:
        """The server's ``--storage-quota``, which it enforces (None: none)."""
        quota = self.server_info.get("storage_quota")
        return quota if isinstance(quota, int) and quota > 0 else None

    @property
    def closed(self) -> bool:
        """True once ``close`` was called (the connection may have ended before)."""
        return self._closed

    def close(self) -> None:
        """End the session: the server sees end of file, releases what it
        holds and exits; ssh follows."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._uploader.close()
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._process.wait(timeout=_CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=_CLOSE_TIMEOUT)
        self._stderr_reader.join(timeout=_CLOSE_TIMEOUT)
        for stream in (self._stdout, self._process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _versions(low: int, high: int) -> str:
    return str(low) if low == high else f"{low} to {high}"


def _hint(code: int | None, said: str) -> str:
    """What to try, from how ssh ended."""
    if code == 127 or "not found" in said:
        return "Is hoard installed on the server? Set --remote-path (or BORG_REMOTE_PATH) to it."
    if code == 255:
        return (
            "ssh could not connect or log in: try the same ssh command by hand (BORG_RSH sets it)."
        )
    return "Check the server (may hoard serve run there?) and the network, then try again."


def _info(value: Any) -> ObjectInfo:
    if not (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    ):
        raise UnexpectedRPCDataFormatFromServer(repr(value)[:128])
    mtime = value[2]
    return ObjectInfo(value[0], value[1], float(mtime) if isinstance(mtime, (int, float)) else None)


def _infos(value: Any) -> list[ObjectInfo]:
    if not isinstance(value, list):
        raise UnexpectedRPCDataFormatFromServer(repr(value)[:128])
    return [_info(item) for item in value]


def _ignore_sigint() -> None:
    """In the ssh child: Ctrl-C goes to hoard, which then finishes its
    checkpoint and releases its lock over the still-open connection
    (Borg does the same); ssh ends when hoard closes its stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _RateLimiter:
    """``--upload-ratelimit``: at most ``rate`` bytes a second on average,
    with one second's worth of burst."""

    def __init__(
        self,
        rate: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._allowance = float(rate)
        self._last = clock()

    @property
    def active(self) -> bool:
        return self._rate > 0

    def wait(self, size: int) -> None:
        """Return once ``size`` more bytes may go."""
        if not self._rate:
            return
        now = self._clock()
        self._allowance = min(float(self._rate), self._allowance + (now - self._last) * self._rate)
        self._last = now
        self._allowance -= size
        if self._allowance < 0:
            self._sleep(-self._allowance / self._rate)


class _Uploader:
    """``--upload-buffer``: frames are queued (up to ``capacity`` bytes) for a
    writer thread, so a caller goes on while a slow or rate-limited link
    drains; 0 writes in the caller's thread. A write error reaches the next
    sender and the reader thread sees the connection end."""

    def __init__(self, write: Any, capacity: int) -> None:
        self._write = write
        self._capacity = capacity
        self._queue: collections.deque[list[bytes | memoryview] | None] = collections.deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None
        if capacity:
            self._thread = threading.Thread(
                target=self._drain, name="hoard-rpc-upload", daemon=True
            )
            self._thread.start()

    def send(self, parts: list[bytes | memoryview]) -> None:
        if self._thread is None:
            self._write(parts)
            return
        size = sum(len(part) for part in parts)
        with self._cond:
            while self._queued and self._queued + size > self._capacity and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            self._queue.append(parts)
            self._queued += size
            self._cond.notify_all()

    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                data = self._queue.popleft()
            if data is None:
                return
            try:
                self._write(data)
            except OSError as exc:
                with self._cond:
                    self._error = exc
                    self._queue.clear()
                    self._queued = 0
                    self._cond.notify_all()
                return
            with self._cond:
                self._queued -= sum(len(part) for part in data)
                self._cond.notify_all()

    def close(self) -> None:
        """Send what is queued, then stop the writer thread."""
        if self._thread is None:
            return
        with self._cond:
            self._queue.append(None)
            self._cond.notify_all()
        self._thread.join(timeout=_CLOSE_TIMEOUT)
