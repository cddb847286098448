"""Speed and memory of hoard against Borg 1.4, Borg 1.2 and restic on one dataset.

Run from the checkout with the venv's Python (hoard installed editable)::

    .venv/bin/python benchmarks/compare.py [--size small|full] [--tools ...]
        [--borg14 PATH | --borg14-venv DIR] [--workdir DIR] [--json FILE] [--keep]

The dataset (issue 8) is a copy of this Python's library directory (the
standard library with its site-packages), ``/usr/share/doc``,
``/usr/include``, a deterministic 1 GiB disk-image-like file and 150 MiB of
generated text. Every tool runs with encryption on (repokey); hoard and
Borg with ``-C lz4``, restic with its default compression. Steps, each run
for all tools before the next step starts (the tools' order rotates from
step to step): first backup, first backup of the file trees alone (small
files), unchanged rescan, backup after a scattered ~1 % change, extract
(``--sparse`` where the tool has it; verified by hash), ``check
--verify-data`` (restic: ``check --read-data``) and startup (``--version``
and ``list`` on a small repository, best of a few runs).

Borg 1.4 comes from PyPI, installed into a venv the script creates (or an
existing executable given with ``--borg14``); Borg 1.2 is Debian's
``borgbackup``, restic Debian's ``restic`` (apt-get installs both when root
and missing). A tool that is missing or fails to install is reported and
left out.

Every figure comes from one run on this machine. Time is wall-clock of the
tool's process; CPU is its user+system time; peak RSS is GNU time's ``%M``
(``ru_maxrss`` of the tool's process as /usr/bin/time sees it): the largest
resident set of any single process in its tree (reaped children included),
not their sum.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 1000 * 1000
SEED = 20240601
PASSPHRASE = "benchmark passphrase, not secret"
ALL_TOOLS = ("hoard", "borg14", "borg12", "restic")
LABELS = {"hoard": "hoard", "borg14": "Borg 1.4", "borg12": "Borg 1.2", "restic": "restic"}
COMPRESSION = "lz4"

FIRST = "first backup"
TREES = "small files only"
UNCHANGED = "unchanged rescan"
CHANGED = "1% change"
EXTRACT = "extract"
CHECK = "check --verify-data"
VERSION = "startup --version"
LIST = "startup list"
STEPS = (FIRST, TREES, UNCHANGED, CHANGED, EXTRACT, CHECK, VERSION, LIST)
BACKUPS = {FIRST: "first", UNCHANGED: "unchanged", CHANGED: "changed"}
LAST_ARCHIVE = BACKUPS[CHANGED]

IMAGE_NAME = "disk.img"
STAMP_NAME = "zz-newest.txt"
REGION_MIN, REGION_MAX = 1 * MiB, 16 * MiB
IMAGE_WRITE = 64 * KiB
FILE_WRITE = 4 * KiB
CHANGE_FRACTION = 0.01
TEXT_FILE = 15 * MiB

BORG14_REQUIREMENT = "borgbackup>=1.4,<1.5"
BORG14_DEBIAN_BUILD_DEPS = (
    "libacl1-dev",
    "libssl-dev",
    "liblz4-dev",
    "libzstd-dev",
    "libxxhash-dev",
    "pkg-config",
    "build-essential",
    "python3-dev",
)
APT_PACKAGES = {"borg12": "borgbackup", "restic": "restic"}


# ---------------------------------------------------------------- results


@dataclass
class Run:
    """One measured process."""

    seconds: float
    cpu_seconds: float
    peak_rss: int
    returncode: int


@dataclass
class Measurement:
    """One tool's figures for one step."""

    tool: str
    step: str
    seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss: int | None = None
    repo_size: int | None = None
    repo_growth: int | None = None
    bytes_done: int | None = None
    files_done: int | None = None
    samples: list[float] = field(default_factory=list)
    verified: str | None = None
    image_allocated: int | None = None
    returncode: int | None = None
    error: str | None = None

    @property
    def mb_per_second(self) -> float | None:
        if self.bytes_done is None or not self.seconds:
            return None
        return self.bytes_done / MB / self.seconds

    @property
    def files_per_second(self) -> float | None:
        if self.files_done is None or not self.seconds:
            return None
        return self.files_done / self.seconds


@dataclass
class Part:
    """One part of the dataset: a copied tree, the image or the text."""

    name: str
    source: str
    files: int = 0
    bytes: int = 0


@dataclass
class Dataset:
    """What was backed up."""

    parts: list[Part] = field(default_factory=list)
    image_bytes: int = 0
    image_allocated: int = 0
    image_allocated_changed: int = 0
    image_holes: bool = True
    changed_image_bytes: int = 0
    changed_tree_bytes: int = 0
    changed_files: int = 0

    @property
    def files(self) -> int:
        return sum(p.files for p in self.parts)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    def trees(self) -> tuple[int, int]:
        """(files, bytes) of the copied real trees, without image and text."""
        real = [p for p in self.parts if p.name.startswith("trees/")]
        return sum(p.files for p in real), sum(p.bytes for p in real)


@dataclass
class Report:
    machine: dict[str, str]
    commit: str
    versions: dict[str, str]
    settings: dict[str, str]
    cache: str
    dataset: Dataset
    measurements: list[Measurement] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    targets: list[list[str]] = field(default_factory=list)


class StepError(Exception):
    pass


# ---------------------------------------------------------------- tools


