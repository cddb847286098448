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

from typing import ClassVar


class _Templated(Exception):
    """{}"""

    borg_msgid: ClassVar[str | None] = None
    """Borg 1.4's msgid for the same condition (its exception's qualified name,
    e.g. ``Repository.DoesNotExist``): what wrappers reading --log-json match.
    Set on the class itself; a subclass without one has its own name."""

    @property
    def msgid(self) -> str:
        """Stable identifier for --log-json records: Borg's where it has one,
        else the class name (as Borg names its own)."""
        own = type(self).__dict__.get("borg_msgid")
        return own if isinstance(own, str) else type(self).__qualname__

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

    borg_msgid = "Repository.StorageQuotaExceeded"
    modern_exit_code = 20

    def __init__(self, quota: int, used: int) -> None:
        """Sizes in bytes; the message shows them as Borg does (``10.00 MB``)."""
        super().__init__(_decimal_size(quota), _decimal_size(used))
        self.quota = quota
        self.used = used

    def __reduce__(self) -> tuple[type[StorageQuotaExceeded], tuple[int, int]]:
        """Pickled by its sizes (raised in a create worker, re-raised by the main process)."""
        return (StorageQuotaExceeded, (self.quota, self.used))


class InsufficientFreeSpace(StorageError):
    """Insufficient free space to complete transaction (required: {}, available: {})."""

    borg_msgid = "Repository.InsufficientFreeSpaceError"
    modern_exit_code = 14

    def __init__(self, required: int, available: int) -> None:
        super().__init__(_decimal_size(required), _decimal_size(available))
        self.required = required
        self.available = available

    def __reduce__(self) -> tuple[type[InsufficientFreeSpace], tuple[int, int]]:
        """Pickled by its sizes, as ``StorageQuotaExceeded``."""
        return (InsufficientFreeSpace, (self.required, self.available))


# --- remote (hoard serve over ssh) ---------------------------------------------------


class RemoteError(StorageError):
    """Remote repository error: {}"""


class ConnectionClosed(RemoteError):
    """Connection closed by remote host"""

    borg_msgid = "ConnectionClosed"
    modern_exit_code = 80


class ConnectionClosedWithHint(ConnectionClosed):
    """Connection closed by remote host. {}"""

    borg_msgid = "ConnectionClosedWithHint"
    modern_exit_code = 81


class InvalidRPCMethod(RemoteError):
    """RPC method {} is not valid"""

    borg_msgid = "InvalidRPCMethod"
    modern_exit_code = 82


class PathNotAllowed(RemoteError):
    """Repository path not allowed: {}"""

    borg_msgid = "PathNotAllowed"
    modern_exit_code = 83


class ProtocolMismatch(RemoteError):
    """Remote protocol mismatch: this hoard {} speaks {}, the server's hoard {} speaks {}."""

    borg_msgid = "RPCServerOutdated"
    modern_exit_code = 84


class UnexpectedRPCDataFormatFromClient(RemoteError):
    """Got unexpected RPC data format from client: {}"""

    borg_msgid = "UnexpectedRPCDataFormatFromClient"
    modern_exit_code = 85


class UnexpectedRPCDataFormatFromServer(RemoteError):
    """Got unexpected RPC data format from server: {}"""

    borg_msgid = "UnexpectedRPCDataFormatFromServer"
    modern_exit_code = 86


class RemoteServerError(RemoteError):
    """The hoard server failed: {}"""

    traceback = False


# --- repository ----------------------------------------------------------------


class RepositoryError(HoardError):
    """Repository error: {}"""


class RepositoryDoesNotExist(RepositoryError):
    """Repository {} does not exist."""

    borg_msgid = "Repository.DoesNotExist"
    modern_exit_code = 13


class RepositoryAlreadyExists(RepositoryError):
    """A repository already exists at {}."""

    borg_msgid = "Repository.AlreadyExists"
    modern_exit_code = 10


class PathAlreadyExists(RepositoryError):
    """There is already something at {}."""

    borg_msgid = "Repository.PathAlreadyExists"
    modern_exit_code = 19


class ParentPathDoesNotExist(RepositoryError):
    """The parent path of the repo directory [{}] does not exist."""

    borg_msgid = "Repository.ParentPathDoesNotExist"
    modern_exit_code = 18


class PathPermissionDenied(RepositoryError):
    """Permission denied to {}."""

    borg_msgid = "Repository.PathPermissionDenied"
    modern_exit_code = 21


class NotARepository(RepositoryError):
    """{} is not a valid repository. Check repo config."""

    borg_msgid = "Repository.InvalidRepository"
    modern_exit_code = 15


