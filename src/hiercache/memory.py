"""The L1 memory tier: a bounded, thread-safe map with per-entry TTL.

Bounded by entry count and optionally by bytes; which key goes when it is full is the
policy's decision (``policies``). Every removal reports its reason to ``on_evict``.

Reads never take the lock. How a hit reaches the policy depends on its ``ReadMode``:
``lru`` reorders in place (one atomic C call), ``fifo``/``ttl`` ignore reads, ``lfu``
buffers them without loss, ``adaptive`` buffers them in a lossy ring (as Caffeine does).
Buffered reads are replayed in order, under the lock, before every write. The size
advisor (``advisor``) is fed the same way: every read's key goes to a lossy ring that
a write drains once it holds ``ADVICE_BATCH`` reads (and ``what_if`` drains too).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from enum import Enum
from typing import Any

from hiercache.advisor import SizeAdvisor
from hiercache.policies import EvictionPolicy, ReadMode, make_policy
from hiercache.settings import CacheStrategy

# A rough per-entry overhead (dict slot, Entry object, policy bookkeeping) added to the
# encoded payload size when accounting bytes.
ENTRY_OVERHEAD_BYTES = 240
# How many reads are buffered between two writes: the lossy ring (adaptive) drops the
# oldest beyond it; the exact buffer (lfu) is drained by the read that fills it.
READ_BUFFER_SIZE = 4096
# Reads kept for the size advisor (a lossy ring), and how many a write lets pile up
# before it hands them over.
ADVICE_BUFFER_SIZE = 4096
ADVICE_BATCH = 1024


class EvictionReason(str, Enum):
    SIZE = "size"
    EXPIRED = "expired"
    DELETED = "deleted"
    INVALIDATED = "invalidated"


class Entry:
    __slots__ = ("expires_at", "size", "value")

    def __init__(self, value: Any, expires_at: float, size: int) -> None:
        self.value = value
        self.expires_at = expires_at
        self.size = size


EvictListener = Callable[[str, EvictionReason], None]


def _ignore(key: str, reason: EvictionReason) -> None:
    pass


# A C-level callable that does nothing with a key (discard from a set kept empty): the
# ``touch`` of policies that ignore reads; a Python no-op would cost a frame per hit.
_NO_TOUCH: Callable[[str], object] = set[str]().discard


class MemoryTier:
    """The L1 tier. ``get`` returns the live ``Entry`` (or None); all methods are thread-safe."""

    def __init__(
        self,
        max_entries: int,
        *,
        max_bytes: int | None = None,
        strategy: CacheStrategy = CacheStrategy.LRU,
        clock: Callable[[], float] = time.monotonic,
        on_evict: EvictListener = _ignore,
        advisor: bool = True,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.on_evict = on_evict
        self._policy: EvictionPolicy = make_policy(strategy, max_entries)
        self._data: dict[str, Entry] = {}
        self._bytes = 0
        self._expiry: list[tuple[float, int, str]] = []  # (expires_at, id(entry), key)
        self._lock = threading.Lock()
        mode = self._policy.read_mode
        self._lossy = mode is ReadMode.LOSSY_BUFFER
        self._reads: deque[str] = deque(
            maxlen=READ_BUFFER_SIZE if mode is ReadMode.LOSSY_BUFFER else None
        )
        self._touch: Callable[[str], object] = {
            ReadMode.DIRECT: self._policy.touch,
            ReadMode.IGNORED: _NO_TOUCH,
            ReadMode.EXACT_BUFFER: self._buffer_read,
            ReadMode.LOSSY_BUFFER: self._reads.append,
        }[mode]
        self._advisor = SizeAdvisor(max_entries) if advisor else None
        self._advice: deque[str] = deque(maxlen=ADVICE_BUFFER_SIZE)
        self._advise: Callable[[str], object] = self._advice.append if advisor else _NO_TOUCH
        self._misses = 0
        self._exact_lru = strategy is CacheStrategy.LRU

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def keys(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._data))

    def get(self, key: str) -> Entry | None:
        # Lock-free read: dict lookups are atomic and entries are never mutated. The access
        # reaches the policy by its ReadMode (module docstring) and the advisor through its
        # ring, so a hit never waits for a writer.
        try:
            entry = self._data.get(key)
        except TypeError:  # unhashable: never stored; the caller's key check names it
            return None
        if entry is None:
            self._advise(key)
            self._misses += 1  # not atomic: a lost increment only nudges an estimate
            return None
        if entry.expires_at <= self.clock():
            with self._lock:
                if self._data.get(key) is entry:
                    self._remove(key, EvictionReason.EXPIRED)
            self._advise(key)
            self._misses += 1
            return None
        try:
            self._touch(key)
        except KeyError:  # lru: a writer removed it after we found it; nothing to reorder
            pass
        self._advise(key)
        return entry

    def what_if(self) -> dict[int, float]:
        """Estimated L1 hit ratio (0..1) at 1/2, 1, 2, 4 and 8 x ``max_entries``.

        Keys are capacities in entries; empty when the advisor is switched off. For ``lru``
        it is SHARDS' estimate of the LRU curve; for the other strategies that curve moved
        to pass through the tier's own hit ratio (``SizeAdvisor.what_if``).
        """
        advisor = self._advisor
        if advisor is None:
            return {}
        with self._lock:
            self._drain_reads(advice_batch=1)
            if self._exact_lru or not advisor.reads:
                return advisor.what_if()
            observed = max(0.0, 1.0 - self._misses / advisor.reads)
            return advisor.what_if(observed)

    def _buffer_read(self, key: str) -> None:
        """An exact buffer: the read that fills it replays it, if no writer holds the lock."""
        reads = self._reads
        reads.append(key)
        if len(reads) >= READ_BUFFER_SIZE and self._lock.acquire(blocking=False):
            try:
                self._drain_reads()
            finally:
                self._lock.release()

    def set(self, key: str, value: Any, ttl_seconds: float, size: int = 0) -> bool:
        """Store ``value``; False if it cannot fit at all (bigger than ``max_bytes``)."""
        size += ENTRY_OVERHEAD_BYTES
        with self._lock:
            if self._reads or len(self._advice) >= ADVICE_BATCH:
                self._drain_reads()
            data, max_bytes = self._data, self.max_bytes
            # An overwrite is not an eviction, and the policy keeps the key's place/history
            # (record_insert of a known key), so it is not told of a removal here.
            replaced = data.pop(key, None)
            if replaced is not None:
                self._bytes -= replaced.size
            if max_bytes is not None and size > max_bytes:
                if replaced is not None:
                    self._policy.record_remove(key)
                return False
            now = self.clock()
            heap = self._expiry
            if heap and heap[0][0] <= now:
                self._purge_expired(now)
            # Make room before inserting, so a new key is never its own victim (an LFU
            # newcomer would always be the least used).
            if len(data) >= self.max_entries or (
                max_bytes is not None and self._bytes + size > max_bytes
            ):
                self._make_room(size)
            expires_at = now + ttl_seconds
            entry = Entry(value, expires_at, size)
            data[key] = entry
            self._bytes += size
            self._policy.record_insert(key, expires_at)
            heapq.heappush(heap, (expires_at, id(entry), key))
            if len(heap) > 2 * len(data) + 64:
                self._compact_expiry()
            return True

    def _make_room(self, size: int) -> None:
        data, policy, max_bytes = self._data, self._policy, self.max_bytes
        while data and (
            len(data) >= self.max_entries
            or (max_bytes is not None and self._bytes + size > max_bytes)
        ):
            victim = policy.victim()
            evicted = data.pop(victim, None)
            # If it is not stored, it is the key being overwritten: the policy forgets it
            # and re-learns it on insert.
            policy.record_remove(victim)
            if evicted is not None:
                self._bytes -= evicted.size
                self.on_evict(victim, EvictionReason.SIZE)

    def remaining_ttl(self, entry: Entry) -> float:
        return entry.expires_at - self.clock()

    def delete(self, key: str, reason: EvictionReason = EvictionReason.DELETED) -> bool:
        with self._lock:
            if key not in self._data:
                return False
            self._remove(key, reason)
            return True

    def delete_matching(self, match: Callable[[str], bool]) -> list[str]:
        """Remove (as invalidated) every key for which ``match`` is true; returns them."""
        with self._lock:
            doomed = [k for k in self._data if match(k)]
            for key in doomed:
                self._remove(key, EvictionReason.INVALIDATED)
            return doomed

    def purge_expired(self) -> int:
        with self._lock:
            before = len(self._data)
            self._purge_expired(self.clock())
            return before - len(self._data)

    def _purge_expired(self, now: float) -> None:
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, ident, key = heapq.heappop(heap)
            entry = self._data.get(key)
            # id() of a replaced entry can be reused by its successor: check the expiry too.
            if entry is not None and id(entry) == ident and entry.expires_at <= now:
                self._remove(key, EvictionReason.EXPIRED)
        if len(heap) > 2 * len(self._data) + 64:
            self._compact_expiry()

    def _compact_expiry(self) -> None:
        self._expiry = [(e.expires_at, id(e), k) for k, e in self._data.items()]
        heapq.heapify(self._expiry)

    def _drain_reads(self, advice_batch: int = ADVICE_BATCH) -> None:
        reads = self._reads
        if reads:
            if self._lossy:  # a read racing with this drain may be lost: that is allowed
                batch = list(reads)
                reads.clear()
            else:
                batch = [reads.popleft() for _ in range(len(reads))]
            self._policy.record_accesses(batch)
        advice = self._advice
        if len(advice) >= advice_batch and self._advisor is not None:
            self._advisor.record([advice.popleft() for _ in range(len(advice))])

    def _drop(self, key: str) -> Entry:
        """Remove without reporting an eviction (an overwrite is not an eviction)."""
        entry = self._data.pop(key)
        self._bytes -= entry.size
        self._policy.record_remove(key)
        return entry

    def _remove(self, key: str, reason: EvictionReason) -> None:
        self._drop(key)
        self.on_evict(key, reason)
