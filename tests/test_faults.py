"""Faults under load, against real redis-servers: what callers see and how fast L2 comes back.

Network faults are injected with the TCP proxy (``tcp_proxy.py``) in front of a real
redis-server; a kill is a real SIGKILL; OOM and READONLY are real server states. Load is 50
asyncio tasks (or 8 threads on the sync API) reading keys they first drop from L1, so every
read is an L1 miss, plus some writes. Everything waits on conditions (polled with generous
deadlines); latency bounds are an order of magnitude away from what the fault would cost.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import redis

from hiercache import MISS, CacheConfig, HierarchicalCacheManager
from hiercache.health import L2State
from servers import run_redis

if TYPE_CHECKING:  # imported at run time by pytest_plugins only, so pytest can rewrite it
    from tcp_proxy import TcpProxy

pytest_plugins = ["tcp_proxy"]

KEYS = 200  # keys the readers cycle through
TASKS, THREADS = 50, 8
TIMEOUT = 0.5  # l2_operation_timeout_seconds (the default)
FAST = 0.005  # the p99 bound of an L1-miss get once the breaker is open: 100x below TIMEOUT
PATIENCE = 30.0  # deadline of conditions that only need "eventually" (slow CI)


@dataclass
class Sample:
    started: float  # time.monotonic() when the get began
    seconds: float  # its latency
    hit: bool  # L2 answered (the key was dropped from L1 first)


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    sets: int = 0

    def since(self, t: float) -> list[Sample]:
        return [s for s in list(self.samples) if s.started >= t]

    def hits_since(self, t: float) -> int:
        return sum(1 for s in self.since(t) if s.hit)


def p99(samples: list[Sample]) -> float:
    return statistics.quantiles([s.seconds for s in samples], n=100)[98]


async def until(check: Callable[[], object], what: str, timeout: float = PATIENCE) -> float:
    """Poll ``check`` until it is truthy; the seconds it took. Fails after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


