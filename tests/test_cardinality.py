"""Cardinality and secrecy: keys never become series; secrets never leave the process."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import trace

from hiercache import CacheConfig, HierarchicalCacheManager, TraceKeys
from otel_providers import Providers, install, unique_name
from servers import run_redis

Series = set[tuple[str, frozenset[tuple[str, Any]]]]


def series(otel: Providers, name: str) -> Series:
    return {(metric, frozenset(attrs.items())) for metric, attrs, _ in otel.points(name)}


async def exercise(m: HierarchicalCacheManager, keys: list[str], absent: int) -> None:
    """Every operation, for every key: the attribute sets it can produce, and no others."""
    for start in range(0, len(keys), 500):
        await m.set_many({k: 1 for k in keys[start : start + 500]})
    for key in keys:
        assert await m.get(key) == 1
    for key in keys[:absent]:
        assert await m.get("absent:" + key) is None
    for key in keys[:absent]:
        m.l1.delete(key)  # force L2 hits and promotions
    for start in range(0, absent, 100):
        await m.get_many(keys[start : start + 100])
    for key in keys[:absent]:
        assert await m.get_or_load("load:" + key, lambda: 2) == 2
    with trace.get_tracer("tests").start_as_current_span("request"):
        await m.get(keys[0])
        await m.delete(keys[0])
    await m.invalidate_pattern(keys[1])


async def test_ten_thousand_distinct_keys_add_no_series(redis_url: str) -> None:
    otel = install()
    name = unique_name("cardinality")
    config = CacheConfig(
        name=name,
        redis_url=redis_url,
        write_behind=False,
        warming_enabled=False,
        l1_max_size=500,  # size evictions too
        l1_latency_sample_every=1,
        trace_keys=TraceKeys.NONE,
    )
    async with HierarchicalCacheManager(config) as m:
        await exercise(m, [f"warm:{i}" for i in range(3)], absent=3)
        before = series(otel, name)
        await exercise(m, [f"user:{i}" for i in range(10_000)], absent=1000)
        after = series(otel, name)
        stats = await m.get_statistics()

    assert stats["hits"] > 10_000  # the keys really went through the cache
    assert stats["l1_memory"]["evictions"]["size"] > 0
    assert len(before) >= 35  # every instrument exported its attribute sets
    assert after == before
    values = {str(v) for _, attrs in after for _, v in attrs}
    assert not any("user:" in v or "warm:" in v for v in values)
    spans = otel.spans(name)
    assert spans
    for span in spans:
        assert "user:" not in repr(dict(span.attributes or {}))


PASSWORD = "pw-Zq8xW3s-never-leak"


def secret_fields() -> list[str]:
    """Every SecretStr setting (today redis_url and redis_password; any signing key too)."""
    return [n for n, f in CacheConfig.model_fields.items() if "SecretStr" in str(f.annotation)]


def everything_exported(otel: Providers, names: list[str]) -> str:
    parts: list[str] = []
    data = otel.reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        parts.append(repr(dict(rm.resource.attributes)))
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                parts.append(metric.name)
                parts.extend(repr(dict(p.attributes or {})) for p in metric.data.data_points)
    for span in otel.spans():
        parts.append(span.to_json())
    return "\n".join(parts)


async def test_no_password_in_spans_metrics_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    otel = install()
    otel.exporter.clear()
    caplog.set_level(logging.DEBUG)
    assert {"redis_url", "redis_password"} <= set(secret_fields())
    names: list[str] = []
    with run_redis(password=PASSWORD) as server:
        configs = [
            {"redis_url": server.url},
            {"redis_host": server.host, "redis_port": server.port, "redis_password": PASSWORD},
            # A wrong password: L2 fails, and is logged, without the secret.
            {"redis_url": server.url.replace(PASSWORD, PASSWORD + "-wrong")},
        ]
        for extra in configs:
            name = unique_name("secret")
            names.append(name)
            for field in secret_fields():
                if field not in ("redis_url", "redis_password"):
                    extra.setdefault(field, PASSWORD)
            config = CacheConfig(
                name=name,
                write_behind=False,
                trace_keys=TraceKeys.PLAIN,
                l1_latency_sample_every=1,
                **extra,
            )
            async with HierarchicalCacheManager(config) as m:
                with trace.get_tracer("tests").start_as_current_span("request"):
                    await m.set("k", {"v": 1})
                    await m.get("k")
                    await m.get("absent")
                    await m.get_or_load("loaded", lambda: 1)
                    await m.delete("k")
                m.sync.get("absent")
                stats = await m.get_statistics()
                logging.getLogger("tests").info("%r %r %s", m, config, stats)
                m.sync.close()
    exported = everything_exported(otel, names)
    assert all(name in exported for name in names)  # the caches' telemetry is in there
    assert "server.address" in exported
    assert "Redis not available" in caplog.text  # the wrong-password cache logged
    assert PASSWORD not in exported
    assert PASSWORD not in caplog.text
