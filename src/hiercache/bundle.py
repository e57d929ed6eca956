"""The observability bundle: Grafana dashboards, their provisioning, and Prometheus rules.

This module is the single source of truth for everything under ``dashboards/`` and
``alerts/hiercache.rules.yml``: the committed files are :func:`write_bundle`'s output for the
default prefix (a test keeps them byte-identical), and ``hiercache bundle --prefix P --out DIR``
renders the same bundle for a service that sets ``CACHE_METRICS_PREFIX=P``.

Definitions used everywhere (dashboards, recording rules and alerts alike):

* requests = hits (any tier) + misses; each request is answered by exactly one of them;
* overall hit ratio = hits / requests;
* L1 hit ratio = L1 hits / requests;
* L2 hit ratio = L2 hits / L2 lookups, where L2 lookups = L2 hits + misses (the requests that
  reached Redis);
* L2 error ratio = L2 errors / L2 lookups;
* calls saved = hits + coalesced waits (backend calls that did not happen).

Requests and L2 lookups are selected with one ``{__name__=~"P_hits_total|P_misses_total"}``
selector so that a cache with hits but no misses yet (or the reverse) still has a denominator.
That selector is safe under ``rate``: hit series always carry ``cache_level`` and miss series
never do, so no two series collapse into the same label set once the metric name is dropped.
The ``cache_level=~"l2_redis|"`` matcher keeps L2 hits and misses (which have no level).

YAML is emitted by a tiny emitter of our own, so the library needs no YAML package at run time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "ALERTS_FILE",
    "DASHBOARD_FILE",
    "DATASOURCES_FILE",
    "DEFAULT_PREFIX",
    "MEMORY_LIMIT_BYTES",
    "MIN_REQUEST_RATE",
    "PROVIDERS_FILE",
    "RUNBOOK_PATH",
    "alert_rules",
    "dashboard",
    "dashboard_provider",
    "datasources",
    "render_bundle",
    "to_yaml",
    "write_bundle",
]

DEFAULT_PREFIX = "hiercache"

#: Paths of the bundle's files, relative to the output directory (the repository root).
DASHBOARD_FILE = "dashboards/hiercache-overview.json"
DATASOURCES_FILE = "dashboards/provisioning/datasources/hiercache.yml"
PROVIDERS_FILE = "dashboards/provisioning/dashboards/hiercache.yml"
ALERTS_FILE = "alerts/hiercache.rules.yml"

#: Where each alert's ``runbook_url`` points (an anchor per alert is appended).
RUNBOOK_PATH = "docs/runbooks.md"

#: Below this many requests per second a cache is "idle": ratio alerts stay silent.
MIN_REQUEST_RATE = 1
#: The seed's memory target: 500 MB per instance (expressed in MiB, as Grafana shows bytes).
MEMORY_LIMIT_BYTES = 500 * 1024 * 1024

#: Where Grafana finds the dashboards (the compose file mounts ``dashboards/`` there).
GRAFANA_DASHBOARDS_DIR = "/var/lib/grafana/dashboards/hiercache"

_PREFIX_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Json = dict[str, Any]


def _check_prefix(prefix: str) -> str:
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"invalid metric prefix {prefix!r}: use letters, digits and underscores, "
            "not starting with a digit"
        )
    return prefix


# ---------------------------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------------------------

_DS = {"type": "prometheus", "uid": "${datasource}"}
_FILTER = 'job=~"$job", instance=~"$instance", cache_name=~"$cache_name"'
_RI = "[$__rate_interval]"


def _always_exported(prefix: str, matchers: str = "") -> str:
    """A selector for a series every cache exports from start, whatever its tiers.

    ``{prefix}_entries{cache_level="l1_memory"}`` (one per cache, with ``cache_name``, ``job``
    and ``instance``) keys what must see every cache: the dashboard's variables,
    HiercacheTargetDown and HiercacheMetricsAbsent. Not ``l2_up``: a cache configured without
    L2 exports none, so HiercacheL2Unavailable cannot fire for it.
    """
    extra = f", {matchers}" if matchers else ""
    return f'{prefix}_entries{{cache_level="l1_memory"{extra}}}'


class _Queries:
    """PromQL for the dashboard: every selector filtered on the dashboard's variables."""

    def __init__(self, prefix: str) -> None:
        self.p = prefix

    def sel(self, metric: str, extra: str = "") -> str:
        matchers = _FILTER + (f", {extra}" if extra else "")
        return f"{self.p}_{metric}{{{matchers}}}"

    def rate(self, metric: str, extra: str = "") -> str:
        return f"rate({self.sel(metric, extra)}{_RI})"

    def requests(self, extra: str = "") -> str:
        names = f'__name__=~"{self.p}_hits_total|{self.p}_misses_total"'
        matchers = f"{names}, {_FILTER}" + (f", {extra}" if extra else "")
        return f"rate({{{matchers}}}{_RI})"

    def quantile(self, q: str) -> str:
        return (
            f"histogram_quantile({q}, sum by (cache_level, le) "
            f"({self.rate('latency_seconds_bucket')}))"
        )


