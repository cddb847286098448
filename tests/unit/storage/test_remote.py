"""RemoteStorage and ``hoard serve`` against the storage contract, and against hostile clients.

The conformance suite runs twice: through a real sshd on 127.0.0.1, and
through ``hoard serve`` started directly (an "rsh" that runs the remote
command here), which is quicker and shows that nothing depends on ssh.
The hostile-client tests speak the wire format themselves to a ``hoard
serve`` process: every bad request gets an error reply, the server answers
the next request, and nothing on disk changes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import pytest

from hoard.errors import (
    AppendOnlyViolation,
    ConnectionClosed,
    ObjectNotFound,
    PathNotAllowed,
    ProtocolMismatch,
    RepositoryDoesNotExist,
    StorageFull,
)
from hoard.storage import rpc
from hoard.storage.remote import RemoteStorage, _RateLimiter
from hoard.storage.sshcommand import KEEPALIVE, RemoteOptions, RemoteTarget, ssh_command
from tests.sshd import Sshd
from tests.unit.storage.conformance import StorageConformance

HOARD = shutil.which("hoard", path=os.path.dirname(sys.executable)) or "hoard"


@pytest.fixture(scope="session")
def local_rsh(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An "rsh" that drops the host and runs the remote command here."""
    script = tmp_path_factory.mktemp("rsh") / "local-rsh"
    script.write_text('#!/bin/sh\nshift\nexec "$@"\n')
    script.chmod(0o755)
    return str(script)


def connect(
    rsh: str, path: Path, *, create: bool = True, host: str = "here", **kw: Any
) -> RemoteStorage:
    options = RemoteOptions(rsh=rsh, remote_path=HOARD, **kw)
    target = RemoteTarget(host=host, path=str(path), create=create, shown=f"ssh://{host}{path}")
    return RemoteStorage.connect(target, options, "test-client")


class TestRemoteConformanceDirect(StorageConformance):
    @pytest.fixture
    def storage(self, tmp_path: Path, local_rsh: str) -> Iterator[RemoteStorage]:
        storage = connect(local_rsh, tmp_path / "repo")
        yield storage
        storage.close()


class SharedConnection:
    """One connection through the real sshd for the whole suite (a login
    costs half a second), opened again, on a new path, after a test closed it."""

    def __init__(self, sshd: Sshd, base: Path) -> None:
        self.sshd = sshd
        self.base = base
        self.opened = 0
        self.storage: RemoteStorage | None = None

    def get(self) -> RemoteStorage:
        if self.storage is None or self.storage.closed:
            self.opened += 1
            path = self.base / f"repo{self.opened}"
            target = RemoteTarget(
                host="127.0.0.1", port=self.sshd.port, user="root", path=str(path), create=True
            )
            options = RemoteOptions(rsh=self.sshd.rsh, remote_path=self.sshd.hoard)
            self.storage = RemoteStorage.connect(target, options, "test-client")
        return self.storage


@pytest.fixture(scope="module")
def ssh_connection(
    sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedConnection]:
    shared = SharedConnection(sshd, tmp_path_factory.mktemp("ssh-conformance"))
    yield shared
    if shared.storage is not None:
        shared.storage.close()


class TestRemoteConformanceSsh(StorageConformance):
    @pytest.fixture
    def storage(self, ssh_connection: SharedConnection) -> Iterator[RemoteStorage]:
        storage = ssh_connection.get()
        for info in list(storage.list("")):  # empty, as every test expects
            storage.delete(info.name)
        yield storage
        if not storage.closed:
            for info in list(storage.list_temporary("")):
                storage.delete_temporary(info.name)


# --- the client ---------------------------------------------------------------------


def test_ssh_command_is_borgs() -> None:
    target = RemoteTarget(host="example.org", user="backup", port=2222, path="/srv/repo")
    options = RemoteOptions(
        rsh="ssh -i /k -o 'Opt=a b'", remote_path="/opt/hoard/bin/hoard", umask=0o027
    )
    assert ssh_command(target, options) == [
        "ssh",
        "-i",
        "/k",
        "-o",
        "Opt=a b",
        *KEEPALIVE,
        "-p",
        "2222",
        "backup@example.org",
        "/opt/hoard/bin/hoard",
        "serve",
        "--umask=0027",
    ]
    plain = ssh_command(RemoteTarget(host="h", path="r"), RemoteOptions(log_level="debug"))
    assert plain == ["ssh", *KEEPALIVE, "h", "hoard", "serve", "--umask=0077", "--debug"]
    own = RemoteOptions(rsh="/usr/bin/ssh -o ServerAliveInterval=60")
    assert ssh_command(RemoteTarget(host="h", path="r"), own)[:3] == [
        "/usr/bin/ssh",
        "-o",
        "ServerAliveInterval=60",
    ]
    assert KEEPALIVE[1] not in ssh_command(RemoteTarget(host="h", path="r"), own)
    wrapper = RemoteOptions(rsh="/usr/local/bin/my-ssh-wrapper --slow")
    assert ssh_command(RemoteTarget(host="h", path="r"), wrapper)[:3] == [
        "/usr/local/bin/my-ssh-wrapper",
        "--slow",
        "h",
    ]


