"""Decorator keys: ``"{prefix}:{16 hex digits}"``, the same in every process.

The digest is BLAKE2b over a canonical JSON encoding of the bound arguments, defaults
applied, so ``f(1)`` and ``f(x=1)`` share a key. Never ``hash()`` (salted per process)
and never a ``repr`` that can hold a memory address: an argument that has no canonical
form is refused with ``CacheKeyBuildError``.

What ``self``/``cls`` contributes: its ``__cache_key__()`` when it defines one, else its
class's qualified name, so instances of a stateless service class share entries.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import inspect
import math
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from hiercache.errors import CacheKeyBuildError

_SIMPLE = (str, bool, type(None))
_INT64 = (-(2**63), 2**63 - 1)
_INT_MIN, _INT_MAX = _INT64
#: Argument types whose canonical form is the value itself (ints and floats in range).
_FAST_KINDS = frozenset((str, bool, type(None), int, float))
#: How many argument tuples a decorated function remembers the key of.
MEMO_SIZE = 4096
_SORT_KEYS = orjson.OPT_SORT_KEYS
_blake2b = hashlib.blake2b
_isfinite = math.isfinite


def canonical(value: Any, where: str, fn: str) -> Any:
    """A JSON-able, type-tagged form of ``value`` that is stable across processes."""
    kind = type(value)
    if kind in _SIMPLE:
        return value
    if kind is int:  # JSON numbers stop at 64 bits: larger ones are tagged text
        return value if _INT64[0] <= value <= _INT64[1] else {"i": str(value)}
    if kind is float:  # JSON has no NaN or infinities (orjson writes null): tag them
        return value if math.isfinite(value) else {"x": repr(value)}
    hook = getattr(value, "__cache_key__", None)
    if callable(hook) and not isinstance(value, type):
        return {"k": canonical(hook(), where, fn)}
    if isinstance(value, enum.Enum):
        return {"e": f"{type(value).__qualname__}.{value.name}"}
    if isinstance(value, (list, tuple)):
        return [canonical(v, where, fn) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [canonical(v, where, fn) for v in value]
        return {"s": sorted(items, key=lambda x: orjson.dumps(x, option=orjson.OPT_SORT_KEYS))}
    if isinstance(value, Mapping):
        pairs = [[canonical(k, where, fn), canonical(v, where, fn)] for k, v in value.items()]
        return {"m": sorted(pairs, key=lambda p: orjson.dumps(p[0], option=orjson.OPT_SORT_KEYS))}
    if isinstance(value, (bytes, bytearray)):
        return {"b": bytes(value).hex()}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return {"t": value.isoformat()}
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return {"d": str(value)}
    if isinstance(value, (int, float, str)):  # subclasses of the simple types
        return canonical(type(value).__mro__[-2](value), where, fn)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"dc": type(value).__qualname__, "f": canonical(fields, where, fn)}
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return {"pm": type(value).__qualname__, "f": canonical(dump(mode="json"), where, fn)}
    raise CacheKeyBuildError(fn, where, f"{type(value).__qualname__} has no canonical form")


def digest(payload: Any) -> str:
    raw = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


class KeyBuilder:
    """Builds keys for one function. Binding is precomputed: no ``inspect`` per call."""

    def __init__(self, fn: Callable[..., Any], prefix: str | None) -> None:
        self.name = f"{fn.__module__}.{fn.__qualname__}"
        self.prefix = prefix or self.name
        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        self.simple = all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params
        )
        self.names = [p.name for p in params]
        self.positional = [
            p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        self.defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self.self_name = params[0].name if params and params[0].name in ("self", "cls") else None
        #: The fast path: a plain function called with every argument positionally.
        self.fast_arity = len(self.names) if self.simple and self.self_name is None else -1
        #: Recent fast-path keys: arguments -> (their types, key); cleared when full.
        self._memo: dict[tuple[Any, ...], tuple[tuple[type, ...], str]] = {}

    def _fast_key(self, args: tuple[Any, ...]) -> str | None:
        """The key of positional str, bool, None, int and float arguments, or None when
        one needs a tag (an int past 64 bits, NaN, an infinity): the general path's bytes,
        since these values are their own canonical form."""
        for value in args:
            kind = type(value)
            if kind is int:
                if not _INT_MIN <= value <= _INT_MAX:
                    return None
            elif kind is float and not _isfinite(value):
                return None
        raw = orjson.dumps(dict(zip(self.names, args)), option=_SORT_KEYS)
        return f"{self.prefix}:{_blake2b(raw, digest_size=8).hexdigest()}"

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.simple and len(args) <= len(self.positional):
            bound = dict(zip(self.positional, args))
            for name, value in kwargs.items():
                if name in bound or name not in self.names:
                    break
                bound[name] = value
            else:
                if len(bound) == len(self.names):
                    return bound
                missing = [n for n in self.names if n not in bound]
                if all(n in self.defaults for n in missing):
                    bound.update((n, self.defaults[n]) for n in missing)
                    return {n: bound[n] for n in self.names}
        ba = self.signature.bind(*args, **kwargs)  # the general path raises TypeError as a call
        ba.apply_defaults()
        return dict(ba.arguments)

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if not kwargs and len(args) == self.fast_arity:
            kinds = tuple(map(type, args))
            try:
                hit = self._memo.get(args)
            except TypeError:  # unhashable: the general path below
                hit = None
            # Equal arguments of the same types have the same key, except floats (0.0 ==
            # -0.0, NaN != NaN): those are never remembered.
            if hit is not None and hit[0] == kinds:
                return hit[1]
            if _FAST_KINDS.issuperset(kinds):
                key = self._fast_key(args)
                if key is not None and float not in kinds:
                    if len(self._memo) >= MEMO_SIZE:
                        self._memo.clear()
                    self._memo[args] = (kinds, key)
                if key is not None:
                    return key
        bound = self.bind(args, kwargs)
        parts: dict[str, Any] = {}
        for name, value in bound.items():
            if name == self.self_name:
                hook = getattr(value, "__cache_key__", None)
                owner = value if isinstance(value, type) else type(value)
                parts[name] = (
                    canonical(hook(), name, self.name)
                    if callable(hook) and not isinstance(value, type)
                    else owner.__qualname__
                )
            else:
                parts[name] = canonical(value, name, self.name)
        return f"{self.prefix}:{digest(parts)}"
