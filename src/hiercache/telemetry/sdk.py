"""The explicit SDK set-up helper: MeterProvider + Prometheus endpoint, TracerProvider.

Library code never imports this module; call ``hiercache.telemetry.setup()`` once at
start-up, or configure your own providers and skip it entirely.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from prometheus_client import start_http_server


@dataclass
class TelemetryHandle:
    meter_provider: MeterProvider
    tracer_provider: TracerProvider
    metrics_address: tuple[str, int] | None
    server: Any = None

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


log = logging.getLogger("hiercache")
_lock = threading.Lock()
_handle: TelemetryHandle | None = None


def setup(
    *,
    service_name: str | None = None,
    prometheus: bool = True,
    prometheus_host: str | None = None,
    prometheus_port: int | None = None,
    otlp_endpoint: str | None = None,
    span_exporter: SpanExporter | None = None,
    extra_readers: list[MetricReader] | None = None,
) -> TelemetryHandle:
    """Install global OpenTelemetry providers for this process; idempotent.

    - metrics: a ``MeterProvider`` with a ``PrometheusMetricReader`` served over HTTP on
      ``prometheus_host:prometheus_port`` (defaults ``OTEL_EXPORTER_PROMETHEUS_HOST`` /
      ``OTEL_EXPORTER_PROMETHEUS_PORT``, else 0.0.0.0:9464; port 0 picks a free one,
      see ``metrics_address``), exemplars off unless ``OTEL_METRICS_EXEMPLAR_FILTER``;
    - traces: a ``TracerProvider`` (sampler from ``OTEL_TRACES_SAMPLER``), exporting
      OTLP/HTTP when an endpoint is configured (``otlp_endpoint``, or
      ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``), or to
      ``span_exporter``;
    - a resource with ``service.name`` (``service_name``, else ``OTEL_SERVICE_NAME`` /
      ``OTEL_RESOURCE_ATTRIBUTES``, else "hiercache"), merged with
      ``OTEL_RESOURCE_ATTRIBUTES``.

    A second call returns the first call's handle unchanged. If the application had
    already installed global providers, they stay (OpenTelemetry allows one) and a
    warning is logged.
    """
    global _handle
    with _lock:
        if _handle is not None:
            return _handle
        resource = _resource(service_name)
        readers: list[MetricReader] = list(extra_readers or [])
        address: tuple[str, int] | None = None
        server: Any = None
        if prometheus:
            readers.append(PrometheusMetricReader())
            host = prometheus_host or os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0")  # noqa: S104
            port = prometheus_port
            if port is None:
                port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
            server, _thread = start_http_server(port=port, addr=host)
            address = (host, int(server.server_address[1]))
        meter_provider = MeterProvider(
            resource=resource, metric_readers=readers, exemplar_filter=_exemplar_filter()
        )
        metrics.set_meter_provider(meter_provider)

        tracer_provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER
        if span_exporter is None:
            span_exporter = _otlp_exporter(otlp_endpoint)
        if span_exporter is not None:
            tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        trace.set_tracer_provider(tracer_provider)

        if metrics.get_meter_provider() is not meter_provider:
            log.warning("hiercache: a MeterProvider was already installed; keeping it")
        if trace.get_tracer_provider() is not tracer_provider:
            log.warning("hiercache: a TracerProvider was already installed; keeping it")
        _handle = TelemetryHandle(meter_provider, tracer_provider, address, server)
        return _handle


def _resource(service_name: str | None) -> Resource:
    """service.name: the argument, else OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, else
    "hiercache" (instead of the SDK's ``unknown_service``)."""
    if service_name:
        return Resource.create({SERVICE_NAME: service_name})
    detected = Resource.create()
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return detected.merge(Resource({SERVICE_NAME: "hiercache"}))
    return detected


def _exemplar_filter() -> ExemplarFilter:
    """Exemplars off (they cost a sampled-span lookup per measurement), unless
    OTEL_METRICS_EXEMPLAR_FILTER asks for them."""
    chosen = os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "always_off").strip().lower()
    if chosen == "always_on":
        return AlwaysOnExemplarFilter()
    if chosen == "trace_based":
        return TraceBasedExemplarFilter()
    return AlwaysOffExemplarFilter()


def _otlp_exporter(endpoint: str | None) -> SpanExporter | None:
    """OTLP/HTTP to ``endpoint``, or as configured by the OTEL_EXPORTER_OTLP_* variables."""
    if endpoint is None:
        signal = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        generic = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not signal and not generic:
            return None
        if signal:  # the signal-specific variable is the full URL, used as is
            endpoint = signal
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if endpoint is None:  # only the generic base URL: the exporter appends /v1/traces
        return OTLPSpanExporter()
    if not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint)
