"""Loading: ``get_or_load`` and ``cached_operation``, with single-flight and resilience.

Concurrent callers of one key share one load: the core's ``SingleFlight`` spans both
fronts, so asyncio tasks and threads loading the same key call the loader once.
Exceptions propagate to every waiter and are never cached. A load overtaken by a write,
delete or invalidation of its key answers its callers but stores nothing.

Resilience (``resilience.LoadPolicy``: the settings, overridden per call):

- an expired value inside its stale-while-revalidate window is returned at once while one
  background load refreshes it;
- a loader that raises, or outlasts ``load_timeout_seconds``, is answered by an expired value
  inside its stale-if-error window, if there is one (``load_soft_timeout_seconds`` returns
  it even sooner); else the error, or ``LoadTimeoutError``, reaches the caller. The shared
  load is never cancelled: it finishes for its other callers and stores its result;
- ``cache_none_ttl_seconds`` caches a None result for a shorter time (0: not at all);
- ``lock=True`` (``distributed_lock``) takes a lock in Redis around the load, so N processes
  missing one key call the loader once: the others wait for the holder's value.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from hiercache._async.writing import AsyncWritePath
from hiercache.concurrency import AsyncDetached, aresolve, asleep
from hiercache.core import MISS
from hiercache.errors import LoadTimeoutError
from hiercache.redis_tier import NOTHING, RedisCacheBackend
from hiercache.resilience import LoadPolicy, StaleEntry
from hiercache.stats import L1_HIT_GET
from hiercache.telemetry.instruments import HIT_L1, HIT_L2, MISSED
from hiercache.validation import check_key

if TYPE_CHECKING:
    from opentelemetry.trace import Span

T = TypeVar("T")
#: A lock waiter polls for the holder's value this often at first, backing off to the max.
LOCK_POLL_SECONDS = (0.005, 0.1)


class AsyncLoader(AsyncWritePath):
    async def get_or_load(
        self,
        key: str,
        load: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None = None,
        *,
        force_refresh: bool = False,
        stale_if_error_seconds: float | None = None,
        stale_while_revalidate_seconds: float | None = None,
        load_timeout_seconds: float | None = None,
        load_soft_timeout_seconds: float | None = None,
        ttl_jitter: float | None = None,
        cache_none_ttl_seconds: float | None = None,
        lock: bool | None = None,
    ) -> T:
        """The cached value of ``key``, or ``load()``'s result, cached. Concurrent callers
        share one load (single-flight). Exceptions propagate and are never cached. The
        keyword arguments override the settings of the same names for this call."""
        caller = self.telemetry.caller_span() if self._telemetry_on else None
        l1_checked = False
        if caller is not None and not force_refresh:
            # A traced request: an L1 hit is counted on the caller's span, not a span.
            entry = self._l1_lookup(key)
            if entry is not None:
                self.telemetry.note_l1_hit(caller)
                return entry.value  # type: ignore[no-any-return]
            l1_checked = True
        if self._telemetry_on and (self._trace_all or caller is not None):
            span_cm = self.telemetry.span("hiercache.get", key, attributes=MISSED)
        elif not force_refresh:  # the hot path: an L1 hit needs nothing else
            if self._telemetry_on:
                self._tick -= 1  # every Nth lookup is timed, as in get()
                entry = self._l1_lookup(key)
            else:
                entry = self.l1.get(key)
                if entry is not None:
                    self._row.c[L1_HIT_GET] += 1
            if entry is not None:
                return entry.value  # type: ignore[no-any-return]
            span_cm = None
        else:
            span_cm = None
        policy = self.core.policy.with_overrides(
            key,
            stale_if_error=stale_if_error_seconds,
            stale_while_revalidate=stale_while_revalidate_seconds,
            load_timeout=load_timeout_seconds,
            load_soft_timeout=load_soft_timeout_seconds,
            ttl_jitter=ttl_jitter,
            cache_none_ttl=cache_none_ttl_seconds,
            lock=lock,
        )
        if span_cm is None:
            return await self._get_or_load(key, load, ttl_seconds, policy, force_refresh, None)
        with span_cm as span:
            return await self._get_or_load(
                key, load, ttl_seconds, policy, force_refresh, span, l1_checked
            )

    async def _get_or_load(
        self,
        key: str,
        load: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None,
        policy: LoadPolicy,
        force_refresh: bool,
        span: Span | None,
        l1_checked: bool = False,
    ) -> T:
        stale = None
        if not force_refresh:
            entry = None if l1_checked else self.l1.get(key)
            if entry is not None:
                self._row.c[L1_HIT_GET] += 1
                if span is not None:
                    span.set_attributes(HIT_L1)
                return entry.value  # type: ignore[no-any-return]
            value, stale = await self._lookup(key)
            if value is not MISS:
                if span is not None:
                    span.set_attributes(HIT_L2)
                return value  # type: ignore[no-any-return]
            if stale is not None and stale.usable_to_revalidate(self.core.wall()):
                self._revalidate(key, load, ttl_seconds, policy)
                return self._serve_stale(stale, "revalidate", span)  # type: ignore[no-any-return]
        try:
            if policy.timed:
                pending = AsyncDetached(
                    lambda: self._shared_load(key, load, ttl_seconds, policy, force_refresh)
                )
                outcome = await self._bounded(key, pending, policy, stale)
                if outcome is None:
                    return self._serve_stale(stale, "timeout", span)  # type: ignore[no-any-return]
                result, shared = outcome
            else:
                result, shared = await self._shared_load(
                    key, load, ttl_seconds, policy, force_refresh
                )
        except LoadTimeoutError:
            raise
        except Exception:
            if stale is not None and stale.usable_on_error(self.core.wall()):
                return self._serve_stale(stale, "error", span)  # type: ignore[no-any-return]
            raise
        if shared:
            self.core.coalesced()
        return result

    async def _lookup(self, key: str) -> tuple[Any, StaleEntry | None]:
        """Below L1: L2's fresh value, or an expired one still in a window (L2's, else this
        process's shelf copy, which outlives a Redis outage)."""
        check_key(key)
        l2 = await self._live_l2()
        since = self.core.read_epoch()
        fetched = NOTHING if l2 is None else await l2.arun(l2.op_get(key))
        value, stale = self.core.lookup_l2(key, fetched, "get", since=since)
        if value is MISS and stale is None:
            stale = self.core.shelf.get(key, self.core.wall())
        return value, stale

    def _serve_stale(self, stale: StaleEntry | None, reason: str, span: Span | None) -> Any:
        assert stale is not None
        self.core.served_stale(reason)
        if span is not None:
            span.set_attributes({"cache.stale": True, "cache.stale.reason": reason})
        return stale.value

    async def _bounded(
        self,
        key: str,
        pending: AsyncDetached[tuple[T, bool]],
        policy: LoadPolicy,
        stale: StaleEntry | None,
    ) -> tuple[T, bool] | None:
        """Wait for a load within its timeouts; None means "serve the stale value"."""
        soft, hard = policy.load_soft_timeout, policy.load_timeout
        has_stale = stale is not None and stale.usable_on_error(self.core.wall())
        if has_stale and soft is not None and (hard is None or soft < hard):
            try:
                return await pending.result(soft)
            except TimeoutError:
                self.core.load_timed_out("soft")
                return None
        try:
            return await pending.result(hard)
        except TimeoutError:
            self.core.load_timed_out("hard")
            if has_stale:
                return None
            assert hard is not None
            raise LoadTimeoutError(key, hard) from None

    async def _shared_load(
        self,
        key: str,
        load: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None,
        policy: LoadPolicy,
        force_refresh: bool = False,
    ) -> tuple[T, bool]:
        return await self._flight.ado(
            key, lambda: self._load(key, load, ttl_seconds, policy, force_refresh)
        )

    def _revalidate(
        self,
        key: str,
        load: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None,
        policy: LoadPolicy,
    ) -> None:
        """One background load refreshes a value served stale (none if one is under way)."""
        if not self._flight.is_loading(key):
            AsyncDetached(lambda: self._refresh(key, load, ttl_seconds, policy))

    async def _refresh(
        self,
        key: str,
        load: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None,
        policy: LoadPolicy,
    ) -> None:
        try:
            await self._shared_load(key, load, ttl_seconds, policy, force_refresh=True)
        except Exception:
            self.core.refreshed(ok=False)  # the stale value stays until its window ends
        else:
            self.core.refreshed(ok=True)

    async def _load(
        self,
        key: str,
        load: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None,
        policy: LoadPolicy,
        force_refresh: bool,
    ) -> T:
        if not force_refresh:
            entry = self.l1.get(key)  # a load that finished while we waited for L2
            if entry is not None:
                self.core.coalesced(event=False)
                return entry.value  # type: ignore[no-any-return]
        if policy.lock:
            l2 = await self._live_l2()
            if l2 is not None:
                return await self._load_locked(l2, key, load, ttl_seconds, policy)  # type: ignore[no-any-return]
        value = await self._call_loader(key, load)
        await self._keep(key, value, ttl_seconds, policy)
        return value

    async def _call_loader(self, key: str, load: Callable[[], Awaitable[T] | T]) -> T:
        with self.core.observe("hiercache.load", key):
            started = time.perf_counter()
            try:
                value = await aresolve(load())
            except BaseException:
                self.core.loaded(started, ok=False)
                raise
            self.core.loaded(started, ok=True)
            return value

    async def _keep(
        self,
        key: str,
        value: Any,
        ttl_seconds: float | None,
        policy: LoadPolicy,
        l2: RedisCacheBackend | None = None,
    ) -> None:
        """Store a load's result by its policy (``l2``: write through to it, now)."""
        if value is None and policy.cache_none_ttl is not None:
            if not policy.cache_none_ttl:
                return  # 0: None is not cached
            ttl_seconds = policy.cache_none_ttl
        if self._flight.superseded(key):  # deleted, invalidated or rewritten meanwhile
            self.core.load_discarded()
            return
        if l2 is None:
            await self._store(key, value, ttl_seconds, policy)
            return
        write = self.core.encode(key, value, ttl_seconds, policy)
        self.core.store_l1(write)
        await l2.arun(l2.op_set_many([write.row]))

    async def _load_locked(
        self,
        l2: RedisCacheBackend,
        key: str,
        load: Callable[[], Awaitable[T] | T],
        ttl_seconds: float | None,
        policy: LoadPolicy,
    ) -> Any:
        """Load under the cross-process lock, or wait (at most lock_timeout_seconds) for
        the process that holds it to store its value, then load anyway."""
        token = secrets.token_hex(16)
        deadline = time.monotonic() + policy.lock_timeout
        delay, waited = LOCK_POLL_SECONDS[0], False
        while True:
            if await l2.arun(l2.op_lock(key, token, policy.lock_timeout)):
                try:
                    value = await self._call_loader(key, load)
                    # Written through before the release, so waiters find it in Redis.
                    await self._keep(key, value, ttl_seconds, policy, l2)
                finally:
                    await l2.arun(l2.op_unlock(key, token))
                return value
            if not waited:
                waited = True
                self.core.lock_waited(timed_out=False)
            if time.monotonic() >= deadline:
                self.core.lock_waited(timed_out=True)
                value = await self._call_loader(key, load)
                await self._keep(key, value, ttl_seconds, policy)
                return value
            await asleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, LOCK_POLL_SECONDS[1])
            found, _ = self.core.lookup_l2(key, await l2.arun(l2.op_get(key)), "get", count=False)
            if found is not MISS:
                return found

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
        **resilience: Any,
    ) -> AsyncIterator[T]:
        """``async with cache.cached_operation(key, op, ttl) as result:`` (get or load);
        ``resilience`` takes ``get_or_load``'s keyword arguments."""
        yield await self.get_or_load(
            cache_key, operation, ttl_seconds, force_refresh=force_refresh, **resilience
        )
