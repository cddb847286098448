"""The exception hierarchy of hoard.

Every error a user can cause is a subclass of :class:`HoardError`. The class
docstring is the one-line message template (formatted with the exception's
arguments), ``exit_code`` is the legacy Borg code (2 for every error) and
``modern_exit_code`` the specific code Borg 1.4 uses with
``BORG_EXIT_CODES=modern``. The ``cli`` layer maps these to the process exit
status in one place; no other layer decides exit codes or prints.

This module sits outside the layers so that every layer may raise these.
"""

from __future__ import annotations


class _Templated(Exception):
    """{}"""

    @property
    def msgid(self) -> str:
        """Stable identifier for --log-json records (the class name, as Borg)."""
        return type(self).__qualname__

    def get_message(self) -> str:
        """The first docstring line, formatted with the exception's arguments."""
        template = (type(self).__doc__ or "{}").strip().splitlines()[0]
        try:
            return template.format(*self.args)
        except (IndexError, KeyError):
            return f"{template} {self.args!r}"

    def __str__(self) -> str:
        return self.get_message()


class HoardError(_Templated):
    """Error: {}"""

    exit_code = 2
    modern_exit_code = 2
    traceback = False


# --- storage -----------------------------------------------------------------


class StorageError(HoardError):
    """Storage error: {}"""


class InvalidName(StorageError):
    """Invalid storage object name: {!r}"""


class ObjectNotFound(StorageError):
    """Storage object {} does not exist."""


class ObjectExists(StorageError):
    """Storage object {} exists already; stored objects are never overwritten."""


class StorageFull(StorageError):
    """No space left while writing {}: {}"""

    modern_exit_code = 14  # Borg's InsufficientFreeSpaceError


class AppendOnlyViolation(StorageError):
    """{} is in append-only mode: refusing to {}."""

    # No Borg counterpart (Borg's append-only log silently keeps the data);
    # raised by the append-only storage wrapper, so code that tries to delete
    # or overwrite there fails loudly instead of succeeding.


def _decimal_size(value: int) -> str:
    """Borg's ``format_file_size`` (decimal units, 2 decimals): ``10.00 MB``."""
    num, unit = float(value), "B"
    for candidate in ("", "k", "M", "G", "T", "P", "E", "Z"):
        if abs(round(num, 2)) < 1000:
            return f"{num:.2f} {candidate}{unit}" if candidate else f"{num:.0f} {unit}"
        num /= 1000
    return f"{num:.2f} Y{unit}"


class StorageQuotaExceeded(StorageError):
    """The storage quota ({}) has been exceeded ({}). Try deleting some archives."""

    modern_exit_code = 20

    def __init__(self, quota: int, used: int) -> None:
        """Sizes in bytes; the message shows them as Borg does (``10.00 MB``)."""
        super().__init__(_decimal_size(quota), _decimal_size(used))
        self.quota = quota
        self.used = used


class InsufficientFreeSpace(StorageError):
    """Insufficient free space to complete transaction (required: {}, available: {})."""

    modern_exit_code = 14

    def __init__(self, required: int, available: int) -> None:
        super().__init__(_decimal_size(required), _decimal_size(available))
        self.required = required
        self.available = available


# --- repository ----------------------------------------------------------------


class RepositoryError(HoardError):
    """Repository error: {}"""


class RepositoryDoesNotExist(RepositoryError):
    """Repository {} does not exist."""

    modern_exit_code = 13


class RepositoryAlreadyExists(RepositoryError):
    """A repository already exists at {}."""

    modern_exit_code = 10


class PathAlreadyExists(RepositoryError):
    """There is already something at {}."""

    modern_exit_code = 19


class ParentPathDoesNotExist(RepositoryError):
    """The parent path of the repo directory [{}] does not exist."""

    modern_exit_code = 18


class PathPermissionDenied(RepositoryError):
    """Permission denied to {}."""

    modern_exit_code = 21


class NotARepository(RepositoryError):
    """{} is not a valid repository. Check repo config."""

    modern_exit_code = 15


class UnsupportedRepositoryVersion(RepositoryError):
    """Repository {} has format version {}; this hoard understands up to {}. Upgrade hoard."""

    modern_exit_code = 16  # Borg's InvalidRepositoryConfig ("version ... is not supported")


class UnsupportedFeature(RepositoryError):
    """Repository requires features this hoard does not have: {}. Upgrade hoard."""

    modern_exit_code = 25


class IntegrityError(RepositoryError):
    """Data integrity error: {}"""

    modern_exit_code = 90


class ChunkNotFound(RepositoryError):
    """Object {} is not in the repository."""

    modern_exit_code = 17


# --- locks (Borg's classes, messages and exit codes) ------------------------------------


class LockError(HoardError):
    """Failed to acquire the lock {}."""

    modern_exit_code = 70


class LockErrorT(HoardError):
    """Failed to acquire the lock {}."""

    modern_exit_code = 71
    traceback = True


class LockFailed(LockErrorT):
    """Failed to create/acquire the lock {} ({})."""

    modern_exit_code = 72


class LockTimeout(LockError):
    """Failed to create/acquire the lock {} (timeout)."""

    modern_exit_code = 73


class NotLocked(LockErrorT):
    """Failed to release the lock {} (was not locked)."""

    modern_exit_code = 74


