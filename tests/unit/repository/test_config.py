"""RepoConfig: round trip, and refusal of what this hoard cannot handle."""

from __future__ import annotations

import json

import pytest

from hoard.errors import (
    NotARepository,
    RepositoryDoesNotExist,
    UnsupportedFeature,
    UnsupportedRepositoryVersion,
)
from hoard.repository import config as config_module
from hoard.repository.config import (
    CONFIG_COPY_NAME,
    CONFIG_NAME,
    CONFIG_VERSION,
    ConfigLoad,
    RepoConfig,
    load_config,
)
from hoard.storage.base import Storage


def _doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = json.loads(RepoConfig.new().to_json())
    doc.update(changes)
    return doc


def _store(storage: Storage, doc: object) -> None:
    storage.store(CONFIG_NAME, json.dumps(doc).encode(), overwrite=True)


def test_round_trip(storage: Storage) -> None:
    config = RepoConfig.new(
        pack_size=4096, append_only=True, storage_quota=10**9, key_mode="repokey-aes"
    )
    config.save(storage)
    loaded = RepoConfig.load(storage)
    assert loaded == config
    assert len(loaded.id) == 32


def test_json_is_human_readable_and_sorted() -> None:
    text = RepoConfig.new().to_json().decode()
    doc = json.loads(text)
    assert list(doc) == sorted(doc)
    assert doc["version"] == CONFIG_VERSION
    assert set(doc) == {
        "version",
        "id",
        "features",
        "append_only",
        "storage_quota",
        "pack_size",
        "key_mode",
        "additional_free_space",
    }
    assert "\n  " in text  # indented


def test_unknown_top_level_keys_survive_a_rewrite(storage: Storage) -> None:
    _store(storage, _doc(future_thing={"a": 1}))
    loaded = RepoConfig.load(storage)
    assert loaded.extra == {"future_thing": {"a": 1}}
    assert json.loads(loaded.to_json())["future_thing"] == {"a": 1}


def test_missing_in_empty_storage_is_does_not_exist(storage: Storage) -> None:
    with pytest.raises(RepositoryDoesNotExist):
        RepoConfig.load(storage)


def test_missing_beside_other_objects_is_not_a_repository(storage: Storage) -> None:
    storage.store("somefile", b"x")
    with pytest.raises(NotARepository):
        RepoConfig.load(storage)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"text"',
    ],
)
def test_unparsable_is_not_a_repository(storage: Storage, raw: bytes) -> None:
    storage.store(CONFIG_NAME, raw)
    with pytest.raises(NotARepository, match="config"):
        RepoConfig.load(storage)


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 0},
        {"version": "1"},
        {"version": True},
        {"id": "zz" * 32},
        {"id": "ab" * 31},
        {"id": 5},
        {"features": ["x"]},
        {"features": {"read": "x"}},
        {"append_only": "yes"},
        {"pack_size": 10},
        {"pack_size": 1.5},
        {"storage_quota": -1},
        {"key_mode": 3},
    ],
)
def test_malformed_fields_are_not_a_repository(
    storage: Storage, changes: dict[str, object]
) -> None:
    _store(storage, _doc(**changes))
    with pytest.raises(NotARepository):
        RepoConfig.load(storage)


def test_missing_version_is_not_a_repository(storage: Storage) -> None:
    doc = _doc()
    del doc["version"]
    _store(storage, doc)
    with pytest.raises(NotARepository):
        RepoConfig.load(storage)


def test_newer_version_is_refused_before_other_checks(storage: Storage) -> None:
    # A future format may change other fields too: the version decides first.
    _store(storage, {"version": CONFIG_VERSION + 1, "id": 7})
    with pytest.raises(UnsupportedRepositoryVersion) as info:
        RepoConfig.load(storage)
    assert info.value.args[1:] == (CONFIG_VERSION + 1, CONFIG_VERSION)


