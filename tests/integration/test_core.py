"""Cross-layer tests of the core: LocalStorage + Repository + ObjectStore + KeyManager.

The unit tests prove each layer alone; these prove the layers together, as a
backup run uses them: every key mode and compression round-trips thousands
of chunks through real directories and brand-new objects (new Repository,
cold and warm cache, key loaded again from its passphrase); a crash at any
store of a backup leaves a repository whose archive records only reference
readable data; any tampering is refused with an error naming the object;
concurrent and copied repositories never reuse an AEAD (session, counter)
pair; and config versions and mandatory features gate reading and writing.

Archive records here are JSON holding the chunk ids they reference, so a test
can check the write-order invariant ("no record points at missing data")
from the stored bytes alone.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hoard.errors import (
    CryptoKeyError,
    HoardError,
    IntegrityError,
    KeyDamaged,
    KeyfileInvalid,
    KeyfileMismatch,
    KeyfileNotFound,
    NotARepository,
    PassphraseWrong,
    UnsupportedFeature,
    UnsupportedRepositoryVersion,
)
from hoard.objects.compression import DEFAULT_COMPRESSION, CompressionSpec, parse_compression
from hoard.objects.kdf import KdfParams
from hoard.objects.keyfile import parse_key_text
from hoard.objects.keys import EncryptionMode, KeyLocation, KeyManager, KeyMaterial
from hoard.objects.store import ObjectStore
from hoard.objects.types import ObjectType, Suite
from hoard.repository.indexnames import index_path
from hoard.repository.pack import HEADER_SIZE, PACK_MAGIC, PackEntry, parse_pack
from hoard.repository.repository import Repository
from hoard.storage.base import Storage
from hoard.storage.local import LocalStorage, is_temp_name
from tests.faulty import FaultyStorage, SimulatedCrash

PASSPHRASE = "correct horse battery staple"
KDF = KdfParams.weak()

# The AEAD envelope header, as docs/design/crypto.md specifies it (deliberately
# not imported from envelope.py: these tests check the stored format).
SESSION_ID_SIZE = 24
COUNTER_SIZE = 8
AEAD_SUITES = {Suite.CHACHA20_POLY1305, Suite.AES_256_GCM, Suite.AES_256_OCB}


# --- helpers -------------------------------------------------------------------------------


@dataclass
class Client:
    """One process's view of a repository: storage, repository, key, object store."""

    storage: Storage
    repo: Repository
    key: KeyMaterial
    objects: ObjectStore

    def close(self) -> None:
        self.repo.close()


def key_manager(repo: Repository, mode: EncryptionMode, keys_dir: Path) -> KeyManager:
    return KeyManager(repo.id, mode, keys_dir=keys_dir, blob_store=repo)


def create_client(
    root: Path,
    mode: EncryptionMode,
    *,
    keys_dir: Path,
    cache_dir: Path | None,
    pack_size: int,
    compression: CompressionSpec = DEFAULT_COMPRESSION,
) -> Client:
    """``init``: a new repository at ``root`` with a fresh key of ``mode``."""
    storage = LocalStorage(root)
    repo = Repository.create(storage, pack_size=pack_size, key_mode=mode.value, cache_dir=cache_dir)
    key = key_manager(repo, mode, keys_dir).create(PASSPHRASE, KDF)
    return Client(storage, repo, key, ObjectStore(repo, key, compression))


def open_client(
    storage: Storage,
    *,
    keys_dir: Path,
    cache_dir: Path | None,
    operation: str = "read",
    compression: CompressionSpec = DEFAULT_COMPRESSION,
    passphrase: str = PASSPHRASE,
) -> Client:
    """What a new process does: open the repository, find and unlock the key."""
    repo = Repository.open(storage, cache_dir, operation=operation)
    mode = EncryptionMode.parse(repo.config.key_mode)
    key = key_manager(repo, mode, keys_dir).load(lambda: passphrase)
    return Client(storage, repo, key, ObjectStore(repo, key, compression))


def make_chunks(n: int, seed: int, max_size: int = 1500) -> list[bytes]:
    """``n`` distinct chunks: random (incompressible), text-like and run-length-like."""
    rng = random.Random(seed)
    chunks: list[bytes] = []
    for i in range(n):
        size = rng.randrange(1, max_size)
        kind = i % 3
        if kind == 0:
            data = rng.randbytes(size)
        elif kind == 1:
            words = " ".join(rng.choice(("alpha", "beta", "gamma", "delta")) for _ in range(size))
            data = f"{seed}:{i}:{words}".encode()[: max(size, 16)]
        else:
            data = i.to_bytes(4, "big") + bytes([rng.randrange(256)]) * size
        chunks.append(data)
    assert len(set(chunks)) == n
    return chunks


