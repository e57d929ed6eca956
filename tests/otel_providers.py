"""In-memory OpenTelemetry SDK providers, installed globally once per test session.

hiercache uses the *global* providers (``metrics.get_meter`` / ``trace.get_tracer``),
and OpenTelemetry lets a process set them once. Tests that need exported data call
``install()``; each test then filters by its own unique ``cache.name``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@dataclass
class Providers:
    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter
    tracer_provider: TracerProvider

    def points(self, cache_name: str) -> Iterator[tuple[str, dict[str, Any], Any]]:
        """Every exported data point of ``cache_name``: (metric name, attributes, point)."""
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        attrs = dict(point.attributes or {})
                        if attrs.get("cache.name") == cache_name:
                            yield metric.name, attrs, point

    def values(self, cache_name: str, metric: str) -> dict[frozenset[tuple[str, Any]], float]:
        """{attribute set (without cache.name): value} for one metric; histograms: count."""
        out: dict[frozenset[tuple[str, Any]], float] = {}
        for name, attrs, point in self.points(cache_name):
            if name == metric:
                attrs.pop("cache.name")
                value = point.count if isinstance(point, HistogramDataPoint) else point.value
                out[frozenset(attrs.items())] = value
        return out

    def spans(self, cache_name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        if cache_name is None:
            return found
        return [s for s in found if (s.attributes or {}).get("cache.name") == cache_name]


_providers: Providers | None = None
_names = itertools.count()


def unique_name(stem: str) -> str:
    return f"{stem}-{next(_names)}"


def install() -> Providers:
    """Install the session's in-memory providers (once), or fail if others got there first."""
    global _providers
    if _providers is None:
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(
            metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter()
        )
        metrics.set_meter_provider(meter_provider)
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        if metrics.get_meter_provider() is not meter_provider:
            pytest.fail("another test set the global MeterProvider first", pytrace=False)
        if trace.get_tracer_provider() is not tracer_provider:
            pytest.fail("another test set the global TracerProvider first", pytrace=False)
        _providers = Providers(reader, exporter, tracer_provider)
    return _providers
