"""``hoard serve``: the server end of ssh repositories (started by the client's ssh).

Only storage operations cross the connection; keys, encryption and every
decision above the storage stay on the client. What this side enforces,
whatever the client sends: the path restrictions, append-only (from
``--append-only`` or the repository's own config) and the storage quota.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from hoard import __version__
from hoard.commands.base import Context
from hoard.commands.quotaargs import parse_quota
from hoard.commands.version import version_string
from hoard.errors import HoardError, PathNotAllowed
from hoard.repository.config import RepoConfig, load_config
from hoard.repository.localpath import check_new_path, existing_repository_storage
from hoard.storage import rpc
from hoard.storage.appendonly import AppendOnlyStorage
from hoard.storage.base import Storage
from hoard.storage.local import LocalStorage
from hoard.storage.quota import QuotaStorage
from hoard.storage.rpcserver import Opened, OpenRequest, StorageServer

logger = logging.getLogger(__name__)

NAME = "serve"
HELP = "start repository server process"
DESCRIPTION = """Start a repository server process (what ssh runs on the repository's host).

This command is usually not used manually: a client reaching an ssh://
repository starts it through ssh and talks to it on stdin and stdout. Use it
in a forced command of ~/.ssh/authorized_keys to limit what a key may do:

    command="hoard serve --restrict-to-path /backups/c1 --append-only",restrict ssh-ed25519 AAAA..

The restrictions are enforced here, on the server, so a modified client
cannot get around them. From the client's own command line (in
SSH_ORIGINAL_COMMAND) only --umask and the log level are taken."""

_CLIENT_LOG_LEVELS = ("--debug", "--info", "--warning", "--error", "--critical")


@dataclass(frozen=True)
class ServeOptions:
    """What this server allows: paths (realpaths; empty: anywhere), append-only, quota."""

    restrict_to_paths: tuple[str, ...] = ()
    restrict_to_repositories: tuple[str, ...] = ()
    append_only: bool = False
    storage_quota: int | None = None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--restrict-to-path",
        dest="restrict_to_paths",
        action="append",
        default=[],
        metavar="PATH",
        help="restrict repository access to PATH (repeatable; subdirectories are allowed; "
        "PATH need not be a repository)",
    )
    parser.add_argument(
        "--restrict-to-repository",
        dest="restrict_to_repositories",
        action="append",
        default=[],
        metavar="PATH",
        help="restrict repository access to the repository at PATH (repeatable; no "
        "subdirectories; the client may create a repository there)",
    )
    parser.add_argument(
        "--append-only",
        action="store_true",
        help="only allow appending to repository segment files: nothing is deleted or "
        "overwritten, whatever the client asks",
    )
    parser.add_argument(
        "--storage-quota",
        type=parse_quota,
        default=None,
        metavar="QUOTA",
        help="override the storage quota of the repository (e.g. 5G, 1.5T); also set on "
        "repositories created through this server",
    )


def run(ctx: Context, args: argparse.Namespace) -> None:
    _take_client_settings(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
    options = ServeOptions(
        restrict_to_paths=tuple(os.path.realpath(p) for p in args.restrict_to_paths),
        restrict_to_repositories=tuple(os.path.realpath(p) for p in args.restrict_to_repositories),
        append_only=args.append_only,
        storage_quota=args.storage_quota,
    )
    _end_on_signals()
    server = StorageServer(lambda request: open_for(request, options), version=version_string())
    stdin = os.fdopen(sys.stdin.fileno(), "rb", buffering=1024 * 1024, closefd=False)
    out_fd = sys.stdout.fileno()
    sys.stdout = sys.stderr  # nothing else may ever write into the protocol stream
    try:
        server.serve(stdin, out_fd)
    except _Signalled as exc:
        logger.debug("hoard serve %s: ending on signal %d", __version__, exc.signum)


def open_for(request: OpenRequest, options: ServeOptions) -> Opened:
    """The client's repository, after the same checks as a local one and the
    restrictions of this server, wrapped so that they hold."""
    path = resolve_path(request.path)
    check_allowed(path, options)
    config: RepoConfig | None = None
    storage: Storage
    if request.create:
        check_new_path(Path(path), request.make_parent_dirs)
        storage = LocalStorage(path)
    else:
        storage = existing_repository_storage(path)
        try:
            config = load_config(storage, "read").config
        except HoardError as exc:  # the client reports it; guard with the server's options
            logger.debug("config of %s unreadable: %s", path, exc)
    guarded = _guard(storage, config, options)
    limit = rpc.MIN_REQUEST_LIMIT if config is None else config.pack_size + 1024 * 1024
    info = {"storage_quota": options.storage_quota, "append_only": options.append_only}
    return Opened(guarded, request_limit=limit, info=info)


def resolve_path(path: str) -> str:
    """The real path a location's path names on this host (Borg's rules):
    ``/~/x`` and ``~/x`` below the home directory (``~user/x`` below that
    user's), ``/./x`` and scp-style ``x`` below the working directory (the
    home directory under ssh)."""
    if path.startswith("/~"):
        path = path[1:]
    if path.startswith("~"):
        path = os.path.expanduser(path)
    elif path.startswith("/./"):
        path = path[3:]
    return os.path.realpath(path)


def check_allowed(path: str, options: ServeOptions) -> None:
    """PathNotAllowed unless ``path`` (a realpath) is below one of the
    ``--restrict-to-path`` directories and is one of the
    ``--restrict-to-repository`` paths (each only when given). The trailing
    separator keeps ``/foobar`` out of ``--restrict-to-path /foo``."""
    with_sep = os.path.join(path, "")
    if options.restrict_to_paths and not any(
        with_sep.startswith(os.path.join(allowed, "")) for allowed in options.restrict_to_paths
    ):
        raise PathNotAllowed(path)
    if options.restrict_to_repositories and not any(
        with_sep == os.path.join(allowed, "") for allowed in options.restrict_to_repositories
    ):
        raise PathNotAllowed(path)


def _guard(storage: Storage, config: RepoConfig | None, options: ServeOptions) -> Storage:
    """The quota (the server's overrides the repository's) and append-only
    (the server's or the repository's) around the repository's storage."""
    quota = options.storage_quota or (config.storage_quota if config else None)
    reserve = config.additional_free_space if config else 0
    if quota or reserve:
        storage = QuotaStorage(storage, quota=quota, additional_free_space=reserve)
    if options.append_only or (config is not None and config.append_only):
        storage = AppendOnlyStorage(storage)
    return storage


def _take_client_settings(original: str) -> None:
    """Under a forced command, the client's own ``hoard serve`` line is in
    SSH_ORIGINAL_COMMAND: its umask and log level are the client's to pick
    (as Borg), its restrictions are not."""
    try:
        words = shlex.split(original)
    except ValueError:
        return
    if "serve" not in words:
        return
    for word in words[words.index("serve") + 1 :]:
        if word.startswith("--umask="):
            try:
                os.umask(int(word.split("=", 1)[1], 8))
            except ValueError:
                logger.warning("Ignoring the client's invalid %s", word)
        elif word in _CLIENT_LOG_LEVELS:
            logging.getLogger().setLevel(word[2:].upper())


class _Signalled(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _end_on_signals() -> None:
    """SIGTERM and SIGHUP (sshd hanging up) end the session as end of file
    does: in-flight requests finish, the client's locks are released."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Signalled(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)
