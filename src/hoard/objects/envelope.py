"""The envelope: what turns an object's (compressed) payload into stored bytes.

Every stored object starts with one suite byte (``types.Suite``):

- 0 plaintext (mode none): ``suite | payload``; integrity comes from the
  caller re-hashing the id.
- 1 authenticated: ``suite | payload | tag(32)``, tag = keyed BLAKE3 with the
  auth key over ``AD | payload``.
- 2/3/4 ChaCha20-Poly1305 / AES-256-GCM / AES-256-OCB:
  ``suite | session_id(24) | counter(8, big endian) | ciphertext | tag(16)``.

AD (associated data) = ``b"hoard-obj-v1" | type(1) | id(32) | suite(1)``: an
object cannot be presented as another id or type. Each Envelope instance
starts a session with a random 24-byte id and its own key
``HKDF-SHA256(enc_key, salt=session_id, info=b"hoard session v1" | suite)``;
the nonce is a per-session counter. No nonce state is kept between runs, so
concurrent clients and copied repositories cannot reuse a (key, nonce) pair.
docs/design/crypto.md has the reasoning and the threat model.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESOCB3, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hoard.errors import IntegrityError
from hoard.objects.types import Buffer, ObjectType, Suite

if TYPE_CHECKING:
    from hoard.objects.keys import KeyMaterial

AD_PREFIX = b"hoard-obj-v1"
SESSION_INFO = b"hoard session v1"
SESSION_ID_SIZE = 24
COUNTER_SIZE = 8
NONCE_SIZE = 12
AEAD_TAG_SIZE = 16
AUTH_TAG_SIZE = 32
KEY_SIZE = 32
ID_SIZE = 32
MAX_COUNTER = 2**64 - 1
SESSION_CACHE_SIZE = 256
"""Session keys kept for ``open``: an archive's objects come from few sessions."""

AeadCipher = ChaCha20Poly1305 | AESGCM | AESOCB3
_AEAD_CLASSES: dict[Suite, type[AeadCipher]] = {
    Suite.CHACHA20_POLY1305: ChaCha20Poly1305,
    Suite.AES_256_GCM: AESGCM,
    Suite.AES_256_OCB: AESOCB3,
}
_AEAD_HEADER = 1 + SESSION_ID_SIZE + COUNTER_SIZE
_NONCE_PAD = bytes(NONCE_SIZE - COUNTER_SIZE)


def associated_data(type_: ObjectType, id_: bytes, suite: Suite) -> bytes:
    """The bytes every authenticated suite binds to the payload."""
    return AD_PREFIX + bytes((type_,)) + id_ + bytes((suite,))


