"""Throughput of the objects layer's building blocks on 2 MiB buffers.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/objects.py [--quick]``.
Prints MB/s (10**6 bytes per second) single-threaded ("1T") and the
aggregate with two threads ("2T", each thread on its own buffers, which is
how the create pipeline uses them), plus compression ratios. The figures
back the choices in docs/design/compression.md and docs/design/crypto.md.

Corpora: ``text`` = the Python standard library's .py files concatenated,
``binary`` = its compiled .pyc and extension modules, ``random`` =
os.urandom. Each result is the best of several rounds, because the machine
is shared and a round may be disturbed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import blake3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESOCB3, ChaCha20Poly1305

from hoard.objects.compression import compress, decompress, parse_compression
from hoard.objects.envelope import Envelope
from hoard.objects.kdf import DEFAULT_KDF
from hoard.objects.types import ObjectType, Suite

MIB = 1 << 20
CHUNK = 2 * MIB
STDLIB = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"


def load_corpus(patterns: Iterable[str], limit: int) -> list[bytes]:
    """Concatenate matching stdlib files (sorted, so runs compare) into 2 MiB buffers."""
    blob = bytearray()
    for pattern in patterns:
        for path in sorted(STDLIB.rglob(pattern)):
            if "site-packages" in path.parts or not path.is_file():
                continue
            blob += path.read_bytes()
            if len(blob) >= limit:
                break
    blob = blob[: limit - limit % CHUNK]
    return [bytes(blob[i : i + CHUNK]) for i in range(0, len(blob), CHUNK)]


def rate(
    fn: Callable[[bytes], object], buffers: list[bytes], rounds: int, threads: int = 1
) -> float:
    """Best aggregate MB/s of ``threads`` worker threads, each running ``fn`` over all ``buffers``.

    Single-thread figures also run in a worker thread, as in the create
    pipeline: in the main thread glibc's default malloc thresholds make each
    fresh 2 MiB result page-fault (a 2 MiB copy drops from ~12,000 to ~1,300
    MB/s), which would penalise whichever candidate allocates most.
    """

    def work(_: int) -> None:
        for buf in buffers:
            fn(buf)

    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(rounds):
            start = time.perf_counter()
            list(pool.map(work, range(threads)))
            best = min(best, time.perf_counter() - start)
    return threads * sum(map(len, buffers)) / best / 1e6


def rate_2t(fn: Callable[[bytes], object], buffers: list[bytes], rounds: int) -> float:
    """``rate`` with two threads."""
    return rate(fn, buffers, rounds, threads=2)


def releases_gil(fn: Callable[[bytes], object], data: bytes) -> bool:
    """Whether one call of ``fn`` on ``data`` (make the call last 10+ ms) lets Python code run.

    A second thread sleeps 1 ms at a time and counts its wake-ups; waking up
    needs the GIL, so the count only moves during the call if ``fn`` released
    it. Unlike a 2-thread speed-up, this needs almost no CPU from the other
    core, so it holds on a shared machine.
    """
    count = 0
    running = True

    def sleeper() -> None:
        nonlocal count
        while running:
            time.sleep(0.001)
            count += 1

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.01)
    before = count
    fn(data)
    moved = count - before
    running = False
    thread.join()
    return moved >= 3


def row(label: str, one: float, two: float | None = None, extra: str = "") -> None:
    two_text = f"{two:9.0f} ({two / one:4.2f}x)" if two is not None else " " * 17
    print(f"  {label:34s} {one:9.0f} {two_text} {extra}")


def bench_compression(corpora: dict[str, list[bytes]], rounds: int) -> None:
    print(
        "compression (hoard.objects.compression), MB/s of input:"
        "  1T  2T  ratio  decompress-1T  GIL-released"
    )
    specs = ["lz4", "zstd,1", "zstd,3", "zstd,6", "auto,zstd,3", "zlib,6", "lzma,6"]
    for name, buffers in corpora.items():
        print(f" corpus {name}: {len(buffers)} x 2 MiB")
        for text in specs:
            spec = parse_compression(text)
            sample = buffers[:1] if spec.name == "lzma" else buffers
            tries = 1 if spec.name in ("lzma", "zlib") else rounds
            packed = [compress(spec, b) for b in sample]
            ratio = sum(map(len, sample)) / sum(map(len, packed))
            fn = partial(compress, spec)
            one = rate(fn, sample, tries)
            two = rate_2t(fn, sample, tries) if tries > 1 else None
            dec = rate(decompress, packed, tries) * ratio  # MB/s of output
            # random data passes in under a millisecond: too short to probe
            gil = "-" if name == "random" else releases_gil(fn, b"".join(sample))
            row(text, one, two, f"{ratio:5.2f}  {dec:6.0f}  {gil}")


def bench_ids(buffers: list[bytes], rounds: int) -> None:
    print("keyed ids on 2 MiB (MB/s)                        1T         2T         GIL-released")
    key = os.urandom(32)
    candidates: dict[str, Callable[[bytes], object]] = {
        "blake3 keyed, max_threads=1": lambda b: blake3.blake3(b, key=key).digest(),
        "blake3 keyed, max_threads=2": lambda b: blake3.blake3(b, key=key, max_threads=2).digest(),
        "blake3 keyed, max_threads=AUTO": lambda b: blake3.blake3(
            b, key=key, max_threads=blake3.blake3.AUTO
        ).digest(),
        "blake3 unkeyed (mode none)": lambda b: blake3.blake3(b).digest(),
        "HMAC-SHA256": lambda b: hmac.digest(key, b, "sha256"),
        "blake2b keyed (32-byte digest)": lambda b: hashlib.blake2b(
            b, key=key, digest_size=32
        ).digest(),
        "sha256 unkeyed": lambda b: hashlib.sha256(b).digest(),
    }
    joined = b"".join(buffers) * max(1, 64 * MIB // (len(buffers) * CHUNK))
    for label, fn in candidates.items():
        gil = releases_gil(fn, joined)
        row(label, rate(fn, buffers, rounds), rate_2t(fn, buffers, rounds), str(gil))


def bench_aead(buffers: list[bytes], rounds: int) -> None:
    print("envelope seal / open on 2 MiB (MB/s)             1T         2T         GIL-released")
    key = os.urandom(32)
    oid = os.urandom(32)
    joined = b"".join(buffers) * max(1, 64 * MIB // (len(buffers) * CHUNK))
    for suite in Suite:
        env = Envelope(suite, key, key)
        sealed = [env.seal(ObjectType.DATA, oid, b) for b in buffers]
        seal = partial(env.seal, ObjectType.DATA, oid)
        gil = str(releases_gil(seal, joined))
        row(f"seal {suite.name}", rate(seal, buffers, rounds), rate_2t(seal, buffers, rounds), gil)
        opener = partial(env.open, ObjectType.DATA, oid)
        row(f"open {suite.name}", rate(opener, sealed, rounds), rate_2t(opener, sealed, rounds))
    for cls in (ChaCha20Poly1305, AESGCM, AESOCB3):
        raw = raw_encrypt(cls(key))
        row(f"raw {cls.__name__}.encrypt", rate(raw, buffers, rounds))


def raw_encrypt(cipher: ChaCha20Poly1305 | AESGCM | AESOCB3) -> Callable[[bytes], bytes]:
    """The bare library call, to show what the envelope's framing costs on top."""
    nonce = bytes(12)

    def encrypt(data: bytes) -> bytes:
        return cipher.encrypt(nonce, data, b"associated data")

    return encrypt


def bench_kdf() -> None:
    start = time.perf_counter()
    DEFAULT_KDF.derive("correct horse battery staple", bytes(32))
    elapsed = time.perf_counter() - start
    print(f"Argon2id default (t=3, m=64 MiB, p=4): {elapsed * 1000:.0f} ms per derivation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpora, fewer rounds")
    args = parser.parse_args()
    limit, rounds = (8 * MIB, 2) if args.quick else (32 * MIB, 5)
    corpora = {
        "text": load_corpus(["*.py"], limit),
        "binary": load_corpus(["*.pyc", "*.so"], limit),
        "random": [os.urandom(CHUNK) for _ in range(limit // CHUNK // 2)],
    }
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, stdlib at {STDLIB}")
    bench_compression(corpora, rounds)
    bench_ids(corpora["random"], rounds)
    bench_aead(corpora["random"], rounds)
    bench_kdf()


if __name__ == "__main__":
    main()
