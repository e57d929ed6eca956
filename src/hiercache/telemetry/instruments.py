"""OpenTelemetry instrumentation, on the API only (no SDK import).

Every instrument is made from the metric catalogue (``catalogue.py``). Counts are read
from ``CacheStats`` by observable instruments at collection time, so
the hot path pays nothing for them. Latencies go to one histogram: L2 and backend on
every operation, L1 hits sampled. Spans are made only inside a recording span (or when
``trace_all_operations`` is on), because even a no-op span costs microseconds.
"""

from __future__ import annotations

import hashlib
import random
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Histogram, Observation
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

from hiercache import stats as S
from hiercache.settings import CacheConfig, TraceKeys
from hiercache.telemetry import catalogue
from hiercache.telemetry.catalogue import LATENCY_BUCKETS, STATS_ATTRIBUTES, InstrumentKind
from hiercache.telemetry.otel_internals import (
    SPAN_KEY,
    current_context,
    recording_span_active,
)

if TYPE_CHECKING:
    from hiercache.stats import CacheStats

__all__ = [
    "HIT_L1",
    "HIT_L2",
    "L1_HITS_ATTRIBUTE",
    "L1_SAMPLES_PER_COLLECTION",
    "LATENCY_BUCKETS",
    "METER_NAME",
    "MISSED",
    "SPAN_KEY",
    "CacheTelemetry",
    "current_context",
    "recording_span_active",
]

try:
    from importlib.metadata import version as _pkg_version

    VERSION = _pkg_version("hiercache")
except Exception:  # pragma: no cover - running from a source tree without metadata
    VERSION = "0"

METER_NAME: Final = "hiercache"
BACKEND: Final = "backend"
#: At most this many sampled L1-hit latencies are kept between two collections (a
#: uniform reservoir); they are recorded into the histogram at collection time, so a
#: sampled L1 hit costs two clock reads and an append, never an SDK call. The histogram
#: is a sample of L1 latencies (hits are counted exactly by the hit counters); the API
#: has no way to add pre-aggregated bucket counts, so this bound is what keeps a scrape
#: of many busy caches cheap: at most 256 SDK records per cache per collection (each
#: about 3 us), instead of 2,048 (a scrape of 10 busy caches took 60+ ms more).
L1_SAMPLES_PER_COLLECTION: Final = 256
#: Span attributes of an operation until a tier answers.
MISSED: Final[dict[str, AttributeValue]] = {"cache.hit": False, "cache.level": "none"}
HIT_L1: Final[dict[str, AttributeValue]] = {"cache.hit": True, "cache.level": S.L1}
HIT_L2: Final[dict[str, AttributeValue]] = {"cache.hit": True, "cache.level": S.L2}
_LATENCY: Final = catalogue.metric("latency").name
#: Inside a recording span, an L1 hit makes no span of its own: it counts into this
#: attribute of the caller's span (one attribute, however many hits: no event limit).
L1_HITS_ATTRIBUTE: Final = "hiercache.l1.hits"
#: The caller spans' hit counts, by span; ended spans are dropped once this many are kept.
_SPAN_HITS_PRUNE_AT: Final = 1024
_COMBINE: Final[dict[str, Callable[[Iterable[float]], float]]] = {
    "sum": sum,
    "min": min,
    "max": max,
}


class _Source:
    """What one live cache exposes to the exporter."""

    def __init__(
        self,
        name: str,
        stats: CacheStats,
        gauges: Callable[[], dict[str, float]],
        flush: Callable[[], None],
    ) -> None:
        self.name = name
        self.stats = stats
        self.gauges = gauges
        self.flush = flush


