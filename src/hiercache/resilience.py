"""Loader resilience: the per-call load policy, stale candidates, and the stale shelf.

A value written with a stale window (``stale_if_error_seconds``,
``stale_while_revalidate_seconds``; RFC 5861's names) may be served after its expiry:

- *stale-if-error*: the loader raised or timed out, and the value expired less than
  ``stale_if_error`` ago;
- *stale-while-revalidate*: the value expired less than ``stale_while_revalidate`` ago: it
  is returned at once and one background load refreshes it.

The windows are fixed when the value is written and travel with it (the frame's meta
block), so every process and both tiers agree. L2 keeps the entry for its TTL plus its
longest window. L1 keeps only fresh entries (a plain ``get`` never sees a stale value);
the *shelf* keeps this process's stale copies, bounded like L1, so stale-if-error still
works when Redis is down. Deletes and invalidations remove shelf copies too: only expiry
leaves a value that may be served stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hiercache.codec import Meta
from hiercache.errors import InvalidTTLError
from hiercache.settings import CacheConfig


@dataclass(frozen=True)
class LoadPolicy:
    """How one ``get_or_load`` call loads and stores: the settings, with per-call overrides."""

    stale_if_error: float = 0.0
    stale_while_revalidate: float = 0.0
    load_timeout: float | None = None
    load_soft_timeout: float | None = None
    ttl_jitter: float = 0.0
    cache_none_ttl: float | None = None
    lock: bool = False
    lock_timeout: float = 5.0

    @classmethod
    def from_config(cls, config: CacheConfig) -> LoadPolicy:
        return cls(
            stale_if_error=config.stale_if_error_seconds,
            stale_while_revalidate=config.stale_while_revalidate_seconds,
            load_timeout=config.load_timeout_seconds,
            load_soft_timeout=config.load_soft_timeout_seconds,
            ttl_jitter=config.ttl_jitter,
            cache_none_ttl=config.cache_none_ttl_seconds,
            lock=config.distributed_lock,
            lock_timeout=config.lock_timeout_seconds,
        )

    def with_overrides(self, key: str, **overrides: Any) -> LoadPolicy:
        """This policy with the per-call arguments that were given (None: the setting)."""
        given = {name: value for name, value in overrides.items() if value is not None}
        if not given:
            return self
        for name, value in given.items():
            if name == "lock":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidTTLError(key, value, f"{name} must be a number >= 0")
            if name == "ttl_jitter" and value >= 1:
                raise InvalidTTLError(key, value, "ttl_jitter must be below 1")
            if name in ("load_timeout", "load_soft_timeout") and value == 0:
                raise InvalidTTLError(key, value, f"{name} must be > 0")
        return _replace(self, given)

    @property
    def windows(self) -> bool:
        return self.stale_if_error > 0 or self.stale_while_revalidate > 0

    @property
    def timed(self) -> bool:
        return self.load_timeout is not None or self.load_soft_timeout is not None


def _replace(policy: LoadPolicy, changes: dict[str, Any]) -> LoadPolicy:
    fields = {**policy.__dict__, **changes}
    return LoadPolicy(**fields)


@dataclass(frozen=True)
class StaleEntry:
    """An expired value that a window may still allow to be served."""

    value: Any
    meta: Meta

    def usable_on_error(self, now: float) -> bool:
        """Within stale-if-error (a failed or timed-out load may return it)."""
        return now < self.meta.expires_at + self.meta.stale_if_error

    def usable_to_revalidate(self, now: float) -> bool:
        """Within stale-while-revalidate (return it now, refresh in the background)."""
        return now < self.meta.expires_at + self.meta.stale_while_revalidate


class StaleShelf:
    """This process's copies of values written with a stale window, bounded (oldest out)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, StaleEntry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: str, value: Any, meta: Meta) -> None:
        with self._lock:
            self._entries[key] = StaleEntry(value, meta)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, key: str) -> None:
        if key in self._entries:
            with self._lock:
                self._entries.pop(key, None)

    def discard_matching(self, match: Callable[[str], bool]) -> None:
        with self._lock:
            for key in [k for k in self._entries if match(k)]:
                del self._entries[key]

    def get(self, key: str, now: float) -> StaleEntry | None:
        """The expired copy of ``key`` still inside one of its windows, if any."""
        entry = self._entries.get(key)
        if entry is None or now < entry.meta.expires_at:
            return None  # absent, or still fresh (then L1 or L2 answer)
        if now >= entry.meta.stale_until:
            self.discard(key)
            return None
        return entry
