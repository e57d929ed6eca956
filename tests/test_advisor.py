"""The size advisor: SHARDS estimates against exact LRU replays, its bounds and its switch."""

from __future__ import annotations

import random
import sys
import tracemalloc
from pathlib import Path

import pytest

from hiercache import CacheStrategy
from hiercache.advisor import BYTES_PER_KEY, DEFAULT_MEMORY_BYTES, SizeAdvisor
from hiercache.memory import ADVICE_BATCH, MemoryTier

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reference_policies as ref


def zipf(n: int, universe: int, s: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) ** s for i in range(universe)]
    return [f"z{i}" for i in rng.choices(range(universe), weights, k=n)]


def replay(keys: list[str], size: int, strategy: CacheStrategy = CacheStrategy.LRU) -> MemoryTier:
    tier = MemoryTier(size, strategy=strategy)
    for key in keys:
        if tier.get(key) is None:
            tier.set(key, True, 1e12)
    return tier


def assert_close_to_exact_lru(keys: list[str], estimate: dict[int, float]) -> None:
    assert len(estimate) == 5
    for capacity, ratio in estimate.items():
        assert 100 * ratio == pytest.approx(ref.lru(keys, capacity), abs=2.0), capacity


@pytest.mark.parametrize("size", [100, 400])
def test_zipf_estimates_match_exact_lru(size: int) -> None:
    keys = zipf(40_000, 5000, 0.9, seed=1)
    tier = replay(keys, size)
    estimate = tier.what_if()
    assert sorted(estimate) == [size // 2, size, 2 * size, 4 * size, 8 * size]
    assert_close_to_exact_lru(keys, estimate)


def test_loop_estimates_match_exact_lru() -> None:
    keys = [f"l{i % 700}" for i in range(30_000)]  # LRU: 0 below 700 entries, all hits above
    estimate = replay(keys, 200).what_if()
    assert_close_to_exact_lru(keys, estimate)
    assert estimate[200] == 0.0
    assert estimate[800] > 0.95


def test_a_large_cache_samples_and_stays_accurate() -> None:
    keys = zipf(150_000, 60_000, 0.8, seed=2)
    advisor = SizeAdvisor(5000)
    assert advisor.rate < 0.2
    advisor.record(keys)
    estimate = advisor.what_if()
    for capacity in (2500, 5000, 10_000):
        assert 100 * estimate[capacity] == pytest.approx(ref.lru(keys, capacity), abs=2.0)


def test_memory_is_bounded() -> None:
    advisor = SizeAdvisor(10_000)
    keys = [f"k{i}" for i in range(120_000)]  # all distinct: the worst case
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    advisor.record(keys)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert advisor.tracked <= DEFAULT_MEMORY_BYTES // BYTES_PER_KEY
    assert used <= DEFAULT_MEMORY_BYTES


def test_what_if_drains_pending_reads_and_the_switch() -> None:
    tier = MemoryTier(50)
    for key in ["a", "b", "a", "b"]:  # fewer reads than a batch: what_if drains them
        if tier.get(key) is None:
            tier.set(key, 1, 1e12)
    assert ADVICE_BATCH > 4
    assert tier.what_if()[50] == pytest.approx(0.5)
    off = MemoryTier(50, advisor=False)
    off.set("a", 1, 1e12)
    off.get("a")
    assert off.what_if() == {}


def test_estimates_for_adaptive_are_lru_estimates() -> None:
    keys = zipf(20_000, 3000, 0.9, seed=3)
    lru_curve = replay(keys, 300).what_if()
    adaptive_curve = replay(keys, 300, CacheStrategy.ADAPTIVE).what_if()
    assert adaptive_curve == pytest.approx(lru_curve, abs=1e-9)  # the same sample, same reads


def test_bad_settings_name_themselves() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SizeAdvisor(0)
    with pytest.raises(ValueError, match="memory_bytes"):
        SizeAdvisor(10, memory_bytes=100)
