"""The L1 memory tier and every eviction policy."""

from __future__ import annotations

import threading

import pytest

from fakes import FakeClock
from hiercache import CacheStrategy, EvictionReason
from hiercache.adaptive import AdaptivePolicy
from hiercache.memory import ENTRY_OVERHEAD_BYTES, MemoryTier
from hiercache.policies import (
    FIFOPolicy,
    LFUPolicy,
    LRUPolicy,
    TTLPolicy,
    make_policy,
)

TTL = 1000.0


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, EvictionReason]] = []

    def __call__(self, key: str, reason: EvictionReason) -> None:
        self.events.append((key, reason))

    def keys(self, reason: EvictionReason) -> list[str]:
        return [k for k, r in self.events if r is reason]


def make(
    max_entries: int,
    strategy: CacheStrategy = CacheStrategy.LRU,
    *,
    max_bytes: int | None = None,
) -> tuple[MemoryTier, FakeClock, Recorder]:
    clock, rec = FakeClock(), Recorder()
    tier = MemoryTier(
        max_entries, max_bytes=max_bytes, strategy=strategy, clock=clock, on_evict=rec
    )
    return tier, clock, rec


def entry_sizes(tier: MemoryTier) -> list[int]:
    """The accounted size of every stored entry (read without touching the policy)."""
    keys = list(tier.keys())
    return [tier._data[key].size for key in keys]


def present(tier: MemoryTier) -> set[str]:
    """The stored keys, without recording a read."""
    return set(tier.keys())


# -- basics ------------------------------------------------------------------------
def test_get_set_and_miss() -> None:
    tier, _, rec = make(10)
    assert tier.get("a") is None
    assert tier.set("a", {"v": 1}, TTL) is True
    entry = tier.get("a")
    assert entry is not None
    assert entry.value == {"v": 1}
    assert "a" in tier
    assert "b" not in tier
    assert len(tier) == 1
    assert rec.events == []


def test_overwrite_replaces_value_and_is_not_an_eviction() -> None:
    tier, _, rec = make(10)
    tier.set("a", 1, TTL, size=10)
    tier.set("a", 2, TTL, size=30)
    entry = tier.get("a")
    assert entry is not None
    assert entry.value == 2
    assert len(tier) == 1
    assert tier.size_bytes == 30 + ENTRY_OVERHEAD_BYTES
    assert rec.events == []


# -- bounds ------------------------------------------------------------------------
def test_count_bound() -> None:
    tier, _, rec = make(3)
    for i in range(10):
        tier.set(f"k{i}", i, TTL)
        assert len(tier) <= 3
    assert len(tier) == 3
    assert rec.keys(EvictionReason.SIZE) == [f"k{i}" for i in range(7)]


def test_byte_bound() -> None:
    item = 100
    per_entry = item + ENTRY_OVERHEAD_BYTES
    tier, _, rec = make(1000, max_bytes=3 * per_entry)
    for i in range(5):
        assert tier.set(f"k{i}", i, TTL, size=item)
        assert tier.size_bytes <= 3 * per_entry
    assert present(tier) == {"k2", "k3", "k4"}
    assert tier.size_bytes == 3 * per_entry
    assert rec.keys(EvictionReason.SIZE) == ["k0", "k1"]


def test_a_big_item_evicts_as_many_as_needed() -> None:
    per_entry = 100 + ENTRY_OVERHEAD_BYTES
    tier, _, rec = make(1000, max_bytes=4 * per_entry)
    for i in range(4):
        tier.set(f"k{i}", i, TTL, size=100)
    assert tier.set("big", "B", TTL, size=2 * per_entry + 100 - ENTRY_OVERHEAD_BYTES)
    assert present(tier) == {"k3", "big"}
    assert rec.keys(EvictionReason.SIZE) == ["k0", "k1", "k2"]


