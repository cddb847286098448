"""The server end of :mod:`hoard.storage.rpc`: one storage, one client.

``hoard serve`` runs this on stdin and stdout. The client is not trusted:
every request is checked (method, argument types, names) before it reaches
the storage, an unreadable or oversized request is answered with an error
and skipped, and the next request is served as if nothing happened. What
the storage itself refuses (append-only, quota, a name outside the root)
is refused by the wrappers the opener put around it, on this side of the
connection, so a client cannot talk its way past them.

Memory: requests are read one at a time and handed to a few threads (so
that an fsync and a read overlap), and the reader waits while the requests
being served add up to more than ``inflight_bytes``: a client cannot make
the server hold more than that plus one request of the size limit.

Lock records (``locks/...``) this client stored and did not remove are
removed when the connection ends, so a client that was killed or lost its
network does not leave its lock behind for the next one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from hoard.errors import (
    HoardError,
    InvalidRPCMethod,
    ObjectNotFound,
    ProtocolMismatch,
    RemoteError,
    RemoteServerError,
    UnexpectedRPCDataFormatFromClient,
)
from hoard.storage import rpc
from hoard.storage.base import ObjectInfo, Storage, check_name, check_prefix

logger = logging.getLogger(__name__)

LOCK_PREFIX = "locks/"
DEFAULT_THREADS = 4
DEFAULT_INFLIGHT_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class OpenRequest:
    """What a client asked to open: the path as its location spelled it."""

    path: str
    create: bool
    make_parent_dirs: bool


@dataclass
class Opened:
    """What the opener made of an OpenRequest: the guarded storage, the
    largest request the server accepts for it, and what the client is told."""

    storage: Storage
    request_limit: int = rpc.MIN_REQUEST_LIMIT
    info: dict[str, Any] = field(default_factory=dict)


Opener = Callable[[OpenRequest], Opened]


@dataclass(frozen=True, slots=True)
class Payload:
    """A result sent as the reply's payload (raw bytes), not in its header."""

    data: bytes


