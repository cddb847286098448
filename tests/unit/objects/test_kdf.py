"""Passphrase wrapping: Argon2id parameters, the key blob format, refusals."""

from __future__ import annotations

import os

import msgpack
import pytest

from hoard.errors import PassphraseWrong, UnsupportedKeyFormat
from hoard.objects.kdf import (
    DEFAULT_KDF,
    DamagedKeyBlobError,
    KdfParams,
    KeyBlob,
    MalformedKeyBlobError,
)

WEAK = KdfParams.weak()
REPO_ID = os.urandom(32)
SECRET = b"the key material"


def _fields(blob: KeyBlob) -> dict[str, object]:
    fields: dict[str, object] = msgpack.unpackb(blob.encode(), raw=False)
    return fields


def test_default_params_are_the_strong_ones() -> None:
    """The cost of the default, asserted through what a wrapped blob records."""
    assert (DEFAULT_KDF.time_cost, DEFAULT_KDF.memory_kib, DEFAULT_KDF.parallelism) == (
        3,
        64 * 1024,
        4,
    )
    fields = _fields(KeyBlob.wrap(SECRET, "pw", REPO_ID, DEFAULT_KDF))
    assert (fields["t"], fields["m"], fields["p"]) == (3, 65536, 4)


def test_round_trip_through_bytes() -> None:
    blob = KeyBlob.wrap(SECRET, "correct horse", REPO_ID, WEAK)
    decoded = KeyBlob.decode(blob.encode())
    assert decoded == blob
    assert decoded.unwrap("correct horse") == SECRET


def test_blob_fields() -> None:
    blob = KeyBlob.wrap(SECRET, "pw", REPO_ID, WEAK)
    fields = _fields(blob)
    assert set(fields) == {
        "version",
        "kdf",
        "repository_id",
        "salt",
        "t",
        "m",
        "p",
        "nonce",
        "data",
        "checksum",
    }
    assert fields["version"] == 1
    assert fields["kdf"] == "argon2id"
    assert fields["repository_id"] == REPO_ID
    assert len(blob.salt) == 32
    assert len(blob.nonce) == 12
    assert len(blob.data) == len(SECRET) + 16
    assert SECRET not in blob.encode()


def test_fresh_salt_and_nonce_each_time() -> None:
    a = KeyBlob.wrap(SECRET, "pw", REPO_ID, WEAK)
    b = KeyBlob.wrap(SECRET, "pw", REPO_ID, WEAK)
    assert a.salt != b.salt
    assert a.nonce != b.nonce


@pytest.mark.parametrize("passphrase", ["", "pässwörd ✓"])
def test_empty_and_unicode_passphrases(passphrase: str) -> None:
    blob = KeyBlob.wrap(SECRET, passphrase, REPO_ID, WEAK)
    assert blob.unwrap(passphrase) == SECRET


def test_wrong_passphrase() -> None:
    blob = KeyBlob.wrap(SECRET, "right", REPO_ID, WEAK)
    with pytest.raises(PassphraseWrong):
        blob.unwrap("wrong")
    with pytest.raises(PassphraseWrong):
        blob.unwrap("")


def test_bound_to_repository_id() -> None:
    """Relabelling a blob for another repository breaks its authentication."""
    blob = KeyBlob.wrap(SECRET, "pw", REPO_ID, WEAK)
    relabelled = KeyBlob(os.urandom(32), blob.kdf, blob.salt, blob.nonce, blob.data)
    with pytest.raises(PassphraseWrong):
        relabelled.unwrap("pw")


def test_bound_to_stored_kdf_params() -> None:
    blob = KeyBlob.wrap(SECRET, "pw", REPO_ID, WEAK)
    cheaper = KeyBlob(REPO_ID, KdfParams(1, 16, 1), blob.salt, blob.nonce, blob.data)
    with pytest.raises(PassphraseWrong):
        cheaper.unwrap("pw")


def _mutated(**changes: object) -> bytes:
    """A blob with changed fields and no checksum (as an older hoard wrote them)."""
    fields = _fields(KeyBlob.wrap(SECRET, "pw", REPO_ID, WEAK))
    fields.update(changes, checksum=None)
    packed: bytes = msgpack.packb({k: v for k, v in fields.items() if v is not None})
    return packed


def test_blob_without_checksum_is_read() -> None:
    """Blobs of older hoards have no checksum; they still open."""
    assert KeyBlob.decode(_mutated()).unwrap("pw") == SECRET


@pytest.mark.parametrize("where", [0.3, 0.6, 0.95])
def test_damaged_blob_is_told_from_a_wrong_passphrase(where: float) -> None:
    raw = bytearray(KeyBlob.wrap(SECRET, "pw", REPO_ID, WEAK).encode())
    raw[int(len(raw) * where)] ^= 0x04
    with pytest.raises(DamagedKeyBlobError):
        KeyBlob.decode(bytes(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        b"garbage that is not msgpack",
        msgpack.packb([1, 2, 3]),
        _mutated(salt=b"short"),
        _mutated(nonce=None),
        _mutated(data="text"),
        _mutated(t="3"),
        _mutated(repository_id=b"\x00" * 31),
    ],
)
def test_garbage_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedKeyBlobError):
        KeyBlob.decode(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_mutated(version=2), "version 2"),
        (_mutated(version=None), "version None"),
        (_mutated(kdf="pbkdf2-sha256"), "'pbkdf2-sha256'"),
        (_mutated(m=1 << 40), "memory_kib"),
        (_mutated(t=0), "time_cost"),
        (_mutated(p=1000), "parallelism"),
    ],
)
def test_unsupported_format(raw: bytes, message: str) -> None:
    with pytest.raises(UnsupportedKeyFormat) as info:
        KeyBlob.decode(raw)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_cost": 0},
        {"parallelism": 0},
        {"memory_kib": 7, "parallelism": 1},
        {"memory_kib": 1 << 30},
    ],
)
def test_kdf_params_validation(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        KdfParams(**kwargs)
