"""The OpenTelemetry internals hiercache relies on, all in one place.

An L1 hit takes about a microsecond, so asking "is a recording span active?" through
``trace.get_current_span()`` (several Python frames) would cost a noticeable share of it.
Two private names make it a C call and a dict lookup instead:

* ``opentelemetry.trace.propagation._SPAN_KEY``: the key under which the current span is
  stored in a ``Context`` (a dict);
* ``opentelemetry.context._RUNTIME_CONTEXT._current_context``: the ``ContextVar`` holding
  the current ``Context`` in the default contextvars runtime context.

``tests/test_otel_internals.py`` pins the behaviour relied on, so an OpenTelemetry upgrade
that changes it fails a test. With a custom runtime context (``OTEL_PYTHON_CONTEXT``), the
public API is used instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace

__all__ = [
    "FAST_PATH",
    "SPAN_KEY",
    "current_context",
    "meter_provider_is_default",
    "recording_span_active",
]


def meter_provider_is_default() -> bool:
    """True while no MeterProvider has been installed (the API's proxy is in place)."""
    from opentelemetry import metrics
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    return isinstance(metrics.get_meter_provider(), _ProxyMeterProvider)


def _span_key() -> str:
    from opentelemetry.trace.propagation import _SPAN_KEY

    return _SPAN_KEY


#: The key of the current span in an OpenTelemetry ``Context``.
SPAN_KEY: Final = _span_key()

_runtime_var = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)

#: Whether the current context is read straight from OpenTelemetry's ``ContextVar``.
FAST_PATH: Final = isinstance(_runtime_var, ContextVar)

current_context: Callable[[], Mapping[str, Any]]
recording_span_active: Callable[[], bool]

if isinstance(_runtime_var, ContextVar):  # the default contextvars runtime context
    _context_var: ContextVar[Any] = _runtime_var
    #: The current ``Context``: a C call, no Python frame. Hot paths inline the check
    #: ``(span := current_context().get(SPAN_KEY)) is not None and span.is_recording()``.
    current_context = _context_var.get

    def _recording_span_fast() -> bool:
        """True when the current context holds a recording span (~60 ns)."""
        span = _context_var.get().get(SPAN_KEY)
        return span is not None and span.is_recording()

    recording_span_active = _recording_span_fast

else:  # pragma: no cover - a custom runtime context: use the public API

    def _recording_span_public() -> bool:
        return trace.get_current_span().is_recording()

    current_context = otel_context.get_current
    recording_span_active = _recording_span_public
