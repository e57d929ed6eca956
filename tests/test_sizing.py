"""value_size() against tracemalloc: within 1.5x for the values L1 holds."""

from __future__ import annotations

import dataclasses
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from hiercache.codec import Codec
from hiercache.sizing import value_size

CODEC = Codec(compression=False)
COPIES = 2000  # enough that CPython's dict free lists do not hide the dicts' cost


def decoded(value: Any) -> Callable[[], Any]:
    """A maker of fresh copies of ``value`` as L1 holds it: decoded from its payload."""
    payload = CODEC.encode("k", value)
    CODEC.decode(payload)  # warm: orjson's key cache, the codec's thread-local state
    return lambda: CODEC.decode(payload)


def traced_size(make: Callable[[], Any], copies: int = COPIES) -> float:
    """Bytes one more live copy costs, by tracemalloc (mean over ``copies`` copies)."""
    held: list[Any] = [None] * copies  # the holder's slots are allocated before tracing
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(copies):
            held[i] = make()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / copies


SMALL_DICTS = {
    "user": {"id": 12345, "name": "Ada Lovelace", "email": "ada@example.com", "active": True},
    "scores": {"a": 1.5, "b": 2.25, "c": -3.0},
    "nested": {"user": {"id": 7, "tags": ["x", "y"]}, "ok": None},
    "one": {"k": "v"},
    "long-keys": {"k" * 80: 1, "j" * 90: "value"},
}
INT_LISTS = {
    "small ints": list(range(100)),
    "big ints": list(range(10**6, 10**6 + 100)),
    "mixed 2k": [i * 7919 for i in range(2000)],
    "64-bit": [2**62 + i for i in range(50)],
}
STRINGS = {
    "ascii 2 KB": "x" * 2048,
    "latin-1 2 KB": "é" * 2048,
    "cjk 2 KB": "日本" * 512,
    "emoji 2 KB": "🎉" * 512,
}


@pytest.mark.parametrize(
    ("name", "value", "copies"),
    [
        *((n, v, COPIES) for n, v in SMALL_DICTS.items()),
        *((n, v, 50) for n, v in INT_LISTS.items()),  # big: free lists are no bias here
        *((n, v, COPIES) for n, v in STRINGS.items()),
    ],
)
def test_within_1_5x_of_tracemalloc(name: str, value: Any, copies: int) -> None:
    make = decoded(value)
    truth = traced_size(make, copies)
    estimate = value_size(make())
    assert truth / 1.5 <= estimate <= truth * 1.5, (name, estimate, truth)


def test_bytes_100_kb() -> None:
    payload = CODEC.encode("k", bytes(100 * 1024))
    truth = traced_size(lambda: CODEC.decode(payload))
    estimate = value_size(CODEC.decode(payload))
    assert truth / 1.5 <= estimate <= truth * 1.5, (estimate, truth)


def test_large_containers_are_sampled_and_still_close() -> None:
    rows = [{"id": 10_000 + i, "name": f"user-{i:05d}", "score": i / 7} for i in range(5000)]
    make = decoded(rows)
    truth = traced_size(make, copies=5)
    value = make()
    estimate = value_size(value)
    assert truth / 1.5 <= estimate <= truth * 1.5, (estimate, truth)
    start = time.perf_counter()
    for _ in range(100):
        value_size(value)
    per_call = (time.perf_counter() - start) / 100
    assert per_call < 0.002  # sampled: not a walk of 5000 dicts (~15000 objects)


@pytest.mark.parametrize("value", [None, True, False, 0, 256, -5])
def test_shared_singletons_cost_nothing(value: Any) -> None:
    assert value_size(value) == 0


def test_big_dicts_and_sets_are_sized() -> None:
    big = {f"key-{i}": i * 1000 for i in range(1000)}
    assert value_size(big) > 1000 * 28  # the int values at least
    members = {i * 1000 for i in range(1000)}
    assert value_size(members) > 1000 * 28


@dataclasses.dataclass
class Row:
    name: str
    values: list[int]


class Slotted:
    __slots__ = ("blob",)

    def __init__(self) -> None:
        self.blob = b"x" * 10_000


def test_objects_count_their_attributes() -> None:
    row = Row("n" * 1000, list(range(1000, 1100)))
    assert value_size(row) > 1000 + 100 * 28
    assert value_size(Slotted()) > 10_000
    assert value_size((1000, "x" * 500)) > 500


def test_deep_nesting_is_bounded() -> None:
    value: Any = []
    for _ in range(1000):
        value = [value]
    assert value_size(value) > 0  # no RecursionError
