"""hiercache: an OpenTelemetry-first two-tier cache (in-process L1, Redis L2).

Quick start::

    from hiercache import get_cache_manager, cache_operation

    cache = get_cache_manager()          # settings from CACHE_* environment variables
    await cache.set("user:1", {"name": "Ada"}, ttl_seconds=300)
    await cache.get("user:1")

    @cache_operation(cache_key="models", ttl_seconds=3600)
    async def list_models() -> list[str]: ...
"""

from hiercache._sync.cache import SyncCache
from hiercache.core import MISS
from hiercache.decorator import cache_operation
from hiercache.default import get_cache_manager, set_cache_manager
from hiercache.errors import (
    CacheError,
    CacheKeyBuildError,
    CorruptValueError,
    InvalidKeyError,
    InvalidTTLError,
    SerializationError,
)
from hiercache.manager import HierarchicalCacheManager
from hiercache.memory import EvictionReason
from hiercache.redis_tier import RedisCacheBackend
from hiercache.settings import CacheConfig, CacheStrategy, L2Backend, SerializationFormat, TraceKeys
from hiercache.validation import NO_EXPIRY

__all__ = [
    "MISS",
    "NO_EXPIRY",
    "CacheConfig",
    "CacheError",
    "CacheKeyBuildError",
    "CacheStrategy",
    "CorruptValueError",
    "EvictionReason",
    "HierarchicalCacheManager",
    "InvalidKeyError",
    "InvalidTTLError",
    "L2Backend",
    "RedisCacheBackend",
    "SerializationError",
    "SerializationFormat",
    "SyncCache",
    "TraceKeys",
    "cache_operation",
    "get_cache_manager",
    "set_cache_manager",
]
