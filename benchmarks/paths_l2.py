"""L2 paths, against raw redis-py on the same redis-server: single gets (async, sync,
decode and promotion included), 50 concurrent gets, get_many, set_many, write-through set.

hiercache's caches are write-through here, so a ``set`` has reached Redis when it returns
(the default write-behind queue would time only an enqueue). Every read is an L1 miss:
the key is dropped from L1 (untimed) before it is read again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import redis
import redis.asyncio

from harness import Case, bench_config
from hiercache import HierarchicalCacheManager

KEYS = 2_000
TTL = 3600
POOL = 64  # hiercache's default redis_max_connections: the raw clients get the same
CONCURRENCY = 50
#: The rows this module measures (the suite starts the fixture only if one is wanted).
PATHS = (
    "L2 get, async (decode + promotion)",
    "L2 get, sync (decode + promotion)",
    f"{CONCURRENCY} concurrent L2 gets (throughput, x raw)",
    "get_many of 100 keys (L1 misses)",
    "set_many of 100 (write-through)",
    "write-through set",
)


def value(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"user {i}", "roles": ["reader"], "score": i / 7}


class Fixture:
    """hiercache and raw clients over the same Redis, with KEYS values in it for each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cache = HierarchicalCacheManager(
            bench_config("bench-l2", url, write_through=True, l1_max_size=KEYS * 2)
        )
        self.keys = [f"bench:{i}" for i in range(KEYS)]
        self.raw_keys = [f"raw:bench:{i}" for i in range(KEYS)]
        self.aio = redis.asyncio.Redis.from_pool(
            redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=POOL)
        )
        self.sync = redis.Redis.from_pool(
            redis.BlockingConnectionPool.from_url(url, max_connections=POOL)
        )

    async def fill(self) -> None:
        await self.cache.set_many({k: value(i) for i, k in enumerate(self.keys)}, ttl_seconds=TTL)
        pipe = self.aio.pipeline(transaction=False)
        for i, k in enumerate(self.raw_keys):
            pipe.set(k, orjson.dumps(value(i)), px=TTL * 1000)
        await pipe.execute()
        self.forget()
        assert await self.cache.get(self.keys[7]) == value(7)
        self.forget()

    def forget(self, keys: list[str] | None = None) -> None:
        """Drop keys from L1 (untimed), so the next read of them goes to Redis."""
        l1 = self.cache.l1
        for k in keys if keys is not None else self.keys:
            l1.delete(k)

    async def close(self) -> None:
        await self.cache.close()
        await self.aio.aclose()
        self.sync.close()


def single_get_cases(fx: Fixture) -> list[Case]:
    cache, aio, sync = fx.cache, fx.aio, fx.sync

    async def ours(n: int) -> float:
        keys = fx.keys[:n]
        fx.forget(keys)
        started = time.perf_counter()
        for k in keys:
            await cache.get(k)
        return (time.perf_counter() - started) / n

    async def base(n: int) -> float:
        started = time.perf_counter()
        for k in fx.raw_keys[:n]:
            orjson.loads(await aio.get(k))
        return (time.perf_counter() - started) / n

    async def ours_sync(n: int) -> float:
        keys = fx.keys[:n]
        fx.forget(keys)
        get = cache.sync.get
        started = time.perf_counter()
        for k in keys:
            get(k)
        return (time.perf_counter() - started) / n

    async def base_sync(n: int) -> float:
        started = time.perf_counter()
        for k in fx.raw_keys[:n]:
            orjson.loads(sync.get(k))  # type: ignore[arg-type]
        return (time.perf_counter() - started) / n

    return [
        Case(
            "L2 get, async (decode + promotion)",
            ours,
            base,
            "redis.asyncio GET + orjson.loads",
            1.15,
            400,
            rounds=9,
        ),
        Case(
            "L2 get, sync (decode + promotion)",
            ours_sync,
            base_sync,
            "redis.Redis GET + orjson.loads",
            1.15,
            400,
            rounds=9,
        ),
    ]


def concurrent_case(fx: Fixture) -> Case:
    """50 tasks reading distinct keys at once: throughput, hiercache over raw."""
    cache, aio = fx.cache, fx.aio

    async def run(n: int, read: Any, keys: list[str]) -> float:
        per_task = n // CONCURRENCY

        async def task(t: int) -> None:
            for k in keys[t * per_task : (t + 1) * per_task]:
                await read(k)

        started = time.perf_counter()
        await asyncio.gather(*(task(t) for t in range(CONCURRENCY)))
        return (time.perf_counter() - started) / (per_task * CONCURRENCY)

    async def ours(n: int) -> float:
        fx.forget()
        return await run(n, cache.get, fx.keys)

    async def raw_read(k: str) -> Any:
        return orjson.loads(await aio.get(k))

    async def base(n: int) -> float:
        return await run(n, raw_read, fx.raw_keys)

    return Case(
        f"{CONCURRENCY} concurrent L2 gets (throughput, x raw)",
        ours,
        base,
        f"redis.asyncio GET + orjson.loads, pool {POOL}",
        2.5,
        KEYS,
        higher_is_better=True,
        rounds=7,
    )


def batch_cases(fx: Fixture) -> list[Case]:
    cache, aio = fx.cache, fx.aio
    batches = [(fx.keys[i : i + 100], fx.raw_keys[i : i + 100]) for i in range(0, KEYS, 100)]

    async def get_many(n: int) -> float:
        total = 0.0
        for i in range(n):
            keys = batches[i % len(batches)][0]
            fx.forget(keys)
            started = time.perf_counter()
            found = await cache.get_many(keys)
            total += time.perf_counter() - started
            assert len(found) == 100
        return total / n

    async def raw_mget(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            raws = await aio.mget(batches[i % len(batches)][1])
            [orjson.loads(r) for r in raws]
        return (time.perf_counter() - started) / n

    items = [{k: value(j) for j, k in enumerate(keys)} for keys, _ in batches]
    raw_items = [[(k, value(j)) for j, k in enumerate(raws)] for _, raws in batches]

    async def set_many(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            await cache.set_many(items[i % len(items)], ttl_seconds=TTL)
        return (time.perf_counter() - started) / n

    async def raw_pipeline(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            pipe = aio.pipeline(transaction=False)
            for k, v in raw_items[i % len(raw_items)]:
                pipe.set(k, orjson.dumps(v), px=TTL * 1000)
            await pipe.execute()
        return (time.perf_counter() - started) / n

    one = value(1)

    async def set_one(n: int) -> float:
        started = time.perf_counter()
        for k in fx.keys[:n]:
            await cache.set(k, one, ttl_seconds=TTL)
        return (time.perf_counter() - started) / n

    async def raw_set(n: int) -> float:
        started = time.perf_counter()
        for k in fx.raw_keys[:n]:
            await aio.set(k, orjson.dumps(one), px=TTL * 1000)
        return (time.perf_counter() - started) / n

    return [
        Case("get_many of 100 keys (L1 misses)", get_many, raw_mget,
             "redis.asyncio MGET + orjson.loads", 1.2, 20, rounds=9),
        Case("set_many of 100 (write-through)", set_many, raw_pipeline,
             "redis.asyncio pipeline of 100 SET PX", 1.2, 20, rounds=9),
        Case("write-through set", set_one, raw_set, "redis.asyncio SET PX + orjson.dumps",
             1.15, 400, rounds=9),
    ]  # fmt: skip
