"""The client cache container: whole files of the right kind and repository, or a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hoard.storage.cachefile import (
    HEADER_SIZE,
    TRAILER_SIZE,
    BodyReader,
    BodyWriter,
    CacheKind,
    CacheUnusableError,
    read_cache,
    sweep_temporary_files,
    write_cache,
)

KIND = CacheKind("test", 3)
REPO = bytes(range(32))
PAYLOAD = [b"alpha", b"", b"x" * 1000]


def _write(body: BodyWriter) -> int:
    for item in PAYLOAD:
        body.write(len(item).to_bytes(4, "little"))
        body.write(item)
    return len(PAYLOAD)


def _read(body: BodyReader) -> list[bytes]:
    items = []
    while body.remaining:
        n = int.from_bytes(body.read(4), "little")
        items.append(body.read(n))
    return items


def test_round_trip_returns_results_and_the_same_trailer(tmp_path: Path) -> None:
    path = tmp_path / "c"
    count, digest = write_cache(path, KIND, REPO, _write)
    assert count == 3
    items, again = read_cache(path, KIND, REPO, _read)
    assert items == PAYLOAD and again == digest
    body = sum(4 + len(p) for p in PAYLOAD)
    assert path.stat().st_size == HEADER_SIZE + body + TRAILER_SIZE
    assert sorted(os.listdir(tmp_path)) == ["c"]


@pytest.mark.parametrize(
    ("kind", "repo", "reason"),
    [
        (CacheKind("other", 3), REPO, "it holds 'test', not 'other'"),
        (CacheKind("test", 4), REPO, "layout version 3, this hoard reads 4"),
        (KIND, bytes(32), f"it belongs to repository {REPO.hex()}"),
    ],
)
def test_other_kind_version_or_repository_is_refused(
    tmp_path: Path, kind: CacheKind, repo: bytes, reason: str
) -> None:
    write_cache(tmp_path / "c", KIND, REPO, _write)
    with pytest.raises(CacheUnusableError, match=reason):
        read_cache(tmp_path / "c", kind, repo, _read)


def test_every_flipped_byte_and_every_cut_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c"
    write_cache(path, KIND, REPO, _write)
    data = path.read_bytes()
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(CacheUnusableError):
            read_cache(path, KIND, REPO, _read)
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(CacheUnusableError):
            read_cache(path, KIND, REPO, _read)


def test_keyed_checksum_needs_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c"
    write_cache(path, KIND, REPO, _write, key=b"k" * 32)
    assert read_cache(path, KIND, REPO, _read, key=b"k" * 32)[0] == PAYLOAD
    with pytest.raises(CacheUnusableError, match="another key"):
        read_cache(path, KIND, REPO, _read, key=b"j" * 32)
    with pytest.raises(CacheUnusableError, match="checksum mismatch"):
        read_cache(path, KIND, REPO, _read)


def test_parser_that_disagrees_with_the_length_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c"
    write_cache(path, KIND, REPO, _write)
    with pytest.raises(CacheUnusableError, match="shorter than its content says"):
        read_cache(path, KIND, REPO, lambda body: body.read(10_000))
    with pytest.raises(CacheUnusableError, match="trailing bytes"):
        read_cache(path, KIND, REPO, lambda body: body.read(4))

    def inconsistent(body: BodyReader) -> None:
        raise ValueError("entries are not sorted")

    with pytest.raises(CacheUnusableError, match="not sorted"):
        read_cache(path, KIND, REPO, inconsistent)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_cache(tmp_path / "nothing", KIND, REPO, _read)


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "c"
    write_cache(path, KIND, REPO, _write)
    old = path.read_bytes()

    def failing(body: BodyWriter) -> None:
        body.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_cache(path, KIND, REPO, failing)
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["c"]


def test_write_sweeps_only_stale_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "c"
    stale = tmp_path / ".c.tmp-1-00000000"
    recent = tmp_path / ".c.tmp-2-00000000"
    unrelated = tmp_path / ".d.tmp-1-00000000"
    for temp in (stale, recent, unrelated):
        temp.write_bytes(b"left by a crash")
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    os.utime(unrelated, (1_000_000_000, 1_000_000_000))
    write_cache(path, KIND, REPO, _write)
    assert not stale.exists()
    assert recent.exists() and unrelated.exists()
    sweep_temporary_files(path, older_than=-10)
    assert not recent.exists()


def test_kind_names_are_short_ascii() -> None:
    with pytest.raises(ValueError, match="1-8 ASCII"):
        CacheKind("much-too-long", 1)
