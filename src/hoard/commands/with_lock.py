"""``hoard with-lock REPOSITORY COMMAND [ARGS...]``: run a command holding the exclusive lock.

Also home of the two small helpers the locking commands share: opening a
repository's storage without its key (``lock_storage``) and the lock a
command takes under the common options (``command_lock``).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
from contextlib import AbstractContextManager

from hoard.commands.base import Context
from hoard.commands.repo import repository_location, repository_storage
from hoard.errors import CommandError, ExternalCommandExit, InputError
from hoard.repository.config import RepoConfig
from hoard.repository.lock import Lock
from hoard.storage.base import Storage

NAME = "with-lock"
HELP = "run user command with lock held"
DESCRIPTION = """Run a user-specified command while the repository is locked, e.g.:

    hoard with-lock /mnt/hoardrepo rsync -av /mnt/hoardrepo /somewhere/else/

hoard first takes the exclusive lock (waiting up to --lock-wait seconds for
running operations), runs the command with hoard's environment and terminal,
releases the lock when it ends and exits with the command's exit status.
Read-only commands (list, info, extract) take no lock and keep working.

A copy made while the lock is held contains the lock record; a hoard on
another host treats it as held for 30 minutes after it was last refreshed.
Run 'hoard break-lock' on the copy to use it at once."""


def lock_storage(ctx: Context, text: str | None) -> Storage:
    """The storage of the repository at ``text`` (or BORG_REPO), without its key.

    Checks that a repository this hoard may write is there (config readable,
    version and mandatory "write" features known): locking needs nothing
    more, so no passphrase is asked.
    """
    location = repository_location(ctx, text)
    if location.archive is not None:
        raise InputError(f"{NAME} and break-lock take a repository, not an archive: {text}")
    storage = repository_storage(ctx, location)
    try:
        RepoConfig.load(storage, "write")
    except BaseException:
        storage.close()
        raise
    return storage


def command_lock(
    ctx: Context, storage: Storage, *, exclusive: bool
) -> AbstractContextManager[object]:
    """The lock a command holds on ``storage``: none with ``--bypass-lock``."""
    if ctx.bypass_lock:
        return contextlib.nullcontext()
    return Lock(
        storage, exclusive=exclusive, lock_wait=ctx.lock_wait, command=" ".join(ctx.cmdline)
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="REPOSITORY", help="repository to lock")
    parser.add_argument("command", metavar="COMMAND", help="command to run")
    parser.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER, help="command arguments")


def run(ctx: Context, args: argparse.Namespace) -> None:
    storage = lock_storage(ctx, args.location)
    try:
        with command_lock(ctx, storage, exclusive=True):
            status = _run_command(ctx, [args.command, *args.args])
    finally:
        storage.close()
    if status != 0:
        raise ExternalCommandExit(args.command, status)


def _run_command(ctx: Context, argv: list[str]) -> int:
    """Run ``argv`` with inherited stdio; its exit status (1-255 or 0).

    As Borg, a command that cannot be started, or one killed by a signal,
    is a CommandError (exit code 2, modern 4).
    """
    try:
        status = subprocess.call(argv, env=dict(ctx.env))
    except (OSError, ValueError) as exc:
        raise CommandError(f"Error while trying to run '{argv[0]}': {exc}") from exc
    if status < 0:
        raise CommandError(
            f"Error while trying to run '{argv[0]}': killed by {_signal_name(-status)}"
        )
    return status


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
