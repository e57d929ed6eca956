"""Lifecycle of one front: start-up, the L2 probe, shutdown, ``async with``.

A front is a view of a ``CacheCore``: it holds references to the core's shared parts (so
the L1 hit path reads its own attributes) and its own per-front state (initialised or
not, the latency-sampling countdown, its background warmer).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from hiercache.concurrency import AsyncBackground
from hiercache.core import CacheCore
from hiercache.redis_tier import RedisCacheBackend


class AsyncLifecycle:
    """Start-up, L2 probing and shutdown; the base of the front's class chain."""

    def __init__(self, core: CacheCore) -> None:
        self.core = core
        self.config = core.config
        self.stats = core.stats
        self.codec = core.codec
        self.telemetry = core.telemetry
        self.l1 = core.l1
        self.l2 = core.l2
        self.write_behind = core.write_behind
        self._health = core.health
        self._flight = core.flight
        self._row = core.stats.row
        self._telemetry_on = core.config.telemetry_enabled
        self._trace_all = core.telemetry.trace_all
        # Every get is observed (and traced) under trace_all; else every Nth is timed.
        self._sample_every = 1 if self._trace_all else core.config.l1_latency_sample_every
        self._tick = self._sample_every
        self._initialized = False
        self._warmer = AsyncBackground()

    async def initialize(self) -> None:
        """Probe L2 and start background warming. Operations call it lazily."""
        if self._initialized:
            return
        self._initialized = True
        await self._probe()
        if self.core.coherence is not None:  # the backplane's subscription
            self.core.coherence.start()
        self._on_start()

    async def _probe(self) -> None:
        """The start-up ping; later ones are the prober's (in the background, see ``health``)."""
        if self.l2 is not None:
            if self._health.probe_due():
                self._health.probed(await self.l2.arun(self.l2.op_ping()))
            self.l2.prober.resume()

    async def _live_l2(self) -> RedisCacheBackend | None:
        """L2, if operations should use it now (the breaker is closed); else None."""
        if not self._initialized:
            await self.initialize()
        return self.l2 if self._health.live else None

    def _on_start(self) -> None:
        """Hook: what starts with the front (background warming)."""

    async def _on_close(self) -> None:
        """Hook: what stops with the front."""

    async def close(self) -> None:
        """Stop warming, flush pending write-behind writes, close this front's connections."""
        await self._on_close()
        if self.core.coherence is not None:
            self.core.coherence.stop()
        if self.write_behind is not None:
            await self.write_behind.aclose()
        if self.l2 is not None:
            await self.l2.aclose()
        self._initialized = False

    async def __aenter__(self) -> Any:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
