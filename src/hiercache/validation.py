"""Input checks shared by both fronts: keys and TTLs are refused before anything is cached."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

from hiercache.errors import InvalidKeyError, InvalidTTLError

MAX_KEY_LENGTH: Final = 1024
#: Redis refuses an expiry whose absolute time in milliseconds overflows 64 bits; half of
#: that (about 146 million years) leaves room for any clock.
MAX_TTL_SECONDS: Final = float(2**62 // 1000)


class _NoExpiry(float):
    """The type of ``NO_EXPIRY``: a float (so it fits every ``ttl_seconds``), one object."""

    def __repr__(self) -> str:
        return "NO_EXPIRY"


#: ``ttl_seconds=NO_EXPIRY``: the entry never expires in Redis (it is written without an
#: expiry; L1 still keeps its copy at most ``l1_ttl_seconds``). An infinite float is
#: refused instead, so a TTL computed by mistake as inf is caught, not kept forever.
NO_EXPIRY: Final = _NoExpiry("inf")


def check_key(key: object) -> str:
    """``key`` if it is a usable cache key; else ``InvalidKeyError`` naming it."""
    if type(key) is not str:
        raise InvalidKeyError(key, f"keys must be str, not {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(key, f"keys must be 1 to {MAX_KEY_LENGTH} characters long")
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError:
            raise InvalidKeyError(key, "keys must be valid Unicode (a lone surrogate?)") from None
    return key


def check_ttl(key: str, ttl_seconds: float | None, default: float) -> float:
    """The TTL to use (``default`` for None); else ``InvalidTTLError`` naming key and TTL."""
    if ttl_seconds is None:
        return default
    if ttl_seconds is NO_EXPIRY:
        return math.inf
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, (int, float)):
        raise InvalidTTLError(key, ttl_seconds, "ttl_seconds must be a number")
    if not ttl_seconds > 0:  # NaN fails this too
        raise InvalidTTLError(key, ttl_seconds, "ttl_seconds must be > 0")
    if math.isinf(ttl_seconds) or ttl_seconds > MAX_TTL_SECONDS:
        raise InvalidTTLError(
            key,
            ttl_seconds,
            f"ttl_seconds must be finite and at most {MAX_TTL_SECONDS:.3g} "
            "(for entries that never expire, pass hiercache.NO_EXPIRY)",
        )
    return float(ttl_seconds)


def dedupe_keys(keys: Iterable[str]) -> list[str]:
    """Checked keys, each once, in first-seen order."""
    return [check_key(k) for k in dict.fromkeys(keys)]