def test_item_larger_than_max_bytes_is_not_stored() -> None:
    tier, _, rec = make(10, max_bytes=1000)
    tier.set("small", 1, TTL, size=10)
    assert tier.set("huge", "x", TTL, size=1000) is False
    assert tier.get("huge") is None
    assert present(tier) == {"small"}  # nothing was evicted to make room in vain
    assert rec.events == []
    assert tier.size_bytes == 10 + ENTRY_OVERHEAD_BYTES


def test_oversized_overwrite_drops_the_stale_value() -> None:
    tier, _, _ = make(10, max_bytes=1000)
    tier.set("k", "old", TTL, size=10)
    assert tier.set("k", "new-but-huge", TTL, size=5000) is False
    assert tier.get("k") is None  # never serve the value that was overwritten
    assert tier.size_bytes == 0


# -- TTL ---------------------------------------------------------------------------
def test_per_entry_ttl_with_fake_clock() -> None:
    tier, clock, rec = make(10)
    tier.set("short", 1, 5)
    tier.set("long", 2, 50)
    clock.advance(4.999)
    assert tier.get("short") is not None
    clock.advance(0.001)  # exactly at expiry: gone
    assert tier.get("short") is None
    assert tier.get("long") is not None
    assert rec.events == [("short", EvictionReason.EXPIRED)]
    assert present(tier) == {"long"}
    clock.advance(100)
    assert tier.get("long") is None
    assert rec.events[-1] == ("long", EvictionReason.EXPIRED)
    assert tier.size_bytes == 0


def test_remaining_ttl() -> None:
    tier, clock, _ = make(10)
    tier.set("k", 1, 30)
    clock.advance(10)
    entry = tier.get("k")
    assert entry is not None
    assert tier.remaining_ttl(entry) == pytest.approx(20)


def test_overwrite_is_not_purged_at_the_old_expiry() -> None:
    tier, clock, rec = make(10)
    tier.set("k", 1, 5)
    clock.advance(4)
    tier.set("k", 2, 5)  # now expires at +9
    clock.advance(2)  # past the old expiry (+5)
    tier.set("other", 0, TTL)  # a write sweeps the expiry heap
    assert present(tier) == {"k", "other"}
    assert rec.events == []
    clock.advance(3)
    tier.set("other", 0, TTL)
    assert present(tier) == {"other"}
    assert rec.events == [("k", EvictionReason.EXPIRED)]


def test_expired_entries_are_purged_on_write() -> None:
    tier, clock, rec = make(10)
    tier.set("a", 1, 1)
    tier.set("b", 2, 1)
    clock.advance(2)
    tier.set("c", 3, 10)  # a write sweeps what expired, without anyone reading it
    assert present(tier) == {"c"}
    assert sorted(rec.keys(EvictionReason.EXPIRED)) == ["a", "b"]


def test_purge_expired_counts() -> None:
    tier, clock, rec = make(10)
    for i in range(4):
        tier.set(f"k{i}", i, 1 + i)
    clock.advance(2.5)
    assert tier.purge_expired() == 2
    assert sorted(rec.keys(EvictionReason.EXPIRED)) == ["k0", "k1"]
    assert tier.purge_expired() == 0


def test_overwrite_resets_ttl() -> None:
    tier, clock, rec = make(10)
    tier.set("k", 1, 5)
    clock.advance(4)
    tier.set("k", 2, 5)
    clock.advance(4)
    entry = tier.get("k")
    assert entry is not None
    assert entry.value == 2
    clock.advance(1)
    assert tier.get("k") is None
    assert rec.events == [("k", EvictionReason.EXPIRED)]  # the old expiry fired nothing


# -- eviction reasons --------------------------------------------------------------
def test_delete_and_invalidate_reasons() -> None:
    tier, _, rec = make(10)
    for key in ("user:1", "user:2", "order:1", "x"):
        tier.set(key, key, TTL)
    assert tier.delete("x") is True
    assert tier.delete("x") is False
    assert tier.delete("order:1", EvictionReason.INVALIDATED) is True
    assert sorted(tier.delete_matching(lambda k: k.startswith("user:"))) == ["user:1", "user:2"]
    assert rec.events[0] == ("x", EvictionReason.DELETED)
    assert rec.events[1] == ("order:1", EvictionReason.INVALIDATED)
    assert sorted(rec.events[2:]) == [
        ("user:1", EvictionReason.INVALIDATED),
        ("user:2", EvictionReason.INVALIDATED),
    ]
    assert len(tier) == 0
    assert tier.size_bytes == 0


