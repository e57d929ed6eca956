"""What telemetry costs an L1 hit: ``python benchmarks/telemetry_overhead.py``.

Three caches in one process, measured in interleaved batches (so a noisy machine
slows them alike), median ns per call:

- ``off``: ``CacheConfig(telemetry_enabled=False)``;
- ``sdk``: telemetry on, with the OpenTelemetry SDK installed (a MeterProvider with a
  Prometheus reader, and a TracerProvider) and no active span: the production case;
- ``span``: the same, each call inside a sampled, recording span, so every get makes
  its own ``hiercache.get`` child span.

Both ``await cache.get(k)`` and ``cache.sync.get(k)`` are measured. Each round runs
``off`` and ``sdk`` back to back in ABBA order; the verdict is the median over rounds of
``sdk / off`` within a round (a paired ratio, robust to a noisy, shared machine). The
ratio of the overall medians is printed too. Exits 1 when an ``sdk`` case's paired
ratio exceeds ``--limit`` (1.25).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from hiercache import CacheConfig, HierarchicalCacheManager

KEY = "bench:key"


def install_sdk() -> None:
    metrics.set_meter_provider(
        MeterProvider(
            metric_readers=[PrometheusMetricReader()], exemplar_filter=AlwaysOffExemplarFilter()
        )
    )
    trace.set_tracer_provider(TracerProvider())  # default sampler: parent-based, always on


def manager(name: str, telemetry: bool) -> HierarchicalCacheManager:
    config = CacheConfig(name=name, l2_backend="none", telemetry_enabled=telemetry)
    return HierarchicalCacheManager(config)


async def async_batch(m: HierarchicalCacheManager, reps: int) -> float:
    get = m.get
    started = time.perf_counter_ns()
    for _ in range(reps):
        await get(KEY)
    return (time.perf_counter_ns() - started) / reps


def sync_batch(m: HierarchicalCacheManager, reps: int) -> float:
    get = m.sync.get
    started = time.perf_counter_ns()
    for _ in range(reps):
        get(KEY)
    return (time.perf_counter_ns() - started) / reps


async def run(reps: int, batches: int) -> dict[str, list[float]]:
    off, sdk = manager("bench-off", False), manager("bench-sdk", True)
    tracer = trace.get_tracer("bench")
    for m in (off, sdk):
        await m.set(KEY, {"id": 1, "name": "value"})

    async def in_span_async(m: HierarchicalCacheManager, n: int) -> float:
        with tracer.start_as_current_span("request"):
            return await async_batch(m, n)

    def in_span_sync(m: HierarchicalCacheManager, n: int) -> float:
        with tracer.start_as_current_span("request"):
            return sync_batch(m, n)

    async def sync_case(
        fn: Callable[[HierarchicalCacheManager, int], float], m: HierarchicalCacheManager, n: int
    ) -> float:
        return fn(m, n)

    cases: dict[str, Callable[[int], Awaitable[float]]] = {
        "async off": lambda n: async_batch(off, n),
        "async sdk": lambda n: async_batch(sdk, n),
        "async span": lambda n: in_span_async(sdk, max(1, n // 10)),
        "sync off": lambda n: sync_case(sync_batch, off, n),
        "sync sdk": lambda n: sync_case(sync_batch, sdk, n),
        "sync span": lambda n: sync_case(in_span_sync, sdk, max(1, n // 10)),
    }
    for case in cases.values():  # warm up every path
        await case(reps // 10)
    results: dict[str, list[float]] = {name: [] for name in cases}
    paired: dict[str, list[float]] = {"async": [], "sync": []}
    gc.collect()
    gc.disable()
    try:
        for i in range(batches):
            for api in ("async", "sync") if i % 2 else ("sync", "async"):
                # ABBA: off, sdk, sdk, off back to back, so drift and neighbours'
                # noise hit both alike; the round's ratio pairs them.
                times = {"off": 0.0, "sdk": 0.0}
                for which in ("off", "sdk", "sdk", "off"):
                    ns = await cases[f"{api} {which}"](reps)
                    results[f"{api} {which}"].append(ns)
                    times[which] += ns
                paired[api].append(times["sdk"] / times["off"])
                results[f"{api} span"].append(await cases[f"{api} span"](reps))
    finally:
        gc.enable()
    assert off.stats.total("hits") > 0
    assert sdk.stats.total("hits") > 0
    assert sdk.stats.total("misses") == 0
    assert off.stats.total("misses") == 0
    results["async paired"] = paired["async"]
    results["sync paired"] = paired["sync"]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10_000, help="calls per batch")
    parser.add_argument("--batches", type=int, default=41, help="rounds")
    parser.add_argument("--limit", type=float, default=1.25, help="max sdk/off ratio")
    args = parser.parse_args()
    install_sdk()
    results = asyncio.run(run(args.reps, args.batches))
    paired = {api: statistics.median(results.pop(f"{api} paired")) for api in ("async", "sync")}
    medians = {name: statistics.median(v) for name, v in results.items()}

    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.batches} rounds of {args.reps:,} L1 hits per batch (span cases: a tenth); "
        "off and sdk run ABBA in each round"
    )
    print()
    print("| case | median ns/get | min | max | ratio of medians | median paired ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    failed = []
    for name, values in results.items():
        api, which = name.split()
        ratio = medians[name] / medians[f"{api} off"]
        pair = f"{paired[api]:.2f}x" if which == "sdk" else ""
        print(
            f"| {name} | {medians[name]:.0f} | {min(values):.0f} | {max(values):.0f} "
            f"| {ratio:.2f}x | {pair} |"
        )
        if which == "sdk" and paired[api] > args.limit:
            failed.append(f"{name}: {paired[api]:.2f}x > {args.limit}x")
    print()
    if failed:
        print("FAIL: " + "; ".join(failed))
        return 1
    print(f"OK: with the SDK installed and no span, an L1 hit costs at most {args.limit}x off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
