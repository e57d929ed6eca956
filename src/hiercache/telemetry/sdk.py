"""The explicit SDK set-up helper: MeterProvider + Prometheus endpoint, TracerProvider.

Library code never imports this module; call ``hiercache.telemetry.setup()`` once at
start-up, or configure your own providers and skip it entirely.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
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
      ``OTEL_EXPORTER_PROMETHEUS_PORT``, else 0.0.0.0:9464), exemplars off;
    - traces: a ``TracerProvider``, exporting OTLP/HTTP when an endpoint is configured
      (``otlp_endpoint`` or the standard ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variables);
    - a resource with ``service.name`` (``service_name``, ``OTEL_SERVICE_NAME``, or
      "hiercache"), merged with ``OTEL_RESOURCE_ATTRIBUTES``.

    A second call returns the first call's handle unchanged.
    """
    global _handle
    with _lock:
        if _handle is not None:
            return _handle
        # Exemplars need a sampled span per measurement: off, as the hot path wants.
        os.environ.setdefault("OTEL_METRICS_EXEMPLAR_FILTER", "always_off")
        name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "hiercache"
        resource = Resource.create({SERVICE_NAME: name})

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
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        metrics.set_meter_provider(meter_provider)

        tracer_provider = TracerProvider(resource=resource)
        endpoint = (
            otlp_endpoint
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        )
        if span_exporter is None and endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            traces_url = (
                endpoint if endpoint.endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
            )
            span_exporter = OTLPSpanExporter(endpoint=traces_url)
        if span_exporter is not None:
            tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        trace.set_tracer_provider(tracer_provider)

        _handle = TelemetryHandle(meter_provider, tracer_provider, address, server)
        return _handle
