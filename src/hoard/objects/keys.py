"""Encryption modes, key material, and where the wrapped key is kept.

Modes use Borg's names. ``none`` has no secret at all; ``authenticated``
and ``repokey*`` keep the passphrase-wrapped key in the repository (through
``KeyBlobStore``, implemented by the Repository); ``keyfile*`` keeps it in
a key file under the caller's keys directory. Which mode a repository uses
is recorded outside this module (the repository config carries it) and is
passed in; objects never reads the environment or prompts: passphrases
arrive through a callable from ``cli``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import blake3
import msgpack

from hoard.errors import (
    CryptoKeyError,
    EncryptionModeInvalid,
    HoardError,
    KeyDamaged,
    KeyfileInvalid,
    KeyfileMismatch,
    KeyfileNotFound,
    ObjectNotFound,
    PassphraseWrong,
    RepoKeyNotFound,
    UnsupportedKeyFormat,
)
from hoard.objects.kdf import (
    DEFAULT_KDF,
    DamagedKeyBlobError,
    KdfParams,
    KeyBlob,
    MalformedKeyBlobError,
)
from hoard.objects.keyfile import (
    MalformedKeyTextError,
    find_key_file,
    format_key_text,
    parse_key_text,
    write_key_file,
)
from hoard.objects.types import Suite

KEY_SIZE = 32
REPOKEY_NAME = "repokey"
"""Name of the key blob in the repository (``keys/repokey``)."""
REPOKEY_COPY_NAME = "repokey.copy"
"""Its second copy (``keys/repokey.copy``): without the key every archive is
lost, so one damaged sector must not take it."""
KEYS_DIR = "keys/"
"""Where the repository keeps its key blobs (for messages)."""
KEY_MATERIAL_VERSION = 1
_NONE_CHUNKER_CONTEXT = "hoard 2024-11 chunker key of an unencrypted repository v1"


class KeyLocation(Enum):
    """Where a mode keeps its wrapped key."""

    NOWHERE = "nowhere"
    REPOSITORY = "repository"
    KEYFILE = "keyfile"


class EncryptionMode(Enum):
    """An encryption mode; the value is the canonical name (kept in the repository config)."""

    NONE = "none"
    AUTHENTICATED = "authenticated"
    REPOKEY_CHACHA20_POLY1305 = "repokey-chacha20-poly1305"
    REPOKEY_AES_GCM = "repokey-aes-gcm"
    REPOKEY_AES_OCB = "repokey-aes-ocb"
    KEYFILE_CHACHA20_POLY1305 = "keyfile-chacha20-poly1305"
    KEYFILE_AES_GCM = "keyfile-aes-gcm"
    KEYFILE_AES_OCB = "keyfile-aes-ocb"

    @classmethod
    def parse(cls, text: str) -> EncryptionMode:
        """Accept canonical and Borg names (``repokey``, ``keyfile-blake2``...).

        Anything else raises EncryptionModeInvalid listing the choices.
        """
        mode = _ALIASES.get(text)
        if mode is not None:
            return mode
        try:
            return cls(text)
        except ValueError:
            choices = ", ".join([m.value for m in cls] + list(_ALIASES))
            raise EncryptionModeInvalid(text, choices) from None

    @property
    def suite(self) -> Suite:
        """The envelope suite objects of this mode are sealed with."""
        return _SUITES[self]

    @property
    def cipher(self) -> str:
        """The cipher of this mode's objects ("none" when nothing is encrypted)."""
        if self.location is KeyLocation.NOWHERE or self is EncryptionMode.AUTHENTICATED:
            return "none"
        name: str = self.value
        return name.split("-", 1)[1]

    @property
    def location(self) -> KeyLocation:
        """Where the wrapped key of this mode lives."""
        if self is EncryptionMode.NONE:
            return KeyLocation.NOWHERE
        if self.value.startswith("keyfile"):
            return KeyLocation.KEYFILE
        return KeyLocation.REPOSITORY


