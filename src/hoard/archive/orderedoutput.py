"""``--list`` lines, warnings and progress in walk order, although files finish out of order.

A file read by the file pool learns its status (``A``, or ``E`` with a
warning, ``C`` after a change) only when its worker is done, while the walk
has gone on to later items. Borg prints every item in walk order, and
scripts that read ``--list`` or ``--log-json`` output rely on it, so the
messages queue behind the first unfinished file and come out as soon as
it is done. Without such a file nothing waits: messages go out at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

Action = Callable[[], None]


class Awaited(Protocol):
    """What an action waits for (a file pool ticket)."""

    def done(self) -> bool: ...

    def wait(self) -> None:
        """Block until done; a failure is not raised here."""


class OrderedOutput:
    """A queue of output actions, each optionally waiting for something."""

    def __init__(self) -> None:
        self._queue: deque[tuple[Awaited | None, Action]] = deque()

    def now(self, action: Action) -> None:
        """Run ``action`` once everything queued before it has run."""
        if self._queue:
            self._queue.append((None, action))
        else:
            action()

    def after(self, awaited: Awaited, action: Action) -> None:
        """Run ``action`` once ``awaited`` is done and everything before it has run.

        ``action`` must not raise for a failure: that is the business of
        whoever waits for the result.
        """
        self._queue.append((awaited, action))

    def drain(self, *, wait: bool = False) -> None:
        """Run the actions whose turn has come (``wait``: all, waiting for their futures)."""
        queue = self._queue
        while queue:
            awaited, action = queue[0]
            if awaited is not None and not awaited.done():
                if not wait:
                    return
                awaited.wait()
            queue.popleft()
            action()

    def pending(self) -> int:
        """How many actions wait."""
        return len(self._queue)
