"""Tests of hoard.archive.filescache on real files in tmp_path.

A "backup" here is what the walker does with the cache: load, per file
``lookup``, read and ``remember`` the files that are not ``U``, ``save``. The
backup start time is an argument (the module reads no clock); tests derive it
from the files' own timestamps so that nothing sleeps.
"""

from __future__ import annotations

import logging
import os
import random
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import blake3
import numpy as np
import pytest

from hoard.archive.filescache import (
    FINE_GRANULE_NS,
    K0_DTYPE,
    ROW_DTYPE,
    SECOND_NS,
    FilesCache,
    FilesCacheMode,
    _AbsolutePaths,
    _Probe,
    _Table,
    cache_file_path,
)
from hoard.archive.items import ZERO_ID, ChunkRef
from hoard.errors import InputError

SECOND = 1_000_000_000
REPO = bytes(range(32))
OTHER_REPO = bytes(range(1, 33))
SECRET = b"per-repository secret, 32 bytes."
OLD_NS = 1_000_000_000 * SECOND  # 2001-09-09


def chunks_of(path: Path) -> list[ChunkRef]:
    """The 'chunker' of these tests: one chunk per file, id = BLAKE3 of the content."""
    data = path.read_bytes()
    if not data:
        return []
    return [ChunkRef(blake3.blake3(data).digest(), len(data))]


def start_after(paths: Iterable[Path], seconds: int = 10) -> int:
    """A backup start ``seconds`` after the newest ctime of ``paths`` ("now")."""
    return max(p.stat().st_ctime_ns for p in paths) + seconds * SECOND


def wait_for_ctime_after(probe: Path, than_ns: int) -> None:
    """Touch ``probe`` until the file system's ctime clock is past ``than_ns``,
    so that every later change gets a newer ctime (ctime ticks are coarse)."""
    probe.touch()
    for _ in range(1_000_000):
        os.utime(probe)
        if probe.stat().st_ctime_ns > than_ns:
            return
    raise AssertionError("the ctime clock does not advance")


def change_ctime(path: Path) -> None:
    """chmod back and forth until the ctime differs (ctime ticks are coarse)."""
    before = path.stat().st_ctime_ns
    mode = stat.S_IMODE(path.stat().st_mode)
    for _ in range(1_000_000):
        path.chmod(mode ^ 0o001)
        path.chmod(mode)
        if path.stat().st_ctime_ns != before:
            return
    raise AssertionError("ctime did not change")


class Repo:
    """The chunk ids a repository holds, filled by the test backups."""

    def __init__(self) -> None:
        self.ids: set[bytes] = set()
        self.asked: list[bytes] = []

    def contains(self, id_: bytes) -> bool:
        self.asked.append(id_)
        return id_ in self.ids


