"""Object ids: keyed BLAKE3, plain BLAKE3 only without a key."""

from __future__ import annotations

import blake3
import pytest

from hoard.objects.ids import IdHasher
from hoard.objects.keys import EncryptionMode, KeyMaterial

KEY = bytes(range(32))
REPO_ID = b"\x11" * 32


def test_keyed_id_is_blake3_keyed_hash() -> None:
    hasher = IdHasher(KEY)
    assert hasher.keyed
    assert hasher.id_of(b"data") == blake3.blake3(b"data", key=KEY).digest()
    assert len(hasher.id_of(b"")) == 32


def test_unkeyed_id_is_plain_blake3() -> None:
    hasher = IdHasher(None)
    assert not hasher.keyed
    assert hasher.id_of(b"data") == blake3.blake3(b"data").digest()


def test_ids_depend_on_key_and_data_only() -> None:
    a, b = IdHasher(KEY), IdHasher(b"\x01" * 32)
    assert a.id_of(b"x") == IdHasher(KEY).id_of(b"x")
    assert a.id_of(b"x") != b.id_of(b"x")
    assert a.id_of(b"x") != a.id_of(b"y")
    assert a.id_of(memoryview(b"abc")[1:]) == a.id_of(b"bc")


def test_wrong_key_size_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        IdHasher(b"short")


def test_from_key_material() -> None:
    secret = KeyMaterial.generate(EncryptionMode.REPOKEY_CHACHA20_POLY1305, REPO_ID)
    assert IdHasher.from_key(secret).id_of(b"x") == IdHasher(secret.id_key).id_of(b"x")
    plain = KeyMaterial.generate(EncryptionMode.NONE, REPO_ID)
    assert not IdHasher.from_key(plain).keyed
