"""What the overview dashboard shows: its rows, panels and PromQL, as plain data.

``dashboard.py`` turns these into Grafana JSON. Queries filter on the dashboard variables,
use ``$__rate_interval``, and take every series name from the metric catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hiercache.bundle.config import BundleConfig
from hiercache.bundle.promql import (
    DROP_REASON,
    ERROR_TYPE,
    L1,
    L2,
    LEVEL,
    NAME,
    REASON,
    RESULT,
    matchers,
    num,
    percent,
    seconds_words,
    series,
)

__all__ = ["Panel", "Queries", "Query", "rows"]

_FILTER = 'job=~"$job", instance=~"$instance", cache_name=~"$cache_name"'
_RI = "[$__rate_interval]"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    kind: Literal["stat", "timeseries"]
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    stacked: bool = False
    log_scale: bool = False
    threshold_line: bool = False
    min: float | None = None
    max: float | None = None
    decimals: float | None = None
    thresholds: tuple[tuple[float | None, str], ...] = ()
    #: Stat value mappings: value -> (text, color).
    value_texts: tuple[tuple[str, tuple[str, str]], ...] = ()


class Queries:
    """PromQL with every selector filtered on the dashboard's variables."""

    def __init__(self, config: BundleConfig) -> None:
        self.p = config.prefix
        self.extra = config.selector

    def sel(self, name: str, extra: str = "") -> str:
        return f"{series(self.p, name)}{{{matchers(_FILTER, extra, self.extra)}}}"

    def rate(self, name: str, extra: str = "", part: str = "") -> str:
        metric = series(self.p, name, part)
        return f"rate({metric}{{{matchers(_FILTER, extra, self.extra)}}}{_RI})"

    def any_of(self, *names: str, extra: str = "") -> str:
        """The rate of several counters in one selector (no denominator goes missing)."""
        found = "|".join(series(self.p, name) for name in names)
        by_name = f'__name__=~"{found}"'
        return f"rate({{{matchers(by_name, _FILTER, extra, self.extra)}}}{_RI})"

    def quantile(self, q: str) -> str:
        bucket = self.rate("latency", part="bucket")
        return f"histogram_quantile({q}, sum by ({LEVEL}, le) ({bucket}))"


def _ratio_stat(
    title: str, description: str, query: Query, steps: tuple[tuple[float | None, str], ...]
) -> Panel:
    return Panel(
        "stat", title, description, "percentunit", (query,), min=0, max=1, decimals=1,
        thresholds=steps,
    )  # fmt: skip


