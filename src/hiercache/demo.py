"""The demo: an LLM-like workload against a slow fake backend, through the decorator.

Zipf-popular prompts hit a backend that takes ``--backend-ms`` per call. L1 is kept
small, so popular prompts live in L1, the long tail in L2, and new prompts miss.
It prints the hit ratio per tier, latency per tier against the backend's, and the
speedup. Without ``CACHE_REDIS_URL`` it runs on an embedded Redis-compatible L2.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import random
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from hiercache.decorator import cache_operation
from hiercache.manager import HierarchicalCacheManager
from hiercache.settings import CacheConfig, L2Backend

called_backend: ContextVar[bool] = ContextVar("called_backend", default=False)
TIERS = ("l1_memory", "l2_redis", "coalesced", "backend")


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in TIERS})
    backend_calls: list[float] = field(default_factory=list)

    def add(self, tier: str, seconds: float) -> None:
        self.latencies[tier].append(seconds)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.latencies.values())


class Zipf:
    """Draws ranks 0..n-1 with P(rank k) proportional to 1/(k+1)^s (s=0: uniform)."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        self.rng = rng
        self.n = n
        self.cdf: list[float] = []
        if s > 0:
            acc = 0.0
            for k in range(n):
                acc += 1.0 / (k + 1) ** s
                self.cdf.append(acc)

    def draw(self) -> int:
        if not self.cdf:
            return self.rng.randrange(self.n)
        return bisect.bisect_left(self.cdf, self.rng.random() * self.cdf[-1])


def demo_config(l1_size: int) -> CacheConfig:
    env_url = os.environ.get("CACHE_REDIS_URL") or os.environ.get("REDIS_URL")
    overrides: dict[str, Any] = {"l1_max_size": l1_size, "name": "demo"}
    if not env_url and "CACHE_L2_BACKEND" not in os.environ:
        overrides["l2_backend"] = L2Backend.EMBEDDED
    return CacheConfig(**overrides)


async def run_workload(
    cache: HierarchicalCacheManager,
    *,
    requests: int,
    prompts: int,
    zipf: float,
    backend_ms: float,
    concurrency: int,
    rng: random.Random,
    on_request: Callable[[], None] | None = None,
) -> Tally:
    tally = Tally()

    @cache_operation(cache_key="llm_completion", ttl_seconds=600, cache=cache)
    async def complete(prompt: str) -> dict[str, Any]:
        started = time.perf_counter()
        await asyncio.sleep(backend_ms / 1000)
        tally.backend_calls.append(time.perf_counter() - started)
        called_backend.set(True)  # seen by the calling task: awaited coroutines share context
        return {"prompt": prompt, "completion": f"Response to: {prompt}", "tokens": len(prompt)}

    dist = Zipf(prompts, zipf, rng)
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> None:
        async with gate:
            key = complete.cache_key(prompt)  # type: ignore[attr-defined]
            in_l1 = cache.l1.get(key) is not None
            joins_load = cache.is_loading(key)
            called_backend.set(False)
            started = time.perf_counter()
            await complete(prompt)
            elapsed = time.perf_counter() - started
            if in_l1:
                tier = "l1_memory"
            elif called_backend.get():
                tier = "backend"
            elif joins_load:
                tier = "coalesced"
            else:
                tier = "l2_redis"
            tally.add(tier, elapsed)
            if on_request is not None:
                on_request()

    await asyncio.gather(*(one(f"prompt #{dist.draw()}") for _ in range(requests)))
    return tally


def _ms(values: Sequence[float], q: float | None = None) -> str:
    if not values:
        return "-"
    if q is None:
        return f"{statistics.fmean(values) * 1000:.3f}"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.3f}"


ROW_HEADER = ("tier", "requests", "share", "mean ms", "p50 ms", "p95 ms")


def rows(tally: Tally) -> list[tuple[str, ...]]:
    """One row per tier: requests, share, mean, p50 and p95 latency (ms), as text."""
    total = tally.total or 1
    out: list[tuple[str, ...]] = []
    for tier in TIERS:
        vals = tally.latencies[tier]
        share = f"{len(vals) / total:.1%}"
        out.append((tier, str(len(vals)), share, _ms(vals), _ms(vals, 0.5), _ms(vals, 0.95)))
    return out


