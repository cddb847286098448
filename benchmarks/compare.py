"""Speed and memory of hoard against Borg 1.2 and restic on the same dataset.

Run from the checkout with the venv's Python (hoard installed editable)::

    .venv/bin/python benchmarks/compare.py [--size small|full] [--image-size 1G]
        [--tools hoard,borg,restic] [--workdir DIR] [--json FILE] [--keep]

The dataset is a copy of this Python installation (the standard library
without its site-packages, plus the venv's site-packages) and a
deterministic disk-image-like file (random, zero and text-like regions).
Each tool runs with encryption on and its default compression; its
passphrase comes from the environment and its cache and config live in the
work dir. Steps: first backup, unchanged second backup, backup after a
scattered ~1 % change, full restore to an empty dir (verified by hash).

Every figure comes from one run on this machine. Time is wall-clock of the
tool's process; CPU is its user+system time; peak RSS is ``ru_maxrss`` from
``os.wait4()`` on the tool's process: the largest resident set of any single
process in its tree (reaped children included), not their sum.
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
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
SEED = 20240601
PASSPHRASE = "benchmark passphrase, not secret"
ALL_TOOLS = ("hoard", "borg", "restic")
STEPS = ("first backup", "unchanged backup", "1% change backup", "extract/restore")
RESTORE = STEPS[3]
ARCHIVES = ("first", "unchanged", "changed")
IMAGE_NAME = "disk.img"
STAMP_NAME = "zz-newest.txt"
REGION_MIN, REGION_MAX = 1 * MiB, 16 * MiB
IMAGE_WRITE = 64 * KiB
FILE_WRITE = 4 * KiB
CHANGE_FRACTION = 0.01
SMALL_STDLIB_DIRS = ("json", "email")
APT_PACKAGES = {"borg": "borgbackup", "restic": "restic"}


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
    verified: str | None = None
    error: str | None = None


@dataclass
class Dataset:
    """What was backed up."""

    tree_files: int
    tree_bytes: int
    image_bytes: int
    changed_image_bytes: int = 0
    changed_tree_bytes: int = 0
    changed_files: int = 0


@dataclass
class Report:
    machine: dict[str, str]
    versions: dict[str, str]
    settings: dict[str, str]
    cache: str
    dataset: Dataset
    measurements: list[Measurement] = field(default_factory=list)


class StepError(Exception):
    pass


# ---------------------------------------------------------------- tools


@dataclass
class Tool:
    """How to drive one backup program; hoard and borg share Borg's CLI."""

    name: str
    executable: str
    workdir: Path
    env_prefix: str = "BORG_"
    encryption: str = "repokey-blake2"
    encryption_label: str = "repokey-blake2 (AES-256-CTR + BLAKE2b MAC)"

    @property
    def repo(self) -> Path:
        return self.workdir / "repos" / self.name

    @property
    def home(self) -> Path:
        return self.workdir / "home" / self.name

    def env(self) -> dict[str, str]:
        """The caller's environment without any backup tool's variables."""
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BORG_", "HOARD_", "RESTIC_", "XDG_"))
        }
        keep.update(HOME=str(self.home), LC_ALL="C.UTF-8", LANG="C.UTF-8")
        keep.update(self.tool_env())
        return keep

    def tool_env(self) -> dict[str, str]:
        p = self.env_prefix
        return {
            f"{p}PASSPHRASE": PASSPHRASE,
            f"{p}BASE_DIR": str(self.home),
            f"{p}DISPLAY_PASSPHRASE": "no",
        }

    def init_argv(self) -> list[str]:
        return [self.executable, "init", "-e", self.encryption, str(self.repo)]

    def backup_argv(self, archive: str) -> list[str]:
        return [self.executable, "create", f"{self.repo}::{archive}", "data"]

    def restore_argv(self, archive: str, target: Path) -> list[str]:
        return [self.executable, "extract", f"{self.repo}::{archive}"]

    def restored_data(self, target: Path, data: Path) -> Path:
        """Where the restore puts the backed-up ``data`` dir: all three tools
        (restic too: its trees start at the basename) restore it as target/data."""
        return target / data.name

    def version_argv(self) -> list[str]:
        return [self.executable, "--version"]