def _target(ref: str, expr: str, legend: str) -> Json:
    return {
        "datasource": dict(_DS),
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "refId": ref,
    }


def _targets(*pairs: tuple[str, str]) -> list[Json]:
    return [_target(chr(ord("A") + i), expr, legend) for i, (expr, legend) in enumerate(pairs)]


def _thresholds(*steps: tuple[float | None, str]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


def _stat(title: str, description: str, unit: str, targets: list[Json], **defaults: Any) -> Json:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": dict(_DS),
        "fieldConfig": {
            "defaults": {"unit": unit, "color": {"mode": "thresholds"}, **defaults},
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
        "targets": targets,
    }


def _timeseries(
    title: str,
    description: str,
    unit: str,
    targets: list[Json],
    *,
    stack: bool = False,
    custom: Json | None = None,
    **defaults: Any,
) -> Json:
    custom_config: Json = {
        "drawStyle": "line",
        "fillOpacity": 20 if stack else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
    }
    custom_config.update(custom or {})
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": dict(_DS),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "color": {"mode": "palette-classic"},
                "custom": custom_config,
                **defaults,
            },
            "overrides": [],
        },
        "options": {
            "legend": {
                "calcs": [],
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
    }


def _query_variable(prefix: str, name: str, label: str, matchers: str) -> Json:
    # Every cache exports its L1 entries gauge from the start; l2_up is missing for caches
    # configured without L2 (CACHE_L2_BACKEND=none), which would then be unselectable.
    selector = _always_exported(prefix, matchers)
    query = f"label_values({selector}, {name})"
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": dict(_DS),
        "definition": query,
        "query": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".+",
        "sort": 1,
        "regex": "",
        "hide": 0,
    }