def derive_session_key(enc_key: bytes, session_id: bytes, suite: Suite) -> bytes:
    """HKDF-SHA256 of the encryption key with the session id as salt."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_SIZE,
        salt=session_id,
        info=SESSION_INFO + bytes((suite,)),
    )
    return hkdf.derive(enc_key)


class Envelope:
    """Seals and opens objects of one repository.

    Thread-safe: ``seal`` takes the next counter under a lock, ``open``
    guards its session-key cache with a lock; the ciphers themselves are
    stateless per call. Every failure of ``open`` raises IntegrityError
    naming the object id (hex) and type.
    """

    def __init__(self, suite: Suite, enc_key: bytes = b"", auth_key: bytes = b"") -> None:
        self.suite = Suite(suite)
        self._auth_key = auth_key
        self._enc_key = enc_key
        self._lock = threading.Lock()
        self._counter = 0
        self._sessions: OrderedDict[bytes, AeadCipher] = OrderedDict()
        self.session_id = b""
        self._cipher: AeadCipher | None = None
        if self.suite is Suite.AUTHENTICATED:
            _check_key("auth", auth_key)
        elif self.suite is not Suite.PLAINTEXT:
            _check_key("encryption", enc_key)
            self.session_id = os.urandom(SESSION_ID_SIZE)
            self._cipher = self._session_cipher(self.session_id)
            self._sessions[self.session_id] = self._cipher

    @classmethod
    def from_key(cls, key: KeyMaterial) -> Envelope:
        """A new session for a repository's key material."""
        return cls(key.suite, key.enc_key, key.auth_key)

    def seal(self, type_: ObjectType, id_: bytes, payload: Buffer) -> bytes:
        """Return the stored form of ``payload`` (already compressed by the caller)."""
        _check_id(id_)
        if self.suite is Suite.PLAINTEXT:
            return bytes((Suite.PLAINTEXT,)) + payload
        ad = associated_data(type_, id_, self.suite)
        if self.suite is Suite.AUTHENTICATED:
            tag = self._auth_tag(ad, payload)
            return b"".join((bytes((Suite.AUTHENTICATED,)), payload, tag))  # one copy
        assert self._cipher is not None
        counter = self._next_counter().to_bytes(COUNTER_SIZE, "big")
        sealed = self._cipher.encrypt(_NONCE_PAD + counter, payload, ad)
        return bytes((self.suite,)) + self.session_id + counter + sealed

    def open(self, type_: ObjectType, id_: bytes, blob: Buffer) -> bytes:
        """Return the payload of a ``seal`` result after checking it is authentic.

        Raises IntegrityError when the blob is short, has another suite, or
        was not sealed for exactly this (type, id) with this repository's key.
        """
        _check_id(id_)
        view = memoryview(blob)
        if not view or view[0] != self.suite:
            suite = view[0] if view else None
            raise _failed(type_, id_, f"suite {suite} where {self.suite.value} was expected")
        if self.suite is Suite.PLAINTEXT:
            return bytes(view[1:])
        ad = associated_data(type_, id_, self.suite)
        if self.suite is Suite.AUTHENTICATED:
            return self._open_authenticated(type_, id_, view, ad)
        return self._open_aead(type_, id_, view, ad)

    def _auth_tag(self, ad: bytes, payload: Buffer) -> bytes:
        mac = blake3.blake3(ad, key=self._auth_key)
        mac.update(payload)
        return mac.digest()

    def _open_authenticated(
        self, type_: ObjectType, id_: bytes, view: memoryview, ad: bytes
    ) -> bytes:
        if len(view) < 1 + AUTH_TAG_SIZE:
            raise _failed(type_, id_, "too short")
        payload = view[1:-AUTH_TAG_SIZE]
        if not hmac.compare_digest(self._auth_tag(ad, payload), view[-AUTH_TAG_SIZE:]):
            raise _failed(type_, id_, "tag mismatch")
        return bytes(payload)

    def _open_aead(self, type_: ObjectType, id_: bytes, view: memoryview, ad: bytes) -> bytes:
        if len(view) < _AEAD_HEADER + AEAD_TAG_SIZE:
            raise _failed(type_, id_, "too short")
        cipher = self._cached_cipher(bytes(view[1 : 1 + SESSION_ID_SIZE]))
        nonce = _NONCE_PAD + bytes(view[1 + SESSION_ID_SIZE : _AEAD_HEADER])
        try:
            return cipher.decrypt(nonce, view[_AEAD_HEADER:], ad)
        except InvalidTag:
            raise _failed(type_, id_, "tag mismatch") from None

    def _next_counter(self) -> int:
        """Reserve the next nonce counter; never hands out the same value twice."""
        with self._lock:
            counter = self._counter
            if counter > MAX_COUNTER:
                raise OverflowError("session exhausted its 2**64 nonces; start a new Envelope")
            self._counter = counter + 1
        return counter

    def _cached_cipher(self, session_id: bytes) -> AeadCipher:
        """The cipher of ``session_id``, from an LRU cache so HKDF runs once per session."""
        with self._lock:
            cipher = self._sessions.get(session_id)
            if cipher is not None:
                self._sessions.move_to_end(session_id)
                return cipher
        cipher = self._session_cipher(session_id)
        with self._lock:
            self._sessions[session_id] = cipher
            while len(self._sessions) > SESSION_CACHE_SIZE:
                self._sessions.popitem(last=False)
        return cipher

    def _session_cipher(self, session_id: bytes) -> AeadCipher:
        key = derive_session_key(self._enc_key, session_id, self.suite)
        return _AEAD_CLASSES[self.suite](key)


def _check_key(what: str, key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"{what} key must be {KEY_SIZE} bytes, not {len(key)}")


def _check_id(id_: bytes) -> None:
    if len(id_) != ID_SIZE:
        raise ValueError(f"object id must be {ID_SIZE} bytes, not {len(id_)}")


def _failed(type_: ObjectType, id_: bytes, reason: str) -> IntegrityError:
    return IntegrityError(
        f"failed authentication: {reason}", object_id=id_, object_type=ObjectType(type_).name
    )
