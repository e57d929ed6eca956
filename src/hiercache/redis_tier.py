"""The L2 Redis tier: raw payload bytes in Redis, with per-operation timeouts.

Each operation is one round trip, built once as a pipeline recipe and run by either the
asyncio client (``arun``) or the sync client (``run``), so both APIs share the same
commands. Every outcome is reported to the cache's ``L2Health``. Failures are
counted by type and turned into the operation's fallback (a miss, a no-op): a Redis
outage never raises into the caller.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import redis
import redis.asyncio
from redis.exceptions import RedisClusterException, RedisError

from hiercache import stats as S
from hiercache.clients import make_redis_client, server_of, watch_failovers
from hiercache.health import L2Health
from hiercache.l2_errors import error_type
from hiercache.l2_reads import aget_many, aget_one, get_many, get_one
from hiercache.prober import Prober
from hiercache.redis_glob import escape_glob
from hiercache.sentinel_watch import SentinelWatch
from hiercache.settings import CacheConfig, L2Backend
from hiercache.stats import CacheStats
from hiercache.telemetry import CacheTelemetry
from hiercache.topology import (
    CLIENT_QUIRKS,
    Topology,
    aping,
    as_cluster_error,
    ascan_primaries,
    no_pipeline,
    scan_primaries,
    slot_groups,
    topology_of,
)

T = TypeVar("T")
SCAN_COUNT = 1000
#: (payload, remaining TTL in seconds or None when the key has no expiry)
Fetched = tuple[bytes | None, float | None]
#: Delete the lock only if it still holds our token (a lease that ran out may be another's).
_UNLOCK: Final = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
#: What a miss (or an unreachable L2) fetches.
NOTHING: Final[Fetched] = (None, None)


def _ttl(pttl: int) -> float | None:
    return pttl / 1000 if pttl >= 0 else None


@dataclass(frozen=True)
class _Op(Generic[T]):
    """One round trip: queue commands on a pipeline, parse the replies."""

    command: str
    operation: str
    build: Callable[[Any], None]
    parse: Callable[[list[Any]], T]
    fallback: T
    batch: int = 1
    #: Instead of a pipeline: one call on the sync / asyncio client (Cluster-wide commands).
    direct: Callable[[Any], list[Any]] | None = None
    adirect: Callable[[Any], Awaitable[list[Any]]] | None = None


#: What a failed round trip may raise (RedisClusterException is not a RedisError).
_FAILURES: Final = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)


class RedisCacheBackend:
    """L2 over Redis. Keys are namespaced with ``config.key_prefix``; values are bytes."""

    def __init__(
        self,
        config: CacheConfig | None = None,
        *,
        stats: CacheStats | None = None,
        telemetry: CacheTelemetry | None = None,
        health: L2Health | None = None,
    ) -> None:
        self.config = config = config or CacheConfig()
        self.prefix = config.key_prefix
        self.stats = stats or CacheStats()
        self.telemetry = telemetry or CacheTelemetry(
            config.model_copy(update={"telemetry_enabled": False}), self.stats, dict
        )
        self.health = health or L2Health(
            config.redis_target,
            config.name,
            failures=config.l2_breaker_failures,
            open_seconds=config.l2_breaker_open_seconds,
        )
        self.prober = Prober(self.health, lambda: self.run(self.op_ping()))
        self._reconnect_async = self._reconnect_sync = False
        self._closing: asyncio.Task[None] | None = None
        self._aclient: redis.asyncio.Redis | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._sclient: redis.Redis | None = None
        self._embedded_server: Any = None
        if config.l2_backend is L2Backend.EMBEDDED:
            from hiercache.embedded import EmbeddedServer  # raises without hiercache[embedded]

            self._embedded_server = EmbeddedServer()
        self.server = server_of(config)
        url = config.redis_url.get_secret_value() if config.redis_url is not None else ""
        redis_l2 = config.l2_backend is L2Backend.REDIS and url
        self.topology = topology_of(url) if redis_l2 else Topology.STANDALONE
        #: Redis Cluster: multi-key commands are split by slot, SCAN visits every primary.
        self.cluster = self.topology is Topology.CLUSTER
        self.failures = _FAILURES + CLIENT_QUIRKS if self.cluster else _FAILURES
        self.watch: SentinelWatch | None = None  # Sentinel: follows +switch-master

    def __repr__(self) -> str:
        return f"RedisCacheBackend({self.config.redis_target!r}, available={self.available})"

    @property
    def available(self) -> bool:
        """Whether the last operation reached Redis (see ``health``)."""
        return self.health.up

    # -- clients ---------------------------------------------------------------------
    def _make(self, cls: Any) -> Any:
        if self.config.l2_backend is L2Backend.EMBEDDED:
            return self._make_embedded(cls)
        if self.watch is None and self.topology is Topology.SENTINEL:
            self.watch = watch_failovers(self.config, self.rediscover)
        return make_redis_client(self.config, aio=cls is redis.asyncio.Redis)

    def rediscover(self) -> None:
        """Drop the connections before the next round trip (the primary moved)."""
        self._reconnect_async = self._reconnect_sync = True

    def _make_embedded(self, cls: Any) -> Any:
        return self._embedded_server.client(asynchronous=cls is redis.asyncio.Redis)

    def async_client(self) -> redis.asyncio.Redis:
        """The asyncio client of the running loop (a new loop gets a new pool)."""
        loop = asyncio.get_running_loop()
        # (redis-py's cluster client refreshes its own slot map on MOVED and node failures.)
        if self._reconnect_async and self._aclient is not None and self._aloop is loop:
            # After a topology error: new connections, so the primary is looked up afresh.
            old, self._aclient = self._aclient, None
            self._closing = loop.create_task(old.aclose())
        self._reconnect_async = False
        if self._aclient is None or self._aloop is not loop:
            self._aclient = self._make(redis.asyncio.Redis)
            self._aloop = loop
        return self._aclient

    def sync_client(self) -> redis.Redis:
        if self._reconnect_sync and self._sclient is not None and not self.cluster:
            self._sclient.connection_pool.disconnect()
        self._reconnect_sync = False
        if self._sclient is None:
            self._sclient = self._make(redis.Redis)
        return self._sclient

    # -- running one round trip ------------------------------------------------------
    def _failed(self, op: _Op[Any], exc: BaseException, started: float) -> str:
        # A failed round trip (a timeout above all) is timed too.
        self.telemetry.record_latency(S.L2, op.operation, time.perf_counter() - started)
        kind = error_type(as_cluster_error(exc) if self.cluster else exc)
        self.stats.add(S.L2_ERROR[kind])
        if kind == "topology" and not self.cluster:  # the primary moved: find it again
            self.rediscover()
        self.health.failed(kind)
        return kind

    def _succeeded(self, op: _Op[Any], started: float) -> None:
        self.health.succeeded()
        self.telemetry.record_latency(S.L2, op.operation, time.perf_counter() - started)

    async def arun(self, op: _Op[T]) -> T:
        """Run one round trip on the asyncio client; a failure returns ``op.fallback``."""
        return (await self.aattempt(op))[0]

    def run(self, op: _Op[T]) -> T:
        """Run one round trip on the sync client; a failure returns ``op.fallback``."""
        return self.attempt(op)[0]

    async def aattempt(self, op: _Op[T]) -> tuple[T, str | None]:
        """``arun``, also telling the failure's ``error.type`` (None when it succeeded)."""
        started = time.perf_counter()
        try:
            with self.telemetry.l2_span(op.command, self.server, op.batch):
                client = self.async_client()
                if op.adirect is not None:
                    replies = await op.adirect(client)
                else:
                    async with client.pipeline(transaction=False) as pipe:
                        op.build(pipe)
                        replies = await pipe.execute()
        except self.failures as exc:
            return op.fallback, self._failed(op, exc, started)
        self._succeeded(op, started)
        return op.parse(replies), None

    def attempt(self, op: _Op[T]) -> tuple[T, str | None]:
        """``run``, also telling the failure's ``error.type`` (None when it succeeded)."""
        started = time.perf_counter()
        try:
            with self.telemetry.l2_span(op.command, self.server, op.batch):
                client = self.sync_client()
                if op.direct is not None:
                    replies = op.direct(client)
                else:
                    with client.pipeline(transaction=False) as pipe:
                        op.build(pipe)
                        replies = pipe.execute()
        except self.failures as exc:
            return op.fallback, self._failed(op, exc, started)
        self._succeeded(op, started)
        return op.parse(replies), None

    # -- operations (recipes) --------------------------------------------------------
    def k(self, key: str) -> str:
        return self.prefix + key

    def op_ping(self) -> _Op[bool]:
        if self.cluster:  # PING is refused in a cluster pipeline: ask every primary directly
            return _Op(
                "PING", "ping", no_pipeline, lambda r: bool(r[0]), False,
                direct=lambda c: [c.ping()], adirect=aping,
            )  # fmt: skip
        return _Op("PING", "ping", lambda p: p.ping(), lambda r: bool(r[0]), False)

    def op_get(self, key: str) -> _Op[Fetched]:
        """One GET, no pipeline: see l2_reads (asyncio reads share MGETs, not on a Cluster)."""
        rk = self.k(key)

        def build(p: Any) -> None:
            p.get(rk)
            p.pttl(rk)

        return _Op("GET", "get", build, lambda r: (r[0], _ttl(r[1])), NOTHING, 1,
                   lambda c: get_one(c, rk),
                   lambda c: aget_one(c, rk, not self.cluster))  # fmt: skip

    def op_get_many(self, keys: Sequence[str]) -> _Op[list[Fetched]]:
        """One MGET, no pipeline, a PTTL only per frame without its own expiry (l2_reads).
        On a Cluster: one MGET per hash slot, in a pipeline, and no PTTLs (a cluster holds
        only frames that carry their own expiry, which the core reads instead)."""
        rks = [self.k(k) for k in keys]
        groups = slot_groups(rks) if self.cluster else [list(range(len(rks)))]

        def build(p: Any) -> None:
            for group in groups:
                p.execute_command("MGET", *(rks[i] for i in group))
            for rk in [] if self.cluster else rks:
                p.pttl(rk)

        def parse(r: list[Any]) -> list[Fetched]:
            values: list[bytes | None] = [None] * len(rks)
            for group, got in zip(groups, r):
                for i, v in zip(group, got):
                    values[i] = v
            pttls = r[len(groups) :] or [-1] * len(rks)
            return [(v, _ttl(t)) for v, t in zip(values, pttls)]

        fast = not self.cluster  # one MGET, no pipeline; PTTLs only for frames without expiry
        return _Op("MGET", "get_many", build, parse, [NOTHING] * len(rks), len(rks),
                   (lambda c: get_many(c, rks)) if fast else None,
                   (lambda c: aget_many(c, rks)) if fast else None)  # fmt: skip

    def op_set_many(self, items: Iterable[tuple[str, bytes, float]]) -> _Op[bool]:
        """SET each (key, payload, ttl_seconds) with PX, in one pipeline (an infinite TTL,
        ``NO_EXPIRY``, is written without an expiry)."""
        rows = [
            (self.k(k), v, None if ttl == math.inf else max(1, int(ttl * 1000)))
            for k, v, ttl in items
        ]

        def build(p: Any) -> None:
            for rk, payload, px in rows:
                p.set(rk, payload, px=px)

        return _Op("SET", "set", build, lambda r: True, False, len(rows))

    def op_delete(self, keys: Sequence[str]) -> _Op[int]:
        return self._unlink([self.k(k) for k in keys])

    def _unlink(self, rks: Sequence[str | bytes]) -> _Op[int]:
        if self.cluster:
            # Single-key commands: any slot, any node. execute_command, because redis-py
            # 8.1's asyncio cluster pipeline makes unlink() a coroutine that queues nothing.
            def build(p: Any) -> None:
                for rk in rks:
                    p.execute_command("UNLINK", rk)

            return _Op("UNLINK", "delete", build, lambda r: sum(map(int, r)), 0, len(rks))
        return _Op("UNLINK", "delete", lambda p: p.unlink(*rks), lambda r: int(r[0]), 0, len(rks))

    def op_exists(self, key: str) -> _Op[bool]:
        rk = self.k(key)
        return _Op("EXISTS", "exists", lambda p: p.exists(rk), lambda r: bool(r[0]), False)

    # -- the backplane: a write's invalidation message rides in the write's round trip ------
    def op_publish(self, channel: str, message: bytes) -> _Op[int]:
        publish: Callable[[Any], None] = lambda p: p.execute_command("PUBLISH", channel, message)  # noqa: E731
        return _Op("PUBLISH", "publish", publish, lambda r: int(r[0]), 0)

    def with_publish(self, op: _Op[T], channel: str, message: bytes) -> _Op[T]:
        """``op`` then a PUBLISH, in one pipeline (published only once the write is in).
        An op that runs outside a pipeline (Cluster-wide commands) is returned as it is:
        its caller publishes after it."""
        if op.direct is not None or op.adirect is not None:
            return op

        def build(p: Any) -> None:
            op.build(p)
            p.execute_command("PUBLISH", channel, message)  # publish() is barred on a Cluster

        return _Op(op.command, op.operation, build, lambda r: op.parse(r[:-1]), op.fallback,
                   op.batch)  # fmt: skip

    def pubsub_client(self) -> Any:
        """A new sync client for a pub/sub connection (no operation timeout while idle)."""
        return make_redis_client(self.config, aio=False, idle_ok=True)

    # -- the cross-process stampede lock (SET NX PX with a token; release checks it) -----
    def lock_key(self, key: str) -> str:
        """The lock of ``key``: beside it, in the same hash slot."""
        return f"{self.prefix}lock:{{{key}}}"

    def op_lock(self, key: str, token: str, seconds: float) -> _Op[bool]:
        """Take the lock of ``key`` for ``seconds`` (a lease); False if another holds it."""
        lk, px = self.lock_key(key), max(1, int(seconds * 1000))
        build: Callable[[Any], None] = lambda p: p.set(lk, token, nx=True, px=px)  # noqa: E731
        return _Op("SET", "lock", build, lambda r: bool(r[0]), False)

    def op_unlock(self, key: str, token: str) -> _Op[bool]:
        """Release the lock of ``key`` if ``token`` still holds it (never another's)."""
        lk = self.lock_key(key)

        def build(p: Any) -> None:
            p.eval(_UNLOCK, 1, lk, token)

        return _Op("EVAL", "unlock", build, lambda r: bool(r[0]), False)

    def op_locked(self, key: str) -> _Op[bool]:
        lk = self.lock_key(key)
        return _Op("EXISTS", "lock", lambda p: p.exists(lk), lambda r: bool(r[0]), True)

    def op_scan(self, cursor: int, pattern: str) -> _Op[tuple[int, list[bytes]]]:
        match = escape_glob(self.prefix) + pattern

        if self.cluster:
            return self._scan_primaries(cursor, match)

        def build(p: Any) -> None:
            p.scan(cursor, match=match, count=SCAN_COUNT)

        return _Op("SCAN", "scan", build, lambda r: (int(r[0][0]), list(r[0][1])), (0, []))

    def _scan_primaries(self, cursor: int, match: str) -> _Op[tuple[int, list[bytes]]]:
        """One SCAN step on a Cluster (see ``topology.scan_primaries``)."""
        return _Op(
            "SCAN", "scan", no_pipeline, lambda r: r[0], (0, []),
            direct=lambda c: [scan_primaries(c, cursor, match, SCAN_COUNT)],
            adirect=lambda c: ascan_primaries(c, cursor, match, SCAN_COUNT),
        )  # fmt: skip

    def op_unlink_raw(self, raw_keys: list[bytes]) -> _Op[int]:
        return self._unlink(raw_keys)

    def unprefixed(self, raw_keys: list[bytes]) -> list[str]:
        """Cache keys of raw Redis keys found by ``op_scan``."""
        cut = len(self.prefix.encode())
        return [k[cut:].decode("utf-8", "replace") for k in raw_keys]

    async def aclose(self) -> None:
        if self.watch is not None:
            watch, self.watch = self.watch, None
            await asyncio.to_thread(watch.close)
        if self._aclient is not None:
            try:
                await self._aclient.aclose()
            except RuntimeError:  # pragma: no cover - its loop is already gone
                pass
            self._aclient = None

    def close(self) -> None:
        self.prober.close()
        if self.watch is not None:
            watch, self.watch = self.watch, None
            watch.close()
        if self._sclient is not None:
            self._sclient.close()
            self._sclient = None
