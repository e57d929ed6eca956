"""Namespaces: a cache's ``key_prefix`` on its Redis.

Two instances with the same prefix share one namespace, which is normal (replicas of a
service). A prefix nested inside another live cache's (``app:`` and ``app:tenant2:``) is
a trap: the outer cache's ``clear()`` and pattern invalidations remove the inner cache's
keys. It is warned about when the second cache is built.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from hiercache.core import CacheCore

log = logging.getLogger("hiercache")

#: The live caches with an L2, to catch one namespace nested inside another.
_LIVE: Final[weakref.WeakSet[CacheCore]] = weakref.WeakSet()
_LIVE_LOCK: Final = threading.Lock()


def check_namespace(core: CacheCore) -> None:
    """Warn when this cache's key prefix strictly contains, or is contained in, another live
    cache's on the same Redis (``app:`` and ``app:tenant2:``): the outer cache's pattern
    invalidations and ``clear()`` would remove the inner cache's keys. Identical prefixes
    are instances sharing one namespace, which is normal."""
    mine, target = core.config.key_prefix, core.config.redis_target
    with _LIVE_LOCK:
        others = [c.config.key_prefix for c in _LIVE if c.config.redis_target == target]
        _LIVE.add(core)
    for theirs in sorted(set(others)):
        if theirs != mine and (theirs.startswith(mine) or mine.startswith(theirs)):
            outer, inner = sorted((mine, theirs), key=len)
            log.warning(
                "hiercache: key prefix %r is nested inside %r on %s: clear() and pattern "
                "invalidations of the outer cache also remove the inner cache's keys",
                inner,
                outer,
                target,
            )