def rows(config: BundleConfig) -> list[tuple[str, list[Panel]]]:
    """The dashboard's rows in order, each with its panels (laid out side by side)."""
    q, c = Queries(config), config
    l1, l2 = f'{LEVEL}="{L1}"', f'{LEVEL}="{L2}"'
    hits = f"sum({q.rate('hits')})"
    requests = f"sum({q.any_of('hits', 'misses')})"
    l2_or_miss = f'{LEVEL}=~"{L2}|"'  # L2 hits and misses (misses carry no level)
    l2_lookups = f"sum({q.any_of('hits', 'misses', extra=l2_or_miss)})"
    mem_limit = f"{num(c.memory_limit_bytes / (1024 * 1024))} MiB"
    l1_target = seconds_words(c.l1_latency_p95_seconds, " ")
    l2_target = seconds_words(c.l2_latency_p95_seconds, " ")
    per = f"{{{{instance}}}} {{{{{NAME}}}}}"

    def latency(label: str, value: str) -> Panel:
        return Panel(
            "timeseries",
            f"Latency {label} by tier",
            f"{label} latency of cache operations per tier (l1_memory, l2_redis) next to the "
            "backend's (the loads the cache saves), from the latency histogram. Targets: L1 "
            f"< {l1_target}, L2 < {l2_target}. L1 hits are sampled; quantiles are interpolated "
            "within histogram buckets.",
            "s",
            (Query(q.quantile(value), f"{{{{{LEVEL}}}}}"),),
            log_scale=True,
        )

    return [
        ("Hit ratio", [
            _ratio_stat(
                "Overall hit ratio",
                "Share of requests answered by any cache tier: hits / (hits + misses). "
                f"Thresholds: red below {percent(c.hit_ratio_target)}, yellow below "
                f"{percent(c.hit_ratio_good)}, green from {percent(c.hit_ratio_good)}. "
                f"Target: above {percent(c.hit_ratio_target)}.",
                Query(f"{hits} / {requests}", "hit ratio"),
                ((None, "red"), (c.hit_ratio_target, "yellow"), (c.hit_ratio_good, "green")),
            ),
            _ratio_stat(
                "L1 hit ratio",
                "Share of all requests answered by the in-process L1 memory tier: "
                f"L1 hits / (hits + misses). Target: above {percent(c.l1_hit_ratio_warning)}.",
                Query(f"sum({q.rate('hits', l1)}) / {requests}", "L1 hit ratio"),
                ((None, "red"), (c.l1_hit_ratio_warning, "green")),
            ),
            _ratio_stat(
                "L2 hit ratio",
                "Share of the requests that reached Redis (L1 misses) that Redis answered: "
                f"L2 hits / (L2 hits + misses). Target: above {percent(c.l2_hit_ratio_warning)}.",
                Query(f"sum({q.rate('hits', l2)}) / {l2_lookups}", "L2 hit ratio"),
                ((None, "red"), (c.l2_hit_ratio_warning, "green")),
            ),
        ]),
        ("Traffic", [
            Panel(
                "timeseries",
                "Requests per second by outcome",
                "Cache lookups per second, split by who answered: the L1 memory tier, the L2 "
                "Redis tier, or nobody (a miss, which goes to the backend).",
                "reqps",
                (
                    Query(f"sum({q.rate('hits', l1)})", "L1 hit"),
                    Query(f"sum({q.rate('hits', l2)})", "L2 hit"),
                    Query(f"sum({q.rate('misses')})", "miss"),
                ),
                stacked=True,
            ),
            Panel(
                "timeseries",
                "Backend calls and calls saved",
                "Backend calls per second made by the cache (decorator, cached_operation, "
                "warming) by result, against the calls the cache saved: hits plus coalesced "
                "waits (callers that shared another caller's in-flight load).",
                "ops",
                (
                    Query(
                        f"sum by ({RESULT}) ({q.rate('loads')})", f"backend {{{{{RESULT}}}}}"
                    ),
                    Query(f"sum({q.any_of('hits', 'coalesced')})", "calls saved"),
                ),
            ),
        ]),
        ("Latency", [latency("p50", "0.5"), latency("p95", "0.95"), latency("p99", "0.99")]),
        ("Tiers", [
            Panel(
                "timeseries",
                "Promotions (L2 to L1)",
                "L2 hits copied into the L1 memory tier per second. Steady promotions mean L1 "
                "is too small or its TTL too short for the working set.",
                "ops",
                (Query(f"sum({q.rate('promotions')})", "promotions"),),
            ),
            Panel(
                "timeseries",
                "Evictions by reason",
                "Entries removed per second, by tier and reason: size (capacity), expired "
                "(TTL), deleted (explicit delete) and invalidated (pattern or tag invalidation).",
                "ops",
                (
                    Query(
                        f"sum by ({LEVEL}, {REASON}) ({q.rate('evictions')})",
                        f"{{{{{LEVEL}}}}} {{{{{REASON}}}}}",
                    ),
                ),
                stacked=True,
            ),
        ]),
        ("Memory", [
            Panel(
                "timeseries",
                "L1 entries per instance",
                "Entries held in the L1 memory tier, per instance and cache.",
                "short",
                (Query(f"sum by (instance, {NAME}) ({q.sel('entries')})", per),),
            ),
            Panel(
                "timeseries",
                "L1 bytes per instance",
                "Bytes held in the L1 memory tier per instance (all caches), against the "
                f"{mem_limit} per-instance target drawn as a red line.",
                "bytes",
                (Query(f"sum by (instance) ({q.sel('size')})", "{{instance}}"),),
                threshold_line=True,
                min=0,
                thresholds=((None, "green"), (c.memory_limit_bytes, "red")),
            ),
        ]),
        ("L2 Redis", [
            Panel(
                "timeseries",
                "L2 errors by type",
                "Failed Redis operations per second by error type (timeout, connection, "
                "corrupt, serialization, other). Each one degrades to L1-only behaviour for "
                "that call. Empty while Redis has had no errors.",
                "ops",
                (
                    Query(
                        f"sum by ({ERROR_TYPE}) ({q.rate('l2.errors')})",
                        f"{{{{{ERROR_TYPE}}}}}",
                    ),
                ),
                stacked=True,
            ),
            Panel(
                "stat",
                "L2 connection state",
                "Whether each instance's cache is connected to Redis (1, connected) or running "
                "L1-only because Redis is unreachable or not configured (0, unavailable).",
                "none",
                (Query(f"min by (instance, {NAME}) ({q.sel('l2.up')})", per),),
                thresholds=((None, "red"), (1, "green")),
                value_texts=(("0", ("unavailable", "red")), ("1", ("connected", "green"))),
            ),
            Panel(
                "stat",
                "L2 circuit breaker",
                "The L2 circuit breaker of each instance's cache: closed (0, Redis in use), "
                "half-open (1, a background probe in flight) or open (2, Redis skipped after "
                "timeouts, refused connections or a lost primary; also before the first probe). "
                "While it is not closed every L1 miss goes to the backend.",
                "none",
                (Query(f"max by (instance, {NAME}) ({q.sel('l2.breaker.state')})", per),),
                thresholds=((None, "green"), (1, "yellow"), (2, "red")),
                value_texts=(
                    ("0", ("closed", "green")),
                    ("1", ("half-open", "yellow")),
                    ("2", ("open", "red")),
                ),
            ),
        ]),
        ("Write path and coalescing", [
            Panel(
                "timeseries",
                "Write-behind queue depth",
                "Writes waiting to be flushed to Redis by the write-behind queue, per instance "
                "and cache. A depth that keeps growing means Redis cannot keep up with writes.",
                "short",
                (Query(f"sum by (instance, {NAME}) ({q.sel('write_behind.queue_depth')})", per),),
            ),
            Panel(
                "timeseries",
                "Write-behind drops by reason",
                "L2 writes (and deferred deletes) given up per second, by reason: queue_full, "
                "expired (outlived their TTL while Redis was down), shutdown, error, "
                "deferred_overflow. Each one is a value other instances will not find in Redis. "
                "Zero while nothing is lost.",
                "ops",
                (
                    Query(
                        f"sum by ({DROP_REASON}) ({q.rate('write_behind.dropped')})",
                        f"{{{{{DROP_REASON}}}}}",
                    ),
                ),
                stacked=True,
            ),
            Panel(
                "timeseries",
                "Coalesced waits",
                "Callers per second that waited on another caller's in-flight load for the "
                "same key instead of calling the backend themselves (backend calls saved by "
                "coalescing). Empty until two callers have missed the same key at once.",
                "ops",
                (Query(f"sum({q.rate('coalesced')})", "coalesced waits"),),
            ),
        ]),
    ]  # fmt: skip
