"""The storage contract of ``hoard.storage.base.Storage`` as tests.

Every backend runs this suite: subclass :class:`StorageConformance` in a
``Test...`` class and define a ``storage`` fixture that yields a fresh, empty
storage of that backend (and closes it afterwards). The base class is not
named ``Test...`` so pytest does not collect it on its own, and it has no
``storage`` fixture so a subclass that forgets one fails loudly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from hoard.errors import InvalidName, ObjectExists, ObjectNotFound
from hoard.storage.base import ObjectInfo, Storage

INVALID_NAMES = [
    "",
    "a\n",
    "a\n/b",
    ".",
    "..",
    "../x",
    "a/../b",
    "a/./b",
    "/x",
    "/",
    "x/",
    "a//b",
    "a\\b",
    "\\x",
    "a b",
    "a\x00b",
    "caf\u00e9",
]

# ``list`` also accepts "" (everything) and a trailing "/" (a directory).
INVALID_PREFIXES = [p for p in INVALID_NAMES if p not in ("", "x/")] + ["a//", "../"]


def all_names(storage: Storage, prefix: str = "") -> dict[str, int]:
    """Name -> size of what ``list`` reports, checking it reports each once."""
    infos = list(storage.list(prefix))
    names = {info.name: info.size for info in infos}
    assert len(names) == len(infos), f"duplicates in {infos}"
    return names


def run_together(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` for i in range(count) on as many threads, released at once.

    Returns each call's result or the exception it raised.
    """
    barrier = threading.Barrier(count)

    def start(i: int) -> object:
        barrier.wait()
        try:
            return work(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(start, range(count)))


