"""Backing up over ssh: hoard against ``ssh cat`` of the same bytes and against Borg 1.4.

Run from the checkout with the venv's Python, as root (it starts its own
sshd on 127.0.0.1 with tests/sshd.py)::

    .venv/bin/python benchmarks/ssh.py [--mib 1024] [--runs 3] [--workdir DIR]
        [--borg14 PATH | --borg14-venv DIR] [--cipher NAME]

It writes one incompressible file of ``--mib`` MiB (what travels is then
the same for every tool), and times, alternating the tools in each round:

- ``ssh HOST cat > /dev/null < FILE``: what the link carries;
- ``hoard create -C lz4`` into an ssh:// repository (repokey);
- ``borg create -C lz4`` (Borg 1.4 from PyPI) into an ssh:// repository;
- ``hoard create -C lz4`` into a local repository, for reference.

It prints the best time of each, MB/s, and the ratios hoard/ssh-cat (the
issue's target: at least 0.8) and hoard/Borg. All processes (both ssh
ends, both servers, the clients) share this machine's cores, so on a
2-core machine the client's own work competes with ssh's encryption.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from tests import sshd as sshd_module  # noqa: E402

from compare import find_borg14  # noqa: E402

MiB = 1024 * 1024


def timed(argv: list[str], env: dict[str, str], **kw: object) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False, **kw)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--borg14", type=Path, default=None)
    parser.add_argument(
        "--borg14-venv", type=Path, default=Path.home() / ".cache" / "hoard-bench" / "borg14-venv"
    )
    parser.add_argument("--cipher", default=None, help="ssh -c CIPHER for every tool")
    args = parser.parse_args()
    if not sshd_module.available():
        raise SystemExit("needs root, /usr/sbin/sshd and ssh (apt-get install openssh-server)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hoard-ssh-bench."))
    workdir.mkdir(parents=True, exist_ok=True)
    hoard = shutil.which("hoard", path=os.path.dirname(sys.executable)) or "hoard"
    borg, why = find_borg14(args.borg14, args.borg14_venv, workdir / "install.log")
    if borg is None:
        print(f"Borg 1.4 left out: {why}")
    server = sshd_module.start(workdir / "sshd", hoard)
    try:
        run_rounds(args, workdir, server, hoard, borg)
    finally:
        server.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def run_rounds(
    args: argparse.Namespace, workdir: Path, server: sshd_module.Sshd, hoard: str, borg: str | None
) -> None:
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    source = data / "random.bin"
    with source.open("wb") as out:
        for _ in range(args.mib):
            out.write(os.urandom(MiB))
    rsh = server.rsh + (f" -c {args.cipher}" if args.cipher else "")
    env = {
        **os.environ,
        "BORG_RSH": rsh,
        "BORG_PASSPHRASE": "bench",
        "BORG_BASE_DIR": str(workdir / "base"),
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
    }
    best: dict[str, float] = {}

    def record(name: str, seconds: float) -> None:
        best[name] = min(seconds, best.get(name, seconds))
        print(
            f"  {name:<16} {seconds:6.2f} s  {args.mib * MiB / seconds / 1e6:7.1f} MB/s", flush=True
        )

    ssh_words = [*shlex.split(rsh), "-p", str(server.port), "root@127.0.0.1"]
    for n in range(args.runs):
        print(f"round {n + 1}")
        with source.open("rb") as stdin:
            record("ssh cat", timed([*ssh_words, "cat > /dev/null"], env, stdin=stdin))
        record("hoard over ssh", backup(hoard, server.url(workdir / f"h{n}"), env, data))
        if borg is not None:
            record("Borg 1.4 over ssh", backup(borg, server.url(workdir / f"b{n}"), env, data))
        record("hoard local", backup(hoard, str(workdir / f"l{n}"), env, data))
        for name in (f"h{n}", f"b{n}", f"l{n}"):
            shutil.rmtree(workdir / name, ignore_errors=True)
    print()
    print(f"best of {args.runs}, {args.mib} MiB of random data, -C lz4, repokey:")
    for name, seconds in best.items():
        print(f"  {name:<18} {seconds:6.2f} s  {args.mib * MiB / seconds / 1e6:7.1f} MB/s")
    print(f"  hoard over ssh / ssh cat throughput: {best['ssh cat'] / best['hoard over ssh']:.2f}")
    if "Borg 1.4 over ssh" in best:
        ratio = best["Borg 1.4 over ssh"] / best["hoard over ssh"]
        print(f"  hoard / Borg 1.4 throughput over ssh: {ratio:.2f}")


def backup(tool: str, repo: str, env: dict[str, str], data: Path) -> float:
    """init (not timed), then the timed ``create``; the same program serves."""
    tool_env = {**env, "BORG_REMOTE_PATH": tool}
    timed([tool, "init", "-e", "repokey", repo], tool_env)
    return timed([tool, "create", "-C", "lz4", f"{repo}::a", "."], tool_env, cwd=data)


if __name__ == "__main__":
    main()
