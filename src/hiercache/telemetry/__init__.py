"""hiercache telemetry.

``CacheTelemetry`` is used by every cache and needs only the OpenTelemetry API.
``setup()`` is the explicit helper that installs the SDK, a Prometheus endpoint and an
OTLP trace exporter; applications that configure their own providers never call it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hiercache.telemetry.instruments import (
    LATENCY_BUCKETS,
    SPAN_KEY,
    CacheTelemetry,
    current_context,
    recording_span_active,
)

if TYPE_CHECKING:
    from hiercache.telemetry.sdk import TelemetryHandle


def setup(**kwargs: Any) -> TelemetryHandle:
    """Install OpenTelemetry SDK providers for hiercache (see ``hiercache.telemetry.sdk.setup``)."""
    from hiercache.telemetry.sdk import setup as _setup

    return _setup(**kwargs)


__all__ = [
    "LATENCY_BUCKETS",
    "SPAN_KEY",
    "CacheTelemetry",
    "current_context",
    "recording_span_active",
    "setup",
]
