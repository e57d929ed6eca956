"""L1 eviction policies, kept apart from storage.

A policy only orders keys: the memory tier tells it what was inserted, read and
removed, and asks it which key to evict next. Every method is O(1) (amortised),
and is called with the tier's lock held, except ``touch`` (see ``ReadMode``).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Protocol

from hiercache.errors import CacheError
from hiercache.settings import CacheStrategy


class UnknownStrategyError(CacheError, ValueError):
    """``make_policy`` was given a strategy it does not know."""

    def __init__(self, strategy: object) -> None:
        super().__init__(
            f"unknown L1 strategy {strategy!r}: expected one of "
            + ", ".join(s.value for s in CacheStrategy)
        )
        self.strategy = strategy


class ReadMode(Enum):
    """How the tier hands a policy the reads (hits), which never take the tier's lock."""

    DIRECT = "direct"  # the tier calls ``touch(key)`` itself: one atomic C-level call
    IGNORED = "ignored"  # reads do not change the order (fifo, ttl)
    EXACT_BUFFER = "exact"  # buffered, never dropped, replayed in order under the lock
    LOSSY_BUFFER = "lossy"  # buffered in a bounded ring that drops reads when full


class EvictionPolicy(Protocol):
    read_mode: ReadMode

    def record_insert(self, key: str, expires_at: float) -> None: ...
    def record_access(self, key: str) -> None: ...
    def record_accesses(self, keys: Iterable[str]) -> None: ...
    def record_remove(self, key: str) -> None: ...
    def touch(self, key: str) -> object:
        """A read, lock-free (ReadMode.DIRECT only): must be safe without the tier's lock."""
        ...

    def victim(self) -> str:
        """The key to evict next. Only called while the tier holds at least one key."""
        ...


