"""Starlette and FastAPI: a lifespan that starts the cache and shuts it down cleanly, a
dependency that provides it, and a response cache (``ResponseCache``, in
``hiercache.contrib.response_cache``).

::

    cache = HierarchicalCacheManager(CacheConfig())
    app = FastAPI(lifespan=hiercache_lifespan(cache))             # or Starlette(...)
    app = FastAPI(lifespan=hiercache_lifespan(cache, my_lifespan))  # wrapping your own

At start-up it initialises the cache (the L2 ping, background warming) before the
application's own lifespan runs; at shutdown (uvicorn turns SIGTERM into it), after the
application's lifespan has finished, it closes the cache: queued write-behind writes are
sent, waiting at most ``write_behind_drain_seconds`` (what is left is counted, reason
``shutdown``, and logged), and the connections are closed. Starlette is not imported here:
the helper needs only the ``lifespan=`` protocol (``pip install hiercache[starlette]``
installs a tested version).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from hiercache.contrib.response_cache import ResponseCache
from hiercache.manager import HierarchicalCacheManager

__all__ = ["ResponseCache", "cache_dependency", "hiercache_lifespan"]

AppT = TypeVar("AppT")
Lifespan = Callable[[AppT], AbstractAsyncContextManager[Any]]


def hiercache_lifespan(
    cache: HierarchicalCacheManager, lifespan: Lifespan[AppT] | None = None
) -> Lifespan[AppT]:
    """A ``lifespan=`` for Starlette or FastAPI that starts ``cache`` and closes it on
    shutdown, around ``lifespan`` (the application's own) if given; the state that
    lifespan yields is passed on."""

    @asynccontextmanager
    async def run(app: AppT) -> AsyncIterator[Any]:
        await cache.initialize()
        try:
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state
        finally:
            await cache.close()

    return run


def cache_dependency(
    cache: HierarchicalCacheManager,
) -> Callable[[], HierarchicalCacheManager]:
    """A FastAPI dependency providing ``cache``: ``Depends(cache_dependency(cache))``."""

    def provide() -> HierarchicalCacheManager:
        return cache

    return provide