class Fixture:
    """Files under ``root``, a cache under ``cache_dir``, and backups of them."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "data"
        self.root.mkdir()
        self.probe = tmp_path / "probe"
        self.cache_dir = tmp_path / "cache"
        self.repo = Repo()
        self.reads: list[Path] = []
        # Borg's FAQ advice: a small file with the newest timestamp, so that the
        # files under test are not the newest ones of their backup (those are racy).
        self.sentinel = self.file("zz-newest", b"n")
        os.utime(self.sentinel, ns=(2**62, 2**62))

    def file(self, name: str, data: bytes, mtime_ns: int | None = OLD_NS) -> Path:
        path = self.root / name
        path.write_bytes(data)
        if mtime_ns is not None:
            os.utime(path, ns=(mtime_ns, mtime_ns))
        return path

    def save(self, cache: FilesCache) -> None:
        """Remember the sentinel (so it, not the test's file, is the newest) and save."""
        cache.remember(bytes(self.sentinel), self.sentinel.stat(), chunks_of(self.sentinel))
        cache.save()

    def save_checkpoint(self, cache: FilesCache) -> None:
        """As ``save``, for a checkpoint of an unfinished backup."""
        cache.remember(bytes(self.sentinel), self.sentinel.stat(), chunks_of(self.sentinel))
        cache.save(checkpoint=True)

    def next_ctime_tick(self) -> None:
        """Wait until changes made from now on get a ctime newer than any file's."""
        wait_for_ctime_after(self.probe, max(p.stat().st_ctime_ns for p in self.root.iterdir()))

    def load(self, mode: str = "ctime,size,inode", **kwargs: object) -> FilesCache:
        kwargs.setdefault("start_ns", start_after(self.root.iterdir()))
        return FilesCache.load(
            self.cache_dir,
            REPO,
            SECRET,
            FilesCacheMode.parse(mode),
            **kwargs,  # type: ignore[arg-type]
        )

    def backup(
        self, paths: Iterable[Path], mode: str = "ctime,size,inode", **kwargs: object
    ) -> dict[str, str]:
        """One backup of ``paths`` (plus the sentinel); returns name -> status."""
        cache = self.load(mode, **kwargs)
        statuses: dict[str, str] = {}
        for path in [*paths, self.sentinel]:
            st = path.stat()
            result = cache.lookup(bytes(path), st, self.repo.contains)
            statuses[path.name] = result.status
            if result.status == "U":
                assert result.chunks is not None
                continue
            assert result.chunks is None
            self.reads.append(path)
            chunks = chunks_of(path)
            self.repo.ids.update(c.id for c in chunks)
            cache.remember(bytes(path), st, chunks)
        cache.save()
        del statuses[self.sentinel.name]
        return statuses

    @property
    def cache_file(self) -> Path:
        return cache_file_path(self.cache_dir, REPO)


@pytest.fixture
def fx(tmp_path: Path) -> Fixture:
    return Fixture(tmp_path)


# --- modes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical", "letters"),
    [
        ("ctime,size,inode", "ctime,size,inode", "cis"),
        ("inode, size ,ctime", "ctime,size,inode", "cis"),
        ("mtime,size,inode", "mtime,size,inode", "ims"),
        ("ctime,size", "ctime,size", "cs"),
        ("size,mtime", "mtime,size", "ms"),
        ("rechunk,ctime", "rechunk,ctime", "cr"),
        ("mtime,rechunk", "rechunk,mtime", "mr"),
        ("disabled", "disabled", "d"),
    ],
)
def test_mode_parse(text: str, canonical: str, letters: str) -> None:
    mode = FilesCacheMode.parse(text)
    assert (str(mode), mode.letters) == (canonical, letters)


def test_mode_flags() -> None:
    cis = FilesCacheMode.parse("ctime,size,inode")
    assert (cis.ctime, cis.mtime, cis.size, cis.inode, cis.rechunk, cis.disabled) == (
        True,
        False,
        True,
        True,
        False,
        False,
    )
    mr = FilesCacheMode.parse("rechunk,mtime")
    assert (mr.ctime, mr.mtime, mr.rechunk, mr.disabled) == (False, False, True, False)
    assert FilesCacheMode.parse("disabled").disabled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "unknown ''"),
        ("ctime,sizes", "unknown 'sizes'"),
        ("ctime,mtime,size", "use one of ctime,size,inode; mtime,size,inode"),
        ("size", "use one of"),
        ("rechunk", "use one of"),
        ("ctime,inode", "use one of"),
        ("disabled,ctime", "use one of"),
    ],
)
def test_mode_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(InputError, match="invalid files cache mode") as info:
        FilesCacheMode.parse(text)
    assert message in str(info.value)


# --- unchanged and changed files ----------------------------------------------------------


