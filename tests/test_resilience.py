"""Loader resilience on both fronts, against a real redis-server: stale-if-error,
stale-while-revalidate, hard and soft load timeouts, TTL jitter, negative caching.

Time is a fake clock (both the monotonic one L1 uses and the wall clock that travels with
values to other processes); only the timeout tests wait for real, and they assert bounds
an order of magnitude apart from the behaviour they rule out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from fakes import FakeClock
from hiercache import MISS, HierarchicalCacheManager
from hiercache.codec import META
from hiercache.errors import LoadTimeoutError
from redis_tools import PREFIX, config

FRONTS = ["async", "sync"]


class Backend:
    """A loader whose answers and failures the test scripts, for either front."""

    def __init__(self) -> None:
        self.calls = 0
        self.answer: Any = "v1"
        self.fail = False
        self.gate: threading.Event | None = None  # set: the load blocks until released
        self.entered = threading.Event()
        self.finished = threading.Event()

    def load(self) -> Any:
        self.calls += 1
        self.entered.set()
        try:
            if self.gate is not None:
                assert self.gate.wait(timeout=30)
            if self.fail:
                raise ConnectionError("backend down")
            return self.answer
        finally:
            self.finished.set()

    async def aload(self) -> Any:
        return await asyncio.to_thread(self.load)


class Cache:
    def __init__(self, manager: HierarchicalCacheManager, kind: str, clock: FakeClock) -> None:
        self.manager = manager
        self.kind = kind
        self.clock = clock

    async def get_or_load(self, key: str, backend: Backend, **kwargs: Any) -> Any:
        if self.kind == "async":
            return await self.manager.get_or_load(key, backend.aload, **kwargs)
        return await asyncio.to_thread(self.manager.sync.get_or_load, key, backend.load, **kwargs)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


@pytest.fixture(params=FRONTS)
async def cache(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Cache]:
    clock = FakeClock(now=1_800_000_000.0)
    manager = HierarchicalCacheManager(
        config(redis_url, telemetry_enabled=False), clock=clock, wall_clock=clock
    )
    yield Cache(manager, request.param, clock)
    await manager.close()


def stale_served(cache: Cache, reason: str) -> int:
    return cache.manager.stats.total("stale_served", stale_reason=reason)


async def test_stale_if_error_inside_the_window_and_not_outside(cache: Cache) -> None:
    backend = Backend()
    window = {"ttl_seconds": 10, "stale_if_error_seconds": 60}
    assert await cache.get_or_load("k", backend, **window) == "v1"
    cache.advance(11)  # expired
    backend.fail = True
    assert await cache.get_or_load("k", backend, **window) == "v1"  # the last good value
    assert stale_served(cache, "error") == 1
    assert await cache.manager.get("k", MISS) is MISS  # a plain get never returns stale
    cache.advance(60)  # past expiry + window
    with pytest.raises(ConnectionError):
        await cache.get_or_load("k", backend, **window)
    assert backend.calls == 3


async def test_stale_if_error_from_redis_in_another_process(cache: Cache, redis_url: str) -> None:
    """The window travels with the value: a process that never held it serves it stale."""
    backend = Backend()
    await cache.get_or_load("k", backend, ttl_seconds=10, stale_if_error_seconds=60)
    await cache.manager.flush()
    other = HierarchicalCacheManager(
        config(redis_url, telemetry_enabled=False), clock=cache.clock, wall_clock=cache.clock
    )
    try:
        cache.advance(11)
        backend.fail = True
        assert await other.get_or_load("k", backend.aload) == "v1"  # no window given here
        assert other.stats.total("stale_served", stale_reason="error") == 1
    finally:
        await other.close()


async def test_stale_if_error_survives_a_redis_outage(redis_url: str) -> None:
    """With L2 down, this process's stale copy (the shelf) still answers."""
    clock = FakeClock(now=1_800_000_000.0)
    m = HierarchicalCacheManager(
        config(redis_url, telemetry_enabled=False, l2_backend="none"), clock=clock, wall_clock=clock
    )
    backend = Backend()
    await m.get_or_load("k", backend.aload, 10, stale_if_error_seconds=60)
    clock.advance(30)
    backend.fail = True
    assert await m.get_or_load("k", backend.aload, 10, stale_if_error_seconds=60) == "v1"
    await m.delete("k")  # an explicit delete leaves nothing to serve stale
    with pytest.raises(ConnectionError):
        await m.get_or_load("k", backend.aload, 10, stale_if_error_seconds=60)
    await m.close()


async def test_stale_while_revalidate_answers_at_once_and_refreshes_once(cache: Cache) -> None:
    backend = Backend()
    window = {"ttl_seconds": 10, "stale_while_revalidate_seconds": 30}
    assert await cache.get_or_load("k", backend, **window) == "v1"
    cache.advance(12)
    backend.answer, backend.gate = "v2", threading.Event()
    backend.entered.clear()
    backend.finished.clear()
    started = time.perf_counter()
    assert await cache.get_or_load("k", backend, **window) == "v1"  # stale, at once
    assert await cache.get_or_load("k", backend, **window) == "v1"  # still: one refresh only
    assert time.perf_counter() - started < 0.1  # the refresh (held open here) is not awaited
    await asyncio.to_thread(backend.entered.wait, 30)
    backend.gate.set()
    await asyncio.to_thread(backend.finished.wait, 30)
    await asyncio.to_thread(_wait_not_loading, cache.manager, "k")
    assert await cache.get_or_load("k", backend, **window) == "v2"
    assert backend.calls == 2
    assert stale_served(cache, "revalidate") == 2
    assert cache.manager.stats.total("refreshes", result="success") == 1