def _panels(prefix: str) -> list[Json]:
    q = _Queries(prefix)
    l1 = 'cache_level="l1_memory"'
    l2 = 'cache_level="l2_redis"'
    hits = f"sum({q.rate('hits_total')})"
    requests = f"sum({q.requests()})"
    l2_only = 'cache_level=~"l2_redis|"'  # L2 hits and misses (misses carry no level)
    l2_lookups = f"sum({q.requests(l2_only)})"
    mem_limit = f"{MEMORY_LIMIT_BYTES // (1024 * 1024)} MiB"

    def latency(q_label: str, q_value: str) -> Json:
        return _timeseries(
            f"Latency {q_label} by tier",
            f"{q_label} latency of cache operations per tier (l1_memory, l2_redis) next to the "
            "backend's (the loads the cache saves), from the latency histogram. Targets: L1 "
            "< 1 ms, L2 < 10 ms. L1 hits are sampled; quantiles are interpolated within "
            "histogram buckets.",
            "s",
            _targets((q.quantile(q_value), "{{cache_level}}")),
            custom={"scaleDistribution": {"type": "log", "log": 10}},
        )

    return [
        _row("Hit ratio"),
        _stat(
            "Overall hit ratio",
            "Share of requests answered by any cache tier: hits / (hits + misses). "
            "Seed thresholds: red below 60%, yellow below 80%, green from 80%. "
            "Target: above 60%.",
            "percentunit",
            _targets((f"{hits} / {requests}", "hit ratio")),
            min=0,
            max=1,
            decimals=1,
            thresholds=_thresholds((None, "red"), (0.6, "yellow"), (0.8, "green")),
        ),
        _stat(
            "L1 hit ratio",
            "Share of all requests answered by the in-process L1 memory tier: "
            "L1 hits / (hits + misses). Target: above 70%.",
            "percentunit",
            _targets((f"sum({q.rate('hits_total', l1)}) / {requests}", "L1 hit ratio")),
            min=0,
            max=1,
            decimals=1,
            thresholds=_thresholds((None, "red"), (0.7, "green")),
        ),
        _stat(
            "L2 hit ratio",
            "Share of the requests that reached Redis (L1 misses) that Redis answered: "
            "L2 hits / (L2 hits + misses). Target: above 50%.",
            "percentunit",
            _targets((f"sum({q.rate('hits_total', l2)}) / {l2_lookups}", "L2 hit ratio")),
            min=0,
            max=1,
            decimals=1,
            thresholds=_thresholds((None, "red"), (0.5, "green")),
        ),
        _row("Traffic"),
        _timeseries(
            "Requests per second by outcome",
            "Cache lookups per second, split by who answered: the L1 memory tier, the L2 "
            "Redis tier, or nobody (a miss, which goes to the backend).",
            "reqps",
            _targets(
                (f"sum({q.rate('hits_total', l1)})", "L1 hit"),
                (f"sum({q.rate('hits_total', l2)})", "L2 hit"),
                (f"sum({q.rate('misses_total')})", "miss"),
            ),
            stack=True,
        ),
        _timeseries(
            "Backend calls and calls saved",
            "Backend calls per second made by the cache (decorator, cached_operation, warming) "
            "by result, against the calls the cache saved: hits plus coalesced waits (callers "
            "that shared another caller's in-flight load).",
            "ops",
            _targets(
                (f"sum by (cache_result) ({q.rate('loads_total')})", "backend {{cache_result}}"),
                (
                    "sum(rate({"
                    f'__name__=~"{prefix}_hits_total|{prefix}_coalesced_total", {_FILTER}'
                    f"}}{_RI}))",
                    "calls saved",
                ),
            ),
        ),
        _row("Latency"),
        latency("p50", "0.5"),
        latency("p95", "0.95"),
        latency("p99", "0.99"),
        _row("Tiers"),
        _timeseries(
            "Promotions (L2 to L1)",
            "L2 hits copied into the L1 memory tier per second. Steady promotions mean L1 is "
            "too small or its TTL too short for the working set.",
            "ops",
            _targets((f"sum({q.rate('promotions_total')})", "promotions")),
        ),
        _timeseries(
            "Evictions by reason",
            "Entries removed per second, by tier and reason: size (capacity), expired (TTL), "
            "deleted (explicit delete) and invalidated (pattern or tag invalidation).",
            "ops",
            _targets(
                (
                    f"sum by (cache_level, cache_eviction_reason) ({q.rate('evictions_total')})",
                    "{{cache_level}} {{cache_eviction_reason}}",
                )
            ),
            stack=True,
        ),
        _row("Memory"),
        _timeseries(
            "L1 entries per instance",
            "Entries held in the L1 memory tier, per instance and cache.",
            "short",
            _targets(
                (
                    f"sum by (instance, cache_name) ({q.sel('entries')})",
                    "{{instance}} {{cache_name}}",
                )
            ),
        ),
        _timeseries(
            "L1 bytes per instance",
            f"Bytes held in the L1 memory tier per instance (all caches), against the "
            f"{mem_limit} per-instance target drawn as a red line.",
            "bytes",
            _targets((f"sum by (instance) ({q.sel('size_bytes')})", "{{instance}}")),
            custom={"thresholdsStyle": {"mode": "line"}},
            min=0,
            thresholds=_thresholds((None, "green"), (MEMORY_LIMIT_BYTES, "red")),
        ),
        _row("L2 Redis"),
        _timeseries(
            "L2 errors by type",
            "Failed Redis operations per second by error type (timeout, connection, corrupt, "
            "serialization, other). Each one degrades to L1-only behaviour for that call. "
            "Empty while Redis has had no errors.",
            "ops",
            _targets((f"sum by (error_type) ({q.rate('l2_errors_total')})", "{{error_type}}")),
            stack=True,
        ),
        _stat(
            "L2 connection state",
            "Whether each instance's cache is connected to Redis (1, connected) or running "
            "L1-only because Redis is unreachable or not configured (0, unavailable).",
            "none",
            _targets(
                (f"min by (instance, cache_name) ({q.sel('l2_up')})", "{{instance}} {{cache_name}}")
            ),
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"color": "red", "index": 0, "text": "unavailable"},
                        "1": {"color": "green", "index": 1, "text": "connected"},
                    },
                }
            ],
            thresholds=_thresholds((None, "red"), (1, "green")),
        ),
        _row("Write path and coalescing"),
        _timeseries(
            "Write-behind queue depth",
            "Writes waiting to be flushed to Redis by the write-behind queue, per instance and "
            "cache. A depth that keeps growing means Redis cannot keep up with writes.",
            "short",
            _targets(
                (
                    f"sum by (instance, cache_name) ({q.sel('write_behind_queue_depth')})",
                    "{{instance}} {{cache_name}}",
                )
            ),
        ),
        _timeseries(
            "Coalesced waits",
            "Callers per second that waited on another caller's in-flight load for the same key "
            "instead of calling the backend themselves (backend calls saved by coalescing). "
            "Empty until two callers have missed the same key at once.",
            "ops",
            _targets((f"sum({q.rate('coalesced_total')})", "coalesced waits")),
        ),
    ]