def test_every_reason_reported() -> None:
    tier, clock, rec = make(2)
    tier.set("a", 1, 1)
    tier.set("b", 2, TTL)
    tier.set("c", 3, TTL)  # evicts a by size
    tier.set("d", 4, 1)  # evicts b by size
    clock.advance(5)
    assert tier.get("d") is None  # expired
    tier.delete("c")  # deleted
    tier.set("e", 5, TTL)
    tier.delete_matching(lambda k: True)  # invalidated
    assert rec.events == [
        ("a", EvictionReason.SIZE),
        ("b", EvictionReason.SIZE),
        ("d", EvictionReason.EXPIRED),
        ("c", EvictionReason.DELETED),
        ("e", EvictionReason.INVALIDATED),
    ]


# -- strategies --------------------------------------------------------------------
def fill(tier: MemoryTier, keys: str) -> None:
    for key in keys:
        tier.set(key, key, TTL)


def read(tier: MemoryTier, *keys: str) -> None:
    for key in keys:
        assert tier.get(key) is not None


def test_lru_victim_order() -> None:
    tier, _, rec = make(3, CacheStrategy.LRU)
    fill(tier, "abc")
    read(tier, "a")  # b is now least recently used
    tier.set("d", "d", TTL)
    assert present(tier) == {"a", "c", "d"}
    read(tier, "c")
    tier.set("e", "e", TTL)  # a is LRU now
    tier.set("f", "f", TTL)  # then d
    assert rec.keys(EvictionReason.SIZE) == ["b", "a", "d"]
    assert present(tier) == {"c", "e", "f"}


def test_lru_overwrite_counts_as_use() -> None:
    tier, _, rec = make(3, CacheStrategy.LRU)
    fill(tier, "abc")
    tier.set("a", "A", TTL)
    tier.set("d", "d", TTL)
    assert rec.keys(EvictionReason.SIZE) == ["b"]


def test_lfu_victim_order() -> None:
    tier, _, rec = make(4, CacheStrategy.LFU)
    fill(tier, "abcd")
    read(tier, "a", "a", "a", "c", "d", "d")  # a: 4 uses, d: 3, c: 2, b: 1
    tier.set("e", "e", TTL)  # b goes (fewest)
    read(tier, "e", "e", "e", "e", "e")  # e: 6
    tier.set("f", "f", TTL)  # room is made before f enters: c (2) is the least used
    read(tier, "d", "d")  # d: 5
    tier.set("a", "A", TTL)  # a: 5; no eviction
    assert rec.keys(EvictionReason.SIZE) == ["b", "c"]
    assert present(tier) == {"a", "d", "e", "f"}


def test_lfu_ties_broken_by_least_recent() -> None:
    tier, _, rec = make(3, CacheStrategy.LFU)
    fill(tier, "abc")
    read(tier, "b", "a", "c")  # all tie at 2 uses; b was used least recently
    tier.set("a", "A", TTL)  # a: 3, no eviction (overwrite)
    read(tier, "c")  # c: 3
    tier.set("a", "A", TTL)  # a: 4
    read(tier, "b")  # b: 3, used after c
    tier.set("d", "d", TTL)  # b and c tie at 3: c, used less recently, makes room for d
    assert rec.keys(EvictionReason.SIZE) == ["c"]
    lfu = LFUPolicy()
    for key in "xyz":
        lfu.record_insert(key, 0)
    lfu.record_access("y")
    lfu.record_access("x")
    lfu.record_access("z")
    assert lfu.victim() == "y"  # all at 2: least recently used among them
    lfu.record_access("y")
    assert lfu.victim() == "x"


