"""``ping``, ``get``, ``delete`` and ``invalidate`` against the configured cache, through
``HierarchicalCacheManager``'s sync front (so keys get the same prefix and layout)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from hiercache.core import MISS
from hiercache.manager import HierarchicalCacheManager
from hiercache.redis_tier import RedisCacheBackend
from hiercache.settings import CacheConfig

__all__ = ["CommandError", "delete", "get", "invalidate", "open_cache", "ping"]


class CommandError(Exception):
    """The command could not do its work; the message is one line saying why."""


@contextmanager
def open_cache(config: CacheConfig) -> Iterator[HierarchicalCacheManager]:
    """The cache of ``config``, its sync front initialised; closed (flushed) at the end."""
    manager = HierarchicalCacheManager(config)
    try:
        manager.sync.initialize()
        yield manager
    finally:
        manager.sync.close()


def l2_of(manager: HierarchicalCacheManager) -> RedisCacheBackend:
    """The reachable L2 of ``manager``; ``CommandError`` when there is none or it is down."""
    l2 = manager.sync.l2
    target = manager.config.redis_target
    if l2 is None:
        raise CommandError(f"no L2 is configured (CACHE_L2_BACKEND={target})")
    if not l2.available:
        raise CommandError(f"L2 at {target} is unreachable: check CACHE_REDIS_URL and the server")
    return l2


def ping(manager: HierarchicalCacheManager, count: int = 3) -> list[float]:
    """``count`` PING round trips on the cache's own client; their times in seconds."""
    client = l2_of(manager).sync_client()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        try:
            client.ping()
        except Exception as exc:  # any redis-py failure: report it, never a traceback
            raise CommandError(f"PING {manager.config.redis_target} failed: {exc}") from None
        times.append(time.perf_counter() - started)
    return times


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def get(manager: HierarchicalCacheManager, key: str) -> Any:
    """The value at ``key`` (L1, then L2), or ``MISS``."""
    _require_l2_if_configured(manager)
    return manager.sync.get(key, MISS)


def dumps(value: Any) -> str:
    """A cached value as the CLI prints it: JSON, or a repr for what JSON cannot show."""
    if isinstance(value, bytes):
        return repr(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(value)


def _require_l2_if_configured(manager: HierarchicalCacheManager) -> None:
    if manager.sync.l2 is not None:
        l2_of(manager)


def delete(manager: HierarchicalCacheManager, key: str) -> bool:
    _require_l2_if_configured(manager)
    return manager.sync.delete(key)


def invalidate(manager: HierarchicalCacheManager, pattern: str) -> int:
    _require_l2_if_configured(manager)
    return manager.sync.invalidate_pattern(pattern)