def _row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def _layout(panels: list[Json]) -> list[Json]:
    """Assign ids and grid positions: rows span the width, other panels share a line."""
    out: list[Json] = []
    groups: list[list[Json]] = []
    for panel in panels:
        if panel["type"] == "row":
            groups.append([panel])
        else:
            groups[-1].append(panel)
    y = 0
    next_id = 1
    for row, *members in groups:
        out.append({**row, "id": next_id, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        next_id += 1
        y += 1
        height = 5 if all(p["type"] == "stat" for p in members) else 8
        width = 24 // len(members)
        for i, panel in enumerate(members):
            out.append(
                {
                    **panel,
                    "id": next_id,
                    "gridPos": {"h": height, "w": width, "x": i * width, "y": y},
                }
            )
            next_id += 1
        y += height
    return out


def dashboard(prefix: str = DEFAULT_PREFIX) -> Json:
    """The "hiercache / Overview" dashboard for metrics named ``<prefix>_*``."""
    _check_prefix(prefix)
    suffix = "" if prefix == DEFAULT_PREFIX else f" ({prefix})"
    uid = prefix.replace("_", "-")[:31] + "-overview"
    return {
        "title": f"hiercache / Overview{suffix}",
        "uid": uid,
        "description": (
            "Two-tier cache (L1 memory, L2 Redis) health: hit ratios, traffic, latency per tier, "
            "memory, Redis errors and write-behind. Generated by hiercache.bundle; "
            "do not edit by hand."
        ),
        "tags": ["hiercache", "cache", "redis"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "timezone": "browser",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                {
                    "type": "datasource",
                    "name": "datasource",
                    "label": "Data source",
                    "query": "prometheus",
                    "regex": "",
                    "hide": 0,
                    "refresh": 1,
                },
                _query_variable(prefix, "job", "Job", ""),
                _query_variable(prefix, "instance", "Instance", 'job=~"$job"'),
                _query_variable(
                    prefix, "cache_name", "Cache name", 'job=~"$job", instance=~"$instance"'
                ),
            ]
        },
        "panels": _layout(_panels(prefix)),
    }


# ---------------------------------------------------------------------------------------------
# Grafana provisioning
# ---------------------------------------------------------------------------------------------


def datasources() -> Json:
    """Grafana datasource provisioning: the stack's Prometheus (default) and Tempo."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": "http://prometheus:9090",
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": "5s"},
            },
            {
                "name": "Tempo",
                "uid": "tempo",
                "type": "tempo",
                "access": "proxy",
                "url": "http://tempo:3200",
                "editable": False,
                "jsonData": {"serviceMap": {"datasourceUid": "prometheus"}},
            },
        ],
    }


def dashboard_provider() -> Json:
    """Grafana dashboard provisioning: the JSON files under ``dashboards/``, folder "hiercache"."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "hiercache",
                "folder": "hiercache",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": GRAFANA_DASHBOARDS_DIR, "foldersFromFilesStructure": False},
            }
        ],
    }


