"""Behaviour tests run on both fronts: the asyncio API and its generated sync twin.

Each test takes ``front``: ``"async"`` awaits ``manager.<op>``, ``"sync"`` runs
``manager.sync.<op>`` in a worker thread (as a Flask or Django view would). The two
fronts share one core, so the tests also cross over: what one front writes or loads,
the other sees, counts and shares. Against the session's real redis-server.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis

from fakes import ObservedFlight
from hiercache import (
    MISS,
    NO_EXPIRY,
    HierarchicalCacheManager,
    InvalidKeyError,
    InvalidTTLError,
    SerializationError,
)
from redis_tools import PREFIX, config

FRONTS = ["async", "sync"]


class Front:
    """Calls one front's operations by name, from async test code."""

    def __init__(self, manager: HierarchicalCacheManager, kind: str) -> None:
        self.manager = manager
        self.kind = kind
        self.api: Any = manager if kind == "async" else manager.sync

    async def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.api, name)
        if self.kind == "async":
            return await method(*args, **kwargs)
        return await asyncio.to_thread(method, *args, **kwargs)

    @asynccontextmanager
    async def cached_operation(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        if self.kind == "async":
            async with self.manager.cached_operation(*args, **kwargs) as value:
                yield value
        else:

            def enter() -> Any:
                with self.manager.sync.cached_operation(*args, **kwargs) as value:
                    return value

            yield await asyncio.to_thread(enter)


@pytest.fixture(params=FRONTS)
async def front(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Front]:
    manager = HierarchicalCacheManager(config(redis_url, telemetry_enabled=False))
    yield Front(manager, request.param)
    await manager.close()


def other(front: Front) -> Front:
    """The other front of the same cache."""
    return Front(front.manager, "sync" if front.kind == "async" else "async")


async def test_set_get_exists_delete(front: Front, raw: redis.Redis) -> None:
    assert await front("get", "k") is None
    assert await front("get", "k", MISS) is MISS
    assert not await front("exists", "k")
    await front("set", "k", {"v": [1, 2]}, ttl_seconds=30)
    assert await front("get", "k") == {"v": [1, 2]}
    assert await front("exists", "k")
    assert 0 < raw.pttl(PREFIX + "k") <= 30_000
    assert await other(front)("get", "k") == {"v": [1, 2]}  # one L1 for both fronts
    assert await front("delete", "k")
    assert not await front("delete", "k")
    assert raw.exists(PREFIX + "k") == 0
    assert await other(front)("get", "k", MISS) is MISS


async def test_l2_hit_is_promoted(front: Front) -> None:
    await front("set", "k", "v")
    front.manager.l1.delete("k")
    assert await front("get", "k") == "v"
    assert front.manager.l1.get("k") is not None
    stats = await front("get_statistics")
    assert stats["promotions"] == 1
    assert stats["l2_redis"]["hits"] == 1


async def test_get_many_and_set_many(front: Front) -> None:
    await front("set_many", {"a": 1, "b": 2, "c": 3})
    front.manager.l1.delete("b")
    assert await front("get_many", ["a", "b", "c", "x", "a"]) == {"a": 1, "b": 2, "c": 3}


async def test_invalidate_pattern_and_clear(front: Front, raw: redis.Redis) -> None:
    await front("set_many", {"user:1": 1, "user:2": 2, "team:1": 3})
    assert await front("invalidate_pattern", "user:*") == 2
    assert await front("get_many", ["user:1", "user:2", "team:1"]) == {"team:1": 3}
    assert raw.exists(PREFIX + "user:1") == 0
    assert await front("clear") == 1
    assert raw.dbsize() == 0


async def test_get_or_load_loads_once_and_never_caches_errors(front: Front) -> None:
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        return "loaded"

    assert await front("get_or_load", "k", load) == "loaded"
    assert await front("get_or_load", "k", load) == "loaded"
    assert calls == 1

    def failing() -> str:
        raise ValueError("backend down")

    with pytest.raises(ValueError, match="backend down"):
        await front("get_or_load", "bad", failing)
    assert await front("get", "bad", MISS) is MISS
    assert await front("get_or_load", "k", load, force_refresh=True) == "loaded"
    assert calls == 2
    stats = await front("get_statistics")
    assert stats["loads"] == {"success": 2, "error": 1}


async def test_cached_operation_is_a_context_manager(front: Front) -> None:
    calls = 0

    def operation() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"n": calls}

    async with front.cached_operation("op", operation, 60) as first:
        assert first == {"n": 1}
    async with front.cached_operation("op", operation, 60) as second:
        assert second == {"n": 1}
    async with front.cached_operation("op", operation, 60, force_refresh=True) as third:
        assert third == {"n": 2}


