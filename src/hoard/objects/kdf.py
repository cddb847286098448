"""Passphrase wrapping of key material: Argon2id + ChaCha20-Poly1305, versioned.

A key blob is a msgpack map (docs/design/crypto.md, "Key blob")::

    {"version": 1, "kdf": "argon2id", "repository_id": <32 bytes>,
     "salt": <32 bytes>, "t": <time cost>, "m": <memory KiB>, "p": <lanes>,
     "nonce": <12 bytes>, "data": <ciphertext + 16-byte tag>,
     "checksum": <SHA-256 of the msgpack map of all other fields>}

The checksum is plain, not keyed: it only tells a damaged blob (a flipped
bit, a torn write) from a wrong passphrase, which the AEAD tag alone cannot.
Blobs written before it existed have none and are still read.

The key-encryption key (KEK) is Argon2id(passphrase, salt, t, m, p); ``data``
is the ChaCha20-Poly1305 encryption of the secret with associated data
``b"hoard-key" | version(1) | repository_id``, so a blob copied from another
repository (or rewritten to another version) fails to open. Reading uses the
parameters stored in the blob, bounded so a hostile repository cannot make
the client allocate unbounded memory; writing uses the caller's
``KdfParams`` (objects never reads the environment: tests and the cli pass
weak parameters explicitly when they want them).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import msgpack
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hoard.errors import PassphraseWrong, UnsupportedKeyFormat

KEY_BLOB_VERSION = 1
KDF_NAME = "argon2id"
SALT_SIZE = 32
NONCE_SIZE = 12
KEK_SIZE = 32
REPOSITORY_ID_SIZE = 32
MAX_TIME_COST = 64
MAX_MEMORY_KIB = 4 * 1024 * 1024
MAX_PARALLELISM = 64
_AD_PREFIX = b"hoard-key"
_FIELDS = frozenset(
    {"version", "kdf", "repository_id", "salt", "t", "m", "p", "nonce", "data", "checksum"}
)


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters. The default is the strong setting for real keys.

    ``memory_kib`` is in KiB (Argon2's unit): 65536 = 64 MiB.
    """

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.time_cost <= MAX_TIME_COST:
            raise ValueError(f"time_cost {self.time_cost} not in 1..{MAX_TIME_COST}")
        if not 1 <= self.parallelism <= MAX_PARALLELISM:
            raise ValueError(f"parallelism {self.parallelism} not in 1..{MAX_PARALLELISM}")
        if not 8 * self.parallelism <= self.memory_kib <= MAX_MEMORY_KIB:
            raise ValueError(f"memory_kib {self.memory_kib} not in 8*p..{MAX_MEMORY_KIB}")

    @classmethod
    def weak(cls) -> KdfParams:
        """Cheapest valid parameters: for tests only (a key wrapped so is easy to brute-force)."""
        return cls(time_cost=1, memory_kib=8, parallelism=1)

    def derive(self, passphrase: str, salt: bytes) -> bytes:
        """The 32-byte key-encryption key for ``passphrase`` (UTF-8) and ``salt``."""
        return hash_secret_raw(
            passphrase.encode("utf-8"),
            salt,
            time_cost=self.time_cost,
            memory_cost=self.memory_kib,
            parallelism=self.parallelism,
            hash_len=KEK_SIZE,
            type=Type.ID,
        )


DEFAULT_KDF = KdfParams()


class MalformedKeyBlobError(ValueError):
    """The bytes are not a key blob at all; the caller knows where they came from."""


class DamagedKeyBlobError(MalformedKeyBlobError):
    """The bytes were a key blob, but its checksum no longer matches."""


