"""Settings: ``CacheConfig`` is read from keyword arguments, the environment and ``.env``.

Every field is also settable as ``CACHE_<FIELD>``; the variable names of the caching guide
this API follows (``CACHE_L1_SIZE``, ``CACHE_L1_TTL``, ``REDIS_HOST``, ``REDIS_PORT``,
``REDIS_PASSWORD``, ``REDIS_URL``) are accepted as aliases.
"""

from __future__ import annotations

import warnings
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hiercache.signing import parse_signing_keys
from hiercache.topology import Topology, check_redis_url, parse_multi_host, topology_of


class CacheStrategy(str, Enum):
    """L1 eviction strategy."""

    LRU = "lru"
    LFU = "lfu"
    FIFO = "fifo"
    TTL = "ttl"
    ADAPTIVE = "adaptive"


class SerializationFormat(str, Enum):
    """How values are encoded for L2. ``pickle`` is opt-in: it runs code on load."""

    JSON = "json"
    PICKLE = "pickle"


class L2Backend(str, Enum):
    """Where L2 lives: a Redis server, an in-process Redis-compatible fake, or nowhere."""

    REDIS = "redis"
    EMBEDDED = "embedded"
    NONE = "none"


class TraceKeys(str, Enum):
    """What a span records of a cache key."""

    NONE = "none"
    HASHED = "hashed"
    PLAIN = "plain"


def _env(field: str, *aliases: str) -> AliasChoices:
    return AliasChoices(f"CACHE_{field.upper()}", *aliases)


