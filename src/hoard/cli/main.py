"""Entry point of the ``hoard`` executable: parse, run, map the outcome to an exit code.

This is the single place where exceptions become exit codes, with Borg
1.4's tables: 0 ok, 1 warning, 2 error (``BORG_EXIT_CODES=modern``: the
specific codes of ``hoard.errors``, 100-107 for warnings), 128+N after
signal N (Ctrl-C outside ``create`` 130, SIGTERM 143, SIGHUP 129).

A ``HoardError`` is one line on stderr (plus the traceback with
``--debug``); an ``OSError`` nobody handled (a cache directory that cannot
be written...) is one line too. Only a bug (any other exception) prints a
traceback unasked. ``--show-rc`` ends with Borg's "terminating with ...
status, rc N" line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import FrameType

from hoard.cli.environment import Dirs, getenv
from hoard.cli.output import ConsoleOutput, setup_logging
from hoard.cli.parser import build_parser
from hoard.cli.passphrase import PassphraseSource
from hoard.commands.base import Context
from hoard.commands.version import version_string
from hoard.errors import HoardError, HoardWarning, UsageError
from hoard.storage.sshcommand import RemoteOptions

logger = logging.getLogger("hoard")

EXIT_SUCCESS = 0
EXIT_WARNING = 1
EXIT_ERROR = 2
EXIT_SIGNAL_BASE = 128


class SignalExit(BaseException):
    """Raised by the SIGTERM/SIGHUP handlers, so the command unwinds (locks released)."""

    message = "Received signal"
    signum = 0


class SigTerm(SignalExit):
    message = "Received SIGTERM"
    signum = signal.SIGTERM


class SigHup(SignalExit):
    message = "Received SIGHUP."
    signum = signal.SIGHUP


def _modern(env: Mapping[str, str]) -> bool:
    return (getenv("EXIT_CODES", env) or "legacy").lower() == "modern"


def exit_code_for(exc: BaseException, *, modern: bool) -> int:
    """The exit code Borg 1.4 gives for ``exc`` (legacy or modern table)."""
    if isinstance(exc, HoardError | HoardWarning):
        return exc.modern_exit_code if modern else exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGNAL_BASE + signal.SIGINT
    if isinstance(exc, SignalExit):
        return EXIT_SIGNAL_BASE + exc.signum
    return EXIT_ERROR


def warnings_exit_code(warnings: list[HoardWarning], *, modern: bool) -> int:
    """Borg's ``get_ec``: 1, or with modern codes the one code all warnings share (else 1)."""
    if not warnings:
        return EXIT_SUCCESS
    if not modern:
        return EXIT_WARNING
    codes = {w.modern_exit_code for w in warnings}
    return codes.pop() if len(codes) == 1 else EXIT_WARNING


def _context(
    args: argparse.Namespace, env: Mapping[str, str], out: ConsoleOutput, argv: list[str]
) -> Context:
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
        remote=_remote_options(args, env),
        cmdline=argv,
    )


def _remote_options(args: argparse.Namespace, env: Mapping[str, str]) -> RemoteOptions:
    """How to reach ``hoard serve``: ``--rsh`` over BORG_RSH over ``ssh``,
    ``--remote-path`` over BORG_REMOTE_PATH over ``hoard``, as in Borg."""
    return RemoteOptions(
        rsh=getattr(args, "rsh", None) or getenv("RSH", env) or "ssh",
        remote_path=getattr(args, "remote_path", None) or getenv("REMOTE_PATH", env) or "hoard",
        upload_ratelimit=int(getattr(args, "upload_ratelimit", 0) or 0),
        upload_buffer=int(getattr(args, "upload_buffer", 0) or 0),
        umask=int(getattr(args, "umask", 0o077)),
        log_level=str(getattr(args, "log_level", "warning")),
    )


