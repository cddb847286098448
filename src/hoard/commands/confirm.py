"""Borg's ``yes()`` for the questions before dangerous operations.

``delete`` of a repository and ``check --repair`` ask the same way: the
answer comes from ``HOARD_<VARIABLE>`` / ``BORG_<VARIABLE>`` when set, else
from stdin (a terminal or a pipe); only ``YES`` goes ahead, end of input
means "no", and anything else ends with CancelledByUser after Borg's words.
"""

from __future__ import annotations

from hoard.commands.base import Context
from hoard.errors import CancelledByUser

FALSISH = ("No", "NO", "no", "N", "n", "0")
DEFAULTISH = ("Default", "DEFAULT", "default", "D", "d", "")


def confirm(ctx: Context, question: str, variable: str) -> None:
    """Ask ``question``; return only on ``YES``, else raise CancelledByUser."""
    answer, source = _preset_answer(ctx, variable)
    if source is not None:
        ctx.out.message(f"{question}{answer} (from {source})")
    else:
        typed = ctx.out.ask(question, msgid=f"BORG_{variable}")
        answer = FALSISH[0] if typed is None else typed
    if answer == "YES":
        return
    if answer in FALSISH:
        ctx.out.message("Aborting.")
    elif answer not in DEFAULTISH:
        ctx.out.message("Invalid answer, aborting.")
    raise CancelledByUser()


def _preset_answer(ctx: Context, variable: str) -> tuple[str, str | None]:
    for name in (f"HOARD_{variable}", f"BORG_{variable}"):
        value = ctx.env.get(name)
        if value is not None:
            return value, name
    return "", None