def encode_record(name: str, ids: list[bytes], tree: bytes) -> bytes:
    """An archive record that lists every chunk id it references."""
    doc = {"name": name, "chunks": [i.hex() for i in ids], "tree": tree.hex()}
    return json.dumps(doc, sort_keys=True).encode()


def decode_record(data: bytes) -> tuple[str, list[bytes], bytes]:
    doc = json.loads(data)
    return doc["name"], [bytes.fromhex(h) for h in doc["chunks"]], bytes.fromhex(doc["tree"])


def tree_of(name: str) -> bytes:
    return f"tree of archive {name}".encode()


def backup(objects: ObjectStore, name: str, chunks: list[bytes]) -> bytes:
    """Store ``chunks``, a tree object and an archive record; returns the record id."""
    ids = [objects.put_data(data).id for data in chunks]
    tree = objects.put(ObjectType.TREE, tree_of(name))
    return objects.put_archive(encode_record(name, ids, tree))


def verify_archive(objects: ObjectStore, archive_id: bytes, chunks: list[bytes]) -> None:
    """The record, its tree and every chunk it lists read back identical."""
    name, ids, tree = decode_record(objects.get_archive(archive_id))
    assert objects.get(ObjectType.TREE, tree) == tree_of(name)
    assert len(ids) == len(chunks)
    for id_, data in zip(ids, chunks, strict=True):
        assert objects.get(ObjectType.DATA, id_) == data


def packs_of(storage: LocalStorage) -> dict[str, tuple[bytes, list[PackEntry]]]:
    """Every pack file: storage name -> (bytes, parsed blob entries)."""
    result = {}
    for info in storage.list("packs/"):
        data = storage.load(info.name)
        result[info.name] = (data, parse_pack(data, info.name))
    return result


def stored_objects(storage: LocalStorage) -> Iterator[bytes]:
    """Every sealed object in the repository: pack blobs and archive records."""
    for data, entries in packs_of(storage).values():
        for e in entries:
            yield data[e.offset + HEADER_SIZE : e.offset + HEADER_SIZE + e.length]
    for info in storage.list("archives/"):
        yield storage.load(info.name)


def nonce_uses(storage: LocalStorage, suite: Suite) -> list[tuple[bytes, int, bytes]]:
    """(session id, counter, whole object) of every stored AEAD object."""
    uses = []
    for blob in stored_objects(storage):
        assert blob[0] == suite
        session = blob[1 : 1 + SESSION_ID_SIZE]
        counter = int.from_bytes(blob[1 + SESSION_ID_SIZE : 1 + SESSION_ID_SIZE + COUNTER_SIZE])
        uses.append((session, counter, blob))
    return uses


def flip(path: Path, offset: int, mask: int = 0x01) -> bytes:
    """XOR one byte of ``path`` in place; returns the original content."""
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[offset] ^= mask
    path.write_bytes(bytes(damaged))
    return original


# --- 1. every mode and compression, thousands of chunks, new objects on reopen -------------

ROUND_TRIP_CHUNKS = 2000
ROUND_TRIP_PACK_SIZE = 32 * 1024

MODE_COMPRESSION = [
    ("none", "zstd,3"),
    ("authenticated", "lz4"),
    ("repokey-chacha20-poly1305", "auto,zstd"),
    ("repokey-aes-gcm", "zlib,6"),
    ("repokey-aes-ocb", "lzma,1"),
    ("keyfile-chacha20-poly1305", "none"),
    ("keyfile-aes-gcm", "zstd,3"),
    ("keyfile-aes-ocb", "auto,zstd"),
]
ALL_COMPRESSIONS = ["none", "lz4", "zstd,3", "zlib,6", "lzma,1", "auto,zstd"]


