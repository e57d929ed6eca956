"""Observability paths: an L1 hit inside a sampled request, the Prometheus scrape of
busy caches, and ``get_statistics()``."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

from opentelemetry import trace

from harness import Case, bench_config, track
from hiercache import HierarchicalCacheManager
from paths_l1 import HIT_N, KEY, VALUE, lru_floor

SCRAPED_CACHES = 10
BUSY_GETS = 50_000
IDLE_GETS = 10


async def traced_case(url: str) -> Case:
    """``await cache.get`` hits inside a sampled request span (one span per 100 hits)."""
    cache = track(HierarchicalCacheManager(bench_config("bench-traced", url)))
    await cache.set(KEY, VALUE, ttl_seconds=3600)
    tracer = trace.get_tracer("hiercache-bench")
    get = cache.get

    async def ours(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n // 100):
            with tracer.start_as_current_span("request") as span:
                assert span.is_recording()
                for _ in range(100):
                    await get(KEY)
        return (time.perf_counter() - started) / (n // 100 * 100)

    _, floor = lru_floor()

    async def base(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await floor()
        return (time.perf_counter() - started) / n

    return Case(
        "L1 hit inside a sampled request span",
        ours,
        base,
        "cachetools LRUCache in a coroutine",
        20.0,
        HIT_N // 4,
        base_n=HIT_N,
    )


async def scrape_case(url: str, metrics_url: str) -> Case:
    """One /metrics scrape of 10 caches after 50,000 gets each, against the scrape of the
    same caches after 10 gets each (the gets are not timed)."""
    caches = []
    for i in range(SCRAPED_CACHES):
        cache = track(HierarchicalCacheManager(bench_config(f"bench-scrape-{i}", url)))
        await cache.set(KEY, VALUE, ttl_seconds=3600)
        caches.append(cache)

    async def scrape_after(gets: int) -> float:
        for cache in caches:
            get = cache.get
            for _ in range(gets):
                await get(KEY)
        started = time.perf_counter()
        # Blocking on purpose: the scrape is timed alone, nothing else runs on the loop.
        with urllib.request.urlopen(metrics_url, timeout=30) as response:  # noqa: ASYNC210
            body = response.read()
        elapsed = time.perf_counter() - started
        assert b"bench-scrape-9" in body
        return elapsed

    async def ours(n: int) -> float:
        return await scrape_after(BUSY_GETS)

    async def base(n: int) -> float:
        return await scrape_after(IDLE_GETS)

    case = Case(
        "Prometheus scrape, 10 caches after 50,000 gets each",
        ours,
        base,
        "the scrape after 10 gets each",
        3.0,
        1,
        rounds=7,
    )
    case.keep = caches  # type: ignore[attr-defined]  # the caches live as long as the case
    return case


async def statistics_case(url: str) -> Case:
    cache = track(HierarchicalCacheManager(bench_config("bench-stats", url)))
    await cache.set(KEY, VALUE, ttl_seconds=3600)
    for _ in range(100):
        await cache.get(KEY)
        await cache.get("absent")
    report: dict[str, Any] = cache.statistics()
    assert report["l1_memory"]["hits"] >= 100
    _, floor = lru_floor()
    statistics = cache.statistics

    async def in_coroutine() -> dict[str, Any]:
        return statistics()

    async def ours(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await in_coroutine()
        return (time.perf_counter() - started) / n

    async def base(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await floor()
        return (time.perf_counter() - started) / n

    # statistics(), in a coroutine as the floor is: get_statistics() adds the size
    # advisor's what_if curve, which statistics() leaves out to stay cheap.
    return Case(
        "statistics() in a coroutine",
        ours,
        base,
        "cachetools LRUCache in a coroutine",
        40.0,
        1_000,
        base_n=HIT_N,
    )