def test_the_servers_errors_arrive_as_the_same_classes(tmp_path: Path, local_rsh: str) -> None:
    with pytest.raises(RepositoryDoesNotExist, match=str(tmp_path / "missing")):
        connect(local_rsh, tmp_path / "missing", create=False)
    storage = connect(local_rsh, tmp_path / "repo")
    try:
        with pytest.raises(ObjectNotFound, match="nothing"):
            storage.load("nothing")
    finally:
        storage.close()


def test_many_requests_in_flight_from_many_threads(tmp_path: Path, local_rsh: str) -> None:
    storage = connect(local_rsh, tmp_path / "repo")
    try:
        blobs = {f"data/{i:03d}": os.urandom(1000 + i * 997) for i in range(64)}
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda item: storage.store(*item), blobs.items()))
            loaded = dict(zip(blobs, pool.map(storage.load, blobs), strict=True))
        assert loaded == blobs
    finally:
        storage.close()


def test_a_missing_remote_hoard_is_a_clear_error(tmp_path: Path, local_rsh: str) -> None:
    options = RemoteOptions(rsh=local_rsh, remote_path=str(tmp_path / "no-hoard-here"))
    target = RemoteTarget(host="h", path=str(tmp_path / "repo"), shown="ssh://h/repo")
    with pytest.raises(ConnectionClosed) as caught:
        RemoteStorage.connect(target, options, "test-client")
    message = str(caught.value)
    assert message.startswith("Connection closed by remote host.")
    assert "no-hoard-here" in message and "--remote-path" in message


