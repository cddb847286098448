"""The envelope: round trips per suite, tampering, nonce uniqueness, session keys."""

from __future__ import annotations

import os
import threading

import pytest

from hoard.errors import IntegrityError
from hoard.objects import envelope as envelope_module
from hoard.objects.envelope import (
    AD_PREFIX,
    MAX_COUNTER,
    SESSION_INFO,
    Envelope,
    associated_data,
    derive_session_key,
)
from hoard.objects.keys import EncryptionMode, KeyMaterial
from hoard.objects.types import ObjectType, Suite

ENC_KEY = os.urandom(32)
AUTH_KEY = os.urandom(32)
OID = bytes.fromhex("ab" * 32)
OTHER_ID = bytes.fromhex("cd" * 32)
PAYLOAD = b"compressed payload " * 50
AEAD_SUITES = [Suite.CHACHA20_POLY1305, Suite.AES_256_GCM, Suite.AES_256_OCB]
AUTH_SUITES = [Suite.AUTHENTICATED, *AEAD_SUITES]


def make(suite: Suite) -> Envelope:
    return Envelope(suite, ENC_KEY, AUTH_KEY)


def test_stored_values_are_the_format() -> None:
    """These numbers are written into repositories; changing one breaks every repository."""
    assert [int(t) for t in ObjectType] == [0, 1, 2, 3, 4]
    assert [int(s) for s in Suite] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("suite", list(Suite))
@pytest.mark.parametrize("payload", [b"", b"x", PAYLOAD])
def test_round_trip(suite: Suite, payload: bytes) -> None:
    env = make(suite)
    for type_ in ObjectType:
        blob = env.seal(type_, OID, payload)
        assert blob[0] == suite
        assert env.open(type_, OID, blob) == payload
        assert env.open(type_, OID, memoryview(blob)) == payload


@pytest.mark.parametrize("suite", AUTH_SUITES)
def test_another_instance_with_the_same_key_opens(suite: Suite) -> None:
    blob = make(suite).seal(ObjectType.TREE, OID, PAYLOAD)
    assert make(suite).open(ObjectType.TREE, OID, blob) == PAYLOAD


def test_plaintext_layout() -> None:
    assert make(Suite.PLAINTEXT).seal(ObjectType.DATA, OID, b"abc") == b"\x00abc"


def test_authenticated_layout() -> None:
    blob = make(Suite.AUTHENTICATED).seal(ObjectType.DATA, OID, b"abc")
    assert blob[:4] == b"\x01abc"
    assert len(blob) == 1 + 3 + 32


@pytest.mark.parametrize("suite", AEAD_SUITES)
def test_aead_layout_and_counter(suite: Suite) -> None:
    env = make(suite)
    first = env.seal(ObjectType.DATA, OID, PAYLOAD)
    second = env.seal(ObjectType.DATA, OID, PAYLOAD)
    assert len(first) == 1 + 24 + 8 + len(PAYLOAD) + 16
    assert first[1:25] == second[1:25] == env.session_id
    assert first[25:33] == (0).to_bytes(8, "big")
    assert second[25:33] == (1).to_bytes(8, "big")
    assert first[33:] != second[33:]
    assert PAYLOAD[:16] not in first


def test_associated_data_binds_type_id_and_suite() -> None:
    ad = associated_data(ObjectType.ARCHIVE, OID, Suite.AES_256_GCM)
    assert ad == AD_PREFIX + b"\x02" + OID + b"\x03"


def test_session_key_is_hkdf_of_the_session_id() -> None:
    a = derive_session_key(ENC_KEY, b"s" * 24, Suite.CHACHA20_POLY1305)
    assert a == derive_session_key(ENC_KEY, b"s" * 24, Suite.CHACHA20_POLY1305)
    assert a != derive_session_key(ENC_KEY, b"t" * 24, Suite.CHACHA20_POLY1305)
    assert a != derive_session_key(ENC_KEY, b"s" * 24, Suite.AES_256_GCM)
    assert SESSION_INFO == b"hoard session v1"


def test_two_instances_have_different_sessions() -> None:
    a, b = make(Suite.CHACHA20_POLY1305), make(Suite.CHACHA20_POLY1305)
    assert len(a.session_id) == 24
    assert a.session_id != b.session_id
    blob_a = a.seal(ObjectType.DATA, OID, PAYLOAD)
    blob_b = b.seal(ObjectType.DATA, OID, PAYLOAD)
    assert blob_a[25:33] == blob_b[25:33]  # same counter, yet different keys:
    assert blob_a[33:] != blob_b[33:]


@pytest.mark.parametrize("suite", [Suite.PLAINTEXT, Suite.AUTHENTICATED])
def test_suites_without_session(suite: Suite) -> None:
    assert make(suite).session_id == b""


