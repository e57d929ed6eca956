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

from hiercache.telemetry.otel_internals import meter_provider_is_default


@dataclass
class TelemetryHandle:
    """What ``setup()`` left in place.

    ``meter_provider`` and ``tracer_provider`` are the process's global providers: the
    ones ``setup()`` installed, or the application's own when it had already set them.
    In that case ``installed_metrics`` / ``installed_traces`` is False; for metrics no
    Prometheus endpoint was started (``metrics_address`` and ``server`` are None) and
    ``extra_readers`` were not used. ``shutdown()`` stops only what ``setup()`` started.
    """

    meter_provider: metrics.MeterProvider
    tracer_provider: trace.TracerProvider
    metrics_address: tuple[str, int] | None
    server: Any = None
    installed_metrics: bool = True
    installed_traces: bool = True

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.installed_metrics and isinstance(self.meter_provider, MeterProvider):
            self.meter_provider.shutdown()
        if self.installed_traces and isinstance(self.tracer_provider, TracerProvider):
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
      OTLP/HTTP when an endpoint is configured, or to ``span_exporter``. The endpoint is
      ``otlp_endpoint`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, both full URLs used
      as is, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` with ``/v1/traces`` appended;
    - a resource with ``service.name`` (``service_name``, else ``OTEL_SERVICE_NAME`` /
      ``OTEL_RESOURCE_ATTRIBUTES``, else "hiercache"), merged with
      ``OTEL_RESOURCE_ATTRIBUTES``.

    A second call returns the first call's handle unchanged. Each signal is handled on
    its own: if the application had already installed a global MeterProvider (or
    TracerProvider), it stays (OpenTelemetry allows one), a warning is logged, nothing
    is created for that signal (no Prometheus endpoint), and the handle points at it.
    """
    global _handle
    with _lock:
        if _handle is not None:
            return _handle
        resource = _resource(service_name)
        meter_provider, installed_metrics, address, server = _install_metrics(
            resource, prometheus, prometheus_host, prometheus_port, extra_readers
        )
        tracer_provider, installed_traces = _install_traces(resource, otlp_endpoint, span_exporter)
        _handle = TelemetryHandle(
            meter_provider,
            tracer_provider,
            address,
            server,
            installed_metrics=installed_metrics,
            installed_traces=installed_traces,
        )
        return _handle


def _install_metrics(
    resource: Resource,
    prometheus: bool,
    host: str | None,
    port: int | None,
    extra_readers: list[MetricReader] | None,
) -> tuple[metrics.MeterProvider, bool, tuple[str, int] | None, Any]:
    """(global provider, installed by us, Prometheus address, HTTP server)."""
    current = metrics.get_meter_provider()
    if not meter_provider_is_default():  # the application set its own
        log.warning(
            "hiercache: a MeterProvider was already installed; keeping it "
            "(no Prometheus endpoint started, extra_readers unused)"
        )
        return current, False, None, None
    readers: list[MetricReader] = list(extra_readers or [])
    address: tuple[str, int] | None = None
    server: Any = None
    if prometheus:
        host = host or os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0")  # noqa: S104
        if port is None:
            port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
        try:
            server, _thread = start_http_server(port=port, addr=host)
        except OSError as exc:  # one clear line, not a crash (a worker would crash-loop)
            log.error(
                "hiercache: cannot serve /metrics on %s:%s: %s; this process's metrics are "
                "not exported (give each process its own port: prometheus_port= or "
                "OTEL_EXPORTER_PROMETHEUS_PORT; see docs/integrations.md)",
                host, port, exc.strerror or exc,
            )  # fmt: skip
        else:
            readers.append(PrometheusMetricReader())
            address = (host, int(server.server_address[1]))
    provider = MeterProvider(
        resource=resource, metric_readers=readers, exemplar_filter=_exemplar_filter()
    )
    metrics.set_meter_provider(provider)
    if metrics.get_meter_provider() is not provider:  # another thread got there first
        log.warning("hiercache: a MeterProvider was installed meanwhile; keeping it")
        if server is not None:
            server.shutdown()
            server.server_close()
        provider.shutdown()
        return metrics.get_meter_provider(), False, None, None
    return provider, True, address, server


def _install_traces(
    resource: Resource, otlp_endpoint: str | None, span_exporter: SpanExporter | None
) -> tuple[trace.TracerProvider, bool]:
    """(global provider, installed by us)."""
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):  # the application set its own
        log.warning("hiercache: a TracerProvider was already installed; keeping it")
        return current, False
    provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER
    if span_exporter is None:
        span_exporter = _otlp_exporter(otlp_endpoint)
    if span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:  # another thread got there first
        log.warning("hiercache: a TracerProvider was installed meanwhile; keeping it")
        provider.shutdown()
        return trace.get_tracer_provider(), False
    return provider, True


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


def otlp_traces_url(endpoint: str | None = None) -> str | None:
    """The OTLP/HTTP traces URL ``setup()`` exports to, or None (no exporter).

    ``endpoint`` and ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` are full URLs, used as is;
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is a base URL, to which ``/v1/traces`` is appended
    (the OpenTelemetry specification's rules)."""
    if endpoint:
        return endpoint
    signal = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if signal:
        return signal
    generic = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if generic:
        return generic.rstrip("/") + "/v1/traces"
    return None


def _otlp_exporter(endpoint: str | None) -> SpanExporter | None:
    """OTLP/HTTP to ``otlp_traces_url(endpoint)``, if there is one."""
    url = otlp_traces_url(endpoint)
    if url is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=url)