@dataclass
class Restic(Tool):
    env_prefix: str = "RESTIC_"
    encryption: str = ""
    encryption_label: str = "AES-256-CTR + Poly1305-AES (restic's only mode)"

    def tool_env(self) -> dict[str, str]:
        return {
            "RESTIC_PASSWORD": PASSPHRASE,
            "RESTIC_REPOSITORY": str(self.repo),
            "RESTIC_CACHE_DIR": str(self.home / "cache"),
        }

    def init_argv(self) -> list[str]:
        return [self.executable, "init"]

    def backup_argv(self, archive: str) -> list[str]:
        return [self.executable, "backup", "--host", "bench", "--tag", archive, "data"]

    def restore_argv(self, archive: str, target: Path) -> list[str]:
        return [self.executable, "restore", "latest", "--tag", archive, "--target", str(target)]

    def version_argv(self) -> list[str]:
        return [self.executable, "version"]


def hoard_executable() -> str | None:
    beside = Path(sys.executable).parent / "hoard"
    return str(beside) if beside.exists() else shutil.which("hoard")


def make_tool(name: str, executable: str, workdir: Path) -> Tool:
    if name == "hoard":
        label = "repokey (= repokey-chacha20-poly1305)"
        return Tool(name, executable, workdir, "HOARD_", "repokey", label)
    if name == "borg":
        return Tool(name, executable, workdir)
    return Restic(name, executable, workdir)


def install_missing(names: list[str]) -> None:
    """apt-get install Debian's borgbackup/restic when missing and root."""
    missing = [APT_PACKAGES[n] for n in names if n in APT_PACKAGES and not shutil.which(n)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"not root or no apt-get: cannot install {', '.join(missing)}")
        return
    print(f"installing {', '.join(missing)} with apt-get")
    subprocess.run(["apt-get", "update"], check=False)
    subprocess.run(["apt-get", "install", "-y", *missing], check=False)


def available_tools(names: list[str], workdir: Path) -> list[Tool]:
    tools = []
    for name in names:
        executable = hoard_executable() if name == "hoard" else shutil.which(name)
        if executable is None:
            print(f"{name} is missing: running the others")
            continue
        tools.append(make_tool(name, executable, workdir))
    return tools


# ---------------------------------------------------------------- running


