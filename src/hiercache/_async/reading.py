"""The read path: ``get``, ``get_many``, ``exists``.

A ``get`` reads top to bottom: L1; on a miss, the key is checked and L2 asked (if it is
live); the core counts the answer, decodes it and promotes a hit into L1; else a miss.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hiercache._async.lifecycle import AsyncLifecycle
from hiercache.core import MISS
from hiercache.memory import Entry
from hiercache.redis_tier import NOTHING, Fetched
from hiercache.stats import L1_HIT_GET
from hiercache.telemetry import SPAN_KEY, current_context
from hiercache.telemetry.instruments import HIT_L1, HIT_L2, MISSED
from hiercache.validation import check_key

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class AsyncReadPath(AsyncLifecycle):
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
            self._row.c[L1_HIT_GET] += 1
            return entry.value
        return await self._get_below_l1(key, default)

    async def _get_observed(self, key: str, default: Any) -> Any:
        """``get`` with its L1 latency sampled, or inside a span when tracing. Inside the
        caller's recording span an L1 hit is counted on that span, not given its own."""
        caller = self.telemetry.caller_span()
        if caller is not None:
            entry = self._l1_lookup(key)
            if entry is not None:
                self.telemetry.note_l1_hit(caller)
                return entry.value
            with self.telemetry.span("hiercache.get", key, attributes=MISSED) as span:
                value = await self._get_below_l1(key, MISS)
                if value is not MISS:
                    span.set_attributes(HIT_L2)
                return default if value is MISS else value
        if not self.telemetry.tracing():
            entry = self._timed_l1_get(key)
            if entry is not None:
                return entry.value
            return await self._get_below_l1(key, default)
        with self.telemetry.span("hiercache.get", key, attributes=MISSED) as span:
            value = await self._get_traced(key, span)
            return default if value is MISS else value

    def _timed_l1_get(self, key: str) -> Entry | None:
        """An L1 lookup (counted on a hit) whose latency is sampled; restarts the countdown."""
        self._tick = self._sample_every
        started = time.perf_counter()
        entry = self.l1.get(key)
        if entry is not None:
            self._row.c[L1_HIT_GET] += 1
            self.telemetry.sample_l1(time.perf_counter() - started)
        return entry

    def _l1_lookup(self, key: str) -> Entry | None:
        """An L1 lookup counted on a hit, its latency sampled when the countdown is due."""
        if self._tick <= 0:
            return self._timed_l1_get(key)
        entry = self.l1.get(key)
        if entry is not None:
            self._row.c[L1_HIT_GET] += 1
        return entry

    async def _get_traced(self, key: str, span: Span) -> Any:
        """L1, then L2, inside ``span`` (which starts as a miss): the value, or MISS."""
        entry = self.l1.get(key)
        if entry is not None:
            self._row.c[L1_HIT_GET] += 1
            span.set_attributes(HIT_L1)
            return entry.value
        value = await self._get_below_l1(key, MISS)
        if value is not MISS:
            span.set_attributes(HIT_L2)
        return value

    async def _get_below_l1(self, key: str, default: Any) -> Any:
        check_key(key)
        l2 = await self._live_l2()
        since = self.core.read_epoch()
        fetched = NOTHING if l2 is None else await l2.arun(l2.op_get(key))
        return self.core.answer_from_l2(key, fetched, default, "get", since)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The cached values of ``keys`` that are present (L1, then one MGET for the rest)."""
        with self.core.observe("hiercache.get_many"):
            found, missing = self.core.l1_many(keys)
            l2 = await self._live_l2() if missing else None
            since = self.core.read_epoch()
            fetched: list[Fetched] = [NOTHING] * len(missing)
            if l2 is not None:
                fetched = await l2.arun(l2.op_get_many(missing))
            return self.core.merge_many(found, missing, fetched, since)

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is cached in either tier (without reading or promoting it)."""
        if self.l1.get(check_key(key)) is not None:
            return True
        l2 = await self._live_l2()
        return l2 is not None and await l2.arun(l2.op_exists(key))
