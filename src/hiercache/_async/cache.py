"""``AsyncCache``: the whole asyncio front (``HierarchicalCacheManager`` builds on it)."""

from __future__ import annotations

from typing import Any

from hiercache._async.warming import AsyncWarmer
from hiercache.report import statistics


class AsyncCache(AsyncWarmer):
    """One front of a cache: every operation, over a shared ``CacheCore``."""

    def statistics(self) -> dict[str, Any]:
        """Counts and ratios since start (see ``get_statistics``)."""
        return statistics(self.core)

    async def get_statistics(self) -> dict[str, Any]:
        """Hit ratios per tier and overall, entries, memory, evictions by reason, promotions,
        and the size advisor's estimates: ``["l1_memory"]["what_if"]`` maps a capacity (in
        entries: 1/2x, 1x, 2x, 4x, 8x the current one) to the L1 hit ratio expected there
        (empty with ``l1_advisor_enabled=False``)."""
        report = self.statistics()
        report["l1_memory"]["what_if"] = self.l1.what_if()
        return report
