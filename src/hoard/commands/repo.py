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
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hoard.archive.catalog import load_records
from hoard.archive.placeholders import PlaceholderContext, expand_placeholders, short_hostname
from hoard.archive.record import ArchiveRecord
from hoard.commands.base import Context
from hoard.commands.version import BORG_COMPAT_VERSION
from hoard.errors import (
    ArchiveRecordDamagedWarning,
    CancelledByUser,
    CommandError,
    HoardError,
    HoardWarning,
    IntegrityError,
    NotARepository,
    ParentPathDoesNotExist,
    PathAlreadyExists,
    PathPermissionDenied,
    RepositoryAlreadyExists,
    RepositoryDoesNotExist,
    RootObjectDamagedWarning,
    UnsupportedRepositoryVersion,
)
from hoard.objects.compression import DEFAULT_COMPRESSION, CompressionSpec
from hoard.objects.kdf import DEFAULT_KDF, KdfParams
from hoard.objects.keys import EncryptionMode, KeyLocation, KeyManager, KeyMaterial
from hoard.objects.store import ObjectStore
from hoard.repository.config import CONFIG_COPY_NAME, CONFIG_NAME, RepoConfig
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


def _storage_for(location: Location) -> Storage:
    """The one place where a location becomes a storage (remote and object
    storage backends plug in here); ``repository_storage`` and
    ``create_repository`` call it."""
    if location.proto != "file":
        raise CommandError(f"repositories over {location.proto} are not supported yet")
    return LocalStorage(Path(location.path))


def _key_manager(ctx: Context, repository: Repository, mode: EncryptionMode) -> KeyManager:
    keys_dir = ctx.keys_dir if mode.location is KeyLocation.KEYFILE else None
    blob_store = repository if mode.location is KeyLocation.REPOSITORY else None
    return KeyManager(repository.id, mode, keys_dir=keys_dir, blob_store=blob_store)


def is_repository(path: Path) -> bool:
    """Whether ``path`` holds a hoard repository (a readable ``config`` of ours)."""
    try:
        data = (path / CONFIG_NAME).read_bytes()
    except OSError:
        return False
    try:
        RepoConfig.from_json(data, str(path))
    except UnsupportedRepositoryVersion:
        return True  # a newer hoard's repository is still a repository
    except NotARepository:
        return False
    return True


def _check_new_path(path: Path, make_parent_dirs: bool) -> None:
    """Borg's checks before ``init`` (``check_can_create_repository``).

    Nothing there yet, or an empty directory; no repository in any parent
    directory (one inside another would confuse both); the parent exists
    unless ``--make-parent-dirs``.
    """
    shown = os.path.abspath(path)  # as Borg names it
    try:
        st = path.stat()
    except FileNotFoundError:
        pass
    except PermissionError:
        raise PathPermissionDenied(shown) from None
    else:
        if is_repository(path):
            raise RepositoryAlreadyExists(shown)
        if not stat.S_ISDIR(st.st_mode):
            raise PathAlreadyExists(shown)
        try:
            if any(path.iterdir()):
                raise PathAlreadyExists(shown)
        except PermissionError:
            raise PathPermissionDenied(shown) from None
    for parent in Path(os.path.abspath(path)).parents:
        if is_repository(parent):
            raise RepositoryAlreadyExists(str(parent))
    if not path.parent.exists():
        if not make_parent_dirs:
            raise ParentPathDoesNotExist(shown)
        path.parent.mkdir(parents=True, exist_ok=True)


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
    """``init``: a new repository and its key (asks for a new passphrase when needed)."""
    if location.proto == "file":
        _check_new_path(Path(location.path), make_parent_dirs)
    passphrase = ""
    if mode.location is not KeyLocation.NOWHERE:
        try:
            passphrase = ctx.passphrases.new()
        except KeyboardInterrupt:  # Ctrl-C at the prompt: Borg's "Cancelled by user."
            raise CancelledByUser() from None
    storage = _storage_for(location)
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


def repository_storage(location: Location) -> Storage:
    """The storage of the existing repository at ``location``, without its key.

    Borg's order: nothing there is DoesNotExist; a file, or a directory
    without a config (or its copy), is not a repository. Every command that
    opens a repository gets its storage here (``open_repository``, the lock
    commands, ``delete``)."""
    if location.proto == "file":
        shown = os.path.abspath(location.path)  # as Borg names it in these messages
        try:
            st = os.stat(location.path)
        except FileNotFoundError:
            raise RepositoryDoesNotExist(shown) from None
        except OSError as exc:
            raise PathPermissionDenied(f"{shown} ({exc.strerror})") from None
        has_config = any(
            os.path.lexists(os.path.join(location.path, name))
            for name in (CONFIG_NAME, CONFIG_COPY_NAME)
        )
        if not stat.S_ISDIR(st.st_mode) or not has_config:
            raise NotARepository(shown)
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

    On a normal exit, what was put is flushed. After an exception nothing
    more is written (what is pending is dropped): the failure may have come
    from the storage, and a command that wants to keep its work after an
    error (``create`` on Ctrl-C) flushes itself while it still holds its lock.
    """
    repository = Repository.open(repository_storage(location), ctx.cache_dir, operation=operation)
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
        raise
    repository.close()
