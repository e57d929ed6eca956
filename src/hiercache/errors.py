"""Typed errors. Every one names the key or setting at fault."""

from __future__ import annotations


class CacheError(Exception):
    """Base class for hiercache errors."""


class InvalidKeyError(CacheError, ValueError):
    """A cache key is not a non-empty ``str`` within the length limit."""

    def __init__(self, key: object, reason: str) -> None:
        shown = repr(key) if len(repr(key)) <= 80 else repr(key)[:77] + "..."
        super().__init__(f"invalid cache key {shown}: {reason}")
        self.key = key


class InvalidTTLError(CacheError, ValueError):
    """A TTL is not a finite number of seconds > 0 that Redis accepts; nothing was cached."""

    def __init__(self, key: str, ttl: object, reason: str) -> None:
        super().__init__(f"invalid ttl_seconds {ttl!r} for key {key!r}: {reason}")
        self.key = key
        self.ttl = ttl


class SerializationError(CacheError, TypeError):
    """A value cannot be encoded with the configured serializer; nothing was cached."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"cannot cache value for key {key!r}: {reason}")
        self.key = key


class CorruptValueError(CacheError):
    """A stored payload cannot be decoded (bad header, unknown version, refused pickle)."""


class CacheKeyBuildError(CacheError, TypeError):
    """The decorator cannot build a stable key from an argument."""

    def __init__(self, function: str, argument: str, reason: str) -> None:
        super().__init__(
            f"cannot build a cache key for {function}() from argument {argument!r}: {reason}. "
            "Give the type a __cache_key__() method or pass cache_key_fn=."
        )
        self.function = function
        self.argument = argument


class MissingExtraError(CacheError, ImportError):
    """A setting needs an optional dependency that is not installed; names the extra to add."""

    def __init__(self, setting: str, extra: str, missing: str) -> None:
        super().__init__(
            f"{setting} needs the {missing!r} package, which is not installed: "
            f"pip install '{extra}'",
            name=missing,
        )
        self.setting = setting
        self.extra = extra
        self.missing = missing


class ValueTooLargeError(SerializationError):
    """A value's encoded size exceeds ``max_value_bytes``; nothing was cached."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        super().__init__(key, f"its encoding is {size} bytes, over max_value_bytes={limit}")
        self.size = size
        self.limit = limit


class IncompatibleValueError(CacheError):
    """A stored payload was written by a newer hiercache (or with a signing key this process
    does not hold): a clean miss, counted apart from corruption. Not a ``CorruptValueError``."""


class UnknownSigningKeyError(IncompatibleValueError):
    """A signed pickle frame names a signing key this process does not hold (rotation, or
    another process's random key): never unpickled, a miss, not corruption."""


class LoadTimeoutError(CacheError, TimeoutError):
    """A caller waited ``load_timeout_seconds`` for a load and no stale value could stand in.
    The load itself goes on for its other callers and stores its result when it finishes."""

    def __init__(self, key: str, seconds: float) -> None:
        super().__init__(f"loading key {key!r} took longer than load_timeout_seconds={seconds:g}")
        self.key = key
        self.seconds = seconds
