"""Where passphrases come from: environment, a command, a file descriptor, a prompt.

The order is Borg's, so scripts and borgmatic work unchanged:

1. ``PASSPHRASE`` (an empty value is a valid, empty passphrase),
2. ``PASSCOMMAND``, run without a shell; its stdout minus trailing newlines,
3. ``PASSPHRASE_FD``, a descriptor read to end of file, minus trailing
   newlines (borgmatic passes an anonymous pipe this way),
4. an interactive prompt, only when stdin is a terminal.

Each variable is read as ``HOARD_X`` or else ``BORG_X`` (see
:func:`hoard.cli.environment.getenv`). A new passphrase (``init``, ``key
change-passphrase``) first looks at ``NEW_PASSPHRASE``, then as above, and
prompts twice. The objects layer receives an instance as its passphrase
callable; it never reads the environment itself.
"""

from __future__ import annotations

import getpass as getpass_module
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TextIO

from hoard.cli.environment import getenv
from hoard.errors import NoPassphraseFailure, PasscommandFailure, PasswordRetriesExceeded

NEW_PASSPHRASE_RETRIES = 10
_READ_SIZE = 65536


def _strip(text: str) -> str:
    """Drop trailing newlines, as Borg does for commands and descriptors alike.

    The same rule for both means a passphrase works whichever way it arrives.
    """
    return text.rstrip("\n")


def _decode(data: bytes, what: str, error: type[Exception]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} is not valid UTF-8") from None


def run_passcommand(command: str, env: Mapping[str, str] | None = None) -> str:
    """Stdout of ``command`` (split like a shell would, but run without one).

    Raises PasscommandFailure if it cannot be parsed or started, or exits
    with an error. Stdin and stderr stay the user's, so a password manager
    can ask for its own secret. The output is never put into a message.
    """
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise PasscommandFailure(f"cannot parse {command!r}: {exc}") from None
    if not argv:
        raise PasscommandFailure("the command is empty")
    child_env = None if env is None else dict(env)
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, env=child_env, check=False)
    except OSError as exc:
        raise PasscommandFailure(f"cannot run {argv[0]!r}: {exc.strerror}") from None
    if done.returncode < 0:
        raise PasscommandFailure(f"{argv[0]!r} was killed by signal {-done.returncode}")
    if done.returncode > 0:
        raise PasscommandFailure(f"{argv[0]!r} exited with status {done.returncode}")
    return _strip(_decode(done.stdout, "its output", PasscommandFailure))


def read_passphrase_fd(value: str) -> str:
    """Everything readable from descriptor ``value`` until end of file.

    The descriptor is left open: it may be one the process still needs
    (stdin), and a pipe at end of file holds nothing anyway.
    """
    try:
        fd = int(value)
    except ValueError:
        raise NoPassphraseFailure(f"PASSPHRASE_FD={value!r} is not a descriptor number") from None
    parts: list[bytes] = []
    try:
        while part := os.read(fd, _READ_SIZE):
            parts.append(part)
    except OSError as exc:
        raise NoPassphraseFailure(f"cannot read PASSPHRASE_FD {fd}: {exc.strerror}") from None
    return _strip(_decode(b"".join(parts), f"PASSPHRASE_FD {fd}", NoPassphraseFailure))


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin closed
        return False


class PassphraseSource:
    """Supplies passphrases to the key layer, in Borg's order of sources.

    ``env`` defaults to the process environment. ``getpass``, ``isatty`` and
    ``stderr`` are the terminal (injectable so tests need no terminal).
    The non-interactive answer is resolved once and remembered: a descriptor
    can be read only once and a passcommand may ask the user, so neither is
    repeated when a command needs the passphrase twice. Thread-safe.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        getpass: Callable[[str], str] = getpass_module.getpass,
        isatty: Callable[[], bool] = _stdin_is_tty,
        stderr: TextIO | None = None,
    ) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env
        self._getpass = getpass
        self._isatty = isatty
        self._stderr = stderr
        self._lock = threading.Lock()
        self._resolved = False
        self._preset: str | None = None

    def __call__(self, prompt: str) -> str:
        """Same as :meth:`get`, so an instance is the passphrase callable."""
        return self.get(prompt)

    def preset(self) -> str | None:
        """The passphrase from the environment, command or descriptor; None
        when none of them is set (then only a prompt can supply one).

        Callers use this to tell a wrong passphrase given non-interactively
        (an error at once) from one typed at a prompt (worth a retry).
        """
        with self._lock:
            if not self._resolved:
                self._preset = self._resolve()
                self._resolved = True
            return self._preset

    def _resolve(self) -> str | None:
        passphrase = getenv("PASSPHRASE", self._env)
        if passphrase is not None:
            return passphrase
        command = getenv("PASSCOMMAND", self._env)
        if command is not None:
            return run_passcommand(command, None if self._env is os.environ else self._env)
        fd = getenv("PASSPHRASE_FD", self._env)
        if fd is not None:
            return read_passphrase_fd(fd)
        return None

    def get(self, prompt: str = "Enter passphrase: ", *, verify: bool = False) -> str:
        """The passphrase of an existing key: preset, else asked at the terminal
        (twice when ``verify``, until both answers match)."""
        passphrase = self.preset()
        if passphrase is not None:
            return passphrase
        if verify:
            return self._ask_twice(prompt, allow_empty=True)
        return self.ask(prompt)

    def new(self, prompt: str = "Enter new passphrase: ", *, allow_empty: bool = True) -> str:
        """A passphrase for a new or re-wrapped key.

        ``NEW_PASSPHRASE`` first (so ``key change-passphrase`` can be
        scripted with the old one in ``PASSPHRASE``), then the preset, then
        two prompts that must agree. Like Borg, an empty passphrase is
        allowed unless ``allow_empty`` is false.
        """
        passphrase = getenv("NEW_PASSPHRASE", self._env)
        if passphrase is None:
            passphrase = self.preset()
        if passphrase is not None:
            return passphrase
        return self._ask_twice(prompt, allow_empty=allow_empty)

    def ask(self, prompt: str) -> str:
        """One answer typed at the terminal; NoPassphraseFailure without one."""
        if not self._isatty():
            raise NoPassphraseFailure(
                "BORG_PASSPHRASE, BORG_PASSCOMMAND and BORG_PASSPHRASE_FD are not set "
                "and stdin is not a terminal to ask at"
            )
        try:
            return self._getpass(prompt)
        except EOFError:
            raise NoPassphraseFailure("the interactive passphrase prompt was closed") from None

    def _ask_twice(self, prompt: str, *, allow_empty: bool) -> str:
        for _ in range(NEW_PASSPHRASE_RETRIES):
            passphrase = self.ask(prompt)
            if not passphrase and not allow_empty:
                self._tell("Passphrase must not be blank")
                continue
            if self.ask("Enter same passphrase again: ") == passphrase:
                return passphrase
            self._tell("Passphrases do not match")
        raise PasswordRetriesExceeded()

    def _tell(self, message: str) -> None:
        print(message, file=self._stderr or sys.stderr)
