"""Opening repositories for commands: location -> storage -> repository -> key -> objects.

Every command that touches a repository goes through :func:`open_repository`
or :func:`create_repository`, so the order of checks (does it exist, can
this hoard read it, is the key there, is the passphrase right) and the
errors a user sees are the same everywhere. Locations get Borg's placeholder
expansion (``/backups/{hostname}::{now:%Y-%m-%d}``) here, for every command.
"""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from hoard.archive.catalog import load_records
from hoard.archive.placeholders import PlaceholderContext, expand_placeholders, short_hostname
from hoard.archive.record import ArchiveRecord
from hoard.commands.base import Context
from hoard.commands.version import BORG_COMPAT_VERSION, version_string
from hoard.errors import (
    ArchiveRecordDamagedWarning,
    CancelledByUser,
    CommandError,
    HoardError,
    HoardWarning,
    IntegrityError,
    RootObjectDamagedWarning,
)
from hoard.objects.compression import DEFAULT_COMPRESSION, CompressionSpec
from hoard.objects.kdf import DEFAULT_KDF, KdfParams
from hoard.objects.keys import EncryptionMode, KeyLocation, KeyManager, KeyMaterial
from hoard.objects.store import ObjectStore
from hoard.repository.localpath import check_new_path, existing_repository_storage
from hoard.repository.repository import Repository
from hoard.storage.base import Storage
from hoard.storage.local import LocalStorage
from hoard.storage.location import Location
from hoard.storage.remote import RemoteStorage
from hoard.storage.sshcommand import RemoteTarget


@dataclass
class OpenRepository:
    """An open repository with its key, ready for object access."""

    location: Location
    repository: Repository
    key: KeyMaterial
    mode: EncryptionMode
    objects: ObjectStore
    keys: KeyManager | None = None
    """Where the key was found (its copies are checked and repaired through it)."""
    warn: Callable[[HoardWarning], None] | None = None
    """Where a damaged archive record is reported (``ctx.warn``); None: it raises."""
    mode_name: str = ""
    """The mode's name as given at ``init`` (``repokey``); what Borg reports."""
    _warned: set[bytes] = field(default_factory=set)

    @property
    def shown_mode(self) -> str:
        """The mode's name for output: as chosen at ``init``, else canonical."""
        return self.mode_name or self.mode.value

    def records(self, *, include_hidden: bool = False) -> list[ArchiveRecord]:
        """The archives in start-time order; those deleted in append-only
        mode (hidden behind a deletion record) only with ``include_hidden``.
        A damaged record is skipped with a warning naming it (once per
        command), so the others stay usable."""
        on_damaged = self._skip_damaged if self.warn is not None else None
        return load_records(self.objects, on_damaged, include_hidden=include_hidden)

    def _skip_damaged(self, id_: bytes, error: IntegrityError) -> None:
        if id_ not in self._warned and self.warn is not None:
            self._warned.add(id_)
            self.warn(ArchiveRecordDamagedWarning(id_.hex(), error.reason))


def placeholder_context(ctx: Context) -> PlaceholderContext:
    """The values of ``{hostname}``, ``{now}``... for this command run
    (``{hostname}`` and ``{user}`` as :func:`host_identity` says)."""
    hostname, user = _identity_overrides(ctx)
    return PlaceholderContext.from_system(
        ctx.now(), borg_version=BORG_COMPAT_VERSION, hostname=hostname, user=user
    )


def host_identity(ctx: Context) -> tuple[str, str]:
    """The host and user name an archive is recorded under: BORG_HOSTNAME
    and BORG_USERNAME (or HOARD_*) when set and not empty, as Borg 1.4;
    else this machine's short host name and the user running hoard."""
    hostname, user = _identity_overrides(ctx)
    return hostname or short_hostname(), user or getpass.getuser()


def _identity_overrides(ctx: Context) -> tuple[str | None, str | None]:
    return ctx.getenv("HOSTNAME") or None, ctx.getenv("USERNAME") or None


def repository_location(ctx: Context, text: str | None) -> Location:
    """Parse a REPOSITORY[::ARCHIVE] argument, falling back to BORG_REPO/HOARD_REPO.

    Placeholders are expanded in the whole argument first, as Borg does
    (only when there is a brace: expanding looks up the FQDN).
    """
    text = text or ""
    if "{" in text or "}" in text:
        text = expand_placeholders(text, placeholder_context(ctx))
    return Location.parse(text, default_repo=ctx.getenv("REPO"))


def kdf_params(ctx: Context) -> KdfParams:
    """Strong Argon2id, unless the test-only weakening (Borg's) is set."""
    return KdfParams.weak() if ctx.weak_kdf else DEFAULT_KDF


def _remote_storage(
    ctx: Context, location: Location, *, create: bool = False, make_parent_dirs: bool = False
) -> RemoteStorage:
    """``hoard serve`` on the location's host, through ``--rsh``/BORG_RSH, with
    the repository opened (or created) there."""
    assert location.host is not None
    options = ctx.remote
    if "{" in options.remote_path or "}" in options.remote_path:
        expanded = expand_placeholders(options.remote_path, placeholder_context(ctx))
        options = replace(options, remote_path=expanded)
    target = RemoteTarget(
        host=location.host,
        user=location.user,
        port=location.port,
        path=location.path,
        create=create,
        make_parent_dirs=make_parent_dirs,
        shown=location.canonical_path(),
    )
    return RemoteStorage.connect(target, options, version_string())


