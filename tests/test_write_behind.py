"""Write modes against a real redis-server: write-through is in Redis when ``set`` returns;
write-behind loses nothing on ``close()`` and never lets a queued write land after a newer
delete or a newer write of the same key."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis

from hiercache import MISS, CacheConfig, HierarchicalCacheManager
from hiercache.codec import Codec
from hiercache.write_behind import WriteBehindQueue
from redis_tools import PREFIX


def config(url: str, **overrides: Any) -> CacheConfig:
    return CacheConfig(redis_url=url, **overrides)


def stored(raw: redis.Redis, key: str) -> Any:
    payload = raw.get(PREFIX + key)
    return MISS if payload is None else Codec().decode(payload)


def count_keys(raw: redis.Redis, pattern: str = PREFIX + "*") -> int:
    return sum(1 for _ in raw.scan_iter(match=pattern, count=1000))


class Gate:
    """Holds the write-behind flusher inside its first send until released, and tells the
    test (on its loop) when anyone asks the queue to flush."""

    def __init__(self, queue: WriteBehindQueue, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop = asyncio.get_running_loop()
        self.sending = threading.Event()
        self.release = threading.Event()
        self.flush_requested = asyncio.Event()
        send, flush = queue._send, queue.flush

        def gated_send(writes: list[tuple[Any, ...]]) -> None:
            self.sending.set()
            self.release.wait(timeout=30)
            send(writes)

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


async def test_full_queue_never_lets_an_older_write_win(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the queue full a set goes straight to Redis; a queued older write of the same
    key must not land after it."""
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
        newer = asyncio.create_task(m.set("k", "new"))  # no room: written directly
        await gate.release_when_done_or_flushing(newer)
        await m.flush()
        assert stored(raw, "k") == "new"
        assert stored(raw, "filler") == 0
        cold = HierarchicalCacheManager(config(redis_url))
        try:
            assert await cold.get("k") == "new"
        finally:
            await cold.close()
    finally:
        await m.close()


async def test_full_queue_falls_back_to_direct_writes(redis_url: str, raw: redis.Redis) -> None:
    m = HierarchicalCacheManager(
        config(redis_url, write_behind=True, write_behind_queue_size=2, write_behind_batch_size=2)
    )
    try:
        await m.set_many({f"k:{i}": i for i in range(500)})
        await m.flush()
        assert count_keys(raw) == 500
        assert m.write_behind is not None
        assert m.write_behind.dropped == 0
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