@dataclass(frozen=True)
class KeyBlob:
    """A passphrase-wrapped secret, bound to one repository id."""

    repository_id: bytes
    kdf: KdfParams
    salt: bytes
    nonce: bytes
    data: bytes

    @classmethod
    def wrap(cls, secret: bytes, passphrase: str, repository_id: bytes, kdf: KdfParams) -> KeyBlob:
        """Encrypt ``secret`` under a KEK derived from ``passphrase`` with a fresh salt."""
        salt, nonce = os.urandom(SALT_SIZE), os.urandom(NONCE_SIZE)
        kek = kdf.derive(passphrase, salt)
        data = ChaCha20Poly1305(kek).encrypt(nonce, secret, _associated_data(repository_id))
        return cls(repository_id, kdf, salt, nonce, data)

    def unwrap(self, passphrase: str) -> bytes:
        """Return the secret; a wrong passphrase (or tampered blob) raises PassphraseWrong."""
        kek = self.kdf.derive(passphrase, self.salt)
        ad = _associated_data(self.repository_id)
        try:
            return ChaCha20Poly1305(kek).decrypt(self.nonce, self.data, ad)
        except InvalidTag:
            raise PassphraseWrong() from None

    def encode(self) -> bytes:
        """The stored bytes (msgpack map, see the module docstring)."""
        fields = {
            "version": KEY_BLOB_VERSION,
            "kdf": KDF_NAME,
            "repository_id": self.repository_id,
            "salt": self.salt,
            "t": self.kdf.time_cost,
            "m": self.kdf.memory_kib,
            "p": self.kdf.parallelism,
            "nonce": self.nonce,
            "data": self.data,
        }
        fields["checksum"] = _checksum(fields)
        packed: bytes = msgpack.packb(fields, use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> KeyBlob:
        """Parse stored bytes.

        Raises MalformedKeyBlobError for bytes that are not a key blob, and
        UnsupportedKeyFormat for a blob of an unknown version or KDF or with
        parameters outside the bounds this hoard accepts.
        """
        fields = _unpack_map(raw)
        unknown = set(fields) - _FIELDS
        if unknown:  # also a damaged field name, which must not switch the checksum off
            raise MalformedKeyBlobError(f"unknown fields {sorted(map(str, unknown))}")
        if "checksum" in fields:
            stored = fields.pop("checksum")
            if stored != _checksum(fields):
                raise DamagedKeyBlobError("checksum mismatch")
        if fields.get("version") != KEY_BLOB_VERSION:
            raise UnsupportedKeyFormat(f"key blob version {fields.get('version')!r}")
        if fields.get("kdf") != KDF_NAME:
            raise UnsupportedKeyFormat(f"key derivation function {fields.get('kdf')!r}")
        costs = _int(fields, "t"), _int(fields, "m"), _int(fields, "p")
        try:
            kdf = KdfParams(*costs)
        except ValueError as exc:
            raise UnsupportedKeyFormat(f"Argon2id parameters: {exc}") from None
        return cls(
            repository_id=_bytes(fields, "repository_id", REPOSITORY_ID_SIZE),
            kdf=kdf,
            salt=_bytes(fields, "salt", SALT_SIZE),
            nonce=_bytes(fields, "nonce", NONCE_SIZE),
            data=_bytes(fields, "data", None),
        )


def _checksum(fields: dict[str, Any]) -> bytes:
    """SHA-256 of the map without its checksum, packed in the order it was read."""
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return hashlib.sha256(packed).digest()


def _associated_data(repository_id: bytes) -> bytes:
    return _AD_PREFIX + bytes((KEY_BLOB_VERSION,)) + repository_id


def _unpack_map(raw: bytes) -> dict[str, Any]:
    try:
        fields = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=1 << 20)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise MalformedKeyBlobError(f"not msgpack: {exc}") from None
    if not isinstance(fields, dict):
        raise MalformedKeyBlobError("not a map")
    return fields


def _int(fields: dict[str, Any], name: str) -> int:
    value = fields.get(name)
    if type(value) is not int:
        raise MalformedKeyBlobError(f"field {name!r} missing or not an integer")
    return value


def _bytes(fields: dict[str, Any], name: str, size: int | None) -> bytes:
    value = fields.get(name)
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        expected = "bytes" if size is None else f"{size} bytes"
        raise MalformedKeyBlobError(f"field {name!r} missing or not {expected}")
    return value
