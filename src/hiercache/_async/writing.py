"""The write path: ``set``, ``set_many``, ``delete``, ``invalidate_pattern``, ``clear``.

Writes are checked and encoded before anything is stored (the core raises on bad input),
then land in L1 and go to L2 directly (write-through) or through the write-behind queue.
Deletes and invalidations first flush writes still unsent, so none can resurrect a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hiercache._async.reading import AsyncReadPath
from hiercache.core import Row
from hiercache.errors import InvalidKeyError
from hiercache.memory import EvictionReason
from hiercache.redis_glob import compile_glob, escape_glob
from hiercache.redis_tier import RedisCacheBackend
from hiercache.validation import check_key


class AsyncWritePath(AsyncReadPath):
    async def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        """Cache ``value`` for ``ttl_seconds`` (default ``l2_ttl_seconds``; L1 keeps it at most
        ``l1_ttl_seconds``). Raises ``SerializationError``, ``InvalidKeyError`` or
        ``InvalidTTLError`` on bad input, before anything is cached."""
        with self.core.observe("hiercache.set", key):
            row, stored = self.core.encode(key, value, ttl_seconds)  # checks come first
            self._flight.supersede(key)  # a load of key under way must not overwrite this
            self.core.store_l1(row, stored)
            await self._write_l2([row])

    async def _store(self, key: str, value: Any, ttl_seconds: float | None) -> None:
        """``set`` for a load's own result (which supersedes nothing)."""
        row, stored = self.core.encode(key, value, ttl_seconds)
        self.core.store_l1(row, stored)
        await self._write_l2([row])

    async def set_many(self, items: Mapping[str, Any], ttl_seconds: float | None = None) -> None:
        """Cache several values; all are validated and encoded before any is stored."""
        rows = self.core.encode_many(items, ttl_seconds)
        for key, _, _ in rows:
            self._flight.supersede(key)
        await self._write_l2(rows)

    async def _write_l2(self, rows: list[Row]) -> None:
        l2 = await self._live_l2()
        if l2 is None:
            return
        wb = self.write_behind
        direct = rows if wb is None else [r for r in rows if not wb.submit_set(*r)]
        if direct:
            if wb is not None:  # queue full: older queued writes must land first
                await wb.aflush()
            await l2.arun(l2.op_set_many(direct))

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from both tiers; True if either held it."""
        with self.core.observe("hiercache.delete", key):
            self._flight.supersede(check_key(key))
            in_l1 = self.l1.delete(key, EvictionReason.DELETED)
            l2 = await self._live_l2()
            if l2 is None:
                return in_l1
            await self._flush_unsent()
            removed = await l2.arun(l2.op_delete([key]))
            self.core.removed_from_l2(removed, "deleted")
            return in_l1 or removed > 0

    async def _flush_unsent(self) -> None:
        # unsent, not depth: a batch taken off the queue may still be on its way
        if self.write_behind is not None and self.write_behind.unsent:
            await self.write_behind.aflush()

    async def flush(self) -> None:
        """Wait until every queued write-behind write has reached Redis."""
        if self.write_behind is not None:
            await self.write_behind.aflush()

    async def invalidate_pattern(self, pattern: str) -> int:
        """Delete every key matching the glob ``pattern`` in both tiers; returns how many.

        L2 is walked with SCAN and cleared with UNLINK in batches (never KEYS)."""
        with self.core.observe("hiercache.invalidate"):
            removed = set(self.core.invalidate_l1(pattern))
            self._flight.supersede_matching(compile_glob(pattern).match)
            l2 = await self._live_l2()
            if l2 is not None:
                await self._flush_unsent()
                l2_removed = await self._unlink_matching(l2, pattern)
                self.core.removed_from_l2(len(l2_removed), "invalidated")
                removed.update(l2_removed)
            return len(removed)

    async def _unlink_matching(self, l2: RedisCacheBackend, pattern: str) -> list[str]:
        """UNLINK every L2 key matching ``pattern`` (under the prefix); returns the keys."""
        cursor, removed = 0, list[str]()
        while True:
            cursor, found = await l2.arun(l2.op_scan(cursor, pattern))
            unlinked = await l2.arun(l2.op_unlink_raw(found)) if found else 0
            if unlinked:
                removed += l2.unprefixed(found)
            if cursor == 0:
                return removed

    async def invalidate_prefix(self, prefix: str) -> int:
        """Delete every key that starts with ``prefix`` (literal text: glob characters in
        it are escaped, so user input is safe here); returns how many."""
        if not isinstance(prefix, str):
            raise InvalidKeyError(prefix, "a prefix must be a str")
        return await self.invalidate_pattern(escape_glob(prefix) + "*")

    async def clear(self) -> int:
        """Empty both tiers (of this cache's key prefix); returns how many keys went."""
        return await self.invalidate_pattern("*")