def summary(tally: Tally, stats: dict[str, Any], backend_ms: float) -> list[str]:
    """The lines under the table: hit ratios, backend calls, speedup."""
    every = [v for vals in tally.latencies.values() for v in vals]
    backend = tally.backend_calls
    no_cache = statistics.fmean(backend) if backend else backend_ms / 1000
    with_cache = statistics.fmean(every) if every else 0.0
    speedup = no_cache / with_cache if with_cache else float("inf")
    return [
        f"hit ratio: overall {stats['overall_hit_ratio']:.1%}, "
        f"L1 {stats['l1_memory']['hit_ratio']:.1%}, L2 {stats['l2_redis']['hit_ratio']:.1%} "
        f"(L2: {stats['l2_redis']['backend']})",
        f"backend calls: {stats['loads']['success']} of {tally.total} requests; "
        f"coalesced waits {stats['coalesced']}; promotions {stats['promotions']}; "
        f"L1 evictions {sum(stats['l1_memory']['evictions'].values())}",
        f"mean latency: {with_cache * 1000:.3f} ms with hiercache vs "
        f"{no_cache * 1000:.3f} ms calling the backend every time: {speedup:.1f}x speedup",
    ]


def render(tally: Tally, stats: dict[str, Any], backend_ms: float) -> str:
    """The table and summary as plain text."""
    widths = (12, 10, 9, 11, 10, 10)
    lines = [
        "".join(
            f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}"
            for i, (cell, w) in enumerate(zip(row, widths))
        )
        for row in [ROW_HEADER, *rows(tally)]
    ]
    return "\n".join([*lines, "", *summary(tally, stats, backend_ms)])


@dataclass
class DemoOptions:
    """What ``hiercache demo`` runs; the defaults are the command's."""

    requests: int = 2000
    prompts: int = 200
    zipf: float = 1.1
    backend_ms: float = 100.0
    concurrency: int = 10
    l1_size: int = 50
    seed: int = 7
    forever: bool = False
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"


@dataclass
class Hooks:
    """Callbacks of a demo run: each request, each finished round, the final report."""

    on_request: Callable[[], None] | None = None
    on_round: Callable[[int, dict[str, Any]], None] = lambda n, stats: print(
        f"round {n}: overall hit ratio {stats['overall_hit_ratio']:.1%}, "
        f"backend calls {stats['loads']['success']}",
        flush=True,
    )
    on_report: Callable[[Tally, dict[str, Any]], None] | None = None


async def main_async(options: DemoOptions, hooks: Hooks | None = None) -> int:
    hooks = hooks or Hooks()
    if options.metrics_port is not None:
        from hiercache.telemetry import setup

        handle = setup(
            service_name=os.environ.get("OTEL_SERVICE_NAME", "hiercache-demo"),
            prometheus_host=options.metrics_host,
            prometheus_port=options.metrics_port,
        )
        if handle.metrics_address is not None:
            host, port = handle.metrics_address
            print(f"serving metrics on http://{host}:{port}/metrics", flush=True)
    rng = random.Random(options.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # `docker stop` / Ctrl-C: finish the round
        loop.add_signal_handler(sig, stop.set)
    async with HierarchicalCacheManager(demo_config(options.l1_size)) as cache:
        rounds = 0
        while not stop.is_set():
            tally = await run_workload(
                cache,
                requests=options.requests,
                prompts=options.prompts,
                zipf=options.zipf,
                backend_ms=options.backend_ms,
                concurrency=options.concurrency,
                rng=rng,
                on_request=None if options.forever else hooks.on_request,
            )
            rounds += 1
            stats = await cache.get_statistics()
            if not options.forever:
                if hooks.on_report is not None:
                    hooks.on_report(tally, stats)
                else:
                    print(render(tally, stats, options.backend_ms))
                return 0
            hooks.on_round(rounds, stats)
    return 0


def main(options: DemoOptions, hooks: Hooks | None = None) -> int:
    return asyncio.run(main_async(options, hooks))
