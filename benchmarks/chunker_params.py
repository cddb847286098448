"""Repository growth after a scattered 1 % change, against chunk count, per chunker params.

Run from the checkout with the venv's Python (hoard installed editable)::

    .venv/bin/python benchmarks/chunker_params.py [--image-size 512M]
        [--params fastcdc,19,23,21 fastcdc,19,23,20 ...] [--workdir DIR]

For each ``--chunker-params`` value: a new repository (``-e repokey``,
``-C lz4``), a backup of a deterministic disk-image-like file (40 % random,
30 % zero runs, 30 % text-like regions of 1-16 MiB), then 1 % of the
image's bytes overwritten in 64 KiB writes at random offsets (the same
writes for every value), a second backup. Printed: chunks of the first
backup, the growth of the repository by the second, the chunk index's RAM
for the first backup's unique chunks (64 bytes an entry, the index's bound), and
the time of each backup. Figures are from one run on this machine.

Why it matters: a smaller average chunk means less new data after a small
change, and more chunks (index entries, per-chunk overhead) for the same
data. docs/design/chunking.md records the run that chose the default.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MiB = 1024 * 1024
SEED = 20240601
WRITE = 64 * 1024
INDEX_BYTES_PER_ENTRY = 64
DEFAULT_PARAMS = ["fastcdc,19,23,21", "fastcdc,19,23,20", "fastcdc,18,23,20", "fastcdc,18,22,19"]


def write_image(path: Path, size: int) -> None:
    """The disk-image-like file: regions of random, zero and text-like bytes."""
    rng = np.random.default_rng(SEED)
    words = rng.integers(ord("a"), ord("z") + 1, size=(256, 8), dtype=np.uint8)
    words[:, 6:] = ord(" ")
    with path.open("wb") as out:
        done = 0
        while done < size:
            kind = str(rng.choice(["random", "zeros", "text"], p=[0.4, 0.3, 0.3]))
            length = min(int(rng.integers(MiB, 16 * MiB)) // 4096 * 4096, size - done)
            if kind == "zeros":
                out.write(bytes(length))
            elif kind == "random":
                out.write(rng.bytes(length))
            else:
                picks = rng.integers(0, len(words), size=length // 8 + 1)
                out.write(words[picks].tobytes()[:length])
            done += length


def change(path: Path, fraction: float = 0.01) -> None:
    """Overwrite ``fraction`` of the file's bytes in WRITE-sized pieces (seeded)."""
    rng = random.Random(SEED + 2)
    size = path.stat().st_size
    budget = int(size * fraction)
    with path.open("r+b") as f:
        written = 0
        while written < budget:
            f.seek(rng.randrange(0, size - WRITE + 1))
            f.write(rng.randbytes(WRITE))
            written += WRITE


def repo_size(repo: Path) -> int:
    return sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())


def hoard(env: dict[str, str], *args: str, cwd: Path) -> float:
    hoard_exe = Path(sys.executable).with_name("hoard")
    start = time.monotonic()
    subprocess.run([str(hoard_exe), *args], cwd=cwd, env=env, check=True, capture_output=True)
    return time.monotonic() - start


def chunks_of(env: dict[str, str], repo: Path, cwd: Path) -> int:
    hoard_exe = Path(sys.executable).with_name("hoard")
    out = subprocess.run(
        [str(hoard_exe), "info", "--json", str(repo)],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(json.loads(out)["cache"]["stats"]["total_unique_chunks"])


def measure(work: Path, image: Path, params: str) -> dict[str, float]:
    run = work / params.replace(",", "_")
    data = run / "data"
    data.mkdir(parents=True)
    shutil.copyfile(image, data / "disk.img")
    env = {**os.environ, "HOARD_PASSPHRASE": "benchmark", "HOARD_BASE_DIR": str(run / "base")}
    repo = run / "repo"
    hoard(env, "init", "-e", "repokey", str(repo), cwd=run)
    first = hoard(
        env, "create", "-C", "lz4", "--chunker-params", params, f"{repo}::first", "data", cwd=run
    )
    before = repo_size(repo)
    chunks = chunks_of(env, repo, run)
    change(data / "disk.img")
    second = hoard(
        env, "create", "-C", "lz4", "--chunker-params", params, f"{repo}::second", "data", cwd=run
    )
    growth = repo_size(repo) - before
    shutil.rmtree(run)
    return {"chunks": chunks, "growth": growth, "first": first, "second": second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", default="512M", help="size of the image (K, M, G)")
    parser.add_argument("--params", nargs="+", default=DEFAULT_PARAMS)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    text = args.image_size.upper()
    size = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    work = Path(tempfile.mkdtemp(prefix="hoard-chunker-", dir=args.workdir))
    try:
        image = work / "disk.img"
        write_image(image, size)
        print(f"image {size / MiB:.0f} MiB; change: 1 % in 64 KiB writes at random offsets")
        print(f"{'params':<20} {'chunks':>7} {'avg KiB':>8} {'growth MiB':>11} "
              f"{'index KiB':>10} {'first s':>8} {'second s':>9}")  # fmt: skip
        for params in args.params:
            r = measure(work, image, params)
            print(
                f"{params:<20} {r['chunks']:>7.0f} {size / r['chunks'] / 1024:>8.0f} "
                f"{r['growth'] / MiB:>11.1f} {r['chunks'] * INDEX_BYTES_PER_ENTRY / 1024:>10.1f} "
                f"{r['first']:>8.2f} {r['second']:>9.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
