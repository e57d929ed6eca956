"""The write path: ``set``, ``set_many``, ``delete``, ``invalidate_pattern``, ``clear``.

Writes are checked and encoded before anything is stored (the core raises on bad input),
then land in L1 and go to L2 directly (write-through) or through the write-behind queue.
Deletes and invalidations cancel queued writes of their keys and flush the batch on its
way, so none can resurrect a key. When Redis cannot answer (the breaker is open, or the
round trip failed) they are kept in the core's ``DeferredStore`` and applied after recovery;
``delete`` then answers whether L1 held the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hiercache._async.reading import AsyncReadPath
from hiercache.core import Row, Write
from hiercache.errors import InvalidKeyError
from hiercache.health import OUTAGE_ERRORS
from hiercache.memory import EvictionReason
from hiercache.redis_glob import compile_glob, escape_glob
from hiercache.redis_tier import RedisCacheBackend
from hiercache.resilience import LoadPolicy
from hiercache.validation import check_key


class AsyncWritePath(AsyncReadPath):
    async def set(self, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        """Cache ``value`` for ``ttl_seconds`` (default ``l2_ttl_seconds``; L1 keeps it at most
        ``l1_ttl_seconds``). Raises ``SerializationError``, ``InvalidKeyError`` or
        ``InvalidTTLError`` on bad input, before anything is cached."""
        with self.core.observe("hiercache.set", key):
            write = self.core.encode(key, value, ttl_seconds)  # checks come first
            self._flight.supersede(key)  # a load of key under way must not overwrite this
            self.core.store_l1(write)
            await self._write_l2([write.row])

    async def _store(
        self, key: str, value: Any, ttl_seconds: float | None, policy: LoadPolicy
    ) -> Write:
        """``set`` for a load's own result (which supersedes nothing), by its policy."""
        with self.core.observe("hiercache.set", key):
            write = self.core.encode(key, value, ttl_seconds, policy)
            self.core.store_l1(write)
            await self._write_l2([write.row])
            return write

    async def set_many(self, items: Mapping[str, Any], ttl_seconds: float | None = None) -> None:
        """Cache several values; all are validated and encoded before any is stored."""
        rows = self.core.encode_many(items, ttl_seconds)
        for key, _, _ in rows:
            self._flight.supersede(key)
        await self._write_l2(rows)

    async def _write_l2(self, rows: list[Row]) -> None:
        wb = self.write_behind
        if wb is not None:  # queued, never blocking; held while L2 is down
            if not self._initialized:
                await self.initialize()
            for row in rows:
                wb.submit_set(*row)
            return
        l2 = await self._live_l2()
        if l2 is not None:
            op = self.core.announce(l2.op_set_many(rows), [row[0] for row in rows])
            _, error = await l2.aattempt(op)
            if error not in OUTAGE_ERRORS:
                return
        # Write-through that could not reach Redis: the older values there must not come
        # back after recovery.
        for key, _, _ in rows:
            self._defer_delete(key)

    def _defer_delete(self, key: str) -> None:
        if self.core.deferred is not None:
            self.core.deferred.delete(key)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from both tiers; True if either held it."""
        with self.core.observe("hiercache.delete", key):
            self._flight.supersede(check_key(key))
            self.core.shelf.discard(key)  # an explicit delete leaves nothing to serve stale
            in_l1 = self.l1.delete(key, EvictionReason.DELETED)
            if self.write_behind is not None:
                self.write_behind.cancel(key)
            l2 = await self._live_l2()
            if l2 is not None:
                await self._flush_unsent()
                removed, error = await l2.aattempt(self.core.announce(l2.op_delete([key]), [key]))
                if error is None:
                    self.core.removed_from_l2(removed, "deleted")
                    return in_l1 or removed > 0
            self._defer_delete(key)  # Redis could not answer: applied after recovery
            return in_l1

    async def _flush_unsent(self) -> None:
        # unsent, not depth: a batch taken off the queue may still be on its way
        if self.write_behind is not None and self.write_behind.unsent:
            await self.write_behind.aflush()

    async def flush(self) -> None:
        """Wait until every write-behind write queued before it has reached Redis. While
        Redis is down it returns at once: held writes go out after recovery."""
        if self.write_behind is not None:
            await self.write_behind.aflush()

    async def invalidate_pattern(self, pattern: str) -> int:
        """Delete every key matching the glob ``pattern`` in both tiers; returns how many.

        L2 is walked with SCAN and cleared with UNLINK in batches (never KEYS)."""
        with self.core.observe("hiercache.invalidate"):
            removed = set(self.core.invalidate_l1(pattern))
            match = compile_glob(pattern).match
            self._flight.supersede_matching(match)
            if self.write_behind is not None:
                self.write_behind.cancel_matching(match)
            l2 = await self._live_l2()
            if l2 is not None:
                await self._flush_unsent()
                l2_removed = await self._unlink_matching(l2, pattern)
                if l2_removed is not None:
                    self.core.removed_from_l2(len(l2_removed), "invalidated")
                    announcement = self.core.announce_pattern(pattern)
                    if announcement is not None:  # once the keys are gone from Redis
                        await l2.arun(announcement)
                    return len(removed.union(l2_removed))
            if self.core.deferred is not None:  # Redis could not answer: after recovery
                self.core.deferred.invalidate(pattern)
            return len(removed)

    async def _unlink_matching(self, l2: RedisCacheBackend, pattern: str) -> list[str] | None:
        """UNLINK every L2 key matching ``pattern`` (under the prefix); returns the keys,
        or None when a round trip failed."""
        cursor, removed = 0, list[str]()
        while True:
            (cursor, found), error = await l2.aattempt(l2.op_scan(cursor, pattern))
            if error is not None:
                return None
            if found:
                unlinked, error = await l2.aattempt(l2.op_unlink_raw(found))
                if error is not None:
                    return None
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
