"""hoard.memory: one arena really means one (glibc's own statistics say so),
and the console script sets the collector's threshold before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hoard.memory import YOUNG_THRESHOLD, limit_arenas

_THREADS_THEN_STATS = """
import ctypes, sys, threading
from hoard.memory import limit_arenas
if sys.argv[1] == "limit":
    assert limit_arenas()
def churn():
    for _ in range(20000):
        bytearray(3000)
threads = [threading.Thread(target=churn) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's mallopt and malloc_stats",
)


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", _THREADS_THEN_STATS, mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


@glibc
def test_threads_share_one_arena_after_the_limit() -> None:
    assert _arenas("default") > 1  # the test can tell: threads get arenas of their own
    assert _arenas("limit") == 1


def test_a_users_malloc_arena_max_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas() is False


def test_the_console_script_sets_both_before_the_command_runs() -> None:
    code = (
        "import gc, sys; from hoard.cli import entry, main; "
        "main.run = lambda argv: print(gc.get_threshold()) or 0; "
        "sys.argv = ['hoard', '--version']; entry.main()"
    )
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.stdout.strip().startswith(f"({YOUNG_THRESHOLD}, "), done
