"""Concurrent GETs coalesced into MGETs, on a real redis-server (INFO commandstats)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio

from hiercache import CacheConfig, HierarchicalCacheManager
from hiercache.l2_reads import GetCoalescer, coalescer, without_meta
from otel_providers import unique_name
from servers import free_port


def calls(url: str) -> dict[str, int]:
    """How many GET and MGET commands the server has run (since it started)."""
    with redis.Redis.from_url(url) as raw:
        stats = raw.info("commandstats")
    return {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("get", "mget")}


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    c = redis.asyncio.Redis.from_url(redis_url)
    await c.mset({f"co:{i}": str(i) for i in range(100)})
    yield c
    await c.aclose()


async def test_a_lone_get_is_a_plain_get(client: redis.asyncio.Redis, redis_url: str) -> None:
    before = calls(redis_url)
    assert await coalescer(client).get(client, "co:7") == b"7"
    assert await coalescer(client).get(client, "co:absent") is None
    after = calls(redis_url)
    assert after["get"] - before["get"] == 2
    assert after["mget"] == before["mget"]
    assert coalescer(client) is coalescer(client)


async def test_concurrent_gets_ride_in_mgets(client: redis.asyncio.Redis, redis_url: str) -> None:
    co = GetCoalescer()
    keys = [f"co:{i % 60}" for i in range(100)] + ["co:absent"] * 5  # repeats share a slot
    before = calls(redis_url)
    got = await asyncio.gather(*(co.get(client, k) for k in keys))
    after = calls(redis_url)
    assert got == [str(i % 60).encode() for i in range(100)] + [None] * 5
    round_trips = (after["get"] - before["get"]) + (after["mget"] - before["mget"])
    assert after["get"] - before["get"] == 1  # the first, sent at once
    assert 1 <= round_trips <= 3  # the other 104 went in one MGET (or two)
    assert await co.get(client, "co:1") == b"1"  # idle again: a plain GET


async def test_a_cancelled_reader_leaves_the_others_their_values(
    client: redis.asyncio.Redis,
) -> None:
    co = GetCoalescer()
    first = asyncio.ensure_future(co.get(client, "co:1"))
    await asyncio.sleep(0)  # the first GET is in flight: the next ones queue
    waiting = [asyncio.ensure_future(co.get(client, f"co:{i}")) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    waiting[1].cancel()
    assert await first == b"1"
    assert await waiting[0] == b"2"
    assert await waiting[2] == b"4"
    with pytest.raises(asyncio.CancelledError):
        await waiting[1]


async def test_a_failed_round_trip_fails_every_reader_in_it() -> None:
    dead = redis.asyncio.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    co = GetCoalescer()
    try:
        results = await asyncio.gather(
            *(co.get(dead, f"co:{i}") for i in range(10)), return_exceptions=True
        )
    finally:
        await dead.aclose()
    assert all(isinstance(r, (redis.exceptions.ConnectionError, OSError)) for r in results)
    # And it is not stuck: the next read is tried again (and fails again, at once).
    with pytest.raises(redis.exceptions.ConnectionError):
        await co.get(dead, "co:1")


# -- through the cache ---------------------------------------------------------------
def counts(url: str) -> dict[str, int]:
    with redis.Redis.from_url(url) as raw:
        stats = raw.info("commandstats")
    return {
        c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0))
        for c in ("get", "mget", "pttl", "exec", "multi")
    }


def cache_config(url: str, **kw: Any) -> CacheConfig:
    return CacheConfig(
        name=unique_name("reads"), key_prefix=f"{unique_name('reads')}:", redis_url=url,
        write_through=True, telemetry_enabled=False, **kw,
    )  # fmt: skip


async def test_a_cache_read_is_one_command_and_concurrent_reads_share_mgets(
    redis_url: str,
) -> None:
    async with HierarchicalCacheManager(cache_config(redis_url, l1_ttl_seconds=3600)) as m:
        await m.set_many({f"k{i}": {"i": i} for i in range(40)}, ttl_seconds=600)
        m.l1.delete_matching(lambda k: True)
        before = counts(redis_url)
        assert await m.get("k1") == {"i": 1}
        after = counts(redis_url)
        assert after["get"] - before["get"] == 1  # no pipeline, no PTTL: the frame has its TTL
        assert after["pttl"] == before["pttl"]
        entry = m.l1.get("k1")
        assert entry is not None
        assert 590 < entry.expires_at - m.core.clock() <= 600  # promoted with its own expiry

        got = await asyncio.gather(*(m.get(f"k{i}") for i in range(2, 40)))
        assert got == [{"i": i} for i in range(2, 40)]
        later = counts(redis_url)
        assert (later["get"] - after["get"]) + (later["mget"] - after["mget"]) <= 3
        assert later["pttl"] == before["pttl"]

        m.l1.delete_matching(lambda k: True)
        assert await m.get_many(["k1", "k2", "absent"]) == {"k1": {"i": 1}, "k2": {"i": 2}}
        assert counts(redis_url)["pttl"] == before["pttl"]


async def test_a_frame_without_its_own_expiry_is_asked_its_ttl(redis_url: str) -> None:
    async with HierarchicalCacheManager(cache_config(redis_url, l1_ttl_seconds=3600)) as m:
        payload = m.core.codec.encode_value("old", {"v": 1}).payload  # no meta block
        assert without_meta(payload)
        with redis.Redis.from_url(redis_url) as raw:
            raw.set(m.config.key_prefix + "old", payload, px=30_000)
            raw.set(m.config.key_prefix + "old2", payload, px=30_000)
        before = counts(redis_url)
        assert await m.get("old") == {"v": 1}
        assert m.sync.get_many(["old2"]) == {"old2": {"v": 1}}
        assert counts(redis_url)["pttl"] - before["pttl"] == 2
        for key in ("old", "old2"):
            entry = m.l1.get(key)
            assert entry is not None
            assert entry.expires_at - m.core.clock() <= 30  # Redis's TTL, not l1_ttl_seconds