class _Instruments:
    """One set of instruments per metric prefix, shared by every cache using it."""

    _by_prefix: dict[str, _Instruments] = {}
    _lock = threading.Lock()

    @classmethod
    def for_prefix(cls, prefix: str) -> _Instruments:
        with cls._lock:
            inst = cls._by_prefix.get(prefix)
            if inst is None:
                inst = cls._by_prefix[prefix] = cls(prefix)
            return inst

    def __init__(self, prefix: str) -> None:
        self.sources: weakref.WeakSet[_Source] = weakref.WeakSet()
        meter = metrics.get_meter(METER_NAME, VERSION)
        self.histograms: dict[str, Histogram] = {}
        for m in catalogue.METRICS:
            name = m.instrument_name(prefix)
            if m.kind is InstrumentKind.OBSERVABLE_COUNTER:
                assert m.stats_kind is not None
                meter.create_observable_counter(
                    name, [self._counter_callback(m.stats_kind)], m.unit, m.description
                )
            elif m.kind is InstrumentKind.HISTOGRAM:
                self.histograms[m.name] = meter.create_histogram(
                    name,
                    unit=m.unit,
                    description=m.description,
                    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
                )
            else:
                combine = _COMBINE[m.combine]
                meter.create_observable_gauge(
                    name, [self._gauge_callback(m.name, combine)], m.unit, m.description
                )
        self.latency = self.histograms[_LATENCY]

    def _live(self) -> dict[str, list[_Source]]:
        """Live sources grouped by cache name: two caches sharing a name share series."""
        by_name: dict[str, list[_Source]] = {}
        for source in list(self.sources):
            by_name.setdefault(source.name, []).append(source)
        return by_name

    def _counter_callback(self, kind: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        slots = [(i, a) for i, (k, a) in enumerate(S.SLOTS) if k == kind]
        labels = [tuple((STATS_ATTRIBUTES[k], v) for k, v in attrs) for _, attrs in slots]

        def observe(options: CallbackOptions) -> Iterator[Observation]:
            live = self._live()
            if kind == "hits":  # once per collection: record the L1 latency samples
                for sources in live.values():
                    for source in sources:
                        source.flush()
            for name, sources in live.items():
                snaps = [source.stats.snapshot() for source in sources]
                for (i, _), extra in zip(slots, labels):
                    attrs = {"cache.name": name, **dict(extra)}
                    yield Observation(sum(snap[i] for snap in snaps), attrs)

        return observe

    def _gauge_callback(
        self, key: str, combine: Callable[[Iterable[float]], float]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        # e.g. l2.up is 1 only when every same-named cache reaches Redis; the others add up.

        def observe(options: CallbackOptions) -> Iterator[Observation]:
            for name, sources in self._live().items():
                values: dict[str, list[float]] = {}
                for source in sources:
                    for gauge, value in source.gauges().items():
                        gauge_name, _, level = gauge.partition("|")
                        if gauge_name == key:
                            values.setdefault(level, []).append(value)
                for level, found in values.items():
                    attrs = {"cache.name": name}
                    if "=" in level:  # "attribute=value" (e.g. cache.l1.capacity=500)
                        attribute, _, text = level.partition("=")
                        attrs[attribute] = text
                    elif level:
                        attrs["cache.level"] = level
                    yield Observation(combine(found), attrs)

        return observe


_span_hits: dict[Span, int] = {}
_span_hits_limit = [_SPAN_HITS_PRUNE_AT]


def _prune_span_hits() -> None:
    """Forget the counts of ended spans (the rest stay: their requests are running)."""
    for span in list(_span_hits):
        if not span.is_recording():
            _span_hits.pop(span, None)
    _span_hits_limit[0] = max(_SPAN_HITS_PRUNE_AT, 2 * len(_span_hits))


def _redis_instrumented() -> bool:
    """True when opentelemetry-instrumentation-redis already traces redis-py commands."""
    import redis.asyncio.client
    import redis.client

    return hasattr(redis.client.Pipeline.execute, "__wrapped__") or hasattr(
        redis.asyncio.client.Pipeline.execute, "__wrapped__"
    )


class CacheTelemetry:
    """The telemetry of one cache: metric export registration, latency, spans."""

    def __init__(
        self,
        config: CacheConfig,
        stats: CacheStats,
        gauges: Callable[[], dict[str, float]],
    ) -> None:
        self.enabled = config.telemetry_enabled
        self.trace_all = config.trace_all_operations and self.enabled
        self.trace_keys = config.trace_keys
        self.sample_every = config.l1_latency_sample_every
        self.name = config.name
        self.tracer = trace.get_tracer(METER_NAME, VERSION)
        self._source = _Source(config.name, stats, gauges, self.flush_l1_samples)
        self._attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._l1_samples: list[float] = []
        self._l1_seen = 0
        if self.enabled:
            self._instruments = _Instruments.for_prefix(config.metrics_prefix)
            self._instruments.sources.add(self._source)

    # -- latency ---------------------------------------------------------------------
    def latency_attrs(self, level: str, operation: str) -> dict[str, str]:
        key = (level, operation)
        attrs = self._attrs.get(key)
        if attrs is None:
            attrs = self._attrs[key] = {
                "cache.name": self.name,
                "cache.level": level,
                "cache.operation": operation,
            }
        return attrs

    def record_latency(self, level: str, operation: str, seconds: float) -> None:
        if self.enabled:
            self._instruments.latency.record(seconds, self.latency_attrs(level, operation))

    def sample_l1(self, seconds: float) -> None:
        """Keep one sampled L1-hit latency until the next collection (reservoir of
        ``L1_SAMPLES_PER_COLLECTION``, uniform over the interval)."""
        self._l1_seen += 1
        samples = self._l1_samples
        if len(samples) < L1_SAMPLES_PER_COLLECTION:
            samples.append(seconds)
        else:
            slot = random.randrange(self._l1_seen)
            if slot < L1_SAMPLES_PER_COLLECTION:
                samples[slot] = seconds

    def flush_l1_samples(self) -> None:
        """Record the kept L1 samples into the latency histogram (at collection time)."""
        samples, self._l1_samples, self._l1_seen = self._l1_samples, [], 0
        if samples and self.enabled:
            record, attrs = self._instruments.latency.record, self.latency_attrs(S.L1, "get")
            for seconds in samples:
                record(seconds, attrs)

    # -- spans -----------------------------------------------------------------------
    def caller_span(self) -> Span | None:
        """The caller's recording span, if telemetry is on and there is one."""
        if not self.enabled:
            return None
        span: Span | None = current_context().get(SPAN_KEY)
        return span if span is not None and span.is_recording() else None

    def note_l1_hit(self, span: Span) -> None:
        """Count an L1 hit on the caller's ``span`` (``hiercache.l1.hits``)."""
        hits = _span_hits
        count = hits.get(span, 0) + 1
        hits[span] = count
        span.set_attribute(L1_HITS_ATTRIBUTE, count)
        if count == 1 and len(hits) > _span_hits_limit[0]:
            _prune_span_hits()

    def tracing(self) -> bool:
        """Whether this operation gets spans: inside a recording span, or trace_all."""
        return self.enabled and (self.trace_all or recording_span_active())

    def span(
        self,
        name: str,
        key: str | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: dict[str, AttributeValue] | None = None,
    ) -> AbstractContextManager[Span]:
        """A span named ``name``; the key is recorded only as ``trace_keys`` allows."""
        attrs: dict[str, Any] = {"cache.name": self.name}
        if attributes:
            attrs.update(attributes)
        if key is not None and self.trace_keys is not TraceKeys.NONE:
            if self.trace_keys is TraceKeys.PLAIN:
                attrs["cache.key"] = key
            else:
                attrs["cache.key.hash"] = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        return self.tracer.start_as_current_span(name, kind=kind, attributes=attrs)

    def l2_span(
        self, command: str, server: tuple[str, int | None], batch: int = 1
    ) -> AbstractContextManager[Span | None]:
        """A CLIENT span per Redis round trip, unless redis-py is already instrumented."""
        if not self.tracing() or _redis_instrumented():
            return nullcontext()
        attrs: dict[str, Any] = {
            "db.system.name": "redis",
            "db.system": "redis",
            "db.operation.name": command,
            "server.address": server[0],
        }
        if server[1] is not None:
            attrs["server.port"] = server[1]
        if batch > 1:
            attrs["db.operation.batch.size"] = batch
        return self.tracer.start_as_current_span(command, kind=SpanKind.CLIENT, attributes=attrs)

    def event(self, name: str, **attrs: str) -> None:
        """Add an event to the current span, if one is recording."""
        if self.enabled and recording_span_active():
            trace.get_current_span().add_event(name, attrs)
