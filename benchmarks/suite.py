"""The benchmark suite (``make bench``): every path of issue 11 against its baseline.

    python benchmarks/suite.py [--rounds N] [--only SUBSTRING ...]

Starts its own redis-server on a free port (and stops it), installs the OpenTelemetry SDK
with a Prometheus reader (``hiercache.telemetry.setup``, a free port), measures each path
against its peer or raw-redis baseline in interleaved rounds, and prints one Markdown
table: hiercache's median, the baseline's, the median of the per-round ratios and their
spread (quartiles), the target and a verdict. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hiercache.telemetry
import paths_l1
import paths_l2
import paths_observe
from harness import Case, Row, close_all, redis_server, run_case, table


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                model,
            )
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


async def measure(url: str, metrics_url: str, only: list[str], rounds: int | None) -> list[Row]:
    rows: list[Row] = []

    def wanted(path: str) -> bool:
        return not only or any(word.lower() in path.lower() for word in only)

    async def run(cases: list[Case]) -> None:
        for case in cases:
            if wanted(case.path):
                started = time.perf_counter()
                row = await run_case(case, rounds)
                rows.append(row)
                print(
                    f"  {row.path}: {row.ratio:.2f}x ({time.perf_counter() - started:.1f} s)",
                    file=sys.stderr,
                )

    # The scrape first: the caches of the other cases would be scraped with it.
    await run([await paths_observe.scrape_case(url, metrics_url)])
    gc.collect()
    await run(await paths_l1.hit_cases(url))
    cases, skipped_rows = await paths_l1.decorator_cases(url)
    await run(cases)
    rows.extend(r for r in skipped_rows if wanted(r.path))
    cases, skipped_rows = await paths_l1.peer_cases(url)
    await run(cases)
    rows.extend(r for r in skipped_rows if wanted(r.path))
    await run([await paths_observe.traced_case(url), await paths_observe.statistics_case(url)])
    await run([paths_l1.memory_case(), *paths_l1.insert_cases()])
    if any(wanted(p) for p in paths_l2.PATHS):
        fx = paths_l2.Fixture(url)
        try:
            await fx.fill()
            await run(paths_l2.single_get_cases(fx))
            await run([paths_l2.concurrent_case(fx), *paths_l2.batch_cases(fx)])
        finally:
            await fx.close()
    await close_all()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds per case")
    parser.add_argument("--only", nargs="*", default=[], help="paths containing these words")
    args = parser.parse_args()
    handle = hiercache.telemetry.setup(
        service_name="hiercache-bench", prometheus_host="127.0.0.1", prometheus_port=0
    )
    assert handle.metrics_address is not None
    host, port = handle.metrics_address
    started = time.perf_counter()
    try:
        with redis_server() as url:
            rows = asyncio.run(
                measure(url, f"http://{host}:{port}/metrics", args.only, args.rounds)
            )
    finally:
        handle.shutdown()
    print(f"hiercache benchmark suite: {machine()}; {time.perf_counter() - started:.0f} s")
    print()
    print(table(rows))
    missed = [r.path for r in rows if not r.ok]
    print()
    print(f"MISSED: {len(missed)} of {len(rows)} targets" if missed else "OK: every target met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