async def test_warm_cache_skips_failures_and_none(front: Front) -> None:
    def operation(key: str) -> Any:
        if key == "boom":
            raise RuntimeError("no")
        return None if key == "none" else key.upper()

    assert await front("warm_cache", ["a", "b", "boom", "none", "a"], operation) == 2
    assert await front("get_many", ["a", "b", "boom", "none"]) == {"a": "A", "b": "B"}
    assert (await front("get_statistics"))["loads"] == {"success": 3, "error": 1}


async def test_register_warmer_runs_in_the_background(front: Front, redis_url: str) -> None:
    """On the sync front the registered warmers run in a thread; on the async one in a task."""
    warmed = threading.Event()

    def operation(key: str) -> str:
        warmed.set()
        return "warm"

    front.api.register_warmer(["w"], operation)
    await front("initialize")
    assert await asyncio.to_thread(warmed.wait, 30)
    assert front.manager._warmer.running is (front.kind == "async")
    assert front.manager.sync._warmer.running is (front.kind == "sync")
    await front.manager.close()
    assert not front.manager._warmer.running
    assert not front.manager.sync._warmer.running
    reader = HierarchicalCacheManager(config(redis_url, telemetry_enabled=False))
    assert await reader.get("w") == "warm"
    await reader.close()


async def test_statistics_are_the_same_from_both_fronts(front: Front) -> None:
    await front("set", "k", 1)
    await front("get", "k")
    await front("get", "missing")
    assert await front("get_statistics") == await other(front)("get_statistics")
    assert front.manager.statistics() == front.manager.sync.statistics()


async def test_context_managers(redis_url: str) -> None:
    manager = HierarchicalCacheManager(config(redis_url, telemetry_enabled=False))
    async with manager as entered:
        assert entered is manager
        await manager.set("k", 1)

    def use_sync() -> Any:
        with manager.sync as sync:
            assert sync is manager.sync
            return sync.get("k")

    assert await asyncio.to_thread(use_sync) == 1
    await manager.close()


