"""The fault-injection proxy, driven with redis-py against a real redis-server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:  # imported at run time by pytest_plugins only, so pytest can rewrite it
    from tcp_proxy import TcpProxy

pytest_plugins = ["tcp_proxy"]

TIMEOUT = 0.3


@pytest.fixture
def client(redis_proxy: TcpProxy, redis_url: str) -> Iterator[redis.Redis]:
    """A client through the proxy: short socket timeout, no retries (one fault, one error)."""
    c = redis.Redis.from_url(redis_proxy.url, socket_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0))
    yield c
    c.close()


def timed(c: redis.Redis, key: str = "k") -> float:
    start = time.perf_counter()
    c.get(key)
    return time.perf_counter() - start


def test_pass_forwards_both_ways(client: redis.Redis, redis_proxy: TcpProxy) -> None:
    assert client.set("k", "v")
    assert client.get("k") == b"v"
    assert redis_proxy.accepted == 1
    assert redis_proxy.open_connections == 1


def test_blackhole_times_out_after_the_socket_timeout(
    client: redis.Redis, redis_proxy: TcpProxy
) -> None:
    client.set("k", "v")
    redis_proxy.blackhole()
    start = time.perf_counter()
    with pytest.raises(redis.TimeoutError):
        client.get("k")
    elapsed = time.perf_counter() - start
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT * 5
    fresh = redis.Redis.from_url(
        redis_proxy.url, socket_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(redis.TimeoutError):  # new connections are accepted, then nothing
        fresh.get("k")
    fresh.close()
    redis_proxy.pass_through()
    assert client.get("k") == b"v"  # redis-py reconnects: the proxy recovered


def test_delay_adds_latency_to_each_reply(client: redis.Redis, redis_proxy: TcpProxy) -> None:
    client.set("k", "v")
    baseline = min(timed(client) for _ in range(5))
    redis_proxy.delay(100)
    delayed = [timed(client) for _ in range(3)]
    assert all(0.1 <= d < 0.1 + TIMEOUT for d in delayed), delayed
    assert baseline < 0.05
    redis_proxy.pass_through()
    assert timed(client) < 0.05
    assert client.get("k") == b"v"


def test_reset_gives_connection_errors_and_pass_recovers(
    client: redis.Redis, redis_proxy: TcpProxy
) -> None:
    client.set("k", "v")
    redis_proxy.reset()
    closed = threading.Event()
    for _ in range(10_000):  # the resets are sent on the proxy's loop: wait for them
        if redis_proxy.open_connections == 0:
            break
        closed.wait(0.001)
    assert redis_proxy.open_connections == 0
    with pytest.raises(redis.ConnectionError):
        client.get("k")  # the open connection was reset
    with pytest.raises(redis.ConnectionError):
        client.get("k")  # and so is a new one
    redis_proxy.set_mode("pass")
    assert client.get("k") == b"v"


async def test_the_async_client_sees_the_same_faults(redis_proxy: TcpProxy, redis_url: str) -> None:
    c = redis.asyncio.Redis.from_url(
        redis_proxy.url, socket_timeout=TIMEOUT, retry=AsyncRetry(NoBackoff(), 0)
    )
    try:
        await c.set("k", "v")
        redis_proxy.blackhole()
        with pytest.raises(redis.TimeoutError):
            await c.get("k")
        redis_proxy.reset()
        with pytest.raises(redis.ConnectionError):
            await c.get("k")
        redis_proxy.pass_through()
        assert await c.get("k") == b"v"
    finally:
        await c.aclose()


def test_stop_closes_the_port_and_every_connection(redis_proxy: TcpProxy) -> None:
    c = redis.Redis.from_url(redis_proxy.url, socket_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0))
    assert c.ping()
    redis_proxy.stop()
    assert not redis_proxy.running
    with pytest.raises(redis.ConnectionError):
        c.ping()  # the open connection is gone
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((redis_proxy.host, redis_proxy.port), timeout=1).close()
    c.close()
    redis_proxy.stop()  # idempotent: the fixture stops it again
