"""Passphrase sources: environment, command, descriptor, prompt, in Borg's order."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hoard.cli.passphrase import PassphraseSource, read_passphrase_fd, run_passcommand
from hoard.errors import NoPassphraseFailure, PasscommandFailure, PasswordRetriesExceeded

PY = sys.executable


def echo_command(text: str) -> str:
    """A passcommand printing ``text`` (run without a shell, so via python)."""
    return shlex.join([PY, "-c", f"import sys; sys.stdout.write({text!r})"])


class Terminal:
    """A scripted terminal: answers prompts in order and records them."""

    def __init__(self, *answers: str, tty: bool = True) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.tty = tty
        self.stderr = io.StringIO()

    def getpass(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)

    def isatty(self) -> bool:
        return self.tty

    def source(self, env: dict[str, str]) -> PassphraseSource:
        return PassphraseSource(env, getpass=self.getpass, isatty=self.isatty, stderr=self.stderr)


@pytest.fixture
def pipe_fd() -> Iterator[Callable[[bytes], int]]:
    """Make pipes whose write end a thread fills and closes; yields read fds."""
    opened: list[int] = []
    threads: list[threading.Thread] = []

    def make(data: bytes) -> int:
        read_fd, write_fd = os.pipe()
        opened.append(read_fd)

        def write() -> None:
            with os.fdopen(write_fd, "wb") as writer:
                writer.write(data)

        thread = threading.Thread(target=write)
        thread.start()
        threads.append(thread)
        return read_fd

    yield make
    for thread in threads:
        thread.join(timeout=10)
    for fd in opened:
        os.close(fd)


# --- each source ------------------------------------------------------------------


def test_passphrase_variable() -> None:
    assert Terminal().source({"BORG_PASSPHRASE": "secret"}).get() == "secret"


def test_empty_passphrase_variable_is_a_passphrase() -> None:
    terminal = Terminal("typed")
    assert terminal.source({"BORG_PASSPHRASE": ""}).get() == ""
    assert terminal.prompts == []


def test_passphrase_keeps_whitespace() -> None:
    assert Terminal().source({"BORG_PASSPHRASE": " a b \n"}).get() == " a b \n"


def test_passcommand() -> None:
    env = {"BORG_PASSCOMMAND": echo_command("from command\n\n")}
    assert Terminal().source(env).get() == "from command"


def test_passcommand_without_shell(tmp_path: Path) -> None:
    """Shell syntax is passed as arguments, not interpreted."""
    marker = tmp_path / "marker"
    command = f"{PY} -c 'import sys; print(sys.argv[1:])' ; touch {marker}"
    assert run_passcommand(command) == f"[';', 'touch', '{marker}']"
    assert not marker.exists()


def test_passcommand_gets_the_environment() -> None:
    env = {"BORG_PASSCOMMAND": f"{PY} -c 'import os; print(os.environ[\"SECRET_SOURCE\"])'"}
    env["SECRET_SOURCE"] = "vault"
    assert Terminal().source(env).get() == "vault"


def test_passcommand_utf8() -> None:
    env = {"BORG_PASSCOMMAND": echo_command("p\u00e4ss \u2603")}
    assert Terminal().source(env).get() == "p\u00e4ss \u2603"


def test_passphrase_fd(pipe_fd: Callable[[bytes], int]) -> None:
    fd = pipe_fd(b"from pipe\n")
    assert Terminal().source({"BORG_PASSPHRASE_FD": str(fd)}).get() == "from pipe"


def test_passphrase_fd_larger_than_pipe_buffer(pipe_fd: Callable[[bytes], int]) -> None:
    data = b"x" * 300_000
    fd = pipe_fd(data + b"\n")
    assert read_passphrase_fd(str(fd)) == data.decode()


def test_passphrase_fd_is_read_once(pipe_fd: Callable[[bytes], int]) -> None:
    source = Terminal().source({"BORG_PASSPHRASE_FD": str(pipe_fd(b"once"))})
    assert source.get() == "once"
    assert source.get() == "once"
    assert source.new() == "once"


def test_passphrase_fd_inherited_by_a_child(tmp_path: Path) -> None:
    """As borgmatic does it: a pipe's read end passed to a new process."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"inherited secret\n")
    os.close(write_fd)
    script = (
        "import sys; from hoard.cli.passphrase import PassphraseSource; "
        "sys.stdout.write(PassphraseSource(isatty=lambda: False).get())"
    )
    env = {"PATH": os.environ.get("PATH", ""), "BORG_PASSPHRASE_FD": str(read_fd)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[3] / "src")
    try:
        done = subprocess.run(
            [PY, "-c", script], env=env, pass_fds=[read_fd], capture_output=True, check=False
        )
    finally:
        os.close(read_fd)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"inherited secret"