@dataclass
class Tool:
    """How to drive one backup program; hoard and Borg share Borg's CLI."""

    name: str
    executable: str
    workdir: Path
    env_prefix: str = "BORG_"
    encryption: str = "repokey"
    encryption_label: str = "repokey (AES-256-CTR + HMAC-SHA256)"
    compression_arg: str = COMPRESSION

    @property
    def label(self) -> str:
        return LABELS[self.name]

    def repo_path(self, which: str = "main") -> Path:
        return self.workdir / "repos" / f"{self.name}-{which}"

    @property
    def home(self) -> Path:
        return self.workdir / "home" / self.name

    def env(self, which: str = "main") -> dict[str, str]:
        """The caller's environment without any backup tool's variables."""
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BORG_", "HOARD_", "RESTIC_", "XDG_"))
        }
        keep.update(HOME=str(self.home), LC_ALL="C.UTF-8", LANG="C.UTF-8")
        keep.update(self.tool_env(which))
        return keep

    def tool_env(self, which: str) -> dict[str, str]:
        p = self.env_prefix
        return {
            f"{p}PASSPHRASE": PASSPHRASE,
            f"{p}BASE_DIR": str(self.home),
            f"{p}DISPLAY_PASSPHRASE": "no",
        }

    @property
    def compression(self) -> str:
        return self.compression_arg

    @property
    def ok_codes(self) -> tuple[int, ...]:
        """Exit codes of a finished run: 0, and Borg's 1 (warning)."""
        return (0, 1)

    def init_argv(self, which: str) -> list[str]:
        return [self.executable, "init", "-e", self.encryption, str(self.repo_path(which))]

    def backup_argv(self, which: str, archive: str, path: str) -> list[str]:
        repo = self.repo_path(which)
        return [self.executable, "create", "-C", self.compression, f"{repo}::{archive}", path]

    def extract_argv(self, archive: str, target: Path) -> list[str]:
        return [self.executable, "extract", "--sparse", f"{self.repo_path()}::{archive}"]

    def extract_mode(self) -> str:
        return "extract --sparse"

    def check_argv(self) -> list[str]:
        return [self.executable, "check", "--verify-data", str(self.repo_path())]

    def version_argv(self) -> list[str]:
        return [self.executable, "--version"]

    def list_argv(self, which: str) -> list[str]:
        return [self.executable, "list", str(self.repo_path(which))]


@dataclass
class Hoard(Tool):
    env_prefix: str = "HOARD_"
    encryption_label: str = "repokey (= repokey-chacha20-poly1305)"


@dataclass
class Restic(Tool):
    env_prefix: str = "RESTIC_"
    encryption: str = ""
    encryption_label: str = "AES-256-CTR + Poly1305-AES (restic's only mode)"

    def tool_env(self, which: str) -> dict[str, str]:
        return {
            "RESTIC_PASSWORD": PASSPHRASE,
            "RESTIC_REPOSITORY": str(self.repo_path(which)),
            "RESTIC_CACHE_DIR": str(self.home / "cache"),
        }

    @property
    def compression(self) -> str:
        return "default"

    @property
    def ok_codes(self) -> tuple[int, ...]:
        """restic's 1 is a fatal error (3, files unread, is not accepted either)."""
        return (0,)

    def init_argv(self, which: str) -> list[str]:
        return [self.executable, "init"]

    def backup_argv(self, which: str, archive: str, path: str) -> list[str]:
        return [self.executable, "backup", "--host", "bench", "--tag", archive, path]

    def extract_argv(self, archive: str, target: Path) -> list[str]:
        return [self.executable, "restore", "latest", "--tag", archive, "--target", str(target)]

    def extract_mode(self) -> str:
        return "restore (restic 0.14 has no --sparse)"

    def check_argv(self) -> list[str]:
        return [self.executable, "check", "--read-data"]

    def version_argv(self) -> list[str]:
        return [self.executable, "version"]

    def list_argv(self, which: str) -> list[str]:
        return [self.executable, "snapshots"]


def make_tool(name: str, executable: str, workdir: Path, compression: str) -> Tool:
    """``compression`` is ``-C``'s argument for hoard and Borg; restic keeps its default."""
    if name == "hoard":
        return Hoard(name, executable, workdir, compression_arg=compression)
    if name == "restic":
        return Restic(name, executable, workdir)
    return Tool(name, executable, workdir, compression_arg=compression)


# ---------------------------------------------------------------- finding and installing


def hoard_executable(given: Path | None) -> str | None:
    if given is not None:
        return str(given) if given.is_file() else None
    beside = Path(sys.executable).parent / "hoard"
    return str(beside) if beside.exists() else shutil.which("hoard")


def output_of(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    except OSError as error:
        return f"unavailable ({error})"
    return (done.stdout + done.stderr).strip()


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def is_root_with_apt() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: list[str], log: Path) -> bool:
    """apt-get install ``packages`` (update first); True on success."""
    print(f"installing {', '.join(packages)} with apt-get (log {log})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with log.open("ab") as out:
        subprocess.run(["apt-get", "update"], stdout=out, stderr=out, env=env, check=False)
        done = subprocess.run(
            ["apt-get", "install", "-y", *packages], stdout=out, stderr=out, env=env, check=False
        )
    return done.returncode == 0


def install_debian_tools(names: list[str], log: Path) -> None:
    """Debian's borgbackup (Borg 1.2) and restic when missing, if root."""
    missing = [
        APT_PACKAGES[n] for n in names if n in APT_PACKAGES and not shutil.which(binary_name(n))
    ]
    if not missing:
        return
    if not is_root_with_apt():
        print(f"not root or no apt-get: cannot install {', '.join(missing)}")
        return
    apt_install(missing, log)


def binary_name(name: str) -> str:
    return "borg" if name == "borg12" else name


def missing_debian_packages(packages: tuple[str, ...]) -> list[str]:
    """Those of ``packages`` dpkg does not list as installed."""
    if not shutil.which("dpkg-query"):
        return []
    missing = []
    for package in packages:
        status = output_of(["dpkg-query", "-W", "-f=${Status}", package])
        if "install ok installed" not in status:
            missing.append(package)
    return missing


def is_borg14(executable: Path) -> bool:
    return executable.is_file() and output_of([str(executable), "--version"]).startswith("borg 1.4")


def build_borg14(venv: Path, log: Path) -> str | None:
    """Create ``venv`` and pip install Borg 1.4 into it; None on success,
    else why not."""
    missing = missing_debian_packages(BORG14_DEBIAN_BUILD_DEPS)
    if missing:
        if not is_root_with_apt():
            return f"build dependencies missing ({', '.join(missing)}) and not root"
        if not apt_install(missing, log):
            return f"apt-get install {' '.join(missing)} failed (see {log})"
    print(f"creating {venv} and installing {BORG14_REQUIREMENT} (a few minutes; log {log})")
    with log.open("ab") as out:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(venv / "bin" / "pip"), "install", "--upgrade", "pip"],
            [str(venv / "bin" / "pip"), "install", BORG14_REQUIREMENT],
        ]
        for argv in steps:
            out.write(f"\n$ {' '.join(argv)}\n".encode())
            out.flush()
            if subprocess.run(argv, stdout=out, stderr=out, check=False).returncode != 0:
                return f"{' '.join(argv[-2:])} failed (see {log})"
    return None


