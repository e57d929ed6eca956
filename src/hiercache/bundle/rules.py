"""Prometheus recording rules and alerts.

Definitions (the dashboard uses the same): requests = hits (any tier) + misses; overall hit
ratio = hits / requests; L1 hit ratio = L1 hits / requests; L2 hit ratio = L2 hits / L2
lookups, where L2 lookups = L2 hits + misses (the requests that reached Redis); L2 error
ratio = L2 errors / L2 lookups.

Requests and L2 lookups are selected with one ``{__name__=~"P_hits_total|P_misses_total"}``
selector so that a cache with hits but no misses yet (or the reverse) still has a
denominator. That is safe under ``rate``: hit series always carry ``cache_level`` and miss
series never do, so no two series collapse into one label set once the name is dropped.
The ``cache_level=~"l2_redis|"`` matcher keeps L2 hits and misses (which have no level).
"""

from __future__ import annotations

from typing import Any

from hiercache.bundle.config import BundleConfig
from hiercache.bundle.promql import (
    DROP_REASON,
    ERROR_TYPE,
    L1,
    L2,
    LEVEL,
    duration_words,
    matchers,
    num,
    percent,
    seconds_words,
    series,
)

__all__ = ["alert_rules", "always_exported"]

Json = dict[str, Any]


def always_exported(config: BundleConfig, extra: str = "") -> str:
    """A selector for a series every cache exports from start, whatever its tiers.

    ``<prefix>_entries{cache_level="l1_memory"}`` (one per cache, with ``cache_name``, ``job``
    and ``instance``) keys what must see every cache: the dashboard's variables,
    HiercacheTargetDown and HiercacheMetricsAbsent. Not ``l2_up``: a cache configured
    without L2 exports none, so HiercacheL2Unavailable cannot fire for it.
    """
    entries = series(config.prefix, "entries")
    level = f'{LEVEL}="{L1}"'
    return f"{entries}{{{matchers(level, extra, config.selector)}}}"


