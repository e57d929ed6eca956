"""The statistics report: ``get_statistics()``, read from the counters and the tiers.

Which counter slots each figure sums is worked out once, at import (``_Totals``), so a
report is one snapshot plus a few C-level gathers: no scan of every slot per figure.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from hiercache import stats as S
from hiercache.core import CacheCore


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _slots(kind: str, **attrs: str) -> tuple[int, ...]:
    """The indices of every slot of ``kind`` whose attributes include ``attrs``."""
    want = set(attrs.items())
    return tuple(i for i, (k, a) in enumerate(S.SLOTS) if k == kind and want <= set(a))


def _summer(kind: str, **attrs: str) -> Callable[[Sequence[int]], int]:
    """Sums the slots of ``kind`` matching ``attrs`` out of a snapshot."""
    indices = _slots(kind, **attrs)
    if not indices:
        return lambda snap: 0
    if len(indices) == 1:
        return itemgetter(indices[0])
    gather = itemgetter(*indices)
    return lambda snap: sum(gather(snap))


def _by(
    names: Sequence[str], kind: str, attr: str, **attrs: str
) -> Callable[[Sequence[int]], dict[str, int]]:
    """``{name: total}`` over ``names`` (one slot each), as one gather."""
    indices = [_slots(kind, **{attr: n}, **attrs) for n in names]
    assert all(len(i) == 1 for i in indices), f"{kind} by {attr} is not one slot per value"
    gather = itemgetter(*(i[0] for i in indices))
    keys = tuple(names)
    if len(keys) == 1:
        return lambda snap: {keys[0]: gather(snap)}
    return lambda snap: dict(zip(keys, gather(snap)))


_L1_HITS = _summer("hits", level=S.L1)
_L2_HITS = _summer("hits", level=S.L2)
_MISSES = _summer("misses")
_PROMOTIONS = _summer("promotions")
_COALESCED = _summer("coalesced")
_DROPPED = _summer("write_behind_dropped")
_LOADS = _by(S.LOAD_RESULTS, "loads", "result")
_EVICTIONS = {lvl: _by(S.EVICTION_REASONS, "evictions", "reason", level=lvl) for lvl in S.LEVELS}
_ERRORS = _by(S.L2_ERROR_TYPES, "l2_errors", "error_type")
_DROPS = _by(S.DROP_REASONS, "write_behind_dropped", "drop_reason")
_DEFERRED = _by(S.DEFERRED_OPERATIONS, "l2_deferred", "operation")

#: What a report reads from the settings (``redis_target`` parses the URL; the strategy is
#: an enum): read once per cache, not per report.
_settings: weakref.WeakKeyDictionary[CacheCore, tuple[str, int, int | None, str, str]] = (
    weakref.WeakKeyDictionary()
)


def _fixed(core: CacheCore) -> tuple[str, int, int | None, str, str]:
    fixed = _settings.get(core)
    if fixed is None:
        c = core.config
        fixed = (c.name, c.l1_max_size, c.l1_max_bytes, c.l1_strategy.value, c.redis_target)
        _settings[core] = fixed
    return fixed


def statistics(core: CacheCore) -> dict[str, Any]:
    """Counts and ratios since start: overall, per tier, loads, write-behind."""
    snap = core.stats.snapshot()
    name, max_size, max_bytes, strategy, target = _fixed(core)
    l1, wb = core.l1, core.write_behind
    l1_hits, l2_hits, misses = _L1_HITS(snap), _L2_HITS(snap), _MISSES(snap)
    requests = l1_hits + l2_hits + misses
    return {
        "name": name,
        "requests": requests,
        "hits": l1_hits + l2_hits,
        "misses": misses,
        "overall_hit_ratio": _ratio(l1_hits + l2_hits, requests),
        "promotions": _PROMOTIONS(snap),
        "loads": _LOADS(snap),
        "coalesced": _COALESCED(snap),
        "l1_memory": {
            "hits": l1_hits,
            "misses": l2_hits + misses,
            "hit_ratio": _ratio(l1_hits, requests),
            "entries": len(l1),
            "memory_usage_bytes": l1.size_bytes,
            "max_size": max_size,
            "max_bytes": max_bytes,
            "strategy": strategy,
            "evictions": _EVICTIONS[S.L1](snap),
        },
        "l2_redis": {
            "hits": l2_hits,
            "misses": misses,
            "hit_ratio": _ratio(l2_hits, l2_hits + misses),
            "available": core.l2_up(),
            "backend": target,
            "errors": _ERRORS(snap),
            "evictions": _EVICTIONS[S.L2](snap),
        },
        "write_behind": {
            "enabled": wb is not None,
            "queue_depth": wb.depth if wb else 0,
            "dropped": _DROPPED(snap),
            "dropped_by_reason": _DROPS(snap),
        },
        "deferred": _DEFERRED(snap),
    }
