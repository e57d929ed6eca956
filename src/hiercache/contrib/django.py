"""A Django cache backend: ``hiercache.contrib.django.HiercacheCache``.

.. code-block:: python

    CACHES = {
        "default": {
            "BACKEND": "hiercache.contrib.django.HiercacheCache",
            "LOCATION": "redis://localhost:6379/0",
            "OPTIONS": {"name": "web", "l1_max_size": 10_000},  # any CacheConfig field
        }
    }

- One ``HierarchicalCacheManager`` per process and configuration, shared by Django's
  per-thread backend objects and by aliases; ``close()`` (after every request) keeps it.
- Defaults here: ``write_through=True``; ``serialization_format="pickle"``, signed with
  ``signing_key``, else ``CACHE_SIGNING_KEY``, else a key derived from ``SECRET_KEY``.
- ``timeout=None`` is ``NO_EXPIRY``; ``0`` or less does not cache (and removes the key).
- ``add`` is ``SET NX``; ``incr``/``decr`` and ``touch`` rewrite the stored (signed) frame
  under ``WATCH``/``MULTI``; each publishes its key on the backplane and drops this
  process's L1 copy. ``get_or_set`` goes through single-flight. Async methods are Django's
  (``sync_to_async`` of the sync ones): no connection is tied to an event loop.

The whole story: docs/integrations.md.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis
from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import salted_hmac
from pydantic import SecretStr, ValidationError

from hiercache.codec import Frame
from hiercache.core import MISS, Write
from hiercache.errors import CorruptValueError, IncompatibleValueError, SerializationError
from hiercache.manager import HierarchicalCacheManager
from hiercache.memory import EvictionReason
from hiercache.settings import CacheConfig, L2Backend, SerializationFormat
from hiercache.validation import NO_EXPIRY

__all__ = ["HiercacheCache", "UnpicklableValueError", "shutdown_managers"]

#: OPTIONS that ``BaseCache`` reads itself (culling of the database and file caches); Redis
#: and L1 bound themselves (``maxmemory``, ``l1_max_size``), so they are accepted and unused.
_DJANGO_OPTIONS = frozenset({"MAX_ENTRIES", "CULL_FREQUENCY"})
_DEFAULTS: Mapping[str, Any] = {"write_through": True, "serialization_format": "pickle"}
_SALT = "hiercache.contrib.django.signing_key"
_WATCH_RETRIES = 100
T = TypeVar("T")


class UnpicklableValueError(SerializationError, pickle.PickleError):
    """A value cannot be pickled: a ``SerializationError`` that is also the
    ``pickle.PickleError`` Django's cache API promises; nothing was cached."""


_managers: dict[str, HierarchicalCacheManager] = {}
_managers_lock = threading.Lock()
#: While L2 is unreachable, add and incr are atomic within the process under this lock.
_l1_only_lock = threading.Lock()


def _manager_for(config: CacheConfig) -> HierarchicalCacheManager:
    """The process's manager for ``config``; the first caller makes it."""
    plain = [(k, v.get_secret_value() if isinstance(v, SecretStr) else v) for k, v in config]
    fingerprint = hashlib.sha256(repr(sorted(plain)).encode()).hexdigest()
    with _managers_lock:
        manager = _managers.get(fingerprint)
        if manager is None:
            manager = _managers[fingerprint] = HierarchicalCacheManager(config)
        return manager


def shutdown_managers() -> None:
    """Flush and close every manager made here (a backend used later makes a new one)."""
    with _managers_lock:
        managers = list(_managers.values())
        _managers.clear()
    for manager in managers:
        manager.sync.close()


def build_config(location: str | list[str] | None, options: Mapping[str, Any]) -> CacheConfig:
    """The ``CacheConfig`` of one ``CACHES`` entry; ``ImproperlyConfigured`` naming the
    setting at fault."""
    unknown = sorted(set(options) - set(CacheConfig.model_fields) - _DJANGO_OPTIONS)
    if unknown:
        raise ImproperlyConfigured(
            f"unknown hiercache setting(s) in CACHES OPTIONS: {', '.join(unknown)} "
            "(use CacheConfig field names, e.g. l1_max_size, key_prefix, signing_key)"
        )
    kwargs = {k: v for k, v in options.items() if k not in _DJANGO_OPTIONS}
    if isinstance(location, (list, tuple)):
        if len(location) > 1:
            raise ImproperlyConfigured(
                "hiercache takes one Redis URL in LOCATION, not a list of servers"
            )
        location = location[0] if location else None
    if location:
        kwargs.setdefault("redis_url", location)
    try:
        config = CacheConfig(**kwargs)
        defaults = {k: v for k, v in _DEFAULTS.items() if k not in config.model_fields_set}
        if "write_behind" in config.model_fields_set:  # an explicit write mode wins
            defaults.pop("write_through", None)
        chosen = defaults.get("serialization_format", config.serialization_format)
        if SerializationFormat(chosen) is SerializationFormat.PICKLE and not config.signing_key:
            secret = salted_hmac(_SALT, "signing-key", algorithm="sha256").hexdigest()
            defaults["signing_key"] = secret
        if defaults:
            config = CacheConfig(**kwargs, **defaults)
    except ValidationError as exc:
        raise ImproperlyConfigured(f"invalid hiercache setting in CACHES OPTIONS: {exc}") from exc
    if config.l2_backend is L2Backend.NONE:
        raise ImproperlyConfigured(
            "HiercacheCache needs an L2 (l2_backend 'redis' or 'embedded'): its add, incr and "
            "touch are atomic in Redis; for a per-process cache use LocMemCache"
        )
    return config