@pytest.mark.parametrize(
    ("key", "ttl", "error"),
    [
        ("k", math.inf, InvalidTTLError),
        ("k", math.nan, InvalidTTLError),
        ("k", 0, InvalidTTLError),
        ("k", -1, InvalidTTLError),
        ("k", 1e300, InvalidTTLError),
        ("k", "10", InvalidTTLError),
        ("lone\udc80surrogate", 10, InvalidKeyError),
        ("", 10, InvalidKeyError),
    ],
)
async def test_bad_writes_are_refused_before_anything_is_cached(
    front: Front, raw: redis.Redis, key: str, ttl: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        await front("set", key, "value", ttl_seconds=ttl)
    assert repr(key) in str(caught.value) or key == ""
    with pytest.raises(error):
        await front("set_many", {"good": 1, key: "value"}, ttl_seconds=ttl)
    assert len(front.manager.l1) == 0
    await front("flush")
    assert raw.dbsize() == 0


async def test_an_unserializable_value_caches_nothing(front: Front, raw: redis.Redis) -> None:
    with pytest.raises(SerializationError, match="'k'"):
        await front("set", "k", object())
    assert await front("get", "k", MISS) is MISS
    assert raw.dbsize() == 0


async def test_one_key_loaded_from_both_fronts_at_once_loads_once(redis_url: str) -> None:
    manager = HierarchicalCacheManager(config(redis_url, telemetry_enabled=False))
    flight = ObservedFlight()  # the core's one single-flight, observed
    manager.core.flight = manager._flight = manager.sync._flight = flight
    release = threading.Event()
    entered = threading.Event()
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        entered.set()
        assert release.wait(timeout=30)
        return "once"

    async def async_loader() -> str:
        raise AssertionError("the sync caller leads this load")

    try:
        sync_leader = asyncio.create_task(asyncio.to_thread(manager.sync.get_or_load, "k", load))
        await asyncio.to_thread(entered.wait, 30)
        follower = asyncio.create_task(manager.get_or_load("k", async_loader))
        await asyncio.to_thread(flight.wait_listening, 1)  # the task waits on the thread's load
        release.set()
        assert await sync_leader == "once"
        assert await follower == "once"
        assert calls == 1
        assert manager.statistics()["coalesced"] == 1
    finally:
        release.set()
        await manager.close()


async def test_l2_health_is_shared(redis_url: str) -> None:
    """The sync front uses L2 as soon as the async front found it live (one probe)."""
    manager = HierarchicalCacheManager(config(redis_url, telemetry_enabled=False))
    await manager.initialize()
    assert manager.core.health.live
    assert manager.sync.get_statistics()["l2_redis"]["available"] is True
    await manager.close()


def test_sync_front_refuses_an_async_loader(redis_url: str) -> None:
    manager = HierarchicalCacheManager(config(redis_url, telemetry_enabled=False))

    async def loader() -> int:
        return 1

    with pytest.raises(TypeError, match="async API"):
        manager.sync.get_or_load("k", loader)  # type: ignore[arg-type]
    assert manager.sync.get("k", MISS) is MISS
    manager.sync.close()


@pytest.mark.parametrize("overtaken_by", ["delete", "invalidate_pattern", "clear", "set"])
async def test_a_load_overtaken_by_a_write_or_invalidation_stores_nothing(
    front: Front, raw: redis.Redis, overtaken_by: str
) -> None:
    """The load answers its caller, but its (older) result lands in neither tier."""
    release = threading.Event()
    entered = threading.Event()

    def slow_load() -> str:
        entered.set()
        assert release.wait(timeout=30)
        return "old"

    async def slow_load_async() -> str:
        entered.set()
        await asyncio.to_thread(release.wait, 30)
        return "old"

    loader: Any = slow_load_async if front.kind == "async" else slow_load
    loading = asyncio.create_task(front("get_or_load", "user:1", loader))
    await asyncio.to_thread(entered.wait, 30)
    if overtaken_by == "delete":
        await front("delete", "user:1")
    elif overtaken_by == "invalidate_pattern":
        await front("invalidate_pattern", "user:*")
    elif overtaken_by == "clear":
        await front("clear")
    else:
        await front("set", "user:1", "new")
    release.set()
    assert await loading == "old"  # the caller still gets its answer
    await front("flush")
    expected = "new" if overtaken_by == "set" else MISS
    assert await front("get", "user:1", MISS) == expected
    front.manager.l1.delete("user:1")
    assert await front("get", "user:1", MISS) == expected  # from L2
    stats = await front("get_statistics")
    assert stats["loads"]["success"] == 1
    assert front.manager.stats.total("loads_discarded") == 1


def test_a_nested_key_prefix_is_warned_about(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hiercache")
    outer = HierarchicalCacheManager(config(redis_url, key_prefix="app:"))
    same = HierarchicalCacheManager(config(redis_url, key_prefix="app:"))
    assert "nested" not in caplog.text  # one namespace shared by two instances: normal
    inner = HierarchicalCacheManager(config(redis_url, key_prefix="app:tenant2:"))
    warned = [r.getMessage() for r in caplog.records if "nested" in r.getMessage()]
    assert warned == [
        f"hiercache: key prefix 'app:tenant2:' is nested inside 'app:' on {redis_url}: "
        "clear() and pattern invalidations of the outer cache also remove the inner "
        "cache's keys"
    ]
    for m in (outer, same, inner):
        m.sync.close()


@pytest.mark.parametrize("write_behind", [False, True])
async def test_no_expiry_is_an_option_and_infinity_is_not(
    redis_url: str, raw: redis.Redis, write_behind: bool
) -> None:
    manager = HierarchicalCacheManager(
        config(redis_url, telemetry_enabled=False, write_behind=write_behind, l1_ttl_seconds=60)
    )
    try:
        await manager.set("forever", {"v": 1}, ttl_seconds=NO_EXPIRY)
        manager.sync.set("forever-sync", 2, ttl_seconds=NO_EXPIRY)
        await manager.flush()
        assert raw.pttl(PREFIX + "forever") == -1  # no expiry in Redis
        assert raw.pttl(PREFIX + "forever-sync") == -1
        entry = manager.l1.get("forever")
        assert entry is not None
        assert manager.l1.remaining_ttl(entry) <= 60  # L1 still bounds its copy
        with pytest.raises(InvalidTTLError, match="NO_EXPIRY"):
            await manager.set("inf", 1, ttl_seconds=float("inf"))
        manager.l1.delete("forever")
        assert await manager.get("forever") == {"v": 1}
    finally:
        await manager.close()


@pytest.mark.parametrize("enabled", [True, False])
async def test_statistics_carry_the_size_advisors_estimates(redis_url: str, enabled: bool) -> None:
    manager = HierarchicalCacheManager(
        config(redis_url, telemetry_enabled=False, l1_max_size=100, l1_advisor_enabled=enabled)
    )
    try:
        for i in range(2000):  # a loop over 150 keys: misses at 100, hits from 200 up
            key = f"loop:{i % 150}"
            if manager.sync.get(key, MISS) is MISS:
                manager.sync.set(key, i)
        what_if = (await manager.get_statistics())["l1_memory"]["what_if"]
        if not enabled:
            assert what_if == {}
            return
        assert set(what_if) == {50, 100, 200, 400, 800}
        assert all(0.0 <= ratio <= 1.0 for ratio in what_if.values())
        assert what_if[200] > what_if[100]  # a bigger L1 would hold the whole loop
        assert manager.sync.get_statistics()["l1_memory"]["what_if"] == what_if
    finally:
        await manager.close()