def _wait_not_loading(manager: HierarchicalCacheManager, key: str) -> None:
    """Until the background refresh has stored its result (its flight is over)."""
    done = threading.Event()
    for _ in range(30_000):
        if not manager.is_loading(key):
            return
        done.wait(0.001)
    raise AssertionError("the refresh never finished")


async def test_hard_timeout_raises_and_the_load_still_stores(cache: Cache) -> None:
    backend = Backend()
    backend.gate = threading.Event()
    started = time.perf_counter()
    with pytest.raises(LoadTimeoutError, match="'slow'"):
        await cache.get_or_load("slow", backend, load_timeout_seconds=0.05)
    assert time.perf_counter() - started < 2  # not the 30 s the load would take
    assert cache.manager.stats.total("load_timeouts", timeout="hard") == 1
    backend.gate.set()  # the shared load goes on, and stores in the background
    await asyncio.to_thread(_wait_not_loading, cache.manager, "slow")
    assert await cache.manager.get("slow") == "v1"
    assert backend.calls == 1


async def test_hard_timeout_with_a_stale_value_serves_it(cache: Cache) -> None:
    backend = Backend()
    await cache.get_or_load("k", backend, ttl_seconds=10, stale_if_error_seconds=60)
    cache.advance(11)
    backend.gate = threading.Event()
    assert await cache.get_or_load("k", backend, load_timeout_seconds=0.05) == "v1"
    assert stale_served(cache, "timeout") == 1
    backend.gate.set()
    await asyncio.to_thread(_wait_not_loading, cache.manager, "k")


async def test_soft_timeout_serves_stale_and_stores_in_the_background(cache: Cache) -> None:
    backend = Backend()
    await cache.get_or_load("k", backend, ttl_seconds=10, stale_if_error_seconds=60)
    cache.advance(11)
    backend.answer, backend.gate = "v2", threading.Event()
    started = time.perf_counter()
    value = await cache.get_or_load(
        "k", backend, load_soft_timeout_seconds=0.05, load_timeout_seconds=30
    )
    assert value == "v1"
    assert time.perf_counter() - started < 2
    assert cache.manager.stats.total("load_timeouts", timeout="soft") == 1
    backend.gate.set()
    await asyncio.to_thread(_wait_not_loading, cache.manager, "k")
    assert await cache.manager.get("k") == "v2"


async def test_ttl_jitter_spreads_expiries_over_the_last_share(
    cache: Cache, raw: redis.Redis
) -> None:
    backend = Backend()
    ttl = 1000.0
    now = cache.clock()
    for i in range(1000):
        await cache.get_or_load(f"j{i}", backend, ttl_seconds=ttl, ttl_jitter=0.1)
    await cache.manager.flush()
    expiries = []
    for i in range(1000):
        payload = raw.get(f"{PREFIX}j{i}")
        assert payload is not None
        expiries.append(META.unpack_from(payload, 4)[0] / 1000 - now)
        assert raw.pttl(f"{PREFIX}j{i}") <= ttl * 1000  # never longer than asked
    assert all(0.9 * ttl - 0.01 <= e <= ttl + 0.01 for e in expiries)
    assert min(expiries) < 0.91 * ttl
    assert max(expiries) > 0.99 * ttl
    assert len({round(e) for e in expiries}) > 50  # spread, not together


async def test_none_is_cached_for_its_own_ttl_or_not_at_all(cache: Cache, raw: redis.Redis) -> None:
    backend = Backend()
    backend.answer = None
    assert await cache.get_or_load("n", backend, cache_none_ttl_seconds=5) is None
    await cache.manager.flush()
    assert 0 < raw.pttl(PREFIX + "n") <= 5000
    assert await cache.get_or_load("n", backend, cache_none_ttl_seconds=5) is None
    assert backend.calls == 1
    assert await cache.get_or_load("zero", backend, cache_none_ttl_seconds=0) is None
    assert await cache.get_or_load("zero", backend, cache_none_ttl_seconds=0) is None
    assert backend.calls == 3  # not cached: loaded each time
    await cache.manager.flush()
    assert raw.exists(PREFIX + "zero") == 0


async def test_bad_per_call_overrides_are_typed_errors(cache: Cache) -> None:
    backend = Backend()
    for bad in ({"ttl_jitter": 1.5}, {"stale_if_error_seconds": -1}, {"load_timeout_seconds": 0}):
        with pytest.raises(ValueError, match="'k'"):
            await cache.get_or_load("k", backend, **bad)
    assert backend.calls == 0