_SUITES = {
    EncryptionMode.NONE: Suite.PLAINTEXT,
    EncryptionMode.AUTHENTICATED: Suite.AUTHENTICATED,
    EncryptionMode.REPOKEY_CHACHA20_POLY1305: Suite.CHACHA20_POLY1305,
    EncryptionMode.REPOKEY_AES_GCM: Suite.AES_256_GCM,
    EncryptionMode.REPOKEY_AES_OCB: Suite.AES_256_OCB,
    EncryptionMode.KEYFILE_CHACHA20_POLY1305: Suite.CHACHA20_POLY1305,
    EncryptionMode.KEYFILE_AES_GCM: Suite.AES_256_GCM,
    EncryptionMode.KEYFILE_AES_OCB: Suite.AES_256_OCB,
}
_ALIASES = {
    "authenticated-blake2": EncryptionMode.AUTHENTICATED,
    "repokey": EncryptionMode.REPOKEY_CHACHA20_POLY1305,
    "repokey-blake2": EncryptionMode.REPOKEY_CHACHA20_POLY1305,
    "repokey-blake2-chacha20-poly1305": EncryptionMode.REPOKEY_CHACHA20_POLY1305,
    "repokey-blake2-aes-ocb": EncryptionMode.REPOKEY_AES_OCB,
    "keyfile": EncryptionMode.KEYFILE_CHACHA20_POLY1305,
    "keyfile-blake2": EncryptionMode.KEYFILE_CHACHA20_POLY1305,
    "keyfile-blake2-chacha20-poly1305": EncryptionMode.KEYFILE_CHACHA20_POLY1305,
    "keyfile-blake2-aes-ocb": EncryptionMode.KEYFILE_AES_OCB,
}


