"""Fixtures every test directory may use: the real sshd of the ssh tests."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import pytest

from tests import sshd as sshd_module


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd_module.Sshd]:
    """An sshd on 127.0.0.1 for this test process (see tests/sshd.py)."""
    if not sshd_module.available():
        pytest.skip("needs root, sshd and ssh (scripts/bootstrap.sh --test-tools installs them)")
    hoard = shutil.which("hoard", path=os.path.dirname(sys.executable)) or "hoard"
    server = sshd_module.start(tmp_path_factory.mktemp("sshd"), hoard)
    yield server
    server.stop()
