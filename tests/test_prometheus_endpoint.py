"""The real Prometheus endpoint of ``hiercache.telemetry.setup()``, scraped over HTTP.

OpenTelemetry's global providers can be set once per process, so each case runs in its
own subprocess: it calls ``setup()`` on a free port, runs a scripted scenario against
the real Redis, prints ``ready <port> <facts>`` and waits; the test scrapes, then lets
it exit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hiercache.telemetry import LATENCY_BUCKETS

SCENARIO = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from hiercache import CacheConfig, HierarchicalCacheManager
    from hiercache.telemetry import setup

    handle = setup(service_name="prom-test", prometheus_host="127.0.0.1", prometheus_port=0)
    assert setup() is handle  # idempotent
    config = CacheConfig(
        name="prom", redis_url=os.environ["TEST_REDIS_URL"], write_behind=False,
        warming_enabled=False, l1_latency_sample_every=1,
    )

    async def main():
        m = HierarchicalCacheManager(config)
        async with m:
            await m.set("a", 1)
            await m.set("b", 2)
            for _ in range(3):
                await m.get("a")        # 3 L1 hits
            await m.get("nope")         # a miss
            m.l1.delete("b")            # an L1 eviction (deleted)
            await m.get("b")            # an L2 hit and a promotion
            await m.get_or_load("L", lambda: "loaded")   # a miss and a load
            facts = {"size": m.l1.size_bytes, "entries": len(m.l1)}
            print("ready", handle.metrics_address[1], json.dumps(facts), flush=True)
            sys.stdin.readline()        # scraped: done

    asyncio.run(main())
    """
)


