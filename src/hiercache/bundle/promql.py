"""Metric names, labels and number formatting shared by the dashboard and the rules.

Every series name comes from the metric catalogue (``hiercache.telemetry.catalogue``).
"""

from __future__ import annotations

import re
from typing import Final

from hiercache.telemetry.catalogue import metric, prometheus_label

__all__ = [
    "DROP_REASON",
    "ERROR_TYPE",
    "L1",
    "L2",
    "LEVEL",
    "NAME",
    "OPERATION",
    "STALE_REASON",
    "TIMEOUT",
    "duration_words",
    "matchers",
    "num",
    "percent",
    "seconds_words",
    "series",
]

#: Prometheus labels of the metrics' attributes.
NAME: Final = prometheus_label("cache.name")
LEVEL: Final = prometheus_label("cache.level")
REASON: Final = prometheus_label("cache.eviction.reason")
DROP_REASON: Final = prometheus_label("cache.drop.reason")
ERROR_TYPE: Final = prometheus_label("error.type")
RESULT: Final = prometheus_label("cache.result")
OPERATION: Final = prometheus_label("cache.operation")
STALE_REASON: Final = prometheus_label("cache.stale.reason")
TIMEOUT: Final = prometheus_label("cache.timeout")
L1: Final = "l1_memory"
L2: Final = "l2_redis"


def series(prefix: str, name: str, part: str = "") -> str:
    """The exposed series of catalogue metric ``name``: ``series("p", "hits")`` ->
    ``p_hits_total``; ``series("p", "latency", "bucket")`` -> ``p_latency_seconds_bucket``."""
    return metric(name).prometheus_name(prefix, part)


def matchers(*parts: str) -> str:
    """Label matchers joined with ", ", empty parts left out."""
    return ", ".join(p for p in parts if p)


def num(value: float) -> str:
    """A threshold as PromQL and people write it: 1, 0.5, 524288000."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def percent(value: float) -> str:
    return f"{num(round(value * 100, 6))}%"


_UNITS: Final = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}


def duration_words(duration: str) -> str:
    """``10m`` -> ``10 minutes``; anything else is returned as it is."""
    found = re.fullmatch(r"([0-9]+)([smhdw])", duration)
    if not found:
        return duration
    count, unit = int(found.group(1)), _UNITS[found.group(2)]
    return f"{count} {unit}{'' if count == 1 else 's'}"


def seconds_words(seconds: float, space: str = "") -> str:
    """``0.001`` -> ``1ms`` (``1 ms`` with ``space=" "``); ``2`` -> ``2s``."""
    if seconds < 1:
        return f"{num(round(seconds * 1000, 6))}{space}ms"
    return f"{num(seconds)}{space}s"
