"""Spans: one per operation, inside the caller's trace, with tier, hit and events.

An L1 hit inside a recording span makes no span of its own: it is counted on the caller's
span, in its ``hiercache.l1.hits`` attribute (a child span per hit cost 20-37 us).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from fakes import FakeClock
from hiercache import CacheConfig, HierarchicalCacheManager, cache_operation
from otel_providers import Providers, install, unique_name

PARENT = "request"
L1_HITS = "hiercache.l1.hits"


@pytest.fixture
def otel() -> Iterator[Providers]:
    providers = install()
    providers.exporter.clear()
    yield providers
    providers.exporter.clear()


def config(redis_url: str, **kw: Any) -> CacheConfig:
    base: dict[str, Any] = {
        "name": unique_name("spans"),
        "redis_url": redis_url,
        "write_behind": False,  # write-through: the SET round trip is part of the trace
        "warming_enabled": False,
    }
    return CacheConfig(**(base | kw))


def tracer() -> trace.Tracer:
    return trace.get_tracer("tests")


def tree(spans: list[ReadableSpan], root: ReadableSpan) -> list[Any]:
    """``[name, [children...]]`` below ``root``, children in start order."""
    kids = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
        key=lambda s: s.start_time or 0,
    )
    return [root.name, [tree(spans, k) for k in kids]]


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def traced_requests(otel: Providers) -> list[list[ReadableSpan]]:
    """The finished spans grouped by trace, one group per PARENT span, in order."""
    spans = otel.spans()
    roots = sorted((s for s in spans if s.name == PARENT), key=lambda s: s.start_time or 0)
    return [[s for s in spans if s.context.trace_id == r.context.trace_id] for r in roots]


def check_l2_client_span(span: ReadableSpan, command: str) -> None:
    attrs = dict(span.attributes or {})
    assert span.kind is SpanKind.CLIENT
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "hiercache"
    assert attrs["db.system.name"] == "redis"
    assert attrs["db.operation.name"] == command
    assert attrs["server.address"] == "127.0.0.1"
    assert isinstance(attrs["server.port"], int)


MISS_TREE = [
    PARENT,
    [["hiercache.get", [["GET", []], ["hiercache.load", []], ["hiercache.set", [["SET", []]]]]]],
]
L1_HIT_TREE = [PARENT, []]  # counted on the caller's span: hiercache.l1.hits
L2_HIT_TREE = [PARENT, [["hiercache.get", [["GET", []]]]]]


def check_decorated_sequence(otel: Providers, m: HierarchicalCacheManager, key: str) -> None:
    miss, hit, l2_hit = traced_requests(otel)
    name = m.config.name
    assert tree(miss, only(miss, PARENT)) == MISS_TREE
    assert tree(hit, only(hit, PARENT)) == L1_HIT_TREE
    assert tree(l2_hit, only(l2_hit, PARENT)) == L2_HIT_TREE

    get = only(miss, "hiercache.get")
    assert dict(get.attributes or {}) == {
        "cache.name": name,
        "cache.hit": False,
        "cache.level": "none",
    }
    assert dict(only(miss, "hiercache.load").attributes or {}) == {"cache.name": name}
    check_l2_client_span(only(miss, "GET"), "GET")
    check_l2_client_span(only(miss, "SET"), "SET")

    request = only(hit, PARENT)
    assert dict(request.attributes or {}) == {L1_HITS: 1}
    assert request.events == ()
    assert L1_HITS not in dict(only(miss, PARENT).attributes or {})

    get = only(l2_hit, "hiercache.get")
    assert dict(get.attributes or {}) == {
        "cache.name": name,
        "cache.hit": True,
        "cache.level": "l2_redis",
    }
    assert [(e.name, dict(e.attributes or {})) for e in get.events] == [
        ("hiercache.promotion", {"cache.level": "l1_memory"})
    ]
    # No span carries the key (CACHE_TRACE_KEYS defaults to none).
    for span in otel.spans():
        assert key not in repr(dict(span.attributes or {}))


async def test_decorated_async_call_miss_hit_then_l2_hit(otel: Providers, redis_url: str) -> None:
    calls = []
    async with HierarchicalCacheManager(config(redis_url)) as m:

        @cache_operation(cache_key="answer", ttl_seconds=60, cache=m)
        async def answer(x: int) -> int:
            calls.append(x)
            return x * 2

        key = answer.cache_key(21)  # type: ignore[attr-defined]
        for _ in range(2):
            with tracer().start_as_current_span(PARENT):
                assert await answer(21) == 42
        m.l1.delete(key)  # outside any span: L1 forgets, L2 remembers
        with tracer().start_as_current_span(PARENT):
            assert await answer(21) == 42
    assert calls == [21]
    check_decorated_sequence(otel, m, key)


async def test_decorated_sync_call_miss_hit_then_l2_hit(otel: Providers, redis_url: str) -> None:
    calls = []
    m = HierarchicalCacheManager(config(redis_url))

    @cache_operation(cache_key="answer", ttl_seconds=60, cache=m)
    def answer(x: int) -> int:
        calls.append(x)
        return x * 2

    key = answer.cache_key(21)  # type: ignore[attr-defined]
    m.sync.initialize()  # the PING, outside the traces under test
    try:
        for _ in range(2):
            with tracer().start_as_current_span(PARENT):
                assert answer(21) == 42
        m.l1.delete(key)
        with tracer().start_as_current_span(PARENT):
            assert answer(21) == 42
    finally:
        m.sync.close()
    assert calls == [21]
    check_decorated_sequence(otel, m, key)


async def test_plain_get_spans_set_hit_and_level_on_every_path(
    otel: Providers, redis_url: str
) -> None:
    async with HierarchicalCacheManager(config(redis_url)) as m:
        await m.set("k", 1)
        with tracer().start_as_current_span(PARENT):
            assert await m.get("k") == 1
            assert await m.get("absent") is None
            assert m.sync.get("k") == 1
            assert m.sync.get("absent") is None
    gets = [s for s in otel.spans(m.config.name) if s.name == "hiercache.get"]
    got = [(s.attributes or {}).get("cache.level") for s in gets]
    assert got == ["none", "none"]  # the two L1 hits made no span: they are counted
    assert [(s.attributes or {}).get("cache.hit") for s in gets] == [False, False]
    assert dict(only(otel.spans(), PARENT).attributes or {}) == {L1_HITS: 2}


async def test_l1_hits_in_one_request_are_one_attribute_and_are_timed(
    otel: Providers, redis_url: str
) -> None:
    """500 hits (more than the SDK's 128 events per span) through get, sync get and
    get_or_load: one count on the request span, no child span, no event; and their
    latency reaches the L1 latency histogram (sampled every 4th here)."""
    async with HierarchicalCacheManager(config(redis_url, l1_latency_sample_every=4)) as m:
        await m.set("k", 1)
        otel.reader.get_metrics_data()  # a collection: earlier samples are flushed
        with tracer().start_as_current_span(PARENT):
            for _ in range(200):
                assert await m.get("k") == 1
            for _ in range(200):
                assert m.sync.get("k") == 1
            for _ in range(100):
                assert await m.get_or_load("k", lambda: 2) == 1
        latency = otel.values(m.config.name, "hiercache.latency")
    assert [s.name for s in otel.spans()] == [PARENT]  # the set ran outside any span
    request = only(otel.spans(), PARENT)
    assert dict(request.attributes or {}) == {L1_HITS: 500}
    assert request.events == ()
    l1_gets = latency[frozenset({("cache.level", "l1_memory"), ("cache.operation", "get")})]
    assert 100 <= l1_gets <= 130  # every 4th of 500 hits (the two fronts count apart)


async def test_a_load_error_marks_the_load_span(otel: Providers, redis_url: str) -> None:
    async def broken() -> int:
        raise ValueError("backend down")

    async with HierarchicalCacheManager(config(redis_url)) as m:
        with (
            tracer().start_as_current_span(PARENT),
            pytest.raises(ValueError, match="backend down"),
        ):
            await m.get_or_load("k", broken)
    load = only(otel.spans(m.config.name), "hiercache.load")
    assert not load.status.is_ok
    assert [e.name for e in load.events] == ["exception"]


async def test_eviction_is_an_event_on_the_set_that_caused_it(
    otel: Providers, redis_url: str
) -> None:
    async with HierarchicalCacheManager(config(redis_url, l1_max_size=1)) as m:
        await m.set("first", 1)
        with tracer().start_as_current_span(PARENT):
            await m.set("second", 2)
    sets = [s for s in otel.spans(m.config.name) if s.name == "hiercache.set"]
    assert len(sets) == 1
    assert [(e.name, dict(e.attributes or {})) for e in sets[0].events] == [
        ("hiercache.eviction", {"cache.level": "l1_memory", "cache.eviction.reason": "size"})
    ]


def eviction(reason: str) -> tuple[str, dict[str, Any]]:
    return ("hiercache.eviction", {"cache.level": "l1_memory", "cache.eviction.reason": reason})


def events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, dict(e.attributes or {})) for e in span.events]


async def test_an_expired_entry_is_an_event_on_the_request_that_found_it(
    otel: Providers, redis_url: str
) -> None:
    clock = FakeClock()
    async with HierarchicalCacheManager(config(redis_url, l1_ttl_seconds=5), clock=clock) as m:
        await m.set("k", 1)  # L1 for 5 s, L2 (real Redis TTL) for an hour
        clock.advance(5.5)
        with tracer().start_as_current_span(PARENT):
            assert await m.get("k") == 1  # L1 finds it expired; L2 answers, L1 gets it back
    get = only(otel.spans(m.config.name), "hiercache.get")
    assert dict(get.attributes or {})["cache.level"] == "l2_redis"
    # L1 is read before the get's span opens (a hit makes none), so the expiry found
    # there is an event on the caller's span; the promotion is on the get's.
    assert events(only(otel.spans(), PARENT)) == [eviction("expired")]
    assert events(get) == [("hiercache.promotion", {"cache.level": "l1_memory"})]


async def test_invalidated_entries_are_events_on_the_invalidate_span(
    otel: Providers, redis_url: str
) -> None:
    async with HierarchicalCacheManager(config(redis_url)) as m:
        for key in ("user:1", "user:2", "order:1"):
            await m.set(key, 1)
        with tracer().start_as_current_span(PARENT):
            assert await m.invalidate_pattern("user:*") == 2
        assert m.l1.get("order:1") is not None
    invalidate = only(otel.spans(m.config.name), "hiercache.invalidate")
    assert events(invalidate) == [eviction("invalidated"), eviction("invalidated")]


async def test_each_operation_has_its_span(otel: Providers, redis_url: str) -> None:
    async with HierarchicalCacheManager(config(redis_url)) as m:
        with tracer().start_as_current_span(PARENT):
            await m.set("a", 1)
            await m.get("a")
            await m.get_many(["a", "b", "c"])
            await m.delete("a")
            await m.invalidate_pattern("x*")
            await m.warm_cache(["w"], lambda k: k.upper())
            m.sync.get_many(["a", "b"])
            m.sync.delete("a")
            m.sync.invalidate_pattern("x*")
            m.sync.warm_cache(["w"], lambda k: k.upper())
        m.sync.close()
    mine = otel.spans(m.config.name)
    assert [s.name for s in sorted(mine, key=lambda s: s.start_time or 0)] == [
        "hiercache.set",  # the get that follows is an L1 hit: counted on the parent
        "hiercache.get_many",
        "hiercache.delete",
        "hiercache.invalidate",
        "hiercache.warm",
        "hiercache.get_many",
        "hiercache.delete",
        "hiercache.invalidate",
        "hiercache.warm",
    ]
    parent = only(otel.spans(), PARENT)
    assert all(s.parent is not None and s.parent.span_id == parent.context.span_id for s in mine)
    deleted = next(s for s in mine if s.name == "hiercache.delete")
    assert [(e.name, dict(e.attributes or {})) for e in deleted.events] == [
        ("hiercache.eviction", {"cache.level": "l1_memory", "cache.eviction.reason": "deleted"})
    ]
    client = [s for s in otel.spans() if s.kind is SpanKind.CLIENT]
    assert {s.name for s in client} >= {"SET", "MGET", "UNLINK", "SCAN"}
    mget = next(s for s in client if s.name == "MGET")
    assert (mget.attributes or {})["db.operation.batch.size"] == 2


async def test_no_spans_without_a_recording_parent(otel: Providers, redis_url: str) -> None:
    async with HierarchicalCacheManager(config(redis_url)) as m:
        await m.set("a", 1)
        await m.get("a")
        await m.get("b")
        await m.get_or_load("c", lambda: 3)
        m.sync.get("a")
        # A parent that is not sampled (not recording) does not turn tracing on either.
        with trace.use_span(trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)):
            await m.get("a")
        m.sync.close()
    assert otel.spans() == []


async def test_trace_all_operations_traces_root_operations(otel: Providers, redis_url: str) -> None:
    async with HierarchicalCacheManager(config(redis_url, trace_all_operations=True)) as m:
        await m.get("a")
    spans = otel.spans()
    get = only(spans, "hiercache.get")
    assert get.parent is None
    assert tree(spans, get) == ["hiercache.get", [["GET", []]]]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("none", {}),
        ("plain", {"cache.key": "user:42"}),
        ("hashed", {"cache.key.hash": hashlib.blake2b(b"user:42", digest_size=8).hexdigest()}),
    ],
)
async def test_trace_keys_setting(
    otel: Providers, redis_url: str, mode: str, expected: dict[str, str]
) -> None:
    async with HierarchicalCacheManager(config(redis_url, trace_keys=mode)) as m:
        with tracer().start_as_current_span(PARENT):
            await m.get("user:42")
    get = only(otel.spans(m.config.name), "hiercache.get")
    attrs = dict(get.attributes or {})
    assert {k: v for k, v in attrs.items() if k.startswith("cache.key")} == expected


async def test_redis_instrumentation_replaces_our_client_spans(
    otel: Providers, redis_url: str
) -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    try:
        async with HierarchicalCacheManager(config(redis_url)) as m:
            with tracer().start_as_current_span(PARENT):
                await m.get("a")
                m.sync.get("b")
            m.sync.close()
    finally:
        instrumentor.uninstrument()
    spans = otel.spans()
    client = [s for s in spans if s.kind is SpanKind.CLIENT]
    scopes = {s.instrumentation_scope.name for s in client if s.instrumentation_scope}
    assert scopes == {"opentelemetry.instrumentation.redis"}
    gets = [s for s in spans if s.name == "hiercache.get"]
    assert len(gets) == 2
    for get in gets:  # the instrumentation's span sits under our operation span
        assert any(c.parent is not None and c.parent.span_id == get.context.span_id for c in client)

    # Uninstrumented again, our own CLIENT spans are back.
    otel.exporter.clear()
    async with HierarchicalCacheManager(config(redis_url)) as m:
        with tracer().start_as_current_span(PARENT):
            await m.get("a")
    check_l2_client_span(only(otel.spans(), "GET"), "GET")


async def test_a_stale_answer_is_marked_on_the_span(otel: Providers, redis_url: str) -> None:
    clock = FakeClock(now=1_800_000_000.0)
    m = HierarchicalCacheManager(config(redis_url), clock=clock, wall_clock=clock)
    try:

        async def good() -> str:
            return "v1"

        async def failing() -> str:
            raise ConnectionError("backend down")

        await m.get_or_load("k", good, 10, stale_if_error_seconds=60)
        clock.advance(11)
        otel.exporter.clear()
        with tracer().start_as_current_span(PARENT):
            assert await m.get_or_load("k", failing) == "v1"
        (get,) = [s for s in otel.spans(m.config.name) if s.name == "hiercache.get"]
        assert get.attributes is not None
        assert get.attributes["cache.stale"] is True
        assert get.attributes["cache.stale.reason"] == "error"
        assert [e.name for e in get.events].count("hiercache.stale") == 1
        (load,) = [s for s in otel.spans(m.config.name) if s.name == "hiercache.load"]
        assert load.status.status_code.name == "ERROR"  # the failed load is its child
    finally:
        await m.close()