def test_unknown_mandatory_feature_refuses_that_operation_only(storage: Storage) -> None:
    _store(storage, _doc(features={"delete": ["fancy-compaction"], "write": []}))
    for operation in ("read", "write", "check"):
        RepoConfig.load(storage, operation)
    with pytest.raises(UnsupportedFeature, match="fancy-compaction"):
        RepoConfig.load(storage, "delete")


def test_supported_feature_is_accepted(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    _store(storage, _doc(features={"read": ["sparse-packs"]}))
    with pytest.raises(UnsupportedFeature):
        RepoConfig.load(storage, "read")
    monkeypatch.setattr(config_module, "SUPPORTED_FEATURES", frozenset({"sparse-packs"}))
    assert RepoConfig.load(storage, "read").features == {"read": ["sparse-packs"]}


def test_unknown_operation_is_a_programming_error(storage: Storage) -> None:
    RepoConfig.new().save(storage)
    with pytest.raises(ValueError, match="operation"):
        RepoConfig.load(storage, "frobnicate")


def test_invalid_settings_are_refused_at_creation() -> None:
    with pytest.raises(ValueError, match="pack_size"):
        RepoConfig.new(pack_size=100)
    with pytest.raises(ValueError, match="storage_quota"):
        RepoConfig.new(storage_quota=-5)
    with pytest.raises(ValueError, match="id"):
        RepoConfig(id=b"short")


# --- the copy -------------------------------------------------------------------------------


def test_save_writes_config_and_its_copy(storage: Storage) -> None:
    config = RepoConfig.new(pack_size=4096)
    config.save(storage)
    assert storage.load(CONFIG_NAME) == storage.load(CONFIG_COPY_NAME) == config.to_json()
    loaded = load_config(storage)
    assert loaded == ConfigLoad(config)


@pytest.mark.parametrize("damage", [b"{not json", b"[]", None])
def test_damaged_config_is_read_from_its_copy(storage: Storage, damage: bytes | None) -> None:
    config = RepoConfig.new(pack_size=4096, append_only=True)
    config.save(storage)
    if damage is None:
        storage.delete(CONFIG_NAME)
    else:
        storage.store(CONFIG_NAME, damage, overwrite=True)
    loaded = load_config(storage)
    assert loaded.config == config
    assert loaded.damaged is not None and loaded.damaged.startswith("config is ")
    assert ("missing" in loaded.damaged) == (damage is None)


def test_hand_edited_config_wins_over_its_stale_copy(storage: Storage) -> None:
    RepoConfig.new(pack_size=4096).save(storage)
    _store(storage, _doc(pack_size=8192, id=json.loads(storage.load(CONFIG_NAME))["id"]))
    loaded = load_config(storage)
    assert loaded.config.pack_size == 8192
    assert loaded.damaged is None
    assert loaded.copy_problem == "config.copy differs from config"


def test_damaged_copy_is_reported(storage: Storage) -> None:
    RepoConfig.new().save(storage)
    storage.store(CONFIG_COPY_NAME, b"\x00garbage", overwrite=True)
    loaded = load_config(storage)
    assert loaded.copy_problem is not None and "damaged" in loaded.copy_problem


def test_both_damaged_is_not_a_repository(storage: Storage) -> None:
    RepoConfig.new().save(storage)
    for name in (CONFIG_NAME, CONFIG_COPY_NAME):
        storage.store(name, b"{", overwrite=True)
    with pytest.raises(NotARepository, match="not JSON"):
        load_config(storage)


def test_newer_version_is_never_answered_from_the_copy(storage: Storage) -> None:
    RepoConfig.new().save(storage)
    _store(storage, _doc(version=CONFIG_VERSION + 1))
    with pytest.raises(UnsupportedRepositoryVersion):
        load_config(storage)


def test_rewrite_changes_both(storage: Storage) -> None:
    config = RepoConfig.new()
    config.save(storage)
    changed = RepoConfig(id=config.id, append_only=True)
    changed.save(storage, overwrite=True)
    assert load_config(storage) == ConfigLoad(changed)
