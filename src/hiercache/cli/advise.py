"""``hiercache advise``: the L1 size advisor's hit-ratio curve, read from
``{prefix}_l1_hit_ratio_estimate{cache_l1_capacity=...}`` gauges, and a recommendation."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from hiercache.cli.metrics_source import Sample

__all__ = ["GAUGE", "Advice", "advise", "curves"]

GAUGE = "l1_hit_ratio_estimate"
CAPACITY_LABEL = "cache_l1_capacity"


@dataclass(frozen=True)
class Advice:
    cache: str
    curve: list[tuple[int, float]]  # (capacity, estimated hit ratio), by capacity
    current: int
    recommended: int

    def text(self) -> str:
        at = dict(self.curve)
        now, best = at[self.current], at[self.recommended]
        setting = f"CACHE_L1_MAX_SIZE={self.recommended}"
        if self.recommended > self.current:
            return (
                f"grow L1 from {self.current} to {self.recommended} entries ({setting}): "
                f"estimated L1 hit ratio {now:.1%} -> {best:.1%}"
            )
        if self.recommended < self.current:
            return (
                f"L1 could shrink from {self.current} to {self.recommended} entries "
                f"({setting}): estimated L1 hit ratio {now:.1%} -> {best:.1%}"
            )
        return f"keep L1 at {self.current} entries: a larger one gains too little"


def curves(samples: Iterable[Sample], prefix: str) -> dict[str, list[tuple[int, float]]]:
    """Per cache name, the (capacity, hit ratio) points, summed over nothing: when several
    instances report, their estimates at one capacity are averaged."""
    points: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        if s.name != f"{prefix}_{GAUGE}" or CAPACITY_LABEL not in s.labels:
            continue
        try:
            capacity = int(float(s.labels[CAPACITY_LABEL]))
        except ValueError:
            continue
        points[s.labels.get("cache_name", "")][capacity].append(s.value)
    return {
        name: sorted((cap, sum(v) / len(v)) for cap, v in by_cap.items())
        for name, by_cap in sorted(points.items())
    }


def advise(
    cache: str, curve: list[tuple[int, float]], current: int | None, tolerance: float
) -> Advice:
    """The smallest capacity within ``tolerance`` of the curve's best estimate.

    ``current`` defaults to the curve's middle point (the advisor reports 0.5, 1, 2, 4
    and 8 times the configured capacity).
    """
    capacities = [c for c, _ in curve]
    if current is None:
        current = capacities[len(capacities) // 2]
    best = max(r for _, r in curve)
    recommended = next(c for c, r in curve if r >= best - tolerance)
    if current not in capacities:
        curve = sorted([*curve, (current, _interpolate(curve, current))])
    return Advice(cache, curve, current, recommended)


def _interpolate(curve: list[tuple[int, float]], x: int) -> float:
    if x <= curve[0][0]:
        return curve[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return curve[-1][1]