# ---------------------------------------------------------------------------------------------
# Prometheus rules
# ---------------------------------------------------------------------------------------------


def _anchor(alert: str) -> str:
    """GitHub's heading anchor for a runbook section titled exactly ``alert``."""
    return alert.lower()


class _Rules:
    def __init__(self, prefix: str, runbook: str) -> None:
        self.p = prefix
        self.runbook = runbook
        p = prefix
        self.requests = f"job_cache_name:{p}_requests:rate5m"
        self.l2_lookups = f"job_cache_name:{p}_l2_lookups:rate5m"
        self.hit_ratio = f"job_cache_name:{p}_hit_ratio:ratio_rate5m"
        self.l1_hit_ratio = f"job_cache_name:{p}_l1_hit_ratio:ratio_rate5m"
        self.l2_hit_ratio = f"job_cache_name:{p}_l2_hit_ratio:ratio_rate5m"
        self.l2_error_ratio = f"job_cache_name:{p}_l2_error_ratio:ratio_rate5m"
        self.latency = f"job_cache_name_cache_level:{p}_latency_seconds:quantile_rate5m"

    def recording(self) -> list[Json]:
        p = self.p
        by = "sum by (job, cache_name)"

        def ratio(numerator: str, denominator: str) -> str:
            # ``or 0 * denominator``: a cache with traffic but no matching hits yet has ratio 0.
            return f"(\n  {numerator}\n  or\n  0 * {denominator}\n)\n/\n{denominator}"

        rules: list[Json] = [
            {
                "record": self.requests,
                "expr": f'{by} (rate({{__name__=~"{p}_hits_total|{p}_misses_total"}}[5m]))',
            },
            {
                "record": self.l2_lookups,
                "expr": (
                    f'{by} (rate({{__name__=~"{p}_hits_total|{p}_misses_total", '
                    f'cache_level=~"l2_redis|"}}[5m]))'
                ),
            },
            {
                "record": self.hit_ratio,
                "expr": ratio(f"{by} (rate({p}_hits_total[5m]))", self.requests),
            },
            {
                "record": self.l1_hit_ratio,
                "expr": ratio(
                    f'{by} (rate({p}_hits_total{{cache_level="l1_memory"}}[5m]))', self.requests
                ),
            },
            {
                "record": self.l2_hit_ratio,
                "expr": ratio(
                    f'{by} (rate({p}_hits_total{{cache_level="l2_redis"}}[5m]))', self.l2_lookups
                ),
            },
            {
                "record": self.l2_error_ratio,
                "expr": ratio(f"{by} (rate({p}_l2_errors_total[5m]))", self.l2_lookups),
            },
        ]
        for quantile in ("0.5", "0.95", "0.99"):
            rules.append(
                {
                    "record": self.latency,
                    "expr": (
                        f"histogram_quantile({quantile}, sum by (job, cache_name, cache_level, le) "
                        f"(rate({p}_latency_seconds_bucket[5m])))"
                    ),
                    "labels": {"quantile": quantile},
                }
            )
        return rules

    def alert(
        self,
        name: str,
        expr: str,
        for_: str,
        severity: str,
        summary: str,
        description: str,
    ) -> Json:
        return {
            "alert": name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity},
            "annotations": {
                "summary": summary,
                "description": description,
                "runbook_url": f"{self.runbook}#{_anchor(name)}",
            },
        }

    def alerting(self) -> list[Json]:
        p = self.p
        idle = (
            f"Silent while the cache serves fewer than {MIN_REQUEST_RATE} request/s, so an idle "
            "cache never pages."
        )
        where = "{{ $labels.cache_name }} in {{ $labels.job }}"
        busy = f"and on (job, cache_name) {self.requests} >= {MIN_REQUEST_RATE}"
        mib = MEMORY_LIMIT_BYTES // (1024 * 1024)
        return [
            self.alert(
                "HiercacheHitRatioLow",
                f"{self.hit_ratio} < 0.5\n{busy}",
                "10m",
                "warning",
                f"Cache {where}: hit ratio {{{{ $value | humanizePercentage }}}}",
                "The overall hit ratio of cache {{ $labels.cache_name }} in job {{ $labels.job }} "
                "has been {{ $value | humanizePercentage }} (below 50%) for 10 minutes; the "
                f"target is above 60%. {idle}",
            ),
            self.alert(
                "HiercacheHitRatioCritical",
                f"{self.hit_ratio} < 0.3\n{busy}",
                "10m",
                "critical",
                f"Cache {where}: hit ratio {{{{ $value | humanizePercentage }}}}",
                "The overall hit ratio of cache {{ $labels.cache_name }} in job {{ $labels.job }} "
                "has been {{ $value | humanizePercentage }} (below 30%) for 10 minutes: most "
                f"requests go to the backend. {idle}",
            ),
            self.alert(
                "HiercacheL1HitRatioLow",
                f"{self.l1_hit_ratio} < 0.7\n{busy}",
                "15m",
                "warning",
                f"Cache {where}: L1 hit ratio {{{{ $value | humanizePercentage }}}}",
                "The L1 (memory) hit ratio of cache {{ $labels.cache_name }} in job "
                "{{ $labels.job }} has been {{ $value | humanizePercentage }} (below the 70% "
                f"target) for 15 minutes. {idle}",
            ),
            self.alert(
                "HiercacheL2HitRatioLow",
                (
                    f"{self.l2_hit_ratio} < 0.5\n"
                    f"and on (job, cache_name) {self.l2_lookups} >= {MIN_REQUEST_RATE}"
                ),
                "15m",
                "warning",
                f"Cache {where}: L2 hit ratio {{{{ $value | humanizePercentage }}}}",
                "Of the requests that reached Redis, cache {{ $labels.cache_name }} in job "
                "{{ $labels.job }} answered {{ $value | humanizePercentage }} (below the 50% "
                f"target) for 15 minutes. Silent while fewer than {MIN_REQUEST_RATE} lookup/s "
                "reach Redis.",
            ),
            self.alert(
                "HiercacheL1LatencyHigh",
                f'{self.latency}{{cache_level="l1_memory", quantile="0.95"}} > 0.001',
                "10m",
                "warning",
                f"Cache {where}: L1 p95 latency {{{{ $value | humanizeDuration }}}}",
                "The p95 latency of L1 (memory) lookups of cache {{ $labels.cache_name }} in job "
                "{{ $labels.job }} has been {{ $value | humanizeDuration }} (above the 1ms "
                "target) for 10 minutes.",
            ),
            self.alert(
                "HiercacheL2LatencyHigh",
                f'{self.latency}{{cache_level="l2_redis", quantile="0.95"}} > 0.01',
                "10m",
                "warning",
                f"Cache {where}: L2 p95 latency {{{{ $value | humanizeDuration }}}}",
                "The p95 latency of L2 (Redis) calls of cache {{ $labels.cache_name }} in job "
                "{{ $labels.job }} has been {{ $value | humanizeDuration }} (above the 10ms "
                "target) for 10 minutes.",
            ),
            self.alert(
                "HiercacheMemoryHigh",
                f"sum by (job, instance) ({p}_size_bytes) > {MEMORY_LIMIT_BYTES}",
                "10m",
                "warning",
                "Instance {{ $labels.instance }} of {{ $labels.job }}: L1 cache holds "
                "{{ $value | humanize1024 }}B",
                "The L1 memory caches of instance {{ $labels.instance }} in job {{ $labels.job }} "
                "have held {{ $value | humanize1024 }}B for 10 minutes, above the "
                f"{mib} MiB per-instance target.",
            ),
            self.alert(
                "HiercacheL2ErrorRatioHigh",
                f"{self.l2_error_ratio} > 0.05",
                "5m",
                "warning",
                f"Cache {where}: {{{{ $value | humanizePercentage }}}} of Redis lookups fail",
                "Redis errors for cache {{ $labels.cache_name }} in job {{ $labels.job }} have "
                "been {{ $value | humanizePercentage }} of L2 lookups (above 5%) for 5 minutes. "
                "Failed calls fall back to L1 and the backend.",
            ),
            self.alert(
                "HiercacheL2Unavailable",
                f"max by (job, instance, cache_name) ({p}_l2_up) < 1",
                "5m",
                "critical",
                "Cache {{ $labels.cache_name }} on {{ $labels.instance }}: Redis unavailable",
                "Cache {{ $labels.cache_name }} on instance {{ $labels.instance }} of job "
                "{{ $labels.job }} has reported l2_up = {{ $value }} for 5 minutes: it runs "
                "L1-only, so every L1 miss goes to the backend.",
            ),
            self.alert(
                "HiercacheTargetDown",
                (
                    "up == 0\n"
                    "and on (job, instance) group by (job, instance) (\n"
                    f"  present_over_time({_always_exported(p)}[1h])\n"
                    ")"
                ),
                "5m",
                "critical",
                "Scrape target {{ $labels.instance }} of {{ $labels.job }} is down",
                "Prometheus has failed to scrape {{ $labels.instance }} of job {{ $labels.job }} "
                "(up = {{ $value }}) for 5 minutes; the target exported hiercache metrics within "
                "the last hour.",
            ),
            self.alert(
                "HiercacheMetricsAbsent",
                # group(): absent() of a bare selector would copy its cache_level="l1_memory"
                # matcher onto the alert as a label.
                f"absent(group({_always_exported(p)}))",
                "10m",
                "warning",
                f"No {p}_* metrics in Prometheus",
                f"absent(group({_always_exported(p)})) has been {{{{ $value }}}} for 10 minutes: "
                "no instance exports hiercache metrics (every cache exports that series, with or "
                "without L2). Every instance is down or unscraped, "
                "telemetry is off, or CACHE_METRICS_PREFIX differs from the prefix these rules "
                f"were rendered for ({p}).",
            ),
        ]