def round_trip(tmp_path: Path, mode: EncryptionMode, compression: CompressionSpec) -> None:
    keys_dir = tmp_path / "keys"
    root = tmp_path / "repo"
    writer_cache = tmp_path / "cache-writer"
    chunks = make_chunks(ROUND_TRIP_CHUNKS, seed=7)
    chunks += [b"", random.Random(8).randbytes(3 * ROUND_TRIP_PACK_SIZE)]  # empty, over-size

    writer = create_client(
        root,
        mode,
        keys_dir=keys_dir,
        cache_dir=writer_cache,
        pack_size=ROUND_TRIP_PACK_SIZE,
        compression=compression,
    )
    created_key = writer.key
    archive_id = backup(writer.objects, "first", chunks)
    # Putting the same data again deduplicates (pending or stored alike).
    assert not any(writer.objects.put_data(data).new for data in chunks[:50])
    writer.objects.flush()
    writer.close()

    storage = LocalStorage(root)
    assert len(list(storage.list("packs/"))) >= 20, "pack_size too large to exercise many packs"
    assert (mode.location is KeyLocation.KEYFILE) == any(keys_dir.glob("*"))
    if mode.suite in AEAD_SUITES:  # nothing readable leaks into the repository
        marker = chunks[1][:40]
        assert all(marker not in blob for blob in stored_objects(storage))

    # A new process with an empty cache, then one with the cache that process left,
    # then one with the writer's cache: all with brand-new objects and the key
    # unwrapped again from the passphrase.
    reader_cache = tmp_path / "cache-reader"
    for cache, rebuilt in ((reader_cache, True), (reader_cache, False), (writer_cache, False)):
        reader = open_client(LocalStorage(root), keys_dir=keys_dir, cache_dir=cache)
        report = reader.repo.sync_index()
        assert report.rebuilt is rebuilt
        if not rebuilt:
            assert report.merged == 0  # warm: nothing to catch up
        assert reader.key == created_key
        assert reader.objects.list_archives() == [archive_id]
        verify_archive(reader.objects, archive_id, chunks)
        # Same keyed ids as the writer, so a later backup deduplicates against this one.
        assert reader.objects.id_of(chunks[3]) == writer.objects.id_of(chunks[3])
        reader.close()

    # A second backup by another process stores nothing new for known data.
    second = open_client(
        LocalStorage(root),
        keys_dir=keys_dir,
        cache_dir=reader_cache,
        operation="write",
        compression=compression,
    )
    assert not any(second.objects.put_data(data).new for data in chunks[::97])
    second.close()


@pytest.mark.parametrize(("mode_name", "compression_name"), MODE_COMPRESSION)
def test_every_mode_round_trips_thousands_of_chunks(
    tmp_path: Path, mode_name: str, compression_name: str
) -> None:
    round_trip(tmp_path, EncryptionMode.parse(mode_name), parse_compression(compression_name))


@pytest.mark.parametrize("compression_name", ALL_COMPRESSIONS)
def test_every_compression_round_trips_thousands_of_chunks(
    tmp_path: Path, compression_name: str
) -> None:
    round_trip(
        tmp_path, EncryptionMode.REPOKEY_CHACHA20_POLY1305, parse_compression(compression_name)
    )


def test_compression_may_change_between_runs(tmp_path: Path) -> None:
    """Each run may use another compression; a reader with yet another reads them all."""
    keys_dir, root = tmp_path / "keys", tmp_path / "repo"
    client = create_client(
        root,
        EncryptionMode.REPOKEY_AES_OCB,
        keys_dir=keys_dir,
        cache_dir=None,
        pack_size=4096,
    )
    client.close()
    runs = {}
    for i, name in enumerate(ALL_COMPRESSIONS):
        writer = open_client(
            LocalStorage(root),
            keys_dir=keys_dir,
            cache_dir=tmp_path / "cache",
            operation="write",
            compression=parse_compression(name),
        )
        chunks = make_chunks(60, seed=100 + i)
        runs[backup(writer.objects, name, chunks)] = chunks
        writer.close()
    reader = open_client(LocalStorage(root), keys_dir=keys_dir, cache_dir=None)
    assert sorted(reader.objects.list_archives()) == sorted(runs)
    for archive_id, chunks in runs.items():
        verify_archive(reader.objects, archive_id, chunks)


# --- 2. a crash between any two stores of a backup ------------------------------------------

CRASH_PACK_SIZE = 1024
CRASH_NEW_PER_HALF = 40


@dataclass
class CrashSetup:
    root: Path
    cache: Path
    keys_dir: Path
    base_id: bytes
    base: list[bytes]
    first_half: list[bytes]
    second_half: list[bytes]


def second_backup(client: Client, setup: CrashSetup, progress: list[str]) -> bytes:
    """A backup-like sequence: data puts, a checkpoint flush, more puts, the record."""
    objects = client.objects
    ids = [objects.put_data(data).id for data in setup.first_half]
    objects.flush()
    progress.append("flushed")
    ids += [objects.put_data(data).id for data in setup.second_half]
    tree = objects.put(ObjectType.TREE, tree_of("second"))
    archive_id = objects.put_archive(encode_record("second", ids, tree))
    progress.append("archived")
    return archive_id


