"""L1 paths: hits (async, sync, decorator), peers' gets, memory per entry, full-L1 inserts.

Every hiercache cache here runs with the default settings and the OpenTelemetry SDK and
Prometheus reader installed by the suite (``hiercache.telemetry.setup``).
"""

from __future__ import annotations

import itertools
import time
import tracemalloc
from typing import Any

import cachetools

from harness import Case, Row, bench_config, skipped, timed_async, timed_sync, track
from hiercache import CacheConfig, CacheStrategy, HierarchicalCacheManager, cache_operation

KEY = "user:1"
VALUE = {"id": 1, "name": "Ada", "roles": ["admin", "dev"]}
HIT_N = 20_000


def lru_floor() -> tuple[cachetools.LRUCache[str, Any], Any]:
    """cachetools' LRUCache lookup inside a trivial coroutine: the async floor."""
    lru: cachetools.LRUCache[str, Any] = cachetools.LRUCache(maxsize=1000)
    lru[KEY] = VALUE

    async def floor() -> Any:
        return lru[KEY]

    return lru, floor


async def hit_cases(url: str) -> list[Case]:
    cache = track(HierarchicalCacheManager(bench_config("bench-l1", url)))
    await cache.set(KEY, VALUE, ttl_seconds=3600)
    assert await cache.get(KEY) == VALUE
    lru, floor = lru_floor()
    return [
        Case(
            "L1 hit, async: await cache.get",
            timed_async(lambda: cache.get(KEY)),
            timed_async(floor),
            "cachetools LRUCache in a coroutine",
            1.25,
            HIT_N,
        ),
        Case(
            "L1 hit, sync: cache.sync.get",
            timed_sync(lambda: cache.sync.get(KEY)),
            timed_sync(lambda: lru.get(KEY)),
            "cachetools LRUCache.get",
            2.0,
            HIT_N,
        ),
    ]


async def decorator_cases(url: str) -> tuple[list[Case], list[Row]]:
    cache = track(HierarchicalCacheManager(bench_config("bench-decorator", url)))

    @cache_operation(ttl_seconds=3600, cache=cache)
    async def profile(name: str, page: int, active: bool) -> dict[str, Any]:
        return {"name": name, "page": page, "active": active}

    await profile("ada", 3, True)
    assert await profile("ada", 3, True) == {"name": "ada", "page": 3, "active": True}
    _, floor = lru_floor()
    ours = timed_async(lambda: profile("ada", 3, True))
    cases = [
        Case(
            "decorator hit, 3 args (str, int, bool)",
            ours,
            timed_async(floor),
            "cachetools LRUCache in a coroutine",
            6.0,
            HIT_N // 2,
            base_n=HIT_N,
        )
    ]
    rows: list[Row] = []
    try:
        from cashews import cache as cashews_cache
    except ImportError:
        rows.append(
            skipped("decorator hit vs cashews", "cashews @cache", 15, "not installed", higher=True)
        )
        return cases, rows
    cashews_cache.setup("mem://")

    @cashews_cache(ttl="1h")
    async def profile_cashews(name: str, page: int, active: bool) -> dict[str, Any]:
        return {"name": name, "page": page, "active": active}

    await profile_cashews("ada", 3, True)
    cases.append(
        Case(
            "decorator hit vs cashews (x faster)",
            ours,
            timed_async(lambda: profile_cashews("ada", 3, True)),
            "cashews @cache (mem://)",
            15.0,
            HIT_N // 2,
            higher_is_better=True,
            base_n=HIT_N // 20,
        )
    )
    return cases, rows


