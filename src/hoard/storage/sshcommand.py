"""The ssh command line that starts ``hoard serve`` on a repository's host.

Kept apart from the client (:mod:`hoard.storage.remote`) so that the
options can travel in every command's context without importing the RPC
machinery into ``hoard --version``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RemoteOptions:
    """How to reach a server: Borg's ``--rsh``, ``--remote-path``,
    ``--upload-ratelimit`` (KiB/s, 0: none) and ``--upload-buffer`` (MiB,
    0: none), and what the server is told (umask, log level)."""

    rsh: str = "ssh"
    remote_path: str = "hoard"
    upload_ratelimit: int = 0
    upload_buffer: int = 0
    umask: int = 0o077
    log_level: str = "warning"


@dataclass(frozen=True, kw_only=True)
class RemoteTarget:
    """The repository to open: host, port and user for ssh, the path as the
    location gave it (the server resolves ``~`` and ``/./``), and how."""

    host: str
    path: str
    user: str | None = None
    port: int | None = None
    create: bool = False
    make_parent_dirs: bool = False
    shown: str = ""
    """The location for messages (``ssh://user@host:port/path``)."""


KEEPALIVE = ["-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]
"""What ssh is given unless the user's rsh already sets keepalives: a
connection whose network died (no reset ever arrives) ends within about 30
seconds instead of hanging until TCP gives up, hours later."""


def ssh_command(target: RemoteTarget, options: RemoteOptions) -> list[str]:
    """The command line, as Borg builds it: the rsh words, ``-p PORT``, the
    host (with user), then the remote hoard and its ``serve`` options; for
    ``ssh`` itself, keepalives (see KEEPALIVE)."""
    command = shlex.split(options.rsh)
    is_ssh = bool(command) and command[0].rsplit("/", 1)[-1] == "ssh"
    if is_ssh and not any("serveralive" in word.lower() for word in command):
        command += KEEPALIVE
    if target.port:
        command += ["-p", str(target.port)]
    command.append(f"{target.user}@{target.host}" if target.user else target.host)
    command += [*shlex.split(options.remote_path), "serve", f"--umask={options.umask:04o}"]
    if options.log_level in ("debug", "info"):
        command.append(f"--{options.log_level}")
    return command
