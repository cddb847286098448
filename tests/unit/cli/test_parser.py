"""The command table the parser is built from, and its lazy command modules."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hoard.commands
from hoard.cli.parser import COMMANDS, build_parser, command_module


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_table_says_what_the_module_says(command: str) -> None:
    module = command_module(command)
    assert (command, COMMANDS[command][1]) == (module.NAME, module.HELP)


def test_every_command_module_is_in_the_table() -> None:
    commands = Path(hoard.commands.__file__).parent
    modules = {p.stem for p in commands.glob("*.py")}
    runnable = {
        m
        for m in modules
        if re.search(
            r"^(def run\(|run = |SUBCOMMANDS = )", (commands / f"{m}.py").read_text(), re.M
        )
    }
    assert runnable == {module for module, _ in COMMANDS.values()}


def test_a_command_parses_with_its_own_options_and_the_common_ones() -> None:
    args = build_parser().parse_args(["--lock-wait", "5", "list", "--short", "--debug", "repo"])
    assert (args.command, args.short, args.lock_wait, args.log_level) == (
        "list", True, 5.0, "debug"
    )  # fmt: skip
    assert args.func is command_module("list").run


def test_only_the_module_of_the_command_given_is_imported() -> None:
    """What keeps ``hoard --version`` and ``hoard list`` starting fast."""
    code = (
        "import json, sys; from hoard.cli.parser import build_parser; "
        "build_parser().parse_args(['list', 'repo']); "
        "print(json.dumps([m for m in sys.modules if m.startswith('hoard.commands.')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m.removeprefix("hoard.commands.") for m in json.loads(out.stdout)}
    others = {module for module, _ in COMMANDS.values()} - {"list", "version"}
    assert "list" in loaded and not loaded & others, loaded