def crash_setup(tmp_path: Path) -> CrashSetup:
    base = make_chunks(40, seed=1, max_size=400)
    new = make_chunks(2 * CRASH_NEW_PER_HALF, seed=2, max_size=400)
    setup = CrashSetup(
        root=tmp_path / "base-repo",
        cache=tmp_path / "base-cache",
        keys_dir=tmp_path / "keys",
        base_id=b"",
        base=base,
        # Both halves repeat some base chunks: deduplicated, never stored twice.
        first_half=new[:CRASH_NEW_PER_HALF] + base[:5],
        second_half=new[CRASH_NEW_PER_HALF:] + base[5:10],
    )
    client = create_client(
        setup.root,
        EncryptionMode.REPOKEY_CHACHA20_POLY1305,
        keys_dir=setup.keys_dir,
        cache_dir=setup.cache,
        pack_size=CRASH_PACK_SIZE,
    )
    setup.base_id = backup(client.objects, "base", base)
    client.close()
    return setup


def copy_repo(setup: CrashSetup, target: Path) -> tuple[Path, Path]:
    shutil.copytree(setup.root, target / "repo")
    shutil.copytree(setup.cache, target / "cache")
    return target / "repo", target / "cache"


def assert_after_crash(
    storage: LocalStorage, cache: Path | None, setup: CrashSetup, progress: list[str]
) -> None:
    """What a restarted process must see after a crash of the second backup."""
    client = open_client(storage, keys_dir=setup.keys_dir, cache_dir=cache)
    objects = client.objects
    known = {objects.id_of(d): d for d in setup.base + setup.first_half + setup.second_half}
    archives = objects.list_archives()
    assert setup.base_id in archives
    verify_archive(objects, setup.base_id, setup.base)
    # The invariant: every record present references only readable chunks.
    for archive_id in archives:
        name, ids, tree = decode_record(objects.get_archive(archive_id))
        assert objects.get(ObjectType.TREE, tree) == tree_of(name)
        for id_ in ids:
            assert objects.get(ObjectType.DATA, id_) == known[id_]
    # A completed flush is durable; the interrupted one is all or nothing.
    base_ids = {objects.id_of(d) for d in setup.base}
    first = [objects.contains(i) for i in map(objects.id_of, setup.first_half) if i not in base_ids]
    second = [
        objects.contains(i) for i in map(objects.id_of, setup.second_half) if i not in base_ids
    ]
    assert len(first) == len(second) == CRASH_NEW_PER_HALF
    if "flushed" in progress:
        assert all(first)
    assert all(first) or not any(first)
    assert all(second) or not any(second)
    assert ("archived" in progress) == (len(archives) == 2)
    assert not any(is_temp_name(info.name) for info in storage.list(""))
    client.close()


def test_crash_at_every_store_of_a_backup(tmp_path: Path) -> None:
    setup = crash_setup(tmp_path)
    counting = FaultyStorage(LocalStorage(copy_repo(setup, tmp_path / "count")[0]))
    counter = open_client(
        counting, keys_dir=setup.keys_dir, cache_dir=tmp_path / "count" / "cache", operation="write"
    )
    second_backup(counter, setup, [])
    total = counting.stores
    assert total >= 15  # many data packs, a metadata pack, two index files, a record

    torn_files = 0
    for n in range(total + 1):  # the last round does not crash
        root, cache = copy_repo(setup, tmp_path / f"run-{n}")
        faulty = FaultyStorage(LocalStorage(root), fail_after_stores=n, torn=n % 2 == 1)
        client = open_client(faulty, keys_dir=setup.keys_dir, cache_dir=cache, operation="write")
        progress: list[str] = []
        try:
            second_backup(client, setup, progress)
        except SimulatedCrash:
            assert n < total
        else:
            assert n == total and progress == ["flushed", "archived"]
        torn_files += sum(1 for p in root.rglob("*") if is_temp_name(p.name))
        # A new process, with the crashed process's cache and without one.
        assert_after_crash(LocalStorage(root), cache, setup, progress)
        assert_after_crash(LocalStorage(root), None, setup, progress)
        # And it can run the backup to the end now.
        retry = open_client(
            LocalStorage(root), keys_dir=setup.keys_dir, cache_dir=cache, operation="write"
        )
        archive_id = second_backup(retry, setup, [])
        retry.close()
        reader = open_client(LocalStorage(root), keys_dir=setup.keys_dir, cache_dir=None)
        verify_archive(reader.objects, archive_id, setup.first_half + setup.second_half)
    assert torn_files > 0  # the "no temp file is listed" check had something to hide


# --- 3. tampering -------------------------------------------------------------------------

TAMPER_MODES = [
    "none",
    "authenticated",
    "repokey-chacha20-poly1305",
    "repokey-aes-gcm",
    "repokey-aes-ocb",
]


