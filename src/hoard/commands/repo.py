"""Opening repositories for commands: location -> storage -> repository -> key -> objects.

Every command that touches a repository goes through :func:`open_repository`
or :func:`create_repository`, so the order of checks (does it exist, can
this hoard read it, is the key there, is the passphrase right) and the
errors a user sees are the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hoard.archive.catalog import load_records
from hoard.archive.record import ArchiveRecord
from hoard.commands.base import Context
from hoard.errors import (
    CommandError,
    ParentPathDoesNotExist,
    PathAlreadyExists,
    RepositoryAlreadyExists,
    RepositoryDoesNotExist,
    RepositoryError,
)
from hoard.objects.compression import DEFAULT_COMPRESSION, CompressionSpec
from hoard.objects.kdf import DEFAULT_KDF, KdfParams
from hoard.objects.keys import EncryptionMode, KeyLocation, KeyManager, KeyMaterial
from hoard.objects.store import ObjectStore
from hoard.repository.repository import Repository
from hoard.storage.base import Storage
from hoard.storage.local import LocalStorage
from hoard.storage.location import Location


@dataclass
class OpenRepository:
    """An open repository with its key, ready for object access."""

    location: Location
    repository: Repository
    key: KeyMaterial
    mode: EncryptionMode
    objects: ObjectStore

    def records(self) -> list[ArchiveRecord]:
        return load_records(self.objects)


def repository_location(ctx: Context, text: str | None) -> Location:
    """Parse a REPOSITORY[::ARCHIVE] argument, falling back to BORG_REPO/HOARD_REPO."""
    return Location.parse(text or "", default_repo=ctx.getenv("REPO"))


def kdf_params(ctx: Context) -> KdfParams:
    """Strong Argon2id, unless the test-only weakening (Borg's) is set."""
    return KdfParams.weak() if ctx.weak_kdf else DEFAULT_KDF


def _storage_for(location: Location) -> Storage:
    if location.proto != "file":
        raise CommandError(f"repositories over {location.proto} are not supported yet")
    return LocalStorage(Path(location.path))


def _key_manager(ctx: Context, repository: Repository, mode: EncryptionMode) -> KeyManager:
    keys_dir = ctx.keys_dir if mode.location is KeyLocation.KEYFILE else None
    blob_store = repository if mode.location is KeyLocation.REPOSITORY else None
    return KeyManager(repository.id, mode, keys_dir=keys_dir, blob_store=blob_store)


def _check_new_path(path: Path, make_parent_dirs: bool) -> None:
    """Borg's checks before ``init``: nothing there yet, parent exists, not inside a repo."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if (path / "config").is_file():
            raise RepositoryAlreadyExists(str(path))
        raise PathAlreadyExists(str(path))
    for parent in path.absolute().parents:
        if (parent / "config").is_file() and (parent / "index").is_dir():
            raise RepositoryError(f"cannot create a repository inside repository {parent}")
    if not path.parent.exists():
        if not make_parent_dirs:
            raise ParentPathDoesNotExist(str(path.parent))
        path.parent.mkdir(parents=True, exist_ok=True)


def create_repository(
    ctx: Context,
    location: Location,
    mode: EncryptionMode,
    *,
    make_parent_dirs: bool = False,
    append_only: bool = False,
    storage_quota: int | None = None,
) -> OpenRepository:
    """``init``: a new repository and its key (asks for a new passphrase when needed)."""
    if location.proto == "file":
        _check_new_path(Path(location.path), make_parent_dirs)
    passphrase = ""
    if mode.location is not KeyLocation.NOWHERE:
        passphrase = ctx.passphrases.new()
    repository = Repository.create(
        _storage_for(location),
        key_mode=mode.value,
        append_only=append_only,
        storage_quota=storage_quota,
        cache_dir=ctx.cache_dir,
    )
    key = _key_manager(ctx, repository, mode).create(passphrase, kdf_params(ctx))
    return OpenRepository(location, repository, key, mode, ObjectStore(repository, key))


def _open_storage(location: Location) -> Storage:
    if location.proto == "file" and not os.path.isdir(location.path):
        raise RepositoryDoesNotExist(location.canonical_path())
    return _storage_for(location)


@contextmanager
def open_repository(
    ctx: Context,
    location: Location,
    *,
    operation: str = "read",
    compression: CompressionSpec = DEFAULT_COMPRESSION,
) -> Iterator[OpenRepository]:
    """Open an existing repository and unlock its key; closes it on exit.

    ``operation`` (read, write, check, delete) selects which mandatory
    features of the repository this hoard must know.
    """
    repository = Repository.open(_open_storage(location), ctx.cache_dir, operation=operation)
    try:
        mode = EncryptionMode.parse(repository.config.key_mode)
        key = _key_manager(ctx, repository, mode).load(ctx.passphrases.get)
        yield OpenRepository(
            location, repository, key, mode, ObjectStore(repository, key, compression)
        )
    finally:
        repository.close()
