"""redis-py clients for the L2 tier: one server, a Redis Cluster or a Sentinel service.

Sync or asyncio, with the cache's timeouts and pool size. Standalone clients use a
blocking pool: a burst of more callers than ``redis_max_connections`` waits (up to the
operation timeout) for a pooled connection instead of failing with "Too many
connections", which would count as an outage and mark L2 unavailable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from hiercache.sentinel_watch import SentinelWatch
from hiercache.settings import CacheConfig
from hiercache.topology import (
    MultiHostUrl,
    Topology,
    make_client,
    parse_multi_host,
    sentinel_kwargs,
    server_address,
    topology_of,
)

#: The socket timeout of a pub/sub connection (the health check pings it every 30 s).
PUBSUB_SOCKET_TIMEOUT = 60.0


def common_kwargs(config: CacheConfig, aio: bool) -> dict[str, Any]:
    retry_cls = redis.asyncio.retry.Retry if aio else Retry
    return {
        "socket_timeout": config.l2_operation_timeout_seconds,
        "socket_connect_timeout": config.l2_connect_timeout_seconds,
        "max_connections": config.redis_max_connections,
        "health_check_interval": 30,
        # One immediate retry on a connection error survives a pooled connection that a
        # Redis restart cut. Timeouts are not retried: that would double their cost.
        "retry": retry_cls(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }


def make_redis_client(config: CacheConfig, aio: bool, *, idle_ok: bool = False) -> Any:
    """A client of ``config``'s Redis (``redis_url``, or host/port/db/password/ssl).
    ``idle_ok``: for a pub/sub connection, which waits for messages with its own timeout
    and must not be cut (and its subscribers resynced) by the short operation timeout; a
    dead link is still found by the health check's PING within about a minute."""
    c = config
    common = common_kwargs(c, aio)
    if idle_ok:
        common["socket_timeout"] = PUBSUB_SOCKET_TIMEOUT
    url = c.redis_url.get_secret_value() if c.redis_url is not None else None
    if url is not None and (spec := multi_host(url)) is not None:
        return make_client(spec, aio, common, c.redis_ssl_ca_certs)
    cls: Any = redis.asyncio.Redis if aio else redis.Redis
    pool_cls = redis.asyncio.BlockingConnectionPool if aio else redis.BlockingConnectionPool
    common["timeout"] = c.l2_operation_timeout_seconds
    tls = url.startswith("rediss://") if url is not None else c.redis_ssl
    if tls and c.redis_ssl_ca_certs:  # a private CA (the system store is the default)
        common["ssl_ca_certs"] = c.redis_ssl_ca_certs
    if url is not None:
        return cls.from_pool(pool_cls.from_url(url, **common))
    password = c.redis_password.get_secret_value() if c.redis_password else None
    conn_mod: Any = redis.asyncio.connection if aio else redis.connection
    conn_cls = conn_mod.SSLConnection if c.redis_ssl else conn_mod.Connection
    return cls.from_pool(
        pool_cls(
            host=c.redis_host, port=c.redis_port, db=c.redis_db, password=password,
            connection_class=conn_cls, **common,
        )
    )  # fmt: skip


def multi_host(url: str) -> MultiHostUrl | None:
    """The parsed Cluster or Sentinel URL, or None for one server."""
    return None if topology_of(url) is Topology.STANDALONE else parse_multi_host(url)


def server_of(config: CacheConfig) -> tuple[str, int | None]:
    """The (first) server of ``config``, for spans: (host, port), or (socket path, None)."""
    if config.redis_url is not None:
        return server_address(config.redis_url.get_secret_value())
    return config.redis_host, config.redis_port


def watch_failovers(config: CacheConfig, on_switch: Callable[[], None]) -> SentinelWatch | None:
    """For a Sentinel ``redis_url``: a watch calling ``on_switch`` when the primary moves."""
    url = config.redis_url.get_secret_value() if config.redis_url is not None else ""
    if not url or topology_of(url) is not Topology.SENTINEL:
        return None
    spec = parse_multi_host(url)
    kwargs = sentinel_kwargs(spec, common_kwargs(config, aio=False), config.redis_ssl_ca_certs)
    return SentinelWatch(spec.hosts, spec.service, kwargs, on_switch)


__all__ = ["common_kwargs", "make_redis_client", "server_of", "watch_failovers"]