def small_repo(
    tmp_path: Path, mode: EncryptionMode, compression: str = "zstd,3"
) -> tuple[Client, list[bytes]]:
    """A repository whose data chunks all share one pack."""
    chunks = [
        b"compressible " * 12,
        random.Random(3).randbytes(90),
        b"x" * 70,
        random.Random(4).randbytes(90),  # same length as chunks[1]: swappable
    ]
    client = create_client(
        tmp_path / "repo",
        mode,
        keys_dir=tmp_path / "keys",
        cache_dir=None,
        pack_size=1 << 20,
        compression=parse_compression(compression),
    )
    for data in chunks:
        client.objects.put_data(data)
    client.objects.flush()
    return client, chunks


def data_pack(client: Client) -> tuple[Path, bytes, list[PackEntry]]:
    storage = client.storage
    assert isinstance(storage, LocalStorage)
    (name, (data, entries)), *others = [
        (n, (d, e)) for n, (d, e) in packs_of(storage).items() if e[0].type == ObjectType.DATA
    ]
    assert not others
    return storage.path_of(name), data, entries


@pytest.mark.parametrize("mode_name", TAMPER_MODES)
def test_any_flipped_pack_byte_is_refused_naming_the_object(tmp_path: Path, mode_name: str) -> None:
    """Every byte after the magic: header type/id/length, suite, session, counter,
    compression header, ciphertext, tag. Reads do not touch the magic (they read
    one blob's range; ``check`` and the rebuild parse whole packs)."""
    client, chunks = small_repo(tmp_path, EncryptionMode.parse(mode_name))
    path, original, entries = data_pack(client)
    by_id = {client.objects.id_of(d): d for d in chunks}
    assert {e.id for e in entries} == set(by_id)

    def fresh() -> ObjectStore:
        """A new session: a store that found damage stops trusting that blob."""
        repository = Repository.open(client.storage, None)
        return ObjectStore(repository, client.objects.key, client.objects.compression)

    for offset in range(len(PACK_MAGIC), len(original)):
        (victim,) = [e for e in entries if e.offset <= offset < e.offset + HEADER_SIZE + e.length]
        for mask in (0x01, 0x80):
            objects = fresh()
            flip(path, offset, mask)
            with pytest.raises(IntegrityError) as info:
                objects.get(ObjectType.DATA, victim.id)
            assert info.value.object_id == victim.id, (offset, mask, str(info.value))
            assert victim.id.hex() in str(info.value), (offset, mask, str(info.value))
            for e in entries:
                if e is not victim:  # damage stays local to its blob
                    assert objects.get(ObjectType.DATA, e.id) == by_id[e.id]
            path.write_bytes(original)
            with pytest.raises(IntegrityError):  # forgotten for this session
                objects.get(ObjectType.DATA, victim.id)
    objects = fresh()
    for id_, data in by_id.items():
        assert objects.get(ObjectType.DATA, id_) == data


def test_mode_none_detects_a_flipped_data_byte_by_its_id(tmp_path: Path) -> None:
    client, _ = small_repo(tmp_path, EncryptionMode.NONE, compression="none")
    path, _, entries = data_pack(client)
    entry = entries[1]
    # suite byte, compression header byte, then plaintext: flip plaintext byte 10
    flip(path, entry.offset + HEADER_SIZE + 2 + 10)
    with pytest.raises(IntegrityError, match=f"object {entry.id.hex()} .*does not match id"):
        client.objects.get(ObjectType.DATA, entry.id)


def test_swapped_blobs_in_a_pack_are_refused(tmp_path: Path) -> None:
    """Two same-length blobs exchange places: each header now precedes the other's body."""
    for mode in (EncryptionMode.NONE, EncryptionMode.REPOKEY_AES_GCM):
        client, _ = small_repo(tmp_path / mode.value, mode, compression="none")
        path, original, entries = data_pack(client)
        a, b = (e for e in entries if e.length == entries[1].length)
        span = {
            e.id: slice(e.offset + HEADER_SIZE, e.offset + HEADER_SIZE + e.length) for e in (a, b)
        }
        swapped = bytearray(original)
        swapped[span[a.id]] = original[span[b.id]]
        swapped[span[b.id]] = original[span[a.id]]
        assert swapped != original
        path.write_bytes(bytes(swapped))
        for e in (a, b):
            with pytest.raises(IntegrityError, match=e.id.hex()):
                client.objects.get(ObjectType.DATA, e.id)