class StorageServer:
    """Serves one client over a pair of streams until it goes away."""

    def __init__(
        self,
        opener: Opener,
        *,
        version: str,
        threads: int = DEFAULT_THREADS,
        inflight_bytes: int = DEFAULT_INFLIGHT_BYTES,
    ) -> None:
        self._opener = opener
        self._version = version
        self._threads = threads
        self._budget = inflight_bytes
        self._inflight = 0
        self._inflight_cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._storage: Storage | None = None
        self._limit = rpc.MIN_REQUEST_LIMIT
        self._protocol = 0
        self._locks: set[str] = set()
        self._locks_guard = threading.Lock()
        self._out_fd = -1
        self._gone = False

    def serve(self, rfile: IO[bytes], out_fd: int) -> None:
        """Answer requests from ``rfile`` on ``out_fd`` until end of file or a
        broken pipe; then release the client's locks and close the storage."""
        self._out_fd = out_fd
        pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="hoard-serve")
        try:
            self._read_requests(rfile, pool)
        finally:
            pool.shutdown(wait=True)
            self._release_locks()
            if self._storage is not None:
                self._storage.close()

    def _read_requests(self, rfile: IO[bytes], pool: ThreadPoolExecutor) -> None:
        while not self._gone:
            try:
                received = rpc.read_frame(rfile, rpc.REQUEST_HEADER_LIMIT, self._limit)
            except rpc.FrameTooLargeError as exc:
                self._refuse(0, f"a request of {exc.length} bytes is over the limit of {exc.limit}")
                continue
            except (EOFError, OSError):
                return
            if received is None:
                return
            try:
                request = rpc.decode_request(received)
            except rpc.GarbledError as exc:
                self._refuse(0, str(exc))
                continue
            del received
            if request.method in ("hello", "open"):
                self._answer(request, self._session_step)  # in order: they change the session
                continue
            cost = len(request.payload) + _reply_cost(request, self._limit)
            self._take_budget(cost)
            pool.submit(self._serve_one, request, cost)

    def _serve_one(self, request: rpc.Request, cost: int) -> None:
        try:
            self._answer(request, self._storage_call)
        finally:
            self._give_budget(cost)

    def _take_budget(self, size: int) -> None:
        """Wait until ``size`` more bytes of requests may be in service."""
        with self._inflight_cond:
            while self._inflight and self._inflight + size > self._budget:
                self._inflight_cond.wait()
            self._inflight += size

    def _give_budget(self, size: int) -> None:
        with self._inflight_cond:
            self._inflight -= size
            self._inflight_cond.notify_all()

    # --- answering -------------------------------------------------------------------

    def _answer(self, request: rpc.Request, handler: Callable[[rpc.Request], Any]) -> None:
        try:
            result = handler(request)
        except HoardError as exc:
            self._send(rpc.error_frame(request.msgid, exc))
        except Exception as exc:
            logger.error("%s failed:\n%s", request.method, traceback.format_exc())
            self._send(
                rpc.error_frame(request.msgid, RemoteServerError(f"{type(exc).__name__}: {exc}"))
            )
        else:
            if isinstance(result, Payload):
                self._send(rpc.reply_frame(request.msgid, None, result.data))
            else:
                self._send(rpc.reply_frame(request.msgid, result))

    def _refuse(self, msgid: int, why: str) -> None:
        logger.warning("Refused a request: %s", why)
        self._send(rpc.error_frame(msgid, UnexpectedRPCDataFormatFromClient(why)))

    def _send(self, parts: list[bytes | memoryview]) -> None:
        with self._write_lock:
            if self._gone:
                return
            try:
                for part in parts:
                    _write_all(self._out_fd, part)
            except OSError:  # the client is gone: stop reading too
                self._gone = True

    # --- the session -----------------------------------------------------------------

    def _session_step(self, request: rpc.Request) -> Any:
        if request.method == "hello":
            return self._hello(request.args)
        if not self._protocol:
            raise UnexpectedRPCDataFormatFromClient("hello must be the first request")
        if self._storage is not None:
            raise RemoteError("a repository is open already in this session")
        opened = self._opener(
            OpenRequest(
                path=_arg(request.args, "path", str),
                create=_arg(request.args, "create", bool, False),
                make_parent_dirs=_arg(request.args, "make_parent_dirs", bool, False),
            )
        )
        self._storage = opened.storage
        self._limit = max(rpc.MIN_REQUEST_LIMIT, opened.request_limit)
        return {"location": opened.storage.location, "request_limit": self._limit, **opened.info}

    def _hello(self, args: dict[str, Any]) -> dict[str, Any]:
        versions = args.get("versions")
        client = str(args.get("client", "?"))
        if not (
            isinstance(versions, list)
            and len(versions) == 2
            and all(isinstance(v, int) for v in versions)
        ):
            raise UnexpectedRPCDataFormatFromClient("hello needs versions [oldest, newest]")
        low, high = versions
        agreed = min(high, rpc.PROTOCOL_VERSION)
        if agreed < max(low, rpc.OLDEST_PROTOCOL_VERSION):
            raise ProtocolMismatch(client, f"{low} to {high}", self._version, rpc.PROTOCOL_VERSION)
        self._protocol = agreed
        return {"version": agreed, "server": self._version}

    def _storage_call(self, request: rpc.Request) -> Any:
        method = _HANDLERS.get(request.method)
        if method is None:
            raise InvalidRPCMethod(request.method)
        if self._storage is None:
            raise UnexpectedRPCDataFormatFromClient("no repository is open")
        return method(self, self._storage, request.args, request.payload)

    # --- storage methods -------------------------------------------------------------

    def _store(self, storage: Storage, args: dict[str, Any], payload: bytes) -> None:
        name = check_name(_arg(args, "name", str))
        storage.store(name, payload, overwrite=_arg(args, "overwrite", bool, False))
        if name.startswith(LOCK_PREFIX):
            with self._locks_guard:
                self._locks.add(name)

    def _load(self, storage: Storage, args: dict[str, Any], payload: bytes) -> Payload:
        offset = _arg(args, "offset", int, 0)
        length = _arg(args, "length", (int, type(None)), None)
        if offset < 0 or (length is not None and length < 0):
            raise UnexpectedRPCDataFormatFromClient("negative offset or length")
        return Payload(storage.load(check_name(_arg(args, "name", str)), offset, length))

    def _delete(self, storage: Storage, args: dict[str, Any], payload: bytes) -> None:
        name = check_name(_arg(args, "name", str))
        storage.delete(name)
        with self._locks_guard:
            self._locks.discard(name)

    def _list(self, storage: Storage, args: dict[str, Any], payload: bytes) -> list[list[Any]]:
        return [_info(i) for i in storage.list(check_prefix(_arg(args, "prefix", str, "")))]

    def _info(self, storage: Storage, args: dict[str, Any], payload: bytes) -> list[Any]:
        return _info(storage.info(check_name(_arg(args, "name", str))))

    def _exists(self, storage: Storage, args: dict[str, Any], payload: bytes) -> bool:
        return storage.exists(check_name(_arg(args, "name", str)))

    def _list_temporary(
        self, storage: Storage, args: dict[str, Any], payload: bytes
    ) -> list[list[Any]]:
        return [
            _info(i) for i in storage.list_temporary(check_prefix(_arg(args, "prefix", str, "")))
        ]

    def _delete_temporary(self, storage: Storage, args: dict[str, Any], payload: bytes) -> None:
        storage.delete_temporary(_arg(args, "name", str))

    def _free_space(self, storage: Storage, args: dict[str, Any], payload: bytes) -> int | None:
        return storage.free_space()

    def _release_locks(self) -> None:
        """Remove the lock records the client left (it died or lost the link)."""
        if self._storage is None:
            return
        for name in sorted(self._locks):
            with contextlib.suppress(ObjectNotFound):
                try:
                    self._storage.delete(name)
                    logger.warning("Released the lock %s its client left behind", name)
                except HoardError as exc:
                    logger.warning("Could not release the lock %s: %s", name, exc)


