"""L2 reads as single commands: ``GET`` and ``MGET`` without a pipeline, a ``PTTL`` only for
a frame that does not carry its own expiry, and concurrent GETs coalesced into MGETs.

Every frame this version writes carries its expiry in its meta block (``codec.Meta``),
which the core reads for promotion, so a read is one command; a frame without one (written
without a meta block) is asked its remaining TTL, as before.

A ``GET`` that finds no other read in flight is sent at once, as a plain ``GET``: at low
load nothing waits and nothing changes. The reads that arrive while one is in flight
queue, and go together, as one ``MGET``, as soon as it returns; reads arriving meanwhile
form the next batch. Under load, N concurrent gets cost a few round trips instead of N.

A failed round trip fails every read that rode in it (each caller reads it as a miss and
counts its failure, as a failed ``GET`` would); a cancelled reader leaves the others be.
Not for Redis Cluster, where one MGET cannot span hash slots.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Final

from hiercache.codec import HAS_META, HEADER_SIZE

#: At most this many keys go in one MGET; the rest wait for the next.
MAX_BATCH: Final = 512


class GetCoalescer:
    """Coalesces the GETs sent through one asyncio Redis client (one event loop)."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: dict[str, list[asyncio.Future[Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, client: Any, key: str) -> Any:
        """``client.get(key)``, batched with the other reads in flight."""
        if not self._busy:
            self._busy = True
            try:
                return await client.get(key)
            finally:
                self._next(client)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(waiter)
        return await waiter

    def _next(self, client: Any) -> None:
        """The round trip in flight is over: send the next batch, or go idle."""
        if not self._waiting:
            self._busy = False
            return
        keys = list(self._waiting)[:MAX_BATCH]
        batch = {key: self._waiting.pop(key) for key in keys}
        task = asyncio.get_running_loop().create_task(self._send(client, batch))
        self._tasks.add(task)  # a strong reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _send(self, client: Any, batch: dict[str, list[asyncio.Future[Any]]]) -> None:
        try:
            values = await client.mget(list(batch))
        except BaseException as exc:  # every reader in the batch sees the failure
            for waiters in batch.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc if isinstance(exc, Exception) else _cancelled())
            if not isinstance(exc, Exception):
                self._next(client)
                raise
        else:
            for waiters, value in zip(batch.values(), values):
                for waiter in waiters:
                    if not waiter.done():  # a cancelled reader is skipped
                        waiter.set_result(value)
        self._next(client)


def _cancelled() -> Exception:
    return ConnectionError("the coalesced L2 read was cancelled")


_by_client: weakref.WeakKeyDictionary[Any, GetCoalescer] = weakref.WeakKeyDictionary()


def coalescer(client: Any) -> GetCoalescer:
    """The coalescer of an asyncio client (one per client, so one per event loop)."""
    found = _by_client.get(client)
    if found is None:
        found = _by_client[client] = GetCoalescer()
    return found


def without_meta(payload: bytes | None) -> bool:
    """Whether a frame lacks its own expiry (only then is Redis asked for a PTTL)."""
    return payload is not None and not (len(payload) >= HEADER_SIZE and payload[3] & HAS_META)


def get_one(client: Any, rk: str) -> list[Any]:
    """``[payload, pttl]`` of one key on a sync client (pttl -1 when not asked)."""
    payload = client.get(rk)
    return [payload, client.pttl(rk) if without_meta(payload) else -1]


async def aget_one(client: Any, rk: str, coalesce: bool) -> list[Any]:
    """``get_one`` on an asyncio client, coalesced with concurrent reads if ``coalesce``."""
    payload = await (coalescer(client).get(client, rk) if coalesce else client.get(rk))
    return [payload, await client.pttl(rk) if without_meta(payload) else -1]


def get_many(client: Any, rks: list[str]) -> list[Any]:
    """``[payloads, pttl, pttl, ...]``: one MGET, and a PTTL per frame without expiry."""
    values = client.mget(rks)
    return [values, *(client.pttl(rk) if without_meta(v) else -1 for rk, v in zip(rks, values))]


async def aget_many(client: Any, rks: list[str]) -> list[Any]:
    values = await client.mget(rks)
    return [
        values,
        *[await client.pttl(rk) if without_meta(v) else -1 for rk, v in zip(rks, values)],
    ]
