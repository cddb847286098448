"""MemoryStorage against the storage contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hoard.storage.memory import MemoryStorage
from tests.unit.storage.conformance import StorageConformance


class TestMemoryConformance(StorageConformance):
    @pytest.fixture
    def storage(self) -> Iterator[MemoryStorage]:
        storage = MemoryStorage()
        yield storage
        storage.close()


def test_instances_are_independent() -> None:
    first, second = MemoryStorage(), MemoryStorage()
    first.store("config", b"1")
    assert not second.exists("config")
    assert first.location != second.location
