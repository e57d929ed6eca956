"""Redis' glob, exactly: the pattern language of ``SCAN MATCH`` and ``KEYS``, on bytes.

A port of Redis' ``stringmatchlen`` (``util.c``), so an L1 entry is invalidated exactly when
Redis would match its key:

- Matching is on the UTF-8 bytes of key and pattern: ``?`` matches one byte, so ``é`` (two
  bytes) needs ``??``, and a bracket matches one byte.
- ``*`` matches any run of bytes, ``\\x`` matches ``x`` literally, and a trailing ``\\``
  matches a backslash.
- ``[abc]``, ``[a-z]`` (reversed ranges ``[z-a]`` work too), ``[^abc]`` negation. ``[!abc]`` is
  NOT negation in Redis: it is a set holding ``!``. ``\\`` escapes inside brackets too.
  Range ends compare as C ``char``, signed: a range with a byte >= 0x80 at one end spans
  the negative values, exactly as Redis on x86-64 and aarch64-with-signed-char builds.
- An unclosed ``[`` takes the rest of the pattern as its set (``[ab`` matches ``a`` or
  ``b``); ``[`` alone, and ``[]``, match nothing; ``[^`` and ``[^]`` match any one byte.

A pattern is compiled once (``RedisGlob``): with at most one ``*``, into one bytes regex;
with more, split at ``*`` into fixed-width segments, each a compiled regex of single-byte
classes, matched leftmost-first. That is linear in the key length for any pattern, with no
backtracking blow-up. (Redis 7.4+ refuses patterns nested more
than 1000 ``*`` deep; this matcher does not.)
"""

from __future__ import annotations

import functools
import re
from typing import Final

_ANY: Final = frozenset(range(256))
_META: Final = frozenset("*?[]\\")


def escape_glob(text: str) -> str:
    """Escape ``text`` so it matches itself literally (``key_prefix``, user-supplied text)."""
    return "".join("\\" + c if c in _META else c for c in text)


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _bracket(p: bytes, i: int) -> tuple[frozenset[int], int]:
    """The byte set of the bracket whose ``[`` is at ``p[i]``; and the index after it.

    Follows ``stringmatchlen``'s loop, including what it does at the pattern's end.
    """
    n = len(p)
    i += 1
    negate = i < n and p[i] == 0x5E  # ^
    if negate:
        i += 1
    members: set[int] = set()
    while True:
        if i < n and p[i] == 0x5C and n - i >= 2:  # \x
            i += 1
            members.add(p[i])
        elif i < n and p[i] == 0x5D:  # ]
            break
        elif i >= n:  # unclosed: Redis steps back onto the last byte, then past it
            i = n - 1
            break
        elif n - i >= 3 and p[i + 1] == 0x2D:  # a-z
            lo, hi = sorted((_signed(p[i]), _signed(p[i + 2])))
            members.update(b for b in range(256) if lo <= _signed(b) <= hi)
            i += 2
        else:
            members.add(p[i])
        i += 1
    chosen = _ANY - members if negate else frozenset(members)
    return chosen, i + 1


def _tokens(p: bytes) -> list[frozenset[int] | None]:
    """The pattern as a list of one-byte sets, ``None`` standing for a ``*``."""
    out: list[frozenset[int] | None] = []
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == 0x2A:  # *
            if not out or out[-1] is not None:
                out.append(None)
            i += 1
        elif c == 0x3F:  # ?
            out.append(_ANY)
            i += 1
        elif c == 0x5B:  # [
            chosen, i = _bracket(p, i)
            out.append(chosen)
        else:
            if c == 0x5C and n - i >= 2:  # \x; a trailing \ is itself
                i += 1
            out.append(frozenset((p[i],)))
            i += 1
    return out


def _class(members: frozenset[int]) -> bytes:
    if members == _ANY:
        return b"[\\x00-\\xff]"
    if not members:
        return b"(?!)"
    if len(members) == 1:
        return re.escape(bytes(members))
    return b"[" + b"".join(b"\\x%02x" % m for m in sorted(members)) + b"]"


class RedisGlob:
    """A compiled Redis glob pattern; ``match(key)`` says whether Redis would match it."""

    __slots__ = ("_first", "_last", "_middle", "_min_len", "_single", "pattern")

    def __init__(self, pattern: str | bytes) -> None:
        self.pattern = pattern
        raw = pattern.encode("utf-8") if isinstance(pattern, str) else bytes(pattern)
        segments: list[list[frozenset[int]]] = [[]]
        for token in _tokens(raw):
            if token is None:
                segments.append([])
            else:
                segments[-1].append(token)
        compiled = [(re.compile(b"".join(map(_class, s)), re.DOTALL), len(s)) for s in segments]
        # Up to one star, one regex is linear (one ``.*``) and fastest; more use the segments.
        single = b".*".join(b"".join(map(_class, s)) for s in segments)
        self._single = re.compile(single, re.DOTALL).fullmatch if len(segments) <= 2 else None
        self._first = compiled[0]
        self._last = compiled[-1]
        self._middle = compiled[1:-1]
        self._min_len = sum(width for _, width in compiled)

    def __repr__(self) -> str:
        return f"RedisGlob({self.pattern!r})"

    def match(self, key: str | bytes) -> bool:
        """Whether ``SCAN MATCH pattern`` would return ``key`` (a ``str`` is UTF-8 encoded)."""
        data = key.encode("utf-8") if isinstance(key, str) else key
        if self._single is not None:
            return self._single(data) is not None
        first, width = self._first
        if len(data) < self._min_len or first.match(data) is None:
            return False
        pos = width
        for segment, seg_width in self._middle:
            found = segment.search(data, pos)
            if found is None:
                return False
            pos = found.start() + seg_width
        last, last_width = self._last
        start = len(data) - last_width
        return start >= pos and last.match(data, start) is not None


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str | bytes) -> RedisGlob:
    """A compiled ``RedisGlob``, cached: compile once, match many keys."""
    return RedisGlob(pattern)


def glob_match(pattern: str | bytes, key: str | bytes) -> bool:
    """Whether Redis matches ``key`` against ``pattern``."""
    return compile_glob(pattern).match(key)