class Load:
    """Readers (L1-miss gets of ``r:*``) and writers (every 10th op a set) on one cache.

    ``writes_reads=True`` makes the writes go to the keys the readers read, so a Redis
    that lost its data (a restart) is filled again by the load itself.
    """

    def __init__(
        self, m: HierarchicalCacheManager, api: str, *, writes_reads: bool = False
    ) -> None:
        self.m, self.api, self.writes_reads = m, api, writes_reads
        self.rec = Recorder()
        self._stop = threading.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._threads: list[threading.Thread] = []

    def _next(self, worker: int, n: int) -> tuple[str, str]:
        key = f"r:{(worker * 31 + n) % KEYS}"
        if n % 10 == 0:
            return "set", key if self.writes_reads else f"w:{worker}:{n % 50}"
        return "get", key

    def _record(self, started: float, value: Any) -> None:
        self.rec.samples.append(Sample(started, time.monotonic() - started, value is not MISS))

    async def _task(self, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            op, key = self._next(worker, n)
            try:
                if op == "set":
                    await self.m.set(key, key, ttl_seconds=300)
                    self.rec.sets += 1
                else:
                    self.m.l1.delete(key)
                    started = time.monotonic()
                    self._record(started, await self.m.get(key, MISS))
            except Exception as exc:  # what the test counts: it must stay empty
                self.rec.errors.append(exc)
            await asyncio.sleep(0.001)  # pacing: 50 tasks share the loop and two cores

    def _thread(self, worker: int) -> None:
        n, cache = 0, self.m.sync
        while not self._stop.is_set():
            n += 1
            op, key = self._next(worker, n)
            try:
                if op == "set":
                    cache.set(key, key, ttl_seconds=300)
                    self.rec.sets += 1
                else:
                    self.m.l1.delete(key)
                    started = time.monotonic()
                    self._record(started, cache.get(key, MISS))
            except Exception as exc:
                self.rec.errors.append(exc)
            self._stop.wait(0.001)  # pacing, as above

    def start(self) -> None:
        if self.api == "async":
            self._tasks = [asyncio.create_task(self._task(i)) for i in range(TASKS)]
        else:
            self._threads = [
                threading.Thread(target=self._thread, args=(i,), daemon=True)
                for i in range(THREADS)
            ]
            for t in self._threads:
                t.start()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for t in self._threads:
            await asyncio.to_thread(t.join)


async def fill(m: HierarchicalCacheManager) -> None:
    """Every reader key in Redis, none in L1."""
    await m.set_many({f"r:{i}": f"r:{i}" for i in range(KEYS)}, ttl_seconds=300)
    await m.flush()
    for i in range(KEYS):
        m.l1.delete(f"r:{i}")


def l2_up(m: HierarchicalCacheManager, api: str) -> tuple[float, bool]:
    """``l2_up`` as the gauge exports it, and as ``get_statistics()`` reports it."""
    stats = m.sync.get_statistics() if api == "sync" else None
    available = m.core.l2_up() if stats is None else stats["l2_redis"]["available"]
    return m.core.gauges()["l2.up"], available


def config(url: str, **overrides: Any) -> CacheConfig:
    return CacheConfig(redis_url=url, l1_max_entries=100_000, **overrides)


# -- blackhole ---------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["async", "sync"])
async def test_blackhole_under_load(redis_proxy: TcpProxy, redis_url: str, api: str) -> None:
    m = HierarchicalCacheManager(config(redis_proxy.url))
    load = Load(m, api)
    try:
        await fill(m)
        load.start()
        await until(lambda: load.rec.hits_since(0) >= 100, "L2 hits before the fault")
        assert l2_up(m, api) == (1, True)
        assert m.core.gauges()["l2.breaker.state"] == 0  # closed

        fault = time.monotonic()
        redis_proxy.blackhole()
        # l2_up reads 0 within 2 s, in the gauge and in get_statistics()
        down_after = await until(lambda: l2_up(m, api) == (0, False), "l2_up = 0")
        assert down_after <= 2.0, f"l2_up went to 0 only {down_after:.2f}s after the fault"
        assert (await m.get_statistics())["l2_redis"]["available"] is False
        # from 1 s after the fault began, an L1-miss get skips Redis: p99 <= 5 ms
        calm = fault + 1.0
        await until(lambda: time.monotonic() > calm and len(load.rec.since(calm)) >= 2000,
                    "2000 gets after the fault settled")  # fmt: skip
        during = load.rec.since(calm)
        assert p99(during) <= FAST, f"p99 {p99(during) * 1000:.1f} ms over {len(during)} gets"
        print(f"[blackhole {api}] l2_up=0 after {down_after:.2f}s, p99 {p99(during) * 1e3:.3f} ms")
        assert not any(s.hit for s in during)
        assert m.core.health.state in (L2State.OPEN, L2State.HALF_OPEN)
        assert m.core.gauges()["l2.breaker.state"] in (1, 2)  # half-open or open

        healed = time.monotonic()
        redis_proxy.pass_through()
        back_after = await until(lambda: load.rec.hits_since(healed) > 0, "L2 hits after the fault")
        assert back_after <= 3.0, f"L2 hits resumed only {back_after:.2f}s after the fault ended"
        print(f"[blackhole {api}] L2 hits {back_after:.2f}s after the fault ended")
        assert l2_up(m, api) == (1, True)
        assert m.core.gauges()["l2.breaker.state"] == 0
    finally:
        await load.stop()
        await m.close()
    assert load.rec.errors == [], load.rec.errors[:3]
    assert load.rec.sets > 0
    errors = (await m.get_statistics())["l2_redis"]["errors"]
    assert errors["timeout"] >= m.config.l2_breaker_failures
    assert m.core.health.opened >= 1
    # every opening is counted (the l2.breaker.openings counter)
    assert m.stats.total("l2_breaker_openings") == m.core.health.opened


def test_breaker_state_gauge_reads_open_until_the_first_ping() -> None:
    m = HierarchicalCacheManager(config("redis://127.0.0.1:1/0"))
    assert m.core.health.state is L2State.STARTING
    assert m.core.gauges()["l2.breaker.state"] == 2  # not probed yet: counts as open
    assert m.core.gauges()["l2.up"] == 0


# -- slow Redis --------------------------------------------------------------------------
async def test_slow_redis_every_miss_pays_the_delay(redis_proxy: TcpProxy, redis_url: str) -> None:
    """+200 ms per reply stays under the 500 ms operation timeout: nothing fails, so the
    breaker stays closed and every L1 miss waits for Redis. The cache cannot tell a slow
    Redis from a busy one; only a delay beyond the timeout trips the breaker (next test)."""
    m = HierarchicalCacheManager(config(redis_proxy.url))
    load = Load(m, "async")
    try:
        await fill(m)
        redis_proxy.delay(200)
        slow = time.monotonic()
        load.start()
        await until(lambda: len(load.rec.since(slow)) >= 200, "200 gets through the delay")
        latencies = [s.seconds for s in load.rec.since(slow)]
        median = statistics.median(latencies)
        print(f"[slow] median {median * 1e3:.0f} ms, min {min(latencies) * 1e3:.0f} ms")
        assert 0.15 <= median < TIMEOUT, median
        assert min(latencies) >= 0.15  # every single miss paid it
        assert all(s.hit for s in load.rec.since(slow))  # and got its answer from Redis
        assert m.core.health.state is L2State.CLOSED
        assert l2_up(m, "async") == (1, True)
    finally:
        await load.stop()
        await m.close()
    assert load.rec.errors == []
    stats = await m.get_statistics()
    assert sum(stats["l2_redis"]["errors"].values()) == 0
    assert m.core.health.opened == 0


async def test_slower_than_the_timeout_opens_the_breaker(
    redis_proxy: TcpProxy, redis_url: str
) -> None:
    """+700 ms (beyond the 500 ms timeout): every call times out, the breaker opens after
    l2_breaker_failures of them, and from then misses cost nothing until Redis is fast."""
    m = HierarchicalCacheManager(config(redis_proxy.url))
    load = Load(m, "async")
    try:
        await fill(m)
        load.start()
        await until(lambda: load.rec.hits_since(0) >= 50, "L2 hits before the fault")
        redis_proxy.delay(700)
        slow = time.monotonic()
        await until(lambda: m.core.health.state is not L2State.CLOSED, "the breaker to open")
        calm = slow + 1.0
        await until(lambda: time.monotonic() > calm and len(load.rec.since(calm)) >= 1000,
                    "1000 gets after the breaker opened")  # fmt: skip
        assert p99(load.rec.since(calm)) <= FAST
        healed = time.monotonic()
        redis_proxy.pass_through()
        assert await until(lambda: load.rec.hits_since(healed) > 0, "L2 hits again") <= 3.0
    finally:
        await load.stop()
        await m.close()
    assert load.rec.errors == []
    assert (await m.get_statistics())["l2_redis"]["errors"]["timeout"] >= 5


# -- SIGKILL -------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["async", "sync"])
async def test_sigkill_and_restart_under_load(api: str) -> None:
    with ExitStack() as servers:
        first = servers.enter_context(run_redis())
        m = HierarchicalCacheManager(config(first.url))
        load = Load(m, api, writes_reads=True)
        try:
            await fill(m)
            load.start()
            await until(lambda: load.rec.hits_since(0) >= 100, "L2 hits before the kill")
            first.proc.kill()  # SIGKILL: no goodbye, connections cut mid-reply
            first.proc.wait(timeout=10)
            await until(lambda: m.core.health.state is not L2State.CLOSED, "the breaker to open")
            # the same port, an empty dataset: the load's own writes fill it again
            await asyncio.to_thread(servers.enter_context, run_redis(port=first.port))
            restarted = time.monotonic()
            back_after = await until(lambda: load.rec.hits_since(restarted) > 0, "L2 hits")
            assert back_after <= 2.0, f"L2 hits came back {back_after:.2f}s after the restart"
            print(f"[sigkill {api}] L2 hits {back_after:.2f}s after the restart")
            assert l2_up(m, api) == (1, True)
        finally:
            await load.stop()
            await m.close()
    assert load.rec.errors == [], load.rec.errors[:3]
    assert (await m.get_statistics())["l2_redis"]["errors"]["connection"] >= 1


# -- OOM and READONLY ------------------------------------------------------------------------
def fill_until_refused(raw: redis.Redis) -> None:
    for i in range(10_000):  # 10 MB: far beyond maxmemory
        raw.set(f"filler:{i}", b"x" * 1024)


async def test_oom_is_write_refused_and_keeps_l2_up() -> None:
    with run_redis() as server:
        raw = redis.Redis.from_url(server.url)
        m = HierarchicalCacheManager(config(server.url, write_behind=False))
        try:
            await m.set("before", "stored")
            m.l1.delete("before")
            raw.config_set("maxmemory-policy", "noeviction")
            raw.config_set("maxmemory", "1mb")
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                fill_until_refused(raw)
            n = m.config.l2_breaker_failures * 3
            for i in range(n):
                await m.set(f"refused:{i}", "v")  # L1 takes it; Redis refuses it, silently
                m.sync.set(f"refused-sync:{i}", "v")
            assert await m.get("refused:0") == "v"  # from L1
            stats = await m.get_statistics()
            assert stats["l2_redis"]["errors"]["write_refused"] == 2 * n
            assert stats["l2_redis"]["errors"]["other"] == 0
            # L2 is up (reads work), only writes are refused: no breaker, l2_up stays 1
            assert m.core.health.state is L2State.CLOSED
            assert m.core.health.opened == 0
            assert l2_up(m, "sync") == (1, True)
            assert await m.get("before") == "stored"  # an L2 hit
            assert raw.exists("refused:0") == 0
        finally:
            await m.close()
            raw.close()


async def test_readonly_replica_is_topology_opens_the_breaker_and_reconnects() -> None:
    with run_redis() as primary, run_redis() as other:
        from tcp_proxy import run_proxy  # the proxy counts the connections the cache opens

        with run_proxy(primary.host, primary.port) as proxy:
            raw = redis.Redis.from_url(primary.url)
            m = HierarchicalCacheManager(config(proxy.url, write_behind=False))
            try:
                await m.set("k", "v")
                health = m.core.health
                assert health.state is L2State.CLOSED
                raw.replicaof(other.host, other.port)  # now a read-only replica of an empty one
                before = proxy.accepted
                failures = m.config.l2_breaker_failures
                for i in range(failures - 1):
                    await m.set(f"ro:{i}", i)
                    assert health.state is L2State.CLOSED, i  # not yet: below the threshold
                # each topology error dropped the pool: the next call connected anew
                assert proxy.accepted >= before + failures - 2
                await m.set("ro:last", 0)
                assert health.state is not L2State.CLOSED  # the breaker opened
                assert m.stats.total("l2_breaker_openings") == 1
                assert l2_up(m, "async") == (0, False)
                stats = await m.get_statistics()
                assert stats["l2_redis"]["errors"]["topology"] == failures
                assert stats["l2_redis"]["errors"]["other"] == 0

                # Still a replica: the probe's PING answers on the new connection (a replica
                # does), so the breaker closes after l2_breaker_open_seconds, and the next
                # writes hit READONLY and open it again: it flaps, and each opening counts.
                await until(lambda: health.state is L2State.CLOSED, "the probe to close it")
                for i in range(failures):
                    await m.set(f"ro-again:{i}", i)
                assert health.state is not L2State.CLOSED
                assert m.stats.total("l2_breaker_openings") == 2

                # The primary is back (promoted again): the prober finds it, writes land.
                raw.replicaof("NO", "ONE")
                back_after = await until(lambda: health.state is L2State.CLOSED, "closed")
                assert back_after <= 3.0
                await m.set("after", "written")
                assert raw.get(m.config.key_prefix + "after") is not None
            finally:
                await m.close()
                raw.close()