class NotMyLock(LockErrorT):
    """Failed to release the lock {} (was/is locked, but not by me)."""

    modern_exit_code = 75


# --- keys and crypto -------------------------------------------------------------


class CryptoKeyError(HoardError):
    """Key error: {}"""


class PassphraseWrong(CryptoKeyError):
    """passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND or via BORG_PASSPHRASE_FD is incorrect."""  # noqa: E501 - Borg's exact message

    modern_exit_code = 52


class PasswordRetriesExceeded(CryptoKeyError):
    """exceeded the maximum password retries"""

    modern_exit_code = 53


class NoPassphraseFailure(CryptoKeyError):
    """can not acquire a passphrase: {}"""

    modern_exit_code = 50


class PasscommandFailure(CryptoKeyError):
    """passcommand supplied in BORG_PASSCOMMAND failed: {}"""

    modern_exit_code = 51


class KeyfileNotFound(CryptoKeyError):
    """No key file for repository {} found in {}."""

    modern_exit_code = 42


class KeyfileInvalid(CryptoKeyError):
    """Invalid key data for repository {} found in {}."""

    modern_exit_code = 40


class KeyfileMismatch(KeyfileInvalid):
    """Mismatch between repository {} and key file {}."""

    modern_exit_code = 41


class RepoKeyNotFound(CryptoKeyError):
    """No key entry found in the config of repository {}."""

    modern_exit_code = 44


class UnsupportedKeyFormat(CryptoKeyError):
    """Your key uses an unsupported format: {}"""

    modern_exit_code = 48  # Borg's UnsupportedPayloadError (Borg 1.4 has no code 49)


class EncryptionModeInvalid(CryptoKeyError):
    """Unknown encryption mode {!r}; choose one of {}."""


# --- user input --------------------------------------------------------------------


class InputError(HoardError):
    """{}"""


class CompressionSpecError(InputError):
    """Invalid compression specification {!r}: {}"""


class ChunkerParamsError(InputError):
    """Invalid chunker params {!r}: {}"""


class PatternError(InputError):
    """Invalid pattern {!r}: {}"""


class PlaceholderError(InputError):
    """Invalid use of placeholders in {!r}: {}"""

    modern_exit_code = 5


class InvalidPlaceholder(PlaceholderError):
    """Invalid placeholder "{}" in string: {}"""

    modern_exit_code = 6


class LocationError(InputError):
    """Invalid location format: "{}" ({})"""


class InvalidFormat(InputError):
    """Invalid --format {!r}: {}"""


# --- archives ------------------------------------------------------------------------


class ArchiveError(HoardError):
    """Archive error: {}"""


class ArchiveAlreadyExists(ArchiveError):
    """Archive {} already exists"""

    modern_exit_code = 30


class ArchiveDoesNotExist(ArchiveError):
    """Archive {} does not exist"""

    modern_exit_code = 31


class CheckFoundDamage(RepositoryError):
    """The check found damage: {}."""


class CommandError(HoardError):
    """Command Error: {}"""

    modern_exit_code = 4


class ExternalCommandExit(HoardError):
    """Command {!r} exited with status {}."""

    def __init__(self, command: str, status: int) -> None:
        """``status`` (1-255) becomes hoard's exit status, legacy and modern
        alike, as Borg's ``with-lock`` returns the status of its command."""
        super().__init__(command, status)
        self.exit_code = status
        self.modern_exit_code = status


class CancelledByUser(HoardError):
    """Cancelled by user."""

    modern_exit_code = 3


class BackupInterrupted(HoardError):
    """Error: Got Ctrl-C / SIGINT."""

    # Borg raises a plain Error here: the code is 2 in both tables.


# --- warnings: collected, never raised out of a command; they make exit code 1 ---------


class HoardWarning(_Templated):
    """Warning: {}"""

    exit_code = 1
    modern_exit_code = 1


class FileChangedWarning(HoardWarning):
    """{}: file changed while we backed it up"""

    modern_exit_code = 100


class IncludePatternNeverMatchedWarning(HoardWarning):
    """Include pattern '{}' never matched."""

    modern_exit_code = 101


class BackupWarning(HoardWarning):
    """{}: {}"""

    modern_exit_code = 102


class BackupOSWarning(BackupWarning):
    """{}: {}"""

    modern_exit_code = 104


class BackupRaceConditionWarning(BackupWarning):
    """{}: file type or inode changed while we backed it up (race condition, skipped file)"""

    modern_exit_code = 103


class BackupPermissionWarning(BackupOSWarning):
    """{}: {}"""

    modern_exit_code = 105


class BackupIOWarning(BackupOSWarning):
    """{}: {}"""

    modern_exit_code = 106


class BackupFileNotFoundWarning(BackupOSWarning):
    """{}: {}"""

    modern_exit_code = 107


class BrokenFileWarning(HoardWarning):
    """{}: file is broken: chunks were lost, 'hoard check --repair' replaced them by zeros."""


class CheckRepairedWarning(HoardWarning):
    """Check: {}."""


class ArchiveNotFoundWarning(HoardWarning):
    """Archive {} not found ({}/{})."""


class ArchiveNotRestoredWarning(HoardWarning):
    """Archive {} not restored: an archive of that name exists (rename it first)."""