def find_borg14(given: Path | None, venv: Path, log: Path) -> tuple[str | None, str]:
    """The Borg 1.4 executable: ``given``, else the one in ``venv``, built
    there first if missing. (executable, how it was found) or (None, why)."""
    if given is not None:
        if is_borg14(given):
            return str(given), f"given: {given}"
        return None, f"{given} is not a Borg 1.4 executable"
    borg = venv / "bin" / "borg"
    if is_borg14(borg):
        return str(borg), f"venv {venv}"
    problem = build_borg14(venv, log)
    if problem:
        return None, problem
    if not is_borg14(borg):
        return None, f"{borg} does not report Borg 1.4 after the install (see {log})"
    return str(borg), f"venv {venv} (installed now)"


def find_tools(args: argparse.Namespace, workdir: Path) -> tuple[list[Tool], dict[str, str]]:
    """The tools to run and, for the others, why they are left out."""
    log = workdir / "logs" / "install.log"
    install_debian_tools(args.tools, log)
    tools: list[Tool] = []
    skipped: dict[str, str] = {}
    for name in args.tools:
        executable: str | None
        if name == "hoard":
            executable = hoard_executable(args.hoard)
            why = f"{args.hoard} is not a file" if args.hoard else "no hoard beside this Python"
        elif name == "borg14":
            executable, why = find_borg14(args.borg14, args.borg14_venv, log)
        elif name == "borg12":
            executable = str(args.borg12) if args.borg12 else shutil.which("borg")
            why = "no borg on PATH (Debian package borgbackup)"
            if executable and not output_of([executable, "--version"]).startswith("borg 1.2"):
                executable, why = None, f"{executable} is not Borg 1.2"
        else:
            executable, why = shutil.which("restic"), "no restic on PATH"
        if executable is None:
            print(f"{LABELS[name]} left out: {why}")
            skipped[name] = why
            continue
        tools.append(make_tool(name, executable, workdir, args.compression))
    return tools, skipped


# ---------------------------------------------------------------- running


GNU_TIME = Path("/usr/bin/time")
RSS_SOURCE = (
    "GNU time's %M"
    if GNU_TIME.exists()
    else "ru_maxrss from wait4() (no /usr/bin/time: includes this script's ~70 MiB floor)"
)


def run_measured(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> Run:
    """Run ``argv``; its wall time and CPU time from ``wait4``, its peak RSS
    from GNU time's ``%M`` when there is /usr/bin/time.

    A child forked from this (large) Python process starts with this
    process's resident set counted in its ``ru_maxrss`` (Linux keeps the
    high-water mark across exec), which puts a floor of some 70 MiB under
    every tool; GNU time is a small process, so the tool it forks starts
    from its few KiB instead."""
    rss_file = log.with_suffix(".rss")
    launch = [str(GNU_TIME), "-o", str(rss_file), "-f", "%M", *argv] if GNU_TIME.exists() else argv
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(
            launch, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss * KiB
    if launch is not argv:
        peak = gnu_time_rss(rss_file, peak)
    return Run(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss=peak,
        returncode=proc.returncode,
    )


def gnu_time_rss(path: Path, fallback: int) -> int:
    """GNU time's %M (KiB) from its last output line."""
    try:
        lines = path.read_text().split()
        path.unlink()
    except OSError:
        return fallback
    return int(lines[-1]) * KiB if lines and lines[-1].isdigit() else fallback


def log_tail(log: Path, lines: int = 2) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])


def run_tool(
    tool: Tool, argv: list[str], cwd: Path, drop: bool, which: str = "main", strict: bool = False
) -> Run:
    """Run one tool command after dropping the page cache if asked; a
    StepError unless it exits 0 (or with its warning code, unless
    ``strict``)."""
    if drop:
        drop_caches()
    log = tool.workdir / "logs" / f"{tool.name}.log"
    run = run_measured(argv, cwd, tool.env(which), log)
    allowed = (0,) if strict else tool.ok_codes
    if run.returncode not in allowed:
        raise StepError(f"rc {run.returncode}: {log_tail(log)}")
    return run


# ---------------------------------------------------------------- page cache


def drop_caches() -> bool:
    """Drop the page cache; False if refused (not root, read-only /proc)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def warm(data: Path) -> None:
    """Read every file once so the first tool does not pay for a cold cache."""
    for path in data.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                while f.read(4 * MiB):
                    pass


# ---------------------------------------------------------------- dataset


def source_trees(size: str, site_packages: bool) -> list[tuple[Path, str]]:
    """(source, name in the dataset) of the real trees to copy."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if size == "small":
        return [
            (stdlib / "json", "trees/python/json"),
            (stdlib / "email", "trees/python/email"),
            (Path("/usr/include/linux"), "trees/include/linux"),
        ]
    return [
        (stdlib, "trees/python" if site_packages else "trees/python-stdlib"),
        (Path("/usr/share/doc"), "trees/doc"),
        (Path("/usr/include"), "trees/include"),
    ]


def copy_tree(source: Path, target: Path, site_packages: bool) -> None:
    """Copy ``source`` (symlinks as links); the stdlib's site-packages is
    left out unless asked for."""
    top = source.resolve()

    def ignore(directory: str, names: list[str]) -> list[str]:
        if not site_packages and Path(directory).resolve() == top:
            return ["site-packages"]
        return []

    try:
        shutil.copytree(source, target, symlinks=True, ignore=ignore)
    except shutil.Error as error:  # unreadable or vanishing files
        print(f"  {len(error.args[0])} files could not be copied from {source}")


