"""How much memory a decoded value keeps alive: what L1 byte accounting charges an entry.

``value_size(value)`` estimates the bytes a value holds (object headers, GC headers, item
arrays, string and bytes data), the way ``tracemalloc`` counts them:

- Shared objects cost nothing: ``None``, ``True``, ``False``, the small ints Python caches
  (-5 to 256), and dict keys of up to 64 characters (orjson decodes them from a shared key
  cache, and most other code interns them).
- Containers of more than ``SAMPLE_ABOVE`` items are not walked in full: a sample of
  ``SAMPLE_SIZE`` items (evenly spread in lists and tuples, the first ones in dicts and sets)
  is sized and scaled up, so sizing a million-item list costs a few dozen steps.
- Nesting deeper than ``MAX_DEPTH`` counts the containers' own size only.
- Other objects count ``sys.getsizeof`` plus their ``__dict__`` (or ``__slots__``) values.

It is an estimate, meant to be within 1.5x of the truth for the values caches hold (small
dicts, lists of ints, strings, bytes), and cheap enough to run on every L1 write.
"""

from __future__ import annotations

import sys
from itertools import islice
from typing import Any, Final

SAMPLE_ABOVE: Final = 64
SAMPLE_SIZE: Final = 16
MAX_DEPTH: Final = 32
SHARED_KEY_MAX: Final = 64

_getsizeof = sys.getsizeof
_SCALARS: Final = frozenset((bytearray, complex, memoryview))


def _int_size(v: int) -> int:
    return 0 if -5 <= v <= 256 else _getsizeof(v)


def _sample(items: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    n = len(items)
    if n <= SAMPLE_ABOVE:
        return items
    step = n / SAMPLE_SIZE
    return [items[int(i * step)] for i in range(SAMPLE_SIZE)]


def _items_size(items: list[Any] | tuple[Any, ...], depth: int) -> int:
    chosen = _sample(items)
    if not chosen:
        return 0
    total = sum(_size(v, depth) for v in chosen)
    return total if chosen is items else total * len(items) // len(chosen)


def _size(v: Any, depth: int) -> int:
    t = type(v)
    if t is str or t is bytes or t is float:
        return _getsizeof(v)
    if t is int:
        return 0 if -5 <= v <= 256 else _getsizeof(v)
    if v is None or t is bool:
        return 0
    if t in _SCALARS or depth > MAX_DEPTH:
        return _getsizeof(v)
    depth += 1
    if t is list or t is tuple:
        return _getsizeof(v) + _items_size(v, depth)
    if t is dict:
        n = len(v)
        total = 0
        for k, x in v.items() if n <= SAMPLE_ABOVE else islice(v.items(), SAMPLE_SIZE):
            if type(k) is not str or len(k) > SHARED_KEY_MAX:
                total += _size(k, depth)
            tx = type(x)  # the common leaves inline: this loop is the hot path
            if tx is str or tx is float:
                total += _getsizeof(x)
            elif tx is int:
                total += 0 if -5 <= x <= 256 else _getsizeof(x)
            elif x is not None and tx is not bool:
                total += _size(x, depth)
        return _getsizeof(v) + (total if n <= SAMPLE_ABOVE else total * n // SAMPLE_SIZE)
    if t is set or t is frozenset:
        n = len(v)
        members = v if n <= SAMPLE_ABOVE else list(islice(v, SAMPLE_SIZE))
        total = sum(_size(x, depth) for x in members)
        return _getsizeof(v) + (total if n <= SAMPLE_ABOVE else total * n // SAMPLE_SIZE)
    return _object_size(v, depth)


def _object_size(v: Any, depth: int) -> int:
    total = _getsizeof(v)
    if isinstance(v, int):  # int subclasses (enums, IntFlag) and bool-like
        return total
    attrs = getattr(v, "__dict__", None)
    if type(attrs) is dict:
        total += _size(attrs, depth)
    for name in getattr(type(v), "__slots__", ()):
        if isinstance(name, str) and name not in ("__dict__", "__weakref__"):
            total += _size(getattr(v, name, None), depth)
    return total


def value_size(value: Any) -> int:
    """Estimated bytes of memory ``value`` keeps alive (see the module docstring)."""
    return _size(value, 0)