def run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run one hoard command line; returns the exit code.

    argparse errors (unknown option, bad value) print argparse's usage and
    message and raise SystemExit(2), as Borg's do.
    """
    env = os.environ if env is None else env
    modern = _modern(env)
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if getattr(args, "stats", False) and getattr(args, "quick_stats", False):
        parser.error("--stats and --quick-stats are mutually exclusive.")  # Borg's get_args
    log_json = bool(getattr(args, "log_json", False))
    debug = args.log_level == "debug"
    setup_logging(args.log_level, log_json=log_json, topics=getattr(args, "debug_topic", []))
    _ignore_stats_on_dry_run(args)
    out = ConsoleOutput(log_json=log_json)
    if getattr(args, "show_version", False):
        _output_logger("show-version").info("hoard version %s", version_string())
    os.umask(args.umask)
    ctx = _context(args, env, out, ["hoard", *argv])
    try:
        profile = getattr(args, "debug_profile", None)
        if profile:
            rc = _run_profiled(profile, args, ctx, modern=modern, debug=debug)
        else:
            rc = _run_command(args, ctx, modern=modern, debug=debug)
    except UsageError as exc:
        parser.error(exc.get_message())  # exits 2, as argparse's own errors
    if getattr(args, "show_rc", False):
        log_rc(rc)
    return rc


def _run_profiled(
    path: str, args: argparse.Namespace, ctx: Context, *, modern: bool, debug: bool
) -> int:
    """``--debug-profile``: the command under cProfile (see hoard.cli.profile)."""
    from hoard.cli.profile import run_profiled  # noqa: PLC0415 - cProfile only when asked

    try:
        return run_profiled(path, lambda: _run_command(args, ctx, modern=modern, debug=debug))
    except HoardError as exc:
        _log_error(exc.get_message(), exc.msgid, exc, show_traceback=debug)
        return exit_code_for(exc, modern=modern)


def _ignore_stats_on_dry_run(args: argparse.Namespace) -> None:
    """Borg's ``run``, for every command: the figures are not computed on a
    dry run, so --stats and --quick-stats are dropped with a warning (scripts
    that always pass --stats keep working)."""
    if not getattr(args, "dry_run", False):
        return
    for option in ("stats", "quick_stats"):
        if getattr(args, option, False):
            flag = "--" + option.replace("_", "-")
            logger.warning("Ignoring %s. It is not supported when using --dry-run.", flag)
            setattr(args, option, False)


def _run_command(args: argparse.Namespace, ctx: Context, *, modern: bool, debug: bool) -> int:
    try:
        args.func(ctx, args)
    except UsageError:
        raise  # argparse's usage and message: run() has the parser
    except HoardError as exc:
        _log_error(exc.get_message(), exc.msgid, exc, show_traceback=debug or exc.traceback)
        return exit_code_for(exc, modern=modern)
    except KeyboardInterrupt as exc:
        _log_error("Keyboard interrupt", "KeyboardInterrupt", exc, show_traceback=debug)
        return exit_code_for(exc, modern=modern)
    except SignalExit as exc:
        msgid = f"Signal.{signal.Signals(exc.signum).name}"
        _log_error(exc.message, msgid, exc, show_traceback=debug)
        return exit_code_for(exc, modern=modern)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_ERROR  # the reader went away (| head): nothing left to tell
    except OSError as exc:  # e.g. an unwritable cache directory: the user can fix it
        _log_error(_oserror_message(exc), "Error", exc, show_traceback=debug)
        return EXIT_ERROR
    except Exception as exc:  # a bug: the one place a traceback is printed unasked
        _log_error("Local Exception", "Exception", exc, show_traceback=True)
        return EXIT_ERROR
    return warnings_exit_code(ctx.warnings, modern=modern)


def _silence_stdout() -> None:
    """After a broken pipe, send what is still buffered nowhere (no second error at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _oserror_message(exc: OSError) -> str:
    where = f": {os.fsdecode(exc.filename)}" if exc.filename is not None else ""
    return f"Error: {exc.strerror or exc}{where}"


def _log_error(message: str, msgid: str, exc: BaseException, *, show_traceback: bool) -> None:
    """One error line (``msgid`` in --log-json records), then the traceback if asked."""
    logger.error(message, extra={"msgid": msgid})
    if show_traceback:
        logger.error("".join(traceback.format_exception(exc)).rstrip(), extra={"msgid": msgid})


def _output_logger(topic: str) -> logging.Logger:
    """Borg's ``borg.output.<topic>`` loggers: shown when asked for, whatever the log level."""
    topic_logger = logging.getLogger(f"hoard.output.{topic}")
    topic_logger.setLevel(logging.INFO)
    return topic_logger


def log_rc(rc: int) -> None:
    """``--show-rc``: Borg's closing line, at the level its class deserves."""
    if rc == EXIT_SUCCESS:
        kind, level = "success", logging.INFO
    elif rc == EXIT_WARNING or 100 <= rc <= 127:
        kind, level = "warning", logging.WARNING
    elif 3 <= rc <= 99 or rc == EXIT_ERROR:
        kind, level = "error", logging.ERROR
    elif EXIT_SIGNAL_BASE < rc < 256:
        kind, level = "signal", logging.ERROR
    else:
        kind, level = "abnormal", logging.ERROR
    _output_logger("show-rc").log(level, "terminating with %s status, rc %d", kind, rc)


def _raise(exc_type: type[SignalExit]) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        # A second signal of the kind must not interrupt the unwinding of the first.
        signal.signal(signum, signal.SIG_IGN)
        raise exc_type()

    return handler


@contextmanager
def _signal_handlers() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like an error (Borg), so locks are released."""
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise(SigTerm)),
        signal.SIGHUP: signal.signal(signal.SIGHUP, _raise(SigHup)),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main() -> None:
    """Console-script entry point."""
    try:
        with _signal_handlers():
            rc = run(sys.argv[1:])
    except KeyboardInterrupt:  # before the command ran (while parsing)
        rc = EXIT_SIGNAL_BASE + signal.SIGINT
    except SignalExit as exc:
        rc = EXIT_SIGNAL_BASE + exc.signum
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    # The outcome is decided: a late Ctrl-C must not turn it into a signal death.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(rc)
