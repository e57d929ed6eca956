"""Whichever tier answers, the same value; L1's byte bound holds in real memory; L1 and
Redis invalidate the same keys. Properties checked with hypothesis against a real Redis."""

from __future__ import annotations

import gc
import string
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hiercache import HierarchicalCacheManager, SerializationError
from hiercache.redis_glob import escape_glob
from redis_tools import config

#: The fixtures here are module-scoped or stateless per example.
FIXTURES_OK = [HealthCheck.function_scoped_fixture]
#: JSON-like values, with the types JSON changes (tuples) and the ones it cannot keep.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
awkward = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda f: f != f or abs(f) == float("inf")
    ),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=3),
    st.integers(min_value=2**64, max_value=2**80),
)


@pytest.fixture(scope="module")
def pair(redis_server: Any) -> Iterator[tuple[HierarchicalCacheManager, HierarchicalCacheManager]]:
    """A writer and a reader: two caches (two L1s) on one Redis, write-through."""
    writer = HierarchicalCacheManager(config(redis_server.url, telemetry_enabled=False))
    reader = HierarchicalCacheManager(config(redis_server.url, telemetry_enabled=False))
    yield writer, reader
    writer.sync.close()
    reader.sync.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=values)
def test_l1_and_l2_answer_the_same_value(
    pair: tuple[HierarchicalCacheManager, HierarchicalCacheManager], value: Any
) -> None:
    writer, reader = pair
    writer.sync.set("v", value)
    from_l1 = writer.sync.get("v")
    reader.l1.delete("v")
    from_l2 = reader.sync.get("v")
    assert from_l1 == from_l2
    assert type(from_l1) is type(from_l2)
    assert repr(from_l1) == repr(from_l2)  # nested types too (lists, not tuples)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=awkward)
def test_what_json_would_change_silently_is_refused(
    pair: tuple[HierarchicalCacheManager, HierarchicalCacheManager], value: Any
) -> None:
    writer, _ = pair
    writer.sync.delete("bad")
    with pytest.raises(SerializationError, match="'bad'"):
        writer.sync.set("bad", {"x": [value]})
    assert writer.sync.get("bad", "absent") == "absent"


@pytest.mark.parametrize(
    "make",
    [
        lambda i: {"id": i, "name": f"user-{i}", "tags": ["a", "b"]},
        lambda i: list(range(i % 50, i % 50 + 40)),
        lambda i: f"{i:08d}" + "x" * 2040,
        lambda i: bytes(100_000 - 8) + i.to_bytes(8, "big"),
    ],
    ids=["small dicts", "int lists", "2 KB strings", "100 KB bytes"],
)
def test_l1_byte_bound_holds_in_real_memory(make: Any) -> None:
    bound = 4 * 1024 * 1024
    cache = HierarchicalCacheManager(
        config("redis://127.0.0.1:1/0", l2_backend="none", telemetry_enabled=False,
               l1_max_size=1_000_000, l1_max_bytes=bound)
    )  # fmt: skip
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(3000):
            cache.sync.set(f"k{i}", make(i))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.l1.size_bytes <= bound
    assert held <= 1.5 * bound, f"L1 holds {held} bytes under a {bound}-byte bound"
    assert len(cache.l1) > 10  # it filled, and evicted to stay under the bound


glob_alphabet = st.sampled_from(list("ab*?[]^!-\\é:"))
key_text = st.text(alphabet=string.ascii_lowercase[:3] + "é*?[]\\:", min_size=1, max_size=6)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.sets(key_text, min_size=1, max_size=12),
    pattern=st.text(glob_alphabet, min_size=1, max_size=6),
)
def test_invalidation_removes_from_l1_exactly_what_redis_matches(
    redis_server: Any, keys: set[str], pattern: str
) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    cache = HierarchicalCacheManager(
        config(redis_server.url, telemetry_enabled=False, key_prefix="glob[*]:")
    )
    try:
        raw.flushall()
        cache.sync.set_many(dict.fromkeys(keys, 1))
        cut = len(b"glob[*]:")
        redis_match = {
            k[cut:].decode()
            for k in raw.scan_iter(match=escape_glob("glob[*]:") + pattern, count=1000)
        }
        removed = set(cache.core.invalidate_l1(pattern))
        assert removed == redis_match
    finally:
        cache.sync.close()
        raw.close()
