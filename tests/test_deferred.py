"""Deletes and invalidations that Redis cannot answer are kept (bounded, deduplicated) and
applied after recovery, against a real redis-server behind a fault proxy: the value never
comes back, ``delete`` answers whether L1 held the key, and both fronts behave alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import redis

from fakes import FakeClock
from hiercache import MISS, HierarchicalCacheManager
from hiercache.health import L2State
from otel_providers import install, unique_name
from redis_tools import PREFIX
from test_write_behind import BreakerWatch, count_keys, open_breaker, outage_config, stored

if TYPE_CHECKING:  # imported at run time by pytest_plugins only, so pytest can rewrite it
    from tcp_proxy import TcpProxy

pytest_plugins = ["tcp_proxy"]


async def recover(
    m: HierarchicalCacheManager, proxy: TcpProxy, watch: BreakerWatch, clock: FakeClock
) -> None:
    """Let Redis answer again, let the prober's next ping close the breaker, and wait for
    the deferred operations to be applied."""
    proxy.pass_through()
    clock.advance(m.config.l2_breaker_open_seconds)
    await watch.await_state(L2State.CLOSED)
    assert m.core.deferred is not None
    m.core.deferred.join(10)


def seed(raw: redis.Redis, m: HierarchicalCacheManager, items: dict[str, Any]) -> None:
    """Put ``items`` in Redis, and in L1, through the cache itself (write-through)."""
    m.sync.set_many(items)
    assert all(stored(raw, k) == v for k, v in items.items())


@pytest.mark.parametrize("api", ["async", "sync"])
async def test_deletes_and_invalidations_during_an_outage_are_applied_after_recovery(
    redis_proxy: TcpProxy, raw: redis.Redis, api: str
) -> None:
    clock = FakeClock()
    m = HierarchicalCacheManager(outage_config(redis_proxy.url, write_through=True), clock=clock)
    watch = BreakerWatch(m.core.health)
    try:
        seed(raw, m, {"k": 1, "user:1": 1, "user:2": 2, "other": 3})
        m.l1.delete("k")  # in Redis only: this process cannot know it exists
        await open_breaker(m, redis_proxy, watch)
        if api == "async":
            assert await m.delete("k") is False  # L1 did not hold it
            assert await m.delete("other") is True
            assert await m.delete("other") is False
            assert await m.invalidate_pattern("user:*") == 2  # what L1 held
            assert await m.invalidate_pattern("user:*") == 0
        else:
            assert m.sync.delete("k") is False
            assert m.sync.delete("other") is True
            assert m.sync.delete("other") is False
            assert m.sync.invalidate_pattern("user:*") == 2
            assert m.sync.invalidate_pattern("user:*") == 0
        assert m.core.deferred is not None
        assert m.core.deferred.kept() == [
            ("delete", "k"),
            ("delete", "other"),
            ("invalidate", "user:*"),
        ]  # deduplicated
        assert count_keys(raw) == 4  # nothing reached Redis yet
        await recover(m, redis_proxy, watch, clock)
        assert count_keys(raw) == 0
        assert m.core.deferred.pending == 0
        for key in ("k", "user:1", "other"):
            assert await m.get(key, MISS) is MISS  # nothing comes back from L2
        s = await m.get_statistics()
        assert s["deferred"] == {"delete": 3, "invalidate": 2}  # each counted
        assert s["l2_redis"]["evictions"]["deleted"] == 2
        assert s["l2_redis"]["evictions"]["invalidated"] == 2
    finally:
        await m.close()


async def test_a_delete_whose_round_trip_failed_is_applied_before_later_writes(
    redis_proxy: TcpProxy, raw: redis.Redis
) -> None:
    """The breaker stays closed (5 failures open it): the failed delete is kept, and the
    write-behind flusher applies it before it sends the next write."""
    m = HierarchicalCacheManager(outage_config(redis_proxy.url, l2_breaker_failures=5))
    try:
        await m.set("k", "v")
        await m.flush()
        m.l1.delete("k")
        redis_proxy.reset()
        assert await m.delete("k") is False  # Redis refused: L1 did not hold it
        assert m.core.health.state is L2State.CLOSED
        assert stored(raw, "k") == "v"  # the old code answered here, and left the value
        redis_proxy.pass_through()
        await m.set("later", 1)
        await m.flush()
        assert stored(raw, "later") == 1
        assert stored(raw, "k") is MISS
        assert await m.get("k", MISS) is MISS
    finally:
        await m.close()


async def test_a_write_through_set_that_could_not_reach_redis_leaves_no_stale_value(
    redis_proxy: TcpProxy, raw: redis.Redis
) -> None:
    clock = FakeClock()
    m = HierarchicalCacheManager(outage_config(redis_proxy.url, write_through=True), clock=clock)
    watch = BreakerWatch(m.core.health)
    try:
        seed(raw, m, {"k": "old"})
        await open_breaker(m, redis_proxy, watch)
        await m.set("k", "new")  # L1 only: Redis still holds "old"
        await recover(m, redis_proxy, watch, clock)
        assert stored(raw, "k") is MISS  # another process reads a miss, not "old"
    finally:
        await m.close()


async def test_the_deferred_set_is_bounded_and_counts_what_it_drops(
    redis_proxy: TcpProxy, raw: redis.Redis
) -> None:
    clock = FakeClock()
    m = HierarchicalCacheManager(
        outage_config(redis_proxy.url, write_through=True, l2_deferred_max_size=3), clock=clock
    )
    watch = BreakerWatch(m.core.health)
    try:
        seed(raw, m, {f"k{i}": i for i in range(5)})
        await open_breaker(m, redis_proxy, watch)
        for i in range(5):
            await m.delete(f"k{i}")
        assert m.core.deferred is not None
        assert m.core.deferred.kept() == [("delete", "k2"), ("delete", "k3"), ("delete", "k4")]
        await recover(m, redis_proxy, watch, clock)
        assert [stored(raw, f"k{i}") for i in range(5)] == [0, 1, MISS, MISS, MISS]
        s = await m.get_statistics()
        assert s["write_behind"]["dropped_by_reason"]["deferred_overflow"] == 2
        assert s["deferred"]["delete"] == 5
    finally:
        await m.close()


async def test_held_writes_after_a_deferred_invalidation_survive_it(
    redis_proxy: TcpProxy, raw: redis.Redis
) -> None:
    """Write-behind: an invalidation kept during the outage is applied before the writes
    made after it are sent; the writes made before it are not sent at all."""
    clock = FakeClock()
    m = HierarchicalCacheManager(outage_config(redis_proxy.url), clock=clock)
    watch = BreakerWatch(m.core.health)
    try:
        await m.set("p:old", 0)
        await m.flush()
        await open_breaker(m, redis_proxy, watch)
        await m.set("p:before", 1)
        assert await m.invalidate_pattern("p:*") == 2  # L1's p:old and p:before
        await m.set("p:after", 2)
        await recover(m, redis_proxy, watch, clock)
        assert m.write_behind is not None
        assert await m.write_behind.aflush()
        assert stored(raw, "p:old") is MISS
        assert stored(raw, "p:before") is MISS
        assert stored(raw, "p:after") == 2
        assert raw.exists(PREFIX + "p:after")
    finally:
        await m.close()


async def test_drops_and_deferrals_are_exported_as_metrics(
    redis_proxy: TcpProxy, raw: redis.Redis
) -> None:
    """``{prefix}.write_behind.dropped`` by ``cache.drop.reason`` and ``{prefix}.l2.deferred``
    by ``cache.operation``, read from the same counters as ``get_statistics()``."""
    providers = install()
    name = unique_name("deferred")
    clock = FakeClock()
    m = HierarchicalCacheManager(
        outage_config(
            redis_proxy.url,
            name=name,
            telemetry_enabled=True,
            write_behind_queue_size=2,
            l2_deferred_max_size=4,
        ),
        clock=clock,
    )
    watch = BreakerWatch(m.core.health)
    try:
        await m.initialize()
        await open_breaker(m, redis_proxy, watch)
        for i in range(5):
            await m.set(f"k{i}", i)  # 3 dropped (queue_full), each keeps a delete of its key
        await m.delete("k3")  # the 4th kept delete
        await m.invalidate_pattern("x*")  # one more than 4: the oldest (k0) is dropped
        dropped = providers.values(name, "hiercache.write_behind.dropped")
        assert dropped[frozenset({("cache.drop.reason", "queue_full")})] == 3
        assert dropped[frozenset({("cache.drop.reason", "deferred_overflow")})] == 1
        deferred = providers.values(name, "hiercache.l2.deferred")
        assert deferred[frozenset({("cache.operation", "delete")})] == 4
        assert deferred[frozenset({("cache.operation", "invalidate")})] == 1
        assert m.core.deferred is not None
        assert m.core.deferred.kept() == [
            ("delete", "k1"),
            ("delete", "k2"),
            ("delete", "k3"),
            ("invalidate", "x*"),
        ]
        s = await m.get_statistics()
        assert s["write_behind"]["dropped"] == 4
    finally:
        assert m.write_behind is not None
        await m.write_behind.aclose(0)
        await m.close()
