"""The core of a cache: the parts both fronts share, and the steps that need no I/O.

``HierarchicalCacheManager`` (asyncio) and its ``.sync`` twin are two fronts over one
``CacheCore``: one L1, one set of counters, one single-flight, one L2 health and one L2
backend (which holds a client per front). The fronts do the I/O (``_async/`` and the
generated ``_sync/``); what a step decides from data alone lives here, written once.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

from hiercache import stats as S
from hiercache.codec import Codec, Meta
from hiercache.coherence import Coherence
from hiercache.deferred import DeferredStore
from hiercache.errors import (
    CorruptValueError,
    IncompatibleValueError,
    InvalidKeyError,
    SerializationError,
)
from hiercache.health import BREAKER_GAUGE, L2Health
from hiercache.memory import EvictionReason, MemoryTier
from hiercache.namespaces import check_namespace
from hiercache.redis_glob import compile_glob
from hiercache.redis_tier import Fetched, RedisCacheBackend
from hiercache.resilience import LoadPolicy, StaleEntry, StaleShelf
from hiercache.settings import CacheConfig, L2Backend
from hiercache.singleflight import SingleFlight
from hiercache.sizing import value_size
from hiercache.stats import CacheStats
from hiercache.telemetry import CacheTelemetry
from hiercache.validation import check_key, check_ttl
from hiercache.write_behind import WriteBehindQueue

log = logging.getLogger("hiercache")

#: One L2 write: (key, encoded payload, TTL in seconds).
Row = tuple[str, bytes, float]


class Write:
    """One checked, encoded write: what L1 holds, and the row L2 gets."""

    __slots__ = ("key", "meta", "payload", "ttl", "value")

    def __init__(self, key: str, payload: bytes, ttl: float, value: Any, meta: Meta) -> None:
        self.key = key
        self.payload = payload
        self.ttl = ttl  # fresh for this long
        self.value = value
        self.meta = meta

    @property
    def row(self) -> Row:
        """(key, payload, how long Redis keeps it: the TTL plus the longest stale window)."""
        return self.key, self.payload, self.ttl + self.meta.stale_until - self.meta.expires_at


#: A registered warmer: the keys (or a function returning them) and the loader.
Warmer = tuple[Any, Callable[[str], Any]]


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
_NOT_TRACED: Final = nullcontext()


class CacheCore:
    """Everything one cache holds, shared by its async and sync fronts."""

    def __init__(
        self,
        config: CacheConfig,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.ready = False  # a scrape may ask for gauges while the core is being built
        self.config = config
        self.clock = clock
        self.wall = wall_clock  # for expiries that travel with values to other processes
        self.stats = CacheStats()
        self.codec = Codec.from_config(config)
        self.telemetry = CacheTelemetry(config, self.stats, self.gauges)
        self.l1 = MemoryTier(
            config.l1_max_size,
            max_bytes=config.l1_max_bytes,
            strategy=config.l1_strategy,
            advisor=config.l1_advisor_enabled,
            clock=clock,
            on_evict=self.on_l1_evict,
        )
        self.l1_ttl = config.l1_ttl_seconds
        self.promote = config.hierarchical_caching
        self.health = L2Health(
            config.redis_target,
            config.name,
            failures=config.l2_breaker_failures,
            open_seconds=config.l2_breaker_open_seconds,
            clock=clock,
            on_open=lambda: self.stats.add(S.L2_BREAKER_OPENED),
        )
        self.l2: RedisCacheBackend | None = None
        self.write_behind: WriteBehindQueue | None = None
        #: Deletes and invalidations kept while L2 is down, applied after recovery.
        self.deferred: DeferredStore | None = None
        if config.l2_backend is not L2Backend.NONE:
            self.l2 = RedisCacheBackend(
                config, stats=self.stats, telemetry=self.telemetry, health=self.health
            )
            self.deferred = DeferredStore(self.l2, config.l2_deferred_max_size)
            if config.write_behind:
                self.write_behind = WriteBehindQueue.from_config(
                    self.l2, config, clock=clock, deferred=self.deferred
                )
        self.flight = SingleFlight()
        self.policy = LoadPolicy.from_config(config)
        self.coherence: Coherence | None = None
        backplane = config.backplane_enabled and config.l2_backend is L2Backend.REDIS
        if self.l2 is not None and backplane:
            self.coherence = Coherence(self, config.backplane_max_staleness_seconds)
            if self.write_behind is not None:
                self.write_behind.announce = self.announce
        self.shelf = StaleShelf(config.l1_max_size)
        if self.l2 is not None:
            check_namespace(self)
        self.warmers: list[Warmer] = []
        self._warming_owner: object | None = None
        self._warming_lock = threading.Lock()
        self._advice: tuple[float, dict[int, float]] = (-1e18, {})
        self.ready = True

    # -- reading ---------------------------------------------------------------------
    def answer_from_l2(
        self, key: str, fetched: Fetched, default: Any, op: str, since: int | None = None
    ) -> Any:
        """Count an L2 answer; decode and promote a fresh hit into L1."""
        value, _ = self.lookup_l2(key, fetched, op, since=since)
        return default if value is MISS else value

    def read_epoch(self) -> int | None:
        """Taken before an L2 read: the backplane's invalidation count (see ``lookup_l2``)."""
        return None if self.coherence is None else self.coherence.epoch()

    def lookup_l2(
        self,
        key: str,
        fetched: Fetched,
        op: str,
        count: bool = True,
        since: int | None = None,
    ) -> tuple[Any, StaleEntry | None]:
        """An L2 answer: (the fresh value, None), or (MISS, an expired value that a stale
        window still covers, or None). Counted unless ``count`` is False (a lock waiter's
        polls); a fresh hit is promoted into L1, unless another instance invalidated the
        key after ``since`` (the read's ``read_epoch``): a slow read resurrects nothing."""
        add = self.stats.add if count else _no_count
        payload, ttl = fetched
        if payload is not None:
            try:
                value, meta = self.codec.decode_frame(payload)
            except CorruptValueError as exc:
                self.stats.add(S.L2_ERROR["corrupt"])
                log.warning("hiercache: unreadable L2 value treated as a miss: %s", exc)
            except IncompatibleValueError as exc:  # a newer writer during a rolling deploy
                self.stats.add(S.L2_ERROR["incompatible"])
                log.debug("hiercache: L2 value this version cannot read, a miss: %s", exc)
            else:
                if meta is not None and meta.expires_at:
                    ttl = meta.expires_at - self.wall()  # the expiry travels with the value
                    if ttl <= 0:  # expired; kept in Redis only for its stale windows
                        add(S.MISSES[op])
                        alive = self.wall() < meta.stale_until
                        return MISS, StaleEntry(value, meta) if alive else None
                add(S.HIT[S.L2, op])
                if self.promote and not (
                    since is not None
                    and self.coherence is not None
                    and self.coherence.invalidated_since(key, since)
                ):
                    l1_ttl = self.l1_ttl if ttl is None else min(ttl, self.l1_ttl)
                    if l1_ttl > 0 and self.l1.set(key, value, l1_ttl, value_size(value)):
                        self.stats.add(S.PROMOTION)
                        self.telemetry.event("hiercache.promotion", **{"cache.level": S.L1})
                    if meta is not None and meta.stale_until > meta.expires_at:
                        self.shelf.put(key, value, meta)
                return value, None
        add(S.MISSES[op])
        return MISS, None

    def l1_many(self, keys: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        """The L1 hits among ``keys`` (counted) and the keys L2 must answer."""
        found: dict[str, Any] = {}
        missing: list[str] = []
        hit = self.stats.row.c
        for key in dict.fromkeys(map(check_key, keys)):  # checked first: unhashable keys
            entry = self.l1.get(key)
            if entry is None:
                missing.append(key)
            else:
                found[key] = entry.value
                hit[S.HIT[S.L1, "get_many"]] += 1
        return found, missing

    def merge_many(
        self,
        found: dict[str, Any],
        missing: list[str],
        fetched: list[Fetched],
        since: int | None = None,
    ) -> dict[str, Any]:
        """Add L2's answers for ``missing`` to ``found``."""
        for key, item in zip(missing, fetched):
            value = self.answer_from_l2(key, item, MISS, "get_many", since)
            if value is not MISS:
                found[key] = value
        return found

    # -- writing ---------------------------------------------------------------------
    def encode(
        self, key: str, value: Any, ttl_seconds: float | None, policy: LoadPolicy | None = None
    ) -> Write:
        """Validate and encode one write. Raises before anything is cached.

        The TTL is shortened by a random share of ``ttl_jitter`` (never lengthened); the
        frame carries the value's expiry and stale windows; Redis keeps it for its TTL plus
        its longest window; L1 holds what any L2 reader decodes, so both tiers answer alike."""
        ttl = check_ttl(check_key(key), ttl_seconds, self.config.l2_ttl_seconds)
        policy = policy or self.policy
        if policy.ttl_jitter:
            ttl *= 1 - random.uniform(0, policy.ttl_jitter)
        expires = self.wall() + ttl if ttl != math.inf else 0.0  # NO_EXPIRY: none travels
        meta = Meta(expires, policy.stale_if_error, policy.stale_while_revalidate)
        try:
            payload, value_for_l1 = self.codec.encode_value(key, value, meta)
        except SerializationError:
            self.stats.add(S.L2_ERROR["serialization"])  # visible to SREs, not just the caller
            raise
        return Write(key, payload, ttl, value_for_l1, meta)

    def store_l1(self, write: Write) -> None:
        """Keep a write's value in L1 (fresh only), counted at its live size (not its
        encoded size); a copy for the stale windows goes on the shelf."""
        key, value = write.key, write.value
        self.l1.set(key, value, min(write.ttl, self.l1_ttl), value_size(value))
        if write.meta.stale_until > write.meta.expires_at:
            self.shelf.put(key, value, write.meta)
        else:
            self.shelf.discard(key)

    def encode_many(self, items: Mapping[str, Any], ttl_seconds: float | None) -> list[Row]:
        """Encode every item first, so one bad value caches none; then fill L1."""
        writes = [self.encode(k, v, ttl_seconds) for k, v in items.items()]
        for write in writes:
            self.store_l1(write)
        return [write.row for write in writes]

    def invalidate_l1(self, pattern: str) -> list[str]:
        """Drop the L1 keys matching the glob ``pattern`` exactly as Redis matches it (on
        UTF-8 bytes: see ``redis_glob``); returns them."""
        if not isinstance(pattern, str) or not pattern:
            raise InvalidKeyError(pattern, "a pattern must be a non-empty str")
        check_key(pattern)  # valid Unicode, bounded length
        match = compile_glob(pattern).match
        self.shelf.discard_matching(match)
        return self.l1.delete_matching(match)

    def removed_from_l2(self, count: int, reason: str) -> None:
        """Count keys an explicit delete or invalidation removed from L2."""
        self.stats.add(S.EVICTION[S.L2, reason], count)

    # -- loading ---------------------------------------------------------------------
    def loaded(self, started: float, ok: bool, operation: str = "load") -> None:
        """Count and time one backend call, failed ones too."""
        self.telemetry.record_latency("backend", operation, time.perf_counter() - started)
        self.stats.add(S.LOAD["success" if ok else "error"])

    def load_discarded(self) -> None:
        """A load finished after its key was written, deleted or invalidated: not stored."""
        self.stats.add(S.LOAD_DISCARDED)
        self.telemetry.event("hiercache.load.discarded")

    def served_stale(self, reason: str) -> None:
        """An expired value was served inside its window (error, timeout, revalidate)."""
        self.stats.add(S.STALE_SERVED[reason])
        self.telemetry.event("hiercache.stale", **{"cache.stale.reason": reason})

    def refreshed(self, ok: bool) -> None:
        self.stats.add(S.REFRESH["success" if ok else "error"])

    def load_timed_out(self, kind: str) -> None:
        self.stats.add(S.LOAD_TIMEOUT[kind])

    def lock_waited(self, timed_out: bool) -> None:
        self.stats.add(S.LOCK_TIMEOUT if timed_out else S.LOCK_WAIT)

    def coalesced(self, event: bool = True) -> None:
        """A caller was answered by another caller's load."""
        self.stats.add(S.COALESCED)
        if event:
            self.telemetry.event("hiercache.coalesced")

    def warm_failed(self, key: str, error: BaseException) -> None:
        log.warning("hiercache: warming %r failed: %r", key, error)

    # -- background warming: one front at a time runs the registered warmers ------------
    def claim_warming(self, front: object) -> bool:
        with self._warming_lock:
            if self._warming_owner is None:
                self._warming_owner = front
            return self._warming_owner is front

    def release_warming(self, front: object) -> None:
        with self._warming_lock:
            if self._warming_owner is front:
                self._warming_owner = None

    # -- the backplane (see ``coherence``) ----------------------------------------------
    def announce(self, op: Any, keys: list[str]) -> Any:
        """``op`` (a write or delete of ``keys``) with its backplane message in its pipeline."""
        return op if self.coherence is None else self.coherence.announce(op, keys)

    def announce_pattern(self, pattern: str) -> Any:
        """The PUBLISH of an invalidation by ``pattern`` (None without a backplane)."""
        return None if self.coherence is None else self.coherence.announce_pattern(pattern)

    # -- what telemetry and statistics read ----------------------------------------------
    def observe(self, operation: str, key: str | None = None) -> AbstractContextManager[Any]:
        """The span of one operation when tracing (see ``telemetry``); else a no-op."""
        if self.telemetry.tracing():
            return self.telemetry.span(operation, key)
        return _NOT_TRACED

    def on_l1_evict(self, key: str, reason: EvictionReason) -> None:
        self.stats.add(S.EVICTION[S.L1, reason.value])
        self.telemetry.event(
            "hiercache.eviction", **{"cache.level": S.L1, "cache.eviction.reason": reason.value}
        )

    def advice(self) -> dict[int, float]:
        """The size advisor's curve, at most once a second (a scrape asks once per gauge)."""
        now = self.clock()
        if now - self._advice[0] >= 1.0:
            self._advice = (now, self.l1.what_if())
        return self._advice[1]

    def l2_up(self) -> bool:
        return self.l2 is not None and self.health.up

    def gauges(self) -> dict[str, float]:
        if not self.ready:
            return {}
        gauges: dict[str, float] = {
            f"entries|{S.L1}": len(self.l1),
            f"size|{S.L1}": self.l1.size_bytes,
            "write_behind.queue_depth": self.write_behind.depth if self.write_behind else 0,
        }
        if self.l2 is not None:  # a cache configured without L2 has no L2 to be down
            gauges["l2.up"] = 1 if self.l2_up() else 0
            gauges["l2.breaker.state"] = BREAKER_GAUGE[self.health.state]
        if self.coherence is not None:
            gauges["backplane.up"] = 1 if self.coherence.up else 0
        for capacity, ratio in self.advice().items():  # the size advisor's curve
            gauges[f"l1.hit_ratio.estimate|cache.l1.capacity={capacity}"] = ratio
        return gauges


def _no_count(index: int, n: int = 1) -> None:
    pass
