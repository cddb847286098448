"""``hoard version``: the local version (and, for ssh repositories later, the remote's)."""

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
    parser.add_argument("location", nargs="?", default="", help="repository (ignored for now)")


def run(ctx: Context, args: argparse.Namespace) -> None:
    ctx.out.print(version_string())