class ConfigInvalid(NotARepository):
    """{} is not a valid repository. Check repo config."""

    borg_msgid = "Repository.InvalidRepositoryConfig"

    def __init__(self, location: str, config_name: str, reason: str) -> None:
        super().__init__(f"{location} ({config_name}: {reason})")
        self.reason = reason
        """What is wrong with the config, without the location (for the copy's messages)."""


class UnsupportedRepositoryVersion(RepositoryError):
    """Repository {} has format version {}; this hoard understands up to {}. Upgrade hoard."""

    modern_exit_code = 16  # Borg's InvalidRepositoryConfig ("version ... is not supported")


class UnsupportedFeature(RepositoryError):
    """Repository requires features this hoard does not have: {}. Upgrade hoard."""

    borg_msgid = "MandatoryFeatureUnsupported"
    modern_exit_code = 25


class IntegrityError(RepositoryError):
    """Data integrity error: {}"""

    modern_exit_code = 90

    def __init__(
        self,
        reason: str,
        *,
        object_id: bytes | None = None,
        object_type: str | None = None,
        pack: str | None = None,
    ) -> None:
        """``reason`` says what was wrong; the optional fields say with what:
        the object's id and type name (``DATA``, ``TREE``...) and the hex name
        of the pack it was read from. Callers use the fields, never the text;
        the one-line message is built from them."""
        self.reason = reason
        self.object_id = object_id
        self.object_type = object_type
        self.pack = pack
        super().__init__(_describe(reason, object_id, object_type, pack))


def _describe(
    reason: str, object_id: bytes | None, object_type: str | None, pack: str | None
) -> str:
    """``object <id> (<TYPE>) in pack <pack>: <reason>``, leaving out what is unknown."""
    where = []
    if object_id is not None:
        where.append(f"object {object_id.hex()}")
        if object_type:
            where.append(f"({object_type})")
        if pack:
            where.append(f"in pack {pack}")
    elif pack:
        where.append(f"pack {pack}")
    return f"{' '.join(where)}: {reason}" if where else reason


class PackNotFound(IntegrityError):
    """Data integrity error: {}"""

    # An IntegrityError (an indexed object cannot be read), told apart so that a
    # client drops every entry of the pack at once.


class ChunkNotFound(RepositoryError):
    """Object {} is not in the repository."""

    borg_msgid = "Repository.ObjectNotFound"
    modern_exit_code = 17

    def __init__(self, object_id: bytes, object_type: str | None = None) -> None:
        """``object_id``: the id asked for (no index entry has it); ``object_type``
        the type expected, when the caller knows it."""
        self.object_id = object_id
        self.object_type = object_type
        super().__init__(object_id.hex())


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


class LockLost(LockError):
    """Lost the lock {}: it {}; {}."""

    # Found while the operation runs (refresh or a check before committing):
    # the operation stops; not Borg 1.4's (it has no lock refresh), so its
    # modern code is NotLocked's, the error it would otherwise get at release.
    modern_exit_code = 74

    def __init__(self, where: str, what: str, consequence: str) -> None:
        super().__init__(where, what, consequence)
        self.where = where
        self.what = what


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

    borg_msgid = "KeyfileNotFoundError"
    modern_exit_code = 42


class KeyfileInvalid(CryptoKeyError):
    """Invalid key data for repository {} found in {}."""

    borg_msgid = "KeyfileInvalidError"
    modern_exit_code = 40


class KeyfileMismatch(KeyfileInvalid):
    """Mismatch between repository {} and key file {}."""

    borg_msgid = "KeyfileMismatchError"
    modern_exit_code = 41


class KeyDamaged(KeyfileInvalid):
    """The key of repository {} in {} is damaged ({}). Restore it from a backup with 'hoard key import'."""  # noqa: E501

    @property
    def reason(self) -> str:
        return str(self.args[2])


class RepoKeyNotFound(CryptoKeyError):
    """No key entry found in the config of repository {}."""

    borg_msgid = "RepoKeyNotFoundError"
    modern_exit_code = 44


class UnsupportedKeyFormat(CryptoKeyError):
    """Your key uses an unsupported format: {}"""

    modern_exit_code = 48  # Borg's UnsupportedPayloadError (Borg 1.4 has no code 49)


class EncryptionModeInvalid(CryptoKeyError):
    """Unknown encryption mode {!r}; choose one of {}."""


# --- user input --------------------------------------------------------------------


class InputError(HoardError):
    """{}"""


