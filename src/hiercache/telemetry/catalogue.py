"""The metric catalogue: the one place that names every hiercache metric.

Each :class:`Metric` gives an instrument's name (after the prefix), kind, unit, attributes
and description. The instruments (``instruments.py``) are created from it, and the
dashboard and rule generator (``hiercache.bundle``) takes every Prometheus series name from
it, so adding a metric is one entry in :data:`METRICS`.

Prometheus names follow the OpenTelemetry Prometheus exporter: dots become underscores, a
unit suffix is added (``s`` -> ``_seconds``, ``By`` -> ``_bytes``; annotations such as
``{hit}`` add nothing), counters end in ``_total``, and a histogram is exposed as
``_bucket``, ``_sum`` and ``_count`` series.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ATTRIBUTES",
    "LATENCY_BUCKETS",
    "METRICS",
    "STATS_ATTRIBUTES",
    "InstrumentKind",
    "Metric",
    "check_prefix",
    "metric",
    "prometheus_label",
]


class InstrumentKind(enum.Enum):
    """The OpenTelemetry instrument a metric is exported with."""

    OBSERVABLE_COUNTER = "observable_counter"
    HISTOGRAM = "histogram"
    OBSERVABLE_GAUGE = "observable_gauge"


#: 1 µs .. 5 s: L1 hits (~1 µs), L2 round trips (~100 µs), backends (100 ms .. seconds).
LATENCY_BUCKETS: Final = (
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

#: OpenTelemetry attribute names used by the metrics.
ATTRIBUTES: Final = (
    "cache.name",
    "cache.level",
    "cache.operation",
    "cache.eviction.reason",
    "cache.drop.reason",
    "error.type",
    "cache.result",
    "cache.stale.reason",
    "cache.timeout",
    "cache.l1.capacity",
)

#: Attribute keys of ``CacheStats`` slots (``hiercache.stats.SLOTS``) -> OpenTelemetry names.
STATS_ATTRIBUTES: Final = {
    "level": "cache.level",
    "operation": "cache.operation",
    "reason": "cache.eviction.reason",
    "drop_reason": "cache.drop.reason",
    "error_type": "error.type",
    "result": "cache.result",
    "stale_reason": "cache.stale.reason",
    "timeout": "cache.timeout",
}

#: Unit suffixes the OpenTelemetry Prometheus exporter appends.
_UNIT_SUFFIXES: Final = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}
_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
#: A metric prefix (``CacheConfig.metrics_prefix``) is a Prometheus-safe name.
PREFIX_PATTERN: Final = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is a valid metric prefix, else ``ValueError`` naming it."""
    if not isinstance(prefix, str) or not re.fullmatch(PREFIX_PATTERN, prefix):
        raise ValueError(
            f"invalid metric prefix {prefix!r}: use letters, digits and underscores, "
            "not starting with a digit"
        )
    return prefix


@dataclass(frozen=True)
class Metric:
    """One metric: ``name`` is the instrument name after ``<prefix>.``."""

    name: str
    kind: InstrumentKind
    unit: str
    description: str
    #: OpenTelemetry attribute names, ``cache.name`` first.
    attributes: tuple[str, ...]
    #: Counters: the ``CacheStats`` slot kind they read.
    stats_kind: str | None = None
    #: Gauges: how same-named caches in one process combine.
    combine: Literal["sum", "min", "max"] = "sum"

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"metric name {self.name!r}: lower-case words joined by dots")
        unknown = set(self.attributes) - set(ATTRIBUTES)
        if unknown:
            raise ValueError(f"metric {self.name!r}: unknown attributes {sorted(unknown)}")
        if (self.kind is InstrumentKind.OBSERVABLE_COUNTER) != (self.stats_kind is not None):
            raise ValueError(f"metric {self.name!r}: counters, and only they, need stats_kind")

    def instrument_name(self, prefix: str) -> str:
        """The OpenTelemetry instrument name, e.g. ``hiercache.l2.errors``."""
        return f"{prefix}.{self.name}"

    def prometheus_base(self, prefix: str) -> str:
        """The Prometheus metric family, e.g. ``hiercache_latency_seconds``."""
        base = f"{prefix}_{self.name.replace('.', '_')}"
        unit = _UNIT_SUFFIXES.get(self.unit)
        if unit and not base.endswith(f"_{unit}"):
            base = f"{base}_{unit}"
        return base

    def prometheus_name(self, prefix: str, series: str = "") -> str:
        """The exposed series name: ``_total`` for counters; for a histogram, ``series``
        is ``bucket``, ``sum`` or ``count``."""
        base = self.prometheus_base(prefix)
        if self.kind is InstrumentKind.OBSERVABLE_COUNTER:
            return f"{base}_total"
        if self.kind is InstrumentKind.HISTOGRAM:
            if series not in ("bucket", "sum", "count"):
                raise ValueError(f"histogram {self.name!r}: series is bucket, sum or count")
            return f"{base}_{series}"
        return base

    def prometheus_labels(self) -> tuple[str, ...]:
        return tuple(prometheus_label(a) for a in self.attributes)


def prometheus_label(attribute: str) -> str:
    """The Prometheus label of an OpenTelemetry attribute: ``cache.level`` -> ``cache_level``."""
    return attribute.replace(".", "_")


_C, _H, _G = (
    InstrumentKind.OBSERVABLE_COUNTER,
    InstrumentKind.HISTOGRAM,
    InstrumentKind.OBSERVABLE_GAUGE,
)
_NAME: Final = "cache.name"
_LEVEL: Final = "cache.level"
_OP: Final = "cache.operation"

