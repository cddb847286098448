"""What every command gets from the CLI, and the contract of a command module.

A command module (``hoard.commands.<name>``) defines:

- ``NAME`` (the subcommand), ``HELP`` (one line) and ``DESCRIPTION`` (the
  help text, optional),
- ``configure(parser: argparse.ArgumentParser) -> None`` declaring its
  arguments (common options are added by the CLI),
- ``run(ctx: Context, args: argparse.Namespace) -> None``, which raises a
  ``HoardError`` for errors and reports warnings with ``ctx.warn``.

Commands never decide exit codes and never touch ``sys.stdout`` directly:
they write through ``ctx.out`` so the CLI can send text, JSON and progress
to the right stream in the right form.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from hoard.errors import HoardWarning
from hoard.storage.sshcommand import RemoteOptions

logger = logging.getLogger("hoard")


class Output(Protocol):
    """Where a command's results go; implemented by the CLI."""

    def print(self, text: str = "", *, end: str = "\n") -> None:
        """A line of normal output on stdout (``list``, ``info``...)."""

    def print_bytes(self, data: bytes) -> None:
        """Raw bytes on stdout (``extract --stdout``, ``export-tar -``)."""

    def message(self, text: str, *, topic: str | None = None) -> None:
        """Human-readable output Borg sends to stderr (``--stats``), whatever the
        log level; ``topic`` names Borg's logger for it (``stats``: with
        --log-json, ``hoard.output.stats`` records, one per line)."""

    def json(self, obj: Any) -> None:
        """One JSON document on stdout (``--json``)."""

    def json_line(self, obj: Any) -> None:
        """One JSON object per line on stdout (``--json-lines``)."""

    def progress(self, msgid: str, message: str, *, finished: bool = False, **fields: Any) -> None:
        """A progress update: a live line on a terminal, a JSON record with ``--log-json``."""

    def list_item(self, status: str, path: str) -> None:
        """One ``--list`` line (``A path``) on stderr, as Borg prints it."""

    def ask(self, prompt: str, *, msgid: str) -> str | None:
        """Show ``prompt`` on stderr (no newline added) and read one answer line
        from stdin, without its line end; None at end of input (Borg's ``yes()``)."""


class Passphrases(Protocol):
    """Passphrase source, implemented by ``hoard.cli.passphrase``."""

    def get(self, prompt: str = ..., *, verify: bool = ...) -> str: ...

    def new(self, prompt: str = ..., *, allow_empty: bool = ...) -> str: ...

    def preset(self) -> str | None: ...


@dataclass(frozen=True)
class Subcommand:
    """One subcommand of a command with subcommands (``key export``): the
    module of such a command has ``SUBCOMMANDS`` instead of ``configure``
    and ``run``, and the CLI builds a parser for each."""

    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Context, argparse.Namespace], None]


@dataclass
class Context:
    """Everything from the environment and the common options a command may use.

    Built once by the CLI; commands read it and append warnings.
    """

    env: Mapping[str, str]
    getenv: Callable[[str], str | None]
    """``getenv("REPO")``: ``HOARD_REPO`` if set, else ``BORG_REPO``."""
    cache_dir: Path
    config_dir: Path
    keys_dir: Path
    security_dir: Path
    passphrases: Passphrases
    out: Output
    now: Callable[[], datetime]
    lock_wait: float = 1.0
    bypass_lock: bool = False
    progress: bool = False
    log_json: bool = False
    iec: bool = False
    umask: int = 0o077
    weak_kdf: bool = False
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    """How ssh repositories are reached (``--rsh``, ``--remote-path``...)."""
    cmdline: list[str] = field(default_factory=list)
    warnings: list[HoardWarning] = field(default_factory=list)

    def warn(self, warning: HoardWarning) -> None:
        """Log a warning and remember it: the run ends with exit code 1."""
        self.warnings.append(warning)
        logger.warning(warning.get_message(), extra={"msgid": warning.msgid})

    @property
    def pid(self) -> int:
        return os.getpid()
