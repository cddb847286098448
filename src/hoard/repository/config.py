"""The repository ``config`` object: format version, identity and feature flags.

``config`` is the only plaintext, human-readable object of a repository (see
docs/design/repository-format.md, "config"). It is read before anything else,
so it decides whether this hoard may touch the repository at all: a newer
format version or a mandatory feature this hoard lacks for the operation at
hand makes it refuse, instead of misreading data a newer client wrote.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from hoard.errors import (
    ConfigInvalid,
    ObjectNotFound,
    RepositoryDoesNotExist,
    UnsupportedFeature,
    UnsupportedRepositoryVersion,
)
from hoard.storage.base import Storage

CONFIG_NAME = "config"
CONFIG_COPY_NAME = "config.copy"
"""A second copy of ``config``: without a readable config nothing opens the
repository, so one damaged sector must not cost the whole repository."""
CONFIG_VERSION = 1
"""The repository format version this hoard writes and the newest it reads."""

SUPPORTED_FEATURES: frozenset[str] = frozenset()
"""Mandatory feature names this hoard implements (none yet: format version 1 as is)."""

OPERATIONS = ("read", "write", "check", "delete")
"""Operations a repository may demand features for; see ``RepoConfig.check_features``."""

DEFAULT_PACK_SIZE = 16 * 1024 * 1024
MIN_PACK_SIZE = 1024
MAX_PACK_SIZE = 2**31
"""Offsets in index entries are u32; 2 GiB keeps every blob offset well inside that."""

ID_SIZE = 32

_KNOWN_KEYS = frozenset(
    {
        "version",
        "id",
        "features",
        "append_only",
        "storage_quota",
        "pack_size",
        "key_mode",
        "additional_free_space",
    }
)


@dataclass(frozen=True)
class RepoConfig:
    """The parsed ``config`` object.

    ``key_mode`` is free-form text owned by the objects layer (for example
    ``"repokey-chacha20-poly1305"``); the repository layer stores it and never
    interprets it. ``extra`` keeps top-level keys a newer hoard added that this
    one does not know, so rewriting the config never drops them.
    """

    id: bytes
    version: int = CONFIG_VERSION
    features: dict[str, list[str]] = field(default_factory=dict)
    append_only: bool = False
    storage_quota: int | None = None
    pack_size: int = DEFAULT_PACK_SIZE
    key_mode: str = "none"
    extra: dict[str, Any] = field(default_factory=dict)
    additional_free_space: int = 0
    """Bytes that must stay free on the repository's filesystem (Borg's option)."""

    def __post_init__(self) -> None:
        if len(self.id) != ID_SIZE:
            raise ValueError(f"repository id must be {ID_SIZE} bytes, not {len(self.id)}")
        if not MIN_PACK_SIZE <= self.pack_size <= MAX_PACK_SIZE:
            raise ValueError(
                f"pack_size {self.pack_size} outside [{MIN_PACK_SIZE}, {MAX_PACK_SIZE}]"
            )
        if self.storage_quota is not None and self.storage_quota < 0:
            raise ValueError(f"storage_quota must not be negative: {self.storage_quota}")
        if self.additional_free_space < 0:
            raise ValueError(
                f"additional_free_space must not be negative: {self.additional_free_space}"
            )

    @classmethod
    def new(
        cls,
        *,
        pack_size: int = DEFAULT_PACK_SIZE,
        append_only: bool = False,
        storage_quota: int | None = None,
        key_mode: str = "none",
    ) -> RepoConfig:
        """A config for a fresh repository with a random 32-byte id."""
        return cls(
            id=secrets.token_bytes(ID_SIZE),
            pack_size=pack_size,
            append_only=append_only,
            storage_quota=storage_quota,
            key_mode=key_mode,
        )

    def to_json(self) -> bytes:
        """Serialize as indented JSON with sorted keys (stable, diff-friendly)."""
        doc: dict[str, Any] = dict(self.extra)
        doc.update(
            version=self.version,
            id=self.id.hex(),
            features={op: sorted(names) for op, names in self.features.items()},
            append_only=self.append_only,
            storage_quota=self.storage_quota,
            pack_size=self.pack_size,
            key_mode=self.key_mode,
            additional_free_space=self.additional_free_space,
        )
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, location: str) -> RepoConfig:
        """Parse config bytes; ``location`` only names the repository in errors.

        Raises UnsupportedRepositoryVersion for a version above CONFIG_VERSION
        (checked first, so a newer format with other fields still says
        "upgrade hoard"), NotARepository for anything malformed.
        """
        doc = _decode_document(data, location)
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise _invalid(location, f"bad version {version!r}")
        if version > CONFIG_VERSION:
            raise UnsupportedRepositoryVersion(location, version, CONFIG_VERSION)
        try:
            return cls(
                id=_parse_id(doc.get("id")),
                version=version,
                features=_parse_features(doc.get("features", {})),
                append_only=_typed(doc, "append_only", bool, False),
                storage_quota=_parse_quota(doc.get("storage_quota")),
                pack_size=_parse_int(doc.get("pack_size", DEFAULT_PACK_SIZE), "pack_size"),
                key_mode=_typed(doc, "key_mode", str, "none"),
                extra={k: v for k, v in doc.items() if k not in _KNOWN_KEYS},
                additional_free_space=_parse_int(
                    doc.get("additional_free_space", 0), "additional_free_space"
                ),
            )
        except ValueError as exc:
            raise _invalid(location, str(exc)) from None

    @classmethod
    def load(cls, storage: Storage, operation: str = "read") -> RepoConfig:
        """Read and validate ``config`` for ``operation`` (one of OPERATIONS);
        see ``load_config``, which also says what was wrong with either copy."""
        return load_config(storage, operation).config

    def save(self, storage: Storage, *, overwrite: bool = False) -> None:
        """Store ``config`` and its copy durably; ObjectExists unless ``overwrite``.

        A new repository gets ``config`` first (its existence is what makes
        the directory a repository, and ObjectExists there means someone was
        first); a change rewrites the copy first, so a crash in between
        leaves the old ``config`` in force and only a stale copy, which
        ``check`` reports and ``check --repair`` refreshes.
        """
        data = self.to_json()
        names = [CONFIG_NAME, CONFIG_COPY_NAME]
        for name in reversed(names) if overwrite else names:
            storage.store(name, data, overwrite=overwrite)

    def check_features(self, operation: str) -> None:
        """Raise UnsupportedFeature if ``operation`` needs a feature we lack.

        Features are listed per operation so that, say, a feature that only
        changes how data is deleted still lets an older hoard read and write.
        Feature lists for operations this hoard does not know are ignored.
        """
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {OPERATIONS}")
        missing = sorted(set(self.features.get(operation, [])) - SUPPORTED_FEATURES)
        if missing:
            raise UnsupportedFeature(", ".join(missing))


@dataclass(frozen=True)
class ConfigLoad:
    """A loaded config and what was wrong with its two stored copies.

    ``damaged`` is set when ``config`` itself could not be used and its copy
    was (the repository works, but needs ``check --repair``); ``copy_problem``
    when the copy is missing, damaged or differs from ``config`` (which is
    then in force: a hand edit is far likelier than a bit flip that still
    leaves valid settings).
    """

    config: RepoConfig
    damaged: str | None = None
    copy_problem: str | None = None


def load_config(storage: Storage, operation: str = "read") -> ConfigLoad:
    """Read ``config`` (or, when it is missing or damaged, its copy) for ``operation``.

    Raises RepositoryDoesNotExist when the storage holds no object at all
    (nothing was ever created there), NotARepository when it holds objects
    but neither copy of the config is usable (some other directory, or both
    damaged: the message is about ``config``), UnsupportedRepositoryVersion
    for a newer format (never answered from the copy), and the errors of
    ``check_features``.
    """
    main = _load_optional(storage, CONFIG_NAME)
    copy = _load_optional(storage, CONFIG_COPY_NAME)
    if main is None and copy is None:
        if _is_empty(storage):
            raise RepositoryDoesNotExist(storage.location)
        raise _invalid(storage.location, "no config object")
    loaded = _choose(storage.location, main, copy)
    loaded.config.check_features(operation)
    return loaded


def _choose(location: str, main: bytes | None, copy: bytes | None) -> ConfigLoad:
    main_config, main_error = _parse_optional(main, location)
    copy_config, copy_error = _parse_optional(copy, location)
    if main_config is None:
        if copy_config is None:
            error = main_error or copy_error
            assert error is not None
            raise error
        reason = "missing" if main is None else f"damaged ({_reason(main_error)})"
        return ConfigLoad(copy_config, damaged=f"{CONFIG_NAME} is {reason}")
    if copy is None:
        problem: str | None = f"{CONFIG_COPY_NAME} is missing"
    elif copy_config is None:
        problem = f"{CONFIG_COPY_NAME} is damaged ({_reason(copy_error)})"
    elif copy != main:
        problem = f"{CONFIG_COPY_NAME} differs from {CONFIG_NAME}"
    else:
        problem = None
    return ConfigLoad(main_config, copy_problem=problem)


def _reason(error: ConfigInvalid | None) -> str:
    return error.reason if error is not None else "unreadable"


def _load_optional(storage: Storage, name: str) -> bytes | None:
    try:
        return storage.load(name)
    except ObjectNotFound:
        return None


def _parse_optional(
    data: bytes | None, location: str
) -> tuple[RepoConfig | None, ConfigInvalid | None]:
    """The parsed config, or why it is not one. UnsupportedRepositoryVersion
    is raised, not returned: a newer format must never be read from a copy."""
    if data is None:
        return None, None
    try:
        return RepoConfig.from_json(data, location), None
    except ConfigInvalid as exc:
        return None, exc


def _invalid(location: str, reason: str) -> ConfigInvalid:
    return ConfigInvalid(location, CONFIG_NAME, reason)


def _is_empty(storage: Storage) -> bool:
    try:
        return next(iter(storage.list("")), None) is None
    except ObjectNotFound:
        return True


def _decode_document(data: bytes, location: str) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(location, f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid(location, "not a JSON object")
    return doc


def _parse_id(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("missing or non-text id")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"id is not hex: {value!r}") from None
    if len(raw) != ID_SIZE:
        raise ValueError(f"id must be {ID_SIZE} bytes")
    return raw


def _parse_features(value: object) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ValueError("features must be an object")
    features: dict[str, list[str]] = {}
    for op, names in value.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"features[{op!r}] must be a list of names")
        features[op] = list(names)
    return features


def _parse_int(value: object, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} must be an integer")
    return value


def _parse_quota(value: object) -> int | None:
    return None if value is None else _parse_int(value, "storage_quota")


def _typed(doc: dict[str, Any], key: str, kind: type[Any], default: Any) -> Any:
    value = doc.get(key, default)
    if not isinstance(value, kind):
        raise ValueError(f"{key} must be of type {kind.__name__}")
    return value