_HANDLERS: dict[str, Callable[[StorageServer, Storage, dict[str, Any], bytes], Any]] = {
    "store": StorageServer._store,
    "load": StorageServer._load,
    "delete": StorageServer._delete,
    "list": StorageServer._list,
    "info": StorageServer._info,
    "exists": StorageServer._exists,
    "list_temporary": StorageServer._list_temporary,
    "delete_temporary": StorageServer._delete_temporary,
    "free_space": StorageServer._free_space,
}
assert set(_HANDLERS) | {"hello", "open"} == rpc.METHODS


def _arg(args: dict[str, Any], key: str, kind: type | tuple[type, ...], *default: Any) -> Any:
    """Argument ``key``, which must be of ``kind`` (a client that sends
    anything else gets UnexpectedRPCDataFormatFromClient)."""
    if key not in args:
        if default:
            return default[0]
        raise UnexpectedRPCDataFormatFromClient(f"argument {key!r} is missing")
    value = args[key]
    if isinstance(value, bool) and kind is int:
        raise UnexpectedRPCDataFormatFromClient(f"argument {key!r} has the wrong type")
    if not isinstance(value, kind):
        raise UnexpectedRPCDataFormatFromClient(f"argument {key!r} has the wrong type")
    return value


def _info(info: ObjectInfo) -> list[Any]:
    return [info.name, info.size, info.mtime]


def _reply_cost(request: rpc.Request, limit: int) -> int:
    """What a reply may hold: a load returns up to its length (a whole
    object, at most the request limit, when no length is given)."""
    if request.method != "load":
        return 0
    length = request.args.get("length")
    return min(length, limit) if isinstance(length, int) and length >= 0 else limit


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
