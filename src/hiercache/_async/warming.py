"""Warming: ``warm_cache`` now, and registered warmers re-run in the background.

Loads run in batches of ``warming_batch_size`` (at most ``warming_concurrency`` at once
on the async front); each batch is stored with one ``set_many``. A key whose load fails
or returns None is skipped and counted. Background warming runs on one front at a time.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from hiercache._async.loading import AsyncLoader
from hiercache.concurrency import agather_limited, aresolve
from hiercache.core import MISS
from hiercache.validation import dedupe_keys

log = logging.getLogger("hiercache")


class AsyncWarmer(AsyncLoader):
    async def warm_cache(
        self,
        keys: Iterable[str],
        operation: Callable[[str], Awaitable[Any] | Any],
        ttl_seconds: float | None = None,
    ) -> int:
        """Load and cache ``operation(key)`` for each key; returns how many were cached."""
        keys = dedupe_keys(keys)
        size, limit = self.config.warming_batch_size, self.config.warming_concurrency
        with self.core.observe("hiercache.warm"):
            warmed = 0
            for start in range(0, len(keys), size):
                batch = keys[start : start + size]
                calls = [functools.partial(self._warm_one, key, operation) for key in batch]
                results = await agather_limited(calls, limit)
                pairs = {k: v for k, v in zip(batch, results) if v is not MISS}
                if pairs:
                    await self.set_many(pairs, ttl_seconds)
                warmed += len(pairs)
            return warmed

    async def _warm_one(self, key: str, operation: Callable[[str], Awaitable[Any] | Any]) -> Any:
        started = time.perf_counter()
        try:
            value = await aresolve(operation(key))
        except Exception as exc:
            self.core.loaded(started, ok=False, operation="warm")
            self.core.warm_failed(key, exc)
            return MISS
        self.core.loaded(started, ok=True, operation="warm")
        return MISS if value is None else value

    def register_warmer(
        self,
        keys: Iterable[str] | Callable[[], Awaitable[Iterable[str]] | Iterable[str]],
        operation: Callable[[str], Awaitable[Any] | Any],
    ) -> None:
        """Re-warm ``keys`` every ``warming_interval_seconds`` while ``warming_enabled``.
        ``keys`` may be a callable returning the keys of the moment."""
        self.core.warmers.append((keys, operation))
        if self._initialized:
            self._start_warming()

    def _on_start(self) -> None:
        self._start_warming()

    async def _on_close(self) -> None:
        await self._warmer.stop()
        self.core.release_warming(self)

    def _start_warming(self) -> None:
        if (
            self.config.warming_enabled
            and self.core.warmers
            and not self._warmer.running
            and self.core.claim_warming(self)
        ):
            self._warmer.start(self._warm_forever)

    async def _warm_forever(self) -> None:
        while not self._warmer.stopped:
            for keys, operation in list(self.core.warmers):
                if self._warmer.stopped:
                    return
                try:
                    chosen = await aresolve(keys()) if callable(keys) else keys
                    await self.warm_cache(chosen, operation)
                except Exception:
                    log.exception("hiercache: background warmer failed")
            if not self._warmer.stopped:
                await self._warmer.pause(self.config.warming_interval_seconds)
