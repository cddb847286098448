"""Terminal and JSON output: the one place that writes to stdout and stderr.

Results go to stdout; logging, ``--list`` lines and progress go to stderr,
as Borg does, so ``hoard list ... | sort`` and ``--json`` stay clean. With
``--log-json`` every stderr line is one JSON object in Borg's frontend format
(``log_message``, ``file_status``, ``archive_progress``, ``progress_message``),
so Vorta and borgmatic parse it as they parse Borg's.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from hoard.archive.formatter import remove_surrogates

LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "surrogateescape")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, *, indent: int | None = 4) -> str:
    """JSON as Borg prints it (indented, sorted keys, non-ASCII kept)."""
    return json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False, default=_json_default)


class JsonLogFormatter(logging.Formatter):
    """Borg's ``log_message`` records for ``--log-json``."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "type": "log_message",
            "time": record.created,
            "message": record.getMessage(),
            "levelname": record.levelname,
            "name": record.name,
        }
        msgid = getattr(record, "msgid", None)
        if msgid:
            data["msgid"] = msgid
        return json.dumps(data, default=_json_default)


def setup_logging(
    level: str,
    *,
    log_json: bool,
    stream: IO[str] | None = None,
    topics: Sequence[str] = (),
) -> None:
    """Route the ``hoard`` logger to stderr at ``level``, plain or JSON.

    ``topics`` (``--debug-topic``) get DEBUG whatever ``level`` is: a logger
    name such as ``hoard.storage.remote`` (one module's debug messages), or,
    as in Borg, a bare name meaning ``hoard.debug.<TOPIC>``.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter() if log_json else logging.Formatter("%(message)s"))
    root = logging.getLogger("hoard")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    root.propagate = False
    for topic in topics:
        logging.getLogger(topic if "." in topic else f"hoard.debug.{topic}").setLevel(logging.DEBUG)


class ConsoleOutput:
    """Implements ``hoard.commands.base.Output`` on real streams."""

    def __init__(
        self,
        *,
        log_json: bool = False,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
    ) -> None:
        self.log_json = log_json
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self._live = self.stderr.isatty() and not log_json
        self._last_progress = 0.0
        self._progress_width = 0

    def print(self, text: str = "", *, end: str = "\n") -> None:
        self._clear_progress()
        self.stdout.write(text + end)
        self.stdout.flush()

    def print_bytes(self, data: bytes) -> None:
        self.stdout.flush()
        buffer = getattr(self.stdout, "buffer", None)
        if buffer is None:
            raise TypeError("stdout takes no bytes")
        buffer.write(data)

    def message(self, text: str, *, topic: str | None = None) -> None:
        if self.log_json:  # one record per line, as Borg's log_multi
            name = f"hoard.output.{topic}" if topic else "hoard.output"
            for line in text.split("\n"):
                record = {"type": "log_message", "time": time.time(), "levelname": "INFO"}
                self._stderr_json({**record, "name": name, "message": line})
            return
        self._clear_progress()
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def json(self, obj: Any) -> None:
        self.print(dumps(obj))

    def json_line(self, obj: Any) -> None:
        self.print(dumps(obj, indent=None))

    def list_item(self, status: str, path: str) -> None:
        """Borg's ``--list`` line; undecodable bytes of a name show as ``?`` (Borg's
        ``remove_surrogates``), so any terminal and any JSON parser takes it."""
        shown = remove_surrogates(path)
        if self.log_json:
            self._stderr_json({"type": "file_status", "status": status, "path": shown})
        else:
            self._clear_progress()
            self.stderr.write(f"{status} {shown}\n")
            self.stderr.flush()

    def ask(self, prompt: str, *, msgid: str) -> str | None:
        if self.log_json:
            self._stderr_json({"type": "question_prompt", "msgid": msgid, "message": prompt})
        else:
            self._clear_progress()
            self.stderr.write(prompt)
            self.stderr.flush()
        stdin = getattr(sys.stdin, "buffer", None)
        if stdin is None:
            return None
        try:
            line: bytes = stdin.readline()
        except (OSError, ValueError):  # stdin closed
            return None
        if not line:
            return None
        return line.decode("utf-8", "replace").rstrip("\r\n")

    def progress(self, msgid: str, message: str, *, finished: bool = False, **fields: Any) -> None:
        now = time.monotonic()
        if not finished and now - self._last_progress < 0.2:
            return
        self._last_progress = now
        if self.log_json:
            kind = fields.pop("type", "progress_message")
            record = {"type": kind, "msgid": msgid, "finished": finished, "time": time.time()}
            if kind == "progress_message" or (kind == "progress_percent" and not finished):
                record["message"] = message  # Borg's progress_percent carries it too
            record.update(fields)
            self._stderr_json(record)
        elif self._live:
            self._show_live(message if not finished else "")
        else:
            self._show_plain(fields.get("type"), "" if finished else message)

    def _show_live(self, message: str) -> None:
        width = 79
        line = message[:width]
        self.stderr.write("\r" + line.ljust(self._progress_width) + ("\r" if not line else ""))
        self._progress_width = len(line)
        self.stderr.flush()

    def _show_plain(self, kind: object, message: str) -> None:
        """Borg's progress on a stderr that is no terminal (a log file, a
        wrapper reading it): the archive progress as whole lines, the other
        progress messages ended by a carriage return; ended by an empty one."""
        self.stderr.write(message + ("\n" if kind == "archive_progress" else "\r"))
        self.stderr.flush()

    def _clear_progress(self) -> None:
        if self._progress_width:
            self.stderr.write("\r" + " " * self._progress_width + "\r")
            self._progress_width = 0

    def _stderr_json(self, record: dict[str, Any]) -> None:
        self.stderr.write(json.dumps(record, default=_json_default) + "\n")
        self.stderr.flush()