def alert_rules(prefix: str = DEFAULT_PREFIX, runbook: str = RUNBOOK_PATH) -> Json:
    """Prometheus rule groups: recording rules, then the alerts on the seed's targets."""
    rules = _Rules(_check_prefix(prefix), runbook)
    return {
        "groups": [
            {"name": f"{prefix}.recording", "rules": rules.recording()},
            {"name": f"{prefix}.alerts", "rules": rules.alerting()},
        ]
    }


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_VALUE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/-]*[A-Za-z0-9_]$|^[A-Za-z]$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:  # YAML 1.1 readers need a dot: 1e-06 -> 1.0e-06
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str):
        if _PLAIN_VALUE.fullmatch(value) and value.lower() not in _YAML_WORDS:
            return value
        if value.isascii() and value.isprintable():
            return "'" + value.replace("'", "''") + "'"
        return json.dumps(value).replace("\x7f", "\\u007f")
    raise TypeError(f"cannot emit {type(value).__name__} as YAML")


def _block_ok(text: str) -> bool:
    """Whether ``text`` survives a ``|-`` literal block exactly."""
    lines = text.split("\n")
    return (
        len(lines) > 1
        and text.isascii()
        and all(line.isprintable() and line == line.rstrip() for line in lines)
        and bool(lines[0])
        and not lines[0].startswith(" ")
        and bool(lines[-1])
    )