def test_nonces_unique_across_threads() -> None:
    env = make(Suite.CHACHA20_POLY1305)
    counters: list[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [env.seal(ObjectType.DATA, OID, b"p")[25:33] for _ in range(500)]
        with lock:
            counters.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(counters) == 2000
    assert len(set(counters)) == 2000
    assert {int.from_bytes(c, "big") for c in counters} == set(range(2000))


def test_refuses_to_seal_past_the_counter_space() -> None:
    env = make(Suite.AES_256_GCM)
    env._counter = MAX_COUNTER  # reaching it for real would take 2**64 seals
    last = env.seal(ObjectType.DATA, OID, b"p")
    assert last[25:33] == b"\xff" * 8
    with pytest.raises(OverflowError):
        env.seal(ObjectType.DATA, OID, b"p")


def _flip(blob: bytes, index: int) -> bytes:
    mutable = bytearray(blob)
    mutable[index] ^= 0x01
    return bytes(mutable)


def _assert_refused(env: Envelope, type_: ObjectType, id_: bytes, blob: bytes) -> None:
    with pytest.raises(IntegrityError) as info:
        env.open(type_, id_, blob)
    message = str(info.value)
    assert id_.hex() in message
    assert type_.name in message


@pytest.mark.parametrize("suite", AEAD_SUITES)
@pytest.mark.parametrize(
    "region",
    {"suite": 0, "session id": 5, "counter": 30, "ciphertext": 40, "tag": -1}.items(),
    ids=lambda item: item[0],
)
def test_tampering_aead(suite: Suite, region: tuple[str, int]) -> None:
    env = make(suite)
    blob = env.seal(ObjectType.DATA, OID, PAYLOAD)
    _assert_refused(env, ObjectType.DATA, OID, _flip(blob, region[1]))
    _assert_refused(make(suite), ObjectType.DATA, OID, _flip(blob, region[1]))


@pytest.mark.parametrize("index", [0, 1, -1])
def test_tampering_authenticated(index: int) -> None:
    env = make(Suite.AUTHENTICATED)
    blob = env.seal(ObjectType.DATA, OID, PAYLOAD)
    _assert_refused(env, ObjectType.DATA, OID, _flip(blob, index))


@pytest.mark.parametrize("suite", AUTH_SUITES)
def test_wrong_type_or_id_refused(suite: Suite) -> None:
    env = make(suite)
    blob = env.seal(ObjectType.ARCHIVE, OID, PAYLOAD)
    _assert_refused(env, ObjectType.META, OID, blob)
    _assert_refused(env, ObjectType.ARCHIVE, OTHER_ID, blob)


@pytest.mark.parametrize("suite", AUTH_SUITES)
def test_wrong_key_refused(suite: Suite) -> None:
    blob = make(suite).seal(ObjectType.DATA, OID, PAYLOAD)
    stranger = Envelope(suite, os.urandom(32), os.urandom(32))
    _assert_refused(stranger, ObjectType.DATA, OID, blob)


@pytest.mark.parametrize("suite", list(Suite))
def test_short_or_empty_blob_refused(suite: Suite) -> None:
    env = make(suite)
    _assert_refused(env, ObjectType.DATA, OID, b"")
    if suite is not Suite.PLAINTEXT:  # b"\x00" alone is a valid plaintext object
        blob = env.seal(ObjectType.DATA, OID, b"")
        for cut in (1, len(blob) - 1):
            _assert_refused(env, ObjectType.DATA, OID, blob[:cut])


def test_other_suite_refused_even_in_mode_none() -> None:
    """Mode none must not accept an encrypted object as plaintext, nor the reverse."""
    sealed = make(Suite.CHACHA20_POLY1305).seal(ObjectType.DATA, OID, PAYLOAD)
    _assert_refused(make(Suite.PLAINTEXT), ObjectType.DATA, OID, sealed)
    plain = make(Suite.PLAINTEXT).seal(ObjectType.DATA, OID, PAYLOAD)
    _assert_refused(make(Suite.CHACHA20_POLY1305), ObjectType.DATA, OID, plain)
    _assert_refused(make(Suite.AUTHENTICATED), ObjectType.DATA, OID, plain)


def test_open_runs_hkdf_once_per_session(monkeypatch: pytest.MonkeyPatch) -> None:
    writer = make(Suite.CHACHA20_POLY1305)
    blobs = [writer.seal(ObjectType.DATA, OID, b"%d" % i) for i in range(50)]
    reader = make(Suite.CHACHA20_POLY1305)
    calls: list[bytes] = []
    real = envelope_module.derive_session_key

    def counting(enc_key: bytes, session_id: bytes, suite: Suite) -> bytes:
        calls.append(session_id)
        return real(enc_key, session_id, suite)

    monkeypatch.setattr(envelope_module, "derive_session_key", counting)
    for i, blob in enumerate(blobs):
        assert reader.open(ObjectType.DATA, OID, blob) == b"%d" % i
    assert calls == [writer.session_id]


def test_session_cache_is_bounded() -> None:
    reader = make(Suite.AES_256_GCM)
    for _ in range(envelope_module.SESSION_CACHE_SIZE + 10):
        blob = make(Suite.AES_256_GCM).seal(ObjectType.DATA, OID, b"p")
        assert reader.open(ObjectType.DATA, OID, blob) == b"p"
    assert len(reader._sessions) == envelope_module.SESSION_CACHE_SIZE


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="encryption key"):
        Envelope(Suite.CHACHA20_POLY1305, b"short")
    with pytest.raises(ValueError, match="auth key"):
        Envelope(Suite.AUTHENTICATED, ENC_KEY, b"")
    with pytest.raises(ValueError, match="object id"):
        make(Suite.AES_256_OCB).seal(ObjectType.DATA, b"short", b"")


@pytest.mark.parametrize("mode", list(EncryptionMode))
def test_from_key_material(mode: EncryptionMode) -> None:
    key = KeyMaterial.generate(mode, b"\x42" * 32)
    env = Envelope.from_key(key)
    assert env.suite is mode.suite
    blob = env.seal(ObjectType.DATA, OID, b"x")
    assert Envelope.from_key(key).open(ObjectType.DATA, OID, blob) == b"x"