@pytest.mark.parametrize("mode_name", ["none", "authenticated", "repokey-chacha20-poly1305"])
def test_archive_record_copied_under_another_id_is_refused(tmp_path: Path, mode_name: str) -> None:
    mode = EncryptionMode.parse(mode_name)
    client, chunks = small_repo(tmp_path, mode)
    first = backup(client.objects, "one", chunks[:2])
    second = backup(client.objects, "two", chunks[2:])
    storage = client.storage
    assert isinstance(storage, LocalStorage)
    shutil.copyfile(
        storage.path_of(f"archives/{first.hex()}"), storage.path_of(f"archives/{second.hex()}")
    )
    verify_archive(client.objects, first, chunks[:2])
    with pytest.raises(IntegrityError, match=second.hex()):
        client.objects.get_archive(second)
    # A tree presented as an archive record: only the keyed modes bind the type
    # (in mode none the plaintext hashes to its id whatever it is called).
    tree_id = client.objects.id_of(tree_of("one"))
    tree_blob = client.repo.get(tree_id)
    storage.store(f"archives/{tree_id.hex()}", tree_blob)
    if mode is EncryptionMode.NONE:
        assert client.objects.get_archive(tree_id) == tree_of("one")
    else:
        with pytest.raises(IntegrityError, match=f"{tree_id.hex()} \\(ARCHIVE\\)"):
            client.objects.get_archive(tree_id)


def test_any_flipped_index_byte_is_skipped_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged index file costs only itself: the packs' headers stand in."""
    client, chunks = small_repo(tmp_path, EncryptionMode.REPOKEY_CHACHA20_POLY1305)
    client.close()
    storage = LocalStorage(tmp_path / "repo")
    (info,) = storage.list("index/")
    path = storage.path_of(info.name)
    original = path.read_bytes()
    for offset in range(len(original)):
        flip(path, offset)
        caplog.clear()
        reader = open_client(storage, keys_dir=tmp_path / "keys", cache_dir=None)
        assert reader.objects.get(ObjectType.DATA, reader.objects.id_of(chunks[0])) == chunks[0]
        assert info.name.rsplit("/", 1)[1] in caplog.text
        path.write_bytes(original)
    reader = open_client(storage, keys_dir=tmp_path / "keys", cache_dir=None)
    assert reader.objects.get(ObjectType.DATA, reader.objects.id_of(chunks[0])) == chunks[0]
    assert info.name == index_path(info.name.rsplit("/", 1)[1])


def load_key(storage: Storage, keys_dir: Path) -> KeyMaterial:
    return open_client(storage, keys_dir=keys_dir, cache_dir=None).key


def test_any_flipped_repokey_byte_is_a_key_error(tmp_path: Path) -> None:
    client, _ = small_repo(tmp_path, EncryptionMode.REPOKEY_CHACHA20_POLY1305)
    storage = client.storage
    assert isinstance(storage, LocalStorage)
    paths = [storage.path_of("keys/repokey"), storage.path_of("keys/repokey.copy")]
    original = paths[0].read_bytes()
    assert paths[1].read_bytes() == original
    seen: set[type[HoardError]] = set()
    for offset in range(len(original)):
        for mask in (0x01, 0xFF):
            flip(paths[0], offset, mask)  # the key alone: its copy opens the repository
            assert load_key(storage, tmp_path / "keys") == client.key
            flip(paths[1], offset, mask)  # both alike: a key error, never a wrong key
            with pytest.raises(CryptoKeyError) as info:
                load_key(storage, tmp_path / "keys")
            seen.add(type(info.value))
            if isinstance(info.value, KeyfileInvalid):
                assert client.repo.id.hex() in str(info.value)
            for path in paths:
                path.write_bytes(original)
    # Garbage or a damaged field name is invalid key data; everything else is
    # caught by the checksum, which covers every field (so a flipped version or
    # repository id is damage, not a foreign or newer key, and damage is never
    # mistaken for a wrong passphrase; tests/unit/objects covers the others).
    assert seen == {KeyfileInvalid, KeyDamaged}
    assert load_key(storage, tmp_path / "keys") == client.key


