"""Cancellation: a caller cancelled in the middle of an L2 read or a load never breaks the
connection pool (no reply read by the wrong caller) or the other waiters of its load."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from fakes import ObservedFlight
from hiercache import MISS, HierarchicalCacheManager
from redis_tools import calls, config

if TYPE_CHECKING:
    from tcp_proxy import TcpProxy

pytest_plugins = ["tcp_proxy"]


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait for ``condition`` (checked every millisecond), failing after ``timeout``."""
    for _ in range(int(timeout * 1000)):
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met in time")


async def test_a_cancelled_l2_read_leaves_the_pool_correct(
    redis_proxy: TcpProxy, raw: redis.Redis
) -> None:
    m = HierarchicalCacheManager(
        config(redis_proxy.url, telemetry_enabled=False, redis_max_connections=2)
    )
    try:
        await m.set_many({f"k{i}": f"v{i}" for i in range(20)})
        m.l1.purge_expired()
        for i in range(20):
            m.l1.delete(f"k{i}")
        redis_proxy.delay(300)  # every reply arrives 300 ms late
        for i in range(5):  # cancel reads while their replies are on the way
            before = calls(raw, "get")
            task = asyncio.create_task(m.get(f"k{i}"))
            await until(lambda n=before: calls(raw, "get") > n)  # Redis has it; its reply is late
            assert not task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        redis_proxy.pass_through()
        # Every later read gets its own key's value: no connection was left holding a
        # reply meant for a cancelled caller.
        results = await asyncio.gather(*(m.get(f"k{i}", MISS) for i in range(20)))
        assert results == [f"v{i}" for i in range(20)]
        assert m.core.health.live
    finally:
        await m.close()


async def test_a_cancelled_waiter_leaves_the_load_to_the_others(redis_url: str) -> None:
    m = HierarchicalCacheManager(config(redis_url, telemetry_enabled=False))
    flight = ObservedFlight()
    m.core.flight = m._flight = m.sync._flight = flight
    gate = asyncio.Event()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "loaded"

    try:
        leader = asyncio.create_task(m.get_or_load("k", load))
        await until(lambda: m.is_loading("k"))
        waiters = [asyncio.create_task(m.get_or_load("k", load)) for _ in range(3)]
        await asyncio.to_thread(flight.wait_listening, 3)  # all three wait on the load
        waiters[0].cancel()
        await asyncio.gather(waiters[0], return_exceptions=True)
        gate.set()
        assert await leader == "loaded"
        assert await asyncio.gather(*waiters[1:]) == ["loaded", "loaded"]
        assert calls == 1
        assert await m.get("k") == "loaded"
    finally:
        await m.close()
