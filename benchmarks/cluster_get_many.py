"""``get_many`` of 100 keys on a Redis Cluster, against the per-slot MGETs it needs.

The floor, measured in the same run on the same cluster, is redis-py's cluster pipeline
with one MGET per hash slot of the keys (what any client must send, since a Cluster
refuses a cross-slot MGET). hiercache's figure is ``get_many`` from L2 (a cache that
promotes nothing, so L1 never answers), async and sync. Each is measured in alternating
batches (floor, hiercache, floor, ...); the ratio is the median of the batches' ratios,
so the noise of a shared machine hits both sides alike.

    python benchmarks/cluster_get_many.py [--url redis+cluster://host:port] [--target 1.3]

Without ``--url`` it starts a 3-primary, 3-replica cluster from ``redis-server`` (the
test fixtures' ``run_cluster``) and stops it afterwards. Exits non-zero when a ratio
exceeds the target.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis.asyncio.cluster
import redis.cluster

from hiercache import CacheConfig, HierarchicalCacheManager
from hiercache.topology import parse_multi_host, slot_groups

KEYS = 100
BATCH = 10
BATCHES = 41
PREFIX = "hiercache:"


def paired_sync(floor: Callable[[], Any], ours: Callable[[], Any]) -> tuple[float, float]:
    """Median per-call cost of each, measured in alternating batches (a shared machine's
    noise then hits both alike); the ratio is the median of the batches' ratios."""
    pairs = []
    for _ in range(BATCHES):
        timed = []
        for fn in (floor, ours):
            started = time.perf_counter()
            for _ in range(BATCH):
                fn()
            timed.append((time.perf_counter() - started) / BATCH)
        pairs.append((timed[0], timed[1]))
    return statistics.median(f for f, _ in pairs), statistics.median(o / f for f, o in pairs)


async def paired_async(
    floor: Callable[[], Awaitable[Any]], ours: Callable[[], Awaitable[Any]]
) -> tuple[float, float]:
    pairs = []
    for _ in range(BATCHES):
        timed = []
        for fn in (floor, ours):
            started = time.perf_counter()
            for _ in range(BATCH):
                await fn()
            timed.append((time.perf_counter() - started) / BATCH)
        pairs.append((timed[0], timed[1]))
    return statistics.median(f for f, _ in pairs), statistics.median(o / f for f, o in pairs)


@contextmanager
def cluster_url(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from cluster_servers import run_cluster  # the test fixtures' cluster

    with run_cluster() as cluster:
        yield cluster.url


def per_slot(keys: list[str]) -> list[list[str]]:
    raw = [PREFIX + k for k in keys]
    return [[raw[i] for i in group] for group in slot_groups(raw)]


async def measure(url: str) -> dict[str, float]:
    config = CacheConfig(
        redis_url=url, write_behind=False, telemetry_enabled=False, hierarchical_caching=False
    )
    keys = [f"user:{i}" for i in range(KEYS)]
    writer = HierarchicalCacheManager(config)
    cache = HierarchicalCacheManager(config)  # its own L1, which it never fills
    await writer.set_many({k: {"id": k, "name": "x" * 80} for k in keys})
    groups = per_slot(keys)
    host, port = parse_multi_host(url).hosts[0]
    sync_raw = redis.cluster.RedisCluster(host=host, port=port)
    async_raw = redis.asyncio.cluster.RedisCluster(host=host, port=port)

    def floor_sync() -> Any:
        pipe = sync_raw.pipeline()
        for group in groups:
            pipe.execute_command("MGET", *group)
        return pipe.execute()

    async def floor_async() -> Any:
        async with async_raw.pipeline() as pipe:
            for group in groups:
                pipe.execute_command("MGET", *group)
            return await pipe.execute()

    got = await cache.get_many(keys)
    assert len(got) == KEYS, (len(got), cache.sync.get_statistics()["l2_redis"])
    assert sum(len(r) for r in floor_sync()) == KEYS
    await floor_async()
    floor_a, ratio_a = await paired_async(floor_async, lambda: cache.get_many(keys))
    floor_s, ratio_s = paired_sync(floor_sync, lambda: cache.sync.get_many(keys))
    results = {
        "slots": float(len(groups)),
        "floor_async": floor_a,
        "ratio_async": ratio_a,
        "floor_sync": floor_s,
        "ratio_sync": ratio_s,
    }
    await writer.clear()
    for m in (writer, cache):
        await m.close()
    sync_raw.close()
    await async_raw.aclose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a redis+cluster:// URL (default: start a local cluster)")
    parser.add_argument("--target", type=float, default=1.3, help="max hiercache/floor ratio")
    args = parser.parse_args()
    with cluster_url(args.url) as url:
        r = asyncio.run(measure(url))
    print(f"get_many of {KEYS} keys over {r['slots']:.0f} hash slots (median per call)")
    worst = 0.0
    for front in ("async", "sync"):
        floor, ratio = r[f"floor_{front}"], r[f"ratio_{front}"]
        worst = max(worst, ratio)
        print(
            f"  {front:5}  per-slot MGETs {floor * 1e3:7.3f} ms   "
            f"hiercache {floor * ratio * 1e3:7.3f} ms   ratio {ratio:.2f}x "
            f"(target <= {args.target}x)"
        )
    return 0 if worst <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