def test_a_dead_server_fails_the_waiting_call_and_every_later_one(
    tmp_path: Path, local_rsh: str
) -> None:
    storage = connect(local_rsh, tmp_path / "repo")
    storage.store("a", b"1")
    os.kill(storage._process.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        storage.load("a")
    with pytest.raises(ConnectionClosed):
        storage.store("b", b"2")
    assert time.monotonic() - started < 30
    storage.close()


def test_upload_buffer_and_rate_limit_deliver_everything(tmp_path: Path, local_rsh: str) -> None:
    storage = connect(local_rsh, tmp_path / "repo", upload_buffer=1, upload_ratelimit=100_000)
    try:
        blobs = {f"data/{i}": os.urandom(300_000) for i in range(8)}
        for name, data in blobs.items():
            storage.store(name, data)
        assert {name: storage.load(name) for name in blobs} == blobs
    finally:
        storage.close()


def test_rate_limiter_paces_to_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = _RateLimiter(1000, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        limiter.wait(500)  # 5,000 bytes at 1,000/s: the first 1,000 are the burst
    assert sum(slept) == pytest.approx(4.0)
    assert not _RateLimiter(0).active


# --- hostile clients ------------------------------------------------------------------


class RawClient:
    """Speaks the wire format to a ``hoard serve`` process, nothing else."""

    def __init__(self, *serve_args: str, cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(
            [HOARD, "serve", *serve_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
        self.msgid = 0

    def send_raw(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, method: str, payload: bytes = b"", **args: Any) -> int:
        self.msgid += 1
        self.send_raw(
            b"".join(bytes(p) for p in rpc.request_frame(self.msgid, method, args, payload))
        )
        return self.msgid

    def reply(self) -> rpc.Reply:
        assert self.process.stdout is not None
        received = rpc.read_frame(self.process.stdout, rpc.REPLY_LIMIT, rpc.REPLY_LIMIT)
        assert received is not None, "the server hung up"
        return rpc.decode_reply(received)

    def call(self, method: str, payload: bytes = b"", **args: Any) -> rpc.Reply:
        msgid = self.send(method, payload, **args)
        reply = self.reply()
        assert reply.msgid == msgid
        return reply

    def error(self, reply: rpc.Reply) -> str:
        assert not reply.ok, reply
        return str(reply.value[0])

    def close(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=30)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RawClient, Path]]:
    """A serve process restricted to tmp_path/allowed, append-only, with a repository open."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    client = RawClient("--restrict-to-path", str(allowed), "--append-only")
    assert client.call("hello", versions=[1, 1], client="raw").ok
    assert client.call("open", path=str(allowed / "repo"), create=True).ok
    assert client.call("store", b"{}", name="config").ok
    assert client.call("store", b"lock", name="locks/" + "0" * 32).ok
    yield client, allowed / "repo"
    client.close()


def assert_still_serving(client: RawClient) -> None:
    reply = client.call("info", name="config")
    assert reply.ok and reply.value[:2] == ["config", 2]


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("delete", {"name": "config"}),
        ("store", {"name": "config", "overwrite": True}),
        ("delete_temporary", {"name": "config.tmp-0123456789abcdef"}),
        ("load", {"name": "../../etc/passwd"}),
        ("store", {"name": "/etc/evil"}),
        ("list", {"prefix": "../"}),
        ("info", {"name": "a/../../b"}),
        ("store", {"name": 42}),
        ("load", {"name": "config", "offset": -5}),
        ("load", {"name": "config", "offset": True}),
        ("load", {}),
        ("unlink", {"name": "config"}),
        ("__init__", {}),
        ("open", {"path": "/"}),
    ],
)
def test_hostile_requests_are_refused_and_change_nothing(
    served: tuple[RawClient, Path], method: str, args: dict[str, Any]
) -> None:
    client, repo = served
    before = snapshot(repo)
    reply = client.call(method, b"x", **args)
    assert not reply.ok
    assert_still_serving(client)
    assert snapshot(repo) == before


def test_append_only_refuses_by_name(served: tuple[RawClient, Path]) -> None:
    client, _ = served
    assert client.error(client.call("delete", name="config")) == AppendOnlyViolation.__name__
    assert client.call("delete", name="locks/" + "0" * 32).ok  # lock records stay mutable


def test_paths_outside_the_restriction(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (tmp_path / "allowed-not").mkdir()
    (allowed / "link").symlink_to(tmp_path)
    client = RawClient("--restrict-to-path", str(allowed), cwd=tmp_path)
    try:
        assert client.call("hello", versions=[1, 1], client="raw").ok
        for path in (
            str(tmp_path / "elsewhere"),
            str(allowed / ".." / "elsewhere"),
            str(tmp_path / "allowed-not" / "repo"),
            str(allowed / "link" / "repo"),
            "/./allowed-not/repo",
            "/etc",
        ):
            assert (
                client.error(client.call("open", path=path, create=True)) == PathNotAllowed.__name__
            )
        assert os.listdir(tmp_path / "allowed-not") == []
        assert client.call("open", path="/./allowed/repo", create=True).ok  # relative to the cwd
    finally:
        client.close()


def test_restrict_to_repository_allows_exactly_that_path(tmp_path: Path) -> None:
    client = RawClient("--restrict-to-repository", str(tmp_path / "repo"))
    try:
        assert client.call("hello", versions=[1, 1], client="raw").ok
        refused = client.call("open", path=str(tmp_path / "repo" / "sub"), create=True)
        assert client.error(refused) == PathNotAllowed.__name__
        assert client.call("open", path=str(tmp_path / "repo"), create=True).ok
    finally:
        client.close()


def test_garbage_and_oversized_frames_get_errors_and_the_server_stays_up(
    served: tuple[RawClient, Path],
) -> None:
    client, repo = served
    before = snapshot(repo)
    client.send_raw(rpc.PREFIX.pack(5, 0) + b"\xc1\xc1\xc1\xc1\xc1")  # not msgpack
    assert client.reply().msgid == 0
    client.send_raw(rpc.PREFIX.pack(3, 0) + msgpack.packb([1, 2]))  # not a request
    assert client.reply().msgid == 0
    header = msgpack.packb([99, "store", {"name": "big"}])
    client.send_raw(rpc.PREFIX.pack(len(header), rpc.MIN_REQUEST_LIMIT + 1) + header)
    client.send_raw(b"\0" * (rpc.MIN_REQUEST_LIMIT + 1))  # read and thrown away
    refused = client.reply()
    assert refused.msgid == 0 and "over the limit" in refused.value[2]
    client.send_raw(
        rpc.PREFIX.pack(rpc.REQUEST_HEADER_LIMIT + 1, 0) + b"\x90" * (rpc.REQUEST_HEADER_LIMIT + 1)
    )
    assert client.reply().msgid == 0
    assert_still_serving(client)
    assert snapshot(repo) == before


def test_a_huge_declared_length_is_not_allocated(served: tuple[RawClient, Path]) -> None:
    client, _ = served
    # 4 GiB announced, then the client hangs up: the server must not try to hold it
    client.send_raw(rpc.PREFIX.pack(16, 2**32 - 1) + b"x" * 1000)
    assert client.close() == 0


def test_requests_before_hello_and_protocol_mismatch(tmp_path: Path) -> None:
    client = RawClient()
    try:
        early = client.call("open", path=str(tmp_path / "r"), create=True)
        assert "hello must be the first request" in early.value[2]
        mismatch = client.call("hello", versions=[5, 7], client="hoard 9.0")
        assert client.error(mismatch) == ProtocolMismatch.__name__
        message = mismatch.value[2]
        assert "hoard 9.0 speaks 5 to 7" in message and f"speaks {rpc.PROTOCOL_VERSION}" in message
        assert client.call("hello", versions=[1, 3], client="newer").value["version"] == 1
    finally:
        client.close()
    assert not (tmp_path / "r").exists()


def test_serve_releases_the_locks_of_a_vanished_client(tmp_path: Path) -> None:
    client = RawClient()
    assert client.call("hello", versions=[1, 1], client="raw").ok
    assert client.call("open", path=str(tmp_path / "repo"), create=True).ok
    assert client.call("store", b"{}", name="locks/" + "a" * 32).ok
    assert client.call("store", b"{}", name="locks/" + "b" * 32).ok
    assert client.call("delete", name="locks/" + "b" * 32).ok
    assert client.call("store", b"{}", name="config").ok
    assert client.close() == 0  # end of file: the client is gone
    assert not any((tmp_path / "repo" / "locks").glob("*"))
    assert (tmp_path / "repo" / "config").exists()


FAKE_SERVER = """
import sys
from hoard.storage import rpc
request = rpc.decode_request(rpc.read_frame(sys.stdin.buffer, 2**20, 2**20))
for part in rpc.reply_frame(request.msgid, {"version": 99, "server": "99.0+hoard.9"}):
    sys.stdout.buffer.write(part)
sys.stdout.buffer.flush()
sys.stdin.buffer.read()
"""


def test_a_server_of_a_newer_protocol_is_named_in_the_error(tmp_path: Path, local_rsh: str) -> None:
    server = tmp_path / "fake_server.py"
    server.write_text(FAKE_SERVER)
    options = RemoteOptions(rsh=local_rsh, remote_path=f"{sys.executable} {server}")
    target = RemoteTarget(host="h", path=str(tmp_path / "repo"))
    with pytest.raises(ProtocolMismatch) as caught:
        RemoteStorage.connect(target, options, "1.4.1+hoard.0.1.0")
    message = str(caught.value)
    assert "this hoard 1.4.1+hoard.0.1.0 speaks 1" in message
    assert "the server's hoard 99.0+hoard.9 speaks 99" in message


def test_storage_quota_is_enforced_by_the_server(tmp_path: Path) -> None:
    client = RawClient("--storage-quota", "10M")
    try:
        assert client.call("hello", versions=[1, 1], client="raw").ok
        opened = client.call("open", path=str(tmp_path / "repo"), create=True)
        assert opened.value["storage_quota"] == 10_000_000
        pack = os.urandom(6_000_000)
        assert client.call("store", pack, name="packs/00/" + "0" * 64).ok
        refused = client.call("store", pack, name="packs/11/" + "1" * 64)
        assert client.error(refused) == "StorageQuotaExceeded"
        assert client.call("store", b"lock", name="locks/" + "2" * 32).ok  # bookkeeping still goes
    finally:
        client.close()
    assert not list((tmp_path / "repo" / "packs").glob("11/*"))  # nothing half-written


def test_a_full_disk_on_the_server_is_storage_full_on_the_client(
    small_tmpfs: Path, local_rsh: str
) -> None:
    """The server's ENOSPC travels as StorageFull, nothing is left half-written,
    and the connection goes on serving (a 1 MiB tmpfs stands for the full disk)."""
    storage = connect(local_rsh, small_tmpfs / "repo")
    try:
        storage.store("config", b"small")
        with pytest.raises(StorageFull, match="No space left"):
            storage.store("packs/00/big", os.urandom(2 * 1024 * 1024))
        assert [i.name for i in storage.list("")] == ["config"]
        assert list(storage.list_temporary("")) == []
        storage.store("packs/00/fits", b"x" * 1000)
    finally:
        storage.close()
