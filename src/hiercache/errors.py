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