def run_measured(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> Run:
    """Run ``argv``; its wall time, CPU time and peak RSS from ``wait4``."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss=usage.ru_maxrss * KiB,
        returncode=proc.returncode,
    )


def log_tail(log: Path, lines: int = 1) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])


def run_tool(tool: Tool, argv: list[str], cwd: Path, drop: bool) -> Run:
    """Run one tool command after dropping the page cache if allowed."""
    prepare_cache(drop)
    log = tool.workdir / "logs" / f"{tool.name}.log"
    run = run_measured(argv, cwd, tool.env(), log)
    if run.returncode not in (0, 1):  # 1 is Borg's "warning"
        raise StepError(f"rc {run.returncode}: {log_tail(log)}")
    return run


def output_of(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    except OSError as error:
        return f"unavailable ({error})"
    return (done.stdout + done.stderr).strip()


# ---------------------------------------------------------------- page cache


def try_drop_caches() -> bool:
    """Drop the page cache; False if refused (not root, read-only /proc)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def prepare_cache(drop: bool) -> None:
    if drop:
        try_drop_caches()


# ---------------------------------------------------------------- dataset


def source_dirs(size: str) -> list[tuple[Path, str]]:
    """(source, name in the dataset) pairs for this Python installation."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if size == "small":
        return [(stdlib / d, f"stdlib-{d}") for d in SMALL_STDLIB_DIRS]
    pairs = [(stdlib, "stdlib")]
    if sys.prefix != sys.base_prefix:
        pairs.append((Path(sysconfig.get_paths()["purelib"]), "venv-site-packages"))
    return pairs


def copy_tree(source: Path, target: Path) -> None:
    """Copy ``source``; the stdlib's own site-packages is left out."""

    def ignore(directory: str, names: list[str]) -> list[str]:
        return ["site-packages"] if Path(directory) == source else []

    try:
        shutil.copytree(source, target, symlinks=True, ignore=ignore)
    except shutil.Error as error:  # files vanishing while being copied
        print(f"  {len(error.args[0])} files could not be copied from {source}")


def text_words(rng: np.random.Generator, count: int) -> np.ndarray:
    """A vocabulary of ``count`` 8-byte words (lowercase letters + separator)."""
    letters = rng.integers(ord("a"), ord("z") + 1, size=(count, 8), dtype=np.uint8)
    lengths = rng.integers(2, 8, size=count)
    for row, length in zip(letters, lengths, strict=True):
        row[length:] = ord(" ")
    letters[::16, 7] = ord("\n")
    return letters


def image_region(rng: np.random.Generator, kind: str, size: int, words: np.ndarray) -> bytes:
    if kind == "zeros":
        return bytes(size)
    if kind == "random":
        return rng.bytes(size)
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


def write_image(path: Path, size: int) -> None:
    """Deterministic disk-image-like file; zero runs are written, not holes."""
    rng = np.random.default_rng(SEED + 1)
    words = text_words(rng, 256)
    with path.open("wb") as out:
        for kind, length in image_regions(size):
            out.write(image_region(rng, kind, length, words))


def write_stamp(data: Path) -> None:
    """Written last so the newest ctime is a tiny file: Borg does not
    remember files whose ctime is the newest it saw, and rereads them."""
    (data / STAMP_NAME).write_text(f"{time.time_ns()}\n")


def tree_files(data: Path) -> list[Path]:
    """Regular files of the copied tree (not the image), sorted."""
    return sorted(
        p
        for p in data.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name not in (IMAGE_NAME, STAMP_NAME)
    )


def build_dataset(data: Path, size: str, image_size: int) -> Dataset:
    data.mkdir(parents=True)
    print(f"writing {image_size / MiB:.0f} MiB image")
    write_image(data / IMAGE_NAME, image_size)
    for source, name in source_dirs(size):
        print(f"copying {source}")
        copy_tree(source, data / "python" / name)
    write_stamp(data)
    files = tree_files(data)
    return Dataset(len(files), sum(p.stat().st_size for p in files), image_size)


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


def change_files(files: list[Path], budget: int, rng: random.Random) -> tuple[int, int]:
    """Spread ``budget`` bytes over random files, up to FILE_WRITE per write."""
    candidates = [p for p in files if p.stat().st_size > 0]
    touched: set[Path] = set()
    written = 0
    while written < budget and candidates:
        path = rng.choice(candidates)
        written += scatter_writes(path, min(FILE_WRITE, budget - written), FILE_WRITE, rng)
        touched.add(path)
    return written, len(touched)


def change_dataset(data: Path, dataset: Dataset) -> None:
    """Modify ~1 % of the bytes in small scattered writes, sizes unchanged."""
    rng = random.Random(SEED + 2)
    image_budget = int(dataset.image_bytes * CHANGE_FRACTION)
    dataset.changed_image_bytes = scatter_writes(data / IMAGE_NAME, image_budget, IMAGE_WRITE, rng)
    tree_budget = int(dataset.tree_bytes * CHANGE_FRACTION)
    written, touched = change_files(tree_files(data), tree_budget, rng)
    dataset.changed_tree_bytes, dataset.changed_files = written, touched
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
    tree = "tree ok" if not differing else f"{len(differing)} entries differ, e.g. {differing[0]}"
    return f"{image}, {tree}"


# ---------------------------------------------------------------- steps


def repo_size(repo: Path) -> int:
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file() and not p.is_symlink())


def measure(tool: Tool, step: str, argv: list[str], cwd: Path, drop: bool) -> Measurement:
    """Run one step; repo size after it and growth during it."""
    before = repo_size(tool.repo) if tool.repo.exists() else 0
    result = Measurement(tool.name, step)
    try:
        run = run_tool(tool, argv, cwd, drop)
    except StepError as error:
        result.error = str(error)
        return result
    result.seconds, result.cpu_seconds, result.peak_rss = run.seconds, run.cpu_seconds, run.peak_rss
    result.repo_size = repo_size(tool.repo)
    result.repo_growth = result.repo_size - before
    return result


