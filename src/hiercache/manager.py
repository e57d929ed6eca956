"""``HierarchicalCacheManager``: the cache's asyncio API, with its sync twin as ``.sync``.

Both are fronts over one ``CacheCore`` (one L1, one set of counters, one single-flight,
one L2 health): see ``core``. The operations are written once, in ``_async/``; the sync
front is generated from them (``_sync/``, by ``scripts/unasync.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hiercache._async.cache import AsyncCache
from hiercache._sync.cache import SyncCache
from hiercache.core import CacheCore
from hiercache.settings import CacheConfig


class HierarchicalCacheManager(AsyncCache):
    """A two-tier cache: in-process L1 (memory) in front of shared L2 (Redis).

    Create it with a ``CacheConfig`` (or none: settings come from the environment), use
    it as ``async with`` or call ``initialize()``/``close()``. Operations initialise it
    lazily, so a forgotten ``initialize()`` costs nothing but the first call's ping.
    Blocking code uses ``manager.sync``: the same cache, with the same methods.
    """

    def __init__(
        self,
        config: CacheConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        core = CacheCore(config or CacheConfig(), clock, wall_clock)
        super().__init__(core)
        self.sync = SyncCache(core)

    def __repr__(self) -> str:
        return (
            f"HierarchicalCacheManager(name={self.config.name!r}, "
            f"l2={self.config.redis_target!r}, l1_entries={len(self.l1)})"
        )

    async def close(self) -> None:
        """Stop warming, flush pending write-behind writes, close every connection (the
        sync front's too)."""
        await super().close()
        await asyncio.to_thread(self.sync.close)
