"""Loading: ``get_or_load`` and ``cached_operation``, with single-flight.

Concurrent callers of one key share one load: the core's ``SingleFlight`` spans both
fronts, so asyncio tasks and threads loading the same key call the loader once.
Exceptions propagate to every waiter and are never cached. A load overtaken by a write,
delete or invalidation of its key answers its callers but stores nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from hiercache._async.writing import AsyncWritePath
from hiercache.concurrency import aresolve
from hiercache.core import MISS
from hiercache.telemetry import recording_span_active
from hiercache.telemetry.instruments import MISSED

T = TypeVar("T")


class AsyncLoader(AsyncWritePath):
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
        result, shared = await self._flight.ado(
            key, lambda: self._load(key, load, ttl_seconds, force_refresh)
        )
        if shared:
            self.core.coalesced()
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
                self.core.coalesced(event=False)
                return entry.value  # type: ignore[no-any-return]
        with self.core.observe("hiercache.load", key):
            started = time.perf_counter()
            try:
                value = await aresolve(load())
            except BaseException:
                self.core.loaded(started, ok=False)
                raise
            self.core.loaded(started, ok=True)
        if self._flight.superseded(key):  # deleted, invalidated or rewritten meanwhile
            self.core.load_discarded()
        else:
            await self._store(key, value, ttl_seconds)
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
        """``async with cache.cached_operation(key, op, ttl) as result:`` (get or load)."""
        yield await self.get_or_load(cache_key, operation, ttl_seconds, force_refresh=force_refresh)
