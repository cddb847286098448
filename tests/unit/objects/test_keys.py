"""Encryption modes, key material, and the KeyManager over both key locations."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import msgpack
import pytest

from hoard.errors import (
    CryptoKeyError,
    EncryptionModeInvalid,
    KeyDamaged,
    KeyfileInvalid,
    KeyfileMismatch,
    KeyfileNotFound,
    ObjectExists,
    ObjectNotFound,
    PassphraseWrong,
    RepoKeyNotFound,
    UnsupportedKeyFormat,
)
from hoard.objects.kdf import KdfParams
from hoard.objects.keyfile import format_key_text, parse_key_text
from hoard.objects.keys import (
    REPOKEY_COPY_NAME,
    REPOKEY_NAME,
    EncryptionMode,
    KeyLocation,
    KeyManager,
    KeyMaterial,
)
from hoard.objects.types import Suite

WEAK = KdfParams.weak()
REPOKEY_MODES = [m for m in EncryptionMode if m.location is KeyLocation.REPOSITORY]
KEYFILE_MODES = [m for m in EncryptionMode if m.location is KeyLocation.KEYFILE]


class DictKeyStore:
    """A test double of the Repository's KeyBlobStore side (a lower layer), as a dict."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def store_key(self, name: str, blob: bytes, *, overwrite: bool = False) -> None:
        if name in self.blobs and not overwrite:
            raise ObjectExists(f"keys/{name}")
        self.blobs[name] = blob

    def load_key(self, name: str) -> bytes:
        try:
            return self.blobs[name]
        except KeyError:
            raise ObjectNotFound(f"keys/{name}") from None


