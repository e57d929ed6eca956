"""Concurrent GETs coalesced into MGETs, on a real redis-server (INFO commandstats)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio

from hiercache.l2_reads import GetCoalescer, coalescer
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
