"""The wire format of ``hoard serve``: length-prefixed frames of msgpack and bytes.

Every message is a frame: an 8-byte prefix (two big-endian u32: the length
of the header, the length of the payload), the header (one msgpack array),
then the payload (raw bytes: the data of a ``store``, the result of a
``load``; empty for everything else). Keeping blob data out of msgpack
means a 16 MiB pack is neither copied into nor out of a msgpack buffer on
either end (msgpack packing was 12 % of a client's time over ssh).

A request header is ``[msgid, method, args]`` (``args`` a map of argument
names to values), a reply header ``[msgid, True, result]`` or
``[msgid, False, error]``, where ``error`` is ``[class name, args,
message]`` of a :class:`~hoard.errors.HoardError`. ``msgid`` is a positive
integer the client picks, so that many requests can be in flight and
replies may come in any order; a reply the server cannot attribute (a
frame too large or too garbled to read its msgid) carries msgid 0. The
protocol version is agreed in the first request, ``hello``.
docs/design/remote-protocol.md describes it for people; this module is the
one place that encodes it.

Both ends bound what they read: a frame longer than the reader's limits is
skipped without being held in memory, and msgpack never allocates more than
the header it decodes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO, Any

import msgpack

from hoard import errors
from hoard.errors import HoardError, RemoteServerError

PROTOCOL_VERSION = 1
"""The version this hoard speaks; ``hello`` agrees on one both ends know."""
OLDEST_PROTOCOL_VERSION = 1
"""The oldest version this hoard still speaks."""

PREFIX = struct.Struct(">II")
MAX_PART = 2**32 - 1
"""The largest header or payload the prefix can express."""
MIN_REQUEST_LIMIT = 64 * 1024 * 1024 + 1024 * 1024
"""The payload a server accepts at least in one request: a pack of the
default size or of one maximal chunk (20 MiB) with room to spare."""
REQUEST_HEADER_LIMIT = 1024 * 1024
"""Request headers carry names and small numbers only."""
REPLY_LIMIT = 2**31 + 1024 * 1024
"""What a client accepts in one reply, header or payload: a listing of a
very large repository, a whole pack of the largest size."""
_DISCARD_PIECE = 1024 * 1024
_PLAIN = (str, int, float, bytes, bool)

METHODS = frozenset(
    {
        "hello",
        "open",
        "store",
        "load",
        "delete",
        "list",
        "info",
        "list_temporary",
        "delete_temporary",
        "free_space",
        "exists",
    }
)
"""Every method a client may call; anything else is InvalidRPCMethod."""


class FrameTooLargeError(Exception):
    """A frame's length prefix is over the reader's limit (its body was skipped)."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(length, limit)
        self.length = length
        self.limit = limit


class GarbledError(Exception):
    """A frame's body is not the message it should be."""


@dataclass(frozen=True, slots=True)
class Frame:
    header: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class Request:
    msgid: int
    method: str
    args: dict[str, Any]
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Reply:
    msgid: int
    ok: bool
    value: Any
    """The result when ``ok``, else the error as ``[name, args, message]``."""
    payload: bytes = b""


def read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    """``size`` bytes, or None at end of file before the first byte.

    End of file in the middle of a frame is a broken connection, not a
    clean close: EOFError.
    """
    data = stream.read(size)
    if data is None:  # non-blocking streams are not used here
        raise EOFError("stream would block")
    if len(data) == size:
        return data
    if not data:
        return None
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            raise EOFError(f"connection ended inside a frame ({got} of {size} bytes)")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def read_frame(stream: IO[bytes], header_limit: int, payload_limit: int) -> Frame | None:
    """The next frame; None at a clean end of file.

    A frame whose header or payload is over its limit is read and thrown
    away piece by piece (the connection stays usable) and
    FrameTooLargeError is raised.
    """
    prefix = read_exactly(stream, PREFIX.size)
    if prefix is None:
        return None
    header_length, payload_length = PREFIX.unpack(prefix)
    if header_length > header_limit or payload_length > payload_limit:
        _discard(stream, header_length + payload_length)
        raise FrameTooLargeError(header_length + payload_length, header_limit + payload_limit)
    header = _read_part(stream, header_length)
    payload = _read_part(stream, payload_length)
    return Frame(header, payload)


