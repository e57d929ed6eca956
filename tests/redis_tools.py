"""Helpers for tests that look inside the real Redis."""

from __future__ import annotations

from typing import Any

import redis

from hiercache import CacheConfig

#: The default key prefix: what a cache key is called in Redis.
PREFIX = "hiercache:"


def config(url: str, **overrides: Any) -> CacheConfig:
    """A config on ``url``; write-through unless the test asks for write-behind."""
    values: dict[str, Any] = {"redis_url": url, "write_behind": False}
    values.update(overrides)
    return CacheConfig(**values)


def calls(client: redis.Redis, command: str) -> int:
    """How many times Redis has run ``command`` (INFO commandstats)."""
    entry = client.info("commandstats").get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0