def test_prompt_on_a_tty() -> None:
    terminal = Terminal("typed")
    assert terminal.source({}).get("Enter passphrase for key /r: ") == "typed"
    assert terminal.prompts == ["Enter passphrase for key /r: "]


def test_source_is_a_callable() -> None:
    terminal = Terminal("typed")
    assert terminal.source({})("Prompt: ") == "typed"
    assert terminal.prompts == ["Prompt: "]


def test_preset() -> None:
    assert Terminal().source({}).preset() is None
    assert Terminal().source({"BORG_PASSPHRASE": "p"}).preset() == "p"


# --- precedence -------------------------------------------------------------------


def test_passphrase_beats_command_and_fd() -> None:
    env = {
        "BORG_PASSPHRASE": "variable",
        "BORG_PASSCOMMAND": "/nonexistent/never-run",
        "BORG_PASSPHRASE_FD": "not even a number",
    }
    assert Terminal().source(env).get() == "variable"


def test_command_beats_fd() -> None:
    env = {"BORG_PASSCOMMAND": echo_command("command"), "BORG_PASSPHRASE_FD": "nonsense"}
    assert Terminal().source(env).get() == "command"


def test_fd_beats_prompt(pipe_fd: Callable[[bytes], int]) -> None:
    terminal = Terminal("typed")
    env = {"BORG_PASSPHRASE_FD": str(pipe_fd(b"fd"))}
    assert terminal.source(env).get() == "fd"
    assert terminal.prompts == []


@pytest.mark.parametrize("suffix", ["PASSPHRASE", "PASSCOMMAND"])
def test_hoard_beats_borg(suffix: str) -> None:
    values = {"PASSPHRASE": ("h", "b"), "PASSCOMMAND": (echo_command("h"), echo_command("b"))}
    hoard_value, borg_value = values[suffix]
    env = {f"HOARD_{suffix}": hoard_value, f"BORG_{suffix}": borg_value}
    assert Terminal().source(env).get() == "h"


def test_hoard_fd_beats_borg_fd(pipe_fd: Callable[[bytes], int]) -> None:
    env = {"HOARD_PASSPHRASE_FD": str(pipe_fd(b"h")), "BORG_PASSPHRASE_FD": "nonsense"}
    assert Terminal().source(env).get() == "h"


def test_source_order_before_prefix() -> None:
    """BORG_PASSPHRASE (a better source) beats HOARD_PASSCOMMAND."""
    env = {"BORG_PASSPHRASE": "b", "HOARD_PASSCOMMAND": echo_command("h")}
    assert Terminal().source(env).get() == "b"


def test_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOARD_PASSPHRASE", raising=False)
    monkeypatch.setenv("BORG_PASSPHRASE", "from os.environ")
    assert PassphraseSource(isatty=lambda: False).get() == "from os.environ"


# --- failures ---------------------------------------------------------------------


def test_passcommand_exit_status() -> None:
    env = {"BORG_PASSCOMMAND": f"{PY} -c 'import sys; print(\"leak\"); sys.exit(3)'"}
    with pytest.raises(PasscommandFailure, match="exited with status 3") as caught:
        Terminal().source(env).get()
    assert "leak" not in str(caught.value)
    assert caught.value.modern_exit_code == 51


def test_passcommand_killed() -> None:
    command = f"{PY} -c 'import os, signal; os.kill(os.getpid(), signal.SIGTERM)'"
    with pytest.raises(PasscommandFailure, match="killed by signal 15"):
        run_passcommand(command)


def test_passcommand_missing_executable() -> None:
    with pytest.raises(PasscommandFailure, match="cannot run '/nonexistent/pass'"):
        Terminal().source({"BORG_PASSCOMMAND": "/nonexistent/pass show borg"}).get()


