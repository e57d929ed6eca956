"""The statistics report: ``get_statistics()``, read from the counters and the tiers."""

from __future__ import annotations

from typing import Any

from hiercache import stats as S
from hiercache.core import CacheCore


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def statistics(core: CacheCore) -> dict[str, Any]:
    """Counts and ratios since start: overall, per tier, loads, write-behind."""
    snap = core.stats.snapshot()

    def total(kind: str, **attrs: str) -> int:
        want = set(attrs.items())
        return sum(v for v, (k, a) in zip(snap, S.SLOTS) if k == kind and want <= set(a))

    config, l1, wb = core.config, core.l1, core.write_behind
    l1_hits, l2_hits = total("hits", level=S.L1), total("hits", level=S.L2)
    misses = total("misses")
    requests = l1_hits + l2_hits + misses
    evictions = {
        level: {r: total("evictions", level=level, reason=r) for r in S.EVICTION_REASONS}
        for level in S.LEVELS
    }
    return {
        "name": config.name,
        "requests": requests,
        "hits": l1_hits + l2_hits,
        "misses": misses,
        "overall_hit_ratio": _ratio(l1_hits + l2_hits, requests),
        "promotions": total("promotions"),
        "loads": {r: total("loads", result=r) for r in S.LOAD_RESULTS},
        "coalesced": total("coalesced"),
        "l1_memory": {
            "hits": l1_hits,
            "misses": l2_hits + misses,
            "hit_ratio": _ratio(l1_hits, requests),
            "entries": len(l1),
            "memory_usage_bytes": l1.size_bytes,
            "max_size": config.l1_max_size,
            "max_bytes": config.l1_max_bytes,
            "strategy": config.l1_strategy.value,
            "evictions": evictions[S.L1],
        },
        "l2_redis": {
            "hits": l2_hits,
            "misses": misses,
            "hit_ratio": _ratio(l2_hits, l2_hits + misses),
            "available": core.l2_up(),
            "backend": config.redis_target,
            "errors": {t: total("l2_errors", error_type=t) for t in S.L2_ERROR_TYPES},
            "evictions": evictions[S.L2],
        },
        "write_behind": {
            "enabled": wb is not None,
            "queue_depth": wb.depth if wb else 0,
            "dropped": total("write_behind_dropped"),
            "dropped_by_reason": {
                r: total("write_behind_dropped", drop_reason=r) for r in S.DROP_REASONS
            },
        },
        "deferred": {op: total("l2_deferred", operation=op) for op in S.DEFERRED_OPERATIONS},
    }
