"""Eviction policies against reference simulators, and ADAPTIVE's behaviour by workload."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from hiercache import CacheStrategy
from hiercache.adaptive import AdaptivePolicy, FrequencySketch
from hiercache.memory import MemoryTier
from hiercache.policies import LFUPolicy, UnknownStrategyError, make_policy

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import reference_policies as ref  # noqa: E402

TRACES = Path(os.environ.get("HIERCACHE_SHARED_DIR") or REPO.parent / "shared") / "traces"


def tier_ratio(keys: Sequence[str], size: int, strategy: CacheStrategy) -> float:
    tier = MemoryTier(size, strategy=strategy, advisor=False)
    hits = 0
    for key in keys:
        if tier.get(key) is not None:
            hits += 1
        else:
            tier.set(key, True, 1e12)
    return 100.0 * hits / len(keys)


def policy_ratio(keys: Sequence[str], size: int, seed: int = 0) -> float:
    """ADAPTIVE alone (no tier), every read recorded."""
    return 100.0 * sum(policy_hits(keys, size, seed)) / len(keys)


def policy_hits(keys: Sequence[str], size: int, seed: int = 0) -> list[bool]:
    policy = AdaptivePolicy(size, seed=seed)
    resident: set[str] = set()
    hits: list[bool] = []
    for key in keys:
        hits.append(key in resident)
        if key in resident:
            policy.record_access(key)
        else:
            if len(resident) >= size:
                victim = policy.victim()
                resident.discard(victim)
                policy.record_remove(victim)
            resident.add(key)
            policy.record_insert(key, 0.0)
    return hits


def zipf(n: int, universe: int, s: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) ** s for i in range(universe)]
    return [f"z{i}" for i in rng.choices(range(universe), weights, k=n)]


def recency(n: int, seed: int, max_gap: int = 60) -> list[str]:
    """Every key is used twice, the second time 5..max_gap accesses later (Corda-like)."""
    rng = random.Random(seed)
    out: list[str | None] = [None] * (n + max_gap + 1)
    fresh = 0
    for i in range(n):
        if out[i] is None:
            out[i] = f"r{fresh}"
            j = i + rng.randint(5, max_gap)
            while out[j] is not None:
                j += 1
            out[j] = f"r{fresh}"
            fresh += 1
    return [k for k in out[:n] if k is not None]


def loop(n: int, length: int) -> list[str]:
    return [f"l{i % length}" for i in range(n)]


# -- exactness ------------------------------------------------------------------------
MIXED = zipf(6000, 400, 0.9, seed=1) + loop(1500, 150) + zipf(4000, 2000, 0.6, seed=2)


@pytest.mark.parametrize("size", [10, 64, 300])
@pytest.mark.parametrize(
    ("strategy", "reference"),
    [(CacheStrategy.LRU, ref.lru), (CacheStrategy.FIFO, ref.fifo), (CacheStrategy.LFU, ref.lfu)],
)
def test_lru_fifo_lfu_are_exact(strategy: CacheStrategy, reference: object, size: int) -> None:
    assert callable(reference)
    assert tier_ratio(MIXED, size, strategy) == pytest.approx(reference(MIXED, size), abs=0.005)


def test_lru_is_exact_over_long_runs_of_hits() -> None:
    # 20,000 hits between two writes: a lossy read buffer would drop most of them.
    keys = [f"h{i % 50}" for i in range(20_000)] + [f"n{i}" for i in range(30)] + ["h0"] * 5
    for strategy, reference in ((CacheStrategy.LRU, ref.lru), (CacheStrategy.LFU, ref.lfu)):
        assert tier_ratio(keys, 60, strategy) == pytest.approx(reference(keys, 60), abs=0.005)


def test_make_policy_rejects_unknown_strategies() -> None:
    with pytest.raises(UnknownStrategyError, match="'nope'") as info:
        make_policy("nope", 10)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert info.value.strategy == "nope"


# -- LFU ages --------------------------------------------------------------------------
def test_lfu_ages_so_a_new_hot_set_takes_over() -> None:
    old = [f"a{i % 10}" for i in range(2000)]  # ten keys used 200 times each
    new = [f"b{i % 10}" for i in range(3000)]  # then ten other keys, as often
    keys = old + new
    tier = MemoryTier(10, strategy=CacheStrategy.LFU, advisor=False)
    late_hits = 0
    for i, key in enumerate(keys):
        if tier.get(key) is not None:
            late_hits += i >= len(keys) - 1000
        else:
            tier.set(key, True, 1e12)
    assert late_hits >= 990  # the new set is resident: the old counts faded
    assert ref.lfu(keys, 10) == pytest.approx(tier_ratio(keys, 10, CacheStrategy.LFU), abs=0.005)


def test_lfu_aging_halves_counts_but_keeps_them_positive() -> None:
    p = LFUPolicy(capacity=2)  # ages every 20 uses
    p.record_insert("a", 0)
    for _ in range(8):
        p.record_access("a")  # a: 9
    p.record_insert("b", 0)  # b: 1 (10 uses so far)
    for _ in range(10):
        p.record_access("b")  # b: 11; 20 uses: a 9 -> 4, b 11 -> 5
    assert p.victim() == "a"


# -- ADAPTIVE -------------------------------------------------------------------------
def test_adaptive_resists_a_scan() -> None:
    hot = zipf(3000, 100, 1.0, seed=3)
    scan = [f"s{i}" for i in range(3000)]
    after = zipf(3000, 100, 1.0, seed=4)
    keys = hot + scan + after
    tier = MemoryTier(100, strategy=CacheStrategy.ADAPTIVE, advisor=False)
    lru = MemoryTier(100, strategy=CacheStrategy.LRU, advisor=False)
    hits = {"adaptive": 0, "lru": 0}
    for i, key in enumerate(keys):
        for name, t in (("adaptive", tier), ("lru", lru)):
            if t.get(key) is not None:
                hits[name] += i >= len(hot) + len(scan) and i < len(keys) - 2800
            else:
                t.set(key, True, 1e12)
    # Just after the scan, the hot set is still there for ADAPTIVE, flushed for LRU.
    assert hits["adaptive"] > 150
    assert hits["adaptive"] > hits["lru"] + 50


def test_adaptive_adapts_to_a_phase_change() -> None:
    size = 500
    recent = recency(30_000, seed=5)  # reuse 5..60 accesses later: wants a big window
    looped = loop(30_000, 900)  # a loop longer than the cache: wants a small one
    hits = policy_hits(recent + looped + recent[:15_000], size)
    first, second, third = hits[:30_000], hits[30_000:60_000], hits[60_000:]
    # LRU is optimal on the recency phases, and gets nothing from the loop.
    assert 100 * sum(first) / len(first) >= ref.lru(recent, size) - 2
    assert 100 * sum(second) / len(second) >= 35  # W-TinyLFU-like: about half of main
    assert 100 * sum(third) / len(third) >= ref.lru(recent[:15_000], size) - 3
    assert ref.lru(looped, size) == 0


def test_adaptive_matches_lru_on_recency_and_wtinylfu_on_frequency() -> None:
    rec = recency(20_000, seed=6)
    freq = zipf(20_000, 5000, 0.8, seed=7)
    assert policy_ratio(rec, 300) >= ref.lru(rec, 300) - 1
    assert policy_ratio(freq, 300) >= ref.wtinylfu(freq, 300) - 1
    assert policy_ratio(freq, 300) >= ref.lru(freq, 300) + 3


def test_adaptive_results_barely_depend_on_the_seed() -> None:
    traces = {"zipf": zipf(15_000, 3000, 0.8, seed=8), "recency": recency(15_000, seed=9)}
    for name, keys in traces.items():
        ratios = [policy_ratio(keys, 200, seed=s) for s in range(5)]
        assert max(ratios) - min(ratios) <= 0.5, (name, ratios)


def test_adaptive_is_stable_across_interpreter_hash_seeds() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_policies as t; "
        "print(t.policy_ratio(t.zipf(15_000, 3000, 0.8, seed=8), 200, seed=1))"
    )
    ratios = [
        float(
            subprocess.run(
                [sys.executable, "-c", code, str(REPO / "tests")],
                env={"PYTHONHASHSEED": str(seed), "PYTHONPATH": str(REPO / "src")},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for seed in (0, 1)
    ]
    assert max(ratios) - min(ratios) <= 0.5, ratios


def test_sketch_saturates_and_ages() -> None:
    sketch = FrequencySketch(16)
    slots = sketch.slots(0x1234_5678_9ABC_DEF0)
    for _ in range(40):
        sketch.increment(slots)
    assert sketch.frequency(slots) == 15
    sketch.halve()
    assert sketch.frequency(slots) == 7
    assert len(sketch.table) >= 16 * 16  # 16 counters per entry, as Caffeine sizes it


# -- the public traces, when present ---------------------------------------------------
def load(name: str) -> list[str]:
    with gzip.open(TRACES / f"{name}.keys.gz", "rt") as fh:
        return [line.strip() for line in fh if line.strip()]


@pytest.mark.skipif(
    not (TRACES / "lirs_gli.keys.gz").exists(),
    reason=f"public traces absent at {TRACES} (set HIERCACHE_SHARED_DIR; see hit_ratio.py)",
)
def test_adaptive_on_the_gli_trace() -> None:
    keys = load("lirs_gli")
    assert tier_ratio(keys, 1000, CacheStrategy.ADAPTIVE) >= 48
    assert tier_ratio(keys, 1000, CacheStrategy.LRU) == pytest.approx(ref.lru(keys, 1000), 1e-9)


def test_hit_ratio_benchmark_skips_without_traces(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "hit_ratio.py"), "--traces", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("SKIP: no traces in")
    assert "--traces" in done.stdout
