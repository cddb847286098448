"""The ``hoard`` console script: as little as possible before Ctrl-C is handled.

Importing the CLI takes a few tenths of a second; a Ctrl-C in that window
would otherwise end in a ``KeyboardInterrupt`` traceback. Here it ends
quietly with Borg's code for "interrupted by SIGINT" (130).

The malloc arena limit is set here, before any thread exists (hoard.malloc).
"""

from __future__ import annotations

import signal
import sys

from hoard.malloc import limit_arenas


def main() -> None:
    limit_arenas()  # before any thread starts
    try:
        from hoard.cli.main import main as cli_main  # noqa: PLC0415 - see module docstring
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)
    cli_main()