@dataclass(frozen=True)
class KeyMaterial:
    """The secrets of one repository. ``repr`` never shows a key.

    Mode ``none`` has empty encryption, auth and id keys (ids are plain
    hashes) and a chunker key derived from the repository id, so chunking
    is still deterministic per repository. Every other mode has four
    independent random 32-byte keys.
    """

    mode: EncryptionMode
    repository_id: bytes
    enc_key: bytes = field(repr=False)
    auth_key: bytes = field(repr=False)
    id_key: bytes = field(repr=False)
    chunker_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        secret_size = 0 if self.mode is EncryptionMode.NONE else KEY_SIZE
        sizes = {
            "repository_id": (self.repository_id, KEY_SIZE),
            "enc_key": (self.enc_key, secret_size),
            "auth_key": (self.auth_key, secret_size),
            "id_key": (self.id_key, secret_size),
            "chunker_key": (self.chunker_key, KEY_SIZE),
        }
        for name, (value, size) in sizes.items():
            if len(value) != size:
                raise ValueError(f"{name} must be {size} bytes for mode {self.mode.value}")

    @property
    def suite(self) -> Suite:
        """The envelope suite of this key's mode."""
        return self.mode.suite

    @classmethod
    def generate(cls, mode: EncryptionMode, repository_id: bytes) -> KeyMaterial:
        """Fresh key material from os.urandom (mode none: the fixed, derived keys)."""
        if mode is EncryptionMode.NONE:
            chunker_key = blake3.blake3(
                repository_id, derive_key_context=_NONE_CHUNKER_CONTEXT
            ).digest()
            return cls(mode, repository_id, b"", b"", b"", chunker_key)
        return cls(mode, repository_id, *(os.urandom(KEY_SIZE) for _ in range(4)))

    def encode(self) -> bytes:
        """The secret that gets wrapped: a versioned msgpack map."""
        fields = {
            "version": KEY_MATERIAL_VERSION,
            "mode": self.mode.value,
            "repository_id": self.repository_id,
            "enc_key": self.enc_key,
            "auth_key": self.auth_key,
            "id_key": self.id_key,
            "chunker_key": self.chunker_key,
        }
        packed: bytes = msgpack.packb(fields, use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> KeyMaterial:
        """Inverse of ``encode``; UnsupportedKeyFormat for anything else."""
        try:
            fields: dict[str, Any] = msgpack.unpackb(raw, raw=False)
            if fields["version"] != KEY_MATERIAL_VERSION:
                raise UnsupportedKeyFormat(f"key material version {fields['version']!r}")
            return cls(
                EncryptionMode(fields["mode"]),
                *(fields[name] for name in _SECRET_FIELDS),
            )
        except UnsupportedKeyFormat:
            raise
        except Exception as exc:  # whatever is wrong with it, the format is not ours
            raise UnsupportedKeyFormat(f"key material: {exc!r}") from None


_SECRET_FIELDS = ("repository_id", "enc_key", "auth_key", "id_key", "chunker_key")


class KeyBlobStore(Protocol):
    """Where repokey-style key blobs live (the Repository implements this).

    ``load_key`` raises ObjectNotFound when there is no blob of that name;
    ``store_key`` refuses to replace an existing blob (ObjectExists) unless
    ``overwrite``.
    """

    def store_key(self, name: str, blob: bytes, *, overwrite: bool = False) -> None: ...

    def load_key(self, name: str) -> bytes: ...


@dataclass(frozen=True)
class _StoredKey:
    """One stored copy of the repository key: its bytes (None: missing), the
    blob decoded from them, or why they do not decode."""

    name: str
    raw: bytes | None
    blob: KeyBlob | None
    problem: HoardError | None

    @property
    def reason(self) -> str:
        """What is wrong with it, in a few words (for messages about the copies)."""
        if isinstance(self.problem, KeyDamaged):
            return self.problem.reason
        return str(self.problem)

    def unwrap(self, passphrase: str) -> bytes:
        assert self.blob is not None
        return self.blob.unwrap(passphrase)


@dataclass
class KeyManager:
    """Creates, loads and rewraps the key of one repository.

    ``keys_dir`` is needed for keyfile modes, ``blob_store`` for
    authenticated and repokey modes. Errors: KeyfileNotFound,
    RepoKeyNotFound, KeyfileInvalid, KeyfileMismatch (key of another
    repository), UnsupportedKeyFormat, PassphraseWrong.
    """

    repository_id: bytes
    mode: EncryptionMode
    keys_dir: Path | None = None
    blob_store: KeyBlobStore | None = None
    damaged: str | None = field(default=None, init=False)
    """Set by ``load`` when the repository's key was unusable and its copy
    opened instead: what was wrong, for the caller to warn about."""
    _opened: bytes | None = field(default=None, init=False, repr=False)
    """The stored bytes of the repository key that opened (or was written)."""

    def __post_init__(self) -> None:
        location = self.mode.location
        if location is KeyLocation.KEYFILE and self.keys_dir is None:
            raise ValueError(f"mode {self.mode.value} needs keys_dir")
        if location is KeyLocation.REPOSITORY and self.blob_store is None:
            raise ValueError(f"mode {self.mode.value} needs blob_store")

    def create(self, passphrase: str, kdf: KdfParams = DEFAULT_KDF) -> KeyMaterial:
        """Generate the key of a new repository and store it wrapped with ``passphrase``."""
        key = KeyMaterial.generate(self.mode, self.repository_id)
        if self.mode.location is not KeyLocation.NOWHERE:
            self._save(self._wrap(key, passphrase, kdf), overwrite=False)
        return key

    def load(self, get_passphrase: Callable[[], str]) -> KeyMaterial:
        """Find, unwrap and check the key; ``get_passphrase`` is called only once it is found."""
        if self.mode.location is KeyLocation.NOWHERE:
            return KeyMaterial.generate(self.mode, self.repository_id)
        if self.mode.location is KeyLocation.REPOSITORY:
            secret, where = self._open_stored(get_passphrase)
        else:
            blob, where = self._load_blob()
            secret = blob.unwrap(get_passphrase())
        key = KeyMaterial.decode(secret)
        if key.repository_id != self.repository_id or key.mode is not self.mode:
            raise KeyfileInvalid(self._id_hex, f"{where} (key is for mode {key.mode.value})")
        return key

    def copy_problems(self) -> list[tuple[str, str]]:
        """(name, what is wrong) for each stored copy of the repository key
        that is not the one ``load`` opened: missing, damaged or different.
        Empty for key files and mode none (they have no copies). Call after
        ``load``."""
        if self._opened is None:
            return []
        problems = []
        for copy in self._stored_copies():
            if copy.raw is None:
                problems.append((copy.name, "missing"))
            elif copy.raw != self._opened:
                detail = f"damaged ({copy.reason})" if copy.problem else "differs from the key"
                problems.append((copy.name, detail))
        return problems

    def repair_copies(self) -> list[str]:
        """Rewrite every copy ``copy_problems`` names from the one that opened;
        returns their names. Call after ``load``."""
        assert self.blob_store is not None or self._opened is None
        repaired = []
        for name, detail in self.copy_problems():
            assert self.blob_store is not None and self._opened is not None
            self.blob_store.store_key(name, self._opened, overwrite=detail != "missing")
            repaired.append(name)
        return repaired

    def change_passphrase(
        self,
        get_passphrase: Callable[[], str],
        get_new_passphrase: Callable[[], str],
        kdf: KdfParams = DEFAULT_KDF,
    ) -> KeyMaterial:
        """Rewrap the key with a new passphrase (fresh salt) where it was found.

        The new passphrase is asked only once the current one opened the key.
        """
        self._require_key("change its passphrase")
        key = self.load(get_passphrase)
        self._save(self._wrap(key, get_new_passphrase(), kdf), overwrite=True)
        return key

    def export_text(self) -> str:
        """The key-file text of the (still wrapped) key: ``key export``."""
        return format_key_text(self.repository_id, self.export_blob())

    def export_blob(self) -> bytes:
        """The stored key blob (still wrapped): what ``key export`` writes out."""
        self._require_key("export")
        blob, _ = self._load_blob()
        return blob.encode()

    def import_text(self, text: str, where: str = "the imported key") -> None:
        """Store a key-file text as this repository's key: ``key import``.

        Checks that it is a key of this repository; the passphrase is only
        checked at the next ``load``. ``where`` names the text's origin in errors.
        """
        self._require_key("import")
        try:
            repository_id, raw = parse_key_text(text)
        except MalformedKeyTextError:
            raise KeyfileInvalid(self._id_hex, where) from None
        if repository_id != self.repository_id:
            raise KeyfileMismatch(self._id_hex, where)
        self.import_blob(raw, where)

    def import_blob(self, raw: bytes, where: str = "the imported key") -> None:
        """Store a key blob (from a key-file text or a paper key) as this
        repository's key, after checking that it is one of this repository."""
        self._require_key("import")
        self._save(self._decode(raw, where), overwrite=True)

    def key_file_path(self) -> Path:
        """The key file of a keyfile-mode repository (KeyfileNotFound if none)."""
        return self._find_key_file()

    @property
    def _id_hex(self) -> str:
        return self.repository_id.hex()

    def _require_key(self, action: str) -> None:
        if self.mode.location is KeyLocation.NOWHERE:
            raise CryptoKeyError(f"repository {self._id_hex} uses mode none: no key to {action}")

    def _wrap(self, key: KeyMaterial, passphrase: str, kdf: KdfParams) -> KeyBlob:
        return KeyBlob.wrap(key.encode(), passphrase, self.repository_id, kdf)

    def _stored_copies(self) -> list[_StoredKey]:
        """Both copies of the repository key, each decoded if it can be."""
        assert self.blob_store is not None
        copies = []
        for name in (REPOKEY_NAME, REPOKEY_COPY_NAME):
            try:
                raw = self.blob_store.load_key(name)
            except ObjectNotFound:
                copies.append(_StoredKey(name, None, None, None))
                continue
            try:
                copies.append(_StoredKey(name, raw, self._decode(raw, "the repository"), None))
            except HoardError as exc:
                copies.append(_StoredKey(name, raw, None, exc))
        return copies

    def _open_stored(self, get_passphrase: Callable[[], str]) -> tuple[bytes, str]:
        """Unwrap the repository key, from its copy when ``keys/repokey`` is
        missing or damaged (``damaged`` then says so).

        A blob without a checksum (written by an older hoard) that is damaged
        inside its ciphertext only shows as a wrong passphrase: then the
        copy, if it differs, is tried with the same passphrase.
        """
        where = "the repository"
        copies = self._stored_copies()
        usable = [c for c in copies if c.blob is not None]
        if not usable:
            self._load_blob()  # raises the error about the key itself
        passphrase = get_passphrase()
        chosen = usable[0]
        try:
            secret = chosen.unwrap(passphrase)
        except PassphraseWrong:
            other = next((c for c in usable[1:] if c.raw != chosen.raw), None)
            if other is None:
                raise
            secret = other.unwrap(passphrase)
            chosen = other
        main = copies[0]
        if chosen is not main:
            if main.raw is None:
                self.damaged = f"its key {KEYS_DIR}{main.name} is missing"
            elif main.problem is not None:
                self.damaged = f"its key {KEYS_DIR}{main.name} is damaged ({main.reason})"
            else:
                self.damaged = f"its key {KEYS_DIR}{main.name} is damaged (does not open)"
        self._opened = chosen.raw
        return secret, where

    def _load_blob(self) -> tuple[KeyBlob, str]:
        """The stored key blob and a description of where it was, for messages."""
        if self.mode.location is KeyLocation.REPOSITORY:
            copies = self._stored_copies()
            for copy in copies:
                if copy.blob is not None:
                    return copy.blob, "the repository"
            if all(c.raw is None for c in copies):
                raise RepoKeyNotFound(self._id_hex)
            raise next(c.problem for c in copies if c.problem is not None)
        path = self._find_key_file()
        try:
            _, raw = parse_key_text(path.read_text(encoding="ascii"))
        except (MalformedKeyTextError, UnicodeDecodeError):
            raise KeyfileInvalid(self._id_hex, str(path)) from None
        return self._decode(raw, str(path)), str(path)

    def _decode(self, raw: bytes, where: str) -> KeyBlob:
        try:
            blob = KeyBlob.decode(raw)
        except DamagedKeyBlobError as exc:
            raise KeyDamaged(self._id_hex, where, str(exc)) from None
        except MalformedKeyBlobError:
            raise KeyfileInvalid(self._id_hex, where) from None
        if blob.repository_id != self.repository_id:
            raise KeyfileMismatch(self._id_hex, where)
        return blob

    def _find_key_file(self) -> Path:
        assert self.keys_dir is not None
        path = find_key_file(self.keys_dir, self.repository_id)
        if path is None:
            raise KeyfileNotFound(self._id_hex, str(self.keys_dir))
        return path

    def _save(self, blob: KeyBlob, *, overwrite: bool) -> None:
        """Store ``blob`` where this mode keeps it (an existing key file is rewritten in place)."""
        raw = blob.encode()
        if self.mode.location is KeyLocation.REPOSITORY:
            assert self.blob_store is not None
            # a new key: the key itself first; a changed one: the copy first,
            # so a crash in between leaves the old key in force
            names = [REPOKEY_NAME, REPOKEY_COPY_NAME]
            for name in reversed(names) if overwrite else names:
                self.blob_store.store_key(name, raw, overwrite=overwrite)
            self._opened = raw
            return
        assert self.keys_dir is not None
        existing = find_key_file(self.keys_dir, self.repository_id) if overwrite else None
        path = existing or self.keys_dir / self._id_hex
        write_key_file(path, format_key_text(self.repository_id, raw))
