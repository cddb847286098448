"""Fixtures for the repository tests: every test runs on both real backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hoard.storage.base import Storage
from hoard.storage.local import LocalStorage
from hoard.storage.memory import MemoryStorage


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """An empty storage: a LocalStorage directory or a MemoryStorage."""
    backend: Storage = (
        LocalStorage(tmp_path / "repo") if request.param == "local" else MemoryStorage()
    )
    yield backend
    backend.close()


@pytest.fixture
def local_storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "repo")
