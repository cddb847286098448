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
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
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


def rate(fn: Callable[[bytes], object], buffers: list[bytes], rounds: int) -> float:
    """Best single-thread MB/s of ``fn`` over all ``buffers``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for buf in buffers:
            fn(buf)
        best = min(best, time.perf_counter() - start)
    return sum(map(len, buffers)) / best / 1e6


def rate_2t(fn: Callable[[bytes], object], buffers: list[bytes], rounds: int) -> float:
    """Best aggregate MB/s with two threads, each running ``fn`` over all ``buffers``."""

    def work(_: int) -> None:
        for buf in buffers:
            fn(buf)

    best = float("inf")
    with ThreadPoolExecutor(2) as pool:
        for _ in range(rounds):
            start = time.perf_counter()
            list(pool.map(work, range(2)))
            best = min(best, time.perf_counter() - start)
    return 2 * sum(map(len, buffers)) / best / 1e6


def row(label: str, one: float, two: float | None = None, extra: str = "") -> None:
    two_text = f"{two:9.0f} ({two / one:4.2f}x)" if two is not None else " " * 17
    print(f"  {label:34s} {one:9.0f} {two_text} {extra}")


def bench_compression(corpora: dict[str, list[bytes]], rounds: int) -> None:
    print("compression (hoard.objects.compression, MB/s of input)  1T   2T   ratio  decompress 1T")
    specs = ["lz4", "zstd,1", "zstd,3", "zstd,6", "auto,zstd,3", "zlib,6", "lzma,6"]
    for name, buffers in corpora.items():
        print(f" corpus {name}: {len(buffers)} x 2 MiB")
        for text in specs:
            spec = parse_compression(text)
            sample = buffers[:1] if spec.name == "lzma" else buffers
            tries = 1 if spec.name in ("lzma", "zlib") else rounds
            packed = [compress(spec, b) for b in sample]
            ratio = sum(map(len, sample)) / sum(map(len, packed))
            one = rate(lambda b, s=spec: compress(s, b), sample, tries)
            two = rate_2t(lambda b, s=spec: compress(s, b), sample, tries) if tries > 1 else None
            dec = rate(decompress, packed, tries) * ratio  # MB/s of output
            row(text, one, two, f"{ratio:5.2f}  {dec:6.0f}")


def bench_ids(buffers: list[bytes], rounds: int) -> None:
    print("keyed ids on 2 MiB (MB/s)                        1T         2T")
    key = os.urandom(32)
    candidates: dict[str, Callable[[bytes], object]] = {
        "blake3 keyed, max_threads=1": lambda b: blake3.blake3(b, key=key).digest(),
        "blake3 keyed, max_threads=2": lambda b: blake3.blake3(
            b, key=key, max_threads=2
        ).digest(),
        "blake3 unkeyed (mode none)": lambda b: blake3.blake3(b).digest(),
        "HMAC-SHA256": lambda b: hmac.digest(key, b, "sha256"),
        "blake2b keyed (32-byte digest)": lambda b: hashlib.blake2b(
            b, key=key, digest_size=32
        ).digest(),
        "sha256 unkeyed": lambda b: hashlib.sha256(b).digest(),
    }
    for label, fn in candidates.items():
        row(label, rate(fn, buffers, rounds), rate_2t(fn, buffers, rounds))


def bench_aead(buffers: list[bytes], rounds: int) -> None:
    print("envelope seal / open on 2 MiB (MB/s)             1T         2T")
    key = os.urandom(32)
    oid = os.urandom(32)
    for suite in Suite:
        env = Envelope(suite, key, key)
        sealed = [env.seal(ObjectType.DATA, oid, b) for b in buffers]
        seal = lambda b, e=env: e.seal(ObjectType.DATA, oid, b)  # noqa: E731
        row(f"seal {suite.name}", rate(seal, buffers, rounds), rate_2t(seal, buffers, rounds))
        opener = lambda b, e=env: e.open(ObjectType.DATA, oid, b)  # noqa: E731
        row(f"open {suite.name}", rate(opener, sealed, rounds), rate_2t(opener, sealed, rounds))
    nonce = bytes(12)
    for cls in (ChaCha20Poly1305, AESGCM, AESOCB3):
        cipher = cls(key)
        raw = lambda b, c=cipher: c.encrypt(nonce, b, b"ad")  # noqa: E731
        row(f"raw {cls.__name__}.encrypt", rate(raw, buffers, rounds))


def bench_kdf() -> None:
    start = time.perf_counter()
    DEFAULT_KDF.derive("correct horse battery staple", bytes(32))
    elapsed = time.perf_counter() - start
    print(f"Argon2id default (t=3, m=64 MiB, p=4): {elapsed * 1000:.0f} ms per derivation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpora, fewer rounds")
    args = parser.parse_args()
    limit, rounds = (8 * MIB, 2) if args.quick else (32 * MIB, 3)
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
