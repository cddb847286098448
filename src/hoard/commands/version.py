"""``hoard version [REPO]``: the client's version and the repository server's,
as Borg prints them (``1.4.5 / 1.4.5``). A local repository has no server:
the client's version is given twice, without opening it, as Borg does; an
ssh repository is opened and its ``hoard serve`` tells its version."""

from __future__ import annotations

import argparse

from hoard import __version__
from hoard.commands.base import Context

NAME = "version"
HELP = "Display the hoard version"
DESCRIPTION = """Display hoard's version.

The answer has the form BORG_VERSION+hoard.HOARD_VERSION (e.g.
1.4.1+hoard.0.1.0): tools written for Borg read the part before '+' and
use Borg 1.4 syntax; the part after it is hoard's own release."""

BORG_COMPAT_VERSION = "1.4.1"


def version_string() -> str:
    return f"{BORG_COMPAT_VERSION}+hoard.{__version__}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "location", nargs="?", default="", metavar="REPOSITORY", help="repository (or BORG_REPO)"
    )


def run(ctx: Context, args: argparse.Namespace) -> None:
    # Here, not at the top: the parser imports this module for --version,
    # which must not pay for the repository layer.
    from hoard.commands.repo import repository_location, repository_storage  # noqa: PLC0415
    from hoard.storage.remote import RemoteStorage  # noqa: PLC0415

    location = repository_location(ctx, args.location)
    server = version_string()
    if location.proto == "ssh":
        storage = repository_storage(ctx, location)
        try:
            if isinstance(storage, RemoteStorage):
                server = storage.server_version
        finally:
            storage.close()
    ctx.out.print(f"{version_string()} / {server}")
