"""L1 eviction policies, kept apart from storage.

A policy only orders keys: the memory tier tells it what was inserted, read and
removed, and asks it which key to evict next. Every method is O(1) (amortised),
and is called with the tier's lock held.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from typing import Protocol

from hiercache.settings import CacheStrategy


class EvictionPolicy(Protocol):
    def record_insert(self, key: str, expires_at: float) -> None: ...
    def record_access(self, key: str) -> None: ...
    def record_remove(self, key: str) -> None: ...
    def victim(self) -> str:
        """The key to evict next. Only called while the tier holds at least one key."""
        ...


class LRUPolicy:
    """Least recently used."""

    def __init__(self) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()

    def record_insert(self, key: str, expires_at: float) -> None:
        self._order[key] = None
        self._order.move_to_end(key)

    def record_access(self, key: str) -> None:
        self._order.move_to_end(key)

    def record_remove(self, key: str) -> None:
        self._order.pop(key, None)

    def victim(self) -> str:
        return next(iter(self._order))


class FIFOPolicy(LRUPolicy):
    """First in, first out: reads do not reorder; re-setting a key keeps its place."""

    def record_insert(self, key: str, expires_at: float) -> None:
        self._order.setdefault(key, None)

    def record_access(self, key: str) -> None:
        pass


class LFUPolicy:
    """Least frequently used, ties broken by least recent; O(1) with frequency buckets."""

    def __init__(self) -> None:
        self._freq: dict[str, int] = {}
        self._buckets: dict[int, OrderedDict[str, None]] = {}
        self._min = 0

    def record_insert(self, key: str, expires_at: float) -> None:
        if key in self._freq:
            self.record_access(key)
            return
        self._freq[key] = 1
        self._buckets.setdefault(1, OrderedDict())[key] = None
        self._min = 1

    def record_access(self, key: str) -> None:
        f = self._freq[key]
        bucket = self._buckets[f]
        del bucket[key]
        if not bucket:
            del self._buckets[f]
            if self._min == f:
                self._min = f + 1
        self._freq[key] = f + 1
        self._buckets.setdefault(f + 1, OrderedDict())[key] = None

    def record_remove(self, key: str) -> None:
        f = self._freq.pop(key, None)
        if f is None:
            return
        bucket = self._buckets[f]
        del bucket[key]
        if not bucket:
            del self._buckets[f]
            if self._min == f:
                self._min = min(self._buckets, default=0)

    def victim(self) -> str:
        if self._min not in self._buckets:
            self._min = min(self._buckets)
        return next(iter(self._buckets[self._min]))


class TTLPolicy:
    """Evicts the key nearest to expiry (a heap with lazy deletion)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._live: dict[str, int] = {}
        self._seq = itertools.count()

    def record_insert(self, key: str, expires_at: float) -> None:
        seq = next(self._seq)
        self._live[key] = seq
        heapq.heappush(self._heap, (expires_at, seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = [item for item in self._heap if self._live.get(item[2]) == item[1]]
            heapq.heapify(self._heap)

    def record_access(self, key: str) -> None:
        pass

    def record_remove(self, key: str) -> None:
        self._live.pop(key, None)

    def victim(self) -> str:
        while True:
            _, seq, key = self._heap[0]
            if self._live.get(key) == seq:
                return key
            heapq.heappop(self._heap)


class _FrequencySketch:
    """A 4-way count-min sketch of recent access frequency, halved periodically (aging)."""

    def __init__(self, capacity: int) -> None:
        width = 1
        while width < max(16, capacity):
            width <<= 1
        self._mask = width - 1
        self._table = [0] * (width * 4)
        self._width = width
        self._additions = 0
        self._reset_at = 10 * max(16, capacity)

    def _slots(self, key: str) -> tuple[int, int, int, int]:
        h = hash(key)
        w, m = self._width, self._mask
        return (
            h & m,
            w + ((h >> 16) & m),
            2 * w + ((h * 0x9E3779B1 >> 7) & m),
            3 * w + ((h * 0x85EBCA6B >> 13) & m),
        )

    def increment(self, key: str) -> None:
        t = self._table
        for i in self._slots(key):
            if t[i] < 15:
                t[i] += 1
        self._additions += 1
        if self._additions >= self._reset_at:
            self._table = [c >> 1 for c in t]
            self._additions //= 2

    def frequency(self, key: str) -> int:
        t = self._table
        return min(t[i] for i in self._slots(key))


class AdaptivePolicy:
    """W-TinyLFU-style: a small LRU admission window in front of a segmented-LRU main area.

    New keys enter the window. When the cache is full, the window's oldest key (the
    candidate) competes with the main area's victim, and a frequency sketch decides:
    a one-off scan cannot flush a hot working set, while a recency burst still lands in
    the window. While the cache is not full, window overflow moves to the main area freely.
    """

    def __init__(self, capacity: int, window_fraction: float = 0.01) -> None:
        self._window_cap = max(1, int(capacity * window_fraction))
        self._protected_cap = max(1, int((capacity - self._window_cap) * 0.8))
        self._window: OrderedDict[str, None] = OrderedDict()
        self._probation: OrderedDict[str, None] = OrderedDict()
        self._protected: OrderedDict[str, None] = OrderedDict()
        self._sketch = _FrequencySketch(capacity)

    def record_insert(self, key: str, expires_at: float) -> None:
        if key in self._window or key in self._probation or key in self._protected:
            self.record_access(key)
            return
        self._sketch.increment(key)
        self._window[key] = None
        if len(self._window) > self._window_cap:
            moved, _ = self._window.popitem(last=False)
            self._probation[moved] = None

    def record_access(self, key: str) -> None:
        self._sketch.increment(key)
        if key in self._window:
            self._window.move_to_end(key)
        elif key in self._probation:
            del self._probation[key]
            self._protected[key] = None
            if len(self._protected) > self._protected_cap:
                demoted, _ = self._protected.popitem(last=False)
                self._probation[demoted] = None
        elif key in self._protected:
            self._protected.move_to_end(key)

    def record_remove(self, key: str) -> None:
        for segment in (self._window, self._probation, self._protected):
            if segment.pop(key, 0) is None:
                return

    def victim(self) -> str:
        main = self._probation or self._protected
        if len(self._window) >= self._window_cap and main:
            # The next insert overflows the window: its oldest key competes for main.
            candidate, incumbent = next(iter(self._window)), next(iter(main))
            if self._sketch.frequency(candidate) > self._sketch.frequency(incumbent):
                del self._window[candidate]
                self._probation[candidate] = None
                return incumbent
            return candidate
        for segment in (self._probation, self._protected, self._window):
            if segment:
                return next(iter(segment))
        raise LookupError("victim() called on an empty policy")


def make_policy(strategy: CacheStrategy, capacity: int) -> EvictionPolicy:
    if strategy is CacheStrategy.LRU:
        return LRUPolicy()
    if strategy is CacheStrategy.LFU:
        return LFUPolicy()
    if strategy is CacheStrategy.FIFO:
        return FIFOPolicy()
    if strategy is CacheStrategy.TTL:
        return TTLPolicy()
    return AdaptivePolicy(capacity)
