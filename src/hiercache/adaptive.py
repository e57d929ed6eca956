"""The ``adaptive`` L1 policy: W-TinyLFU with a window that adapts to the workload.

Layout, as in Caffeine: new keys enter an LRU *window*; behind it, a segmented-LRU *main*
area (probation, and protected with 80 % of main). When the cache is full, the window's
oldest key (the candidate) competes with main's victim, and a count-min *frequency sketch*
decides which one stays (TinyLFU admission): a one-off scan cannot flush a hot set.

The window's share is not fixed. Recency-heavy phases want a large window (LRU-like),
frequency-heavy and looping ones a small one. The policy keeps two small *ghost* lists of
keys it recently threw away: candidates the admission filter refused (from the window) and
victims it evicted from main. A miss on a refused candidate means a slightly bigger window
would have hit; a miss on an evicted victim, a slightly bigger main area. Each such miss
steps the window one way (the ghosts are short, so they measure the marginal value of the
last entries on either side, and a key looped back after a long scan counts for neither).
This is a hill climber whose gradient is measured per miss instead of sampled: Caffeine's
"simple" climber (sample the hit ratio every 10 x capacity accesses, step, reverse when
worse) was tried here, alone and on top of this, and lost 14 points on the LIRS loop trace
and 1-4 points on sprite against the ghost signal alone, so it is not used.

The sketch is sized like Caffeine's (16 four-bit counters per entry, rounded up to a power
of two, and never below 8192 entries' worth), its counters halve every ``10 x capacity``
increments (aging), and a key's counters come from its ``hash()`` mixed (splitmix64) with
a per-instance random seed, so nobody can aim collisions at it. The wide sketch keeps the
hit ratio within 0.5 points across seeds.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable

from hiercache.policies import ReadMode

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX = 0xBF58476D1CE4E5B9
# Saturating +1 and halving for 4-bit counters stored one per byte (bytearray.translate).
_INC = bytes(min(v + 1, 15) for v in range(256))
_HALVE = bytes(v >> 1 for v in range(256))
_MIN_SKETCH_ENTRIES = 8192
_ADMIT_WARM = 6  # a warm candidate that loses is still admitted 1 time in 128 (Caffeine)


class FrequencySketch:
    """Count-min sketch: 4 counters per key in one 128-counter block, 4 bits each, aged."""

    def __init__(self, capacity: int) -> None:
        blocks = 1
        # Caffeine: ceilPow2(capacity) longs of 16 counters; here at least 8192 entries'
        # worth (a 128 KB table), below which collisions made small caches' hit ratios
        # swing by a point between hash seeds.
        while blocks * 8 < max(_MIN_SKETCH_ENTRIES, capacity):
            blocks <<= 1
        self.block_mask = blocks - 1
        self.table = bytearray(blocks * 128)
        self.sample_size = 10 * max(16, capacity)
        self.additions = 0

    def slots(self, h: int) -> tuple[int, int, int, int]:
        base = (h & self.block_mask) << 7
        hi = h >> 32
        return (
            base + (hi & 31),
            base + 32 + ((hi >> 5) & 31),
            base + 64 + ((hi >> 10) & 31),
            base + 96 + ((hi >> 15) & 31),
        )

    def increment(self, slots: tuple[int, int, int, int]) -> None:
        """+1 on each counter, saturating at 15 (the policy inlines this on its hot path)."""
        t = self.table
        a, b, c, d = slots
        t[a] = _INC[t[a]]
        t[b] = _INC[t[b]]
        t[c] = _INC[t[c]]
        t[d] = _INC[t[d]]
        self.additions += 1
        if self.additions >= self.sample_size:
            self.halve()

    def halve(self) -> None:
        """Aging: every counter halves, in one C call."""
        self.table = self.table.translate(_HALVE)
        self.additions //= 2

    def frequency(self, slots: tuple[int, int, int, int]) -> int:
        t = self.table
        a, b, c, d = slots
        return min(t[a], t[b], t[c], t[d])


class AdaptivePolicy:
    """W-TinyLFU with a ghost-guided, hill-climbing window (see the module docstring).

    Reads reach it through the tier's lossy read buffer (Caffeine does the same): under a
    long run of hits without a write, the oldest buffered reads are dropped.
    """

    read_mode = ReadMode.LOSSY_BUFFER

    def __init__(self, capacity: int, *, seed: int | None = None) -> None:
        rng = random.Random(seed)
        self._seed = rng.getrandbits(64)
        self._rng = rng
        self._capacity = cap = max(1, capacity)
        self._sketch = FrequencySketch(cap)
        # Each segment maps key -> its sketch slots (hashed once, on insert).
        self._window: OrderedDict[str, tuple[int, int, int, int]] = OrderedDict()
        self._probation: OrderedDict[str, tuple[int, int, int, int]] = OrderedDict()
        self._protected: OrderedDict[str, tuple[int, int, int, int]] = OrderedDict()
        self._window_max = max(1, cap // 100)
        self._window_target = float(self._window_max)
        self._protected_max = int((cap - self._window_max) * 0.8)
        self._ghost_max = max(8, cap // 8)
        self._refused: OrderedDict[str, None] = OrderedDict()
        self._evicted: OrderedDict[str, None] = OrderedDict()
        self._ghost_step = max(1.0, cap / 2000)
        self._evicting: str | None = None
        self._evicting_from: OrderedDict[str, tuple[int, int, int, int]] = self._window
        self._evicting_refused = False

    # -- the tier's interface ---------------------------------------------------------
    def record_insert(self, key: str, expires_at: float) -> None:
        window, probation, protected = self._window, self._probation, self._protected
        if key in window or key in probation or key in protected:
            self.record_accesses((key,))
            return
        if self._refused.pop(key, 0) is None:
            self._move_window(self._ghost_step)
        elif self._evicted.pop(key, 0) is None:
            self._move_window(-self._ghost_step)
        slots = self._slots(key)
        sketch = self._sketch
        t = sketch.table
        a, b, c, d = slots
        t[a] = _INC[t[a]]
        t[b] = _INC[t[b]]
        t[c] = _INC[t[c]]
        t[d] = _INC[t[d]]
        sketch.additions += 1
        if sketch.additions >= sketch.sample_size:
            sketch.halve()
        window[key] = slots
        if len(window) > self._window_max:
            while len(window) > self._window_max:
                moved, moved_slots = window.popitem(last=False)
                probation[moved] = moved_slots

    def record_access(self, key: str) -> None:
        self.record_accesses((key,))

    def record_accesses(self, keys: Iterable[str]) -> None:
        window, probation, protected = self._window, self._probation, self._protected
        sketch = self._sketch
        t = sketch.table
        n = 0
        for key in keys:
            slots = window.get(key)
            if slots is not None:
                window.move_to_end(key)
            else:
                slots = protected.get(key)
                if slots is not None:
                    protected.move_to_end(key)
                else:
                    slots = probation.pop(key, None)
                    if slots is None:
                        continue  # removed since it was read
                    protected[key] = slots
                    if len(protected) > self._protected_max:
                        self._demote()
            a, b, c, d = slots
            t[a] = _INC[t[a]]
            t[b] = _INC[t[b]]
            t[c] = _INC[t[c]]
            t[d] = _INC[t[d]]
            n += 1
        sketch.additions += n
        if sketch.additions >= sketch.sample_size:
            sketch.halve()

    def touch(self, key: str) -> object:  # pragma: no cover - not DIRECT
        raise NotImplementedError

    def record_remove(self, key: str) -> None:
        if key == self._evicting:
            self._evicting = None
            if self._evicting_from.pop(key, None) is None:
                return
            ghost = self._refused if self._evicting_refused else self._evicted
            ghost[key] = None
            if len(ghost) > self._ghost_max:
                ghost.popitem(last=False)
            return
        for segment in (self._window, self._probation, self._protected):
            if segment.pop(key, None) is not None:
                return

    def victim(self) -> str:
        window, probation, protected = self._window, self._probation, self._protected
        main = probation or protected
        refused = False
        if not main:
            key = next(iter(window))
            segment = window
            refused = True
        elif len(window) >= self._window_max and window:
            candidate, c_slots = next(iter(window.items()))
            key, v_slots = next(iter(main.items()))
            segment = main
            t = self._sketch.table
            a, b, c, d = c_slots
            c_freq = min(t[a], t[b], t[c], t[d])
            a, b, c, d = v_slots
            v_freq = min(t[a], t[b], t[c], t[d])
            # Hysteresis: against a victim used twice or more, a lead of 1 is not enough.
            # Keys used alike (a loop) differ by 1 depending on where the last halving fell
            # in their cycle; swapping them on that churned main and cost 7 points on loops.
            margin = 1 if v_freq >= 2 else 0
            if c_freq > v_freq + margin or (
                c_freq >= _ADMIT_WARM and self._rng.getrandbits(7) == 0
            ):
                del window[candidate]
                probation[candidate] = c_slots
            else:
                key = candidate
                segment = window
                refused = True
        else:
            key = next(iter(main))
            segment = main
        self._evicting = key
        self._evicting_from = segment
        self._evicting_refused = refused
        return key

    # -- internals ----------------------------------------------------------------------
    def _slots(self, key: str) -> tuple[int, int, int, int]:
        """The key's 4 sketch counters: a keyed 64-bit mix of its hash (splitmix64's)."""
        h = ((hash(key) ^ self._seed) * _GOLDEN) & _M64
        h = ((h ^ (h >> 30)) * _MIX) & _M64
        h ^= h >> 31
        return self._sketch.slots(h)

    def _demote(self) -> None:
        protected, probation = self._protected, self._probation
        while len(protected) > self._protected_max:
            demoted, slots = protected.popitem(last=False)
            probation[demoted] = slots

    def _move_window(self, delta: float) -> None:
        cap = self._capacity
        target = min(max(self._window_target + delta, 1.0), cap - 1.0 if cap > 1 else 1.0)
        self._window_target = target
        size = max(1, int(target))
        if size == self._window_max:
            return
        self._window_max = size
        self._protected_max = int((cap - size) * 0.8)
        window, probation = self._window, self._probation
        while len(window) > size:  # a smaller window: its oldest keys go to probation
            moved, slots = window.popitem(last=False)
            probation[moved] = slots
        self._demote()
