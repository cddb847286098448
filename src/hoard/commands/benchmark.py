"""``hoard benchmark crud REPOSITORY PATH``: Borg 1.4's create/read/update/delete benchmark.

Each step runs the real command line (``python -m hoard``), as a user's
backup would, with the common options that reach the repository (``--rsh``,
``--remote-path``) and the environment (passphrase) passed on; the figures
are Borg's lines, so results can be compared with ``borg benchmark crud``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hoard.commands.base import Context, Subcommand
from hoard.commands.repo import repository_location
from hoard.commands.stats import format_file_size
from hoard.errors import CommandError, InputError

NAME = "benchmark"
HELP = "benchmark command"
DESCRIPTION = """These commands perform various benchmarks."""

CRUD_DESCRIPTION = """This command benchmarks hoard CRUD (create, read, update, delete) operations.

It creates input data below the given PATH and backs it up into the given
REPOSITORY; the repository must already exist (init it first). Use a
repository and a PATH you do not mind being written: the files are removed
afterwards, the archives (hoard-benchmark-crud*) are deleted.

Measurements are done with different input file sizes and counts; the
file contents are very artificial (either all zero or all random), so the
results are only an indication of what speed a real backup reaches.

The lines, as in Borg:

    C-Z-BIG        116.06 MB/s (10 * 100.00 MB all-zero files: 8.62s)

C, R, U, D: create (files cache disabled, so everything is chunked), read
(extract --dry-run), update (a second backup of the unchanged data, with
the files cache), delete; Z and R: all-zero or random content; BIG, MEDIUM,
SMALL: 10 files of 100 MB, 1,000 of 1 MB, 10,000 of 10 kB. Compression is
off (--compression=none)."""

ARCHIVE = "hoard-benchmark-crud"


@dataclass(frozen=True)
class DataSet:
    label: str
    count: int
    size: int
    random: bool


DATASETS = (
    DataSet("Z-BIG", 10, 100_000_000, False),
    DataSet("R-BIG", 10, 100_000_000, True),
    DataSet("Z-MEDIUM", 1000, 1_000_000, False),
    DataSet("R-MEDIUM", 1000, 1_000_000, True),
    DataSet("Z-SMALL", 10000, 10_000, False),
    DataSet("R-SMALL", 10000, 10_000, True),
)
TEST_DATASETS = (DataSet("Z-TEST", 1, 1, False), DataSet("R-TEST", 1, 1, True))
"""With _BORG_BENCHMARK_CRUD_TEST (or _HOARD_...) set, as Borg's test suite does."""


def _configure_crud(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "location", metavar="REPOSITORY", help="repository to use for benchmark (must exist)"
    )
    parser.add_argument("path", metavar="PATH", help="path were to create benchmark input data")


def run_crud(ctx: Context, args: argparse.Namespace) -> None:
    location = repository_location(ctx, args.location)
    if location.archive:
        raise InputError(f"benchmark crud takes a repository, not an archive: {args.location}")
    testing = any(
        name in ctx.env for name in ("_BORG_BENCHMARK_CRUD_TEST", "_HOARD_BENCHMARK_CRUD_TEST")
    )
    runner = _Runner(ctx, location.canonical_path())
    for data in TEST_DATASETS if testing else DATASETS:
        with _test_files(args.path, data) as path:
            times = runner.measure(path)
        total_mb = data.count * data.size / 1e6
        content = "random" if data.random else "all-zero"
        size = format_file_size(data.size)
        for step, seconds in zip("CRUD", times, strict=True):
            rate = total_mb / seconds
            ctx.out.print(
                f"{step}-{data.label:<10} {rate:9.2f} MB/s "
                f"({data.count:d} * {size} {content} files: {seconds:.2f}s)"
            )


class _Runner:
    """Runs hoard's own command line against the benchmark repository."""

    def __init__(self, ctx: Context, repo: str) -> None:
        self._repo = repo
        self._common = ["--rsh", ctx.remote.rsh, "--remote-path", ctx.remote.remote_path]
        self._env = dict(ctx.env)

    def measure(self, path: str) -> tuple[float, float, float, float]:
        """(create, read, update, delete) seconds, Borg's order of steps."""
        archive = f"{self._repo}::{ARCHIVE}"
        create = ["create", "--compression=none"]
        dt_create = self._timed([*create, "--files-cache=disabled", archive + "1", path])
        self._timed([*create, archive + "2", path])  # builds the files cache
        self._timed(["delete", archive + "2"])
        dt_update = self._timed([*create, archive + "3", path])
        self._timed(["delete", archive + "3"])
        dt_extract = self._timed(["extract", "--dry-run", archive + "1"])
        dt_delete = self._timed(["delete", archive + "1"])
        return dt_create, dt_extract, dt_update, dt_delete

    def _timed(self, argv: list[str]) -> float:
        command = [sys.executable, "-m", "hoard", *self._common, *argv]
        started = time.monotonic()
        done = subprocess.run(command, env=self._env, capture_output=True, check=False)
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            why = said[-1] if said else f"exit code {done.returncode}"
            raise CommandError(f"benchmark step 'hoard {argv[0]}' failed: {why}")
        return max(elapsed, 1e-9)


@contextmanager
def _test_files(base: str, data: DataSet) -> Iterator[str]:
    """The input files below ``base`` (fsynced, as Borg's), removed afterwards."""
    path = os.path.join(base, "hoard-test-data")
    try:
        os.makedirs(path)
    except OSError as exc:
        raise CommandError(f"cannot create {path}: {exc.strerror}") from None
    try:
        zeros = bytes(data.size) if not data.random else b""
        for i in range(data.count):
            with open(os.path.join(path, f"file_{i}"), "wb") as out:
                out.write(os.urandom(data.size) if data.random else zeros)
                out.flush()
                os.fsync(out.fileno())
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


SUBCOMMANDS = {
    "crud": Subcommand(
        "benchmarks hoard CRUD (create, extract, update, delete).",
        CRUD_DESCRIPTION,
        _configure_crud,
        run_crud,
    ),
}