@contextmanager
def ready_line(code: str, env: dict[str, str]) -> Iterator[str]:
    """Run ``code`` in a subprocess until it prints ``ready <rest>``; yield the rest,
    then let it exit (it waits on stdin)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the subprocess is ready, or it died
        if not line.startswith("ready "):
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"subprocess did not start: {line!r}\n{err}")
        yield line.removeprefix("ready ").rstrip("\n")
    finally:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(timeout=30)


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without the variables setup() reads, plus ``overrides``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CACHE_METRICS_PREFIX"))
    }
    return env | overrides


@contextmanager
def scenario(redis_url: str, prefix: str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    env = clean_env(TEST_REDIS_URL=redis_url)
    if prefix is not None:
        env["CACHE_METRICS_PREFIX"] = prefix
    with ready_line(SCENARIO, env) as rest:
        port, facts = rest.split(" ", 1)
        yield int(port), json.loads(facts)


def scrape(port: int) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = frozenset(
                (k, v) for k, v in s.labels.items() if not k.startswith("otel_scope_")
            )
            samples[s.name, labels] = s.value
    return text, samples


def lbl(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset({"cache_name": "prom", **labels}.items())


@pytest.mark.parametrize("prefix", [None, "lukhas_cache"])
def test_endpoint_names_and_values(redis_url: str, prefix: str | None) -> None:
    p = prefix or "hiercache"
    with scenario(redis_url, prefix) as (port, facts):
        text, got = scrape(port)

    expected = {
        (f"{p}_hits_total", lbl(cache_level="l1_memory", cache_operation="get")): 3,
        (f"{p}_hits_total", lbl(cache_level="l2_redis", cache_operation="get")): 1,
        (f"{p}_hits_total", lbl(cache_level="l1_memory", cache_operation="get_many")): 0,
        (f"{p}_misses_total", lbl(cache_operation="get")): 2,
        (f"{p}_promotions_total", lbl()): 1,
        (f"{p}_evictions_total", lbl(cache_level="l1_memory", cache_eviction_reason="deleted")): 1,
        (f"{p}_evictions_total", lbl(cache_level="l1_memory", cache_eviction_reason="size")): 0,
        (f"{p}_loads_total", lbl(cache_result="success")): 1,
        (f"{p}_loads_total", lbl(cache_result="error")): 0,
        (f"{p}_coalesced_total", lbl()): 0,
        (f"{p}_l2_errors_total", lbl(error_type="timeout")): 0,
        (f"{p}_entries", lbl(cache_level="l1_memory")): facts["entries"],
        (f"{p}_size_bytes", lbl(cache_level="l1_memory")): facts["size"],
        (f"{p}_l2_up", lbl()): 1,
        (f"{p}_write_behind_queue_depth", lbl()): 0,
        (f"{p}_latency_seconds_count", lbl(cache_level="l1_memory", cache_operation="get")): 3,
        (f"{p}_latency_seconds_count", lbl(cache_level="backend", cache_operation="load")): 1,
        (f"{p}_latency_seconds_count", lbl(cache_level="l2_redis", cache_operation="get")): 3,
    }
    assert {k: got.get(k) for k in expected} == expected
    assert facts["entries"] == 3
    assert facts["size"] > 0

    # The names, exactly; nothing under the other prefix.
    for name in ("hits_total", "misses_total", "latency_seconds", "size_bytes", "entries"):
        assert f"# TYPE {p}_{name} " in text
    other = "hiercache" if prefix else "lukhas_cache"
    assert not any(name.startswith(other + "_") for name, _ in got)

    buckets = sorted(
        float(dict(labels)["le"])
        for (name, labels), _ in got.items()
        if name == f"{p}_latency_seconds_bucket"
        and ("cache_level", "l1_memory") in labels
        and ("cache_operation", "get") in labels
    )
    assert buckets == [*LATENCY_BUCKETS, float("inf")]
    assert (
        got[
            f"{p}_latency_seconds_bucket",
            lbl(cache_level="l1_memory", cache_operation="get", le="+Inf"),
        ]
        == 3
    )

    # The resource: service.name from setup(); exemplars off (none in the text format).
    target = [labels for name, labels in got if name == "target_info"]
    assert len(target) == 1
    assert ("service_name", "prom-test") in target[0]
    assert "trace_id" not in text


# setup() without Redis: what it chose from its arguments and the OTEL_* environment.
# argv[1]: setup()'s keyword arguments (JSON); argv[2]: which providers the "application"
# installs before calling it (none, meter, tracer, both).
PROBE = textwrap.dedent(
    """
    import json, sys
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import REGISTRY, generate_latest
    from hiercache.telemetry import setup

    kwargs, preset = json.loads(sys.argv[1]), sys.argv[2]
    app_meter = app_tracer = None
    if preset in ("meter", "both"):
        app_meter = MeterProvider(metric_readers=[InMemoryMetricReader()])
        metrics.set_meter_provider(app_meter)
    if preset in ("tracer", "both"):
        app_tracer = TracerProvider()
        trace.set_tracer_provider(app_tracer)

    handle = setup(**kwargs)
    metrics.get_meter("probe").create_counter("probe").add(1)  # something to export

    def exporter_endpoints(provider):
        processors = getattr(provider, "_active_span_processor", None)
        found = []
        for p in getattr(processors, "_span_processors", ()):
            exporter = getattr(getattr(p, "_batch_processor", p), "_exporter", None)
            found.append(getattr(exporter, "_endpoint", repr(exporter)))
        return found

    sdk_config = getattr(handle.meter_provider, "_sdk_config", None)
    facts = {
        "idempotent": setup() is handle and setup(service_name="other") is handle,
        "address": handle.metrics_address,
        "server": handle.server is not None,
        "installed": [handle.installed_metrics, handle.installed_traces],
        "global": [
            handle.meter_provider is metrics.get_meter_provider(),
            handle.tracer_provider is trace.get_tracer_provider(),
        ],
        "app": [handle.meter_provider is app_meter, handle.tracer_provider is app_tracer],
        "exemplar_filter": type(getattr(sdk_config, "exemplar_filter", None)).__name__,
        "otlp": exporter_endpoints(handle.tracer_provider),
        "resource": dict(getattr(handle.tracer_provider, "resource").attributes)
        if preset not in ("tracer", "both") else None,
        "registry_has_target_info": b"target_info" in generate_latest(REGISTRY),
    }
    print("ready", json.dumps(facts), flush=True)
    sys.stdin.readline()
    handle.shutdown()
    """
)


@contextmanager
def probe(env: dict[str, str], preset: str = "none", **kwargs: Any) -> Iterator[dict[str, Any]]:
    code = PROBE.replace("sys.argv[1]", repr(json.dumps(kwargs))).replace(
        "sys.argv[2]", repr(preset)
    )
    with ready_line(code, env) as rest:
        yield json.loads(rest)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def target_info(port: int) -> dict[str, str]:
    _, got = scrape(port)
    found = [dict(labels) for name, labels in got if name == "target_info"]
    assert len(found) == 1
    return found[0]


NO_ENDPOINT: dict[str, Any] = {"prometheus": False}


def test_port_and_host_from_the_environment_and_idempotence() -> None:
    port = free_port()
    env = clean_env(
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1", OTEL_EXPORTER_PROMETHEUS_PORT=str(port)
    )
    with probe(env) as facts:
        assert facts["address"] == ["127.0.0.1", port]
        assert facts["idempotent"] is True
        assert facts["installed"] == [True, True]
        assert facts["global"] == [True, True]
        assert target_info(port)["service_name"] == "hiercache"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"service_name": "hiercache"}),
        ({"OTEL_SERVICE_NAME": "env-svc"}, {"service_name": "env-svc"}),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=attr-svc,team=cache"},
            {"service_name": "attr-svc", "team": "cache"},
        ),
        (
            {"OTEL_SERVICE_NAME": "env-svc", "OTEL_RESOURCE_ATTRIBUTES": "team=cache,tier=2"},
            {"service_name": "env-svc", "team": "cache", "tier": "2"},
        ),
        (  # OTEL_SERVICE_NAME takes precedence over a service.name in the attributes
            {"OTEL_SERVICE_NAME": "env-svc", "OTEL_RESOURCE_ATTRIBUTES": "service.name=attr"},
            {"service_name": "env-svc"},
        ),
    ],
)
def test_service_name_and_resource_attributes_from_the_environment(
    env: dict[str, str], expected: dict[str, str]
) -> None:
    with probe(clean_env(**env), prometheus_host="127.0.0.1", prometheus_port=0) as facts:
        got = target_info(facts["address"][1])
    assert {k: got.get(k) for k in expected} == expected


def test_the_service_name_argument_wins_over_the_environment() -> None:
    env = clean_env(OTEL_SERVICE_NAME="env-svc", OTEL_RESOURCE_ATTRIBUTES="team=cache")
    with probe(env, service_name="arg-svc", **NO_ENDPOINT) as facts:
        assert facts["resource"]["service.name"] == "arg-svc"
        assert facts["resource"]["team"] == "cache"  # still merged


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "AlwaysOffExemplarFilter"),  # off by default (the SDK's is trace_based)
        ("always_off", "AlwaysOffExemplarFilter"),
        ("always_on", "AlwaysOnExemplarFilter"),
        ("trace_based", "TraceBasedExemplarFilter"),
        (" Always_On ", "AlwaysOnExemplarFilter"),
    ],
)
def test_exemplar_filter_off_unless_the_environment_asks(value: str | None, expected: str) -> None:
    env = clean_env() if value is None else clean_env(OTEL_METRICS_EXEMPLAR_FILTER=value)
    with probe(env, **NO_ENDPOINT) as facts:
        assert facts["exemplar_filter"] == expected


@pytest.mark.parametrize(
    ("env", "kwargs", "expected"),
    [
        ({}, {}, []),  # no endpoint configured: no exporter
        (  # the signal-specific variable is the full URL, used as is
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom/traces"},
            {},
            ["http://c:4318/custom/traces"],
        ),
        (  # it wins over the generic one
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom/traces",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://g:4318",
            },
            {},
            ["http://c:4318/custom/traces"],
        ),
        (  # the generic variable is a base URL: /v1/traces is appended
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://g:4318"},
            {},
            ["http://g:4318/v1/traces"],
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://g:4318/base/"},
            {},
            ["http://g:4318/base/v1/traces"],
        ),
        (  # the argument is a full URL too, used as is, and wins over both variables
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom/traces",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://g:4318",
            },
            {"otlp_endpoint": "http://a:4318/mine"},
            ["http://a:4318/mine"],
        ),
    ],
)
def test_the_otlp_traces_url(
    env: dict[str, str], kwargs: dict[str, str], expected: list[str]
) -> None:
    with probe(clean_env(**env), **NO_ENDPOINT, **kwargs) as facts:
        assert facts["otlp"] == expected


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_after_the_application_set_its_providers_nothing_is_started() -> None:
    port = free_port()
    env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://g:4318")
    with probe(env, "both", prometheus_host="127.0.0.1", prometheus_port=port) as facts:
        assert refused(port)  # no endpoint serving some other, empty MeterProvider
        assert facts["address"] is None
        assert facts["server"] is False
        assert facts["registry_has_target_info"] is False  # no PrometheusMetricReader made
        assert facts["installed"] == [False, False]
        assert facts["app"] == [True, True]  # the handle points at the application's
        assert facts["global"] == [True, True]
        assert facts["otlp"] == []  # nothing added to the application's TracerProvider
        assert facts["idempotent"] is True


def test_each_signal_is_handled_on_its_own() -> None:
    with probe(clean_env(), "tracer", prometheus_host="127.0.0.1", prometheus_port=0) as facts:
        assert facts["installed"] == [True, False]
        assert facts["app"] == [False, True]
        assert facts["global"] == [True, True]
        assert target_info(facts["address"][1])["service_name"] == "hiercache"
    with probe(clean_env(), "meter", prometheus_host="127.0.0.1", prometheus_port=0) as facts:
        assert facts["installed"] == [False, True]
        assert facts["app"] == [True, False]
        assert facts["address"] is None
        assert facts["resource"]["service.name"] == "hiercache"