class Source:
    """Callable passphrase source counting its calls."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.text


@pytest.fixture
def repo_id() -> bytes:
    return os.urandom(32)


def manager(
    mode: EncryptionMode, repo_id: bytes, tmp_path: Path, store: DictKeyStore | None = None
) -> KeyManager:
    return KeyManager(repo_id, mode, keys_dir=tmp_path / "keys", blob_store=store or DictKeyStore())


# --- modes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("none", EncryptionMode.NONE),
        ("authenticated", EncryptionMode.AUTHENTICATED),
        ("authenticated-blake2", EncryptionMode.AUTHENTICATED),
        ("repokey", EncryptionMode.REPOKEY_CHACHA20_POLY1305),
        ("repokey-blake2", EncryptionMode.REPOKEY_CHACHA20_POLY1305),
        ("repokey-chacha20-poly1305", EncryptionMode.REPOKEY_CHACHA20_POLY1305),
        ("repokey-aes-gcm", EncryptionMode.REPOKEY_AES_GCM),
        ("repokey-aes-ocb", EncryptionMode.REPOKEY_AES_OCB),
        ("repokey-blake2-aes-ocb", EncryptionMode.REPOKEY_AES_OCB),
        ("keyfile", EncryptionMode.KEYFILE_CHACHA20_POLY1305),
        ("keyfile-blake2", EncryptionMode.KEYFILE_CHACHA20_POLY1305),
        ("keyfile-chacha20-poly1305", EncryptionMode.KEYFILE_CHACHA20_POLY1305),
        ("keyfile-aes-gcm", EncryptionMode.KEYFILE_AES_GCM),
        ("keyfile-aes-ocb", EncryptionMode.KEYFILE_AES_OCB),
    ],
)
def test_parse_mode(text: str, mode: EncryptionMode) -> None:
    assert EncryptionMode.parse(text) is mode
    assert EncryptionMode.parse(mode.value) is mode


@pytest.mark.parametrize("text", ["", "Repokey", "repokey-aes-ctr", "keyfile ", "encrypted"])
def test_parse_unknown_mode_lists_choices(text: str) -> None:
    with pytest.raises(EncryptionModeInvalid) as info:
        EncryptionMode.parse(text)
    message = str(info.value)
    assert repr(text) in message
    for choice in ["none", "authenticated", "repokey", "keyfile-blake2", "keyfile-aes-ocb"]:
        assert choice in message


def test_mode_suites_and_locations() -> None:
    assert EncryptionMode.NONE.suite is Suite.PLAINTEXT
    assert EncryptionMode.NONE.location is KeyLocation.NOWHERE
    assert EncryptionMode.AUTHENTICATED.suite is Suite.AUTHENTICATED
    assert EncryptionMode.AUTHENTICATED.location is KeyLocation.REPOSITORY
    assert EncryptionMode.parse("repokey").suite is Suite.CHACHA20_POLY1305
    assert EncryptionMode.parse("keyfile-aes-gcm").suite is Suite.AES_256_GCM
    assert EncryptionMode.parse("keyfile-aes-ocb").location is KeyLocation.KEYFILE
    assert EncryptionMode.parse("repokey-aes-ocb").suite is Suite.AES_256_OCB


# --- key material ----------------------------------------------------------------


def test_generate_random_independent_keys(repo_id: bytes) -> None:
    a = KeyMaterial.generate(EncryptionMode.REPOKEY_AES_GCM, repo_id)
    b = KeyMaterial.generate(EncryptionMode.REPOKEY_AES_GCM, repo_id)
    secrets = [a.enc_key, a.auth_key, a.id_key, a.chunker_key]
    assert all(len(s) == 32 for s in secrets)
    assert len(set(secrets)) == 4
    assert a != b
    assert a.suite is Suite.AES_256_GCM
    assert a.repository_id == repo_id


def test_mode_none_keys(repo_id: bytes) -> None:
    a = KeyMaterial.generate(EncryptionMode.NONE, repo_id)
    assert a == KeyMaterial.generate(EncryptionMode.NONE, repo_id)
    assert (a.enc_key, a.auth_key, a.id_key) == (b"", b"", b"")
    assert len(a.chunker_key) == 32
    assert a.chunker_key != KeyMaterial.generate(EncryptionMode.NONE, os.urandom(32)).chunker_key


def test_repr_hides_secrets(repo_id: bytes) -> None:
    key = KeyMaterial.generate(EncryptionMode.KEYFILE_AES_OCB, repo_id)
    text = repr(key)
    for secret in (key.enc_key, key.auth_key, key.id_key, key.chunker_key):
        assert secret.hex() not in text
        assert repr(secret) not in text


def test_key_material_encoding_round_trip(repo_id: bytes) -> None:
    for mode in EncryptionMode:
        key = KeyMaterial.generate(mode, repo_id)
        assert KeyMaterial.decode(key.encode()) == key


@pytest.mark.parametrize(
    "raw",
    [
        b"junk",
        msgpack.packb({"version": 2}),
        msgpack.packb({"version": 1, "mode": "rot13"}),
        msgpack.packb({"version": 1, "mode": "repokey-aes-gcm", "repository_id": b"x"}),
    ],
)
def test_key_material_decode_garbage(raw: bytes) -> None:
    with pytest.raises(UnsupportedKeyFormat):
        KeyMaterial.decode(raw)


def test_key_material_validates_sizes(repo_id: bytes) -> None:
    with pytest.raises(ValueError, match="enc_key"):
        KeyMaterial(EncryptionMode.REPOKEY_AES_GCM, repo_id, b"", b"a" * 32, b"a" * 32, b"a" * 32)
    with pytest.raises(ValueError, match="id_key"):
        KeyMaterial(EncryptionMode.NONE, repo_id, b"", b"", b"a" * 32, b"a" * 32)


# --- KeyManager --------------------------------------------------------------------


@pytest.mark.parametrize("mode", REPOKEY_MODES + KEYFILE_MODES)
def test_create_then_load(mode: EncryptionMode, repo_id: bytes, tmp_path: Path) -> None:
    store = DictKeyStore()
    created = manager(mode, repo_id, tmp_path, store).create("secret", WEAK)
    source = Source("secret")
    assert manager(mode, repo_id, tmp_path, store).load(source) == created
    assert source.calls == 1
    if mode.location is KeyLocation.REPOSITORY:
        assert list(store.blobs) == [REPOKEY_NAME, REPOKEY_COPY_NAME]
        assert store.blobs[REPOKEY_NAME] == store.blobs[REPOKEY_COPY_NAME]
        assert not (tmp_path / "keys").exists()
    else:
        assert store.blobs == {}
        assert os.listdir(tmp_path / "keys") == [repo_id.hex()]


def test_mode_none_stores_nothing_and_asks_nothing(repo_id: bytes, tmp_path: Path) -> None:
    store = DictKeyStore()
    created = manager(EncryptionMode.NONE, repo_id, tmp_path, store).create("ignored", WEAK)
    source = Source("x")
    assert manager(EncryptionMode.NONE, repo_id, tmp_path, store).load(source) == created
    assert source.calls == 0
    assert store.blobs == {}
    assert not (tmp_path / "keys").exists()
    plain = manager(EncryptionMode.NONE, repo_id, tmp_path, store)
    with pytest.raises(CryptoKeyError, match="mode none"):
        plain.export_text()
    with pytest.raises(CryptoKeyError, match="mode none"):
        plain.import_text("x")
    with pytest.raises(CryptoKeyError, match="mode none"):
        plain.change_passphrase(source, lambda: "new", WEAK)


def test_keyfile_with_empty_passphrase(repo_id: bytes, tmp_path: Path) -> None:
    mode = EncryptionMode.KEYFILE_CHACHA20_POLY1305
    created = manager(mode, repo_id, tmp_path).create("", WEAK)
    assert manager(mode, repo_id, tmp_path).load(Source("")) == created


@pytest.mark.parametrize("mode", [EncryptionMode.REPOKEY_AES_GCM, EncryptionMode.KEYFILE_AES_OCB])
def test_wrong_passphrase(mode: EncryptionMode, repo_id: bytes, tmp_path: Path) -> None:
    store = DictKeyStore()
    manager(mode, repo_id, tmp_path, store).create("right", WEAK)
    with pytest.raises(PassphraseWrong):
        manager(mode, repo_id, tmp_path, store).load(Source("wrong"))


def test_missing_repokey_does_not_ask(repo_id: bytes, tmp_path: Path) -> None:
    source = Source("x")
    with pytest.raises(RepoKeyNotFound) as info:
        manager(EncryptionMode.AUTHENTICATED, repo_id, tmp_path).load(source)
    assert repo_id.hex() in str(info.value)
    assert source.calls == 0


def test_missing_keyfile_does_not_ask(repo_id: bytes, tmp_path: Path) -> None:
    source = Source("x")
    with pytest.raises(KeyfileNotFound) as info:
        manager(EncryptionMode.KEYFILE_AES_GCM, repo_id, tmp_path).load(source)
    assert repo_id.hex() in str(info.value)
    assert str(tmp_path / "keys") in str(info.value)
    assert source.calls == 0


def test_keyfile_found_after_rename(repo_id: bytes, tmp_path: Path) -> None:
    mode = EncryptionMode.KEYFILE_CHACHA20_POLY1305
    created = manager(mode, repo_id, tmp_path).create("pw", WEAK)
    keys = tmp_path / "keys"
    (keys / repo_id.hex()).rename(keys / "backup-server.key")
    assert manager(mode, repo_id, tmp_path).load(Source("pw")) == created


@pytest.mark.parametrize(
    "body",
    ["not base64 at all ###", "AAAA", format_key_text(b"\x00" * 32, b"junk").split("\n", 1)[1]],
)
def test_garbage_keyfile(body: str, repo_id: bytes, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / repo_id.hex()).write_text(f"HOARD KEY {repo_id.hex()}\n{body}\n")
    with pytest.raises(KeyfileInvalid) as info:
        manager(EncryptionMode.KEYFILE_AES_GCM, repo_id, tmp_path).load(Source("pw"))
    assert repo_id.hex() in str(info.value)


def test_non_ascii_keyfile(repo_id: bytes, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / repo_id.hex()).write_bytes(f"HOARD KEY {repo_id.hex()}\n".encode() + b"\xff\xfe\n")
    with pytest.raises(KeyfileInvalid):
        manager(EncryptionMode.KEYFILE_AES_GCM, repo_id, tmp_path).load(Source("pw"))


def test_corrupt_repokey(repo_id: bytes, tmp_path: Path) -> None:
    store = DictKeyStore()
    store.blobs[REPOKEY_NAME] = store.blobs[REPOKEY_COPY_NAME] = b"\x93garbage"
    with pytest.raises(KeyfileInvalid):
        manager(EncryptionMode.REPOKEY_AES_GCM, repo_id, tmp_path, store).load(Source("pw"))


def _flip(raw: bytes, where: float = 0.5) -> bytes:
    data = bytearray(raw)
    data[int(len(data) * where)] ^= 0x08
    return bytes(data)


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_damaged_repokey_opens_from_its_copy(damage: str, repo_id: bytes, tmp_path: Path) -> None:
    store = DictKeyStore()
    mode = EncryptionMode.REPOKEY_CHACHA20_POLY1305
    created = manager(mode, repo_id, tmp_path, store).create("pw", WEAK)
    if damage == "flip":
        store.blobs[REPOKEY_NAME] = _flip(store.blobs[REPOKEY_NAME])
    else:
        del store.blobs[REPOKEY_NAME]
    keys = manager(mode, repo_id, tmp_path, store)
    assert keys.load(Source("pw")) == created
    assert keys.damaged is not None and "keys/repokey" in keys.damaged
    assert keys.copy_problems() == [
        (REPOKEY_NAME, "missing" if damage == "delete" else "damaged (checksum mismatch)")
    ]
    assert keys.repair_copies() == [REPOKEY_NAME]
    assert store.blobs[REPOKEY_NAME] == store.blobs[REPOKEY_COPY_NAME]
    again = manager(mode, repo_id, tmp_path, store)
    assert again.load(Source("pw")) == created
    assert again.damaged is None and again.copy_problems() == []


def test_damaged_copy_is_reported_and_repaired(repo_id: bytes, tmp_path: Path) -> None:
    store = DictKeyStore()
    mode = EncryptionMode.REPOKEY_AES_GCM
    manager(mode, repo_id, tmp_path, store).create("pw", WEAK)
    store.blobs[REPOKEY_COPY_NAME] = _flip(store.blobs[REPOKEY_COPY_NAME], 0.8)
    keys = manager(mode, repo_id, tmp_path, store)
    keys.load(Source("pw"))
    assert keys.damaged is None  # the key itself is fine
    assert keys.copy_problems() == [(REPOKEY_COPY_NAME, "damaged (checksum mismatch)")]
    keys.repair_copies()
    assert store.blobs[REPOKEY_NAME] == store.blobs[REPOKEY_COPY_NAME]


def test_damaged_key_is_not_a_wrong_passphrase(repo_id: bytes, tmp_path: Path) -> None:
    """Both copies damaged: the error says so instead of blaming the passphrase."""
    store = DictKeyStore()
    mode = EncryptionMode.REPOKEY_AES_GCM
    manager(mode, repo_id, tmp_path, store).create("pw", WEAK)
    for name in (REPOKEY_NAME, REPOKEY_COPY_NAME):
        store.blobs[name] = _flip(store.blobs[name])
    source = Source("pw")
    with pytest.raises(KeyDamaged, match="damaged"):
        manager(mode, repo_id, tmp_path, store).load(source)
    assert source.calls == 0


def test_old_blob_damaged_in_its_ciphertext_opens_from_the_copy(
    repo_id: bytes, tmp_path: Path
) -> None:
    """Without a checksum a damaged ciphertext looks like a wrong passphrase:
    the copy is tried with the same passphrase before saying so."""
    store = DictKeyStore()
    mode = EncryptionMode.REPOKEY_AES_GCM
    created = manager(mode, repo_id, tmp_path, store).create("pw", WEAK)
    fields = msgpack.unpackb(store.blobs[REPOKEY_NAME])
    fields.pop("checksum")
    store.blobs[REPOKEY_COPY_NAME] = msgpack.packb(fields)
    fields["data"] = _flip(fields["data"])
    store.blobs[REPOKEY_NAME] = msgpack.packb(fields)
    keys = manager(mode, repo_id, tmp_path, store)
    assert keys.load(Source("pw")) == created
    assert keys.damaged is not None and "does not open" in keys.damaged
    with pytest.raises(PassphraseWrong):
        manager(mode, repo_id, tmp_path, store).load(Source("wrong"))


def test_keyfile_damage_is_named(repo_id: bytes, tmp_path: Path) -> None:
    mode = EncryptionMode.KEYFILE_AES_GCM
    manager(mode, repo_id, tmp_path).create("pw", WEAK)
    path = tmp_path / "keys" / repo_id.hex()
    header, body = path.read_text().split("\n", 1)
    raw = _flip(base64.b64decode("".join(body.split())), 0.9)
    path.write_text(header + "\n" + base64.b64encode(raw).decode() + "\n")
    with pytest.raises(KeyDamaged, match=str(path)):
        manager(mode, repo_id, tmp_path).load(Source("pw"))


def test_unsupported_repokey_version(repo_id: bytes, tmp_path: Path) -> None:
    store = DictKeyStore()
    manager(EncryptionMode.REPOKEY_AES_GCM, repo_id, tmp_path, store).create("pw", WEAK)
    fields = msgpack.unpackb(store.blobs[REPOKEY_NAME])
    fields.pop("checksum")
    store.blobs[REPOKEY_NAME] = store.blobs[REPOKEY_COPY_NAME] = msgpack.packb(
        {**fields, "version": 9}
    )
    with pytest.raises(UnsupportedKeyFormat, match="version 9"):
        manager(EncryptionMode.REPOKEY_AES_GCM, repo_id, tmp_path, store).load(Source("pw"))


def test_key_of_another_repository_refused(repo_id: bytes, tmp_path: Path) -> None:
    mode = EncryptionMode.REPOKEY_CHACHA20_POLY1305
    other = DictKeyStore()
    manager(mode, os.urandom(32), tmp_path, other).create("pw", WEAK)
    with pytest.raises(KeyfileMismatch) as info:
        manager(mode, repo_id, tmp_path, other).load(Source("pw"))
    assert repo_id.hex() in str(info.value)
    # relabelled to claim this repository: the wrapping's associated data still refuses it
    fields = msgpack.unpackb(other.blobs[REPOKEY_NAME])
    fields.pop("checksum")
    relabelled = msgpack.packb({**fields, "repository_id": repo_id})
    other.blobs[REPOKEY_NAME] = other.blobs[REPOKEY_COPY_NAME] = relabelled
    with pytest.raises(PassphraseWrong):
        manager(mode, repo_id, tmp_path, other).load(Source("pw"))


def test_key_of_another_mode_refused(repo_id: bytes, tmp_path: Path) -> None:
    """A config claiming another cipher than the (authenticated) key holds is refused."""
    store = DictKeyStore()
    manager(EncryptionMode.REPOKEY_AES_GCM, repo_id, tmp_path, store).create("pw", WEAK)
    with pytest.raises(KeyfileInvalid, match="repokey-aes-gcm"):
        manager(EncryptionMode.REPOKEY_AES_OCB, repo_id, tmp_path, store).load(Source("pw"))


def test_create_refuses_to_overwrite_a_repokey(repo_id: bytes, tmp_path: Path) -> None:
    store = DictKeyStore()
    manager(EncryptionMode.REPOKEY_AES_GCM, repo_id, tmp_path, store).create("pw", WEAK)
    with pytest.raises(ObjectExists):
        manager(EncryptionMode.REPOKEY_AES_GCM, repo_id, tmp_path, store).create("pw", WEAK)


@pytest.mark.parametrize("mode", [EncryptionMode.AUTHENTICATED, EncryptionMode.KEYFILE_AES_GCM])
def test_change_passphrase(mode: EncryptionMode, repo_id: bytes, tmp_path: Path) -> None:
    store = DictKeyStore()
    created = manager(mode, repo_id, tmp_path, store).create("old", WEAK)
    changed = manager(mode, repo_id, tmp_path, store).change_passphrase(
        Source("old"), lambda: "new", WEAK
    )
    assert changed == created
    assert manager(mode, repo_id, tmp_path, store).load(Source("new")) == created
    with pytest.raises(PassphraseWrong):
        manager(mode, repo_id, tmp_path, store).load(Source("old"))


def test_change_passphrase_keeps_renamed_keyfile(repo_id: bytes, tmp_path: Path) -> None:
    mode = EncryptionMode.KEYFILE_CHACHA20_POLY1305
    manager(mode, repo_id, tmp_path).create("old", WEAK)
    keys = tmp_path / "keys"
    (keys / repo_id.hex()).rename(keys / "renamed")
    manager(mode, repo_id, tmp_path).change_passphrase(Source("old"), lambda: "new", WEAK)
    assert os.listdir(keys) == ["renamed"]
    manager(mode, repo_id, tmp_path).load(Source("new"))


def test_change_passphrase_with_wrong_old_one_changes_nothing(
    repo_id: bytes, tmp_path: Path
) -> None:
    store = DictKeyStore()
    manager(EncryptionMode.REPOKEY_AES_OCB, repo_id, tmp_path, store).create("old", WEAK)
    before = dict(store.blobs)
    with pytest.raises(PassphraseWrong):
        manager(EncryptionMode.REPOKEY_AES_OCB, repo_id, tmp_path, store).change_passphrase(
            Source("wrong"),
            lambda: pytest.fail("the new passphrase is asked only after the old"),
            WEAK,
        )
    assert store.blobs == before


def test_export_then_import_into_the_other_location(repo_id: bytes, tmp_path: Path) -> None:
    """``key export`` of a repokey, ``key import`` after the repository lost it."""
    mode = EncryptionMode.REPOKEY_CHACHA20_POLY1305
    store = DictKeyStore()
    created = manager(mode, repo_id, tmp_path, store).create("pw", WEAK)
    text = manager(mode, repo_id, tmp_path, store).export_text()
    assert parse_key_text(text)[0] == repo_id
    fresh = DictKeyStore()
    manager(mode, repo_id, tmp_path, fresh).import_text(text)
    assert manager(mode, repo_id, tmp_path, fresh).load(Source("pw")) == created


def test_import_keyfile_text(repo_id: bytes, tmp_path: Path) -> None:
    mode = EncryptionMode.KEYFILE_AES_GCM
    created = manager(mode, repo_id, tmp_path / "a").create("pw", WEAK)
    text = manager(mode, repo_id, tmp_path / "a").export_text()
    assert text == (tmp_path / "a" / "keys" / repo_id.hex()).read_text()
    manager(mode, repo_id, tmp_path / "b").import_text(text)
    assert manager(mode, repo_id, tmp_path / "b").load(Source("pw")) == created


def test_import_refuses_other_repository_and_garbage(repo_id: bytes, tmp_path: Path) -> None:
    mode = EncryptionMode.REPOKEY_AES_GCM
    other_id = os.urandom(32)
    other = manager(mode, other_id, tmp_path)
    other.create("pw", WEAK)
    target = manager(mode, repo_id, tmp_path)
    with pytest.raises(KeyfileMismatch):
        target.import_text(other.export_text())
    relabelled = other.export_text().replace(other_id.hex(), repo_id.hex())
    with pytest.raises(KeyfileMismatch):
        target.import_text(relabelled)
    with pytest.raises(KeyfileInvalid):
        target.import_text("this is not a key\n")


def test_manager_needs_its_location() -> None:
    with pytest.raises(ValueError, match="keys_dir"):
        KeyManager(b"\x00" * 32, EncryptionMode.KEYFILE_AES_GCM, blob_store=DictKeyStore())
    with pytest.raises(ValueError, match="blob_store"):
        KeyManager(b"\x00" * 32, EncryptionMode.AUTHENTICATED, keys_dir=Path("/tmp"))
    KeyManager(b"\x00" * 32, EncryptionMode.NONE)