#: Every metric hiercache exports, in export order.
METRICS: Final[tuple[Metric, ...]] = (
    Metric("hits", _C, "{hit}", "Requests answered by a cache tier", (_NAME, _LEVEL, _OP), "hits"),
    Metric("misses", _C, "{miss}", "Requests that missed every tier", (_NAME, _OP), "misses"),
    Metric("promotions", _C, "{promotion}", "L2 hits copied into L1", (_NAME,), "promotions"),
    Metric(
        "evictions",
        _C,
        "{eviction}",
        "Entries removed, by tier and reason",
        (_NAME, _LEVEL, "cache.eviction.reason"),
        "evictions",
    ),
    Metric(
        "l2.errors",
        _C,
        "{error}",
        "Failed L2 (Redis) operations, by error type",
        (_NAME, "error.type"),
        "l2_errors",
    ),
    Metric(
        "loads",
        _C,
        "{load}",
        "Backend calls made on a miss, by result",
        (_NAME, "cache.result"),
        "loads",
    ),
    Metric(
        "coalesced",
        _C,
        "{wait}",
        "Callers that waited on another caller's load",
        (_NAME,),
        "coalesced",
    ),
    Metric(
        "loads.discarded",
        _C,
        "{load}",
        "Loads not stored: their key was written, deleted or invalidated while they ran",
        (_NAME,),
        "loads_discarded",
    ),
    Metric(
        "write_behind.dropped",
        _C,
        "{write}",
        "L2 writes, deletes and invalidations given up, by reason",
        (_NAME, "cache.drop.reason"),
        "write_behind_dropped",
    ),
    Metric(
        "l2.deferred",
        _C,
        "{operation}",
        "Deletes and invalidations kept during an L2 outage, to apply after recovery",
        (_NAME, _OP),
        "l2_deferred",
    ),
    Metric(
        "stale_served",
        _C,
        "{value}",
        "Expired values served inside a stale window, by reason (error, timeout, revalidate)",
        (_NAME, "cache.stale.reason"),
        "stale_served",
    ),
    Metric(
        "refreshes",
        _C,
        "{load}",
        "Background refreshes of values served stale-while-revalidate, by result",
        (_NAME, "cache.result"),
        "refreshes",
    ),
    Metric(
        "load_timeouts",
        _C,
        "{timeout}",
        "Callers that stopped waiting for a load at its soft or hard timeout",
        (_NAME, "cache.timeout"),
        "load_timeouts",
    ),
    Metric(
        "lock.waits",
        _C,
        "{wait}",
        "Loads that waited for another process holding the stampede lock",
        (_NAME,),
        "lock_waits",
    ),
    Metric(
        "lock.timeouts",
        _C,
        "{wait}",
        "Lock waits that ran out (lock_timeout_seconds) and loaded anyway",
        (_NAME,),
        "lock_timeouts",
    ),
    Metric(
        "backplane.published",
        _C,
        "{message}",
        "Invalidation messages this cache published on the backplane",
        (_NAME,),
        "backplane_published",
    ),
    Metric(
        "backplane.received",
        _C,
        "{message}",
        "Invalidation messages from other instances applied to this cache's L1",
        (_NAME,),
        "backplane_received",
    ),
    Metric(
        "backplane.resyncs",
        _C,
        "{resync}",
        "Times L1 was dropped because the backplane link was lost",
        (_NAME,),
        "backplane_resyncs",
    ),
    Metric(
        "l2.breaker.openings",
        _C,
        "{opening}",
        "Times the L2 circuit breaker opened: Redis stopped answering, or was down at start",
        (_NAME,),
        "l2_breaker_openings",
    ),
    Metric(
        "latency",
        _H,
        "s",
        "Latency of cache operations per tier, and of backend loads",
        (_NAME, _LEVEL, _OP),
    ),
    Metric("entries", _G, "", "Entries held per tier", (_NAME, _LEVEL)),
    Metric("size", _G, "By", "Bytes held per tier", (_NAME, _LEVEL)),
    Metric("write_behind.queue_depth", _G, "{write}", "Queued L2 writes", (_NAME,)),
    Metric(
        "l1.hit_ratio.estimate",
        _G,
        "",
        "The size advisor's estimate of the L1 hit ratio if L1 held cache.l1.capacity entries",
        (_NAME, "cache.l1.capacity"),
        combine="max",
    ),
    Metric(
        "backplane.up",
        _G,
        "",
        "1 when the backplane subscription is live, 0 when invalidations may be missed",
        (_NAME,),
        combine="min",
    ),
    Metric(
        "l2.up",
        _G,
        "",
        "1 when the L2 Redis is reachable, 0 when running L1-only",
        (_NAME,),
        combine="min",
    ),
    Metric(
        "l2.breaker.state",
        _G,
        "",
        "The L2 circuit breaker: 0 closed, 1 half-open, 2 open (or not yet probed)",
        (_NAME,),
        combine="max",
    ),
)

_BY_NAME: Final = {m.name: m for m in METRICS}
if len(_BY_NAME) != len(METRICS):  # pragma: no cover - a catalogue typo
    raise ValueError("duplicate metric names in the catalogue")


def metric(name: str) -> Metric:
    """The catalogue entry named ``name`` (e.g. ``"l2.errors"``)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no metric {name!r} in the catalogue") from None