class StorageConformance:
    """Tests every backend must pass; subclasses supply the ``storage`` fixture."""

    # --- store and load ------------------------------------------------------

    def test_store_then_load_whole(self, storage: Storage) -> None:
        storage.store("config", b"hello")
        assert storage.load("config") == b"hello"

    def test_load_returns_bytes(self, storage: Storage) -> None:
        storage.store("a", memoryview(bytearray(b"xyz")))
        loaded = storage.load("a")
        assert type(loaded) is bytes
        assert loaded == b"xyz"

    def test_store_copies_callers_buffer(self, storage: Storage) -> None:
        buffer = bytearray(b"original")
        storage.store("a", memoryview(buffer))
        buffer[:] = b"changed!"
        assert storage.load("a") == b"original"

    def test_empty_blob(self, storage: Storage) -> None:
        storage.store("empty", b"")
        assert storage.load("empty") == b""
        assert storage.info("empty") == ObjectInfo("empty", 0)
        assert storage.load("empty", 0, 10) == b""

    @pytest.mark.parametrize(
        ("offset", "length", "expected"),
        [
            (0, None, b"0123456789"),
            (3, None, b"3456789"),
            (0, 4, b"0123"),
            (2, 5, b"23456"),
            (9, 1, b"9"),
            (8, 100, b"89"),
            (10, None, b""),
            (10, 5, b""),
            (50, None, b""),
            (50, 5, b""),
            (4, 0, b""),
        ],
    )
    def test_ranged_load(
        self, storage: Storage, offset: int, length: int | None, expected: bytes
    ) -> None:
        storage.store("packs/00/range", b"0123456789")
        assert storage.load("packs/00/range", offset, length) == expected

    def test_negative_range_is_refused(self, storage: Storage) -> None:
        storage.store("a", b"abc")
        with pytest.raises(ValueError):
            storage.load("a", -1)
        with pytest.raises(ValueError):
            storage.load("a", 0, -1)

    def test_nested_names(self, storage: Storage) -> None:
        storage.store("packs/3f/3f9a", b"deep")
        storage.store("packs/3f/3f9b", b"deeper")
        assert storage.load("packs/3f/3f9a") == b"deep"
        assert storage.load("packs/3f/3f9b") == b"deeper"

    def test_all_byte_values(self, storage: Storage) -> None:
        data = bytes(range(256)) * 64 + b"\r\n\x00\x1a" + bytes(reversed(range(256)))
        storage.store("binary", data)
        assert storage.load("binary") == data
        assert storage.load("binary", 255, 2) == b"\xff\x00"

    def test_large_blob_round_trip(self, storage: Storage) -> None:
        size = 20 * 1024 * 1024
        data = bytes(range(251)) * (size // 251) + b"tail"
        storage.store("packs/ff/large", data)
        assert storage.info("packs/ff/large").size == len(data)
        assert storage.load("packs/ff/large") == data
        assert storage.load("packs/ff/large", len(data) - 4) == b"tail"
        assert storage.load("packs/ff/large", 251 * 1000, 3) == b"\x00\x01\x02"

    # --- overwrite -------------------------------------------------------------

    def test_overwrite_is_refused(self, storage: Storage) -> None:
        storage.store("index/ab", b"first")
        with pytest.raises(ObjectExists):
            storage.store("index/ab", b"second")
        assert storage.load("index/ab") == b"first"
        assert all_names(storage) == {"index/ab": 5}

    def test_overwrite_when_asked(self, storage: Storage) -> None:
        storage.store("config", b"old version")
        storage.store("config", b"new", overwrite=True)
        assert storage.load("config") == b"new"
        assert storage.info("config").size == 3
        assert all_names(storage) == {"config": 3}

    def test_overwrite_true_creates_missing(self, storage: Storage) -> None:
        storage.store("keys/repokey", b"key", overwrite=True)
        assert storage.load("keys/repokey") == b"key"

    # --- list ------------------------------------------------------------------

    def test_list_empty_storage(self, storage: Storage) -> None:
        assert all_names(storage) == {}
        assert all_names(storage, "packs/") == {}

    def test_list_with_prefixes(self, storage: Storage) -> None:
        blobs = {
            "config": b"c",
            "keys/repokey": b"kk",
            "packs/ab/ab01": b"p1p",
            "packs/ab/ab02": b"p2p2",
            "packs/cd/cd01": b"p3p3p",
            "index/ab00": b"i" * 6,
            "index/ab01": b"i" * 7,
            "index/cd00": b"i" * 8,
            "archives/01": b"a" * 9,
        }
        for name, data in blobs.items():
            storage.store(name, data)
        sizes = {name: len(data) for name, data in blobs.items()}

        def expect(prefix: str) -> dict[str, int]:
            return {n: s for n, s in sizes.items() if n.startswith(prefix)}

        for prefix in ["", "packs/", "packs/ab/", "packs/ab/ab0", "index/", "index/ab", "c"]:
            assert all_names(storage, prefix) == expect(prefix), prefix
        assert all_names(storage, "packs") == expect("packs")
        assert all_names(storage, "packs/a") == expect("packs/a")
        assert all_names(storage, "config") == {"config": 1}
        assert all_names(storage, "nothing/") == {}
        assert all_names(storage, "nothing") == {}
        assert all_names(storage, "config/") == {}
        assert all_names(storage, "index/ab00/") == {}

    def test_list_reports_sizes_as_info(self, storage: Storage) -> None:
        storage.store("x/one", b"1")
        storage.store("x/three", b"333")
        for info in storage.list("x/"):
            assert storage.info(info.name) == info

    def test_list_does_not_report_deleted(self, storage: Storage) -> None:
        storage.store("a/1", b"1")
        storage.store("a/2", b"2")
        storage.delete("a/1")
        assert all_names(storage) == {"a/2": 1}

    # --- delete, info, exists ---------------------------------------------------

    def test_delete(self, storage: Storage) -> None:
        storage.store("packs/00/gone", b"x")
        storage.delete("packs/00/gone")
        assert not storage.exists("packs/00/gone")
        with pytest.raises(ObjectNotFound):
            storage.load("packs/00/gone")
        storage.store("packs/00/gone", b"again")
        assert storage.load("packs/00/gone") == b"again"

    def test_delete_missing(self, storage: Storage) -> None:
        with pytest.raises(ObjectNotFound):
            storage.delete("nothing")
        storage.store("a/b", b"")
        with pytest.raises(ObjectNotFound):
            storage.delete("a/c")
        with pytest.raises(ObjectNotFound):
            storage.delete("a/b/c")

    def test_info_and_exists(self, storage: Storage) -> None:
        assert not storage.exists("config")
        storage.store("config", b"12345")
        assert storage.exists("config")
        assert storage.info("config") == ObjectInfo("config", 5)

    @pytest.mark.parametrize("name", ["missing", "packs/00/missing", "config/below"])
    def test_missing_names(self, storage: Storage, name: str) -> None:
        storage.store("config", b"c")
        with pytest.raises(ObjectNotFound):
            storage.load(name)
        with pytest.raises(ObjectNotFound):
            storage.load(name, 1, 2)
        with pytest.raises(ObjectNotFound):
            storage.info(name)
        with pytest.raises(ObjectNotFound):
            storage.delete(name)
        assert not storage.exists(name)

    def test_a_prefix_is_not_a_blob(self, storage: Storage) -> None:
        storage.store("packs/00/blob", b"x")
        for name in ("packs", "packs/00"):
            assert not storage.exists(name)
            with pytest.raises(ObjectNotFound):
                storage.load(name)
            with pytest.raises(ObjectNotFound):
                storage.info(name)

    # --- names -----------------------------------------------------------------

    @pytest.mark.parametrize("name", INVALID_NAMES)
    def test_invalid_names_everywhere(self, storage: Storage, name: str) -> None:
        with pytest.raises(InvalidName):
            storage.store(name, b"x")
        with pytest.raises(InvalidName):
            storage.store(name, b"x", overwrite=True)
        with pytest.raises(InvalidName):
            storage.load(name)
        with pytest.raises(InvalidName):
            storage.load(name, 0, 1)
        with pytest.raises(InvalidName):
            storage.delete(name)
        with pytest.raises(InvalidName):
            storage.info(name)
        with pytest.raises(InvalidName):
            storage.exists(name)
        assert all_names(storage) == {}

    @pytest.mark.parametrize("prefix", INVALID_PREFIXES)
    def test_invalid_list_prefix(self, storage: Storage, prefix: str) -> None:
        with pytest.raises(InvalidName):
            storage.list(prefix)

    @pytest.mark.parametrize("name", ["A-Z_a-z.0-9", "x.y.z", "-", "_", "...", "a/.b/c.."])
    def test_unusual_valid_names(self, storage: Storage, name: str) -> None:
        storage.store(name, name.encode())
        assert storage.load(name) == name.encode()
        assert all_names(storage) == {name: len(name)}

    # --- concurrency ---------------------------------------------------------------

    def test_threads_storing_distinct_names(self, storage: Storage) -> None:
        count = 16

        def work(i: int) -> object:
            storage.store(f"packs/{i % 2:02x}/blob{i}", bytes([i]) * (1000 + i))
            return None

        assert run_together(count, work) == [None] * count
        for i in range(count):
            assert storage.load(f"packs/{i % 2:02x}/blob{i}") == bytes([i]) * (1000 + i)
        assert len(all_names(storage, "packs/")) == count

    def test_threads_storing_the_same_name(self, storage: Storage) -> None:
        count = 16
        for round_ in range(5):
            name = f"locks/lock{round_}"

            def work(i: int, name: str = name) -> object:
                storage.store(name, f"writer {i}".encode())
                return i

            results = run_together(count, work)
            winners = [r for r in results if isinstance(r, int)]
            losers = [r for r in results if not isinstance(r, int)]
            assert len(winners) == 1, results
            assert all(isinstance(r, ObjectExists) for r in losers), losers
            assert storage.load(name) == f"writer {winners[0]}".encode()
        assert len(all_names(storage)) == 5

    def test_threads_overwriting_see_whole_versions(self, storage: Storage) -> None:
        versions = [bytes([i]) * 100_000 for i in range(8)]
        storage.store("config", versions[0])

        def work(i: int) -> object:
            if i % 2:
                storage.store("config", versions[i], overwrite=True)
                return None
            return storage.load("config")

        for result in run_together(len(versions), work):
            assert result is None or result in versions
        assert storage.load("config") in versions

    # --- modification times and temporary files --------------------------------

    def test_list_and_info_give_a_recent_mtime_or_none(self, storage: Storage) -> None:
        before = time.time() - 5
        storage.store("packs/aa/aa01", b"x")
        (listed,) = storage.list("packs/")
        for info in (listed, storage.info("packs/aa/aa01")):
            assert info.mtime is None or before <= info.mtime <= time.time() + 5

    def test_temporary_listing_never_shows_blobs(self, storage: Storage) -> None:
        storage.store("packs/aa/aa01", b"x")
        assert all(".tmp-" in i.name for i in storage.list_temporary(""))
        assert not any(i.name == "packs/aa/aa01" for i in storage.list_temporary("packs/"))

    def test_delete_temporary_refuses_blob_names(self, storage: Storage) -> None:
        storage.store("packs/aa/aa01", b"x")
        with pytest.raises(InvalidName):
            storage.delete_temporary("packs/aa/aa01")
        assert storage.load("packs/aa/aa01") == b"x"

    def test_temporary_listing_checks_its_prefix(self, storage: Storage) -> None:
        with pytest.raises(InvalidName):
            storage.list_temporary("../")

    # --- lifecycle ---------------------------------------------------------------

    def test_close_is_idempotent(self, storage: Storage) -> None:
        storage.close()
        storage.close()

    def test_location_is_text(self, storage: Storage) -> None:
        assert isinstance(storage.location, str)
        assert storage.location
