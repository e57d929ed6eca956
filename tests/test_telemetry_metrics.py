"""Metrics: exact exported counts per instrument and attribute set, against real Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import redis

from fakes import FakeClock
from hiercache import CacheConfig, HierarchicalCacheManager
from hiercache.telemetry import LATENCY_BUCKETS
from hiercache.telemetry.instruments import _Instruments
from otel_providers import install, unique_name

#: Every error.type of the contract: all exported, zero or not.
ERROR_TYPES = (
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
)

P = "hiercache"


def fs(**attrs: str) -> frozenset[tuple[str, str]]:
    return frozenset((k.replace("_", "."), v) for k, v in attrs.items())


def level(lvl: str, **attrs: str) -> frozenset[tuple[str, str]]:
    return fs(cache_level=lvl, **attrs)


def hits(l1_get: int, l1_many: int, l2_get: int, l2_many: int) -> dict[Any, float]:
    return {
        level("l1_memory", cache_operation="get"): l1_get,
        level("l1_memory", cache_operation="get_many"): l1_many,
        level("l2_redis", cache_operation="get"): l2_get,
        level("l2_redis", cache_operation="get_many"): l2_many,
    }


def evictions(l1: dict[str, int], l2: dict[str, int]) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for lvl, counts in (("l1_memory", l1), ("l2_redis", l2)):
        for reason in ("size", "expired", "deleted", "invalidated"):
            attrs = {"cache.level": lvl, "cache.eviction.reason": reason}
            out[frozenset(attrs.items())] = counts.get(reason, 0)
    return out


async def test_scripted_scenario_exports_exact_counts(redis_url: str) -> None:
    otel = install()
    clock = FakeClock()
    name = unique_name("metrics")
    cfg = CacheConfig(
        name=name,
        redis_url=redis_url,
        l1_max_size=2,
        l1_ttl_seconds=10,
        write_behind=False,
        warming_enabled=False,
        l1_latency_sample_every=1,  # every L1 hit timed: histogram counts are exact too
    )
    gate = asyncio.Event()
    loading = asyncio.Event()

    async def slow() -> str:
        loading.set()
        await gate.wait()
        return "slow"

    async def broken() -> str:
        raise RuntimeError("backend down")

    async with HierarchicalCacheManager(cfg, clock=clock) as m:
        await m.set("a", 1)
        await m.set("b", 2)
        assert await m.get("a") == 1  # L1 hit
        assert await m.get("b") == 2  # L1 hit
        await m.set("c", 3)  # L1 full: evicts "a" (size)
        assert await m.get("a") == 1  # L2 hit, promoted; evicts "b" (size)
        assert await m.get("nope") is None  # miss
        clock.now += 11  # every L1 entry is now expired
        assert await m.get("c") == 3  # expired in L1 (c); L2 hit, promoted; purge expires a
        assert await m.delete("c")  # deleted in L1 and in L2
        await m.set("x:1", 1)
        await m.set("x:2", 2)
        assert await m.invalidate_pattern("x:*") == 2  # invalidated in L1 and L2
        assert await m.get_many(["a", "b", "nope"]) == {"a": 1, "b": 2}  # 2 L2 hits, 1 miss
        assert await m.get_many(["a"]) == {"a": 1}  # L1 hit
        assert await m.get_or_load("loaded", lambda: "v") == "v"  # miss, load; evicts (size)
        with pytest.raises(RuntimeError):
            await m.get_or_load("err", broken)  # miss, failed load
        raw = redis.Redis.from_url(redis_url)
        raw.set(cfg.key_prefix + "bad", b"\xff not a payload")
        raw.close()
        assert await m.get("bad") is None  # corrupt L2 value: an error and a miss

        misses_before = m.stats.total("misses", operation="get")
        leader = asyncio.create_task(m.get_or_load("C", slow))
        await loading.wait()
        follower = asyncio.create_task(m.get_or_load("C", slow))
        # The follower counts its miss and joins the flight in one step; wait for that.
        while m.stats.total("misses", operation="get") < misses_before + 2:  # noqa: ASYNC110
            await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(leader, follower) == ["slow", "slow"]  # evicts (size)

        stats = await m.get_statistics()
        v = otel.values
        assert v(name, f"{P}.hits") == hits(l1_get=2, l1_many=1, l2_get=2, l2_many=2)
        assert v(name, f"{P}.misses") == {
            fs(cache_operation="get"): 6,
            fs(cache_operation="get_many"): 1,
        }
        assert v(name, f"{P}.promotions") == {frozenset(): 4}
        assert v(name, f"{P}.evictions") == evictions(
            {"size": 4, "expired": 2, "deleted": 1, "invalidated": 2},
            {"deleted": 1, "invalidated": 2},
        )
        assert v(name, f"{P}.loads") == {
            fs(cache_result="success"): 2,
            fs(cache_result="error"): 1,
        }
        assert v(name, f"{P}.coalesced") == {frozenset(): 1}
        assert v(name, f"{P}.l2.errors") == {
            frozenset({("error.type", t)}): 1 if t == "corrupt" else 0 for t in ERROR_TYPES
        }
        assert v(name, f"{P}.entries") == {level("l1_memory"): len(m.l1)}
        assert v(name, f"{P}.size") == {level("l1_memory"): m.l1.size_bytes}
        assert m.l1.size_bytes > 0
        assert v(name, f"{P}.l2.up") == {frozenset(): 1}
        assert v(name, f"{P}.write_behind.queue_depth") == {frozenset(): 0}

        # The exported counts are the very counters get_statistics() reads.
        assert stats["l1_memory"]["hits"] == 3
        assert stats["l2_redis"]["hits"] == 4
        assert stats["misses"] == 7
        assert stats["promotions"] == 4
        assert stats["coalesced"] == 1
        assert stats["loads"] == {"success": 2, "error": 1}
        assert stats["l1_memory"]["evictions"] == {
            "size": 4,
            "expired": 2,
            "deleted": 1,
            "invalidated": 2,
        }

        latency = v(name, f"{P}.latency")
        assert latency[level("l1_memory", cache_operation="get")] == 2
        assert latency[level("backend", cache_operation="load")] == 3  # failed load timed too
        l2 = {
            dict(k)["cache.operation"]: n
            for k, n in latency.items()
            if ("cache.level", "l2_redis") in k
        }
        # One sample per round trip, failed or not.
        assert l2["ping"] == 1
        assert l2["set"] == 7
        assert l2["get"] == 8
        assert l2["get_many"] == 1
        assert l2["delete"] == 2  # UNLINK of c, UNLINK of the invalidated batch
        assert l2["scan"] == 1
        assert l2["publish"] == 1  # the backplane message of the pattern invalidation
        assert set(latency) <= {
            level(lvl, cache_operation=op)
            for lvl, ops in (
                ("l1_memory", ["get"]),
                (
                    "l2_redis",
                    ["ping", "get", "get_many", "set", "delete", "scan", "exists", "publish"],
                ),
                ("backend", ["load", "warm"]),
            )
            for op in ops
        }


async def test_latency_buckets_are_exported_as_advised(redis_url: str) -> None:
    otel = install()
    name = unique_name("buckets")
    async with HierarchicalCacheManager(CacheConfig(name=name, redis_url=redis_url)) as m:
        await m.get("a")
    histograms = [p for n, _, p in otel.points(name) if n == f"{P}.latency"]
    assert histograms
    for point in histograms:
        assert tuple(point.explicit_bounds) == LATENCY_BUCKETS
    assert LATENCY_BUCKETS[0] == 1e-6
    assert LATENCY_BUCKETS[-1] == 5.0


async def test_caches_sharing_a_name_add_up() -> None:
    otel = install()
    name = unique_name("shared")
    one = HierarchicalCacheManager(CacheConfig(name=name, l2_backend="none"))
    two = HierarchicalCacheManager(CacheConfig(name=name, l2_backend="none"))
    for m, n in ((one, 3), (two, 4)):
        await m.set("k", 1)
        for _ in range(n):
            await m.get("k")
    got = otel.values(name, f"{P}.hits")
    assert got[level("l1_memory", cache_operation="get")] == 7
    assert otel.values(name, f"{P}.entries") == {level("l1_memory"): 2}


async def test_telemetry_off_exports_nothing() -> None:
    otel = install()
    name = unique_name("off")
    m = HierarchicalCacheManager(CacheConfig(name=name, l2_backend="none", telemetry_enabled=False))
    await m.set("k", 1)
    await m.get("k")
    assert list(otel.points(name)) == []
    assert m.stats.total("hits") == 1


def test_instruments_made_before_the_provider_bind_to_it_later() -> None:
    """``_Instruments.for_prefix`` caches instruments made from the API's proxy meter;
    once a provider is installed they must export through it (the proxy swaps them)."""
    script = textwrap.dedent(
        """
        import asyncio
        from hiercache import CacheConfig, HierarchicalCacheManager
        from hiercache.telemetry.instruments import _Instruments

        early = HierarchicalCacheManager(CacheConfig(name="early", l2_backend="none"))
        first = _Instruments.for_prefix("hiercache")

        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        late = HierarchicalCacheManager(CacheConfig(name="late", l2_backend="none"))
        assert _Instruments.for_prefix("hiercache") is first

        async def main():
            for m in (early, late):
                await m.set("k", 1)
                for _ in range(200):
                    await m.get("k")
        asyncio.run(main())
        out = {}
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        a = dict(p.attributes)
                        if metric.name == "hiercache.hits" and a["cache.level"] == "l1_memory" \\
                                and a["cache.operation"] == "get":
                            out[a["cache.name"]] = p.value
                        if metric.name == "hiercache.latency":
                            out["latency:" + a["cache.name"]] = p.count
        print(sorted(out.items()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(
        [("early", 200), ("late", 200), ("latency:early", 3), ("latency:late", 3)]
    )


def test_instruments_are_shared_per_prefix() -> None:
    assert _Instruments.for_prefix("hiercache") is _Instruments.for_prefix("hiercache")
    assert _Instruments.for_prefix("other_prefix") is not _Instruments.for_prefix("hiercache")


def test_library_never_imports_the_sdk() -> None:
    """Library modules use the OpenTelemetry API only.

    redis-py >= 8 imports ``opentelemetry.sdk`` by itself whenever it is installed
    (``redis.observability``), so a plain look at ``sys.modules`` proves nothing here.
    Instead the SDK, the exporters and prometheus_client are made unimportable, and
    importing and using hiercache (async, sync, decorator, L2) must still work.
    """
    script = textwrap.dedent(
        """
        import asyncio, importlib.abc, sys

        BLOCKED = ("opentelemetry.sdk", "opentelemetry.exporter", "prometheus_client")
        attempts = []

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.startswith(BLOCKED):
                    attempts.append(name)
                    raise ImportError(f"{name} is blocked")
                return None

        sys.meta_path.insert(0, Block())
        import redis  # may try (and fail) to import the SDK by itself
        attempts.clear()

        import hiercache
        from hiercache import CacheConfig, HierarchicalCacheManager, cache_operation
        from opentelemetry import trace

        async def main():
            m = HierarchicalCacheManager(CacheConfig(name="x", l2_backend="embedded"))

            @cache_operation(cache=m)
            async def f(x):
                return x

            async with m:
                await m.set("a", 1)
                for _ in range(100):
                    await m.get("a")
                await m.get("b")
                await f(1)
                m.sync.get("a")
                with trace.get_tracer("t").start_as_current_span("s"):
                    await m.get("a")
                await m.get_statistics()
        asyncio.run(main())
        print("attempts", attempts)
        print("api", "opentelemetry.metrics" in sys.modules, "opentelemetry.trace" in sys.modules)
        print("sdk", sorted(n for n in sys.modules if n.startswith(BLOCKED)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["attempts []", "api True True", "sdk []"]


async def test_l1_latency_is_sampled_and_recorded_at_collection() -> None:
    """Every Nth L1 hit is timed; samples wait in a bounded reservoir until collection."""
    from hiercache.telemetry.instruments import L1_SAMPLES_PER_COLLECTION

    otel = install()
    name = unique_name("sampled")
    m = HierarchicalCacheManager(
        CacheConfig(name=name, l2_backend="none", l1_latency_sample_every=4)
    )
    await m.set("k", 1)
    for _ in range(400):
        await m.get("k")
    assert len(m.telemetry._l1_samples) == 100  # kept, not yet recorded
    assert otel.values(name, f"{P}.latency") == {level("l1_memory", cache_operation="get"): 100}
    assert m.telemetry._l1_samples == []  # the collection recorded them
    for _ in range(4 * (L1_SAMPLES_PER_COLLECTION + 500)):
        m.sync.get("k")
    assert len(m.telemetry._l1_samples) == L1_SAMPLES_PER_COLLECTION
    latency = otel.values(name, f"{P}.latency")
    assert latency == {level("l1_memory", cache_operation="get"): 100 + L1_SAMPLES_PER_COLLECTION}
    hits = otel.values(name, f"{P}.hits")[level("l1_memory", cache_operation="get")]
    assert hits == 400 + 4 * (L1_SAMPLES_PER_COLLECTION + 500)  # counts are never sampled


@pytest.mark.parametrize("api", ["async", "sync"])
async def test_warming_loads_are_timed_and_counted_failed_or_not(api: str) -> None:
    otel = install()
    name = unique_name("warm")
    m = HierarchicalCacheManager(CacheConfig(name=name, l2_backend="none"))

    def load(key: str) -> str:
        if key == "bad":
            raise RuntimeError("backend down")
        return key.upper()

    try:
        if api == "async":
            assert await m.warm_cache(["a", "b", "bad"], load) == 2
        else:
            assert m.sync.warm_cache(["a", "b", "bad"], load) == 2
        latency = otel.values(name, f"{P}.latency")
        assert latency[fs(cache_level="backend", cache_operation="warm")] == 3
        assert otel.values(name, f"{P}.loads") == {
            fs(cache_result="success"): 2,
            fs(cache_result="error"): 1,
        }
    finally:
        await m.close()


async def test_an_unserializable_value_is_counted_as_a_serialization_error() -> None:
    otel = install()
    name = unique_name("ser")
    m = HierarchicalCacheManager(CacheConfig(name=name, l2_backend="none"))
    try:
        with pytest.raises(TypeError):  # SerializationError, a TypeError naming the key
            await m.set("k", {1, 2})
        assert otel.values(name, f"{P}.l2.errors")[fs(error_type="serialization")] == 1
        assert (await m.get_statistics())["l2_redis"]["errors"]["serialization"] == 1
    finally:
        await m.close()
