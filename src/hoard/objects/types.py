"""Small value types shared by the modules of the objects layer.

``ObjectType`` says what an object holds; it is bound into every envelope's
associated data, so a stored object cannot be replayed as another type.
``Suite`` is the first byte of every stored object and names the envelope
construction that sealed it (see docs/design/crypto.md).
"""

from __future__ import annotations

from enum import IntEnum

Buffer = bytes | bytearray | memoryview
"""What the byte-crunching functions accept: anything the C libraries read without a copy."""


class ObjectType(IntEnum):
    """What an object holds. The value is stored (one byte) and authenticated."""

    DATA = 0
    TREE = 1
    ARCHIVE = 2
    META = 3
    DELETION = 4
    """A deletion record: hides (or restores) an archive in an append-only repository."""


class Suite(IntEnum):
    """Envelope construction, stored as the first byte of every object."""

    PLAINTEXT = 0
    AUTHENTICATED = 1
    CHACHA20_POLY1305 = 2
    AES_256_GCM = 3
    AES_256_OCB = 4