class CacheConfig(BaseSettings):
    """All hiercache settings; an invalid value raises ``pydantic.ValidationError`` naming it."""

    model_config = SettingsConfigDict(
        env_prefix="CACHE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
        # Errors name the setting but never echo the input: it may hold a password.
        hide_input_in_errors=True,
    )

    name: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    key_prefix: str = Field("hiercache:", max_length=128)

    # L1 memory tier
    l1_max_size: int = Field(1000, ge=1, validation_alias=_env("l1_max_size", "CACHE_L1_SIZE"))
    l1_max_bytes: int | None = Field(None, ge=1)
    l1_ttl_seconds: float = Field(
        300, gt=0, validation_alias=_env("l1_ttl_seconds", "CACHE_L1_TTL")
    )
    l1_strategy: CacheStrategy = CacheStrategy.LRU
    #: Estimate online the L1 hit ratio at 1/2x, 2x, 4x and 8x the capacity (size advisor).
    l1_advisor_enabled: bool = True

    # L2 Redis tier
    l2_backend: L2Backend = L2Backend.REDIS
    redis_url: SecretStr | None = Field(None, validation_alias=_env("redis_url", "REDIS_URL"))
    redis_host: str = Field(
        "localhost", min_length=1, validation_alias=_env("redis_host", "REDIS_HOST")
    )
    redis_port: int = Field(6379, ge=1, le=65535, validation_alias=_env("redis_port", "REDIS_PORT"))
    redis_db: int = Field(0, ge=0, validation_alias=_env("redis_db", "REDIS_DB"))
    redis_password: SecretStr | None = Field(
        None, validation_alias=_env("redis_password", "REDIS_PASSWORD")
    )
    redis_ssl: bool = Field(False, validation_alias=_env("redis_ssl", "REDIS_SSL"))
    redis_ssl_ca_certs: str | None = Field(
        None, validation_alias=_env("redis_ssl_ca_certs", "REDIS_SSL_CA_CERTS")
    )
    redis_max_connections: int = Field(64, ge=1)
    l2_ttl_seconds: float = Field(3600, gt=0)
    l2_connect_timeout_seconds: float = Field(1.0, gt=0)
    l2_operation_timeout_seconds: float = Field(0.5, gt=0)
    # The circuit breaker: this many outage errors in a row open it; while open, L2 is
    # skipped and pinged in the background every l2_breaker_open_seconds.
    l2_breaker_failures: int = Field(5, ge=1)
    l2_breaker_open_seconds: float = Field(1.0, gt=0)
    #: Deprecated alias of l2_breaker_open_seconds (it used to be the re-probe interval).
    l2_retry_interval_seconds: float | None = Field(None, gt=0)

    # Encoding
    compression_enabled: bool = True
    compression_threshold: int = Field(1024, ge=0)
    compression_level: int = Field(3, ge=1, le=22)
    serialization_format: SerializationFormat = SerializationFormat.JSON
    signing_key: SecretStr | None = None  # pickle HMAC key(s): "new,old" or a JSON list
    max_value_bytes: int = Field(16 * 1024 * 1024, ge=1)

    # Warming
    warming_enabled: bool = True
    warming_batch_size: int = Field(100, ge=1)
    warming_concurrency: int = Field(10, ge=1)
    warming_interval_seconds: float = Field(300, gt=0)

    # Write modes
    hierarchical_caching: bool = True
    write_through: bool = False
    write_behind: bool = True
    write_behind_queue_size: int = Field(10_000, ge=1)
    write_behind_batch_size: int = Field(500, ge=1)
    #: How long close() (and the shutdown helpers) wait for queued writes to reach Redis.
    write_behind_drain_seconds: float = Field(5.0, ge=0)
    #: Deletes and invalidations kept during an L2 outage, to apply after recovery.
    l2_deferred_max_size: int = Field(10_000, ge=1)

    # Loader resilience (each also a per-call argument of get_or_load, cache_operation and
    # cached_operation; RFC 5861's names). The windows travel with the value (frame meta).
    stale_if_error_seconds: float = Field(0.0, ge=0, le=4_000_000)
    stale_while_revalidate_seconds: float = Field(0.0, ge=0, le=4_000_000)
    load_timeout_seconds: float | None = Field(None, gt=0)
    load_soft_timeout_seconds: float | None = Field(None, gt=0)
    ttl_jitter: float = Field(0.0, ge=0, lt=1)
    cache_none_ttl_seconds: float | None = Field(None, ge=0)
    distributed_lock: bool = False
    lock_timeout_seconds: float = Field(5.0, gt=0)

    # Many instances: L1 coherence over Redis pub/sub (the backplane)
    backplane_enabled: bool = True
    backplane_max_staleness_seconds: float = Field(5.0, gt=0)

    # Telemetry
    telemetry_enabled: bool = True
    metrics_prefix: str = Field("hiercache", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    l1_latency_sample_every: int = Field(64, ge=1)
    trace_keys: TraceKeys = TraceKeys.NONE
    trace_all_operations: bool = False

    @field_validator(
        "l1_strategy", "serialization_format", "trace_keys", "l2_backend", mode="before"
    )
    @classmethod
    def _lower_enum(cls, value: Any) -> Any:
        if isinstance(value, str) and not isinstance(value, Enum):
            return value.strip().lower()
        return value

    @field_validator("signing_key")
    @classmethod
    def _check_signing_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_signing_keys(value.get_secret_value())  # raises without echoing the key
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:  # one server, a Cluster or a Sentinel service (topology.py)
            check_redis_url(value.get_secret_value())  # never echoes the password
        return value

    @model_validator(mode="after")
    def _deprecated_retry_interval(self) -> CacheConfig:
        if self.l2_retry_interval_seconds is not None:
            warnings.warn(
                "l2_retry_interval_seconds is deprecated: use l2_breaker_open_seconds",
                DeprecationWarning,
                stacklevel=2,
            )
            if "l2_breaker_open_seconds" not in self.model_fields_set:
                self.l2_breaker_open_seconds = self.l2_retry_interval_seconds
        return self

    @model_validator(mode="after")
    def _write_mode(self) -> CacheConfig:
        if self.write_through and self.write_behind:
            if "write_behind" in self.model_fields_set:
                raise ValueError("write_through and write_behind are mutually exclusive")
            # Asking for write-through overrides the write-behind default.
            self.write_behind = False
        return self

    @property
    def redis_target(self) -> str:
        """Where L2 lives, without credentials: safe to log."""
        if self.l2_backend is not L2Backend.REDIS:
            return str(self.l2_backend.value)
        if self.redis_url is not None:
            url = self.redis_url.get_secret_value()
            if topology_of(url) is not Topology.STANDALONE:
                return parse_multi_host(url).target
            parts = urlsplit(url)
            return f"{parts.scheme}://{parts.hostname or ''}:{parts.port or 6379}{parts.path}"
        scheme = "rediss" if self.redis_ssl else "redis"
        return f"{scheme}://{self.redis_host}:{self.redis_port}/{self.redis_db}"
