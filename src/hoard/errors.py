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


class HoardError(Exception):
    """Error: {}"""

    exit_code = 2
    modern_exit_code = 2
    traceback = False

    @property
    def msgid(self) -> str:
        """Stable identifier for --log-json records (the class name, as Borg)."""
        return type(self).__qualname__

    def get_message(self) -> str:
        template = (type(self).__doc__ or "Error: {}").strip().splitlines()[0]
        try:
            return template.format(*self.args)
        except (IndexError, KeyError):
            return f"{template} {self.args!r}"

    def __str__(self) -> str:
        return self.get_message()


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

    modern_exit_code = 2


# --- repository ----------------------------------------------------------------


class RepositoryError(HoardError):
    """Repository error: {}"""


class RepositoryDoesNotExist(RepositoryError):
    """Repository {} does not exist."""

    modern_exit_code = 13


class RepositoryAlreadyExists(RepositoryError):
    """A repository already exists at {}."""

    modern_exit_code = 10


class NotARepository(RepositoryError):
    """{} is not a valid repository. Check repo config."""

    modern_exit_code = 15


class UnsupportedRepositoryVersion(RepositoryError):
    """Repository {} has format version {}; this hoard understands up to {}. Upgrade hoard."""

    modern_exit_code = 15


class UnsupportedFeature(RepositoryError):
    """Repository requires features this hoard does not have: {}. Upgrade hoard."""

    modern_exit_code = 25


class IntegrityError(RepositoryError):
    """Data integrity error: {}"""

    modern_exit_code = 90


class ChunkNotFound(RepositoryError):
    """Object {} is not in the repository."""

    modern_exit_code = 17


# --- keys and crypto -------------------------------------------------------------


class KeyError_(HoardError):  # noqa: N818 - "KeyError" would shadow the builtin
    """Key error: {}"""


class PassphraseWrong(KeyError_):
    """passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND or via BORG_PASSPHRASE_FD is incorrect."""

    modern_exit_code = 52


class PasswordRetriesExceeded(KeyError_):
    """exceeded the maximum password retries"""

    modern_exit_code = 53


class NoPassphraseFailure(KeyError_):
    """can not acquire a passphrase: {}"""

    modern_exit_code = 50


class PasscommandFailure(KeyError_):
    """passcommand supplied in BORG_PASSCOMMAND failed: {}"""

    modern_exit_code = 51


class KeyfileNotFound(KeyError_):
    """No key file for repository {} found in {}."""

    modern_exit_code = 42


class KeyfileInvalid(KeyError_):
    """Invalid key file for repository {} found in {}."""

    modern_exit_code = 40


class KeyfileMismatch(KeyfileInvalid):
    """Mismatch between repository {} and key file {}."""

    modern_exit_code = 41


class RepoKeyNotFound(KeyError_):
    """No key entry found in the config of repository {}."""

    modern_exit_code = 44


class UnsupportedKeyFormat(KeyError_):
    """Your key uses an unsupported format: {}"""

    modern_exit_code = 49


class EncryptionModeInvalid(KeyError_):
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
