"""The process-wide default cache: ``get_cache_manager()`` and ``set_cache_manager()``."""

from __future__ import annotations

import threading

from hiercache.manager import HierarchicalCacheManager
from hiercache.settings import CacheConfig

_default: HierarchicalCacheManager | None = None
_lock = threading.Lock()


def get_cache_manager() -> HierarchicalCacheManager:
    """The process-wide manager, built on first use from the environment (``CACHE_*``)."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = HierarchicalCacheManager(CacheConfig())
    return _default


def set_cache_manager(manager: HierarchicalCacheManager | None) -> HierarchicalCacheManager | None:
    """Replace the process-wide manager (None: build anew from the environment on next use).
    Returns the previous one, which the caller should ``close()``."""
    global _default
    with _lock:
        previous, _default = _default, manager
    return previous
