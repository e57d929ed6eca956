"""The sync API (``manager.sync``) against a real redis-server: same semantics as the
async API, on the same L1 and counters, with no event loop anywhere."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis

from fakes import FakeClock
from hiercache import (
    MISS,
    HierarchicalCacheManager,
    InvalidKeyError,
    SerializationError,
    cache_operation,
)
from redis_tools import PREFIX, calls, config


def test_sync_api_needs_no_event_loop(redis_url: str, raw: redis.Redis) -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    m = HierarchicalCacheManager(config(redis_url))
    c = m.sync
    try:
        assert c.get("k") is None
        assert c.get("k", MISS) is MISS
        assert not c.exists("k")
        c.set("k", {"v": 1}, ttl_seconds=40)
        assert c.get("k") == {"v": 1}
        assert c.exists("k")
        assert 0 < raw.pttl(PREFIX + "k") <= 40_000
        c.set("none", None)
        assert c.get("none", MISS) is None

        sets = calls(raw, "set")
        c.set_many({"a": 1, "b": 2, "c": 3})
        assert calls(raw, "set") - sets == 3
        assert c.get_many(["a", "b", "c", "zz"]) == {"a": 1, "b": 2, "c": 3}

        assert c.delete("a") is True
        assert c.delete("a") is False
        assert raw.exists(PREFIX + "a") == 0
    finally:
        c.close()


def test_sync_reads_l2_with_one_mget_and_promotes(redis_url: str, raw: redis.Redis) -> None:
    writer = HierarchicalCacheManager(config(redis_url))
    clock = FakeClock(500.0)
    reader = HierarchicalCacheManager(config(redis_url, l1_ttl_seconds=1000), clock=clock)
    try:
        writer.sync.set_many({"x": 1, "y": 2}, ttl_seconds=100)
        mget = calls(raw, "mget")
        assert reader.sync.get_many(["x", "y", "nope"]) == {"x": 1, "y": 2}
        assert calls(raw, "mget") - mget == 1
        entry = reader.l1.get("x")
        assert entry is not None
        assert 90 < reader.l1.remaining_ttl(entry) <= 100
        assert reader.sync.exists("y")
        stats = reader.sync.get_statistics()
        assert stats["promotions"] == 2
        assert stats["l2_redis"]["hits"] == 2
        assert stats["misses"] == 1
    finally:
        writer.sync.close()
        reader.sync.close()


def test_sync_invalidate_pattern_and_clear(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url, l1_max_size=5000))
    try:
        m.sync.set_many({f"u:{i}": i for i in range(1500)})
        m.sync.set("keep", 1)
        raw.set("foreign:u:1", b"x")
        scans, keys = calls(raw, "scan"), calls(raw, "keys")
        assert m.sync.invalidate_pattern("u:*") == 1500
        assert calls(raw, "scan") - scans >= 2
        assert calls(raw, "keys") == keys
        assert m.sync.get("u:3") is None
        assert raw.dbsize() == 2
        assert m.sync.clear() == 1
        assert raw.keys("*") == [b"foreign:u:1"]
        assert len(m.l1) == 0
    finally:
        m.sync.close()


def test_sync_get_or_load_and_warm_cache(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url, warming_batch_size=4))
    loads = 0

    def load() -> str:
        nonlocal loads
        loads += 1
        return f"v{loads}"

    def operation(key: str) -> Any:
        if key == "w:3":
            raise ValueError("nope")
        if key == "w:4":
            return None
        return key.upper()

    try:
        assert m.sync.get_or_load("k", load, ttl_seconds=60) == "v1"
        assert m.sync.get_or_load("k", load, ttl_seconds=60) == "v1"
        assert m.sync.get_or_load("k", load, force_refresh=True) == "v2"
        assert loads == 2
        with pytest.raises(ZeroDivisionError):
            m.sync.get_or_load("bad", lambda: 1 // 0)
        assert m.sync.get("bad", MISS) is MISS

        assert m.sync.warm_cache([f"w:{i}" for i in range(10)], operation, ttl_seconds=30) == 8
        assert raw.exists(PREFIX + "w:3") == 0
        assert raw.exists(PREFIX + "w:4") == 0
        assert 0 < raw.pttl(PREFIX + "w:9") <= 30_000
        stats = m.sync.get_statistics()
        assert stats["loads"] == {"success": 2 + 9, "error": 1 + 1}
    finally:
        m.sync.close()


def test_sync_single_flight_across_threads(redis_url: str) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    entered = threading.Event()
    release = threading.Event()
    loads = 0

    def slow() -> str:
        nonlocal loads
        loads += 1
        entered.set()
        assert release.wait(30)
        return "shared"

    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(m.sync.get_or_load("k", slow)))
    first.start()
    try:
        assert entered.wait(30)
        # the second caller joins the load in flight, or hits L1 if it already finished
        second = threading.Thread(target=lambda: results.append(m.sync.get_or_load("k", slow)))
        second.start()
        release.set()
        first.join(30)
        second.join(30)
        assert results == ["shared", "shared"]
        assert loads == 1
    finally:
        release.set()
        m.sync.close()


def test_sync_decorator(redis_url: str) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    calls_made = 0

    @cache_operation(cache_key="square", ttl_seconds=60, cache=m)
    def square(x: int) -> int:
        nonlocal calls_made
        calls_made += 1
        return x * x

    try:
        assert square(4) == 16
        assert square(4) == 16
        assert calls_made == 1
        assert square.invalidate(4) is True  # type: ignore[attr-defined]
        assert square(4) == 16
        assert calls_made == 2
    finally:
        m.sync.close()


def test_sync_bad_input(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        for bad in (1, "", "k" * 1025, None):
            with pytest.raises(InvalidKeyError):
                m.sync.set(bad, 1)  # type: ignore[arg-type]
            with pytest.raises(InvalidKeyError):
                m.sync.get(bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidKeyError):
                m.sync.get_many([bad])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="ttl_seconds"):
            m.sync.set("k", 1, ttl_seconds=0)
        with pytest.raises(SerializationError, match="'obj'"):
            m.sync.set_many({"fine": 1, "obj": object()})
        assert len(m.l1) == 0
        assert raw.dbsize() == 0
    finally:
        m.sync.close()


async def test_sync_and_async_share_l1_l2_and_counters(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        m.sync.set("from-sync", 1)
        await m.set("from-async", 2)
        assert await m.get("from-sync") == 1  # L1 hit
        assert m.sync.get("from-async") == 2  # L1 hit
        assert raw.exists(PREFIX + "from-sync", PREFIX + "from-async") == 2
        assert m.sync.get("nope") is None
        assert await m.get("nope") is None
        stats = await m.get_statistics()
        assert stats == m.sync.get_statistics()
        assert stats["l1_memory"]["hits"] == 2
        assert stats["misses"] == 2
        assert stats["l1_memory"]["entries"] == 2
        assert await m.delete("from-sync")
        assert m.sync.get("from-sync", MISS) is MISS
    finally:
        await m.close()