def _read_part(stream: IO[bytes], length: int) -> bytes:
    if not length:
        return b""
    data = read_exactly(stream, length)
    if data is None:
        raise EOFError("connection ended inside a frame")
    return data


def _discard(stream: IO[bytes], length: int) -> None:
    while length:
        piece = stream.read(min(length, _DISCARD_PIECE))
        if not piece:
            raise EOFError("connection ended inside a frame")
        length -= len(piece)


def frame(header: list[Any], payload: bytes | memoryview = b"") -> list[bytes | memoryview]:
    """One message as the buffers to write: prefix, msgpack header, payload
    (the payload as given: a pack is not copied to join them)."""
    body = msgpack.packb(header, use_bin_type=True)
    if len(body) > MAX_PART or len(payload) > MAX_PART:
        raise ValueError("message too large for one frame")
    parts: list[bytes | memoryview] = [PREFIX.pack(len(body), len(payload)), body]
    if len(payload):
        parts.append(payload)
    return parts


def _unpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise GarbledError(f"not msgpack ({exc})") from None


def decode_request(received: Frame) -> Request:
    """A request frame as a Request; GarbledError when it is not one."""
    message = _unpack(received.header)
    if not (isinstance(message, list) and len(message) == 3):
        raise GarbledError("a request is [msgid, method, args]")
    msgid, method, args = message
    if not _valid_msgid(msgid):
        raise GarbledError(f"invalid msgid {msgid!r}")
    if not isinstance(method, str) or not isinstance(args, dict):
        raise GarbledError("the method must be a string and the arguments a map")
    return Request(msgid, method, args, received.payload)


def decode_reply(received: Frame) -> Reply:
    """A reply frame as a Reply; GarbledError when it is not one."""
    message = _unpack(received.header)
    if not (isinstance(message, list) and len(message) == 3):
        raise GarbledError("a reply is [msgid, ok, value]")
    msgid, ok, value = message
    if not (isinstance(msgid, int) and msgid >= 0 and isinstance(ok, bool)):
        raise GarbledError("invalid reply header")
    if not ok and not _valid_error(value):
        raise GarbledError("invalid error reply")
    return Reply(msgid, ok, value, received.payload)


def _valid_msgid(msgid: object) -> bool:
    return isinstance(msgid, int) and not isinstance(msgid, bool) and 0 < msgid < 2**63


def _valid_error(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], list)
        and isinstance(value[2], str)
    )


def request_frame(
    msgid: int, method: str, args: dict[str, Any], payload: bytes | memoryview = b""
) -> list[bytes | memoryview]:
    return frame([msgid, method, args], payload)


def reply_frame(msgid: int, result: Any, payload: bytes = b"") -> list[bytes | memoryview]:
    return frame([msgid, True, result], payload)


def error_frame(msgid: int, exc: HoardError) -> list[bytes | memoryview]:
    return frame([msgid, False, encode_error(exc)])


def encode_error(exc: HoardError) -> list[Any]:
    """An error as ``[class name, args, message]``; arguments that msgpack
    cannot carry are sent as text (the message is formatted from them)."""
    args = [a if a is None or isinstance(a, _PLAIN) else str(a) for a in exc.args]
    return [type(exc).__name__, args, exc.get_message()]


def decode_error(value: list[Any]) -> HoardError:
    """The error a server sent, as the same class where hoard knows it.

    Only :class:`HoardError` subclasses in :mod:`hoard.errors` are rebuilt
    (so a caller can tell ObjectNotFound from ObjectExists exactly as with
    a local storage); anything else becomes RemoteServerError with the
    server's message. The arguments are set without running the class's
    ``__init__`` (which may take other types), so the message is the same.
    """
    name, args, message = value
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, HoardError)):
        return RemoteServerError(message)
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    return exc
