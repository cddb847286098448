"""The argparse tree: common options (Borg 1.4's) and one subparser per command module.

Option values are converted by ``type=`` functions that may raise hoard's
own errors (``parse_compression``, ``ChunkerParams.parse``...); the parser
turns those into argparse errors, so a bad value always gets argparse's
usage line, the message and exit code 2, as in Borg.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from hoard.cli import help as cli_help
from hoard.commands.base import Subcommand
from hoard.commands.version import version_string
from hoard.errors import HoardError

COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "Initialize an empty repository"),
    "create": ("create", "Create backup"),
    "extract": ("extract", "Extract archive contents"),
    "list": ("list", "List archive or repository contents"),
    "info": ("info", "Show archive details such as disk space used"),
    "delete": ("delete", "Delete an existing repository or archives"),
    "prune": ("prune", "prune archives"),
    "rename": ("rename", "Rename an existing archive"),
    "diff": ("diff", "find differences in archive contents"),
    "export-tar": ("export_tar", "create tarball from archive"),
    "import-tar": ("import_tar", "Create a backup archive from a tarball"),
    "undelete": ("undelete", "Restore archives deleted in an append-only repository"),
    "config": ("config", "get and set configuration values"),
    "check": ("check", "Check repository consistency"),
    "compact": ("compact", "compact segment files / free space in repo"),
    "break-lock": ("break_lock", "break repository and cache locks"),
    "with-lock": ("with_lock", "run user command with lock held"),
    "serve": ("serve", "start repository server process"),
    "key": ("key", "Manage a keyfile or repokey of a repository"),
    "benchmark": ("benchmark", "benchmark command"),
    "change-passphrase": ("change_passphrase", "change repository passphrase"),
    "version": ("version", "Display the hoard version"),
}
"""Subcommand: its module below ``hoard.commands`` and its one-line help
(the module's ``HELP``; a test keeps the two equal). Known here so that the
parser imports only the module of the command that runs: importing all of
them (and so the archive, repository and numpy) made ``hoard --version``
and ``hoard list`` start slower than Borg's."""


def _umask(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid umask {text!r} (octal, e.g. 0077)") from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r} (a whole number, 0 or more)")
    return value


def _common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Borg's common options, accepted before and after the subcommand.

    On the subparsers the defaults are SUPPRESS, so an option given before
    the subcommand is not reset by the subparser's default.
    """

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("Common options")
    levels = group.add_mutually_exclusive_group()
    for name, level in (
        ("--critical", "critical"),
        ("--error", "error"),
        ("--warning", "warning"),
        ("--info", "info"),
        ("--debug", "debug"),
    ):
        flags = [name] + (["-v", "--verbose"] if level == "info" else [])
        levels.add_argument(
            *flags,
            dest="log_level",
            action="store_const",
            const=level,
            default=default("warning"),
            help=f"work on log level {level.upper()}",
        )
    group.add_argument(
        "--debug-topic",
        action="append",
        default=default([]),
        metavar="TOPIC",
        help="enable TOPIC debugging (can be specified multiple times): a logger such as "
        "hoard.storage.remote, or hoard.debug.<TOPIC> if TOPIC is not fully qualified",
    )
    flag = {"action": "store_true", "default": default(False)}
    group.add_argument("-p", "--progress", **flag, help="show progress information")
    group.add_argument("--iec", **flag, help="format sizes in IEC units (1KiB = 1024B)")
    group.add_argument("--log-json", **flag, help="one JSON object per log line, not text")
    group.add_argument(
        "--lock-wait",
        type=float,
        default=default(1.0),
        metavar="SECONDS",
        help="wait at most SECONDS for the repository lock (default: 1)",
    )
    group.add_argument("--bypass-lock", **flag, help="take no lock (dangerous)")
    group.add_argument("--show-version", **flag, help="show/log the hoard version")
    group.add_argument("--show-rc", **flag, help="show/log the return code (rc)")
    group.add_argument(
        "--umask",
        type=_umask,
        default=default(0o077),
        metavar="M",
        help="set umask to M (default: 0077; also passed to hoard serve)",
    )
    group.add_argument(
        "--remote-path",
        default=default(None),
        metavar="PATH",
        help="use PATH as hoard executable on the remote (default: hoard; BORG_REMOTE_PATH)",
    )
    group.add_argument(
        "--upload-ratelimit",
        type=_non_negative,
        default=default(0),
        metavar="RATE",
        help="set network upload rate limit in kiByte/s (default: 0=unlimited)",
    )
    group.add_argument(
        "--upload-buffer",
        type=_non_negative,
        default=default(0),
        metavar="UPLOAD_BUFFER",
        help="set network upload buffer size in MiB. (default: 0=no buffer)",
    )
    group.add_argument(
        "--consider-part-files",
        action="store_true",
        default=default(False),
        help="treat part files like normal files: hoard always does (its part files are "
        "only in checkpoint archives, which --consider-checkpoints shows)",
    )
    group.add_argument(
        "--debug-profile",
        default=default(None),
        metavar="FILE",
        help="Write execution profile in Borg format (msgpack) into FILE; a FILE ending "
        "in .pyprof gets Python's marshal format (pstats)",
    )
    group.add_argument(
        "--rsh",
        default=default(None),
        metavar="RSH",
        help="Use this command to connect to the 'hoard serve' process (default: 'ssh'; BORG_RSH)",
    )


class HoardArgumentParser(argparse.ArgumentParser):
    """argparse, with hoard's errors from ``type=`` functions reported as argparse errors."""

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        try:
            return super()._get_value(action, arg_string)
        except HoardError as exc:
            raise argparse.ArgumentError(action, exc.get_message()) from None


def command_module(command: str) -> ModuleType:
    return importlib.import_module(f"hoard.commands.{COMMANDS[command][0]}")


class CommandParser(HoardArgumentParser):
    """A subcommand's parser, filled in from its module only when it is used
    (the command given, or its ``--help``)."""

    def __init__(self, *args: Any, command: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._command = command

    def configure(self) -> None:
        if self._command:
            module = command_module(self._command)
            self._command = ""
            if description := getattr(module, "DESCRIPTION", None):
                self.description = description
            _common_options(self, top=False)
            subcommands = getattr(module, "SUBCOMMANDS", None)
            if subcommands:
                self._add_subcommands(subcommands)
            else:
                module.configure(self)
                self.set_defaults(func=module.run)

    def _add_subcommands(self, subcommands: dict[str, Subcommand]) -> None:
        """``key export`` and its siblings; the command alone prints its help
        and exits 0, as Borg's ``borg key``."""
        choices = self.add_subparsers(
            title="commands",
            dest="subcommand",
            metavar="<command>",
            parser_class=HoardArgumentParser,
        )
        for name, spec in subcommands.items():
            parser = choices.add_parser(
                name,
                help=spec.help,
                description=spec.description,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            _common_options(parser, top=False)
            spec.configure(parser)
            parser.set_defaults(func=spec.run)
        self.set_defaults(func=lambda ctx, args: ctx.out.print(self.format_help(), end=""))

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.configure()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.configure()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = HoardArgumentParser(
        prog="hoard",
        description="hoard - deduplicating, encrypting backup with a Borg 1.x command line",
    )
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {version_string()}")
    _common_options(parser, top=True)
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="<command>", parser_class=CommandParser
    )
    for name, (_, help_line) in COMMANDS.items():
        subparsers.add_parser(
            name,
            command=name,
            help=help_line,
            description=help_line,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    _add_help_command(parser, subparsers)
    return parser


def _add_help_command(
    parser: argparse.ArgumentParser, subparsers: argparse._SubParsersAction[Any]
) -> None:
    """``hoard help [TOPIC]``, and ``hoard`` with no command: the whole help, exit 0 (Borg)."""
    name, line = cli_help.NAME, cli_help.HELP
    help_parser = subparsers.add_parser(name, help=line, description=line)
    _common_options(help_parser, top=False)
    cli_help.configure(help_parser)

    def show(ctx: object, args: argparse.Namespace) -> None:
        cli_help.show(parser, dict(subparsers.choices), args)

    help_parser.set_defaults(func=show)
    parser.set_defaults(func=show)
