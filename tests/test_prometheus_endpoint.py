"""The real Prometheus endpoint of ``hiercache.telemetry.setup()``, scraped over HTTP.

OpenTelemetry's global providers can be set once per process, so each case runs in its
own subprocess: it calls ``setup()`` on a free port, runs a scripted scenario against
the real Redis, prints ``ready <port> <facts>`` and waits; the test scrapes, then lets
it exit.
"""

from __future__ import annotations

import json
import os
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
def scenario(redis_url: str, prefix: str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    env = dict(os.environ, TEST_REDIS_URL=redis_url)
    env.pop("CACHE_METRICS_PREFIX", None)
    if prefix is not None:
        env["CACHE_METRICS_PREFIX"] = prefix
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        env.pop(var, None)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCENARIO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the scenario is done, or it died
        if not line.startswith("ready "):
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"scenario did not start: {line!r}\n{err}")
        _, port, facts = line.split(" ", 2)
        yield int(port), json.loads(facts)
    finally:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(timeout=30)


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
