"""The event recorder: plain in-process counters, the one source of truth for counts.

``get_statistics()`` reads them, and telemetry exports them through observable
instruments at collection time, so the hot path never calls into an SDK.

Each thread increments its own row (no lock, no lost update even without a GIL);
a snapshot sums the rows. Rows of finished threads are kept, so no count is lost.
"""

from __future__ import annotations

import threading
import weakref
from operator import add
from typing import Final

from hiercache.l2_errors import ERROR_TYPES

L1: Final = "l1_memory"
L2: Final = "l2_redis"
LEVELS: Final = (L1, L2)
OPERATIONS: Final = ("get", "get_many")
EVICTION_REASONS: Final = ("size", "expired", "deleted", "invalidated")
L2_ERROR_TYPES: Final = ERROR_TYPES  # one list: the taxonomy of l2_errors
LOAD_RESULTS: Final = ("success", "error")
#: Why a write-behind write (or a deferred delete/invalidation) was given up.
DROP_REASONS: Final = ("queue_full", "expired", "shutdown", "error", "deferred_overflow")
#: L2 operations kept during an outage and applied after recovery.
DEFERRED_OPERATIONS: Final = ("delete", "invalidate")


class _Layout:
    """Names every counter slot once: ``(kind, attributes)`` -> index."""

    def __init__(self) -> None:
        self.slots: list[tuple[str, tuple[tuple[str, str], ...]]] = []

    def add(self, kind: str, **attrs: str) -> int:
        self.slots.append((kind, tuple(attrs.items())))
        return len(self.slots) - 1


_layout = _Layout()
HIT: Final = {
    (lvl, op): _layout.add("hits", level=lvl, operation=op) for lvl in LEVELS for op in OPERATIONS
}
MISSES: Final = {op: _layout.add("misses", operation=op) for op in OPERATIONS}
PROMOTION: Final = _layout.add("promotions")
EVICTION: Final = {
    (lvl, r): _layout.add("evictions", level=lvl, reason=r)
    for lvl in LEVELS
    for r in EVICTION_REASONS
}
L2_ERROR: Final = {t: _layout.add("l2_errors", error_type=t) for t in L2_ERROR_TYPES}
LOAD: Final = {r: _layout.add("loads", result=r) for r in LOAD_RESULTS}
COALESCED: Final = _layout.add("coalesced")
#: Loads whose result was not stored: their key was written or invalidated meanwhile.
LOAD_DISCARDED: Final = _layout.add("loads_discarded")
STALE_REASONS: Final = ("error", "timeout", "revalidate")
#: Expired values served inside a stale window, by why.
STALE_SERVED: Final = {r: _layout.add("stale_served", stale_reason=r) for r in STALE_REASONS}
#: Background refreshes (stale-while-revalidate), by result.
REFRESH: Final = {r: _layout.add("refreshes", result=r) for r in LOAD_RESULTS}
#: Callers that stopped waiting for a load at its soft or hard timeout.
LOAD_TIMEOUT: Final = {t: _layout.add("load_timeouts", timeout=t) for t in ("soft", "hard")}
#: Cross-process stampede lock: waits for another process's load, and waits that timed out.
LOCK_WAIT: Final = _layout.add("lock_waits")
LOCK_TIMEOUT: Final = _layout.add("lock_timeouts")
#: The backplane: invalidation messages published and received, and L1 resyncs.
BACKPLANE_PUBLISHED: Final = _layout.add("backplane_published")
BACKPLANE_RECEIVED: Final = _layout.add("backplane_received")
BACKPLANE_RESYNC: Final = _layout.add("backplane_resyncs")
#: L2 writes given up, by reason (the attribute is ``drop_reason``: ``reason`` is eviction's).
WB_DROPPED: Final = {r: _layout.add("write_behind_dropped", drop_reason=r) for r in DROP_REASONS}
DEFERRED: Final = {op: _layout.add("l2_deferred", operation=op) for op in DEFERRED_OPERATIONS}
#: Times the L2 circuit breaker opened (``health.py``): a flapping breaker shows here.
L2_BREAKER_OPENED: Final = _layout.add("l2_breaker_openings")
SLOTS: Final = tuple(_layout.slots)

L1_HIT_GET: Final = HIT[L1, "get"]


class _Lifetime:
    """Lives exactly as long as one thread's row: its finalizer retires the row."""

    __slots__ = ("__weakref__",)


class _ThreadRow(threading.local):
    def __init__(self, stats: CacheStats) -> None:
        self.c = row = [0] * len(SLOTS)
        self._lifetime = _Lifetime()
        stats._adopt(row)
        # When the thread ends, its locals go; the row's counts move into the retired row,
        # so thread churn (a thread per request) neither loses counts nor grows memory.
        weakref.finalize(self._lifetime, _retire, weakref.ref(stats), row)


def _retire(stats_ref: weakref.ref[CacheStats], row: list[int]) -> None:
    stats = stats_ref()  # a weak reference: the finalizer must not keep the stats alive
    if stats is not None:
        stats._retire(row)


class CacheStats:
    """Counters for one cache. ``stats.row.c[INDEX] += 1`` counts an event on this thread."""

    def __init__(self) -> None:
        self._rows: list[list[int]] = []
        self._retired = [0] * len(SLOTS)
        self._lock = threading.Lock()
        self.row = _ThreadRow(self)

    def _adopt(self, row: list[int]) -> None:
        with self._lock:
            self._rows.append(row)

    def _retire(self, row: list[int]) -> None:
        with self._lock:
            self._rows = [r for r in self._rows if r is not row]
            self._retired = [a + b for a, b in zip(self._retired, row)]

    @property
    def live_rows(self) -> int:
        """Rows of threads still alive (for tests and diagnostics)."""
        return len(self._rows)

    def add(self, index: int, n: int = 1) -> None:
        self.row.c[index] += n

    def snapshot(self) -> list[int]:
        """Totals per slot (index as in ``SLOTS``)."""
        with self._lock:
            totals, rows = self._retired, list(self._rows)
        for row in rows:  # usually one or two live rows: a C-level add per row
            totals = list(map(add, totals, row))
        return totals if rows else list(totals)

    def total(self, kind: str, **attrs: str) -> int:
        """Sum of every slot of ``kind`` whose attributes include ``attrs``."""
        want = set(attrs.items())
        snap = self.snapshot()
        return sum(v for v, (k, a) in zip(snap, SLOTS) if k == kind and want <= set(a))
