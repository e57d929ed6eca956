"""Write modes against a real redis-server: write-through is in Redis when ``set`` returns;
write-behind loses nothing on ``close()``, never lets a queued write land after a newer
delete or a newer write of the same key, never blocks ``set`` (a full queue drops its
oldest write), and holds writes through an outage (a fault proxy in front of Redis) to send
them after recovery with their original absolute expiry."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis

from fakes import FakeClock
from hiercache import MISS, CacheConfig, HierarchicalCacheManager
from hiercache.codec import Codec
from hiercache.health import L2Health, L2State
from hiercache.write_behind import WriteBehindQueue
from redis_tools import PREFIX

if TYPE_CHECKING:  # imported at run time by pytest_plugins only, so pytest can rewrite it
    from tcp_proxy import TcpProxy

pytest_plugins = ["tcp_proxy"]


def config(url: str, **overrides: Any) -> CacheConfig:
    return CacheConfig(redis_url=url, **overrides)


def stored(raw: redis.Redis, key: str) -> Any:
    payload = raw.get(PREFIX + key)
    return MISS if payload is None else Codec().decode(payload)


def count_keys(raw: redis.Redis, pattern: str = PREFIX + "*") -> int:
    return sum(1 for _ in raw.scan_iter(match=pattern, count=1000))


class BreakerWatch:
    """Records the breaker's state changes, so a test waits for one without sleeping.
    Registered after the cache's own listeners, so they have run when it is told."""

    def __init__(self, health: L2Health) -> None:
        self.seen: list[L2State] = []
        self._cond = threading.Condition()
        health.add_listener(self._changed)

    def _changed(self, state: L2State) -> None:
        with self._cond:
            self.seen.append(state)
            self._cond.notify_all()

    def wait(self, state: L2State, timeout: float = 10) -> bool:
        """Block until ``state`` is reached (again: counts from the last ``wait``)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: state in self.seen, timeout)
            self.seen.clear()
            return ok

    async def await_state(self, state: L2State, timeout: float = 10) -> None:
        assert await asyncio.to_thread(self.wait, state, timeout), f"breaker never {state}"


def outage_config(url: str, **overrides: Any) -> CacheConfig:
    """One failed round trip opens the breaker; a hung Redis costs 0.2 s per round trip."""
    settings: dict[str, Any] = {
        "l2_breaker_failures": 1,
        "l2_operation_timeout_seconds": 0.2,
        "l2_connect_timeout_seconds": 0.2,
        "telemetry_enabled": False,
        **overrides,
    }
    return CacheConfig(redis_url=url, **settings)


async def open_breaker(m: HierarchicalCacheManager, proxy: TcpProxy, watch: BreakerWatch) -> None:
    """Cut Redis off (every connection reset) and wait until the breaker has opened."""
    proxy.reset()
    await m.get("probe-the-outage", MISS)  # its round trip fails: the breaker opens
    await watch.await_state(L2State.OPEN)


def hiercache_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "hiercache" and r.levelno == logging.WARNING and text in r.getMessage()
    ]


class Gate:
    """Holds the write-behind flusher inside its first send until released, and tells the
    test (on its loop) when anyone asks the queue to flush."""

    def __init__(self, queue: WriteBehindQueue, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop = asyncio.get_running_loop()
        self.sending = threading.Event()
        self.release = threading.Event()
        self.flush_requested = asyncio.Event()
        send, flush = queue._send, queue.flush

        def gated_send(writes: list[tuple[Any, ...]]) -> str | None:
            self.sending.set()
            self.release.wait(timeout=30)
            return send(writes)

        def watched_flush() -> None:
            self.loop.call_soon_threadsafe(self.flush_requested.set)
            flush()

        monkeypatch.setattr(queue, "_send", gated_send)
        monkeypatch.setattr(queue, "flush", watched_flush)

    async def wait_sending(self) -> None:
        await asyncio.to_thread(self.sending.wait, 30)
        assert self.sending.is_set()

    async def release_when_done_or_flushing(self, task: asyncio.Task[Any]) -> Any:
        """Let ``task`` run until it finishes or asks for a flush; then open the gate.
        A task that finishes without flushing raced the write held at the gate."""
        flushing = asyncio.ensure_future(self.flush_requested.wait())
        await asyncio.wait({task, flushing}, return_when=asyncio.FIRST_COMPLETED)
        self.release.set()
        flushing.cancel()
        return await task


async def test_write_through_is_in_redis_when_set_returns(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url, write_through=True))
    try:
        assert m.config.write_behind is False
        assert m.write_behind is None
        await m.set("k", {"v": 1}, ttl_seconds=50)
        assert stored(raw, "k") == {"v": 1}
        assert 0 < raw.pttl(PREFIX + "k") <= 50_000
        await m.set_many({"a": 1, "b": 2})
        assert stored(raw, "a") == 1
        assert stored(raw, "b") == 2
        s = await m.get_statistics()
        assert s["write_behind"]["enabled"] is False
    finally:
        await m.close()


def test_write_through_and_write_behind_are_exclusive(redis_url: str) -> None:
    with pytest.raises(ValueError, match="mutually exclusive"):
        CacheConfig(redis_url=redis_url, write_through=True, write_behind=True)


async def test_write_behind_close_leaves_every_write_in_redis(
    redis_url: str, raw: redis.Redis
) -> None:
    m = HierarchicalCacheManager(
        config(redis_url, write_behind=True, l1_max_size=100, telemetry_enabled=False)
    )
    n = 10_000
    try:
        assert m.write_behind is not None
        for i in range(n):
            await m.set(f"item:{i}", i, ttl_seconds=600)
    finally:
        await m.close()
    assert raw.dbsize() == n
    assert count_keys(raw) == n
    assert stored(raw, "item:0") == 0
    assert stored(raw, f"item:{n - 1}") == n - 1
    assert 0 < raw.pttl(PREFIX + "item:1234") <= 600_000
    assert m.write_behind.depth == 0
    assert m.write_behind.dropped == 0


async def test_flush_is_a_barrier(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url, write_behind=True))
    try:
        await m.set_many({f"k:{i}": i for i in range(50)})
        await m.flush()
        assert count_keys(raw) == 50
        assert (await m.get_statistics())["write_behind"]["queue_depth"] == 0
    finally:
        await m.close()


async def test_delete_after_a_queued_set_is_not_undone(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url, write_behind=True))
    try:
        for i in range(200):
            await m.set(f"gone:{i}", i)
            assert await m.delete(f"gone:{i}")
        await m.set_many({f"inv:{i}": i for i in range(200)})
        assert await m.invalidate_pattern("inv:*") == 200
        await m.flush()
        assert count_keys(raw) == 0
    finally:
        await m.close()
    assert raw.dbsize() == 0


async def test_delete_while_a_batch_is_being_sent_is_not_undone(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue is empty but its last batch is still on the way: delete must wait for it."""
    m = HierarchicalCacheManager(config(redis_url, write_behind=True))
    try:
        assert m.write_behind is not None
        gate = Gate(m.write_behind, monkeypatch)
        await m.initialize()
        await m.set("k", "queued")
        await gate.wait_sending()
        assert m.write_behind.depth == 0
        deleted = asyncio.create_task(m.delete("k"))
        assert await gate.release_when_done_or_flushing(deleted) is True
        await m.flush()
        assert stored(raw, "k") is MISS
        assert await m.get("k", MISS) is MISS
    finally:
        await m.close()