def test_lfu_keeps_frequent_key_through_churn() -> None:
    tier, _, _ = make(5, CacheStrategy.LFU)
    tier.set("hot", 0, TTL)
    for i in range(200):
        read(tier, "hot")
        tier.set(f"cold{i}", i, TTL)
    assert "hot" in present(tier)
    assert len(tier) == 5


def test_lfu_overwrite_keeps_frequency() -> None:
    tier, _, rec = make(3, CacheStrategy.LFU)
    fill(tier, "abc")
    read(tier, "a", "a", "a")
    tier.set("a", "A2", TTL)  # refreshing a hot value must not make it the next victim
    for key in "def":
        tier.set(key, key, TTL)
    assert "a" in present(tier)
    assert rec.keys(EvictionReason.SIZE) == ["b", "c", "d"]


def test_lfu_admits_a_new_key_when_full() -> None:
    tier, _, _ = make(3, CacheStrategy.LFU)
    fill(tier, "abc")
    read(tier, "a", "b", "c")
    assert tier.set("d", "d", TTL) is True
    assert "d" in present(tier)


def test_fifo_victim_order_ignores_reads() -> None:
    tier, _, rec = make(3, CacheStrategy.FIFO)
    fill(tier, "abc")
    read(tier, "a", "a", "a")
    tier.set("d", "d", TTL)
    tier.set("e", "e", TTL)
    assert rec.keys(EvictionReason.SIZE) == ["a", "b"]
    assert present(tier) == {"c", "d", "e"}


def test_fifo_overwrite_keeps_place() -> None:
    tier, _, rec = make(3, CacheStrategy.FIFO)
    fill(tier, "abc")
    tier.set("a", "A2", TTL)  # FIFOPolicy: re-setting a key keeps its place
    tier.set("d", "d", TTL)
    assert rec.keys(EvictionReason.SIZE) == ["a"]


def test_ttl_strategy_evicts_nearest_expiry_first() -> None:
    tier, _, rec = make(3, CacheStrategy.TTL)
    tier.set("long", 1, 300)
    tier.set("short", 2, 10)
    tier.set("mid", 3, 100)
    read(tier, "short")  # reads do not matter
    tier.set("new", 4, 200)
    assert rec.keys(EvictionReason.SIZE) == ["short"]
    tier.set("newer", 5, 250)
    assert rec.keys(EvictionReason.SIZE) == ["short", "mid"]
    assert present(tier) == {"long", "new", "newer"}


def test_ttl_strategy_uses_the_latest_expiry_after_overwrite() -> None:
    tier, _, rec = make(3, CacheStrategy.TTL)
    tier.set("a", 1, 10)
    tier.set("b", 2, 20)
    tier.set("c", 3, 30)
    tier.set("a", 1, 500)  # a now expires last
    tier.set("d", 4, 40)
    assert rec.keys(EvictionReason.SIZE) == ["b"]


def test_ttl_strategy_makes_room_from_the_stored_key_nearest_expiry() -> None:
    tier, _, rec = make(2, CacheStrategy.TTL)
    tier.set("a", 1, 100)
    tier.set("b", 2, 50)
    assert tier.set("c", 3, 1) is True  # room is made before c enters: b expires first
    assert rec.events == [("b", EvictionReason.SIZE)]
    assert present(tier) == {"a", "c"}


@pytest.mark.parametrize("strategy", list(CacheStrategy))
def test_every_strategy_is_bounded_and_accounts_bytes(strategy: CacheStrategy) -> None:
    tier, clock, rec = make(50, strategy, max_bytes=40 * (ENTRY_OVERHEAD_BYTES + 10))
    for i in range(2000):
        key = f"k{i % 300}"
        if i % 3 == 0:
            tier.get(f"k{(i * 7) % 300}")
        tier.set(key, i, 1 + (i % 17), size=10 + (i % 5))
        if i % 97 == 0:
            clock.advance(1)
        if i % 131 == 0:
            tier.delete(f"k{i % 50}")
        assert len(tier) <= 50
        assert tier.max_bytes is not None
        assert tier.size_bytes <= tier.max_bytes
    assert tier.size_bytes == sum(entry_sizes(tier))
    assert rec.keys(EvictionReason.SIZE)
    # The policy and the tier agree: draining everything via victims works.
    while len(tier):
        tier.delete(next(iter(tier.keys())))
    assert tier.size_bytes == 0


