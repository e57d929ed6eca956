from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from servers import RedisServer, run_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free loopback port, for the whole session."""
    with run_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client on the session Redis, to look at what the cache stored."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