def _emit(value: object, indent: int) -> Iterator[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            yield f"{pad}{{}}"
        for key, item in value.items():
            plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS
            k = key if plain else _scalar(key)
            if isinstance(item, dict | list) and item:
                yield f"{pad}{k}:"
                yield from _emit(item, indent + 2)
            elif isinstance(item, str) and "\n" in item and _block_ok(item):
                yield f"{pad}{k}: |-"
                for line in item.split("\n"):
                    yield f"{pad}  {line}" if line else ""
            else:
                yield f"{pad}{k}: {_flow(item)}"
    elif isinstance(value, list):
        if not value:
            yield f"{pad}[]"
        for item in value:
            lines = list(_emit(item, indent + 2))
            if isinstance(item, dict | list) and item:
                first = lines[0][indent + 2 :]
                yield f"{pad}- {first}"
                yield from lines[1:]
            else:
                yield f"{pad}- {_flow(item)}"
    else:
        yield f"{pad}{_scalar(value)}"


def _flow(value: object) -> str:
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, list) and not value:
        return "[]"
    return _scalar(value)


def to_yaml(data: Json, header: str = "") -> str:
    """Block-style YAML for JSON-like data (dicts, lists, strings, numbers, booleans, None).

    Strings are plain when unambiguous, else single-quoted; multi-line strings become ``|-``
    literal blocks when that round-trips exactly; anything else is double-quoted (JSON string
    syntax is valid YAML).
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines.extend(_emit(data, 0))
    return "\n".join(lines) + "\n"


_HEADER = (
    "Generated by hiercache.bundle (`hiercache bundle --prefix {prefix} --out DIR`).\n"
    "Do not edit: change src/hiercache/bundle.py and regenerate."
)


def render_bundle(prefix: str = DEFAULT_PREFIX, runbook: str = RUNBOOK_PATH) -> dict[str, str]:
    """The bundle's files for ``prefix``, as a mapping of relative path to text."""
    _check_prefix(prefix)
    header = _HEADER.format(prefix=prefix)
    return {
        DASHBOARD_FILE: json.dumps(dashboard(prefix), indent=2) + "\n",
        DATASOURCES_FILE: to_yaml(datasources(), header),
        PROVIDERS_FILE: to_yaml(dashboard_provider(), header),
        ALERTS_FILE: to_yaml(alert_rules(prefix, runbook), header),
    }


def write_bundle(
    out_dir: Path, prefix: str = DEFAULT_PREFIX, *, runbook: str = RUNBOOK_PATH
) -> list[Path]:
    """Write the dashboards, provisioning files and rule files for ``prefix`` under ``out_dir``.

    ``runbook`` is the base of every alert's ``runbook_url`` (an anchor per alert is appended);
    point it at where your copy of ``docs/runbooks.md`` is published.
    Returns the written paths.
    """
    written: list[Path] = []
    for relative, text in render_bundle(prefix, runbook).items():
        path = Path(out_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