def test_unchanged_file_comes_from_the_cache(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    empty = fx.file("empty", b"")
    assert fx.backup([a, empty]) == {"a": "A", "empty": "A"}
    fx.reads.clear()
    assert fx.backup([a, empty]) == {"a": "U", "empty": "U"}
    assert fx.reads == [fx.sentinel]  # the racy sentinel is read again, the others not


def test_u_means_not_read(fx: Fixture) -> None:
    """mtime,size,inode trusts metadata: same-size new content with the old
    mtime put back yields the *old* chunks; ctime mode sees the change."""
    a = fx.file("a", b"alpha")
    old_chunks = chunks_of(a)
    fx.backup([a], "mtime,size,inode")
    fx.next_ctime_tick()
    a.write_bytes(b"ALPHA")
    os.utime(a, ns=(OLD_NS, OLD_NS))
    cache = fx.load("mtime,size,inode")
    hit = cache.lookup(bytes(a), a.stat(), fx.repo.contains)
    assert (hit.status, hit.chunks) == ("U", old_chunks)
    assert fx.load("ctime,size,inode").lookup(bytes(a), a.stat(), fx.repo.contains).status == "M"


def _touch_mtime(path: Path) -> None:
    os.utime(path, ns=(OLD_NS + SECOND, OLD_NS + SECOND))


def _chmod(path: Path) -> None:
    change_ctime(path)


def _grow(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"+")
    os.utime(path, ns=(OLD_NS, OLD_NS))


def _replace(path: Path) -> None:
    """Same content and mtime, new inode."""
    new = path.with_name(path.name + ".new")
    new.write_bytes(path.read_bytes())
    os.utime(new, ns=(OLD_NS, OLD_NS))
    new.replace(path)


CHANGES = {"touch-mtime": _touch_mtime, "chmod": _chmod, "grow": _grow, "replace": _replace}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("ctime,size,inode", {"touch-mtime": "M", "chmod": "M", "grow": "M", "replace": "M"}),
        ("mtime,size,inode", {"touch-mtime": "M", "chmod": "U", "grow": "M", "replace": "M"}),
        ("ctime,size", {"touch-mtime": "M", "chmod": "M", "grow": "M", "replace": "M"}),
        ("mtime,size", {"touch-mtime": "M", "chmod": "U", "grow": "M", "replace": "U"}),
    ],
)
def test_mode_sensitivity(fx: Fixture, mode: str, expected: dict[str, str]) -> None:
    files = {name: fx.file(name, name.encode() * 10) for name in CHANGES}
    inodes = {name: p.stat().st_ino for name, p in files.items()}
    fx.backup(files.values(), mode)
    fx.next_ctime_tick()
    for name, change in CHANGES.items():
        change(files[name])
    assert files["replace"].stat().st_ino != inodes["replace"]
    assert fx.backup(files.values(), mode) == expected


def test_ignored_inode_is_updated_on_a_hit(fx: Fixture) -> None:
    """As Borg: with the inode not compared, a hit records the current inode, so
    turning the inode comparison back on later does not read everything again."""
    a = fx.file("a", b"alpha")
    fx.backup([a], "mtime,size,inode")
    _replace(a)
    assert fx.backup([a], "mtime,size") == {"a": "U"}
    assert fx.backup([a], "mtime,size,inode") == {"a": "U"}


