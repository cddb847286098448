"""The ``hoard`` console script: as little as possible before Ctrl-C is handled.

Importing the CLI takes a few tenths of a second; a Ctrl-C in that window
would otherwise end in a ``KeyboardInterrupt`` traceback. Here it ends
quietly with Borg's code for "interrupted by SIGINT" (130).

The process's memory settings (one malloc arena, a patient garbage
collector: hoard.memory) are made here, before any thread exists.
"""

from __future__ import annotations

import signal
import sys

from hoard.memory import configure_process


def main() -> None:
    configure_process()  # before any thread starts
    try:
        from hoard.cli.main import main as cli_main  # noqa: PLC0415 - see module docstring
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)
    cli_main()
