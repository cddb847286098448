"""ObjectStore.get_many: plaintexts of many objects, each outcome that of ``get``."""

from __future__ import annotations

import os

from hoard.errors import ChunkNotFound, IntegrityError, PackNotFound
from hoard.objects.keys import EncryptionMode, KeyMaterial
from hoard.objects.store import ObjectStore
from hoard.objects.types import ObjectType
from hoard.repository.pack import pack_path
from hoard.repository.repository import Repository
from hoard.storage.memory import MemoryStorage


def _store(storage: MemoryStorage) -> ObjectStore:
    mode = EncryptionMode.REPOKEY_CHACHA20_POLY1305
    repo = Repository.create(storage, key_mode=mode.value, pack_size=16 * 1024)
    return ObjectStore(repo, KeyMaterial.generate(mode, repo.id))


def test_plaintexts_in_order_with_errors_in_place() -> None:
    store = _store(MemoryStorage())
    chunks = [os.urandom(n) for n in (10, 3000, 0, 700)]
    ids = [store.put_data(c).id for c in chunks]
    store.flush()
    missing = os.urandom(32)
    outcomes = store.get_many(ObjectType.DATA, [ids[1], missing, *ids])
    assert outcomes[0] == chunks[1] and outcomes[2:] == chunks
    assert isinstance(outcomes[1], ChunkNotFound)
    assert outcomes[1].get_message() == ChunkNotFound(missing, "DATA").get_message()


def test_a_damaged_blob_is_named_and_forgotten_as_by_get() -> None:
    storage = MemoryStorage()
    store = _store(storage)
    good, bad = os.urandom(500), os.urandom(600)
    good_id, bad_id = store.put_data(good).id, store.put_data(bad).id
    store.flush()
    located = store.repository.locate(bad_id)
    assert located is not None
    pack, entry = located
    data = bytearray(storage.load(pack_path(pack)))
    data[entry.offset + 37 + 40] ^= 0x01  # inside the sealed payload
    storage.store(pack_path(pack), bytes(data), overwrite=True)
    outcomes = store.get_many(ObjectType.DATA, [good_id, bad_id])
    assert outcomes[0] == good
    error = outcomes[1]
    assert isinstance(error, IntegrityError) and not isinstance(error, PackNotFound)
    assert (error.object_id, error.pack) == (bad_id, pack)
    assert not store.contains(bad_id)  # forgotten: the next backup stores it again
