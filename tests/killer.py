"""Run hoard's command line with a real ``kill -9`` after its Nth storage change.

``python -m tests.killer N COUNT_FILE hoard-args...`` runs the command in this
process with every repository storage wrapped: the first N changes (store,
delete, delete_temporary) go through, and the next one is preceded by
SIGKILL to this very process, so nothing in hoard (no ``finally``, no
``atexit``, no lock release) runs after it: what is on disk is exactly what
a power cut or ``kill -9`` at that step leaves. N = -1 never kills; the
number of changes made is then written to COUNT_FILE at exit, so a test
can first count the steps of a command and then kill it at each of them.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from hoard.cli.main import main
from hoard.commands import repo as repo_module
from hoard.commands.base import Context
from hoard.storage.base import ObjectInfo, Storage
from hoard.storage.location import Location


class KillingStorage(Storage):
    """Counts changes; SIGKILLs the process before change number ``limit + 1``."""

    changes = 0
    """Over all instances: a command may open its storage more than once."""

    def __init__(self, inner: Storage, limit: int) -> None:
        self.inner = inner
        self.limit = limit

    def _change(self) -> None:
        if 0 <= self.limit <= KillingStorage.changes:
            os.kill(os.getpid(), signal.SIGKILL)
        KillingStorage.changes += 1

    @property
    def location(self) -> str:
        return self.inner.location

    def store(self, name: str, data: bytes | memoryview, *, overwrite: bool = False) -> None:
        self._change()
        self.inner.store(name, data, overwrite=overwrite)

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.load(name, offset, length)

    def delete(self, name: str) -> None:
        self._change()
        self.inner.delete(name)

    def delete_temporary(self, name: str) -> None:
        self._change()
        self.inner.delete_temporary(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def list_temporary(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list_temporary(prefix)

    def info(self, name: str) -> ObjectInfo:
        return self.inner.info(name)

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def close(self) -> None:
        self.inner.close()


def run(limit: int, count_file: Path, args: list[str]) -> int:
    original = repo_module._storage_for

    def killing(ctx: Context, location: Location, **kwargs: bool) -> Storage:
        return KillingStorage(original(ctx, location, **kwargs), limit)

    repo_module._storage_for = killing
    sys.argv = ["hoard", *args]
    try:
        main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    finally:
        count_file.write_text(str(KillingStorage.changes))
    return 0


if __name__ == "__main__":
    sys.exit(run(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]))
