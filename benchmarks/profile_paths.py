"""cProfile text profiles of the suite's paths, written to benchmarks/profiles/NAME.txt.

    python benchmarks/profile_paths.py [NAME ...]

Paths are printed relative to the checkout or site-packages, so the files hold no
machine's absolute paths. Needs redis-server for the L2 paths (started and stopped here).
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import sys
import sysconfig
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import prometheus_client

import hiercache.telemetry
from harness import bench_config, close_all, redis_server, track
from hiercache import HierarchicalCacheManager, cache_operation
from paths_l1 import KEY, VALUE

OUT = Path(__file__).resolve().parent / "profiles"
ROOT = str(Path(__file__).resolve().parents[1]) + "/"
SITE = sysconfig.get_paths()["purelib"] + "/"
STDLIB = sysconfig.get_paths()["stdlib"] + "/"
CALLS = 20_000


def clean(text: str) -> str:
    text = text.replace(SITE, "site-packages/").replace(STDLIB, "stdlib/").replace(ROOT, "")
    return text.replace(sys.prefix, "<venv>")


async def profile(
    name: str,
    op: Callable[[], Awaitable[Any]],
    calls: int = CALLS,
    prepare: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Profile ``calls`` runs of ``op`` (``prepare``, if any, runs unprofiled before each)."""
    for _ in range(min(calls, 100)):
        await op()
    prof = cProfile.Profile()
    for _ in range(calls):
        if prepare is not None:
            await prepare()
        prof.enable()
        await op()
        prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.txt").write_text(f"# {name}: {calls} calls\n" + clean(out.getvalue()))
    print(f"wrote {OUT.name}/{name}.txt")


async def main(url: str, metrics_url: str, wanted: list[str]) -> None:
    from opentelemetry import trace

    cache = track(HierarchicalCacheManager(bench_config("profile", url)))
    await cache.set(KEY, VALUE, ttl_seconds=3600)

    @cache_operation(ttl_seconds=3600, cache=cache)
    async def lookup(name: str, page: int, active: bool) -> dict[str, Any]:
        return {"name": name, "page": page, "active": active}

    tracer = trace.get_tracer("profile")

    async def traced_hits() -> None:
        with tracer.start_as_current_span("request"):
            for _ in range(100):
                await cache.get(KEY)

    caches = [track(HierarchicalCacheManager(bench_config(f"profile-{i}", url))) for i in range(10)]
    for c in caches:
        await c.set(KEY, VALUE, ttl_seconds=3600)

    async def busy() -> None:  # 50,000 gets on each of 10 caches, not profiled
        for c in caches:
            for _ in range(50_000):
                await c.get(KEY)

    async def scrape() -> None:  # what the /metrics handler runs, on this thread
        prometheus_client.generate_latest(prometheus_client.REGISTRY)

    async def l2_get() -> None:
        cache.l1.delete(KEY)
        await cache.get(KEY)

    async def l2_get_many() -> None:
        for k in keys:
            cache.l1.delete(k)
        await cache.get_many(keys)

    writer = track(HierarchicalCacheManager(bench_config("profile-wt", url, write_through=True)))

    async def wt_set() -> None:
        await writer.set(KEY, VALUE, ttl_seconds=3600)

    keys = [f"many:{i}" for i in range(100)]
    await cache.set_many({k: VALUE for k in keys}, ttl_seconds=3600)
    await cache.flush()
    paths: dict[str, tuple[Callable[[], Awaitable[Any]], int, Any]] = {
        "decorator_hit": (lambda: lookup("ada", 3, True), CALLS, None),
        "statistics": (cache.get_statistics, 2_000, None),
        "traced_l1_hit": (traced_hits, 200, None),
        "scrape": (scrape, 5, busy),
        "l2_get": (l2_get, 2_000, None),
        "l2_get_many": (l2_get_many, 200, None),
        "write_through_set": (wt_set, 2_000, None),
    }
    for name, (op, calls, prepare) in paths.items():
        if not wanted or name in wanted:
            await profile(name, op, calls, prepare)
    await close_all()


if __name__ == "__main__":
    handle = hiercache.telemetry.setup(prometheus_host="127.0.0.1", prometheus_port=0)
    assert handle.metrics_address is not None
    host, port = handle.metrics_address
    try:
        with redis_server() as redis_url:
            asyncio.run(main(redis_url, f"http://{host}:{port}/metrics", sys.argv[1:]))
    finally:
        handle.shutdown()