def test_adaptive_is_bounded() -> None:
    tier, _, _ = make(100, CacheStrategy.ADAPTIVE)
    for i in range(5000):
        tier.set(f"k{i}", i, TTL)
        assert len(tier) <= 100
    assert len(tier) == 100


def test_adaptive_keeps_a_hot_key_over_a_one_off_scan() -> None:
    tier, _, rec = make(100, CacheStrategy.ADAPTIVE)
    tier.set("hot", "H", TTL)
    for i in range(50):
        read(tier, "hot")
        tier.set(f"warm{i}", i, TTL)
    for i in range(2000):  # a scan of keys used once each
        tier.set(f"scan{i}", i, TTL)
        if i % 100 == 0:
            read(tier, "hot")  # the hot key keeps being used, rarely, during the scan
    assert "hot" in present(tier)
    assert len(tier) == 100
    assert ("hot", EvictionReason.SIZE) not in rec.events


@pytest.mark.parametrize(
    ("strategy", "hot_survives"),
    [(CacheStrategy.ADAPTIVE, True), (CacheStrategy.LRU, False)],  # LRU: the contrast
)
def test_a_scan_without_reads_flushes_a_hot_key_from_lru_not_adaptive(
    strategy: CacheStrategy, hot_survives: bool
) -> None:
    tier, _, _ = make(100, strategy)
    tier.set("hot", "H", TTL)
    for i in range(20):
        read(tier, "hot")
        tier.set(f"warm{i}", i, TTL)
    for i in range(1000):
        tier.set(f"scan{i}", i, TTL)
    assert ("hot" in present(tier)) is hot_survives


# -- policies directly -------------------------------------------------------------
@pytest.mark.parametrize(
    ("strategy", "cls"),
    [
        (CacheStrategy.LRU, LRUPolicy),
        (CacheStrategy.LFU, LFUPolicy),
        (CacheStrategy.FIFO, FIFOPolicy),
        (CacheStrategy.TTL, TTLPolicy),
        (CacheStrategy.ADAPTIVE, AdaptivePolicy),
    ],
)
def test_make_policy(strategy: CacheStrategy, cls: type) -> None:
    assert type(make_policy(strategy, 10)) is cls


def test_lfu_policy_remove_updates_minimum() -> None:
    p = LFUPolicy()
    p.record_insert("a", 0)
    p.record_insert("b", 0)
    p.record_access("b")
    p.record_remove("a")
    assert p.victim() == "b"
    p.record_remove("missing")  # no error


def test_ttl_policy_heap_is_compacted() -> None:
    p = TTLPolicy()
    for i in range(1000):
        p.record_insert("same", float(i))
    assert len(p._heap) <= 2 * 1 + 64 + 1
    assert p.victim() == "same"


# -- concurrency -------------------------------------------------------------------
@pytest.mark.parametrize("strategy", list(CacheStrategy))
def test_threads_hammering_keep_invariants(strategy: CacheStrategy) -> None:
    max_entries, n_threads, rounds = 64, 8, 2000
    tier = MemoryTier(max_entries, strategy=strategy, max_bytes=48 * (ENTRY_OVERHEAD_BYTES + 50))
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                key = f"k{(i * (n + 1)) % 200}"
                tier.set(key, (n, i), TTL, size=i % 50)
                entry = tier.get(f"k{(i + n) % 200}")
                if entry is not None:
                    assert isinstance(entry.value, tuple)
                if i % 50 == 0:
                    tier.delete(f"k{i % 200}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(tier) <= max_entries
    assert tier.max_bytes is not None
    assert tier.size_bytes <= tier.max_bytes
    assert tier.size_bytes == sum(entry_sizes(tier))
    # and the tier still works afterwards
    for i in range(max_entries * 2):
        tier.set(f"after{i}", i, TTL)
    assert len(tier) <= max_entries