async def test_invalidate_while_a_batch_is_being_sent_is_not_undone(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = HierarchicalCacheManager(config(redis_url, write_behind=True))
    try:
        assert m.write_behind is not None
        gate = Gate(m.write_behind, monkeypatch)
        await m.initialize()
        await m.set("p:1", 1)
        await gate.wait_sending()
        invalidated = asyncio.create_task(m.invalidate_pattern("p:*"))
        assert await gate.release_when_done_or_flushing(invalidated) == 1
        await m.flush()
        assert stored(raw, "p:1") is MISS
    finally:
        await m.close()


async def test_full_queue_drops_its_oldest_write_and_an_older_write_never_wins(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changed behaviour: a full queue no longer makes ``set`` write directly (which
    blocked it for the whole outage); it drops the OLDEST queued write (reason queue_full).
    A write of a key in flight still lands before the newer write of that key."""
    m = HierarchicalCacheManager(
        config(redis_url, write_behind=True, write_behind_queue_size=1, write_behind_batch_size=1)
    )
    try:
        assert m.write_behind is not None
        gate = Gate(m.write_behind, monkeypatch)
        await m.initialize()
        await m.set("k", "old")  # taken by the flusher, held at the gate
        await gate.wait_sending()
        await m.set("filler", 0)  # fills the queue
        assert m.write_behind.depth == 1
        await m.set("k", "new")  # no room: the oldest queued write (filler) is dropped
        assert m.write_behind.depth == 1
        gate.release.set()
        await m.flush()
        assert stored(raw, "k") == "new"
        assert stored(raw, "filler") is MISS
        s = await m.get_statistics()
        assert s["write_behind"]["dropped_by_reason"]["queue_full"] == 1
        assert s["write_behind"]["dropped"] == m.write_behind.dropped == 1
        cold = HierarchicalCacheManager(config(redis_url))
        try:
            assert await cold.get("k") == "new"
        finally:
            await cold.close()
    finally:
        await m.close()


async def test_a_newer_write_of_a_queued_key_replaces_it(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = HierarchicalCacheManager(config(redis_url, write_behind=True, write_behind_queue_size=2))
    try:
        assert m.write_behind is not None
        gate = Gate(m.write_behind, monkeypatch)
        await m.initialize()
        await m.set("first", 0)
        await gate.wait_sending()
        for i in range(500):  # one key, 500 writes: coalesced, so nothing is dropped
            await m.set("hot", i)
        await m.set_many({f"k:{i}": i for i in range(500)})  # 499 of them do not fit
        assert m.write_behind.depth == 2
        gate.release.set()
        await m.flush()
        assert stored(raw, "first") == 0
        assert stored(raw, "hot") is MISS  # dropped as the oldest of the queue
        assert {stored(raw, "k:498"), stored(raw, "k:499")} == {498, 499}
        assert count_keys(raw) == 3
        assert m.write_behind.dropped == 499  # hot, and k:0 .. k:497
    finally:
        await m.close()


def test_sync_write_behind_flushes_on_close(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(config(redis_url, write_behind=True))
    for i in range(1000):
        m.sync.set(f"s:{i}", i)
    m.sync.set("doomed", 1)
    assert m.sync.delete("doomed")
    m.sync.close()
    assert count_keys(raw) == 1000
    assert stored(raw, "doomed") is MISS


async def test_a_batch_that_blows_up_is_dropped_and_the_flusher_lives_on(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = HierarchicalCacheManager(CacheConfig(redis_url=redis_url, write_behind=True))
    try:
        assert m.write_behind is not None
        real_send = m.write_behind._send
        failures = iter([RuntimeError("boom")])

        def send(writes: list[tuple[Any, ...]]) -> None:
            error = next(failures, None)
            if error is not None:
                raise error
            real_send(writes)

        monkeypatch.setattr(m.write_behind, "_send", send)
        await m.set("lost", 1)
        await m.flush()  # returns: the failed batch was dropped, not stuck
        await m.set("kept", 2)
        await m.flush()
        assert stored(raw, "lost") is MISS
        assert stored(raw, "kept") == 2
        assert m.write_behind.dropped == 1
        s = await m.get_statistics()
        assert s["write_behind"]["dropped_by_reason"]["error"] == 1
    finally:
        await m.close()


async def test_queued_writes_go_out_in_pipelined_batches_of_batch_size(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = HierarchicalCacheManager(
        CacheConfig(redis_url=redis_url, write_behind=True, write_behind_batch_size=100)
    )
    try:
        assert m.write_behind is not None
        batches: list[int] = []
        real_send = m.write_behind._send

        def counting_send(writes: list[tuple[Any, ...]]) -> None:
            batches.append(len(writes))
            real_send(writes)

        monkeypatch.setattr(m.write_behind, "_send", counting_send)
        gate = Gate(m.write_behind, monkeypatch)  # holds the flusher inside its first batch
        await m.initialize()
        await m.set("first", 0)
        await gate.wait_sending()
        for i in range(250):  # queued while the flusher is held
            await m.set(f"k{i}", i)
        assert m.write_behind.depth == 250
        gate.release.set()
        await m.flush()
        assert batches == [1, 100, 100, 50]  # one pipeline per batch, in order
        assert count_keys(raw) == 251
    finally:
        await m.close()


async def test_writes_made_during_an_outage_arrive_after_recovery_with_their_original_expiry(
    redis_proxy: TcpProxy, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hiercache")
    clock = FakeClock()
    m = HierarchicalCacheManager(outage_config(redis_proxy.url), clock=clock)
    watch = BreakerWatch(m.core.health)
    try:
        assert m.write_behind is not None
        await m.set("before", 0)
        await m.set("doomed", 0)
        await m.set("short", "old", ttl_seconds=3600)
        assert await m.write_behind.aflush()
        assert stored(raw, "before") == 0
        await open_breaker(m, redis_proxy, watch)
        assert await m.delete("doomed")  # in Redis before the outage: deleted after it
        n = 5_000
        started = time.perf_counter()
        for i in range(n):
            await m.set(f"held:{i}", i, ttl_seconds=100)
        assert time.perf_counter() - started < 5  # no set waited for Redis (0.2 s each)
        await m.set("short", 1, ttl_seconds=10)  # will expire while held
        await m.set("dup", "old", ttl_seconds=100)
        await m.set("dup", "new", ttl_seconds=100)  # newest wins
        await m.set("gone", 1, ttl_seconds=100)
        assert await m.delete("gone")  # after its write: the write must not land
        assert m.write_behind.unsent == n + 2  # held: nothing was sent or dropped
        assert not await m.write_behind.aflush()  # returns at once while L2 is down
        clock.advance(40)  # the outage lasts 40 s
        redis_proxy.pass_through()
        await watch.await_state(L2State.CLOSED)
        assert await m.write_behind.aflush()
        assert m.core.deferred is not None
        m.core.deferred.join(10)
        assert count_keys(raw, PREFIX + "held:*") == n
        assert stored(raw, f"held:{n - 1}") == n - 1
        # The original absolute expiry: 100 s from the set, 40 s of which went by (sent
        # with PX 60000; Redis' own clock has run a little since). Re-sent with the full
        # TTL, it would read 100 s.
        assert 50_000 <= raw.pttl(PREFIX + "held:0") <= 60_000
        assert stored(raw, "short") is MISS  # expired: and "old" must not outlive it
        assert stored(raw, "dup") == "new"
        assert stored(raw, "gone") is MISS
        assert stored(raw, "doomed") is MISS
        assert stored(raw, "before") == 0
        s = await m.get_statistics()
        assert s["write_behind"]["dropped_by_reason"]["expired"] == 1
        assert s["write_behind"]["dropped"] == 1
        assert s["deferred"]["delete"] == 3  # doomed, gone, and the expired short
    finally:
        await m.close()
    # one line when writes start being held, one for the expired write: none per batch
    assert len(hiercache_warnings(caplog, "holding write-behind")) == 1
    assert hiercache_warnings(caplog, "hiercache: dropped") == [
        "hiercache: dropped 1 write-behind writes (expired=1)"
    ]


async def test_drops_are_summarised_at_most_once_a_minute(
    redis_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    m = HierarchicalCacheManager(
        outage_config(redis_proxy.url, write_behind_queue_size=10), clock=clock
    )
    watch = BreakerWatch(m.core.health)
    try:
        await m.initialize()
        await open_breaker(m, redis_proxy, watch)
        caplog.set_level(logging.WARNING, logger="hiercache")
        for i in range(100):
            await m.set(f"k{i}", i)
        assert hiercache_warnings(caplog, "hiercache: dropped") == [
            "hiercache: dropped 1 write-behind writes (queue_full=1)"
        ]
        clock.advance(59)
        await m.set("more", 1)
        assert len(hiercache_warnings(caplog, "hiercache: dropped")) == 1
        clock.advance(1)
        await m.set("again", 1)
        assert hiercache_warnings(caplog, "hiercache: dropped")[1:] == [
            "hiercache: dropped 91 write-behind writes (queue_full=91)"
        ]
        assert m.write_behind is not None
        assert m.write_behind.dropped == 92
    finally:
        assert m.write_behind is not None
        await m.write_behind.aclose(0)
        await m.close()


@pytest.mark.parametrize("api", ["async", "sync"])
async def test_set_never_blocks_on_a_full_queue_with_redis_blackholed(
    redis_proxy: TcpProxy, api: str
) -> None:
    """The old full-queue rule flushed and wrote directly, so a set waited for Redis: at
    least the 1 s operation timeout here. The margins allow for a loaded test machine."""
    m = HierarchicalCacheManager(
        CacheConfig(
            redis_url=redis_proxy.url,
            write_behind_queue_size=100,
            write_behind_batch_size=10,
            l2_operation_timeout_seconds=1.0,
            write_behind_drain_seconds=0,
            telemetry_enabled=False,
        )
    )
    try:
        await m.initialize()
        m.sync.initialize()
        redis_proxy.blackhole()
        took = []
        for i in range(1_000):
            started = time.perf_counter()
            if api == "async":
                await m.set(f"k{i}", i)
            else:
                m.sync.set(f"k{i}", i)
            took.append(time.perf_counter() - started)
        took.sort()
        assert took[500] < 0.005, took[500]  # the median set: microseconds, not a timeout
        assert took[-1] < 0.5, took[-1]  # none waited for the 1 s timeout
        s = await m.get_statistics()
        assert s["write_behind"]["dropped_by_reason"]["queue_full"] >= 1_000 - 100 - 10
        assert s["write_behind"]["dropped"] == m.write_behind.dropped  # type: ignore[union-attr]
    finally:
        await m.close()
