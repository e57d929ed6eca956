"""Pins the OpenTelemetry internals ``hiercache.telemetry.otel_internals`` relies on.

If an OpenTelemetry upgrade moves the current span out of ``Context[SPAN_KEY]`` or the
current ``Context`` out of the runtime context's ``ContextVar``, these tests fail, instead of
hiercache silently treating every span as absent (no spans) or present (slow).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from hiercache.telemetry import otel_internals
from hiercache.telemetry.otel_internals import SPAN_KEY, current_context, recording_span_active


@pytest.fixture
def tracer() -> trace.Tracer:
    # A local provider: spans go into the global context all the same.
    return TracerProvider().get_tracer("test-otel-internals")


def fast_path_span() -> object:
    return current_context().get(SPAN_KEY)


def agrees_with_public_api() -> None:
    public = trace.get_current_span()
    found = fast_path_span()
    if public is trace.INVALID_SPAN:
        assert found is None
    else:
        assert found is public
    assert recording_span_active() is public.is_recording()


def test_the_default_runtime_context_uses_the_fast_path() -> None:
    assert otel_internals.FAST_PATH, (
        "opentelemetry.context._RUNTIME_CONTEXT._current_context is no longer a ContextVar: "
        "hiercache falls back to the slower public API"
    )
    assert current_context() is otel_context.get_current()


def test_the_current_span_is_under_span_key_in_the_current_context(
    tracer: trace.Tracer,
) -> None:
    with tracer.start_as_current_span("outer") as span:
        assert otel_context.get_current()[SPAN_KEY] is span
        assert otel_context.get_value(SPAN_KEY) is span
        assert current_context()[SPAN_KEY] is span
    assert SPAN_KEY not in otel_context.get_current()


def test_outside_any_span() -> None:
    assert fast_path_span() is None
    assert recording_span_active() is False
    agrees_with_public_api()


def test_inside_recording_spans_nested(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("outer") as outer:
        assert outer.is_recording()
        agrees_with_public_api()
        assert recording_span_active() is True
        with tracer.start_as_current_span("inner") as inner:
            assert fast_path_span() is inner
            agrees_with_public_api()
        assert fast_path_span() is outer
        agrees_with_public_api()
    agrees_with_public_api()
    assert recording_span_active() is False


def test_with_a_non_recording_span() -> None:
    ctx = SpanContext(trace_id=1, span_id=2, is_remote=True, trace_flags=TraceFlags(0))
    with trace.use_span(NonRecordingSpan(ctx)) as span:
        assert fast_path_span() is span
        assert recording_span_active() is False
        agrees_with_public_api()


def test_with_an_unsampled_span() -> None:
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test-otel-internals")
    with tracer.start_as_current_span("dropped") as span:
        assert not span.is_recording()
        assert fast_path_span() is span
        assert recording_span_active() is False
        agrees_with_public_api()


def test_after_context_attach_and_detach(tracer: trace.Tracer) -> None:
    span = tracer.start_span("manual")
    try:
        token = otel_context.attach(trace.set_span_in_context(span))
        assert fast_path_span() is span
        assert recording_span_active() is True
        agrees_with_public_api()
        otel_context.detach(token)
        assert fast_path_span() is None
        assert recording_span_active() is False
        agrees_with_public_api()
    finally:
        span.end()


def test_an_ended_span_is_no_longer_recording(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("ends") as span:
        span.end()
        assert fast_path_span() is span
        assert recording_span_active() is False
        agrees_with_public_api()


def test_telemetry_package_exports_the_same_objects() -> None:
    from hiercache import telemetry
    from hiercache.telemetry import instruments

    assert telemetry.SPAN_KEY is instruments.SPAN_KEY is SPAN_KEY
    assert telemetry.current_context is instruments.current_context is current_context
    assert telemetry.recording_span_active is recording_span_active


def test_meter_provider_is_default_until_one_is_installed() -> None:
    """``setup()`` relies on the API's proxy provider standing in until one is set."""
    script = (
        "from opentelemetry import metrics\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from hiercache.telemetry.otel_internals import meter_provider_is_default\n"
        "assert meter_provider_is_default()\n"
        "metrics.set_meter_provider(MeterProvider())\n"
        "assert not meter_provider_is_default()\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
