"""The manager: L1 in front of L2, write modes, loading, warming, statistics.

A ``get`` reads top to bottom: L1, then L2 (promoting a hit into L1), then a miss.
The same manager serves asyncio code directly and sync code through ``manager.sync``
(see ``sync.py``); both share one L1, one set of counters and one L2 configuration.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from hiercache import stats as S
from hiercache.codec import Codec
from hiercache.errors import CorruptValueError, InvalidKeyError, SerializationError
from hiercache.memory import Entry, EvictionReason, MemoryTier
from hiercache.redis_tier import Fetched, RedisCacheBackend
from hiercache.settings import CacheConfig, L2Backend
from hiercache.singleflight import AsyncSingleFlight
from hiercache.stats import CacheStats
from hiercache.telemetry import SPAN_KEY, CacheTelemetry, current_context, recording_span_active
from hiercache.telemetry.instruments import HIT_L1, HIT_L2, MISSED
from hiercache.write_behind import WriteBehindQueue

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("hiercache")
T = TypeVar("T")
MAX_KEY_LENGTH: Final = 1024


class _Missing:
    """The ``MISS`` sentinel: pass it as ``default`` to tell a cached None from a miss."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


MISS: Final = _Missing()


def check_key(key: object) -> str:
    if type(key) is not str:
        raise InvalidKeyError(key, f"keys must be str, not {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(key, f"keys must be 1 to {MAX_KEY_LENGTH} characters long")
    return key


def check_ttl(key: str, ttl_seconds: float | None, default: float) -> float:
    if ttl_seconds is None:
        return default
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, (int, float)):
        raise InvalidKeyError(key, f"ttl_seconds must be a number, not {ttl_seconds!r}")
    if not ttl_seconds > 0:
        raise InvalidKeyError(key, f"ttl_seconds must be > 0, not {ttl_seconds!r}")
    return float(ttl_seconds)


async def resolve(result: Awaitable[T] | T) -> T:
    """Await ``result`` if the operation returned an awaitable (sync operations are fine)."""
    if inspect.isawaitable(result):
        return await result
    return result


