"""The sync API: ``manager.sync``, for Flask, Django, workers and threads.

Same semantics as the async manager, on the same L1 and counters, with redis-py's
sync client for L2. Loads of one key from many threads run once (single-flight).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from hiercache import stats as S
from hiercache.manager import _NULL, MISS, check_key
from hiercache.memory import EvictionReason
from hiercache.redis_tier import Fetched, RedisCacheBackend
from hiercache.singleflight import ThreadSingleFlight
from hiercache.telemetry import SPAN_KEY, current_context, recording_span_active
from hiercache.telemetry.instruments import HIT_L1, HIT_L2, MISSED

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from hiercache.manager import HierarchicalCacheManager

T = TypeVar("T")


class SyncCache:
    """Blocking twin of ``HierarchicalCacheManager``; get it as ``manager.sync``."""

    def __init__(self, manager: HierarchicalCacheManager) -> None:
        self.manager = manager
        self._flight = ThreadSingleFlight()
        self._initialized = False

    def initialize(self) -> None:
        m = self.manager
        if self._initialized:
            return
        self._initialized = True
        if m.l2 is not None and m._probe_due():
            m._probed(m.l2.run_sync(m.l2.op_ping()))

    def close(self) -> None:
        """Flush write-behind and close the sync connections."""
        m = self.manager
        if m.write_behind is not None:
            m.write_behind.close()
        if m.l2 is not None:
            m.l2.close_sync()
        self._initialized = False

    def _live_l2(self) -> RedisCacheBackend | None:
        m = self.manager
        if not self._initialized:
            self.initialize()
        elif m.l2 is not None and m._probe_due():
            m._probed(m.l2.run_sync(m.l2.op_ping()))
        return m.l2 if m._l2_live else None

    # -- reading ---------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        m = self.manager
        if m._telemetry_on:
            tick = m._tick = m._tick - 1
            if tick <= 0 or (
                (ctx := current_context())  # an empty context holds no span
                and (span := ctx.get(SPAN_KEY)) is not None
                and span.is_recording()
            ):
                return self._get_observed(key, default)
        entry = m.l1.get(key)
        if entry is not None:
            m._row.c[S.L1_HIT_GET] += 1
            return entry.value
        return self._get_below_l1(key, default)

    def _get_observed(self, key: str, default: Any) -> Any:
        m = self.manager
        if not m.telemetry.tracing():
            entry = m._timed_l1_get(key)
            if entry is not None:
                return entry.value
            return self._get_below_l1(key, default)
        with m.telemetry.span("hiercache.get", key, attributes=MISSED) as span:
            value = self._get_traced(key, span)
            return default if value is MISS else value

    def _get_traced(self, key: str, span: Span) -> Any:
        """L1, then L2, inside ``span`` (which starts as a miss): the value, or MISS."""
        m = self.manager
        entry = m.l1.get(key)
        if entry is not None:
            m._row.c[S.L1_HIT_GET] += 1
            span.set_attributes(HIT_L1)
            return entry.value
        value = self._get_below_l1(key, MISS)
        if value is not MISS:
            span.set_attributes(HIT_L2)
        return value

    def _get_below_l1(self, key: str, default: Any) -> Any:
        m = self.manager
        check_key(key)
        l2 = self._live_l2()
        fetched: Fetched = (None, None) if l2 is None else l2.run_sync(l2.op_get(key))
        return m._answer_from_l2(key, fetched, default, "get")

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        m = self.manager
        with m.telemetry.span("hiercache.get_many") if m.telemetry.tracing() else _NULL:
            found, missing = m._get_many_l1(keys)
            l2 = self._live_l2() if missing else None
            fetched: list[Fetched] = [(None, None)] * len(missing)
            if l2 is not None:
                fetched = l2.run_sync(l2.op_get_many(missing))
            m._merge_many(found, missing, fetched)
            return found

    def exists(self, key: str) -> bool:
        if self.manager.l1.get(check_key(key)) is not None:
            return True
        l2 = self._live_l2()
        return l2 is not None and l2.run_sync(l2.op_exists(key))

    # -- writing ---------------------------------------------------------------------
    def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        m = self.manager
        with m.telemetry.span("hiercache.set", key) if m.telemetry.tracing() else _NULL:
            payload, ttl = m._encode(key, value, ttl_seconds)
            m._store_l1(key, value, payload, ttl)
            self._write_l2([(key, payload, ttl)])

    def set_many(self, items: Mapping[str, Any], ttl_seconds: float | None = None) -> None:
        self._write_l2(self.manager._encode_many(items, ttl_seconds))

    def _write_l2(self, rows: list[tuple[str, bytes, float]]) -> None:
        l2 = self._live_l2()
        if l2 is None:
            return
        wb = self.manager.write_behind
        direct = rows if wb is None else [r for r in rows if not wb.submit_set(*r)]
        if direct:
            if wb is not None:  # queue full: older queued writes must land first
                wb.flush()
            l2.run_sync(l2.op_set_many(direct))

    def delete(self, key: str) -> bool:
        m = self.manager
        with m.telemetry.span("hiercache.delete", key) if m.telemetry.tracing() else _NULL:
            in_l1 = m.l1.delete(check_key(key), EvictionReason.DELETED)
            l2 = self._live_l2()
            if l2 is None:
                return in_l1
            self._flush_pending()
            removed = l2.run_sync(l2.op_delete([key]))
            m.stats.add(S.EVICTION[S.L2, "deleted"], removed)
            return in_l1 or removed > 0

    def flush(self) -> None:
        """Wait until every queued write-behind write has reached Redis."""
        if self.manager.write_behind is not None:
            self.manager.write_behind.flush()

    def _flush_pending(self) -> None:
        # unsent, not depth: a batch taken off the queue may still be on its way
        wb = self.manager.write_behind
        if wb is not None and wb.unsent:
            wb.flush()

    def invalidate_pattern(self, pattern: str) -> int:
        m = self.manager
        with m.telemetry.span("hiercache.invalidate") if m.telemetry.tracing() else _NULL:
            removed = set(m._invalidate_l1(pattern))
            l2 = self._live_l2()
            if l2 is not None:
                self._flush_pending()
                l2_removed = l2.unlink_matching_sync(pattern)
                m.stats.add(S.EVICTION[S.L2, "invalidated"], len(l2_removed))
                removed.update(l2_removed)
            return len(removed)

    def clear(self) -> int:
        return self.invalidate_pattern("*")

    # -- loading ---------------------------------------------------------------------
    def get_or_load(
        self,
        key: str,
        load: Callable[[], T],
        ttl_seconds: float | None = None,
        *,
        force_refresh: bool = False,
    ) -> T:
        m = self.manager
        if m._telemetry_on and (m._trace_all or recording_span_active()):
            # One hiercache.get span for the whole call: the load is its child.
            with m.telemetry.span("hiercache.get", key, attributes=MISSED) as span:
                if not force_refresh:
                    value = self._get_traced(key, span)
                    if value is not MISS:
                        return value  # type: ignore[no-any-return]
                return self._load_once(key, load, ttl_seconds, force_refresh)
        if not force_refresh:
            value = self.get(key, MISS)
            if value is not MISS:
                return value  # type: ignore[no-any-return]
        return self._load_once(key, load, ttl_seconds, force_refresh)

    def _load_once(
        self, key: str, load: Callable[[], T], ttl_seconds: float | None, force_refresh: bool
    ) -> T:
        m = self.manager
        result, shared = self._flight.do(
            key, lambda: self._load(key, load, ttl_seconds, force_refresh)
        )
        if shared:
            m.stats.add(S.COALESCED)
            m.telemetry.event("hiercache.coalesced")
        return result

    def _load(
        self, key: str, load: Callable[[], T], ttl_seconds: float | None, force_refresh: bool
    ) -> T:
        m = self.manager
        if not force_refresh:
            entry = m.l1.get(key)
            if entry is not None:
                m.stats.add(S.COALESCED)
                return entry.value  # type: ignore[no-any-return]
        with m.telemetry.span("hiercache.load", key) if m.telemetry.tracing() else _NULL:
            started = time.perf_counter()
            try:
                value = load()
            except BaseException:
                m.stats.add(S.LOAD["error"])
                raise
            else:
                m.stats.add(S.LOAD["success"])
            finally:  # failed loads are timed too
                m.telemetry.record_latency("backend", "load", time.perf_counter() - started)
        self.set(key, value, ttl_seconds)
        return value

    def warm_cache(
        self,
        keys: Iterable[str],
        operation: Callable[[str], Any],
        ttl_seconds: float | None = None,
    ) -> int:
        """Load and cache ``operation(key)`` for each key, in batches; returns the count."""
        m = self.manager
        keys = [check_key(k) for k in dict.fromkeys(keys)]
        with m.telemetry.span("hiercache.warm") if m.telemetry.tracing() else _NULL:
            warmed = 0
            for start in range(0, len(keys), m.config.warming_batch_size):
                pairs: dict[str, Any] = {}
                for key in keys[start : start + m.config.warming_batch_size]:
                    started = time.perf_counter()
                    try:
                        value = operation(key)
                    except Exception as exc:
                        m._count_warm(key, started, exc)
                        continue
                    m._count_warm(key, started, None)
                    if value is not None:
                        pairs[key] = value
                self.set_many(pairs, ttl_seconds)
                warmed += len(pairs)
            return warmed

    def get_statistics(self) -> dict[str, Any]:
        return self.manager.statistics()