def init_repo(tool: Tool) -> str | None:
    """Create the repository (not timed); an error message on failure."""
    tool.repo.parent.mkdir(parents=True, exist_ok=True)
    tool.home.mkdir(parents=True, exist_ok=True)
    try:
        run_tool(tool, tool.init_argv(), tool.workdir, drop=False)
    except StepError as error:
        return f"init failed: {error}"
    return None


def backup_step(tool: Tool, step: str, archive: str, drop: bool) -> Measurement:
    return measure(tool, step, tool.backup_argv(archive), tool.workdir, drop)


def restore_step(tool: Tool, expected: dict[str, str], drop: bool) -> Measurement:
    """Restore the last archive into an empty dir, verify, then delete it."""
    target = tool.workdir / f"restore-{tool.name}"
    target.mkdir()
    archive = ARCHIVES[-1]
    result = measure(tool, RESTORE, tool.restore_argv(archive, target), target, drop)
    if result.error is None:
        result.verified = compare_trees(expected, tool.restored_data(target, data_dir(tool)))
    shutil.rmtree(target)
    return result


def data_dir(tool: Tool) -> Path:
    return tool.workdir / "data"


def failed(tool: Tool, step: str, error: str) -> Measurement:
    return Measurement(tool.name, step, error=error)


# ---------------------------------------------------------------- settings, machine


def default_compressions(tools: list[Tool]) -> dict[str, str]:
    """Each tool's default compression, as the tool itself states it."""
    found = {}
    for tool in tools:
        found[tool.name] = default_compression(tool)
    return found


def default_compression(tool: Tool) -> str:
    if tool.name == "hoard":
        try:
            from hoard.objects.compression import DEFAULT_COMPRESSION  # noqa: PLC0415
        except ImportError:
            return "unknown (hoard not importable)"
        return str(DEFAULT_COMPRESSION)
    if tool.name == "borg":
        text = output_of([tool.executable, "help", "compression"])
        match = re.search(r"Compression is (\S+) by default", text)
        return match.group(1) if match else "unknown"
    text = output_of([tool.executable, "backup", "--help"])
    match = re.search(r"--compression mode .*\(default (\w+)\)", text)
    version = re.search(
        r'"version":\s*(\d+)', output_of([tool.executable, "cat", "config"], tool.env())
    )
    repo_version = f"repo v{version.group(1)}" if version else "repo version unknown"
    return f"{match.group(1) if match else 'unknown'} ({repo_version})"


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
    }


def versions(tools: list[Tool]) -> dict[str, str]:
    return {t.name: output_of(t.version_argv()).splitlines()[0] for t in tools}


# ---------------------------------------------------------------- table


def mib(value: int | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value / MiB:.{digits}f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def ratio(other: float | None, hoard: float | None) -> str:
    if other is None or hoard is None or hoard <= 0:
        return "-"
    return f"{other / hoard:.2f}"


ROWS = (
    ("time s", "seconds", seconds),
    ("cpu s", "cpu_seconds", seconds),
    ("peak RSS MiB", "peak_rss", mib),
    ("repo MiB", "repo_size", mib),
    ("growth MiB", "repo_growth", lambda v: mib(v, 3)),
)


def table(report: Report, names: list[str]) -> str:
    others = [n for n in names if n != "hoard"] if "hoard" in names else []
    header = ["step", "figure", *names, *(f"{n}/hoard" for n in others)]
    lines = [header]
    by_key = {(m.tool, m.step): m for m in report.measurements}
    for step in STEPS:
        rows = [r for r in ROWS if step != RESTORE or r[1] not in ("repo_size", "repo_growth")]
        for index, (label, attr, fmt) in enumerate(rows):
            values = {n: getattr(by_key.get((n, step)), attr, None) for n in names}
            ratios = [ratio(values[n], values["hoard"]) for n in others]
            shown = step if index == 0 else ""
            lines.append([shown, label, *(fmt(values[n]) for n in names), *ratios])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in lines
    )


