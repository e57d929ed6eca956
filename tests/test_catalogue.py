"""The metric catalogue: its Prometheus names are the ones the real exporter exposes."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from hiercache.telemetry import catalogue
from hiercache.telemetry.catalogue import METRICS, InstrumentKind, Metric, metric

SCRIPT = textwrap.dedent(
    """
    import sys
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import REGISTRY, generate_latest

    from hiercache.telemetry.catalogue import METRICS, InstrumentKind

    prefix = sys.argv[1]
    meter = MeterProvider(metric_readers=[PrometheusMetricReader()]).get_meter("t")
    for m in METRICS:
        attrs = {a: "x" for a in m.attributes}
        name = m.instrument_name(prefix)
        if m.kind is InstrumentKind.HISTOGRAM:
            meter.create_histogram(name, m.unit, m.description).record(0.5, attrs)
        elif m.kind is InstrumentKind.OBSERVABLE_COUNTER:
            meter.create_observable_counter(
                name, [lambda o, a=attrs: [Observation(1, a)]], m.unit, m.description
            )
        else:
            meter.create_observable_gauge(
                name, [lambda o, a=attrs: [Observation(1, a)]], m.unit, m.description
            )
    sys.stdout.write(generate_latest(REGISTRY).decode())
    """
)


@pytest.mark.parametrize("prefix", ["hiercache", "lukhas_cache"])
def test_prometheus_names_are_what_the_exporter_exposes(prefix: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    exposed: dict[str, set[str]] = {}
    for line in done.stdout.splitlines():
        found = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
        if found and found.group(1).startswith(f"{prefix}_"):
            labels = set(re.findall(r'(\w+)="', found.group(2) or ""))
            exposed.setdefault(found.group(1), set()).update(labels)
    expected: dict[str, set[str]] = {}
    for m in METRICS:
        labels = set(m.prometheus_labels())
        if m.kind is InstrumentKind.HISTOGRAM:
            expected[m.prometheus_name(prefix, "bucket")] = labels | {"le"}
            expected[m.prometheus_name(prefix, "sum")] = labels
            expected[m.prometheus_name(prefix, "count")] = labels
        else:
            expected[m.prometheus_name(prefix)] = labels
    scope = {"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}
    assert {k: v - scope for k, v in exposed.items()} == expected


def test_the_documented_names() -> None:
    assert metric("hits").prometheus_name("hiercache") == "hiercache_hits_total"
    assert metric("l2.errors").prometheus_name("hiercache") == "hiercache_l2_errors_total"
    latency = metric("latency")
    assert latency.prometheus_name("hiercache", "bucket") == "hiercache_latency_seconds_bucket"
    assert metric("size").prometheus_name("hiercache") == "hiercache_size_bytes"
    assert metric("entries").prometheus_name("p") == "p_entries"
    assert metric("l2.up").prometheus_name("p") == "p_l2_up"
    assert metric("write_behind.queue_depth").prometheus_name("p") == "p_write_behind_queue_depth"
    assert catalogue.prometheus_label("cache.eviction.reason") == "cache_eviction_reason"
    assert latency.instrument_name("hiercache") == "hiercache.latency"


def test_bad_entries_and_lookups_are_refused() -> None:
    with pytest.raises(ValueError, match="lower-case words"):
        Metric("Bad.Name", InstrumentKind.OBSERVABLE_GAUGE, "", "d", ("cache.name",))
    with pytest.raises(ValueError, match="unknown attributes"):
        Metric("x", InstrumentKind.OBSERVABLE_GAUGE, "", "d", ("cache.key",))
    with pytest.raises(ValueError, match="stats_kind"):
        Metric("x", InstrumentKind.OBSERVABLE_COUNTER, "", "d", ("cache.name",))
    with pytest.raises(ValueError, match="bucket, sum or count"):
        metric("latency").prometheus_name("p")
    with pytest.raises(KeyError, match="no metric 'nope'"):
        metric("nope")


def test_every_stats_counter_kind_is_exported() -> None:
    from hiercache import stats

    kinds = {kind for kind, _ in stats.SLOTS}
    assert kinds == {m.stats_kind for m in METRICS if m.stats_kind}
    attrs = {key for _, slot_attrs in stats.SLOTS for key, _ in slot_attrs}
    assert attrs <= set(catalogue.STATS_ATTRIBUTES)


def test_a_new_gauge_is_one_catalogue_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a metric to the catalogue is all it takes for the instrument to exist and
    export what the cache's gauges report under that name."""
    from hiercache import CacheConfig
    from hiercache.stats import CacheStats
    from hiercache.telemetry import CacheTelemetry
    from otel_providers import install, unique_name

    otel = install()
    extra = Metric(
        "breaker.state", InstrumentKind.OBSERVABLE_GAUGE, "", "Breaker state", ("cache.name",)
    )
    monkeypatch.setattr(catalogue, "METRICS", (*METRICS, extra))
    name = unique_name("catalogue")
    prefix = name.replace("-", "_")
    config = CacheConfig(name=name, metrics_prefix=prefix, l2_backend="none")
    telemetry = CacheTelemetry(config, CacheStats(), lambda: {"breaker.state": 2.0})
    assert otel.values(name, f"{prefix}.breaker.state") == {frozenset(): 2.0}
    assert telemetry.enabled