@pytest.mark.parametrize(
    ("command", "reason"), [("", "empty"), ("  ", "empty"), ("'open", "parse")]
)
def test_passcommand_unusable(command: str, reason: str) -> None:
    with pytest.raises(PasscommandFailure, match=reason):
        Terminal().source({"BORG_PASSCOMMAND": command}).get()


def test_passcommand_not_utf8() -> None:
    command = f"{PY} -c 'import sys; sys.stdout.buffer.write(bytes([255]))'"
    with pytest.raises(PasscommandFailure, match="UTF-8"):
        run_passcommand(command)


@pytest.mark.parametrize("value", ["", "three", "1.5"])
def test_passphrase_fd_not_a_number(value: str) -> None:
    with pytest.raises(NoPassphraseFailure, match="not a descriptor number"):
        Terminal().source({"BORG_PASSPHRASE_FD": value}).get()


def test_passphrase_fd_closed() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    os.close(write_fd)
    with pytest.raises(NoPassphraseFailure, match="Bad file descriptor"):
        read_passphrase_fd(str(read_fd))


def test_no_source_and_no_tty() -> None:
    terminal = Terminal("never asked", tty=False)
    with pytest.raises(NoPassphraseFailure) as caught:
        terminal.source({}).get()
    assert "not a terminal" in str(caught.value)
    assert caught.value.modern_exit_code == 50
    assert terminal.prompts == []


def test_prompt_closed() -> None:
    with pytest.raises(NoPassphraseFailure, match="closed"):
        Terminal().source({}).get()


# --- new passphrases -----------------------------------------------------------------


def test_new_passphrase_variable_first() -> None:
    env = {"BORG_NEW_PASSPHRASE": "new", "BORG_PASSPHRASE": "old"}
    source = Terminal().source(env)
    assert source.get() == "old"
    assert source.new() == "new"


def test_new_hoard_beats_borg() -> None:
    env = {"HOARD_NEW_PASSPHRASE": "h", "BORG_NEW_PASSPHRASE": "b"}
    assert Terminal().source(env).new() == "h"


def test_new_empty_variable_is_a_passphrase() -> None:
    assert Terminal().source({"BORG_NEW_PASSPHRASE": "", "BORG_PASSPHRASE": "x"}).new() == ""


def test_new_falls_back_to_preset() -> None:
    assert Terminal().source({"BORG_PASSCOMMAND": echo_command("cmd")}).new() == "cmd"


def test_new_asks_twice() -> None:
    terminal = Terminal("fresh", "fresh")
    assert terminal.source({}).new() == "fresh"
    assert terminal.prompts == ["Enter new passphrase: ", "Enter same passphrase again: "]


def test_new_retries_on_mismatch() -> None:
    terminal = Terminal("one", "two", "three", "three")
    assert terminal.source({}).new() == "three"
    assert terminal.stderr.getvalue() == "Passphrases do not match\n"
    assert len(terminal.prompts) == 4


def test_new_blank() -> None:
    assert Terminal("", "").source({}).new() == ""
    terminal = Terminal("", "ok", "ok")
    assert terminal.source({}).new(allow_empty=False) == "ok"
    assert "must not be blank" in terminal.stderr.getvalue()


def test_new_gives_up_after_retries() -> None:
    terminal = Terminal(*[str(i) for i in range(40)])
    with pytest.raises(PasswordRetriesExceeded):
        terminal.source({}).new()
    assert len(terminal.prompts) == 20


def test_new_without_tty() -> None:
    with pytest.raises(NoPassphraseFailure):
        Terminal("a", "a", tty=False).source({}).new()


def test_get_verify_asks_twice() -> None:
    terminal = Terminal("a", "b", "c", "c")
    assert terminal.source({}).get("Passphrase: ", verify=True) == "c"
    assert terminal.prompts[0] == "Passphrase: "
    assert len(terminal.prompts) == 4


def test_get_verify_uses_preset() -> None:
    terminal = Terminal()
    assert terminal.source({"BORG_PASSPHRASE": "p"}).get(verify=True) == "p"
    assert terminal.prompts == []