def _key_manager(ctx: Context, repository: Repository, mode: EncryptionMode) -> KeyManager:
    keys_dir = ctx.keys_dir if mode.location is KeyLocation.KEYFILE else None
    blob_store = repository if mode.location is KeyLocation.REPOSITORY else None
    return KeyManager(repository.id, mode, keys_dir=keys_dir, blob_store=blob_store)


def create_repository(
    ctx: Context,
    location: Location,
    mode: EncryptionMode,
    *,
    mode_name: str | None = None,
    make_parent_dirs: bool = False,
    append_only: bool = False,
    storage_quota: int | None = None,
) -> OpenRepository:
    """``init``: a new repository and its key (asks for a new passphrase when needed).

    The location is checked (over ssh: connected and checked by the server)
    before the passphrase is asked, so a wrong path costs no typing."""
    storage = _storage_for(ctx, location, create=True, make_parent_dirs=make_parent_dirs)
    if isinstance(storage, RemoteStorage):
        storage_quota = storage_quota or storage.server_quota  # Borg: serve --storage-quota
    passphrase = ""
    if mode.location is not KeyLocation.NOWHERE:
        try:
            passphrase = ctx.passphrases.new()
        except KeyboardInterrupt:  # Ctrl-C at the prompt: Borg's "Cancelled by user."
            storage.close()
            raise CancelledByUser() from None
        except BaseException:
            storage.close()
            raise
    repository = Repository.create(
        storage,
        key_mode=mode_name or mode.value,  # parses back to ``mode``; the name is reported
        append_only=append_only,
        storage_quota=storage_quota,
        cache_dir=ctx.cache_dir,
    )
    keys = _key_manager(ctx, repository, mode)
    try:
        key = keys.create(passphrase, kdf_params(ctx))
    except BaseException:
        _undo_create(storage)
        storage.close()
        raise
    return OpenRepository(
        location,
        repository,
        key,
        mode,
        ObjectStore(repository, key),
        keys,
        mode_name=mode_name or mode.value,
    )


def _undo_create(storage: Storage) -> None:
    """Remove a repository whose key could not be stored (as Borg's ``destroy``):
    a config without a key would be a repository nobody can open."""
    for info in list(storage.list("")):
        with contextlib.suppress(HoardError):
            storage.delete(info.name)


def repository_storage(ctx: Context, location: Location) -> Storage:
    """The storage of the existing repository at ``location``, without its key.

    Borg's order: nothing there is DoesNotExist; a file, or a directory
    without a config (or its copy), is not a repository; over ssh the server
    makes the same checks. Every command that opens a repository gets its
    storage here (``open_repository``, the lock commands, ``delete``)."""
    return _storage_for(ctx, location)


def _storage_for(
    ctx: Context, location: Location, *, create: bool = False, make_parent_dirs: bool = False
) -> Storage:
    """The one place where a location becomes a storage (object storage
    backends plug in here; tests/killer.py wraps it): an existing
    repository's, or with ``create`` the place for a new one, checked."""
    if location.proto == "ssh":
        return _remote_storage(ctx, location, create=create, make_parent_dirs=make_parent_dirs)
    if create:
        check_new_path(Path(location.path), make_parent_dirs)
        return LocalStorage(Path(location.path))
    return existing_repository_storage(location.path)


@dataclass(frozen=True)
class KeyAccess:
    """A repository's key, still wrapped: for ``key export/import/change-passphrase``."""

    location: Location
    repository: Repository
    keys: KeyManager
    mode: EncryptionMode


@contextmanager
def open_keys(ctx: Context, location: Location) -> Iterator[KeyAccess]:
    """The repository and its key manager, without unlocking the key (so a
    repository whose key blob is gone still opens, for ``key import``).
    Mode none has no key: Borg's "Key management not available..." error."""
    storage = repository_storage(ctx, location)
    try:
        with Repository.open(storage, ctx.cache_dir, operation="read") as repository:
            mode = EncryptionMode.parse(repository.config.key_mode)
            if mode.location is KeyLocation.NOWHERE:
                raise CommandError("Key management not available for unencrypted repositories.")
            yield KeyAccess(location, repository, _key_manager(ctx, repository, mode), mode)
    finally:
        storage.close()


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

    On a normal exit, what was put is flushed. After an exception nothing
    more is written (what is pending is dropped): the failure may have come
    from the storage, and a command that wants to keep its work after an
    error (``create`` on Ctrl-C) flushes itself while it still holds its lock.
    """
    storage = repository_storage(ctx, location)
    try:
        repository = Repository.open(storage, ctx.cache_dir, operation=operation)
    except BaseException:
        storage.close()
        raise
    shown = location.canonical_path()
    try:
        if repository.config_damaged:
            ctx.warn(RootObjectDamagedWarning(shown, repository.config_damaged))
        mode = EncryptionMode.parse(repository.config.key_mode)
        keys = _key_manager(ctx, repository, mode)
        key = keys.load(ctx.passphrases.get)
        if keys.damaged:
            ctx.warn(RootObjectDamagedWarning(shown, keys.damaged))
        yield OpenRepository(
            location,
            repository,
            key,
            mode,
            ObjectStore(repository, key, compression),
            keys,
            ctx.warn,
            mode_name=repository.config.key_mode,
        )
    except BaseException as exc:
        repository.__exit__(type(exc), exc, exc.__traceback__)
        storage.close()
        raise
    try:
        repository.close()
    finally:
        storage.close()
