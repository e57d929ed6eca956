"""One value, whichever tier answers: what L1 holds equals what any L2 reader decodes.

``encode_value`` refuses what JSON would silently change (NaN/inf, non-str dict keys, ints
past 64 bits, lone surrogates, nested bytes) and normalises the rest (tuples, datetimes,
UUIDs, dataclasses, enums) into exactly the value L2 readers get.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import pickle
import subprocess
import sys
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hiercache import SerializationError, SerializationFormat
from hiercache.codec import Codec


class Color(enum.Enum):
    RED = "red"
    ONE = 1


@dataclasses.dataclass
class Pair:
    left: Any
    right: Any


def surrogate_text() -> st.SearchStrategy[str]:
    return st.sampled_from(["\ud800", "a\udfffb"])


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.integers()
    | st.floats()  # NaN and infinities included
    | st.text(max_size=8)
    | surrogate_text()
    | st.datetimes()
    | st.dates()
    | st.uuids()
    | st.sampled_from(list(Color))
    | st.binary(max_size=4)  # nested bytes: refused
)
KEYS = st.text(max_size=6) | st.integers(-3, 3) | surrogate_text()


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
        | st.dictionaries(KEYS, children, max_size=3)
        | st.builds(Pair, children, children)
    )


VALUES = st.recursive(LEAVES, containers, max_leaves=12) | st.binary(max_size=40)


def refused(value: Any, top: bool = True) -> bool:
    """The documented refusal rule, written independently of the codec."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, bytes):
        return not top
    if isinstance(value, int):
        return not -(2**63) <= value <= 2**64 - 1
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, enum.Enum):
        return refused(value.value, False)
    if isinstance(value, (list, tuple)):
        return any(refused(v, False) for v in value)
    if isinstance(value, dict):
        return any(type(k) is not str or refused(k, False) for k in value) or any(
            refused(v, False) for v in value.values()
        )
    if isinstance(value, Pair):
        return refused(value.left, False) or refused(value.right, False)
    return False  # datetimes, dates, UUIDs


def normalised(value: Any) -> Any:
    """What JSON makes of an accepted value: the documented normalisation."""
    if isinstance(value, enum.Enum):
        return normalised(value.value)
    if isinstance(value, (list, tuple)):
        return [normalised(v) for v in value]
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    if isinstance(value, Pair):
        return {"left": normalised(value.left), "right": normalised(value.right)}
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def typed(value: Any) -> Any:
    """``value`` with every leaf's exact type, so 1, 1.0 and True are told apart."""
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, dict):
        return ("dict", {k: typed(v) for k, v in value.items()})
    return (type(value).__name__, value)


WRITER = Codec(threshold=0)  # compressed whenever it helps
READER = Codec(compression=False)  # another codec, as another process would have


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_every_accepted_value_reads_back_as_l1_holds_it(value: Any) -> None:
    if refused(value):
        with pytest.raises(SerializationError) as info:
            WRITER.encode_value("key:1", value)
        assert info.value.key == "key:1"
        return
    encoded = WRITER.encode_value("key:1", value)
    from_l2 = READER.decode(encoded.payload)
    assert typed(from_l2) == typed(encoded.value_for_l1)
    assert typed(encoded.value_for_l1) == typed(normalised(value))


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(), containers)
)
def test_json_native_values_come_back_equal_and_of_the_same_types(value: Any) -> None:
    native = normalised(value)  # no tuples, dataclasses or enums left
    if refused(native):
        return
    encoded = WRITER.encode_value("k", native)
    assert typed(encoded.value_for_l1) == typed(native)
    assert typed(READER.decode(encoded.payload)) == typed(native)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        [1.0, float("inf")],
        {"a": {"b": -math.inf}},
        (1, float("nan")),
        Pair(1, float("nan")),
        {1: "a", "1": "b"},
        {1: "a"},
        {None: 1},
        {"\ud800": 1},
        [2**64],
        [b"nested"],
        {1, 2},
        bytearray(b"x"),
    ],
)
def test_what_json_would_change_silently_is_refused(value: Any) -> None:
    with pytest.raises(SerializationError, match="'user:7'"):
        WRITER.encode_value("user:7", value)


def test_a_null_in_the_body_without_nan_is_cheap_and_accepted() -> None:
    encoded = WRITER.encode_value("k", {"a": None, "b": (1, None), "nullable": "null"})
    assert encoded.value_for_l1 == {"a": None, "b": [1, None], "nullable": "null"}


def test_l1_never_aliases_the_callers_object() -> None:
    value = {"list": [1, 2], "nested": {"x": 1}}
    encoded = WRITER.encode_value("k", value)
    value["list"].append(3)
    value["nested"]["x"] = 2
    assert encoded.value_for_l1 == {"list": [1, 2], "nested": {"x": 1}}
    assert READER.decode(encoded.payload) == encoded.value_for_l1


def test_bytes_are_kept_as_bytes() -> None:
    encoded = WRITER.encode_value("k", b"\x00raw")
    assert encoded.value_for_l1 == b"\x00raw"
    assert type(READER.decode(encoded.payload)) is bytes


def test_pickle_keeps_types_and_copies_for_l1() -> None:
    codec = Codec(SerializationFormat.PICKLE)
    value = {"t": (1, 2), "k": {1: "a", "1": "b"}, "s": {3}}
    encoded = codec.encode_value("k", value)
    assert encoded.value_for_l1 == value
    assert encoded.value_for_l1 is not value
    assert codec.decode(encoded.payload) == value


TRICKY = [
    {"t": (1, (2, 3)), "d": dt.datetime(2024, 2, 29, 12, 0, 1, 5)},
    [uuid.UUID(int=7), dt.date(1999, 12, 31), Color.ONE, Color.RED],
    Pair([1.5, -0.0], {"k": None}),
    {"big": 2**64 - 1, "neg": -(2**63), "f": 1e308, "tiny": 5e-324},
    "ünïcødé 日本 🎉",
    b"\xff\x00",
]

CHILD = """
import pickle, sys
from hiercache.codec import Codec
payloads = pickle.loads(sys.stdin.buffer.read())
sys.stdout.buffer.write(pickle.dumps([Codec().decode(p) for p in payloads]))
"""


def test_another_process_decodes_exactly_what_l1_holds() -> None:
    encoded = [WRITER.encode_value(f"k{i}", v) for i, v in enumerate(TRICKY)]
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=pickle.dumps([e.payload for e in encoded]),
        capture_output=True,
        check=True,
    )
    decoded = pickle.loads(child.stdout)
    assert [typed(d) for d in decoded] == [typed(e.value_for_l1) for e in encoded]
