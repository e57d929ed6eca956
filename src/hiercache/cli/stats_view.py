"""``hiercache stats``: one snapshot of every cache's metrics, and its Rich rendering.

Hit ratios follow the dashboard's definitions: requests = hits + misses; overall = hits /
requests; L1 = L1 hits / requests; L2 = L2 hits / (L2 hits + misses).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table

from hiercache.cli.metrics_source import Sample
from hiercache.telemetry.catalogue import metric

__all__ = ["CacheSnapshot", "render", "snapshot"]

#: The ``l2.breaker.state`` gauge's values.
BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}


@dataclass
class Latency:
    count: float = 0.0
    total: float = 0.0
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated inside its bucket (as ``histogram_quantile``)."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for bound in sorted(self.buckets):
            cumulative = self.buckets[bound]
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower
                inside = cumulative - below
                share = (rank - below) / inside if inside else 1.0
                return lower + (bound - lower) * share
            lower, below = bound, cumulative
        return lower


@dataclass
class CacheSnapshot:
    """One cache name's figures (summed over instances, operations and label values)."""

    name: str
    hits: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    misses: float = 0.0
    latency: dict[str, Latency] = field(default_factory=lambda: defaultdict(Latency))
    evictions: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    errors: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    l2_up: float | None = None
    breaker: dict[str, float] = field(default_factory=dict)
    backplane: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> float:
        return sum(self.hits.values()) + self.misses

    def ratio(self, which: str) -> float | None:
        l1, l2 = self.hits.get("l1_memory", 0.0), self.hits.get("l2_redis", 0.0)
        if which == "l2":
            lookups = l2 + self.misses
            return l2 / lookups if lookups else None
        if not self.requests:
            return None
        return (l1 if which == "l1" else sum(self.hits.values())) / self.requests


def _labels_text(labels: dict[str, str], skip: Iterable[str]) -> str:
    shown = {
        k: v for k, v in sorted(labels.items()) if k not in skip and not k.startswith("otel_scope")
    }
    return ",".join(f"{k}={v}" for k, v in shown.items())


def snapshot(samples: Iterable[Sample], prefix: str) -> list[CacheSnapshot]:
    """The samples grouped by ``cache_name``, sorted by it."""
    names = {
        "hits": metric("hits").prometheus_name(prefix),
        "misses": metric("misses").prometheus_name(prefix),
        "evictions": metric("evictions").prometheus_name(prefix),
        "errors": metric("l2.errors").prometheus_name(prefix),
        "up": metric("l2.up").prometheus_name(prefix),
    }
    latency = metric("latency")
    bucket, count, total = (latency.prometheus_name(prefix, s) for s in ("bucket", "count", "sum"))
    caches: dict[str, CacheSnapshot] = {}
    skip = ("cache_name", "job", "instance", "otel_scope_name", "otel_scope_version")
    for s in samples:
        labels = dict(s.labels)
        name = labels.get("cache_name", "")
        cache = caches.setdefault(name, CacheSnapshot(name))
        level = labels.get("cache_level", "")
        if s.name == names["hits"]:
            cache.hits[level] += s.value
        elif s.name == names["misses"]:
            cache.misses += s.value
        elif s.name == names["evictions"]:
            cache.evictions[(level, labels.get("cache_eviction_reason", ""))] += s.value
        elif s.name == names["errors"]:
            cache.errors[labels.get("error_type", "")] += s.value
        elif s.name == names["up"]:
            cache.l2_up = s.value if cache.l2_up is None else min(cache.l2_up, s.value)
        elif s.name == bucket:
            cache.latency[level].buckets[float(labels.get("le", "inf"))] += s.value
        elif s.name == count:
            cache.latency[level].count += s.value
        elif s.name == total:
            cache.latency[level].total += s.value
        elif s.name == f"{prefix}_l2_breaker_state":
            state = BREAKER_STATES.get(int(s.value), f"{s.value:g}")
            cache.breaker[state] = cache.breaker.get(state, 0) + 1
        elif s.name.startswith(f"{prefix}_l2_breaker_"):
            series = s.name.removeprefix(f"{prefix}_l2_breaker_")
            extra = _labels_text(labels, skip)
            key = f"{series}{{{extra}}}" if extra else series
            cache.breaker[key] = cache.breaker.get(key, 0) + s.value
        elif s.name.startswith(f"{prefix}_backplane"):
            key = s.name.removeprefix(f"{prefix}_")
            extra = _labels_text(labels, skip)
            cache.backplane[f"{key}{{{extra}}}" if extra else key] = s.value
    return [caches[n] for n in sorted(caches) if n]


def _breaker_text(key: str, value: float) -> str:
    """A state of the breaker gauge (with how many instances are in it when more than one),
    or another breaker series as key=value."""
    if key in BREAKER_STATES.values():
        return key if value == 1 else f"{key} x{value:g}"
    return f"{key}={value:g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def render(caches: list[CacheSnapshot], source: str) -> Group:
    """Tables: hit ratios and L2 state, latency per tier, evictions, errors, backplane."""
    ratios = Table(title=f"hiercache at {source}", title_justify="left")
    for column in ("cache", "requests", "overall", "L1", "L2", "l2_up", "breaker"):
        ratios.add_column(column, justify="left" if column == "cache" else "right")
    latency = Table(title="latency per tier", title_justify="left")
    for column in ("cache", "tier", "samples", "mean ms", "p95 ms"):
        latency.add_column(column, justify="left" if column in ("cache", "tier") else "right")
    evictions = Table(title="evictions", title_justify="left")
    for column in ("cache", "tier", "reason", "count"):
        evictions.add_column(column, justify="right" if column == "count" else "left")
    errors = Table(title="L2 errors", title_justify="left")
    for column in ("cache", "error type", "count"):
        errors.add_column(column, justify="right" if column == "count" else "left")
    backplane = Table(title="backplane", title_justify="left")
    for column in ("cache", "series", "value"):
        backplane.add_column(column, justify="right" if column == "value" else "left")
    for c in caches:
        up = "-" if c.l2_up is None else ("up" if c.l2_up >= 1 else "DOWN")
        states = sorted(c.breaker.items(), key=lambda kv: kv[0] not in BREAKER_STATES.values())
        breaker = ", ".join(_breaker_text(k, v) for k, v in states) or "-"
        ratios.add_row(
            c.name,
            _count(c.requests),
            _pct(c.ratio("overall")),
            _pct(c.ratio("l1")),
            _pct(c.ratio("l2")),
            up,
            breaker,
        )
        for tier, lat in sorted(c.latency.items()):
            mean = lat.total / lat.count if lat.count else None
            latency.add_row(c.name, tier, _count(lat.count), _ms(mean), _ms(lat.quantile(0.95)))
        for (tier, reason), n in sorted(c.evictions.items()):
            if n:
                evictions.add_row(c.name, tier, reason, _count(n))
        for kind, n in sorted(c.errors.items()):
            if n:
                errors.add_row(c.name, kind, _count(n))
        for series, value in sorted(c.backplane.items()):
            backplane.add_row(c.name, series, f"{value:g}")
    parts: list[Table] = [ratios, latency]
    for table, empty in ((evictions, "no evictions"), (errors, "no L2 errors")):
        if table.row_count:
            parts.append(table)
        else:
            table.add_row(empty, "", *([""] * (len(table.columns) - 2)))
            parts.append(table)
    if backplane.row_count:
        parts.append(backplane)
    else:
        backplane.add_row("-", "no backplane metrics (backplane off?)", "")
        parts.append(backplane)
    return Group(*parts)