def notes(report: Report) -> list[str]:
    lines = []
    for m in report.measurements:
        if m.verified:
            lines.append(f"{m.tool} {m.step}: {m.verified}")
        if m.error:
            lines.append(f"{m.tool} {m.step}: {m.error}")
    return lines


def print_report(report: Report, names: list[str]) -> None:
    d = report.dataset
    m = report.machine
    print(f"\nmachine: {m['nproc']} cores, {m['cpu']}, {m['memory']} RAM, Linux {m['kernel']}")
    for name, version in report.versions.items():
        print(f"{name}: {version}; {report.settings[name]}")
    print(
        f"dataset: {d.tree_files} files, {d.tree_bytes / MiB:.1f} MiB + "
        f"{d.image_bytes / MiB:.0f} MiB image; change: {d.changed_image_bytes / MiB:.2f} MiB of "
        f"the image in {IMAGE_WRITE // KiB} KiB writes, {d.changed_tree_bytes / MiB:.2f} MiB "
        f"in {d.changed_files} files in <= {FILE_WRITE // KiB} KiB writes"
    )
    print(f"page cache: {report.cache}")
    print(
        "time: wall clock; cpu: user+system; peak RSS: ru_maxrss from wait4() of the tool's "
        "process (largest single process of its tree, not a sum)"
    )
    print("ratios: other tool / hoard, >1 means hoard is faster or smaller\n")
    print(table(report, names))
    for line in notes(report):
        print(line)


# ---------------------------------------------------------------- main


def parse_size(text: str) -> int:
    units = {"K": KiB, "M": MiB, "G": GiB}
    text = text.upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "full"), default="full")
    parser.add_argument("--image-size", type=parse_size, default=None, help="e.g. 64M, 1G")
    parser.add_argument("--tools", default=",".join(ALL_TOOLS), help="e.g. hoard,borg")
    parser.add_argument("--workdir", type=Path, default=None, help="empty or new directory")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    args = parser.parse_args(argv)
    if args.image_size is None:
        args.image_size = 64 * MiB if args.size == "small" else GiB
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - set(ALL_TOOLS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    return args


def make_workdir(given: Path | None) -> Path:
    if given is None:
        return Path(tempfile.mkdtemp(prefix="hoard-compare-")).resolve()
    given.mkdir(parents=True, exist_ok=True)
    if any(given.iterdir()):
        sys.exit(f"{given} is not empty")
    return given.resolve()


def run_steps(tools: list[Tool], dataset: Dataset, drop: bool) -> list[Measurement]:
    """All tools step by step, so each step sees the same data."""
    results: list[Measurement] = []
    live = list(tools)
    for tool in list(live):
        error = init_repo(tool)
        result = (
            failed(tool, STEPS[0], error)
            if error
            else backup_step(tool, STEPS[0], ARCHIVES[0], drop)
        )
        results.append(result)
        if result.error:
            live.remove(tool)
    results += [backup_step(t, STEPS[1], ARCHIVES[1], drop) for t in live]
    print("changing ~1 % of the data")
    change_dataset(tools[0].workdir / "data", dataset)
    results += [backup_step(t, STEPS[2], ARCHIVES[2], drop) for t in live]
    expected = manifest(tools[0].workdir / "data")
    results += [restore_step(t, expected, drop) for t in live]
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    install_missing(args.tools)
    workdir = make_workdir(args.workdir)
    (workdir / "logs").mkdir()
    print(f"work dir {workdir}, logs in {workdir / 'logs'}")
    tools = available_tools(args.tools, workdir)
    if not tools:
        sys.exit("no tool to run")
    drop = try_drop_caches()
    cache = "cold: dropped before each step" if drop else "warm cache (drop_caches refused)"
    dataset = build_dataset(workdir / "data", args.size, args.image_size)
    report = Report(machine(), versions(tools), {}, cache, dataset)
    report.measurements = run_steps(tools, dataset, drop)
    compressions = default_compressions(tools)
    report.settings = {
        t.name: f"encryption {t.encryption_label}, default compression {compressions[t.name]}"
        for t in tools
    }
    print_report(report, [t.name for t in tools])
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    if args.workdir is None and not args.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
