"""Small, obviously-correct reference simulators for the hit-ratio benchmark and tests.

Each function replays ``keys`` (every access a read; a miss inserts the key) into a cache
of ``size`` entries and returns the hit ratio in percent, cold misses counted. They share
no code with ``hiercache``: they are what the library is checked against.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Sequence


def lru(keys: Sequence[str], size: int) -> float:
    cache: OrderedDict[str, None] = OrderedDict()
    hits = 0
    for key in keys:
        if key in cache:
            hits += 1
            cache.move_to_end(key)
        else:
            if len(cache) >= size:
                cache.popitem(last=False)
            cache[key] = None
    return 100.0 * hits / len(keys)


def fifo(keys: Sequence[str], size: int) -> float:
    cache: OrderedDict[str, None] = OrderedDict()
    hits = 0
    for key in keys:
        if key in cache:
            hits += 1
        else:
            if len(cache) >= size:
                cache.popitem(last=False)
            cache[key] = None
    return 100.0 * hits / len(keys)


def lfu(keys: Sequence[str], size: int) -> float:
    """LFU, ties to the least recent; every 10 x size uses all counts halve (min 1).

    O(size) per eviction: a plain scan for the minimum (count, last use).
    """
    count: dict[str, int] = {}
    last: dict[str, int] = {}
    uses = hits = 0
    for t, key in enumerate(keys):
        if key in count:
            hits += 1
            count[key] += 1
        else:
            if len(count) >= size:
                victim = min(count, key=lambda k: (count[k], last[k]))
                del count[victim], last[victim]
            count[key] = 1
        last[key] = t
        uses += 1
        if uses >= 10 * size:
            uses = 0
            for k in count:
                count[k] = max(1, count[k] // 2)
    return 100.0 * hits / len(keys)


def arc(keys: Sequence[str], size: int) -> float:
    """ARC (Megiddo and Modha, FAST '03), as in the paper's pseudo-code."""
    t1: OrderedDict[str, None] = OrderedDict()
    t2: OrderedDict[str, None] = OrderedDict()
    b1: OrderedDict[str, None] = OrderedDict()
    b2: OrderedDict[str, None] = OrderedDict()
    p = 0.0
    hits = 0

    def replace(key: str) -> None:
        if t1 and (len(t1) > p or (key in b2 and len(t1) == p)):
            old, _ = t1.popitem(last=False)
            b1[old] = None
        else:
            old, _ = t2.popitem(last=False)
            b2[old] = None

    for key in keys:
        if key in t1:
            hits += 1
            del t1[key]
            t2[key] = None
        elif key in t2:
            hits += 1
            t2.move_to_end(key)
        elif key in b1:
            p = min(float(size), p + max(len(b2) / len(b1), 1.0))
            replace(key)
            del b1[key]
            t2[key] = None
        elif key in b2:
            p = max(0.0, p - max(len(b1) / len(b2), 1.0))
            replace(key)
            del b2[key]
            t2[key] = None
        else:
            if len(t1) + len(b1) == size:
                if len(t1) < size:
                    b1.popitem(last=False)
                    replace(key)
                else:
                    t1.popitem(last=False)
            elif len(t1) + len(b1) < size:
                total = len(t1) + len(t2) + len(b1) + len(b2)
                if total >= size:
                    if total == 2 * size:
                        b2.popitem(last=False)
                    replace(key)
            t1[key] = None
    return 100.0 * hits / len(keys)


def wtinylfu(keys: Sequence[str], size: int, window: float = 0.01) -> float:
    """W-TinyLFU with a fixed window: LRU window, SLRU main (80 % protected), and a
    4-row count-min sketch of 4-bit counters (16 per entry) halved every 10 x size adds."""
    w_max = max(1, int(size * window))
    protected_max = int((size - w_max) * 0.8)
    width = 1
    while width < 4 * max(size, 16):
        width <<= 1
    rows = [[0] * width for _ in range(4)]
    seeds = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F)
    adds, reset = 0, 10 * max(size, 16)

    def slots(key: str) -> list[int]:
        h = hash(key)
        return [((h * s) >> 7 ^ h >> 3) & (width - 1) for s in seeds]

    def freq(key: str) -> int:
        return min(row[i] for row, i in zip(rows, slots(key)))

    def add(key: str) -> None:
        nonlocal adds, rows
        for row, i in zip(rows, slots(key)):
            if row[i] < 15:
                row[i] += 1
        adds += 1
        if adds >= reset:
            rows = [[c >> 1 for c in row] for row in rows]
            adds //= 2

    win: OrderedDict[str, None] = OrderedDict()
    prob: OrderedDict[str, None] = OrderedDict()
    prot: OrderedDict[str, None] = OrderedDict()
    hits = 0
    for key in keys:
        add(key)
        if key in win:
            hits += 1
            win.move_to_end(key)
        elif key in prot:
            hits += 1
            prot.move_to_end(key)
        elif key in prob:
            hits += 1
            del prob[key]
            prot[key] = None
            if len(prot) > protected_max:
                demoted, _ = prot.popitem(last=False)
                prob[demoted] = None
        else:
            win[key] = None
            if len(win) > w_max:
                candidate, _ = win.popitem(last=False)
                if len(win) + len(prob) + len(prot) < size:
                    prob[candidate] = None
                else:
                    main = prob or prot
                    victim = next(iter(main))
                    if freq(candidate) > freq(victim):
                        del main[victim]
                        prob[candidate] = None
    return 100.0 * hits / len(keys)


def belady(keys: Sequence[str], size: int) -> float:
    """Belady's MIN: evict the key whose next use is furthest away (optimal)."""
    never = len(keys)
    next_use = [never] * len(keys)
    seen: dict[str, int] = {}
    for t in range(len(keys) - 1, -1, -1):
        next_use[t] = seen.get(keys[t], never)
        seen[keys[t]] = t
    cached: dict[str, int] = {}  # key -> its next use
    heap: list[tuple[int, str]] = []  # (-next use, key), lazily cleaned
    hits = 0
    for t, key in enumerate(keys):
        if key in cached:
            hits += 1
        elif len(cached) >= size:
            while True:
                neg, victim = heapq.heappop(heap)
                if cached.get(victim) == -neg:
                    del cached[victim]
                    break
        cached[key] = next_use[t]
        heapq.heappush(heap, (-next_use[t], key))
    return 100.0 * hits / len(keys)