def test_missing_chunk_means_modified(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    fx.backup([a])
    fx.repo.ids.clear()  # e.g. the archive was deleted and the repository compacted
    fx.reads.clear()
    assert fx.backup([a]) == {"a": "M"}
    assert a in fx.reads
    assert fx.backup([a]) == {"a": "U"}


def test_zero_chunks_are_not_asked_for(fx: Fixture) -> None:
    z = fx.file("zeros", bytes(1000))
    cache = fx.load()
    cache.remember(bytes(z), z.stat(), [ChunkRef(ZERO_ID, 600), ChunkRef(ZERO_ID, 400)])
    fx.save(cache)
    fx.repo.asked.clear()
    hit = fx.load().lookup(bytes(z), z.stat(), fx.repo.contains)
    assert hit.status == "U"
    assert fx.repo.asked == []


def test_not_a_regular_file_is_added_and_not_remembered(fx: Fixture) -> None:
    d = fx.root / "dir"
    d.mkdir()
    cache = fx.load()
    assert cache.lookup(bytes(d), d.stat(), fx.repo.contains).status == "A"
    assert not cache.remember(bytes(d), d.stat(), [])


def test_chunks_not_matching_the_size_are_not_remembered(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    cache = fx.load()
    assert not cache.remember(bytes(a), a.stat(), [ChunkRef(bytes(32), 4)])
    assert len(cache) == 0
    with pytest.raises(ValueError, match="cannot be in the files cache"):
        cache.remember(bytes(a), a.stat(), [ChunkRef(b"short", 5)])


def test_relative_and_absolute_paths_are_the_same_entry(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = fx.file("a", b"alpha")
    fx.backup([a])
    monkeypatch.chdir(fx.root)
    assert fx.load().lookup(b"./a", a.stat(), fx.repo.contains).status == "U"


def test_lookup_hands_its_path_key_to_remember(fx: Fixture) -> None:
    """The key a lookup computed is the one ``remember`` would compute (it is
    passed on to save hashing the path twice), for A and for M."""
    a = fx.file("a", b"alpha")
    cache = fx.load()
    added = cache.lookup(bytes(a), a.stat(), fx.repo.contains)
    assert (added.status, added.key) == ("A", cache.path_key(bytes(a)))
    fx.backup([a])
    fx.next_ctime_tick()
    a.write_bytes(b"alphabet")
    modified = fx.load().lookup(bytes(a), a.stat(), fx.repo.contains)
    assert (modified.status, modified.key) == ("M", cache.path_key(bytes(a)))


def test_remembered_twice_keeps_the_last(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    cache = fx.load()
    cache.remember(bytes(a), a.stat(), [ChunkRef(b"1" * 32, 5)])
    cache.remember(bytes(a), a.stat(), [ChunkRef(b"2" * 32, 5)])
    assert len(cache) == 1
    fx.save(cache)
    fx.repo.ids.update([b"1" * 32, b"2" * 32])
    assert fx.load().lookup(bytes(a), a.stat(), fx.repo.contains).chunks == [ChunkRef(b"2" * 32, 5)]


# --- racy timestamps ----------------------------------------------------------------------


def test_recent_mtime_is_not_trusted_next_time(fx: Fixture) -> None:
    a = fx.file("a", b"alpha", mtime_ns=None)  # mtime = ctime = now
    start = a.stat().st_mtime_ns + FINE_GRANULE_NS // 2  # within a clock tick of the read
    assert fx.backup([a], start_ns=start) == {"a": "A"}
    assert len(fx.load(start_ns=start)) == 2  # remembered, but flagged
    fx.reads.clear()
    # unchanged, yet read again; Borg (which drops such entries) reports A
    assert fx.backup([a]) == {"a": "A"}
    assert a in fx.reads
    assert fx.backup([a]) == {"a": "U"}


def test_recent_ctime_is_not_trusted_in_mtime_mode_either(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")  # mtime old, ctime now
    start = a.stat().st_ctime_ns + FINE_GRANULE_NS - 1
    fx.backup([a], "mtime,size,inode", start_ns=start)
    assert fx.backup([a], "mtime,size,inode") == {"a": "A"}


def test_timestamp_older_than_granularity_is_trusted(fx: Fixture) -> None:
    a = fx.file("a", b"alpha", mtime_ns=None)
    start = a.stat().st_ctime_ns + FINE_GRANULE_NS + 1
    fx.backup([a], start_ns=start)
    assert fx.backup([a]) == {"a": "U"}


def test_a_file_changed_a_second_before_the_backup_is_trusted(fx: Fixture) -> None:
    """Borg's rule, not a blanket window: a fine (sub-second) timestamp a
    second before the start cannot hide a later change (it would be stamped
    later), so only the newest files of the backup are distrusted."""
    a = fx.file("a", b"alpha", mtime_ns=None)
    start = a.stat().st_ctime_ns + SECOND_NS
    fx.backup([a], start_ns=start)
    assert fx.backup([a]) == {"a": "U"}


@pytest.mark.parametrize("even", [True, False])
def test_a_whole_second_timestamp_has_a_whole_second_granule(fx: Fixture, even: bool) -> None:
    """An even second may be FAT's 2 s granule, an odd whole second a 1 s one:
    1.5 s after it, a change after the read may still carry it only in the
    first case."""
    stamp = (time.time_ns() // SECOND_NS + 10) * SECOND_NS  # after the file's ctime
    if (stamp // SECOND_NS % 2 == 0) != even:
        stamp += SECOND_NS
    a = fx.file("a", b"alpha", mtime_ns=stamp)
    start = stamp + SECOND_NS + SECOND_NS // 2
    fx.backup([a], start_ns=start)
    assert fx.backup([a]) == {"a": "A" if even else "U"}


def test_newest_timestamp_of_the_backup_is_not_trusted(fx: Fixture) -> None:
    """Borg's rule (FAQ: 'A' status for an unchanged file): the file with the
    newest timestamp of the files read is not trusted, however old it is:
    a snapshot may have been taken long before the backup started."""
    a = fx.file("a", b"alpha")
    fx.next_ctime_tick()
    b = fx.file("b", b"beta")  # b has the newest ctime of the two
    start = start_after([a, b]) + 100 * SECOND
    cache = FilesCache.load(fx.cache_dir, REPO, SECRET, start_ns=start)
    for path in (a, b):
        cache.remember(bytes(path), path.stat(), chunks_of(path))
        fx.repo.ids.update(c.id for c in chunks_of(path))
    cache.save()
    again = FilesCache.load(fx.cache_dir, REPO, SECRET, start_ns=start + SECOND)
    assert again.lookup(bytes(a), a.stat(), fx.repo.contains).status == "U"
    assert again.lookup(bytes(b), b.stat(), fx.repo.contains).status == "A"


# --- modes rechunk and disabled -----------------------------------------------------------


def test_rechunk_reads_everything_but_remembers(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    b = fx.file("b", b"beta")
    fx.backup([a, b])
    fx.reads.clear()
    assert fx.backup([a], "rechunk,ctime") == {"a": "A"}
    assert a in fx.reads
    assert fx.backup([a, b]) == {"a": "U", "b": "U"}  # b survived the rechunk backup


def test_disabled_neither_reads_nor_writes(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    fx.backup([a])
    before = fx.cache_file.read_bytes()
    cache = fx.load("disabled")
    assert len(cache) == 0
    assert cache.lookup(bytes(a), a.stat(), fx.repo.contains).status == "A"
    assert not cache.remember(bytes(a), a.stat(), chunks_of(a))
    cache.save()
    assert fx.cache_file.read_bytes() == before
    assert cache.path is None


# --- TTL --------------------------------------------------------------------------------------


def test_entries_expire_after_ttl_backups_without_them(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    b = fx.file("b", b"beta")
    fx.backup([a, b], ttl=3)
    fx.backup([b], ttl=3)  # a: age 1
    fx.backup([b], ttl=3)  # a: age 2
    assert fx.backup([a, b], ttl=3) == {"a": "U", "b": "U"}  # seen: age 0 again
    fx.backup([b], ttl=3)
    fx.backup([b], ttl=3)
    fx.backup([b], ttl=3)  # a: age 3 = TTL, dropped
    assert fx.backup([a, b], ttl=3) == {"a": "A", "b": "U"}


def test_saving_twice_does_not_age_twice(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    b = fx.file("b", b"beta")
    fx.backup([a, b], ttl=2)
    cache = fx.load(ttl=2)
    cache.save()
    cache.save()
    assert fx.backup([a, b], ttl=2) == {"a": "U", "b": "U"}


@pytest.mark.parametrize("ttl", [0, -1, 65536])
def test_invalid_ttl(fx: Fixture, ttl: int) -> None:
    with pytest.raises(InputError, match="TTL"):
        fx.load(ttl=ttl)


# --- the cache file -----------------------------------------------------------------------


def test_paths_do_not_appear_in_the_cache_file(fx: Fixture) -> None:
    secret_name = "salary-negotiation-notes.txt"
    fx.backup([fx.file(secret_name, b"x")])
    data = fx.cache_file.read_bytes()
    assert secret_name.encode() not in data
    assert b"salary" not in data


def test_suffix_selects_another_file(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    fx.backup([a], suffix="home")
    assert cache_file_path(fx.cache_dir, REPO, "home").exists()
    assert not fx.cache_file.exists()
    assert fx.backup([a], suffix="home") == {"a": "U"}
    assert fx.backup([a]) == {"a": "A"}
    with pytest.raises(InputError, match="suffix"):
        cache_file_path(fx.cache_dir, REPO, "../x")


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


DAMAGE: dict[str, tuple[Callable[[Path], object], str]] = {
    "flipped-bit": (lambda p: _flip_byte(p, p.stat().st_size // 2), "checksum mismatch"),
    "flipped-trailer": (lambda p: _flip_byte(p, p.stat().st_size - 1), "checksum mismatch"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-7]), "truncated"),
    "header-only": (lambda p: p.write_bytes(p.read_bytes()[:20]), "truncated header"),
    "empty": (lambda p: p.write_bytes(b""), "truncated header"),
    "garbage": (lambda p: p.write_bytes(os.urandom(500)), "not a hoard cache file"),
    "kind": (lambda p: _flip_byte(p, 8), "not 'files'"),
    "version": (lambda p: _flip_byte(p, 16), "layout version"),
    "count": (lambda p: _flip_byte(p, 60), "size does not match"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_cache_is_discarded_with_a_warning(
    fx: Fixture, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    a = fx.file("a", b"alpha")
    fx.backup([a])
    damage_it, reason = DAMAGE[damage]
    damage_it(fx.cache_file)
    with caplog.at_level(logging.WARNING, logger="hoard.archive.filescache"):
        cache = fx.load()
    assert len(cache) == 0
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert reason in caplog.records[0].getMessage()
    fx.reads.clear()
    assert fx.backup([a]) == {"a": "A"}
    assert fx.backup([a]) == {"a": "U"}  # the next save replaced the damaged file


def test_cache_of_another_repository_is_discarded(
    fx: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    a = fx.file("a", b"alpha")
    fx.backup([a])
    foreign = cache_file_path(fx.cache_dir, OTHER_REPO)
    foreign.parent.mkdir()
    foreign.write_bytes(fx.cache_file.read_bytes())
    with caplog.at_level(logging.WARNING, logger="hoard.archive.filescache"):
        cache = FilesCache.load(fx.cache_dir, OTHER_REPO, SECRET, start_ns=start_after([a]))
    assert len(cache) == 0
    assert f"belongs to repository {REPO.hex()}" in caplog.text


def test_cache_written_with_another_secret_is_discarded(
    fx: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    a = fx.file("a", b"alpha")
    fx.backup([a])
    with caplog.at_level(logging.WARNING, logger="hoard.archive.filescache"):
        cache = FilesCache.load(fx.cache_dir, REPO, b"another secret!!", start_ns=start_after([a]))
    assert len(cache) == 0
    assert "checksum mismatch" in caplog.text


def test_missing_cache_is_not_a_warning(fx: Fixture, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hoard.archive.filescache"):
        cache = fx.load()
    assert len(cache) == 0
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_crash_before_rename_leaves_the_old_cache(fx: Fixture) -> None:
    """A writer that died after writing its temp file but before the rename."""
    a = fx.file("a", b"alpha")
    fx.backup([a])
    old = fx.cache_file.read_bytes()
    temp = fx.cache_file.with_name(f".{fx.cache_file.name}.tmp-99999-deadbeef")
    temp.write_bytes(old[: len(old) // 2])
    assert fx.load().lookup(bytes(a), a.stat(), fx.repo.contains).status == "U"
    assert fx.cache_file.read_bytes() == old
    assert temp.exists()


def test_save_removes_only_stale_temp_files(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    fx.backup([a])
    stale = fx.cache_file.with_name(f".{fx.cache_file.name}.tmp-1-00000000")
    stale.write_bytes(b"left by a crash")
    os.utime(stale, ns=(OLD_NS, OLD_NS))
    recent = fx.cache_file.with_name(f".{fx.cache_file.name}.tmp-2-00000000")
    recent.write_bytes(b"another process writing right now")
    fx.backup([a])
    assert not stale.exists()
    assert recent.exists()
    assert sorted(p.name for p in fx.cache_file.parent.iterdir()) == [recent.name, "files"]


def test_nbytes_counts_entries_and_chunks(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    fx.backup([a])
    cache = fx.load()
    # a and the sentinel, one chunk each, and the lookup's bucket table (2 x u32)
    assert cache.nbytes == 2 * 64 + 2 * 36 + 2 * 4


def test_empty_cache_round_trip(fx: Fixture) -> None:
    fx.load().save()
    assert fx.cache_file.exists()
    assert len(fx.load()) == 0


def _refs(i: int, generation: int) -> list[ChunkRef]:
    """``i % 7`` chunks of 1 byte with ids unique to (i, generation, j)."""
    return [ChunkRef(bytes([generation, j]) + i.to_bytes(30, "big"), 1) for j in range(i % 7)]


def test_many_entries_keep_their_own_chunk_lists(fx: Fixture) -> None:
    files = [fx.file(f"f{i:03d}", bytes(i % 7)) for i in range(150)]
    for generation in (1, 2):
        fx.repo.ids.update(c.id for i in range(150) for c in _refs(i, generation))
    cache = fx.load()
    for i, path in enumerate(files):
        assert cache.remember(bytes(path), path.stat(), _refs(i, 1))
    fx.save(cache)
    cache = fx.load()
    for i, path in enumerate(files):
        if i % 3 == 0:  # read again, with other chunks
            assert cache.remember(bytes(path), path.stat(), _refs(i, 2))
        else:
            assert cache.lookup(bytes(path), path.stat(), fx.repo.contains).chunks == _refs(i, 1)
    fx.save(cache)
    cache = fx.load()
    assert len(cache) == 151
    for i, path in enumerate(files):
        expected = _refs(i, 2 if i % 3 == 0 else 1)
        assert cache.lookup(bytes(path), path.stat(), fx.repo.contains).chunks == expected


# --- partial entries (resuming a file after a checkpoint) ------------------------------------


def _part(path: Path, size: int) -> list[ChunkRef]:
    """The first ``size`` bytes of ``path`` as one chunk (what a checkpoint stored)."""
    data = path.read_bytes()[:size]
    return [ChunkRef(blake3.blake3(data).digest(), len(data))]


def _checkpoint_with_part(fx: Fixture, path: Path, size: int, start_ns: int | None = None) -> None:
    """A backup interrupted while reading ``path``: its part is remembered, checkpoint save."""
    cache = fx.load() if start_ns is None else fx.load(start_ns=start_ns)
    part = _part(path, size)
    fx.repo.ids.update(c.id for c in part)
    assert cache.remember_partial(bytes(path), path.stat(), part)
    cache.save(checkpoint=True)


def test_partial_entry_resumes_an_unchanged_file(fx: Fixture) -> None:
    big = fx.file("big", bytes(range(256)) * 64)
    _checkpoint_with_part(fx, big, 4096)
    cache = fx.load()
    assert cache.lookup(bytes(big), big.stat(), fx.repo.contains).status == "A"  # not a file entry
    assert cache.resumable(bytes(big), big.stat(), fx.repo.contains) == _part(big, 4096)


def test_partial_entry_is_never_a_complete_file(fx: Fixture) -> None:
    """Even a partial entry as long as the file is refused; lookup never sees one."""
    big = fx.file("big", b"x" * 1000)
    cache = fx.load()
    assert not cache.remember_partial(bytes(big), big.stat(), _part(big, 1000))
    assert not cache.remember_partial(bytes(big), big.stat(), [])
    assert cache.remember_partial(bytes(big), big.stat(), _part(big, 999))
    cache.save(checkpoint=True)
    fx.repo.ids.update(c.id for c in _part(big, 999))
    assert fx.load().lookup(bytes(big), big.stat(), fx.repo.contains).status == "A"


@pytest.mark.parametrize("change", [_touch_mtime, _chmod, _grow, _replace])
def test_partial_entry_of_a_changed_file_is_not_used(
    fx: Fixture, change: Callable[[Path], None]
) -> None:
    big = fx.file("big", b"y" * 5000)
    _checkpoint_with_part(fx, big, 2000)
    fx.next_ctime_tick()
    change(big)
    cache = fx.load(start_ns=start_after([big]))
    assert cache.resumable(bytes(big), big.stat(), fx.repo.contains) is None


def test_partial_entry_with_a_missing_chunk_is_not_used(fx: Fixture) -> None:
    big = fx.file("big", b"z" * 5000)
    _checkpoint_with_part(fx, big, 2000)
    fx.repo.ids.clear()
    assert fx.load().resumable(bytes(big), big.stat(), fx.repo.contains) is None


def test_racy_partial_entry_is_not_used(fx: Fixture) -> None:
    """A partial entry changed within the granularity before the backup start is racy,
    whether or not it is the newest file (the newest-file rule is not applied to it)."""
    big = fx.file("big", b"r" * 5000, mtime_ns=None)
    _checkpoint_with_part(fx, big, 2000, start_ns=big.stat().st_ctime_ns + FINE_GRANULE_NS // 2)
    assert fx.load().resumable(bytes(big), big.stat(), fx.repo.contains) is None
    fx.file("newer", b"n")  # the partial file is not the newest of its backup
    cache = fx.load()
    newer = fx.root / "newer"
    cache.remember(bytes(newer), newer.stat(), chunks_of(newer))
    assert cache.remember_partial(bytes(big), big.stat(), _part(big, 2000))
    cache.save(checkpoint=True)
    assert fx.load().resumable(bytes(big), big.stat(), fx.repo.contains) == _part(big, 2000)


@pytest.mark.parametrize("mode", ["rechunk,ctime", "disabled"])
def test_no_partial_entries_without_trust(fx: Fixture, mode: str) -> None:
    big = fx.file("big", b"q" * 5000)
    cache = fx.load(mode)
    assert not cache.remember_partial(bytes(big), big.stat(), _part(big, 2000))
    _checkpoint_with_part(fx, big, 2000)
    assert fx.load(mode).resumable(bytes(big), big.stat(), fx.repo.contains) is None


def test_forgotten_partial_entry_is_not_saved(fx: Fixture) -> None:
    big = fx.file("big", b"f" * 5000)
    _checkpoint_with_part(fx, big, 2000)
    cache = fx.load()
    cache.forget_partial(bytes(big))
    cache.remember(bytes(big), big.stat(), chunks_of(big))  # the file was read to its end
    fx.save(cache)
    fx.repo.ids.update(c.id for c in chunks_of(big))
    cache = fx.load()
    assert cache.resumable(bytes(big), big.stat(), fx.repo.contains) is None
    assert cache.lookup(bytes(big), big.stat(), fx.repo.contains).status == "U"


def test_later_partial_entry_replaces_the_forgotten_one(fx: Fixture) -> None:
    big = fx.file("big", b"g" * 5000)
    _checkpoint_with_part(fx, big, 2000)
    cache = fx.load()
    cache.forget_partial(bytes(big))  # resumed; a second checkpoint further on
    further = _part(big, 3000)
    fx.repo.ids.update(c.id for c in further)
    assert cache.remember_partial(bytes(big), big.stat(), further)
    cache.save(checkpoint=True)
    assert fx.load().resumable(bytes(big), big.stat(), fx.repo.contains) == further


def test_checkpoint_save_neither_ages_nor_drops(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    b = fx.file("b", b"beta")
    fx.backup([a, b], ttl=2)
    fx.backup([b], ttl=2)  # a: age 1, one more backup without it drops it
    cache = fx.load(ttl=2)
    entries = len(cache)
    cache.save(checkpoint=True)
    cache.save(checkpoint=True)
    assert len(fx.load(ttl=2)) == entries
    assert fx.backup([a, b], ttl=2) == {"a": "U", "b": "U"}


def test_checkpoint_save_keeps_what_was_seen_and_read(fx: Fixture) -> None:
    a = fx.file("a", b"alpha")
    b = fx.file("b", b"beta")
    fx.backup([a], ttl=2)
    cache = fx.load(ttl=2)
    assert cache.lookup(bytes(a), a.stat(), fx.repo.contains).status == "U"
    cache.remember(bytes(b), b.stat(), chunks_of(b))
    fx.repo.ids.update(c.id for c in chunks_of(b))
    fx.save_checkpoint(cache)
    assert fx.backup([a, b], ttl=2) == {"a": "U", "b": "U"}


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 64, 1000])
def test_probe_finds_every_entry_and_nothing_else(n: int) -> None:
    """The bucketed search against a plain dict, with keys sharing k0, the
    extreme k0 values (first and last bucket) and keys between the stored ones."""
    rng = random.Random(n)
    top = 2**64 - 1
    k0s = [0, top, 1, top - 1, 2**63] + [rng.randrange(2**64) for _ in range(n)]
    keys = sorted({(k0s[i % len(k0s)], rng.randrange(2**64)) for i in range(n)})
    if len(keys) > 3:  # several keys with the same k0, which must be compared by k1
        keys = sorted({*keys, (keys[1][0], keys[1][1] ^ 1), (keys[1][0], keys[1][1] ^ 2)})
    rows = np.zeros(len(keys), dtype=ROW_DTYPE)
    rows["k1"] = [k1 for _, k1 in keys]
    rows["inode"] = np.arange(len(keys))
    table = _Table(np.array([k0 for k0, _ in keys], dtype=K0_DTYPE), rows, _Table.empty().chunks)
    probe = _Probe(table)
    for i, (k0, k1) in enumerate(keys):
        assert probe.find(k0, k1) == i
        assert probe.row(i)[:2] == (k1, i)
    present = set(keys)
    for k0, k1 in [*keys[:50], (5, 5), (top, 0), (0, top)]:
        for probe_key in ((k0, k1 ^ 4), (k0 ^ 1, k1), (k0 + 1 & top, k1), (k0 - 1 & top, k1)):
            if probe_key not in present:
                assert probe.find(*probe_key) == -1


ABSOLUTE_CASES = [
    b"a",
    b"./a",
    b"a/b",
    b"a/b/",
    b"a//b",
    b"a/./b",
    b"a/../b",
    b"../a",
    b"..",
    b".",
    b"",
    b"a/.",
    b"a/..",
    b"/",
    b"//",
    b"//a",
    b"/a/b",
    b"/a/./b",
    b"/a/../b",
    b"/a/b/",
    b"a/...",
    b"a/.b",
]


def test_absolute_paths_are_abspath_in_any_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memo of the last directory gives ``os.path.abspath`` whatever came before."""
    monkeypatch.chdir("/tmp")
    absolute = _AbsolutePaths()
    rng = random.Random(1)
    for path in [*ABSOLUTE_CASES, *rng.choices(ABSOLUTE_CASES, k=300)]:
        assert absolute(path) == os.path.abspath(path), path
