"""Tests of hoard.archive.fileread on real (sparse) files, pipes and /proc files."""

from __future__ import annotations

import errno
import functools
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import blake3
import pytest

from hoard.archive.chunker import ChunkerParams, ChunkKind, make_chunker
from hoard.archive.fileread import (
    DEFAULT_BUFFER_SIZE,
    Fragment,
    FragmentKind,
    ReadStats,
    _read_sparse,
    as_fragments,
    read_fragments,
)

MiB = 1024 * 1024


def random_bytes(seed: int, size: int) -> bytes:
    return blake3.blake3(seed.to_bytes(8, "little")).digest(length=size)


def make_sparse(path: Path, size: int, writes: dict[int, bytes]) -> bytes:
    """Create a sparse file: truncate to ``size``, write at offsets; return its content."""
    content = bytearray(size)
    with path.open("wb") as f:
        f.truncate(size)
        for offset, data in writes.items():
            f.seek(offset)
            f.write(data)
            content[offset : offset + len(data)] = data
    return bytes(content)


def reports_holes(path: Path) -> bool:
    """Whether this file system tells where the holes are (tmp may be ext4, overlay, tmpfs)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE) < os.fstat(fd).st_size
    finally:
        os.close(fd)


def fragments_of(
    path: Path, *, sparse: bool = True, buffer_size: int = DEFAULT_BUFFER_SIZE
) -> tuple[list[Fragment], ReadStats]:
    stats = ReadStats()
    fd = os.open(path, os.O_RDONLY)
    try:
        fragments = read_fragments(fd, sparse=sparse, buffer_size=buffer_size, stats=stats)
        return list(fragments), stats
    finally:
        os.close(fd)


def expand(fragments: list[Fragment]) -> bytes:
    return b"".join(f.data if f.data is not None else bytes(f.size) for f in fragments)


@pytest.fixture
def sparse_file(tmp_path: Path) -> Iterator[tuple[Path, bytes]]:
    path = tmp_path / "sparse"
    writes = {MiB: random_bytes(1, 10_000), 5 * MiB + 123: random_bytes(2, 5000)}
    yield path, make_sparse(path, 8 * MiB, writes)


def test_holes_are_reported_and_not_read(sparse_file: tuple[Path, bytes]) -> None:
    path, content = sparse_file
    fragments, stats = fragments_of(path)
    assert expand(fragments) == content
    holes = [f for f in fragments if f.kind is FragmentKind.HOLE]
    if reports_holes(path):
        assert fragments[0] == Fragment.hole(MiB)
        assert fragments[-1].kind is FragmentKind.HOLE
        assert len(holes) == 3
        assert stats.bytes_read < 256 * 1024
        assert stats.hole_bytes == sum(f.size for f in holes)
        assert stats.bytes_read + stats.hole_bytes == len(content)
    else:
        assert holes == []
        assert stats.bytes_read == len(content)


def test_tmp_file_system_reports_holes(sparse_file: tuple[Path, bytes]) -> None:
    """The sparse tests must not pass by taking the "no holes" branch where holes work."""
    path, _ = sparse_file
    fs_type = _fs_type(path)
    assert reports_holes(path) or fs_type not in {"ext4", "xfs", "btrfs", "tmpfs"}, fs_type


def _fs_type(path: Path) -> str:
    """The file system type of ``path`` from /proc/self/mounts (longest matching mount point)."""
    best, fs_type = "", "unknown"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mount_point, kind = line.split()[1:3]
        if str(path).startswith(mount_point) and len(mount_point) > len(best):
            best, fs_type = mount_point, kind
    return fs_type


def test_without_sparse_everything_is_read(sparse_file: tuple[Path, bytes]) -> None:
    path, content = sparse_file
    fragments, stats = fragments_of(path, sparse=False, buffer_size=MiB)
    assert all(f.kind is FragmentKind.DATA for f in fragments)
    assert [f.size for f in fragments] == [MiB] * 8
    assert expand(fragments) == content
    assert (stats.bytes_read, stats.hole_bytes, stats.reads) == (len(content), 0, 9)


def test_a_file_that_is_all_hole_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty-disk"
    make_sparse(path, 3 * MiB, {})
    fragments, stats = fragments_of(path)
    if reports_holes(path):
        assert fragments == [Fragment.hole(3 * MiB)]
        assert (stats.bytes_read, stats.reads) == (0, 0)
    else:
        assert expand(fragments) == bytes(3 * MiB)


def test_data_fragments_are_at_most_buffer_size(tmp_path: Path) -> None:
    path = tmp_path / "dense"
    content = random_bytes(3, 300 * 1024)
    path.write_bytes(content)
    for sparse in (True, False):
        fragments, stats = fragments_of(path, buffer_size=64 * 1024, sparse=sparse)
        assert [f.size for f in fragments] == [64 * 1024] * 4 + [44 * 1024]
        assert expand(fragments) == content
        assert stats.bytes_read == len(content)


def test_an_empty_file_gives_no_fragments(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert fragments_of(path)[0] == []
    assert fragments_of(path, sparse=False)[0] == []


def test_reading_starts_at_the_current_offset(sparse_file: tuple[Path, bytes]) -> None:
    path, content = sparse_file
    for sparse in (True, False):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.lseek(fd, MiB + 5000, os.SEEK_SET)
            assert expand(list(read_fragments(fd, sparse=sparse))) == content[MiB + 5000 :]
        finally:
            os.close(fd)


def test_a_pipe_is_read_plainly() -> None:
    content = random_bytes(4, 30_000)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, content)
        os.close(write_end)
        stats = ReadStats()
        fragments = list(read_fragments(read_end, stats=stats))
    finally:
        os.close(read_end)
    assert all(f.kind is FragmentKind.DATA for f in fragments)
    assert expand(fragments) == content
    assert stats.bytes_read == len(content)


def test_a_file_system_without_hole_support_falls_back_to_reading() -> None:
    path = "/proc/version"  # procfs: EINVAL for SEEK_DATA, content stable between reads
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as info:
            os.lseek(fd, 0, os.SEEK_DATA)
        assert info.value.errno == errno.EINVAL  # procfs cannot report holes
        os.lseek(fd, 0, os.SEEK_SET)
        fragments = list(read_fragments(fd, buffer_size=50))
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        assert expand(fragments) == f.read()
    assert len(fragments) > 1
    assert all(f.kind is FragmentKind.DATA for f in fragments)


def test_read_stats_add_up_across_files(tmp_path: Path) -> None:
    stats = ReadStats()
    for i in range(3):
        path = tmp_path / f"f{i}"
        path.write_bytes(random_bytes(i, 1000))
        fd = os.open(path, os.O_RDONLY)
        try:
            list(read_fragments(fd, stats=stats))
        finally:
            os.close(fd)
    assert stats.bytes_read == 3000


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="buffer_size"):
        list(read_fragments(0, buffer_size=0))
    with pytest.raises(ValueError, match="positive"):
        Fragment.hole(0)
    with pytest.raises(OSError):
        list(read_fragments(999_999))


def test_as_fragments_wraps_and_copies_mutable_buffers() -> None:
    buffer = bytearray(b"abc")
    fragments = list(as_fragments([buffer, b"", memoryview(b"de"), Fragment.hole(4), b"f"]))
    buffer[0] = ord("x")
    assert fragments == [
        Fragment.of_data(b"abc"),
        Fragment.of_data(b"de"),
        Fragment.hole(4),
        Fragment.of_data(b"f"),
    ]
    assert all(type(f.data) is bytes for f in fragments if f.data is not None)


def test_chunking_a_sparse_file_reads_only_its_data(sparse_file: tuple[Path, bytes]) -> None:
    path, content = sparse_file
    fragments, stats = fragments_of(path)
    chunker = make_chunker(ChunkerParams.parse("fastcdc,10,16,12"), bytes(32))
    chunks = list(chunker.chunks(fragments))
    assert sum(c.size for c in chunks) == len(content)
    hole_bytes = sum(c.size for c in chunks if c.kind is ChunkKind.HOLE)
    assert hole_bytes == stats.hole_bytes
    stored = sum(c.size for c in chunks if c.kind is ChunkKind.DATA)
    assert stored <= stats.bytes_read
    if reports_holes(path):
        assert hole_bytes > 7 * MiB


T = TypeVar("T")


def finishes_within(seconds: float, work: Callable[[], T]) -> T:
    """Run ``work`` in a daemon thread; fail the test if it does not end in time.

    (No pytest-timeout: a reader that loops forever must fail, not hang the run.)
    """
    outcome: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"reading did not finish within {seconds} s (endless loop?)")
    if errors:
        raise errors[0]
    return outcome[0]


def read_device(path: str, *, sparse: bool = True) -> tuple[list[Fragment], ReadStats]:
    stats = ReadStats()
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(read_fragments(fd, sparse=sparse, stats=stats)), stats
    finally:
        os.close(fd)


def test_dev_null_answers_zero_to_every_seek_and_still_ends() -> None:
    fd = os.open("/dev/null", os.O_RDONLY)
    try:  # the trap: a "data region" [0, 0) that never moves on
        assert os.lseek(fd, 0, os.SEEK_DATA) == os.lseek(fd, 0, os.SEEK_HOLE) == 0
    finally:
        os.close(fd)
    for sparse in (True, False):
        fragments, stats = finishes_within(
            10, functools.partial(read_device, "/dev/null", sparse=sparse)
        )
        assert fragments == []
        assert (stats.bytes_read, stats.hole_bytes) == (0, 0)


def test_a_sparse_read_without_progress_falls_back_to_plain_reading() -> None:
    # The device check in read_fragments keeps /dev/null away from the sparse
    # reader; the reader's own guard must still end if handed such a file.
    def read() -> list[Fragment]:
        fd = os.open("/dev/null", os.O_RDONLY)
        try:
            return list(_read_sparse(fd, 0, DEFAULT_BUFFER_SIZE, ReadStats()))
        finally:
            os.close(fd)

    assert finishes_within(10, read) == []


def test_dev_zero_yields_data_rather_than_spinning() -> None:
    def first_fragments() -> list[Fragment]:
        fd = os.open("/dev/zero", os.O_RDONLY)
        try:
            return list(itertools.islice(read_fragments(fd, buffer_size=4096), 3))
        finally:
            os.close(fd)

    fragments = finishes_within(10, first_fragments)
    assert fragments == [Fragment.of_data(bytes(4096))] * 3


def test_a_fifo_fed_slowly_by_a_thread_is_read_to_its_end(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pieces = [random_bytes(10 + i, 7000) for i in range(5)]

    def feed() -> None:
        with fifo.open("wb", buffering=0) as f:
            for piece in pieces:
                f.write(piece)
                time.sleep(0.02)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    fragments, stats = finishes_within(10, lambda: read_device(str(fifo)))
    feeder.join(10)
    assert all(f.kind is FragmentKind.DATA for f in fragments)
    assert expand(fragments) == b"".join(pieces)
    assert (stats.bytes_read, stats.hole_bytes) == (35_000, 0)


def test_a_regular_file_reporting_size_zero_is_read_plainly() -> None:
    # procfs files are regular files of size 0 with content
    path = "/proc/self/status"
    assert os.stat(path).st_size == 0
    fragments, stats = finishes_within(10, lambda: read_device(path))
    assert b"Name:" in expand(fragments)
    assert stats.hole_bytes == 0
