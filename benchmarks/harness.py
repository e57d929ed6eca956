"""The benchmark harness: interleaved rounds, per-round ratios, one table, a verdict.

A ``Case`` pairs hiercache's operation with a baseline measured in the same run. Each
round runs both, alternating which goes first (AB, then BA), so drift and neighbours'
noise hit them alike; the ratio is taken within each round, and the row reports the
median of those ratios and their spread (the lowest and highest quartile bounds).
"""

from __future__ import annotations

import gc
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hiercache import CacheConfig

T = TypeVar("T")

#: Every cache a case made, closed by the suite before its redis-server stops.
OPEN: list[Any] = []


def track(cache: T) -> T:
    OPEN.append(cache)
    return cache


async def close_all() -> None:
    while OPEN:
        await OPEN.pop().close()


def bench_config(name: str, url: str, **settings: Any) -> CacheConfig:
    """Default settings on ``url``, with a key prefix of the cache's own: caches sharing
    keys in one Redis would invalidate each other's L1 over the backplane."""
    return CacheConfig(name=name, redis_url=url, key_prefix=f"{name}:", **settings)


#: Runs ``n`` operations and returns the cost of one, in the case's unit (seconds, bytes).
Batch = Callable[[int], Awaitable[float]]


@dataclass
class Case:
    """One table row: hiercache against its baseline, with a target on their ratio.

    The ratio is ours / baseline, except with ``higher_is_better`` (throughput, "N x
    faster"), where it is baseline / ours: the verdict is ratio <= target, or >= target.
    """

    path: str
    ours: Batch
    base: Batch
    baseline: str
    target: float
    n: int
    higher_is_better: bool = False
    rounds: int = 15
    unit: str = "time"  # "time": seconds per operation; "bytes": bytes per entry
    #: Operations per baseline batch (default ``n``): a much cheaper baseline gets more, so
    #: both batches of a round last long enough to rise above timer and scheduler noise.
    base_n: int | None = None


@dataclass
class Row:
    path: str
    baseline: str
    target: float
    higher_is_better: bool
    unit: str = "time"
    ours: float = 0.0
    base: float = 0.0
    ratio: float = 0.0
    spread: tuple[float, float] = (0.0, 0.0)
    ratios: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        if self.skipped is not None:
            return True
        if self.higher_is_better:
            return self.ratio >= self.target
        return self.ratio <= self.target

    @property
    def verdict(self) -> str:
        if self.skipped is not None:
            return f"SKIP ({self.skipped})"
        return "OK" if self.ok else "MISSED"


def summarise(path: str, case: Case, ours: list[float], base: list[float]) -> Row:
    """The row of a case from its per-round measurements (paired by round)."""
    if case.higher_is_better:
        ratios = [b / o for o, b in zip(ours, base)]
    else:
        ratios = [o / b for o, b in zip(ours, base)]
    if len(ratios) >= 2:
        q = statistics.quantiles(ratios, n=4, method="inclusive")
        spread = (q[0], q[2])
    else:
        spread = (ratios[0], ratios[0])
    return Row(
        path=path,
        baseline=case.baseline,
        target=case.target,
        higher_is_better=case.higher_is_better,
        unit=case.unit,
        ours=statistics.median(ours),
        base=statistics.median(base),
        ratio=statistics.median(ratios),
        spread=spread,
        ratios=ratios,
    )


async def run_case(case: Case, rounds: int | None = None) -> Row:
    """Interleaved rounds (AB, BA, AB, ...), one warm-up batch each first."""
    base_n = case.base_n or case.n
    await case.ours(max(1, case.n // 10))
    await case.base(max(1, base_n // 10))
    ours: list[float] = []
    base: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for i in range(rounds or case.rounds):
            if i % 2:
                base.append(await case.base(base_n))
                ours.append(await case.ours(case.n))
            else:
                ours.append(await case.ours(case.n))
                base.append(await case.base(base_n))
    finally:
        gc.enable()
    return summarise(case.path, case, ours, base)


def skipped(path: str, baseline: str, target: float, why: str, *, higher: bool = False) -> Row:
    return Row(path, baseline, target, higher, skipped=why)


def timed_async(op: Callable[[], Awaitable[object]]) -> Batch:
    """A batch of ``await op()``: seconds per call."""

    async def batch(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await op()
        return (time.perf_counter() - started) / n

    return batch


def timed_sync(op: Callable[[], object]) -> Batch:
    """A batch of ``op()`` (a blocking call, run on the loop's thread): seconds per call."""

    async def batch(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            op()
        return (time.perf_counter() - started) / n

    return batch


# -- the table -----------------------------------------------------------------------


def _amount(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value:.0f} B"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    if value >= 1e-6:
        return f"{value * 1e6:.2f} us"
    return f"{value * 1e9:.0f} ns"


def table(rows: list[Row]) -> str:
    """The one table, in Markdown (it is pasted into the README as printed)."""
    lines = [
        "| path | hiercache | baseline | ratio | spread (q1-q3) | target | verdict |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        sign = ">=" if r.higher_is_better else "<="
        if r.skipped is not None:
            lines.append(
                f"| {r.path} | - | {r.baseline}: - | - | - | {sign} {r.target:g}x | {r.verdict} |"
            )
            continue
        lines.append(
            f"| {r.path} | {_amount(r.ours, r.unit)} | {r.baseline}: {_amount(r.base, r.unit)} "
            f"| {r.ratio:.2f}x | {r.spread[0]:.2f}-{r.spread[1]:.2f} | {sign} {r.target:g}x "
            f"| {r.verdict} |"
        )
    return "\n".join(lines)


# -- a redis-server of our own ---------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL, stops it after."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH (apt-get install -y redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", workdir, "--logfile", ""]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # readiness from the server's own log, not a sleep
                if "Ready to accept connections" in line:
                    break
            else:
                raise RuntimeError("redis-server exited before it was ready")
            stream = proc.stdout
            threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