class HierarchicalCacheManager:
    """A two-tier cache: in-process L1 (memory) in front of shared L2 (Redis).

    Create it with a ``CacheConfig`` (or none: settings come from the environment), use
    it as ``async with`` or call ``initialize()``/``close()``. Operations initialise it
    lazily, so a forgotten ``initialize()`` costs nothing but the first call's ping.
    """

    def __init__(
        self, config: CacheConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config = config or CacheConfig()
        self.stats = CacheStats()
        self._row = self.stats.row
        self.codec = Codec.from_config(config)
        self.telemetry = CacheTelemetry(config, self.stats, self._gauges)
        self._telemetry_on = config.telemetry_enabled
        self._trace_all = self.telemetry.trace_all
        # Every get is observed (and traced) under trace_all; else every Nth is timed.
        self._sample_every = 1 if self._trace_all else config.l1_latency_sample_every
        self._tick = self._sample_every
        self.l1 = MemoryTier(
            config.l1_max_size,
            max_bytes=config.l1_max_bytes,
            strategy=config.l1_strategy,
            clock=clock,
            on_evict=self._on_l1_evict,
        )
        self._l1_ttl = config.l1_ttl_seconds
        self._promote = config.hierarchical_caching
        self.l2: RedisCacheBackend | None = None
        self.write_behind: WriteBehindQueue | None = None
        if config.l2_backend is not L2Backend.NONE:
            self.l2 = RedisCacheBackend(config, stats=self.stats, telemetry=self.telemetry)
            if config.write_behind:
                self.write_behind = WriteBehindQueue(
                    self.l2, config.write_behind_queue_size, config.write_behind_batch_size
                )
        self._l2_live = False  # L2 answered a ping; until then, L1-only
        self._l2_down_reported = False
        self._clock = clock
        self._next_probe = 0.0
        self._initialized = False
        self._flight = AsyncSingleFlight()
        self._warmers: list[tuple[Any, Callable[[str], Any]]] = []
        self._warming_task: asyncio.Task[None] | None = None
        self._warming_stopped = False
        from hiercache.sync import SyncCache

        self.sync = SyncCache(self)

    def __repr__(self) -> str:
        return (
            f"HierarchicalCacheManager(name={self.config.name!r}, "
            f"l2={self.config.redis_target!r}, l1_entries={len(self.l1)})"
        )

    # -- lifecycle -------------------------------------------------------------------
    async def initialize(self) -> None:
        if self._initialized:
            return
        self._initialized = True
        if self.l2 is not None and self._probe_due():
            self._probed(await self.l2.run(self.l2.op_ping()))
        self._start_warming()

    def _probe_due(self) -> bool:
        """Whether to ping an L2 that is not live: at start, then every retry interval."""
        now = self._clock()
        if self._l2_live or now < self._next_probe:
            return False
        self._next_probe = now + self.config.l2_retry_interval_seconds
        return True

    def _probed(self, ok: bool) -> None:
        """Record a ping's answer: one warning when L2 is down, one note when it is back."""
        self._l2_live = ok
        target, name = self.config.redis_target, self.config.name
        if not ok and not self._l2_down_reported:
            self._l2_down_reported = True
            log.warning(
                "hiercache: Redis not available at %s; running L1-only (cache %r), "
                "retrying every %gs",
                target,
                name,
                self.config.l2_retry_interval_seconds,
            )
        elif ok and self._l2_down_reported:
            self._l2_down_reported = False
            log.warning("hiercache: Redis at %s is available again (cache %r)", target, name)

    async def close(self) -> None:
        """Flush pending write-behind writes, stop warming, close connections."""
        if self._warming_task is not None:
            # The flag ends the loop even if the cancellation is swallowed on the way
            # (redis-py's asyncio client can lose one that lands mid-command).
            self._warming_stopped = True
            self._warming_task.cancel()
            await asyncio.gather(self._warming_task, return_exceptions=True)
            self._warming_task = None
        if self.write_behind is not None:
            await asyncio.to_thread(self.write_behind.close)
        if self.l2 is not None:
            await self.l2.aclose()
            self.l2.close_sync()
        self._initialized = False

    async def __aenter__(self) -> HierarchicalCacheManager:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _live_l2(self) -> RedisCacheBackend | None:
        if not self._initialized:
            await self.initialize()
        elif self.l2 is not None and self._probe_due():
            self._probed(await self.l2.run(self.l2.op_ping()))
        return self.l2 if self._l2_live else None

    # -- reading ---------------------------------------------------------------------
    async def get(self, key: str, default: Any = None) -> Any:
        """The cached value, or ``default`` (None) on a miss. Pass ``MISS`` to tell them apart."""
        if self._telemetry_on:
            # Hot path: a countdown and one context lookup; no SDK call (see telemetry).
            tick = self._tick = self._tick - 1
            if tick <= 0 or (
                (ctx := current_context())  # an empty context holds no span
                and (span := ctx.get(SPAN_KEY)) is not None
                and span.is_recording()
            ):
                return await self._get_observed(key, default)
        entry = self.l1.get(key)
        if entry is not None:
            self._row.c[S.L1_HIT_GET] += 1
            return entry.value
        return await self._get_below_l1(key, default, "get")

    async def _get_observed(self, key: str, default: Any) -> Any:
        """``get`` with its L1 latency sampled, or inside a span when tracing."""
        if not self.telemetry.tracing():
            entry = self._timed_l1_get(key)
            if entry is not None:
                return entry.value
            return await self._get_below_l1(key, default, "get")
        with self.telemetry.span("hiercache.get", key, attributes=MISSED) as span:
            value = await self._get_traced(key, span)
            return default if value is MISS else value

    def _timed_l1_get(self, key: str) -> Entry | None:
        """An L1 lookup (counted on a hit) whose latency is sampled; restarts the countdown."""
        self._tick = self._sample_every
        started = time.perf_counter()
        entry = self.l1.get(key)
        if entry is not None:
            self._row.c[S.L1_HIT_GET] += 1
            self.telemetry.sample_l1(time.perf_counter() - started)
        return entry

    async def _get_traced(self, key: str, span: Span) -> Any:
        """L1, then L2, inside ``span`` (which starts as a miss): the value, or MISS."""
        entry = self.l1.get(key)
        if entry is not None:
            self._row.c[S.L1_HIT_GET] += 1
            span.set_attributes(HIT_L1)
            return entry.value
        value = await self._get_below_l1(key, MISS, "get")
        if value is not MISS:
            span.set_attributes(HIT_L2)
        return value

    async def _get_below_l1(self, key: str, default: Any, op: str) -> Any:
        check_key(key)
        l2 = await self._live_l2()
        fetched: Fetched = (None, None) if l2 is None else await l2.run(l2.op_get(key))
        return self._answer_from_l2(key, fetched, default, op)

    def _answer_from_l2(self, key: str, fetched: Fetched, default: Any, op: str) -> Any:
        """Count an L2 answer; decode and promote a hit. Shared by sync and async paths."""
        payload, ttl = fetched
        if payload is not None:
            try:
                value = self.codec.decode(payload)
            except CorruptValueError as exc:
                self.stats.add(S.L2_ERROR["corrupt"])
                log.warning("hiercache: unreadable L2 value treated as a miss: %s", exc)
            else:
                self.stats.add(S.HIT[S.L2, op])
                if self._promote:
                    l1_ttl = self._l1_ttl if ttl is None else min(ttl, self._l1_ttl)
                    if l1_ttl > 0 and self.l1.set(key, value, l1_ttl, len(payload)):
                        self.stats.add(S.PROMOTION)
                        self.telemetry.event("hiercache.promotion", **{"cache.level": S.L1})
                return value
        self.stats.add(S.MISS[op])
        return default

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The cached values of ``keys`` that are present (L1, then one MGET for the rest)."""
        with self.telemetry.span("hiercache.get_many") if self.telemetry.tracing() else _NULL:
            found, missing = self._get_many_l1(keys)
            l2 = await self._live_l2() if missing else None
            fetched: list[Fetched] = [(None, None)] * len(missing)
            if l2 is not None:
                fetched = await l2.run(l2.op_get_many(missing))
            self._merge_many(found, missing, fetched)
            return found

    def _get_many_l1(self, keys: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        found: dict[str, Any] = {}
        missing: list[str] = []
        for key in dict.fromkeys(map(check_key, keys)):  # checked first: unhashable keys
            entry = self.l1.get(key)
            if entry is None:
                missing.append(key)
            else:
                found[key] = entry.value
                self._row.c[S.HIT[S.L1, "get_many"]] += 1
        return found, missing

    def _merge_many(
        self, found: dict[str, Any], missing: list[str], fetched: list[Fetched]
    ) -> None:
        for key, item in zip(missing, fetched):
            value = self._answer_from_l2(key, item, MISS, "get_many")
            if value is not MISS:
                found[key] = value

    async def exists(self, key: str) -> bool:
        if self.l1.get(check_key(key)) is not None:
            return True
        l2 = await self._live_l2()
        return l2 is not None and await l2.run(l2.op_exists(key))

    # -- writing ---------------------------------------------------------------------
    def _encode(self, key: str, value: Any, ttl_seconds: float | None) -> tuple[bytes, float]:
        """Validate and encode; raises before anything is cached."""
        ttl = check_ttl(check_key(key), ttl_seconds, self.config.l2_ttl_seconds)
        try:
            return self.codec.encode(key, value), ttl
        except SerializationError:
            self.stats.add(S.L2_ERROR["serialization"])  # visible to SREs, not just the caller
            raise

    def _store_l1(self, key: str, value: Any, payload: bytes, ttl: float) -> None:
        self.l1.set(key, value, min(ttl, self._l1_ttl), len(payload))

    def _encode_many(
        self, items: Mapping[str, Any], ttl_seconds: float | None
    ) -> list[tuple[str, bytes, float]]:
        """Encode every item first, so one bad value caches none; then fill L1."""
        rows = [(k, *self._encode(k, v, ttl_seconds)) for k, v in items.items()]
        for key, payload, ttl in rows:
            self._store_l1(key, items[key], payload, ttl)
        return rows

    async def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        """Cache ``value`` for ``ttl_seconds`` (default ``l2_ttl_seconds``; L1 keeps it at most
        ``l1_ttl_seconds``). Raises ``SerializationError`` / ``InvalidKeyError`` on bad input."""
        with self.telemetry.span("hiercache.set", key) if self.telemetry.tracing() else _NULL:
            payload, ttl = self._encode(key, value, ttl_seconds)
            self._store_l1(key, value, payload, ttl)
            await self._write_l2([(key, payload, ttl)])

    async def set_many(self, items: Mapping[str, Any], ttl_seconds: float | None = None) -> None:
        """Cache several values; all are validated and encoded before any is stored."""
        await self._write_l2(self._encode_many(items, ttl_seconds))

    async def _write_l2(self, rows: list[tuple[str, bytes, float]]) -> None:
        l2 = await self._live_l2()
        if l2 is None:
            return
        wb = self.write_behind
        direct = rows if wb is None else [r for r in rows if not wb.submit_set(*r)]
        if direct:
            if wb is not None:  # queue full: older queued writes must land first
                await asyncio.to_thread(wb.flush)
            await l2.run(l2.op_set_many(direct))

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from both tiers; True if either held it."""
        with self.telemetry.span("hiercache.delete", key) if self.telemetry.tracing() else _NULL:
            in_l1 = self.l1.delete(check_key(key), EvictionReason.DELETED)
            l2 = await self._live_l2()
            if l2 is None:
                return in_l1
            await self._flush_write_behind()
            removed = await l2.run(l2.op_delete([key]))
            self.stats.add(S.EVICTION[S.L2, "deleted"], removed)
            return in_l1 or removed > 0

    async def _flush_write_behind(self) -> None:
        # unsent, not depth: a batch taken off the queue may still be on its way
        if self.write_behind is not None and self.write_behind.unsent:
            await asyncio.to_thread(self.write_behind.flush)

    async def flush(self) -> None:
        """Wait until every queued write-behind write has reached Redis."""
        if self.write_behind is not None:
            await asyncio.to_thread(self.write_behind.flush)

    async def invalidate_pattern(self, pattern: str) -> int:
        """Delete every key matching the glob ``pattern`` in both tiers; returns how many.

        L2 is walked with SCAN and cleared with UNLINK in batches (never KEYS)."""
        with self.telemetry.span("hiercache.invalidate") if self.telemetry.tracing() else _NULL:
            removed = set(self._invalidate_l1(pattern))
            l2 = await self._live_l2()
            if l2 is not None:
                await self._flush_write_behind()
                l2_removed = await l2.unlink_matching(pattern)
                self.stats.add(S.EVICTION[S.L2, "invalidated"], len(l2_removed))
                removed.update(l2_removed)
            return len(removed)

    def _invalidate_l1(self, pattern: str) -> list[str]:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidKeyError(pattern, "a pattern must be a non-empty str")
        return self.l1.delete_matching(lambda k: fnmatch.fnmatchcase(k, pattern))

    async def clear(self) -> int:
        """Empty both tiers (of this cache's key prefix); returns how many keys went."""
        return await self.invalidate_pattern("*")

    # -- loading ---------------------------------------------------------------------
    async def get_or_load(
        self,
        key: str,
        load: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None = None,
        *,
        force_refresh: bool = False,
    ) -> T:
        """The cached value of ``key``, or ``load()``'s result, cached. Concurrent callers
        share one load (single-flight). Exceptions propagate and are never cached."""
        if self._telemetry_on and (self._trace_all or recording_span_active()):
            # One hiercache.get span for the whole call: the load is its child.
            with self.telemetry.span("hiercache.get", key, attributes=MISSED) as span:
                if not force_refresh:
                    value = await self._get_traced(key, span)
                    if value is not MISS:
                        return value  # type: ignore[no-any-return]
                return await self._load_once(key, load, ttl_seconds, force_refresh)
        if not force_refresh:
            value = await self.get(key, MISS)
            if value is not MISS:
                return value  # type: ignore[no-any-return]
        return await self._load_once(key, load, ttl_seconds, force_refresh)

    async def _load_once(
        self,
        key: str,
        load: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None,
        force_refresh: bool,
    ) -> T:
        result, shared = await self._flight.do(
            key, lambda: self._load(key, load, ttl_seconds, force_refresh)
        )
        if shared:
            self.stats.add(S.COALESCED)
            self.telemetry.event("hiercache.coalesced")
        return result

    async def _load(
        self,
        key: str,
        load: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None,
        force_refresh: bool,
    ) -> T:
        if not force_refresh:
            entry = self.l1.get(key)  # a load that finished while we waited for L2
            if entry is not None:
                self.stats.add(S.COALESCED)
                return entry.value  # type: ignore[no-any-return]
        tracing = self.telemetry.tracing()
        with self.telemetry.span("hiercache.load", key) if tracing else _NULL:
            started = time.perf_counter()
            try:
                value = await resolve(load())
            except BaseException:
                self.stats.add(S.LOAD["error"])
                raise
            else:
                self.stats.add(S.LOAD["success"])
            finally:  # failed loads are timed too
                self.telemetry.record_latency("backend", "load", time.perf_counter() - started)
        await self.set(key, value, ttl_seconds)
        return value

    def is_loading(self, key: str) -> bool:
        """True while a ``get_or_load`` of ``key`` is calling its loader in this process."""
        return self._flight.is_loading(key)

    @asynccontextmanager
    async def cached_operation(
        self,
        cache_key: str,
        operation: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None = None,
        force_refresh: bool = False,
    ) -> AsyncIterator[T]:
        """``async with cache.cached_operation(key, op, ttl) as result:`` — get or load."""
        yield await self.get_or_load(cache_key, operation, ttl_seconds, force_refresh=force_refresh)

    # -- warming ---------------------------------------------------------------------
    async def warm_cache(
        self,
        keys: Iterable[str],
        operation: Callable[[str], Awaitable[Any] | Any],
        ttl_seconds: float | None = None,
    ) -> int:
        """Load and cache ``operation(key)`` for each key; returns how many were cached.

        Works in batches of ``warming_batch_size`` with at most ``warming_concurrency``
        loads at once. A key whose load fails or returns None is skipped (and logged)."""
        keys = [check_key(k) for k in dict.fromkeys(keys)]
        gate = asyncio.Semaphore(self.config.warming_concurrency)
        size = self.config.warming_batch_size
        with self.telemetry.span("hiercache.warm") if self.telemetry.tracing() else _NULL:
            warmed = 0
            for start in range(0, len(keys), size):
                batch = keys[start : start + size]
                results = await asyncio.gather(*(self._warm_one(k, operation, gate) for k in batch))
                pairs = {k: v for k, v in zip(batch, results) if v is not MISS}
                if pairs:
                    await self.set_many(pairs, ttl_seconds)
                warmed += len(pairs)
            return warmed

    async def _warm_one(
        self, key: str, operation: Callable[[str], Any], gate: asyncio.Semaphore
    ) -> Any:
        async with gate:
            started = time.perf_counter()
            try:
                value = await resolve(operation(key))
            except Exception as exc:
                self._count_warm(key, started, exc)
                return MISS
            self._count_warm(key, started, None)
            return MISS if value is None else value

    def _count_warm(self, key: str, started: float, error: Exception | None) -> None:
        """Count and time one warming load, failed or not (async and sync warming)."""
        self.telemetry.record_latency("backend", "warm", time.perf_counter() - started)
        self.stats.add(S.LOAD["success" if error is None else "error"])
        if error is not None:
            log.warning("hiercache: warming %r failed: %r", key, error)

    def register_warmer(
        self,
        keys: Iterable[str] | Callable[[], Awaitable[Iterable[str]] | Iterable[str]],
        operation: Callable[[str], Awaitable[Any] | Any],
    ) -> None:
        """Re-warm ``keys`` every ``warming_interval_seconds`` while ``warming_enabled``.
        ``keys`` may be a callable (sync or async) returning the keys of the moment."""
        self._warmers.append((keys, operation))
        if self._initialized:
            self._start_warming()

    def _start_warming(self) -> None:
        if self.config.warming_enabled and self._warmers and self._warming_task is None:
            self._warming_stopped = False
            self._warming_task = asyncio.get_running_loop().create_task(self._warm_forever())

    async def _warm_forever(self) -> None:
        while not self._warming_stopped:
            for keys, operation in list(self._warmers):
                if self._warming_stopped:
                    return
                try:
                    chosen = await resolve(keys()) if callable(keys) else keys
                    await self.warm_cache(chosen, operation)
                except Exception:
                    log.exception("hiercache: background warmer failed")
            if not self._warming_stopped:
                await asyncio.sleep(self.config.warming_interval_seconds)

    # -- statistics ------------------------------------------------------------------
    def _on_l1_evict(self, key: str, reason: EvictionReason) -> None:
        self.stats.add(S.EVICTION[S.L1, reason.value])
        self.telemetry.event(
            "hiercache.eviction", **{"cache.level": S.L1, "cache.eviction.reason": reason.value}
        )

    def _l2_up(self) -> bool:
        return self._l2_live and self.l2 is not None and self.l2.available

    def _gauges(self) -> dict[str, float]:
        gauges: dict[str, float] = {
            f"entries|{S.L1}": len(self.l1),
            f"size|{S.L1}": self.l1.size_bytes,
            "write_behind.queue_depth": self.write_behind.depth if self.write_behind else 0,
        }
        if self.l2 is not None:  # a cache configured without L2 has no L2 to be down
            gauges["l2.up"] = 1 if self._l2_up() else 0
        return gauges

    def statistics(self) -> dict[str, Any]:
        """Counts and ratios since start (see ``get_statistics``)."""
        snap = self.stats.snapshot()

        def total(kind: str, **attrs: str) -> int:
            want = set(attrs.items())
            return sum(v for v, (k, a) in zip(snap, S.SLOTS) if k == kind and want <= set(a))

        def ratio(num: int, den: int) -> float:
            return num / den if den else 0.0

        l1_hits, l2_hits = total("hits", level=S.L1), total("hits", level=S.L2)
        misses = total("misses")
        requests = l1_hits + l2_hits + misses
        evictions = {
            level: {r: total("evictions", level=level, reason=r) for r in S.EVICTION_REASONS}
            for level in S.LEVELS
        }
        return {
            "name": self.config.name,
            "requests": requests,
            "hits": l1_hits + l2_hits,
            "misses": misses,
            "overall_hit_ratio": ratio(l1_hits + l2_hits, requests),
            "promotions": total("promotions"),
            "loads": {r: total("loads", result=r) for r in S.LOAD_RESULTS},
            "coalesced": total("coalesced"),
            "l1_memory": {
                "hits": l1_hits,
                "misses": l2_hits + misses,
                "hit_ratio": ratio(l1_hits, requests),
                "entries": len(self.l1),
                "memory_usage_bytes": self.l1.size_bytes,
                "max_size": self.config.l1_max_size,
                "max_bytes": self.config.l1_max_bytes,
                "strategy": self.config.l1_strategy.value,
                "evictions": evictions[S.L1],
            },
            "l2_redis": {
                "hits": l2_hits,
                "misses": misses,
                "hit_ratio": ratio(l2_hits, l2_hits + misses),
                "available": self._l2_up(),
                "backend": self.config.redis_target,
                "errors": {t: total("l2_errors", error_type=t) for t in S.L2_ERROR_TYPES},
                "evictions": evictions[S.L2],
            },
            "write_behind": {
                "enabled": self.write_behind is not None,
                "queue_depth": self.write_behind.depth if self.write_behind else 0,
                "dropped": self.write_behind.dropped if self.write_behind else 0,
            },
        }

    async def get_statistics(self) -> dict[str, Any]:
        """Hit ratios per tier and overall, entries, memory, evictions by reason, promotions."""
        return self.statistics()


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NULL: Final = _NullContext()


_default_manager: HierarchicalCacheManager | None = None
_default_lock = threading.Lock()


def get_cache_manager() -> HierarchicalCacheManager:
    """The process-wide manager, built on first use from the environment (``CACHE_*``)."""
    global _default_manager
    if _default_manager is None:
        with _default_lock:
            if _default_manager is None:
                _default_manager = HierarchicalCacheManager(CacheConfig())
    return _default_manager


def set_cache_manager(manager: HierarchicalCacheManager | None) -> HierarchicalCacheManager | None:
    """Replace the process-wide manager (None: build anew from the environment on next use).
    Returns the previous one, which the caller should ``close()``."""
    global _default_manager
    with _default_lock:
        previous, _default_manager = _default_manager, manager
    return previous
