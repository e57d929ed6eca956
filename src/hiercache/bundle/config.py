"""The bundle's settings: metric prefix, selectors, thresholds and durations.

Like a monitoring mixin's ``_config``, every number and selector the dashboard and rules use
is a field of :class:`BundleConfig`, with the shipped value as its default. Override any of
them from a YAML or JSON file (``hiercache bundle --config FILE``) whose top-level keys are
field names; unknown keys and values of the wrong type or range are refused with a
:class:`BundleConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, cast

import yaml

from hiercache.telemetry import catalogue

__all__ = ["DEFAULT_PREFIX", "BundleConfig", "BundleConfigError", "check_prefix"]

DEFAULT_PREFIX: Final = "hiercache"

_DURATION_RE: Final = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
#: A PromQL label matcher list without braces, e.g. ``job="api", env=~"prod|staging"``.
_MATCHERS_RE: Final = re.compile(
    r'^([a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"([^"\\]|\\.)*"'
    r'(\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"([^"\\]|\\.)*")*)?$'
)


class BundleConfigError(ValueError):
    """A bundle setting is unknown or has a bad value; the message names it."""


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is a valid metric-name prefix, else :class:`BundleConfigError`."""
    try:
        return catalogue.check_prefix(prefix)
    except ValueError as exc:
        raise BundleConfigError(str(exc)) from None


@dataclass(frozen=True)
class BundleConfig:
    """Everything the dashboard and the rules are rendered from (keys of ``--config``)."""

    #: Metric name prefix (``CACHE_METRICS_PREFIX`` of the services).
    prefix: str = DEFAULT_PREFIX
    #: Extra label matchers on every selector of the rules and dashboard, e.g. ``job="api"``.
    selector: str = ""
    #: Base of each alert's ``runbook_url``; ``#<alert name in lower case>`` is appended.
    runbook_url: str = "docs/runbooks.md"
    #: Window of the recording rules' rates.
    rate_window: str = "5m"
    #: Ratio alerts are silent below this many requests (or L2 lookups) per second.
    min_request_rate: float = 1
    #: Overall hit ratio: the target, and the warning and critical alert thresholds.
    hit_ratio_target: float = 0.6
    hit_ratio_good: float = 0.8
    hit_ratio_warning: float = 0.5
    hit_ratio_critical: float = 0.3
    hit_ratio_for: str = "10m"
    l1_hit_ratio_warning: float = 0.7
    l1_hit_ratio_for: str = "15m"
    l2_hit_ratio_warning: float = 0.5
    l2_hit_ratio_for: str = "15m"
    #: p95 latency targets, in seconds.
    l1_latency_p95_seconds: float = 0.001
    l2_latency_p95_seconds: float = 0.01
    latency_for: str = "10m"
    #: L1 bytes per instance (all caches) before HiercacheMemoryHigh.
    memory_limit_bytes: int = 500 * 1024 * 1024
    memory_for: str = "10m"
    l2_error_ratio_warning: float = 0.05
    l2_error_ratio_for: str = "5m"
    l2_unavailable_for: str = "5m"
    #: HiercacheL2BreakerOpen: the circuit breaker not closed (open or half-open) this long.
    l2_breaker_open_for: str = "2m"
    #: HiercacheWriteBehindDropping: write-behind writes given up, for this long.
    write_behind_dropped_for: str = "1m"
    #: HiercacheL2WritesRefused: Redis refusing writes (OOM, NOREPLICAS, MISCONF) this long.
    l2_writes_refused_for: str = "5m"
    #: HiercacheStaleServingHigh: stale values served / requests above this, for this long.
    stale_served_ratio_warning: float = 0.05
    stale_served_ratio_for: str = "5m"
    #: HiercacheBackplaneDown: an instance's backplane subscription down this long.
    backplane_down_for: str = "2m"
    target_down_for: str = "5m"
    #: How recently a target must have exported hiercache metrics for TargetDown to fire.
    target_down_lookback: str = "1h"
    metrics_absent_for: str = "10m"
    #: Grafana provisioning: where the stack's data sources and dashboards are.
    prometheus_url: str = "http://prometheus:9090"
    tempo_url: str = "http://tempo:3200"
    grafana_dashboards_dir: str = "/var/lib/grafana/dashboards/hiercache"
    dashboard_refresh: str = "10s"

    def __post_init__(self) -> None:
        for field in fields(self):
            value: Any = getattr(self, field.name)
            type_name = str(field.type)
            if isinstance(value, bool) or not isinstance(value, _TYPES[type_name]):
                raise BundleConfigError(
                    f"bundle setting {field.name!r}: expected {type_name}, "
                    f"got {type(value).__name__}"
                )
            if field.name.endswith(("_for", "_window", "_lookback")) and not _DURATION_RE.match(
                cast(str, value)
            ):
                raise BundleConfigError(
                    f"bundle setting {field.name!r}: {value!r} is not a Prometheus duration"
                )
            if type_name == "float" and "ratio" in field.name and not 0 <= cast(float, value) <= 1:
                raise BundleConfigError(f"bundle setting {field.name!r}: {value} not in 0..1")
        check_prefix(self.prefix)
        if not _MATCHERS_RE.fullmatch(self.selector.strip()):
            raise BundleConfigError(
                f"bundle setting 'selector': {self.selector!r} is not a list of label "
                'matchers such as job="api"'
            )
        for name in ("min_request_rate", "l1_latency_p95_seconds", "l2_latency_p95_seconds"):
            if getattr(self, name) <= 0:
                raise BundleConfigError(f"bundle setting {name!r}: must be > 0")
        if self.memory_limit_bytes <= 0:
            raise BundleConfigError("bundle setting 'memory_limit_bytes': must be > 0")
        if not self.hit_ratio_critical <= self.hit_ratio_warning:
            raise BundleConfigError(
                "bundle setting 'hit_ratio_critical': must not exceed hit_ratio_warning"
            )

    @classmethod
    def from_mapping(cls, data: Any, **overrides: Any) -> BundleConfig:
        """A config from a mapping of setting names (a loaded YAML/JSON document)."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise BundleConfigError("bundle config: expected a mapping of setting names")
        known = {f.name: f for f in fields(cls)}
        for key in data:
            if key not in known:
                raise BundleConfigError(f"unknown bundle setting {key!r}")
        values = dict(data)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_file(cls, path: Path, **overrides: Any) -> BundleConfig:
        """A config from a YAML or JSON file; ``overrides`` that are not None win."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise BundleConfigError(f"bundle config {str(path)!r}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = " ".join(str(exc).split())
            raise BundleConfigError(
                f"bundle config {str(path)!r}: not YAML/JSON: {problem}"
            ) from None
        return cls.from_mapping(data, **overrides)

    def replace(self, **changes: Any) -> BundleConfig:
        return dataclasses.replace(self, **changes)


_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "str": str,
    "float": (int, float),
    "int": int,
}