class HiercacheCache(BaseCache):  # type: ignore[misc]  # Django ships no types
    """Django's cache API over a shared hiercache manager (see the module docstring)."""

    def __init__(self, server: str | list[str] | None, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.config = build_config(server, params.get("OPTIONS") or {})
        self.manager = _manager_for(self.config)
        self.cache = self.manager.sync

    def __repr__(self) -> str:
        return f"HiercacheCache({self.config.redis_target!r}, name={self.config.name!r})"

    # -- helpers ---------------------------------------------------------------------
    def _key(self, key: Any, version: int | None) -> str:
        made: str = self.make_and_validate_key(key, version=version)
        return made

    def _ttl(self, timeout: Any) -> float | None:
        """Seconds to keep a value; None for "do not cache" (Django's timeout <= 0)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return NO_EXPIRY
        if timeout <= 0:
            return None
        return float(timeout)

    def _pickle_errors(self, write: Callable[[], Any]) -> Any:
        try:
            return write()
        except SerializationError as exc:
            if self.config.serialization_format is SerializationFormat.PICKLE and isinstance(
                exc.__cause__, Exception
            ):
                cause = exc.__cause__
                raise UnpicklableValueError(exc.key, f"{type(cause).__name__}: {cause}") from exc
            raise

    def _redis(self) -> redis.Redis | None:
        """The sync Redis client, while L2 is live (its breaker closed); else None."""
        l2 = self.manager.l2
        if l2 is None or not l2.health.live:
            return None
        return l2.sync_client()

    def _settle_writes(self) -> None:
        """Writes still queued by write-behind must land before an atomic operation."""
        if self.manager.write_behind is not None:
            self.cache.flush()

    def _announce(self, client: Any, made: str) -> None:
        """Tell the other processes' L1s (the backplane) that ``made`` changed."""
        coherence = self.manager.core.coherence
        if coherence is not None:
            client.publish(coherence.channel, coherence.message([made]))

    def _forget_l1(self, key: str) -> None:
        """After an atomic write: a load of ``key`` under way must not store over it, and
        this process's L1 copy is dropped (the next read promotes the new value)."""
        self.manager.core.flight.supersede(key)
        self.manager.l1.delete(key, EvictionReason.DELETED)

    # -- reads -----------------------------------------------------------------------
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        value = self.cache.get(self._key(key, version), MISS)
        return default if value is MISS else value

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        made = {self._key(key, version): key for key in keys}
        found = self.cache.get_many(list(made))
        return {made[k]: v for k, v in found.items()}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self.cache.exists(self._key(key, version))

    # -- writes ----------------------------------------------------------------------
    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        made, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:
            self._pickle_errors(lambda: self.manager.codec.encode(made, value))
            self.cache.delete(made)
        else:
            self._pickle_errors(lambda: self.cache.set(made, value, ttl))

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        made = {self._key(key, version): value for key, value in data.items()}
        ttl = self._ttl(timeout)
        if ttl is None:
            for k in made:
                self.cache.delete(k)
        elif made:
            self._pickle_errors(lambda: self.cache.set_many(made, ttl))
        return []

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self.cache.delete(self._key(key, version))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        for made in [self._key(key, version) for key in keys]:
            self.cache.delete(made)

    def clear(self) -> None:
        """Remove every key of this cache's ``key_prefix`` (all Django versions and key
        prefixes that share it), in both tiers."""
        self.cache.clear()

    def close(self, **kwargs: Any) -> None:
        """Called by Django after every request: the shared manager stays open."""

    # -- single-flight ----------------------------------------------------------------
    def get_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        made, ttl = self._key(key, version), self._ttl(timeout)

        def load() -> Any:
            return default() if callable(default) else default

        if ttl is None:  # not cached: the value, as Django's backends answer
            value = self.cache.get(made, MISS)
            return load() if value is MISS else value
        return self._pickle_errors(lambda: self.cache.get_or_load(made, load, ttl))

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        return await sync_to_async(self.get_or_set, thread_sensitive=False)(
            key, default, timeout, version
        )

    # -- atomic in Redis -------------------------------------------------------------
    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` is absent (``SET NX``); True if it was stored."""
        made, ttl = self._key(key, version), self._ttl(timeout)
        write = self._pickle_errors(lambda: self.manager.core.encode(made, value, ttl))
        if ttl is None:
            return not self.cache.exists(made)
        self._settle_writes()
        client = self._redis()
        if client is None:  # L2 down: atomic within this process only
            with _l1_only_lock:
                if self.cache.exists(made):
                    return False
                self.cache.set(made, value, ttl)
                return True
        if not client.set(self._redis_key(made), write.payload, px=_px(write), nx=True):
            return False
        self._announce(client, made)
        self.manager.core.flight.supersede(made)
        self.manager.core.store_l1(write)
        return True

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout; False if it is not cached. The frame carries its
        expiry, so it is rewritten (``WATCH``, ``SET PX``), not just ``PEXPIRE``d."""
        made, ttl = self._key(key, version), self._ttl(timeout)
        if ttl is None:
            return self.cache.delete(made)
        self._settle_writes()
        client = self._redis()
        if client is None:
            value = self.cache.get(made, MISS)
            if value is MISS:
                return False
            self.cache.set(made, value, ttl)
            return True

        pipe_key = self._redis_key(made)

        def step(pipe: Any, frame: Frame | None) -> bool:
            if frame is None:
                return False
            write = self.manager.core.encode(made, frame.value, ttl)
            pipe.multi()
            pipe.set(pipe_key, write.payload, px=_px(write))
            self._announce(pipe, made)
            pipe.execute()
            return True

        return self._atomically(client, made, step)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Add ``delta`` to a cached number, atomically in Redis (``WATCH``, ``SET KEEPTTL``).

        ``ValueError`` if ``key`` is not cached, ``TypeError`` if its value is not a number.
        """
        made = self._key(key, version)
        self._settle_writes()
        client = self._redis()
        if client is None:
            with _l1_only_lock:
                return self._add_in_l1(made, key, delta)

        pipe_key = self._redis_key(made)

        def step(pipe: Any, frame: Frame | None) -> Any:
            if frame is None:
                raise ValueError(f"Key '{key}' not found")
            new = _plus(made, frame.value, delta)
            payload = self.manager.codec.encode_value(made, new, frame.meta).payload
            pipe.multi()
            pipe.set(pipe_key, payload, keepttl=True)
            self._announce(pipe, made)
            pipe.execute()
            return new

        return self._atomically(client, made, step)

    def _atomically(
        self, client: redis.Redis, made: str, step: Callable[[Any, Frame | None], T]
    ) -> T:
        """Run ``step(pipeline, frame)`` on the stored frame of ``made`` under ``WATCH``,
        again if another writer changed it meanwhile. This process's L1 copy is dropped."""
        rk = self._redis_key(made)
        with client.pipeline(transaction=True) as pipe:
            for _ in range(_WATCH_RETRIES):
                try:
                    pipe.watch(rk)  # type: ignore[no-untyped-call]
                    raw: bytes | None = pipe.get(rk)  # type: ignore[assignment]
                    return step(pipe, self._frame(raw))
                except redis.WatchError:
                    continue
                finally:
                    self._forget_l1(made)
        raise RuntimeError(f"cache key {made!r}: {_WATCH_RETRIES} conflicting writers in a row")

    def _redis_key(self, made: str) -> str:
        l2 = self.manager.l2
        assert l2 is not None
        return l2.k(made)

    def _frame(self, raw: bytes | None) -> Frame | None:
        if raw is None:
            return None
        try:
            return self.manager.codec.decode_frame(raw)
        except (CorruptValueError, IncompatibleValueError):
            return None  # unreadable here: as good as absent

    def _add_in_l1(self, made: str, key: Any, delta: int) -> Any:
        value = self.cache.get(made, MISS)
        if value is MISS:
            raise ValueError(f"Key '{key}' not found")
        new = _plus(made, value, delta)
        self.cache.set(made, new)
        return new


def _px(write: Write) -> int | None:
    """The PX of a write (its TTL plus its stale windows), None for ``NO_EXPIRY``."""
    seconds = write.row[2]
    return None if math.isinf(seconds) else max(1, int(seconds * 1000))


def _plus(made: str, value: Any, delta: int) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"cannot incr/decr cache key {made!r}: its value is a {type(value).__name__}, "
            "not a number"
        )
    return value + delta