def test_any_flipped_keyfile_byte_is_a_key_error(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    client = create_client(
        tmp_path / "repo",
        EncryptionMode.KEYFILE_AES_OCB,
        keys_dir=keys_dir,
        cache_dir=None,
        pack_size=4096,
    )
    (path,) = keys_dir.iterdir()
    original = path.read_bytes()
    original_blob = parse_key_text(original.decode())[1]
    seen: set[type[HoardError]] = set()
    accepted = 0
    for offset in range(len(original)):
        flip(path, offset)
        try:
            key = load_key(client.storage, keys_dir)
        except CryptoKeyError as exc:
            seen.add(type(exc))
            if isinstance(exc, KeyfileInvalid | KeyfileNotFound):
                assert client.repo.id.hex() in str(exc)
        else:
            # Only flips that leave the key blob unchanged may pass: a line break
            # turned into other whitespace, or base64 padding bits.
            assert parse_key_text(path.read_text())[1] == original_blob, offset
            assert key == client.key
            accepted += 1
        path.write_bytes(original)
    assert accepted <= original.count(b"\n") + 1
    assert {KeyfileNotFound, KeyfileInvalid, KeyDamaged} <= seen
    assert PassphraseWrong not in seen


@pytest.mark.parametrize("mode_name", ["repokey-aes-gcm", "keyfile-chacha20-poly1305"])
def test_wrong_passphrase(tmp_path: Path, mode_name: str) -> None:
    client, _ = small_repo(tmp_path, EncryptionMode.parse(mode_name))
    with pytest.raises(PassphraseWrong):
        open_client(
            client.storage, keys_dir=tmp_path / "keys", cache_dir=None, passphrase="Correct horse"
        )


def edit_config(root: Path, **changes: object) -> None:
    path = root / "config"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def test_damaged_config_is_refused_clearly(tmp_path: Path) -> None:
    client, _ = small_repo(tmp_path, EncryptionMode.AUTHENTICATED)
    root = tmp_path / "repo"
    location = str(root)
    config = root / "config"
    original = config.read_bytes()

    config.write_bytes(original.replace(b"{", b"[", 1))
    opened = Repository.open(LocalStorage(root), None)  # from the copy
    assert opened.config_damaged is not None and "not JSON" in opened.config_damaged
    (root / "config.copy").write_bytes(original.replace(b"{", b"[", 1))
    with pytest.raises(NotARepository) as not_repo:
        Repository.open(LocalStorage(root), None)
    assert location in str(not_repo.value) and "not JSON" in str(not_repo.value)
    (root / "config.copy").write_bytes(original)

    config.write_bytes(original)
    edit_config(root, version=2)
    with pytest.raises(UnsupportedRepositoryVersion) as version:
        Repository.open(LocalStorage(root), None)
    assert str(version.value) == (
        f"Repository {location} has format version 2; this hoard understands up to 1. "
        "Upgrade hoard."
    )

    config.write_bytes(original)
    edit_config(root, features={"read": ["zstd-dictionaries"]})
    with pytest.raises(UnsupportedFeature, match="zstd-dictionaries"):
        Repository.open(LocalStorage(root), None)

    # The repository id is not authenticated by the config, but by the key: a
    # config naming another id does not get the key accepted.
    config.write_bytes(original)
    edit_config(root, id="ab" * 32)
    with pytest.raises(KeyfileMismatch):
        open_client(LocalStorage(root), keys_dir=tmp_path / "keys", cache_dir=None)

    config.write_bytes(original)
    assert open_client(LocalStorage(root), keys_dir=tmp_path / "keys", cache_dir=None).key == (
        client.key
    )


# --- 4. concurrent writers and copied repositories: no nonce reuse --------------------------

CONCURRENT_CHUNKS = 500
SHARED_CHUNKS = 50
CONCURRENT_MODE = EncryptionMode.REPOKEY_AES_GCM


def concurrent_writer(
    root: str, cache: str, keys_dir: str, seed: int, out: str, start: object
) -> None:
    """Child process: its own Repository, ObjectStore and key load; one backup."""
    client = open_client(
        LocalStorage(Path(root)),
        keys_dir=Path(keys_dir),
        cache_dir=Path(cache),
        operation="write",
    )
    chunks = make_chunks(CONCURRENT_CHUNKS, seed) + make_chunks(SHARED_CHUNKS, seed=999)
    assert start.wait(timeout=60)  # type: ignore[attr-defined]
    archive_id = backup(client.objects, f"writer {seed}", chunks)
    client.close()
    result = {"archive": archive_id.hex(), "session": client.objects.session_id.hex()}
    Path(out).write_text(json.dumps(result))


def assert_no_nonce_reuse(uses: list[tuple[bytes, int, bytes]]) -> None:
    """Each (session, counter) pair sealed exactly one object."""
    sealed: dict[tuple[bytes, int], bytes] = {}
    for session, counter, blob in uses:
        other = sealed.setdefault((session, counter), blob)
        assert other == blob, f"nonce reuse: session {session.hex()} counter {counter}"


def test_two_processes_write_one_repository(tmp_path: Path) -> None:
    root, keys_dir = tmp_path / "repo", tmp_path / "keys"
    create_client(
        root, CONCURRENT_MODE, keys_dir=keys_dir, cache_dir=None, pack_size=8 * 1024
    ).close()
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    seeds = (11, 12)
    processes = [
        context.Process(
            target=concurrent_writer,
            args=(
                str(root),
                str(tmp_path / f"cache-{s}"),
                str(keys_dir),
                s,
                str(tmp_path / f"result-{s}.json"),
                start,
            ),
        )
        for s in seeds
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    results = [json.loads((tmp_path / f"result-{s}.json").read_text()) for s in seeds]

    reader = open_client(LocalStorage(root), keys_dir=keys_dir, cache_dir=tmp_path / "reader")
    shared = make_chunks(SHARED_CHUNKS, seed=999)
    assert sorted(reader.objects.list_archives()) == sorted(
        bytes.fromhex(r["archive"]) for r in results
    )
    for seed, result in zip(seeds, results, strict=True):
        chunks = make_chunks(CONCURRENT_CHUNKS, seed) + shared
        verify_archive(reader.objects, bytes.fromhex(result["archive"]), chunks)

    uses = nonce_uses(LocalStorage(root), CONCURRENT_MODE.suite)
    sessions = {session for session, _, _ in uses}
    assert sessions == {bytes.fromhex(r["session"]) for r in results}
    assert len(sessions) == 2
    # Every object once, so no pair may appear twice at all.
    assert len({(s, c) for s, c, _ in uses}) == len(uses)
    assert_no_nonce_reuse(uses)
    assert len(uses) >= 2 * (CONCURRENT_CHUNKS + 2)


def test_copied_repository_written_by_two_clients(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    original, copy = tmp_path / "repo", tmp_path / "copy"
    client = create_client(
        original, CONCURRENT_MODE, keys_dir=keys_dir, cache_dir=tmp_path / "c0", pack_size=4096
    )
    backup(client.objects, "before the copy", make_chunks(100, seed=20))
    client.close()
    shutil.copytree(original, copy)
    shutil.copytree(tmp_path / "c0", tmp_path / "c1")
    # Both copies continue from the same state (a restored or rolled-back
    # repository, a cloned VM): the same data and different data alike.
    runs = {}
    for root, cache, seed in ((original, tmp_path / "c0", 21), (copy, tmp_path / "c1", 22)):
        writer = open_client(
            LocalStorage(root), keys_dir=keys_dir, cache_dir=cache, operation="write"
        )
        chunks = make_chunks(100, seed) + make_chunks(100, seed=23)
        runs[root] = (backup(writer.objects, f"after {seed}", chunks), chunks)
        writer.close()
    uses = nonce_uses(LocalStorage(original), CONCURRENT_MODE.suite) + nonce_uses(
        LocalStorage(copy), CONCURRENT_MODE.suite
    )
    assert len({session for session, _, _ in uses}) == 3
    assert_no_nonce_reuse(uses)
    for root, (archive_id, chunks) in runs.items():
        reader = open_client(LocalStorage(root), keys_dir=keys_dir, cache_dir=None)
        verify_archive(reader.objects, archive_id, chunks)


# --- 5. format versions and mandatory features ----------------------------------------------


def test_newer_version_refuses_reading_and_writing(tmp_path: Path) -> None:
    client, _ = small_repo(tmp_path, EncryptionMode.REPOKEY_CHACHA20_POLY1305)
    client.close()
    root = tmp_path / "repo"
    edit_config(root, version=2, new_field={"from": "hoard 2"})
    for operation in ("read", "write", "check", "delete"):
        with pytest.raises(UnsupportedRepositoryVersion) as info:
            Repository.open(LocalStorage(root), None, operation=operation)
        message = str(info.value)
        assert str(root) in message and "version 2" in message and "up to 1" in message
        assert info.value.modern_exit_code == 16  # Borg 1.4: InvalidRepositoryConfig


def test_write_only_feature_allows_reading_and_refuses_writing(tmp_path: Path) -> None:
    client, chunks = small_repo(tmp_path, EncryptionMode.REPOKEY_CHACHA20_POLY1305)
    archive_id = backup(client.objects, "old", chunks)
    client.close()
    root, keys_dir = tmp_path / "repo", tmp_path / "keys"
    edit_config(root, features={"write": ["new-pack-format"], "frobnicate": ["ignored"]})

    reader = open_client(LocalStorage(root), keys_dir=keys_dir, cache_dir=None)
    verify_archive(reader.objects, archive_id, chunks)
    for operation in ("check", "delete"):
        Repository.open(LocalStorage(root), None, operation=operation)
    before = sorted(p.name for p in root.rglob("*"))
    with pytest.raises(UnsupportedFeature) as info:
        open_client(LocalStorage(root), keys_dir=keys_dir, cache_dir=None, operation="write")
    assert str(info.value) == (
        "Repository requires features this hoard does not have: new-pack-format. Upgrade hoard."
    )
    assert before == sorted(p.name for p in root.rglob("*"))  # the refusal wrote nothing

    # A feature for deletion only leaves reading and writing alone.
    edit_config(root, features={"delete": ["new-compaction"]})
    writer = open_client(LocalStorage(root), keys_dir=keys_dir, cache_dir=None, operation="write")
    backup(writer.objects, "new", make_chunks(10, seed=5))
    writer.close()
    with pytest.raises(UnsupportedFeature, match="new-compaction"):
        Repository.open(LocalStorage(root), None, operation="delete")
