"""CacheConfig: seed defaults, environment / .env loading, validation, secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from hiercache import CacheConfig, CacheStrategy, HierarchicalCacheManager, SerializationFormat
from hiercache.settings import L2Backend

ENV_NAMES = ("CACHE_L1_SIZE", "CACHE_L1_TTL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CACHE_*/REDIS_* variable and no .env leaks in from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(("CACHE_", "REDIS_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# The seed's "Default Configuration" example, with serialization_format's default
# changed from "pickle" to "json" (pickle is opt-in).
SEED_DEFAULTS = {
    "l1_max_size": 1000,
    "l1_ttl_seconds": 300,
    "l1_strategy": CacheStrategy.LRU,
    "redis_host": "localhost",
    "redis_port": 6379,
    "redis_db": 0,
    "redis_password": None,
    "l2_ttl_seconds": 3600,
    "compression_enabled": True,
    "compression_threshold": 1024,
    "serialization_format": SerializationFormat.JSON,
    "warming_enabled": True,
    "warming_batch_size": 100,
    "warming_interval_seconds": 300,
    "hierarchical_caching": True,
    "write_through": False,
    "write_behind": True,
}


@pytest.mark.parametrize(("field", "expected"), SEED_DEFAULTS.items())
def test_seed_default(field: str, expected: object) -> None:
    config = CacheConfig()
    assert field in CacheConfig.model_fields
    assert getattr(config, field) == expected


def test_seed_fields_without_default_listed_exist() -> None:
    # Used by the seed's "Distributed Cache Coordination" example.
    assert CacheConfig().redis_ssl is False


def test_seed_default_configuration_is_accepted_verbatim() -> None:
    config = CacheConfig(
        l1_max_size=1000,
        l1_ttl_seconds=300,
        l1_strategy=CacheStrategy.LRU,
        redis_host="localhost",
        redis_port=6379,
        redis_db=0,
        redis_password=None,
        l2_ttl_seconds=3600,
        compression_enabled=True,
        compression_threshold=1024,
        serialization_format="pickle",
        warming_enabled=True,
        warming_batch_size=100,
        warming_interval_seconds=300,
        hierarchical_caching=True,
        write_through=False,
        write_behind=True,
    )
    assert config.serialization_format is SerializationFormat.PICKLE


def test_strategy_strings_are_case_insensitive() -> None:
    assert CacheConfig(l1_strategy="LFU").l1_strategy is CacheStrategy.LFU
    assert CacheConfig(l1_strategy=" adaptive ").l1_strategy is CacheStrategy.ADAPTIVE


# -- environment -------------------------------------------------------------------
def test_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_L1_MAX_SIZE", "42")
    monkeypatch.setenv("CACHE_L1_STRATEGY", "lfu")
    monkeypatch.setenv("CACHE_COMPRESSION_ENABLED", "false")
    monkeypatch.setenv("CACHE_REDIS_HOST", "cache.internal")
    monkeypatch.setenv("CACHE_L2_TTL_SECONDS", "60")
    config = CacheConfig()
    assert config.l1_max_size == 42
    assert config.l1_strategy is CacheStrategy.LFU
    assert config.compression_enabled is False
    assert config.redis_host == "cache.internal"
    assert config.l2_ttl_seconds == 60


def test_keyword_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_L1_MAX_SIZE", "42")
    assert CacheConfig(l1_max_size=7).l1_max_size == 7


def test_dotenv_file(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "CACHE_L1_MAX_SIZE=77\nCACHE_NAME=from-dotenv\nREDIS_PORT=6390\n", encoding="utf-8"
    )
    config = CacheConfig()
    assert config.l1_max_size == 77
    assert config.name == "from-dotenv"
    assert config.redis_port == 6390


def test_environment_beats_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("CACHE_L1_MAX_SIZE=77\n", encoding="utf-8")
    monkeypatch.setenv("CACHE_L1_MAX_SIZE", "88")
    assert CacheConfig().l1_max_size == 88


def test_seed_alias_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_L1_SIZE", "5000")
    monkeypatch.setenv("CACHE_L1_TTL", "600")
    monkeypatch.setenv("REDIS_HOST", "redis.example")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_PASSWORD", "hunter2")
    config = CacheConfig()
    assert config.l1_max_size == 5000
    assert config.l1_ttl_seconds == 600
    assert config.redis_host == "redis.example"
    assert config.redis_port == 6380
    assert isinstance(config.redis_password, SecretStr)
    assert config.redis_password.get_secret_value() == "hunter2"


def test_redis_url_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache.example:6381/2")
    config = CacheConfig()
    assert config.redis_url is not None
    assert config.redis_url.get_secret_value() == "redis://cache.example:6381/2"
    assert config.redis_target == "redis://cache.example:6381/2"


def test_field_names_work_as_keywords() -> None:
    # populate_by_name: the python names are accepted next to the env aliases.
    config = CacheConfig(l1_max_size=3, l1_ttl_seconds=4, redis_port=1234)
    assert (config.l1_max_size, config.l1_ttl_seconds, config.redis_port) == (3, 4, 1234)


# -- validation --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"l1_ttl_seconds": -1}, "l1_ttl_seconds"),
        ({"l2_ttl_seconds": -5}, "l2_ttl_seconds"),
        ({"l1_ttl_seconds": 0}, "l1_ttl_seconds"),
        ({"l1_strategy": "random"}, "l1_strategy"),
        ({"serialization_format": "yaml"}, "serialization_format"),
        ({"redis_port": 0}, "redis_port"),
        ({"redis_port": 65536}, "redis_port"),
        ({"compression_threshold": -1}, "compression_threshold"),
        ({"l1_max_size": 0}, "l1_max_size"),
        ({"redis_url": "http://example.com"}, "redis_url"),
    ],
)
def test_invalid_values_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        CacheConfig(**kwargs)
    errors = info.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == (field,)
    assert str(info.value).splitlines()[1] == field


def test_invalid_environment_value_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_PORT", "70000")
    with pytest.raises(ValidationError, match=r"(?i)redis_port"):
        CacheConfig()


# -- secrets -----------------------------------------------------------------------
SECRET = "s3cr3t-pa55word"


def test_password_is_secret_and_never_printed() -> None:
    config = CacheConfig(redis_password=SECRET, redis_url=f"redis://:{SECRET}@db.example:6379/1")
    assert isinstance(config.redis_password, SecretStr)
    assert isinstance(config.redis_url, SecretStr)
    for text in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert SECRET not in text
    assert SECRET not in config.redis_target
    assert config.redis_target == "redis://db.example:6379/1"
    manager = HierarchicalCacheManager(config)
    assert SECRET not in repr(manager)


def test_password_from_environment_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    config = CacheConfig()
    assert SECRET not in repr(config)
    assert SECRET not in config.model_dump_json()
    assert config.redis_password is not None
    assert config.redis_password.get_secret_value() == SECRET


def test_redis_target_without_url() -> None:
    assert CacheConfig().redis_target == "redis://localhost:6379/0"
    assert (
        CacheConfig(redis_host="h", redis_port=7000, redis_db=3, redis_ssl=True).redis_target
        == "rediss://h:7000/3"
    )
    assert CacheConfig(l2_backend="embedded").redis_target == "embedded"
    assert CacheConfig(l2_backend="none").l2_backend is L2Backend.NONE


# -- write modes -------------------------------------------------------------------
def test_write_through_alone_turns_write_behind_off() -> None:
    config = CacheConfig(write_through=True)
    assert config.write_through is True
    assert config.write_behind is False


def test_write_through_from_environment_turns_write_behind_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CACHE_WRITE_THROUGH", "true")
    config = CacheConfig()
    assert (config.write_through, config.write_behind) == (True, False)


def test_write_through_and_write_behind_both_true_is_an_error() -> None:
    with pytest.raises(ValidationError, match="write_through and write_behind"):
        CacheConfig(write_through=True, write_behind=True)


def test_write_behind_can_be_switched_off() -> None:
    config = CacheConfig(write_behind=False)
    assert (config.write_through, config.write_behind) == (False, False)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://:hunter2-secret@cache.internal:6379/0", "must start with redis://"),
        ("redis://:hunter2-secret@cache.internal:70000/0", "port outside 1-65535"),
    ],
)
def test_a_bad_redis_url_is_refused_without_echoing_its_password(
    url: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError) as kwargs_error:
        CacheConfig(redis_url=url)
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ValidationError) as env_error:
        CacheConfig()
    for error in (kwargs_error.value, env_error.value):
        text = str(error) + repr(error) + repr(error.errors(include_input=False))
        assert message in text
        assert "redis_url" in text or "REDIS_URL" in text
        assert "hunter2-secret" not in text
