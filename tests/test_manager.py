"""The async manager against a real redis-server: tiers, encoding, TTLs, promotion,
pattern invalidation, warming, loading, statistics and input validation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
import redis

from fakes import FakeClock
from hiercache import (
    MISS,
    CacheConfig,
    HierarchicalCacheManager,
    InvalidKeyError,
    SerializationError,
)
from hiercache.codec import HAS_META, META, META_SIZE
from hiercache.memory import ENTRY_OVERHEAD_BYTES
from hiercache.sizing import value_size
from redis_tools import PREFIX, calls, config
from servers import RedisServer


# -- basic operations -------------------------------------------------------------------
async def test_get_set_delete_exists_round_trip(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        assert await m.get("user:1") is None
        assert await m.get("user:1", "fallback") == "fallback"
        assert not await m.exists("user:1")

        await m.set("user:1", {"name": "Ada", "langs": ["en", "fr"]}, ttl_seconds=60)
        assert await m.get("user:1") == {"name": "Ada", "langs": ["en", "fr"]}
        assert await m.exists("user:1")
        assert raw.exists(PREFIX + "user:1") == 1

        assert await m.delete("user:1") is True
        assert await m.get("user:1") is None
        assert not await m.exists("user:1")
        assert raw.exists(PREFIX + "user:1") == 0
        assert await m.delete("user:1") is False
    finally:
        await m.close()


async def test_exists_and_get_see_l2_only_keys(redis_url: str) -> None:
    writer = HierarchicalCacheManager(config(redis_url))
    reader = HierarchicalCacheManager(config(redis_url))
    try:
        await writer.set("shared", [1, 2, 3])
        assert reader.l1.get("shared") is None
        assert await reader.exists("shared")
        assert await reader.get("shared") == [1, 2, 3]
        assert reader.l1.get("shared") is not None  # promoted
        # a delete through one manager removes the L2 copy the other reads
        assert await writer.delete("shared")
        reader.l1.delete("shared")
        assert await reader.get("shared", MISS) is MISS
    finally:
        await writer.close()
        await reader.close()


async def test_miss_sentinel_tells_cached_none_from_a_miss(redis_url: str) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    other = HierarchicalCacheManager(config(redis_url))
    try:
        await m.set("nothing", None)
        assert await m.get("nothing") is None
        assert await m.get("nothing", MISS) is None
        assert await m.get("absent", MISS) is MISS
        # the None survives the trip through Redis too
        assert await other.get("nothing", MISS) is None
        assert not MISS
        assert repr(MISS) == "MISS"
    finally:
        await m.close()
        await other.close()


async def test_get_many_and_set_many(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    other = HierarchicalCacheManager(config(redis_url))
    try:
        sets_before = calls(raw, "set")
        await m.set_many({"a": 1, "b": "two", "c": None}, ttl_seconds=30)
        assert calls(raw, "set") - sets_before == 3
        assert sorted(raw.keys(PREFIX + "*")) == [b"hiercache:a", b"hiercache:b", b"hiercache:c"]
        for key in ("a", "b", "c"):
            assert 0 < raw.pttl(PREFIX + key) <= 30_000

        # answered from L1: no MGET at all
        mget_before = calls(raw, "mget")
        assert await m.get_many(["a", "b", "c", "zz"]) == {"a": 1, "b": "two", "c": None}
        assert calls(raw, "mget") - mget_before == 1  # only "zz" went to L2

        # a cold manager reads them all with exactly one MGET; duplicates are asked once
        mget_before = calls(raw, "mget")
        got = await other.get_many(["a", "b", "zz", "c", "a"])
        assert got == {"a": 1, "b": "two", "c": None}
        assert calls(raw, "mget") - mget_before == 1

        mget_before = calls(raw, "mget")
        assert await other.get_many(["a", "b"]) == {"a": 1, "b": "two"}
        assert calls(raw, "mget") == mget_before  # promoted: L1 answers
        assert await m.get_many([]) == {}
    finally:
        await m.close()
        await other.close()


# -- encoding and TTLs -------------------------------------------------------------------
async def test_stored_value_carries_header_and_ttl(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        await m.set("small", {"x": 1}, ttl_seconds=120)
        stored = raw.get(PREFIX + "small")
        assert stored is not None
        assert stored[:2] == b"HC"
        assert stored[2] == 1  # version
        assert stored[3] == HAS_META  # JSON, not compressed, with the meta block
        assert orjson.loads(stored[4 + META_SIZE :]) == {"x": 1}
        expires_ms, stale_ms, swr_ms = META.unpack_from(stored, 4)
        assert 119_000 < expires_ms - time.time() * 1000 <= 120_000  # the expiry travels along
        assert stale_ms == swr_ms == 0
        assert 119_000 < raw.pttl(PREFIX + "small") <= 120_000

        await m.set("default-ttl", 1)
        assert 3_599_000 < raw.pttl(PREFIX + "default-ttl") <= 3_600_000

        await m.set("blob", b"\x00\x01raw")
        blob = raw.get(PREFIX + "blob")
        assert blob is not None
        assert blob[:4] == b"HC\x01" + bytes((HAS_META | 0x02,))  # raw bytes
        assert blob[4 + META_SIZE :] == b"\x00\x01raw"  # bytes are stored as they are
        m.l1.delete("blob")
        assert await m.get("blob") == b"\x00\x01raw"
    finally:
        await m.close()


async def test_large_values_are_zstd_compressed_when_enabled(
    redis_url: str, raw: redis.Redis
) -> None:
    value = {"text": "the quick brown fox " * 500}
    plain = orjson.dumps(value)
    on = HierarchicalCacheManager(config(redis_url, compression_threshold=1024))
    off = HierarchicalCacheManager(config(redis_url, compression_enabled=False))
    try:
        await on.set("big", value)
        stored = raw.get(PREFIX + "big")
        assert stored is not None
        assert stored[:3] == b"HC\x01"
        assert stored[3] & 0x80
        assert len(stored) < len(plain) // 10

        # below the threshold nothing is compressed
        await on.set("small", {"text": "tiny"})
        small = raw.get(PREFIX + "small")
        assert small is not None
        assert not small[3] & 0x80

        await off.set("big-off", value)
        stored_off = raw.get(PREFIX + "big-off")
        assert stored_off is not None
        assert not stored_off[3] & 0x80
        assert len(stored_off) == 4 + META_SIZE + len(plain)

        # both read back through L2
        cold = HierarchicalCacheManager(config(redis_url))
        try:
            assert await cold.get("big") == value
            assert await cold.get("big-off") == value
        finally:
            await cold.close()
    finally:
        await on.close()
        await off.close()


async def test_l2_hit_is_promoted_with_the_remaining_ttl(redis_url: str, raw: redis.Redis) -> None:
    writer = HierarchicalCacheManager(config(redis_url))
    clock = FakeClock()
    reader = HierarchicalCacheManager(config(redis_url, l1_ttl_seconds=1000), clock=clock)
    try:
        await writer.set("short", "s", ttl_seconds=100)
        await writer.set("long", "l", ttl_seconds=5000)

        assert await reader.get("short") == "s"
        pttl_after = raw.pttl(PREFIX + "short") / 1000
        entry = reader.l1.get("short")
        assert entry is not None
        remaining = reader.l1.remaining_ttl(entry)
        # the remaining TTL carried by the value (within Redis' own by a round trip), not
        # l1_ttl_seconds
        assert abs(pttl_after - remaining) < 0.5
        assert 90 < remaining <= 100

        assert await reader.get("long") == "l"
        entry = reader.l1.get("long")
        assert entry is not None
        assert reader.l1.remaining_ttl(entry) == 1000  # capped at l1_ttl_seconds

        stats = await reader.get_statistics()
        assert stats["promotions"] == 2
        assert stats["l2_redis"]["hits"] == 2

        # the promoted entry expires from L1 with the L2 TTL (fake clock, no waiting)
        clock.advance(100)
        assert reader.l1.get("short") is None
        assert reader.l1.get("long") is not None
    finally:
        await writer.close()
        await reader.close()


async def test_no_promotion_without_hierarchical_caching(redis_url: str) -> None:
    writer = HierarchicalCacheManager(config(redis_url))
    reader = HierarchicalCacheManager(config(redis_url, hierarchical_caching=False))
    try:
        await writer.set("k", 1)
        assert await reader.get("k") == 1
        assert reader.l1.get("k") is None
        assert (await reader.get_statistics())["promotions"] == 0
    finally:
        await writer.close()
        await reader.close()


async def test_l1_ttl_is_capped_by_the_write_ttl(redis_url: str) -> None:
    clock = FakeClock()
    m = HierarchicalCacheManager(config(redis_url, l1_ttl_seconds=50), clock=clock)
    try:
        await m.set("a", 1, ttl_seconds=10)
        await m.set("b", 2, ttl_seconds=500)
        a, b = m.l1.get("a"), m.l1.get("b")
        assert a is not None
        assert b is not None
        assert m.l1.remaining_ttl(a) == 10
        assert m.l1.remaining_ttl(b) == 50
    finally:
        await m.close()


# -- pattern invalidation ----------------------------------------------------------------
async def test_invalidate_pattern_uses_scan_and_unlink(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url, l1_max_size=5000))
    try:
        n = 2500
        await m.set_many({f"user:{i}": i for i in range(n)})
        await m.set_many({"item:1": "keep", "item:2": "keep"})
        raw.set("other:user:1", b"not ours")
        raw.set("user:1", b"not ours either")
        assert raw.dbsize() == n + 4

        before = {c: calls(raw, c) for c in ("scan", "unlink", "keys")}
        assert await m.invalidate_pattern("user:*") == n
        assert calls(raw, "scan") - before["scan"] >= 2  # more than one SCAN batch
        assert calls(raw, "unlink") - before["unlink"] >= 2
        assert calls(raw, "keys") == before["keys"]

        assert raw.dbsize() == 4
        assert raw.get("other:user:1") == b"not ours"
        assert raw.get("user:1") == b"not ours either"
        assert await m.get("item:1") == "keep"
        assert m.l1.get("user:7") is None
        assert await m.get("user:7", MISS) is MISS

        stats = await m.get_statistics()
        assert stats["l1_memory"]["evictions"]["invalidated"] == n
        assert stats["l2_redis"]["evictions"]["invalidated"] == n
        assert await m.invalidate_pattern("user:*") == 0
    finally:
        await m.close()


async def test_invalidate_pattern_counts_l1_and_l2_keys_once(redis_url: str) -> None:
    # Without the backplane (tests/test_backplane.py covers it), another cache's L1 is its own.
    writer = HierarchicalCacheManager(config(redis_url, backplane_enabled=False))
    m = HierarchicalCacheManager(config(redis_url, backplane_enabled=False))
    try:
        await writer.set_many({"p:1": 1, "p:2": 2})  # only in writer's L1 and in L2
        await m.set("p:3", 3)  # in m's L1 and in L2
        m.l1.set("p:4", 4, 60)  # only in m's L1
        assert await m.invalidate_pattern("p:*") == 4
        assert await writer.get("p:1") == 1  # another process's L1 is its own business
    finally:
        await writer.close()
        await m.close()


async def test_invalidate_pattern_rejects_empty_pattern(redis_url: str) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        with pytest.raises(InvalidKeyError):
            await m.invalidate_pattern("")
    finally:
        await m.close()


async def test_clear_empties_only_this_prefix(redis_url: str, raw: redis.Redis) -> None:
    # "t[1]:" holds glob metacharacters: they must match literally, not as a class
    a = HierarchicalCacheManager(config(redis_url, key_prefix="t[1]:"))
    b = HierarchicalCacheManager(config(redis_url, key_prefix="t1:"))
    try:
        await a.set_many({"x": 1, "y": 2})
        await b.set_many({"x": 10, "y": 20})
        raw.set("unrelated", b"1")
        assert await a.clear() == 2
        assert sorted(raw.keys("*")) == [b"t1:x", b"t1:y", b"unrelated"]
        assert len(a.l1) == 0
        assert await b.get("x") == 10
        assert await a.get("x") is None
    finally:
        await a.close()
        await b.close()


# -- loading and warming -----------------------------------------------------------------
async def test_cached_operation_loads_once_and_force_refresh_reloads(
    redis_url: str, raw: redis.Redis
) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    loads: list[int] = []

    async def operation() -> dict[str, int]:
        loads.append(1)
        return {"version": len(loads)}

    try:
        async with m.cached_operation("models", operation, ttl_seconds=3600) as first:
            assert first == {"version": 1}
        async with m.cached_operation("models", operation, ttl_seconds=3600) as second:
            assert second == {"version": 1}
        assert len(loads) == 1
        assert 3_599_000 < raw.pttl(PREFIX + "models") <= 3_600_000

        async with m.cached_operation(
            "models", operation, ttl_seconds=3600, force_refresh=True
        ) as refreshed:
            assert refreshed == {"version": 2}
        assert len(loads) == 2
        assert await m.get("models") == {"version": 2}
        cold = HierarchicalCacheManager(config(redis_url))
        try:
            assert await cold.get("models") == {"version": 2}  # the reload reached L2
        finally:
            await cold.close()
    finally:
        await m.close()


async def test_get_or_load_single_flight_and_errors_not_cached() -> None:
    # No L2: the second caller reaches the flight without awaiting a Redis round trip, so
    # it provably joins the first caller's load (with single-flight off it would load too).
    m = HierarchicalCacheManager(CacheConfig(l2_backend="none"))
    started = asyncio.Event()
    release = asyncio.Event()
    loads = 0

    async def slow() -> str:
        nonlocal loads
        loads += 1
        started.set()
        await release.wait()
        return "value"

    async def boom() -> str:
        raise RuntimeError("backend down")

    try:
        first = asyncio.create_task(m.get_or_load("k", slow))
        await started.wait()
        assert m.is_loading("k")
        second = asyncio.create_task(m.get_or_load("k", slow))
        await asyncio.sleep(0)  # one step: the second caller runs into the flight and waits
        release.set()
        assert await asyncio.gather(first, second) == ["value", "value"]
        assert loads == 1
        stats = await m.get_statistics()
        assert stats["coalesced"] == 1
        assert stats["loads"]["success"] == 1

        with pytest.raises(RuntimeError, match="backend down"):
            await m.get_or_load("bad", boom)
        assert await m.get("bad", MISS) is MISS
        assert (await m.get_statistics())["loads"]["error"] == 1
    finally:
        await m.close()


async def test_warm_cache_batches_with_bounded_concurrency(
    redis_url: str, raw: redis.Redis
) -> None:
    m = HierarchicalCacheManager(config(redis_url, warming_batch_size=10, warming_concurrency=3))
    in_flight = 0
    max_in_flight = 0
    events: list[tuple[str, int]] = []

    async def operation(key: str) -> Any:
        nonlocal in_flight, max_in_flight
        index = int(key.split(":")[1])
        events.append(("start", index))
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        for _ in range(3):
            await asyncio.sleep(0)  # yield so other loads can run concurrently
        in_flight -= 1
        events.append(("end", index))
        if index == 4:
            raise ValueError("cannot load")
        if index == 5:
            return None
        return {"n": index}

    keys = [f"k:{i}" for i in range(25)]
    try:
        assert await m.warm_cache(keys, operation, ttl_seconds=90) == 23
        assert max_in_flight == 3

        # batches: every load of batch b+1 starts after every load of batch b ended
        position = {(kind, i): n for n, (kind, i) in enumerate(events)}
        for batch in range(2):
            last_end = max(position["end", i] for i in range(batch * 10, batch * 10 + 10))
            nxt = range((batch + 1) * 10, min(25, (batch + 2) * 10))
            assert min(position["start", i] for i in nxt) > last_end

        assert raw.dbsize() == 23
        assert raw.exists(PREFIX + "k:4") == 0
        assert raw.exists(PREFIX + "k:5") == 0
        assert 0 < raw.pttl(PREFIX + "k:0") <= 90_000
        assert await m.get("k:24") == {"n": 24}
        stats = await m.get_statistics()
        assert stats["loads"] == {"success": 24, "error": 1}
        # duplicates are loaded once; a sync operation is fine too
        assert await m.warm_cache(["s:1", "s:1", "s:2"], lambda k: k.upper()) == 2
        assert await m.get("s:2") == "S:2"
    finally:
        await m.close()


async def test_register_warmer_reruns_in_the_background(redis_url: str) -> None:
    m = HierarchicalCacheManager(
        config(redis_url, warming_enabled=True, warming_interval_seconds=0.001)
    )
    runs = 0
    second_run = asyncio.Event()

    async def keys() -> list[str]:
        return ["w:1", "w:2"]

    async def operation(key: str) -> int:
        nonlocal runs
        if key == "w:1":
            runs += 1
            if runs == 2:
                second_run.set()
        return runs

    try:
        m.register_warmer(keys, operation)
        assert not m._warmer.running  # starts with the manager
        await m.initialize()
        await asyncio.wait_for(second_run.wait(), timeout=10)
        assert runs >= 2
        assert await m.get("w:2") is not None
    finally:
        await m.close()
    assert not m._warmer.running


async def test_close_stops_a_warmer_whose_cancellation_is_swallowed(redis_url: str) -> None:
    """redis-py's asyncio client can lose a cancellation that lands mid-command; a keys
    callable that swallows it stands in for that, deterministically. close() must not hang.
    (No L2 here, so a regression fails by timing out rather than hanging in redis-py.)"""
    m = HierarchicalCacheManager(
        config(redis_url, l2_backend="none", warming_interval_seconds=0.001)
    )
    calls_made = 0
    blocked = asyncio.Event()

    async def keys() -> list[str]:
        nonlocal calls_made
        calls_made += 1
        if calls_made == 2:  # only once, so a regression fails instead of hanging
            blocked.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                pass  # swallowed, as a cancellation lost inside a client library
        return ["w:1"]

    try:
        m.register_warmer(keys, lambda k: "v")
        await m.initialize()
        await blocked.wait()
    finally:
        await asyncio.wait_for(m.close(), timeout=5)
    assert not m._warmer.running
    assert calls_made == 2


async def test_register_warmer_does_nothing_when_warming_disabled(redis_url: str) -> None:
    m = HierarchicalCacheManager(config(redis_url, warming_enabled=False))
    try:
        await m.initialize()
        m.register_warmer(["a"], lambda k: 1)
        assert not m._warmer.running
        assert await m.get("a") is None
    finally:
        await m.close()


# -- statistics ----------------------------------------------------------------------------
async def test_statistics_of_a_scripted_scenario(redis_url: str) -> None:
    clock = FakeClock()
    m = HierarchicalCacheManager(config(redis_url, l1_ttl_seconds=10), clock=clock)
    try:
        await m.set("a", 1)
        await m.set("b", 2)
        assert await m.get("a") == 1  # L1 hit
        assert await m.get("b") == 2  # L1 hit
        assert await m.get("missing") is None  # miss
        clock.advance(11)  # both L1 entries expire; L2 keeps them
        assert await m.get("a") == 1  # L1 expired -> L2 hit, promoted
        assert await m.delete("a")  # L1 deleted, L2 deleted
        # a: miss in both; b: L1 expired -> L2 hit, promoted; zz: miss
        assert await m.get_many(["a", "b", "zz"]) == {"b": 2}

        s = await m.get_statistics()
        assert s["requests"] == 7
        assert s["hits"] == 4
        assert s["misses"] == 3
        assert s["overall_hit_ratio"] == pytest.approx(4 / 7)
        assert s["promotions"] == 2
        l1, l2 = s["l1_memory"], s["l2_redis"]
        assert l1["hits"] == 2
        assert l1["misses"] == 5
        assert l1["hit_ratio"] == pytest.approx(2 / 7)
        assert l1["entries"] == 1
        # L1 counts the live value (a small int is shared: 0 bytes), not its encoding.
        assert l1["memory_usage_bytes"] == value_size(2) + ENTRY_OVERHEAD_BYTES
        assert l1["evictions"] == {"size": 0, "expired": 2, "deleted": 1, "invalidated": 0}
        assert l2["hits"] == 2
        assert l2["misses"] == 3
        assert l2["hit_ratio"] == pytest.approx(2 / 5)
        assert l2["available"] is True
        assert l2["backend"] == redis_url
        assert l2["errors"] == dict.fromkeys(
            (
                "timeout",
                "connection",
                "topology",
                "busy",
                "write_refused",
                "auth",
                "wrong_type",
                "corrupt",
                "incompatible",
                "serialization",
                "other",
            ),
            0,
        )
        assert l2["evictions"] == {"size": 0, "expired": 0, "deleted": 1, "invalidated": 0}
        assert s["write_behind"] == {
            "enabled": False,
            "queue_depth": 0,
            "dropped": 0,
            "dropped_by_reason": dict.fromkeys(
                ("queue_full", "expired", "shutdown", "error", "deferred_overflow"), 0
            ),
        }
        assert s["deferred"] == {"delete": 0, "invalidate": 0}

        assert await m.clear() == 1  # b
        s = await m.get_statistics()
        assert s["l1_memory"]["evictions"]["invalidated"] == 1
        assert s["l2_redis"]["evictions"]["invalidated"] == 1
        assert s["l1_memory"]["entries"] == 0
        assert s["l1_memory"]["memory_usage_bytes"] == 0
    finally:
        await m.close()


async def test_size_evictions_are_counted(redis_url: str) -> None:
    m = HierarchicalCacheManager(config(redis_url, l1_max_size=2))
    try:
        await m.set_many({"a": 1, "b": 2, "c": 3})
        s = await m.get_statistics()
        assert s["l1_memory"]["entries"] == 2
        assert s["l1_memory"]["evictions"]["size"] == 1
        # evicted from L1 only: L2 still has all three
        assert await m.get_many(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}
    finally:
        await m.close()


async def test_statistics_of_a_fresh_manager_have_zero_ratios(redis_url: str) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        s = await m.get_statistics()
        assert s["overall_hit_ratio"] == 0.0
        assert s["l1_memory"]["hit_ratio"] == 0.0
        assert s["l2_redis"]["hit_ratio"] == 0.0
        assert s["requests"] == 0
    finally:
        await m.close()


# -- bad input ------------------------------------------------------------------------------
class BadMapping(dict[Any, Any]):
    """A one-item mapping whose key may be unhashable (``{["l"]: 1}`` cannot be built)."""

    def __init__(self, key: Any) -> None:
        super().__init__()
        self.key = key

    def items(self) -> Any:
        return [(self.key, 1)]

    def __getitem__(self, key: Any) -> Any:
        return 1


@pytest.mark.parametrize("key", [123, None, b"bytes", "", "k" * 1025, ("t",), ["l"]])
async def test_invalid_keys_raise_invalid_key_error(redis_url: str, key: Any) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        for call in (
            lambda: m.get(key),
            lambda: m.get(key),  # the first get takes the sampled path, later ones do not
            lambda: m.set(key, 1),
            lambda: m.delete(key),
            lambda: m.exists(key),
            lambda: m.get_many([key]),
            lambda: m.set_many(BadMapping(key)),
            lambda: m.get_or_load(key, lambda: 1),
        ):
            with pytest.raises(InvalidKeyError) as info:
                await call()
            assert info.value.key == key
            assert "invalid cache key" in str(info.value)
        assert len(m.l1) == 0
    finally:
        await m.close()


async def test_longest_key_is_accepted(redis_url: str) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        await m.set("k" * 1024, 1)
        assert await m.get("k" * 1024) == 1
    finally:
        await m.close()


@pytest.mark.parametrize("ttl", [0, -1, -0.5, float("nan"), True, "10"])
async def test_bad_ttl_raises_and_caches_nothing(
    redis_url: str, raw: redis.Redis, ttl: Any
) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        with pytest.raises(ValueError, match="ttl_seconds") as info:
            await m.set("k", 1, ttl_seconds=ttl)
        assert "'k'" in str(info.value)
        with pytest.raises(ValueError, match="ttl_seconds"):
            await m.set_many({"k": 1}, ttl_seconds=ttl)
        assert len(m.l1) == 0
        assert raw.dbsize() == 0
    finally:
        await m.close()


async def test_unserializable_value_names_the_key_and_caches_nothing(
    redis_url: str, raw: redis.Redis
) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        with pytest.raises(SerializationError, match="'bad:1'") as info:
            await m.set("bad:1", object())
        assert info.value.key == "bad:1"
        assert isinstance(info.value, TypeError)
        assert m.l1.get("bad:1") is None

        with pytest.raises(SerializationError, match="'bad:2'"):
            await m.set_many({"ok:1": 1, "bad:2": {1, 2}, "ok:3": 3})
        for key in ("ok:1", "bad:2", "ok:3"):
            assert m.l1.get(key) is None
        assert raw.dbsize() == 0

        # a failed overwrite leaves the previous value in place
        await m.set("keep", "old")
        with pytest.raises(SerializationError):
            await m.set("keep", object())
        assert await m.get("keep") == "old"
        assert raw.dbsize() == 1
    finally:
        await m.close()


async def test_corrupt_value_in_redis_is_a_counted_miss(
    redis_url: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    m = HierarchicalCacheManager(config(redis_url))
    try:
        raw.set(PREFIX + "garbage", b"\xff\xfe not a hiercache payload")
        raw.set(PREFIX + "bad-version", b"HC\x09\x00{}")
        raw.set(PREFIX + "bad-json", b"HC\x01\x00{not json")
        raw.set(PREFIX + "bad-zstd", b"HC\x01\x80not zstd")
        assert await m.get("garbage") is None
        assert await m.get("bad-version", MISS) is MISS
        assert await m.get_many(["bad-json", "bad-zstd"]) == {}
        assert m.l1.get("garbage") is None
        assert await m.get_or_load("garbage", lambda: "fresh") == "fresh"
        s = await m.get_statistics()
        assert s["l2_redis"]["errors"]["corrupt"] == 4
        assert s["l2_redis"]["errors"]["incompatible"] == 1  # version 9: a newer writer
        assert s["misses"] == 5
        assert s["l2_redis"]["hits"] == 0
        assert "treated as a miss" in caplog.text
        cold = HierarchicalCacheManager(config(redis_url))
        try:
            assert await cold.get("garbage") == "fresh"  # the load overwrote the garbage
        finally:
            await cold.close()
    finally:
        await m.close()


async def test_async_context_manager_and_repr(redis_url: str) -> None:
    async with HierarchicalCacheManager(config(redis_url, name="orders")) as m:
        await m.set("k", 1)
        assert repr(m) == f"HierarchicalCacheManager(name='orders', l2='{redis_url}', l1_entries=1)"
        assert (await m.get_statistics())["l2_redis"]["available"] is True


async def test_host_port_and_db_select_the_database(redis_server: RedisServer) -> None:
    flush = redis.Redis(host=redis_server.host, port=redis_server.port, db=5)
    flush.flushdb()
    m = HierarchicalCacheManager(
        CacheConfig(
            redis_host=redis_server.host, redis_port=redis_server.port, redis_db=5,
            write_behind=False,
        )
    )  # fmt: skip
    try:
        await m.set("in-db-5", 1)
        assert m.sync.get("in-db-5") == 1
    finally:
        await m.close()
    db0 = redis.Redis(host=redis_server.host, port=redis_server.port, db=0)
    assert flush.exists(PREFIX + "in-db-5") == 1
    assert db0.exists(PREFIX + "in-db-5") == 0
    flush.flushdb()
    flush.close()
    db0.close()


class Repository:
    """A service object whose instances differ by tenant: ``__cache_key__`` says so."""

    def __init__(self, tenant: str, cache: HierarchicalCacheManager) -> None:
        self.tenant = tenant
        self.calls = 0
        self.cache = cache

    def __cache_key__(self) -> str:
        return self.tenant


async def test_decorated_methods_cache_per_instance_key_in_real_redis(
    redis_url: str, raw: redis.Redis
) -> None:
    from hiercache import cache_operation

    m = HierarchicalCacheManager(config(redis_url))

    class Users(Repository):
        @cache_operation(cache_key="users.get", ttl_seconds=60, cache=m)
        async def get(self, user_id: int) -> dict[str, object]:
            self.calls += 1
            return {"tenant": self.tenant, "id": user_id}

    try:
        a, b = Users("acme", m), Users("globex", m)
        assert await a.get(1) == {"tenant": "acme", "id": 1}
        assert await b.get(1) == {"tenant": "globex", "id": 1}
        m.l1.delete(Users.get.cache_key(a, 1))  # type: ignore[attr-defined]
        assert await a.get(1) == {"tenant": "acme", "id": 1}  # from Redis now
        assert (a.calls, b.calls) == (1, 1)
        assert raw.exists(PREFIX + Users.get.cache_key(a, 1)) == 1  # type: ignore[attr-defined]
        assert Users.get.cache_key(a, 1) != Users.get.cache_key(b, 1)  # type: ignore[attr-defined]
    finally:
        await m.close()
