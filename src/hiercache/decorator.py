"""``@cache_operation``: cache a function's result, async or sync, function or method.

The key is ``"{cache_key or module.qualname}:{16 hex digits}"`` (see ``keys``), or
whatever ``cache_key_fn(*args, **kwargs)`` returns. Exceptions are never cached, and
concurrent calls with one key run the function once (per process).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from hiercache.default import get_cache_manager
from hiercache.keys import KeyBuilder
from hiercache.manager import HierarchicalCacheManager

F = TypeVar("F", bound=Callable[..., Any])


def cache_operation(
    cache_key: str | None = None,
    ttl_seconds: float | None = 300,
    cache_key_fn: Callable[..., str] | None = None,
    cache: HierarchicalCacheManager | Callable[[], HierarchicalCacheManager] | None = None,
    *,
    stale_if_error_seconds: float | None = None,
    stale_while_revalidate_seconds: float | None = None,
    load_timeout_seconds: float | None = None,
    load_soft_timeout_seconds: float | None = None,
    ttl_jitter: float | None = None,
    cache_none_ttl_seconds: float | None = None,
    lock: bool | None = None,
) -> Callable[[F], F]:
    """Cache the decorated function's results for ``ttl_seconds``.

    ``cache`` is the manager to use (or a callable returning it); by default the
    process-wide ``get_cache_manager()``, looked up at call time. The keyword arguments
    override the settings of the same names (stale serving, load timeouts, TTL jitter,
    negative caching, the cross-process lock) for this function. The wrapper gains
    ``.invalidate(*args, **kwargs)`` and ``.cache_key(*args, **kwargs)``."""
    resilience: dict[str, Any] = {
        name: value
        for name, value in (
            ("stale_if_error_seconds", stale_if_error_seconds),
            ("stale_while_revalidate_seconds", stale_while_revalidate_seconds),
            ("load_timeout_seconds", load_timeout_seconds),
            ("load_soft_timeout_seconds", load_soft_timeout_seconds),
            ("ttl_jitter", ttl_jitter),
            ("cache_none_ttl_seconds", cache_none_ttl_seconds),
            ("lock", lock),
        )
        if value is not None
    }

    def decorate(fn: F) -> F:
        builder = KeyBuilder(fn, cache_key)
        build = builder.key

        def key_for(*args: Any, **kwargs: Any) -> str:
            if cache_key_fn is not None:
                return cache_key_fn(*args, **kwargs)
            return build(args, kwargs)

        def manager() -> HierarchicalCacheManager:
            if cache is None:
                return get_cache_manager()
            return cache if isinstance(cache, HierarchicalCacheManager) else cache()

        # The hot path skips a frame per call: the key is built inline, and a fixed
        # manager is bound once instead of being looked up.
        fixed = cache if isinstance(cache, HierarchicalCacheManager) else None
        custom = cache_key_fn

        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = build(args, kwargs) if custom is None else custom(*args, **kwargs)
                m = fixed if fixed is not None else manager()
                if resilience:
                    return await m.get_or_load(
                        key, lambda: fn(*args, **kwargs), ttl_seconds, **resilience
                    )
                return await m.get_or_load(key, lambda: fn(*args, **kwargs), ttl_seconds)

            async def invalidate_async(*args: Any, **kwargs: Any) -> bool:
                return await manager().delete(key_for(*args, **kwargs))

            async_wrapper.invalidate = invalidate_async  # type: ignore[attr-defined]
            wrapper = async_wrapper
        else:

            @functools.wraps(fn)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = build(args, kwargs) if custom is None else custom(*args, **kwargs)
                m = fixed if fixed is not None else manager()
                if resilience:
                    return m.sync.get_or_load(
                        key, lambda: fn(*args, **kwargs), ttl_seconds, **resilience
                    )
                return m.sync.get_or_load(key, lambda: fn(*args, **kwargs), ttl_seconds)

            def invalidate_sync(*args: Any, **kwargs: Any) -> bool:
                return manager().sync.delete(key_for(*args, **kwargs))

            sync_wrapper.invalidate = invalidate_sync  # type: ignore[attr-defined]
            wrapper = sync_wrapper
        setattr(wrapper, "cache_key", key_for)  # noqa: B010
        return cast(F, wrapper)

    return decorate