class UsageError(InputError):
    """{}

    A command-line mistake Borg reports through argparse (``parser.error``):
    the usage line, then ``hoard: error: MESSAGE``, exit 2 (cli/main.py)."""


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


class InvalidArchivePath(InputError):
    """{!r} cannot be an archive path: {}"""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.reason = reason


class LocationError(InputError):
    """Invalid location format: "{}" ({})"""


class InvalidFormat(InputError):
    """Invalid --format {!r}: {}"""


# --- archives ------------------------------------------------------------------------


class ArchiveError(HoardError):
    """Archive error: {}"""


class ArchiveAlreadyExists(ArchiveError):
    """Archive {} already exists"""

    borg_msgid = "Archive.AlreadyExists"
    modern_exit_code = 30


class ArchiveDoesNotExist(ArchiveError):
    """Archive {} does not exist"""

    borg_msgid = "Archive.DoesNotExist"
    modern_exit_code = 31


class ArchiveRecordNotFound(ArchiveDoesNotExist):
    """Archive record {} does not exist"""

    borg_msgid = "Archive.DoesNotExist"

    def __init__(self, archive_id: bytes) -> None:
        """A record asked for by id (deleted meanwhile, or never there): not
        a ``ChunkNotFound``, which is about objects in packs."""
        self.archive_id = archive_id
        super().__init__(archive_id.hex())


class ExtractIncomplete(ArchiveError):
    """Extraction incomplete: {} damaged item(s), named above (lost byte ranges are zero-filled)."""

    # Raised once at the end of ``extract``, after everything readable was
    # restored; each damaged file was logged as a DamagedFileError line.


class DamagedFileError(ArchiveError):
    """{}: damaged, {}: {}"""

    # Never raised: the logged line (and --log-json msgid) for one damaged
    # file or directory that ``extract`` went past.


class CheckFoundDamage(RepositoryError):
    """The check found damage: {}."""


class CompactRefused(RepositoryError):
    """Compaction refused, nothing was deleted: {}"""


class CompactAborted(RepositoryError):
    """Compaction stopped: {} What was done is consistent; run compact again."""


class AppendOnlyCompactRefused(CompactRefused):
    """Repository {} is append-only: nothing is ever deleted there, so compact refuses. Switch append-only off first ('hoard config REPO append_only 0')."""  # noqa: E501 - one-line message


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


class FileReaderFailed(HoardError):
    """A file reader process of create failed: {}"""


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

    borg_msgid = "BackupError"
    modern_exit_code = 102


class BackupOSWarning(BackupWarning):
    """{}: {}"""

    borg_msgid = "BackupOSError"
    modern_exit_code = 104


class BackupRaceConditionWarning(BackupWarning):
    """{}: file type or inode changed while we backed it up (race condition, skipped file)"""

    borg_msgid = "BackupRaceConditionError"
    modern_exit_code = 103


class BackupPermissionWarning(BackupOSWarning):
    """{}: {}"""

    borg_msgid = "BackupPermissionError"
    modern_exit_code = 105


class BackupIOWarning(BackupOSWarning):
    """{}: {}"""

    borg_msgid = "BackupIOError"
    modern_exit_code = 106


class BackupFileNotFoundWarning(BackupOSWarning):
    """{}: {}"""

    borg_msgid = "BackupFileNotFoundError"
    modern_exit_code = 107


class ArchivePathCollisionWarning(BackupWarning):
    """{}: not archived: archive path '{}' is taken by {}"""

    # Two sources map to one archive path (``/a/./f`` and ``/b/./f``). Borg
    # stores both items (the last wins at extract); a hoard directory holds a
    # name once, so the second is reported instead of replacing the first.


class BrokenFileWarning(HoardWarning):
    """{}: file is broken: chunks were lost, 'hoard check --repair' replaced them by zeros."""


class RootObjectDamagedWarning(HoardWarning):
    """Repository {}: {}; its copy was used instead. Run 'hoard check --repair'."""


class CompactWarning(HoardWarning):
    """{}"""


class CheckRepairedWarning(HoardWarning):
    """Check: {}."""


class PacksLostWarning(HoardWarning):
    """{} pack(s) listed by the index are missing or truncated ({}); this backup stores their data again. Run 'hoard check --repair'."""  # noqa: E501 - one line


class ArchiveRecordDamagedWarning(HoardWarning):
    """Archive record {} is damaged and skipped ({}); run 'hoard check --repair'."""


class ArchiveNotFoundWarning(HoardWarning):
    """Archive {} not found ({}/{})."""


class ArchiveNotRestoredWarning(HoardWarning):
    """Archive {} not restored: an archive of that name exists (rename it first)."""