async def peer_cases(url: str) -> tuple[list[Case], list[Row]]:
    """L1 hit against the other libraries' in-memory gets (for the record: no target
    beyond "not slower", 1x)."""
    cache = track(HierarchicalCacheManager(bench_config("bench-peers", url)))
    await cache.set(KEY, VALUE, ttl_seconds=3600)
    ours = timed_async(lambda: cache.get(KEY))
    cases: list[Case] = []
    rows: list[Row] = []
    try:
        from aiocache import SimpleMemoryCache

        aio = SimpleMemoryCache()
        await aio.set(KEY, VALUE)
        cases.append(
            Case("L1 hit vs aiocache", ours, timed_async(lambda: aio.get(KEY)),
                 "aiocache SimpleMemoryCache.get", 1.0, HIT_N // 4, base_n=HIT_N // 100)
        )  # fmt: skip
    except ImportError:
        rows.append(skipped("L1 hit vs aiocache", "aiocache", 1.0, "not installed"))
    try:
        from cashews import Cache as CashewsCache

        cw = CashewsCache()
        cw.setup("mem://")
        await cw.set(KEY, VALUE)
        cases.append(
            Case("L1 hit vs cashews", ours, timed_async(lambda: cw.get(KEY)),
                 "cashews mem:// get", 1.0, HIT_N // 4, base_n=HIT_N // 20)
        )  # fmt: skip
    except ImportError:
        rows.append(skipped("L1 hit vs cashews", "cashews", 1.0, "not installed"))
    try:
        from theine import Cache as TheineCache

        th = TheineCache(1000)
        th.set(KEY, VALUE)

        async def theine_get() -> Any:
            return th.get(KEY)

        cases.append(
            Case("L1 hit vs theine", ours, timed_async(theine_get),
                 "theine Cache.get in a coroutine", 1.0, HIT_N)
        )  # fmt: skip
    except ImportError:
        rows.append(skipped("L1 hit vs theine", "theine", 1.0, "not installed"))
    return cases, rows


# -- memory per entry ------------------------------------------------------------------


def _values(n: int, start: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"user:{i}", {"id": i, "name": f"user {i}", "active": True})
        for i in range(start, start + n)
    ]


_rounds = itertools.count()


def memory_case() -> Case:
    """Bytes per entry (tracemalloc), values made during the measurement on both sides."""

    async def ours(n: int) -> float:
        cache = HierarchicalCacheManager(
            CacheConfig(name="bench-memory", l2_backend="none", l1_max_size=n + 1)
        )
        start = next(_rounds) * n
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for key, value in _values(n, start):
            cache.sync.set(key, value, ttl_seconds=3600)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(cache.l1) == n
        return (after - before) / n

    async def base(n: int) -> float:
        lru: cachetools.LRUCache[str, Any] = cachetools.LRUCache(maxsize=n + 1)
        start = next(_rounds) * n
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for key, value in _values(n, start):
            lru[key] = value
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(lru) == n
        return (after - before) / n

    return Case(
        "memory per L1 entry (small dicts, tracemalloc)",
        ours,
        base,
        "cachetools LRUCache",
        1.25,
        5_000,
        rounds=3,
        unit="bytes",
    )


# -- inserts into a full L1 --------------------------------------------------------------

INSERT_SIZE = 1000


def insert_cases() -> list[Case]:
    lru: cachetools.LRUCache[str, Any] = cachetools.LRUCache(maxsize=INSERT_SIZE)
    lru_keys = itertools.count()
    for _ in range(INSERT_SIZE):
        lru[f"k{next(lru_keys)}"] = VALUE

    async def base(n: int) -> float:
        keys = [f"k{next(lru_keys)}" for _ in range(n)]
        started = time.perf_counter()
        for key in keys:
            lru[key] = VALUE
        return (time.perf_counter() - started) / n

    cases = []
    for strategy in (CacheStrategy.LRU, CacheStrategy.LFU, CacheStrategy.FIFO, CacheStrategy.TTL):
        config = CacheConfig(
            name=f"bench-insert-{strategy.value}",
            l2_backend="none",
            l1_max_size=INSERT_SIZE,
            l1_strategy=strategy,
        )
        cases.append(
            Case(
                f"insert into a full L1 ({strategy.value})",
                _tier_inserts(HierarchicalCacheManager(config)),
                base,
                "cachetools LRUCache insert",
                2.0,
                20_000,
                rounds=9,
            )
        )
    return cases


def _tier_inserts(cache: HierarchicalCacheManager) -> Any:
    l1 = cache.l1
    counter = itertools.count()
    for _ in range(INSERT_SIZE):
        l1.set(f"k{next(counter)}", VALUE, 3600.0)

    async def ours(n: int) -> float:
        keys = [f"k{next(counter)}" for _ in range(n)]
        started = time.perf_counter()
        for key in keys:
            l1.set(key, VALUE, 3600.0)
        return (time.perf_counter() - started) / n

    return ours
