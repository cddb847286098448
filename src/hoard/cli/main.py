"""Entry point of the ``hoard`` executable: parse, run, map the outcome to an exit code.

This is the single place where exceptions become exit codes (0 ok, 1
warning, 2 error; Borg 1.4's specific codes with ``BORG_EXIT_CODES=modern``).
A ``HoardError`` is one line on stderr; only a bug (any other exception)
prints a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from datetime import datetime

from hoard.cli.environment import Dirs, getenv
from hoard.cli.output import ConsoleOutput, setup_logging
from hoard.cli.parser import build_parser
from hoard.cli.passphrase import PassphraseSource
from hoard.commands.base import Context
from hoard.commands.version import version_string
from hoard.errors import HoardError, HoardWarning

logger = logging.getLogger("hoard")

EXIT_SUCCESS = 0
EXIT_WARNING = 1
EXIT_ERROR = 2
EXIT_SIGNAL_BASE = 128


def _modern(env: Mapping[str, str]) -> bool:
    return (getenv("EXIT_CODES", env) or "legacy").lower() == "modern"


def exit_code_for(exc: BaseException, *, modern: bool) -> int:
    """The exit code Borg 1.4 gives for ``exc`` (legacy or modern table)."""
    if isinstance(exc, HoardError | HoardWarning):
        return exc.modern_exit_code if modern else exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGNAL_BASE + 2 if modern else EXIT_ERROR
    return EXIT_ERROR


def _warnings_exit_code(warnings: list[HoardWarning], *, modern: bool) -> int:
    if not warnings:
        return EXIT_SUCCESS
    if not modern:
        return EXIT_WARNING
    codes = {w.modern_exit_code for w in warnings}
    return codes.pop() if len(codes) == 1 else EXIT_WARNING


def _context(args: object, env: Mapping[str, str], out: ConsoleOutput, argv: list[str]) -> Context:
    dirs = Dirs.from_env(env)
    return Context(
        env=env,
        getenv=lambda name: getenv(name, env),
        cache_dir=dirs.cache,
        config_dir=dirs.config,
        keys_dir=dirs.keys,
        security_dir=dirs.security,
        passphrases=PassphraseSource(env),
        out=out,
        now=lambda: datetime.now().astimezone(),
        lock_wait=float(getattr(args, "lock_wait", 1.0)),
        bypass_lock=bool(getattr(args, "bypass_lock", False)),
        progress=bool(getattr(args, "progress", False)),
        log_json=bool(getattr(args, "log_json", False)),
        iec=bool(getattr(args, "iec", False)),
        umask=int(getattr(args, "umask", 0o077)),
        weak_kdf=getenv("TESTONLY_WEAKEN_KDF", env) == "1",
        cmdline=argv,
    )


def run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run one hoard command line; returns the exit code."""
    env = os.environ if env is None else env
    modern = _modern(env)
    parser = build_parser()
    args = parser.parse_args(list(argv))
    log_json = bool(getattr(args, "log_json", False))
    setup_logging(args.log_level, log_json=log_json)
    out = ConsoleOutput(log_json=log_json)
    if getattr(args, "show_version", False):
        logger.info("hoard version %s", version_string())
    os.umask(args.umask)
    ctx = _context(args, env, out, ["hoard", *argv])
    try:
        args.func(ctx, args)
        rc = _warnings_exit_code(ctx.warnings, modern=modern)
    except HoardError as exc:
        rc = exit_code_for(exc, modern=modern)
        _log_error(exc, debug=args.log_level == "debug")
    except KeyboardInterrupt as exc:
        rc = exit_code_for(exc, modern=modern)
        logger.error("Keyboard interrupt", extra={"msgid": "KeyboardInterrupt"})
    except BrokenPipeError:
        rc = EXIT_ERROR
    except Exception as exc:  # a bug: the one place a traceback is printed
        rc = EXIT_ERROR
        logger.error(
            "Local Exception\n%s",
            "".join(traceback.format_exception(exc)),
            extra={"msgid": "Exception"},
        )
    if getattr(args, "show_rc", False):
        _log_rc(rc)
    return rc


def _log_error(exc: HoardError, *, debug: bool) -> None:
    logger.error(exc.get_message(), extra={"msgid": exc.msgid})
    if debug or exc.traceback:
        logger.error("".join(traceback.format_exception(exc)), extra={"msgid": exc.msgid})


def _log_rc(rc: int) -> None:
    text = {EXIT_SUCCESS: "success", EXIT_WARNING: "warning"}.get(rc, "error")
    level = logging.INFO if rc == EXIT_SUCCESS else logging.WARNING
    if rc not in (EXIT_SUCCESS, EXIT_WARNING):
        level = logging.ERROR
    logger.log(level, "terminating with %s status, rc %d", text, rc)


def main() -> None:
    """Console-script entry point."""
    try:
        rc = run(sys.argv[1:])
    except KeyboardInterrupt:
        rc = EXIT_ERROR
    sys.stdout.flush()
    sys.exit(rc)
