"""``hoard break-lock REPOSITORY``: remove every lock record of a repository."""

from __future__ import annotations

import argparse
import logging

from hoard.commands.base import Context
from hoard.commands.with_lock import lock_storage
from hoard.repository.lock import break_locks

logger = logging.getLogger(__name__)

NAME = "break-lock"
HELP = "break repository and cache locks"
DESCRIPTION = """Break the repository lock (e.g. in case it was left by a dead hoard).

This removes every lock record of the repository, shared and exclusive,
live or stale. Use it carefully and only while no hoard process (on any
machine) is accessing the repository: a running operation whose lock is
broken carries on unprotected and reports the lost lock when it ends.

Locks of dead processes on the same host, and locks not refreshed for 30
minutes, are removed automatically; break-lock is for the rest (a copy of a
locked repository, a host that went away). No passphrase is needed."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "location",
        metavar="REPOSITORY",
        nargs="?",
        default="",
        help="repository for which to break the locks",
    )


def run(ctx: Context, args: argparse.Namespace) -> None:
    storage = lock_storage(ctx, args.location)
    try:
        removed = break_locks(storage)
    finally:
        storage.close()
    logger.info("Removed %d lock record(s) from %s", removed, storage.location)