class _Rules:
    def __init__(self, config: BundleConfig) -> None:
        self.c = config
        p, w = config.prefix, config.rate_window
        self.hits = series(p, "hits")
        self.requests = f"job_cache_name:{p}_requests:rate{w}"
        self.l2_lookups = f"job_cache_name:{p}_l2_lookups:rate{w}"
        self.hit_ratio = f"job_cache_name:{p}_hit_ratio:ratio_rate{w}"
        self.l1_hit_ratio = f"job_cache_name:{p}_l1_hit_ratio:ratio_rate{w}"
        self.l2_hit_ratio = f"job_cache_name:{p}_l2_hit_ratio:ratio_rate{w}"
        self.l2_error_ratio = f"job_cache_name:{p}_l2_error_ratio:ratio_rate{w}"
        latency = series(p, "latency", "bucket").removesuffix("_bucket")
        self.latency = f"job_cache_name_cache_level:{latency}:quantile_rate{w}"

    def sel(self, name: str, *extra: str) -> str:
        """``name{extra..., selector}``, or the bare name when there are no matchers."""
        found = matchers(*extra, self.c.selector)
        return f"{name}{{{found}}}" if found else name

    def requests_sel(self, *extra: str) -> str:
        names = f'__name__=~"{self.hits}|{series(self.c.prefix, "misses")}"'
        return f"{{{matchers(names, *extra, self.c.selector)}}}"

    def recording(self) -> list[Json]:
        by, w = "sum by (job, cache_name)", f"[{self.c.rate_window}]"

        def ratio(numerator: str, denominator: str) -> str:
            # ``or 0 * denominator``: a cache with traffic but no matching hits yet has ratio 0.
            return f"(\n  {numerator}\n  or\n  0 * {denominator}\n)\n/\n{denominator}"

        l1, l2 = f'{LEVEL}="{L1}"', f'{LEVEL}="{L2}"'
        l2_or_miss = f'{LEVEL}=~"{L2}|"'  # L2 hits and misses (misses carry no level)
        errors = series(self.c.prefix, "l2.errors")
        rules: list[Json] = [
            {"record": self.requests, "expr": f"{by} (rate({self.requests_sel()}{w}))"},
            {
                "record": self.l2_lookups,
                "expr": f"{by} (rate({self.requests_sel(l2_or_miss)}{w}))",
            },
            {
                "record": self.hit_ratio,
                "expr": ratio(f"{by} (rate({self.sel(self.hits)}{w}))", self.requests),
            },
            {
                "record": self.l1_hit_ratio,
                "expr": ratio(f"{by} (rate({self.sel(self.hits, l1)}{w}))", self.requests),
            },
            {
                "record": self.l2_hit_ratio,
                "expr": ratio(f"{by} (rate({self.sel(self.hits, l2)}{w}))", self.l2_lookups),
            },
            {
                "record": self.l2_error_ratio,
                "expr": ratio(f"{by} (rate({self.sel(errors)}{w}))", self.l2_lookups),
            },
        ]
        bucket = self.sel(series(self.c.prefix, "latency", "bucket"))
        for quantile in ("0.5", "0.95", "0.99"):
            rules.append(
                {
                    "record": self.latency,
                    "expr": (
                        f"histogram_quantile({quantile}, sum by (job, cache_name, cache_level, le) "
                        f"(rate({bucket}{w})))"
                    ),
                    "labels": {"quantile": quantile},
                }
            )
        return rules

    def alert(
        self, name: str, expr: str, for_: str, severity: str, summary: str, description: str
    ) -> Json:
        return {
            "alert": name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity},
            "annotations": {
                "summary": summary,
                "description": description,
                # GitHub's anchor for a runbook section titled exactly ``name``.
                "runbook_url": f"{self.c.runbook_url}#{name.lower()}",
            },
        }

    def alerting(self) -> list[Json]:
        c, p = self.c, self.c.prefix
        rate = num(c.min_request_rate)
        idle = (
            f"Silent while the cache serves fewer than {rate} request/s, so an idle "
            "cache never pages."
        )
        where = "{{ $labels.cache_name }} in {{ $labels.job }}"
        in_job = "cache {{ $labels.cache_name }} in job {{ $labels.job }}"
        busy = f"and on (job, cache_name) {self.requests} >= {rate}"
        value_pct = "{{ $value | humanizePercentage }}"
        mib = num(c.memory_limit_bytes / (1024 * 1024))
        entries = always_exported(c)
        return [
            self.alert(
                "HiercacheHitRatioLow",
                f"{self.hit_ratio} < {num(c.hit_ratio_warning)}\n{busy}",
                c.hit_ratio_for,
                "warning",
                f"Cache {where}: hit ratio {value_pct}",
                f"The overall hit ratio of {in_job} has been {value_pct} (below "
                f"{percent(c.hit_ratio_warning)}) for {duration_words(c.hit_ratio_for)}; the "
                f"target is above {percent(c.hit_ratio_target)}. {idle}",
            ),
            self.alert(
                "HiercacheHitRatioCritical",
                f"{self.hit_ratio} < {num(c.hit_ratio_critical)}\n{busy}",
                c.hit_ratio_for,
                "critical",
                f"Cache {where}: hit ratio {value_pct}",
                f"The overall hit ratio of {in_job} has been {value_pct} (below "
                f"{percent(c.hit_ratio_critical)}) for {duration_words(c.hit_ratio_for)}: most "
                f"requests go to the backend. {idle}",
            ),
            self.alert(
                "HiercacheL1HitRatioLow",
                f"{self.l1_hit_ratio} < {num(c.l1_hit_ratio_warning)}\n{busy}",
                c.l1_hit_ratio_for,
                "warning",
                f"Cache {where}: L1 hit ratio {value_pct}",
                f"The L1 (memory) hit ratio of {in_job} has been {value_pct} (below the "
                f"{percent(c.l1_hit_ratio_warning)} target) for "
                f"{duration_words(c.l1_hit_ratio_for)}. {idle}",
            ),
            self.alert(
                "HiercacheL2HitRatioLow",
                (
                    f"{self.l2_hit_ratio} < {num(c.l2_hit_ratio_warning)}\n"
                    f"and on (job, cache_name) {self.l2_lookups} >= {rate}"
                ),
                c.l2_hit_ratio_for,
                "warning",
                f"Cache {where}: L2 hit ratio {value_pct}",
                f"Of the requests that reached Redis, {in_job} answered {value_pct} (below the "
                f"{percent(c.l2_hit_ratio_warning)} target) for "
                f"{duration_words(c.l2_hit_ratio_for)}. Silent while fewer than {rate} lookup/s "
                "reach Redis.",
            ),
            self.latency_alert("L1", L1, "L1 (memory) lookups", c.l1_latency_p95_seconds),
            self.latency_alert("L2", L2, "L2 (Redis) calls", c.l2_latency_p95_seconds),
            self.alert(
                "HiercacheMemoryHigh",
                f"sum by (job, instance) ({self.sel(series(p, 'size'))}) > "
                f"{num(c.memory_limit_bytes)}",
                c.memory_for,
                "warning",
                "Instance {{ $labels.instance }} of {{ $labels.job }}: L1 cache holds "
                "{{ $value | humanize1024 }}B",
                "The L1 memory caches of instance {{ $labels.instance }} in job {{ $labels.job }} "
                f"have held {{{{ $value | humanize1024 }}}}B for {duration_words(c.memory_for)}, "
                f"above the {mib} MiB per-instance target.",
            ),
            self.alert(
                "HiercacheL2ErrorRatioHigh",
                f"{self.l2_error_ratio} > {num(c.l2_error_ratio_warning)}",
                c.l2_error_ratio_for,
                "warning",
                f"Cache {where}: {value_pct} of Redis lookups fail",
                f"Redis errors for {in_job} have been {value_pct} of L2 lookups (above "
                f"{percent(c.l2_error_ratio_warning)}) for "
                f"{duration_words(c.l2_error_ratio_for)}. Failed calls fall back to L1 and the "
                "backend.",
            ),
            self.alert(
                "HiercacheL2Unavailable",
                f"max by (job, instance, cache_name) ({self.sel(series(p, 'l2.up'))}) < 1",
                c.l2_unavailable_for,
                "critical",
                "Cache {{ $labels.cache_name }} on {{ $labels.instance }}: Redis unavailable",
                "Cache {{ $labels.cache_name }} on instance {{ $labels.instance }} of job "
                "{{ $labels.job }} has reported l2_up = {{ $value }} for "
                f"{duration_words(c.l2_unavailable_for)}: it runs L1-only, so every L1 miss "
                "goes to the backend.",
            ),
            *self.l2_health_alerts(),
            *self.coherence_alerts(),
            self.alert(
                "HiercacheTargetDown",
                (
                    f"{self.sel('up')} == 0\n"
                    "and on (job, instance) group by (job, instance) (\n"
                    f"  present_over_time({entries}[{c.target_down_lookback}])\n"
                    ")"
                ),
                c.target_down_for,
                "critical",
                "Scrape target {{ $labels.instance }} of {{ $labels.job }} is down",
                "Prometheus has failed to scrape {{ $labels.instance }} of job {{ $labels.job }} "
                f"(up = {{{{ $value }}}}) for {duration_words(c.target_down_for)}; the target "
                "exported hiercache metrics within the last "
                f"{_last(c.target_down_lookback)}.",
            ),
            self.alert(
                "HiercacheMetricsAbsent",
                # group(): absent() of a bare selector would copy its cache_level="l1_memory"
                # matcher onto the alert as a label.
                f"absent(group({entries}))",
                c.metrics_absent_for,
                "warning",
                f"No {p}_* metrics in Prometheus",
                f"absent(group({entries})) has been {{{{ $value }}}} for "
                f"{duration_words(c.metrics_absent_for)}: no instance exports hiercache metrics "
                "(every cache exports that series, with or without L2). Every instance is down "
                "or unscraped, telemetry is off, or CACHE_METRICS_PREFIX differs from the prefix "
                f"these rules were rendered for ({p}).",
            ),
        ]

    def l2_health_alerts(self) -> list[Json]:
        """The circuit breaker, write-behind drops and Redis refusing writes (OOM)."""
        c, p, w = self.c, self.c.prefix, self.c.rate_window
        on = "Cache {{ $labels.cache_name }} on instance {{ $labels.instance }} of job"
        in_job = "cache {{ $labels.cache_name }} in job {{ $labels.job }}"
        dropped = self.sel(series(p, "write_behind.dropped"))
        refused = self.sel(series(p, "l2.errors"), f'{ERROR_TYPE}="write_refused"')
        per_second = '{{ printf "%.2f" $value }}/s'
        return [
            self.alert(
                "HiercacheL2BreakerOpen",
                # 2 open, 1 half-open (a probe in flight), 0 closed: both non-zero states
                # skip L2, and an outage alternates between them.
                f"max by (job, instance, cache_name) ({self.sel(series(p, 'l2.breaker.state'))})"
                " > 0",
                c.l2_breaker_open_for,
                "warning",
                "Cache {{ $labels.cache_name }} on {{ $labels.instance }}: L2 circuit breaker open",
                f"{on} {{{{ $labels.job }}}} has kept its L2 circuit breaker open (state "
                "{{ $value }}: 2 open, 1 half-open) for "
                f"{duration_words(c.l2_breaker_open_for)}: Redis timed out, refused connections "
                "or lost its primary, so L2 is skipped and every L1 miss goes to the backend.",
            ),
            self.alert(
                "HiercacheWriteBehindDropping",
                f"sum by (job, cache_name, {DROP_REASON}) (rate({dropped}[{w}])) > 0",
                c.write_behind_dropped_for,
                "warning",
                f"Cache {{{{ $labels.cache_name }}}} in {{{{ $labels.job }}}}: write-behind "
                f"writes dropped ({{{{ $labels.{DROP_REASON} }}}})",
                f"Write-behind writes of {in_job} have been given up at {per_second} (reason "
                f"{{{{ $labels.{DROP_REASON} }}}}) for "
                f"{duration_words(c.write_behind_dropped_for)}: those writes (or deferred "
                "deletes) never reach Redis, so other instances miss them (or keep stale values).",
            ),
            self.alert(
                "HiercacheL2WritesRefused",
                f"sum by (job, cache_name) (rate({refused}[{w}])) > 0",
                c.l2_writes_refused_for,
                "warning",
                "Cache {{ $labels.cache_name }} in {{ $labels.job }}: Redis refuses writes",
                f"Redis has refused writes of {in_job} (OOM, NOREPLICAS or MISCONF) at "
                f"{per_second} for {duration_words(c.l2_writes_refused_for)}. "
                "Reads still work and l2_up stays 1, but new values stay in L1 only.",
            ),
        ]

    def coherence_alerts(self) -> list[Json]:
        """Stale values served instead of fresh ones, and the backplane link down."""
        c, p, w = self.c, self.c.prefix, self.c.rate_window
        stale = self.sel(series(p, "stale_served"))
        value_pct = "{{ $value | humanizePercentage }}"
        return [
            self.alert(
                "HiercacheStaleServingHigh",
                (
                    f"sum by (job, cache_name) (rate({stale}[{w}]))\n/ {self.requests}\n"
                    f"> {num(c.stale_served_ratio_warning)}\n"
                    f"and on (job, cache_name) {self.requests} >= {num(c.min_request_rate)}"
                ),
                c.stale_served_ratio_for,
                "warning",
                "Cache {{ $labels.cache_name }} in {{ $labels.job }}: "
                f"{value_pct} of requests served stale",
                "Cache {{ $labels.cache_name }} in job {{ $labels.job }} has answered "
                f"{value_pct} of requests (above {percent(c.stale_served_ratio_warning)}) with "
                f"expired values for {duration_words(c.stale_served_ratio_for)}: its loader "
                "fails or times out (stale-if-error) or is being refreshed "
                "(stale-while-revalidate). Callers get old values instead of errors. Silent "
                f"while the cache serves fewer than {num(c.min_request_rate)} request/s.",
            ),
            self.alert(
                "HiercacheBackplaneDown",
                f"min by (job, instance, cache_name) ({self.sel(series(p, 'backplane.up'))}) == 0",
                c.backplane_down_for,
                "warning",
                "Cache {{ $labels.cache_name }} on {{ $labels.instance }}: backplane down",
                "Cache {{ $labels.cache_name }} on instance {{ $labels.instance }} of job "
                "{{ $labels.job }} has had no backplane subscription (backplane_up = "
                "{{ $value }}) for "
                f"{duration_words(c.backplane_down_for)}: it misses other instances' "
                "invalidations, so its L1 may serve stale values (each for at most "
                "backplane_max_staleness_seconds).",
            ),
        ]

    def latency_alert(self, tier: str, level: str, what: str, target: float) -> Json:
        c = self.c
        return self.alert(
            f"Hiercache{tier}LatencyHigh",
            f'{self.latency}{{{LEVEL}="{level}", quantile="0.95"}} > {num(target)}',
            c.latency_for,
            "warning",
            f"Cache {{{{ $labels.cache_name }}}} in {{{{ $labels.job }}}}: {tier} p95 latency "
            "{{ $value | humanizeDuration }}",
            f"The p95 latency of {what} of cache {{{{ $labels.cache_name }}}} in job "
            f"{{{{ $labels.job }}}} has been {{{{ $value | humanizeDuration }}}} (above the "
            f"{seconds_words(target)} target) for {duration_words(c.latency_for)}.",
        )


def _last(duration: str) -> str:
    """``1h`` -> ``hour``, ``2h`` -> ``2 hours``."""
    words = duration_words(duration)
    return words.removeprefix("1 ") if words.startswith("1 ") else words


def alert_rules(config: BundleConfig) -> Json:
    """Prometheus rule groups: recording rules, then the alerts."""
    rules = _Rules(config)
    return {
        "groups": [
            {"name": f"{config.prefix}.recording", "rules": rules.recording()},
            {"name": f"{config.prefix}.alerts", "rules": rules.alerting()},
        ]
    }