def count(root: Path) -> tuple[int, int]:
    """(regular files, their bytes) under ``root`` (or of the file ``root``)."""
    paths = [root] if root.is_file() else list(root.rglob("*"))
    sizes = [p.lstat().st_size for p in paths if p.is_file() and not p.is_symlink()]
    return len(sizes), sum(sizes)


def text_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """A vocabulary of ``n`` 8-byte words (lowercase letters + separator)."""
    letters = rng.integers(ord("a"), ord("z") + 1, size=(n, 8), dtype=np.uint8)
    lengths = rng.integers(2, 8, size=n)
    for row, length in zip(letters, lengths, strict=True):
        row[length:] = ord(" ")
    letters[::16, 7] = ord("\n")
    return letters


def text_bytes(rng: np.random.Generator, size: int, words: np.ndarray) -> bytes:
    picks = rng.integers(0, len(words), size=size // 8 + 1)
    return words[picks].tobytes()[:size]


def image_regions(size: int) -> Iterator[tuple[str, int]]:
    """(kind, length) of consecutive regions: 40 % random, 30 % zeros, 30 % text."""
    rng = np.random.default_rng(SEED)
    done = 0
    while done < size:
        kind = str(rng.choice(["random", "zeros", "text"], p=[0.4, 0.3, 0.3]))
        length = min(int(rng.integers(REGION_MIN, REGION_MAX)) // 4096 * 4096, size - done)
        yield kind, length
        done += length


def write_image(path: Path, size: int, holes: bool) -> None:
    """Deterministic disk-image-like file; zero runs are written as zeros,
    or left as holes with ``holes``."""
    rng = np.random.default_rng(SEED + 1)
    words = text_words(rng, 256)
    with path.open("wb") as out:
        for kind, length in image_regions(size):
            if kind == "zeros" and holes:
                out.seek(length, os.SEEK_CUR)
            elif kind == "zeros":
                out.write(bytes(length))
            elif kind == "random":
                out.write(rng.bytes(length))
            else:
                out.write(text_bytes(rng, length, words))
        out.truncate()


def write_text(directory: Path, size: int) -> None:
    """``size`` bytes of text-like, compressible, not deduplicable files."""
    rng = np.random.default_rng(SEED + 3)
    words = text_words(rng, 4096)
    directory.mkdir(parents=True)
    for index, start in enumerate(range(0, size, TEXT_FILE)):
        length = min(TEXT_FILE, size - start)
        (directory / f"text-{index:02d}.txt").write_bytes(text_bytes(rng, length, words))


def write_stamp(data: Path) -> None:
    """Written last so the newest ctime is a tiny file: Borg does not
    remember files whose ctime is the newest it saw, and rereads them."""
    (data / STAMP_NAME).write_text(f"{time.time_ns()}\n")


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def build_dataset(data: Path, args: argparse.Namespace) -> Dataset:
    data.mkdir(parents=True)
    dataset = Dataset(image_holes=args.image_holes)
    for source, name in source_trees(args.size, args.site_packages):
        if not source.is_dir():
            print(f"{source} is missing: left out of the dataset")
            continue
        print(f"copying {source}")
        copy_tree(source, data / name, args.site_packages)
        dataset.parts.append(Part(name, str(source), *count(data / name)))
    print(f"writing {args.text_size / MiB:.0f} MiB of text")
    write_text(data / "text", args.text_size)
    dataset.parts.append(Part("text", "generated", *count(data / "text")))
    holes = "zero runs as holes" if args.image_holes else "zero runs written as zeros"
    print(f"writing {args.image_size / MiB:.0f} MiB image ({holes})")
    write_image(data / IMAGE_NAME, args.image_size, args.image_holes)
    dataset.parts.append(Part(IMAGE_NAME, "generated", *count(data / IMAGE_NAME)))
    dataset.image_bytes = args.image_size
    dataset.image_allocated = allocated(data / IMAGE_NAME)
    write_stamp(data)
    return dataset


# ---------------------------------------------------------------- the change


def scatter_writes(path: Path, budget: int, write: int, rng: random.Random) -> int:
    """Overwrite ``budget`` bytes of ``path`` in ``write``-sized pieces at
    random offsets; returns the bytes written."""
    size = path.stat().st_size
    written = 0
    with path.open("r+b") as f:
        while written < budget:
            length = min(write, size, budget - written)
            f.seek(rng.randrange(0, size - length + 1))
            f.write(rng.randbytes(length))
            written += length
    return written


def changeable_files(data: Path) -> list[Path]:
    """Regular non-empty files of the trees and the text, sorted."""
    return sorted(
        p
        for p in data.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and p.name not in (IMAGE_NAME, STAMP_NAME)
        and p.stat().st_size > 0
    )


def change_files(files: list[Path], budget: int, rng: random.Random) -> tuple[int, int]:
    """Spread ``budget`` bytes over random files, up to FILE_WRITE per write."""
    touched: set[Path] = set()
    written = 0
    while written < budget and files:
        path = rng.choice(files)
        written += scatter_writes(path, min(FILE_WRITE, budget - written), FILE_WRITE, rng)
        touched.add(path)
    return written, len(touched)


def change_dataset(data: Path, dataset: Dataset) -> None:
    """Modify ~1 % of the bytes in small scattered writes, sizes unchanged."""
    rng = random.Random(SEED + 2)
    image_budget = int(dataset.image_bytes * CHANGE_FRACTION)
    dataset.changed_image_bytes = scatter_writes(data / IMAGE_NAME, image_budget, IMAGE_WRITE, rng)
    tree_budget = int((dataset.bytes - dataset.image_bytes) * CHANGE_FRACTION)
    written, touched = change_files(changeable_files(data), tree_budget, rng)
    dataset.changed_tree_bytes, dataset.changed_files = written, touched
    dataset.image_allocated_changed = allocated(data / IMAGE_NAME)
    write_stamp(data)


# ---------------------------------------------------------------- verification


def manifest(root: Path) -> dict[str, str]:
    """Relative path -> content hash (files), link target, or "dir"."""
    entries = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            entries[key] = "link:" + os.readlink(path)
        elif path.is_dir():
            entries[key] = "dir"
        elif path.is_file():
            with path.open("rb") as f:
                entries[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return entries


def compare_trees(expected: dict[str, str], restored: Path) -> str:
    if not restored.is_dir():
        return f"FAILED: {restored} missing"
    actual = manifest(restored)
    image_ok = actual.get(IMAGE_NAME) == expected[IMAGE_NAME]
    differing = sorted(
        k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k)
    )
    image = "image hash ok" if image_ok else "image hash DIFFERS"
    tree = (
        f"all {len(expected)} entries ok"
        if not differing
        else f"{len(differing)} entries DIFFER, e.g. {differing[0]}"
    )
    return f"{image}, {tree}"


# ---------------------------------------------------------------- steps


def repo_size(repo: Path) -> int:
    if not repo.exists():
        return 0
    return sum(p.lstat().st_size for p in repo.rglob("*") if p.is_file() and not p.is_symlink())


@dataclass
class Bench:
    """What every step needs."""

    dataset: Dataset
    data: Path
    drop: bool
    startup_runs: int


def measure(tool: Tool, step: str, argv: list[str], cwd: Path, bench: Bench) -> Measurement:
    """Run one step on the main repository; its size after and growth."""
    before = repo_size(tool.repo_path())
    result = Measurement(tool.name, step)
    try:
        run = run_tool(tool, argv, cwd, bench.drop)
    except StepError as error:
        result.error = str(error)
        return result
    result.seconds, result.cpu_seconds, result.peak_rss = run.seconds, run.cpu_seconds, run.peak_rss
    result.returncode = run.returncode
    result.repo_size = repo_size(tool.repo_path())
    result.repo_growth = result.repo_size - before
    return result


def init_repo(tool: Tool, which: str) -> None:
    """Create a repository (not timed); StepError on failure."""
    tool.repo_path(which).parent.mkdir(parents=True, exist_ok=True)
    tool.home.mkdir(parents=True, exist_ok=True)
    try:
        run_tool(tool, tool.init_argv(which), tool.workdir, drop=False, which=which, strict=True)
    except StepError as error:
        raise StepError(f"init failed: {error}") from error


def backup_step(tool: Tool, step: str, bench: Bench) -> Measurement:
    if step == FIRST:
        try:
            init_repo(tool, "main")
        except StepError as error:
            return Measurement(tool.name, step, error=str(error))
    argv = tool.backup_argv("main", BACKUPS[step], "data")
    result = measure(tool, step, argv, tool.workdir, bench)
    if step == FIRST and result.error is None and not result.repo_growth:
        result.error = "the repository did not grow: nothing was backed up"
    result.bytes_done, result.files_done = bench.dataset.bytes, bench.dataset.files
    return result


def trees_step(tool: Tool, step: str, bench: Bench) -> Measurement:
    """First backup of the real trees alone into a repository of their own
    (removed afterwards): the small-files rate."""
    result = Measurement(tool.name, step)
    try:
        init_repo(tool, "trees")
        argv = tool.backup_argv("trees", "trees", "data/trees")
        run = run_tool(tool, argv, tool.workdir, bench.drop, which="trees")
    except StepError as error:
        result.error = str(error)
        return result
    result.seconds, result.cpu_seconds, result.peak_rss = run.seconds, run.cpu_seconds, run.peak_rss
    result.returncode = run.returncode
    result.repo_size = result.repo_growth = repo_size(tool.repo_path("trees"))
    result.files_done, result.bytes_done = bench.dataset.trees()
    shutil.rmtree(tool.repo_path("trees"))
    return result


def extract_step(tool: Tool, step: str, bench: Bench, expected: dict[str, str]) -> Measurement:
    """Extract the last archive into an empty dir, verify, then delete it."""
    target = tool.workdir / f"restore-{tool.name}"
    target.mkdir()
    result = measure(tool, step, tool.extract_argv(LAST_ARCHIVE, target), target, bench)
    result.repo_size = result.repo_growth = None
    if result.error is None:
        restored = target / bench.data.name
        result.verified = compare_trees(expected, restored)
        if (restored / IMAGE_NAME).is_file():
            result.image_allocated = allocated(restored / IMAGE_NAME)
        result.bytes_done, result.files_done = bench.dataset.bytes, bench.dataset.files
    shutil.rmtree(target)
    return result


def check_step(tool: Tool, step: str, bench: Bench) -> Measurement:
    result = measure(tool, step, tool.check_argv(), tool.workdir, bench)
    if result.error is None:
        result.bytes_done = result.repo_size
    result.repo_size = result.repo_growth = None
    return result


def small_repo(tool: Tool) -> None:
    """A small repository with one archive of a few files, for ``list``."""
    small = tool.workdir / "small" / tool.name
    small.mkdir(parents=True)
    for index in range(20):
        (small / f"file-{index:02d}.txt").write_text(f"small file {index}\n" * 50)
    init_repo(tool, "small")
    run_tool(tool, tool.backup_argv("small", "small", "."), small, drop=False, which="small")


def startup_step(tool: Tool, step: str, bench: Bench) -> Measurement:
    """Best of ``startup_runs`` runs; CPU of that run, the highest RSS."""
    result = Measurement(tool.name, step)
    runs = []
    try:
        if step == VERSION:
            argv = tool.version_argv()
        else:
            if not tool.repo_path("small").exists():
                small_repo(tool)
            argv = tool.list_argv("small")
        for _ in range(bench.startup_runs):
            runs.append(run_tool(tool, argv, tool.workdir, drop=False, which="small"))
    except StepError as error:
        result.error = str(error)
        return result
    best = min(runs, key=lambda r: r.seconds)
    result.seconds, result.cpu_seconds = best.seconds, best.cpu_seconds
    result.peak_rss = max(r.peak_rss for r in runs)
    result.samples = [round(r.seconds, 4) for r in runs]
    return result


def rotated(tools: list[Tool], index: int) -> list[Tool]:
    """The tools starting with a different one at each step."""
    if not tools:
        return []
    shift = index % len(tools)
    return tools[shift:] + tools[:shift]


def run_steps(tools: list[Tool], bench: Bench, steps: tuple[str, ...]) -> list[Measurement]:
    """All tools step by step, so each step sees the same data."""
    results: list[Measurement] = []
    live = list(tools)
    expected: dict[str, str] = {}
    for index, step in enumerate(STEPS):
        if step not in steps:
            continue
        if step == CHANGED:
            print("changing ~1 % of the data")
            change_dataset(bench.data, bench.dataset)
        if step == EXTRACT:
            expected = manifest(bench.data)
        for tool in rotated(live, index):
            print(f"{step}: {tool.label}", flush=True)
            if step in BACKUPS:
                result = backup_step(tool, step, bench)
            elif step == TREES:
                result = trees_step(tool, step, bench)
            elif step == EXTRACT:
                result = extract_step(tool, step, bench, expected)
            elif step == CHECK:
                result = check_step(tool, step, bench)
            else:
                result = startup_step(tool, step, bench)
            results.append(result)
            print(f"  {brief(result)}", flush=True)
            if result.error and step in BACKUPS:
                print(f"  {tool.label} left out of the later steps")
                live.remove(tool)
    return results


def brief(m: Measurement) -> str:
    if m.error:
        return f"FAILED: {m.error}"
    parts = [f"{m.seconds:.2f} s", f"cpu {m.cpu_seconds:.2f} s", f"RSS {mib(m.peak_rss)} MiB"]
    if m.repo_size is not None:
        parts.append(f"repo {mib(m.repo_size)} MiB")
    if m.verified:
        parts.append(m.verified)
    return ", ".join(parts)


# ---------------------------------------------------------------- settings, machine


def settings(tools: list[Tool]) -> dict[str, str]:
    found = {}
    for tool in tools:
        if tool.name == "restic":
            compression = f"compression {restic_compression(tool)}"
        else:
            compression = f"compression {tool.compression} (-C {tool.compression})"
        found[tool.name] = (
            f"encryption {tool.encryption_label}, {compression}, {tool.extract_mode()}"
        )
    return found


def restic_compression(tool: Tool) -> str:
    text = output_of([tool.executable, "backup", "--help"])
    match = re.search(r"--compression mode .*\(default (\w+)\)", text)
    version = re.search(
        r'"version":\s*(\d+)', output_of([tool.executable, "cat", "config"], tool.env())
    )
    repo_version = f"repo v{version.group(1)}" if version else "repo version unknown"
    return f"{match.group(1) if match else 'unknown'} (restic's default; {repo_version})"


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model.group(1) if model else platform.processor(),
        "memory": f"{int(mem.group(1)) / MiB:.1f} GiB" if mem else "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def hoard_checkout(tools: list[Tool]) -> Path:
    """The directory of the hoard package the measured ``hoard`` runs (its
    script's Python imports it), else this script's checkout."""
    for tool in tools:
        if tool.name != "hoard":
            continue
        python = Path(tool.executable).parent / "python"
        if python.exists():
            where = output_of([str(python), "-c", "import hoard; print(hoard.__file__)"])
            if where.endswith(".py") and Path(where).is_file():
                return Path(where).parent
    return Path(__file__).resolve().parent


def commit(checkout: Path) -> str:
    """The checkout's commit and the last one that changed ``src/``, "+
    uncommitted changes" when its tree differs from HEAD."""
    git = ["git", "-C", str(checkout)]
    head = output_of([*git, "rev-parse", "--short", "HEAD"])
    if not re.fullmatch(r"[0-9a-f]{4,40}", head):
        return f"unknown (no git checkout at {checkout})"
    top = output_of([*git, "rev-parse", "--show-toplevel"])
    src = output_of([*git, "log", "-1", "--format=%h", "--", f"{top}/src"])
    dirty = output_of([*git, "status", "--porcelain", "--untracked-files=no", "--", f"{top}/src"])
    text = f"{head} (src/ last changed in {src})"
    return f"{text} + uncommitted changes in src/" if dirty else text


def versions(tools: list[Tool]) -> dict[str, str]:
    return {t.name: first_line(output_of(t.version_argv())) for t in tools}


# ---------------------------------------------------------------- table


def mib(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value / MiB:.{digits}f}"


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def better_when_lower(other: float | None, hoard: float | None) -> float | None:
    """How many times better hoard is when less is better (time, RSS, size)."""
    if other is None or hoard is None or hoard <= 0:
        return None
    return other / hoard


@dataclass
class Row:
    label: str
    value: Callable[[Measurement], float | None]
    show: Callable[[float | None], str]
    ratio: bool = True


ROWS = (
    Row("time s", lambda m: m.seconds, number),
    Row("MB/s", lambda m: m.mb_per_second, lambda v: number(v, 1), ratio=False),
    Row("files/s", lambda m: m.files_per_second, lambda v: number(v, 0), ratio=False),
    Row("cpu s", lambda m: m.cpu_seconds, number),
    Row("peak RSS MiB", lambda m: m.peak_rss, mib),
    Row("repo MiB", lambda m: m.repo_size, mib),
    Row("growth MiB", lambda m: m.repo_growth, lambda v: mib(v, 2)),
    Row("image alloc MiB", lambda m: m.image_allocated, mib, ratio=False),
)


def ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(report: Report, names: list[str]) -> str:
    """One line per step and figure, the tools side by side, then hoard's
    ratio against each other tool (>1: hoard is better)."""
    others = [n for n in names if n != "hoard"] if "hoard" in names else []
    header = ["step", "figure", *names, *(f"vs {n}" for n in others)]
    lines = [header]
    by_key = {(m.tool, m.step): m for m in report.measurements}
    for step in STEPS:
        step_results = [by_key[(n, step)] for n in names if (n, step) in by_key]
        if not step_results:
            continue
        shown = step
        for row in ROWS:
            values = {
                n: row.value(by_key[(n, step)]) if (n, step) in by_key else None for n in names
            }
            if all(v is None for v in values.values()):
                continue
            ratios = [
                ratio_text(better_when_lower(values[n], values["hoard"])) if row.ratio else ""
                for n in others
            ]
            lines.append([shown, row.label, *(row.show(values[n]) for n in names), *ratios])
            shown = ""
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in lines
    )


# ---------------------------------------------------------------- targets


@dataclass
class Target:
    """One of issue 8's targets: hoard's ratio against a tool on one step."""

    step: str
    other: str
    figure: str  # "time", "growth"
    minimum: float
    wording: str


TARGETS = (
    Target(FIRST, "borg14", "time", 3.0, ">= 3x Borg 1.4's throughput"),
    Target(FIRST, "restic", "time", 1.75, ">= 1.75x restic's throughput"),
    Target(UNCHANGED, "borg14", "time", 2.0, ">= 2x Borg 1.4"),
    Target(UNCHANGED, "restic", "time", 1.3, ">= 1.3x restic"),
    Target(CHANGED, "borg14", "time", 2.0, "<= 0.5x Borg 1.4's time"),
    Target(CHANGED, "restic", "time", 1.0, "no slower than restic"),
    Target(CHANGED, "restic", "growth", 1.0, "growth no larger than restic's"),
    Target(EXTRACT, "borg14", "time", 2.0, ">= 2x Borg 1.4"),
    Target(EXTRACT, "restic", "time", 1.5, ">= 1.5x restic"),
    Target(CHECK, "borg14", "time", 2.0, ">= 2x Borg 1.4"),
    Target(VERSION, "borg14", "time", 1.0, "no slower than Borg 1.4"),
    Target(LIST, "borg14", "time", 1.0, "no slower than Borg 1.4"),
)
SMALL_FILES_TARGET = 8000.0


def verdict(value: float | None, minimum: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value >= minimum else "NOT met"


def target_lines(report: Report) -> list[str]:
    """Each of issue 8's targets with this run's figure and whether it is met."""
    by_key = {(m.tool, m.step): m for m in report.measurements if m.error is None}
    rows: list[tuple[str, str, str, str]] = []
    for t in TARGETS:
        hoard, other = by_key.get(("hoard", t.step)), by_key.get((t.other, t.step))
        value = None
        if hoard and other and t.figure == "time":
            value = better_when_lower(other.seconds, hoard.seconds)
        elif hoard and other and t.figure == "growth":
            value = better_when_lower(other.repo_growth, hoard.repo_growth)
        name = f"{t.step} vs {LABELS[t.other]}" + (", growth" if t.figure == "growth" else "")
        shown = "-" if value is None else f"{value:.2f}x"
        rows.append((name, shown, f"(target {t.wording})", verdict(value, t.minimum)))
    small = by_key.get(("hoard", TREES))
    rate = small.files_per_second if small else None
    rows.append(
        (
            f"{TREES}, hoard files/s",
            "-" if rate is None else f"{rate:.0f}",
            f"(target >= {SMALL_FILES_TARGET:.0f} files/s)",
            verdict(rate, SMALL_FILES_TARGET),
        )
    )
    rows.append(rss_target(by_key))
    rows.append(holes_target(report, by_key))
    report.targets = [list(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [
        f"  {a.ljust(widths[0])}  {b.rjust(widths[1])}  {c.ljust(widths[2])}  {d}"
        for a, b, c, d in rows
    ]


def rss_target(by_key: dict[tuple[str, str], Measurement]) -> tuple[str, str, str, str]:
    """Peak RSS no higher than Borg 1.4's in every step: the worst step."""
    worst: tuple[float, str] | None = None
    for step in STEPS:
        hoard, borg = by_key.get(("hoard", step)), by_key.get(("borg14", step))
        if hoard is None or borg is None:
            continue
        value = better_when_lower(borg.peak_rss, hoard.peak_rss)
        if value is not None and (worst is None or value < worst[0]):
            worst = (value, step)
    shown = "-" if worst is None else f"{worst[0]:.2f}x ({worst[1]})"
    return (
        "peak RSS vs Borg 1.4, worst step",
        shown,
        "(target >= 1x in every step)",
        verdict(worst[0] if worst else None, 1.0),
    )


def holes_target(
    report: Report, by_key: dict[tuple[str, str], Measurement]
) -> tuple[str, str, str, str]:
    """hoard's restored image should have every hole of the source: take
    no more blocks than it (plus 1 % and 1 MiB for block rounding)."""
    hoard = by_key.get(("hoard", EXTRACT))
    restored = hoard.image_allocated if hoard else None
    source = report.dataset.image_allocated_changed or report.dataset.image_allocated
    shown = "-" if restored is None else f"{mib(restored, 0)} MiB"
    wording = f"(image blocks after extract <= the source's {mib(source, 0)} MiB)"
    if restored is None:
        return ("extract, hoard's holes", shown, wording, "not measured")
    kept = restored <= source * 1.01 + MiB
    return ("extract, hoard's holes", shown, wording, "met" if kept else "NOT met")


# ---------------------------------------------------------------- report


def notes(report: Report) -> list[str]:
    lines = []
    for m in report.measurements:
        if m.verified:
            image = (
                f"; image allocates {mib(m.image_allocated, 0)} MiB"
                if m.image_allocated is not None
                else ""
            )
            lines.append(f"{LABELS[m.tool]} {m.step}: {m.verified}{image}")
        if m.samples:
            lines.append(f"{LABELS[m.tool]} {m.step}: runs {', '.join(map(str, m.samples))} s")
        if m.error:
            lines.append(f"{LABELS[m.tool]} {m.step}: FAILED {m.error}")
        elif m.returncode:
            lines.append(f"{LABELS[m.tool]} {m.step}: exit code {m.returncode} (warning, see logs)")
    for name, why in report.skipped.items():
        lines.append(f"{LABELS[name]} left out: {why}")
    return lines


def dataset_lines(d: Dataset) -> list[str]:
    lines = [
        f"dataset: {d.files} files, {d.bytes / MiB:.1f} MiB"
        f" ({d.bytes / 1e9:.2f} GB); real trees {d.trees()[0]} files"
    ]
    for p in d.parts:
        lines.append(f"  {p.name}: {p.files} files, {p.bytes / MiB:.1f} MiB ({p.source})")
    holes = "zero runs left as holes" if d.image_holes else "zero runs written as zeros, no holes"
    zeros = sum(length for kind, length in image_regions(d.image_bytes) if kind == "zeros")
    lines.append(
        f"  image: {holes} ({zeros / MiB:.0f} MiB of zero runs); {mib(d.image_allocated, 0)} MiB"
        f" allocated, {mib(d.image_allocated_changed, 0)} MiB after the change"
    )
    lines.append(
        f"change: {d.changed_image_bytes / MiB:.2f} MiB of the image in {IMAGE_WRITE // KiB} KiB"
        f" writes, {d.changed_tree_bytes / MiB:.2f} MiB in {d.changed_files} files in"
        f" <= {FILE_WRITE // KiB} KiB writes"
    )
    return lines


def print_report(report: Report, names: list[str]) -> None:
    m = report.machine
    print(f"\nmachine: {m['nproc']} cores, {m['cpu']}, {m['memory']} RAM, Linux {m['kernel']}")
    print(f"load average (1, 5, 15 min) at the start: {m['load']}, at the end: {m['load_end']}")
    print(f"hoard measured at commit {report.commit}")
    for name, version in report.versions.items():
        print(f"{name}: {version}; {report.settings[name]}")
    for line in dataset_lines(report.dataset):
        print(line)
    print(f"page cache: {report.cache}")
    print(
        "time: wall clock; MB/s and files/s: the step's data (MB = 10^6 bytes; check: the "
        "repository) per wall second; cpu: user+system; peak RSS: "
        f"{RSS_SOURCE}, the largest single process of the tool's tree, not a sum; startup: "
        "best of the runs"
    )
    print(
        "vs X: hoard's ratio against X, >1 means hoard is better (X's time / hoard's time, "
        "likewise cpu, RSS, size); MB/s and files/s have the time's ratio\n"
    )
    print(table(report, names))
    print("\ntargets (issue 8):")
    for line in target_lines(report):
        print(line)
    print()
    for line in notes(report):
        print(line)


# ---------------------------------------------------------------- main


def parse_size(text: str) -> int:
    units = {"K": KiB, "M": MiB, "G": GiB}
    text = text.upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def default_borg14_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "hoard-bench" / "borg14-venv"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "full"), default="full")
    parser.add_argument("--image-size", type=parse_size, default=None, help="e.g. 64M, 1G")
    parser.add_argument("--text-size", type=parse_size, default=None, help="e.g. 150M")
    parser.add_argument(
        "--no-image-holes",
        dest="image_holes",
        action="store_false",
        help="write the image's zero runs as zeros (default: leave them as holes)",
    )
    parser.add_argument(
        "--no-site-packages",
        dest="site_packages",
        action="store_false",
        help="copy the standard library without its site-packages",
    )
    parser.add_argument("--tools", default=",".join(ALL_TOOLS), help="e.g. hoard,borg14")
    parser.add_argument(
        "--steps",
        default=None,
        help=f"comma-separated subset of: {', '.join(STEPS)} (backups always run)",
    )
    parser.add_argument(
        "--hoard", type=Path, default=None, help="hoard to measure (default: beside this Python)"
    )
    parser.add_argument("--borg14", type=Path, default=None, help="an existing Borg 1.4 borg")
    parser.add_argument(
        "--borg14-venv",
        type=Path,
        default=default_borg14_venv(),
        help="venv to install Borg 1.4 into from PyPI (default %(default)s)",
    )
    parser.add_argument("--borg12", type=Path, default=None, help="Borg 1.2 (default: borg)")
    parser.add_argument(
        "--compression",
        default=COMPRESSION,
        help="-C for hoard and Borg (default %(default)s, issue 8's); restic keeps its default",
    )
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument(
        "--cold", action="store_true", help="drop the page cache before each step (root)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="empty or new directory")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    args = parser.parse_args(argv)
    small = args.size == "small"
    if args.image_size is None:
        args.image_size = 64 * MiB if small else GiB
    if args.text_size is None:
        args.text_size = 8 * MiB if small else 150 * MiB
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - set(ALL_TOOLS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))} (known: {', '.join(ALL_TOOLS)})")
    args.steps = parse_steps(parser, args.steps)
    if args.startup_runs < 1:
        parser.error("--startup-runs must be at least 1")
    return args


def parse_steps(parser: argparse.ArgumentParser, text: str | None) -> tuple[str, ...]:
    if text is None:
        return STEPS
    chosen = {s.strip() for s in text.split(",") if s.strip()}
    unknown = chosen - set(STEPS)
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    return tuple(s for s in STEPS if s in chosen or s in BACKUPS)


def make_workdir(given: Path | None) -> Path:
    if given is None:
        return Path(tempfile.mkdtemp(prefix="hoard-compare-")).resolve()
    given.mkdir(parents=True, exist_ok=True)
    if any(given.iterdir()):
        sys.exit(f"{given} is not empty")
    return given.resolve()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = make_workdir(args.workdir)
    (workdir / "logs").mkdir()
    print(f"work dir {workdir}, logs in {workdir / 'logs'}")
    try:
        tools, skipped = find_tools(args, workdir)
        if not tools:
            sys.exit("no tool to run")
        names = [t.name for t in tools]
        print(f"tools: {', '.join(f'{t.label} ({t.executable})' for t in tools)}")
        drop = args.cold and drop_caches()
        if args.cold and not drop:
            print("cannot drop the page cache (not root or read-only /proc): warm cache")
        cache = "cold: dropped before each step" if drop else "warm (data read once before)"
        data = workdir / "data"
        dataset = build_dataset(data, args)
        if not drop:
            warm(data)
        checkout = hoard_checkout(tools)
        report = Report(
            machine(), commit(checkout), versions(tools), settings(tools), cache, dataset
        )
        report.skipped = skipped
        bench = Bench(dataset, data, drop, args.startup_runs)
        report.measurements = run_steps(tools, bench, args.steps)
        report.settings = settings(tools)
        report.machine["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print_report(report, names)
        if args.json:
            args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
            print(f"\nfigures written to {args.json}")
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work dir kept: {workdir}")


if __name__ == "__main__":
    main()