class LRUPolicy:
    """Least recently used, exact: every read moves its key to the recent end.

    ``touch`` is ``OrderedDict.move_to_end``, one C call that is atomic under the GIL,
    so a hit reorders the key without the tier's lock and without a buffer.
    """

    read_mode = ReadMode.DIRECT

    def __init__(self) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()
        self.touch: Callable[[str], object] = self._order.move_to_end

    def record_insert(self, key: str, expires_at: float) -> None:
        self._order[key] = None
        self._order.move_to_end(key)

    def record_access(self, key: str) -> None:
        if key in self._order:
            self._order.move_to_end(key)

    def record_accesses(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.record_access(key)

    def record_remove(self, key: str) -> None:
        self._order.pop(key, None)

    def victim(self) -> str:
        while True:
            try:
                return next(iter(self._order))
            except RuntimeError:  # a lock-free touch reordered it meanwhile: look again
                continue


class FIFOPolicy(LRUPolicy):
    """First in, first out: reads do not reorder; re-setting a key keeps its place."""

    read_mode = ReadMode.IGNORED

    def record_insert(self, key: str, expires_at: float) -> None:
        self._order.setdefault(key, None)

    def record_access(self, key: str) -> None:
        pass


class LFUPolicy:
    """Least frequently used, ties broken by least recent; O(1) with frequency buckets.

    Aging: after every ``10 x capacity`` recorded uses (reads and writes), every count is
    halved, rounded down but never below 1, and the halving keeps recency order among
    keys that end up with equal counts. Old popularity therefore fades within a few such
    periods, so a key that was hot long ago cannot sit in the cache for ever (plain LFU
    collapses on recency-only workloads). Reads are replayed exactly, in order.
    """

    read_mode = ReadMode.EXACT_BUFFER

    def __init__(self, capacity: int = 1000) -> None:
        self._freq: dict[str, int] = {}
        self._stamp: dict[str, int] = {}
        self._buckets: dict[int, OrderedDict[str, None]] = {}
        self._min = 0
        self._clock = 0
        self._age_every = 10 * max(1, capacity)
        self._uses = 0

    def touch(self, key: str) -> object:  # pragma: no cover - not DIRECT
        raise NotImplementedError

    def record_insert(self, key: str, expires_at: float) -> None:
        if key in self._freq:
            self.record_access(key)
            return
        self._freq[key] = 1
        self._clock += 1
        self._stamp[key] = self._clock
        self._buckets.setdefault(1, OrderedDict())[key] = None
        self._min = 1
        self._used()

    def record_access(self, key: str) -> None:
        f = self._freq.get(key)
        if f is None:
            return
        bucket = self._buckets[f]
        del bucket[key]
        if not bucket:
            del self._buckets[f]
            if self._min == f:
                self._min = f + 1
        self._freq[key] = f + 1
        self._clock += 1
        self._stamp[key] = self._clock
        self._buckets.setdefault(f + 1, OrderedDict())[key] = None
        self._used()

    def record_accesses(self, keys: Iterable[str]) -> None:
        """``record_access`` for each key, in order (inlined: the tier's drains call this)."""
        freq, stamp, buckets = self._freq, self._stamp, self._buckets
        for key in keys:
            f = freq.get(key)
            if f is None:
                continue
            bucket = buckets[f]
            del bucket[key]
            if not bucket:
                del buckets[f]
                if self._min == f:
                    self._min = f + 1
            freq[key] = f + 1
            self._clock += 1
            stamp[key] = self._clock
            up = buckets.get(f + 1)
            if up is None:
                buckets[f + 1] = up = OrderedDict()
            up[key] = None
            self._uses += 1
            if self._uses >= self._age_every:
                self._uses = 0
                self._age()
                freq, stamp, buckets = self._freq, self._stamp, self._buckets

    def _used(self) -> None:
        self._uses += 1
        if self._uses >= self._age_every:
            self._uses = 0
            self._age()

    def _age(self) -> None:
        merged: dict[int, list[str]] = {}
        for f, bucket in self._buckets.items():
            merged.setdefault(max(1, f // 2), []).extend(bucket)
        stamp = self._stamp
        self._buckets = {}
        for f in sorted(merged):
            keys = sorted(merged[f], key=stamp.__getitem__)
            self._buckets[f] = OrderedDict.fromkeys(keys)
            for key in keys:
                self._freq[key] = f
        self._min = min(self._buckets, default=0)

    def record_remove(self, key: str) -> None:
        f = self._freq.pop(key, None)
        if f is None:
            return
        del self._stamp[key]
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

    read_mode = ReadMode.IGNORED

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._live: dict[str, int] = {}
        self._seq = itertools.count()

    def touch(self, key: str) -> object:  # pragma: no cover - not DIRECT
        raise NotImplementedError

    def record_insert(self, key: str, expires_at: float) -> None:
        seq = next(self._seq)
        self._live[key] = seq
        heapq.heappush(self._heap, (expires_at, seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = [item for item in self._heap if self._live.get(item[2]) == item[1]]
            heapq.heapify(self._heap)

    def record_access(self, key: str) -> None:
        pass

    def record_accesses(self, keys: Iterable[str]) -> None:
        pass

    def record_remove(self, key: str) -> None:
        self._live.pop(key, None)

    def victim(self) -> str:
        while True:
            _, seq, key = self._heap[0]
            if self._live.get(key) == seq:
                return key
            heapq.heappop(self._heap)


def make_policy(strategy: CacheStrategy, capacity: int) -> EvictionPolicy:
    """The policy for ``strategy``; ``UnknownStrategyError`` for anything else."""
    if strategy is CacheStrategy.LRU:
        return LRUPolicy()
    if strategy is CacheStrategy.LFU:
        return LFUPolicy(capacity)
    if strategy is CacheStrategy.FIFO:
        return FIFOPolicy()
    if strategy is CacheStrategy.TTL:
        return TTLPolicy()
    if strategy is CacheStrategy.ADAPTIVE:
        from hiercache.adaptive import AdaptivePolicy  # it builds on this module

        return AdaptivePolicy(capacity)
    raise UnknownStrategyError(strategy)
