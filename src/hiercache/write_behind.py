"""Write-behind: L2 writes queued in a bounded queue and flushed by one thread.

The flusher batches whatever is queued (up to ``batch_size``) into one pipeline, in
order. Deletes and invalidations call ``flush()`` first, so a queued set never
resurrects a key deleted after it. ``flush()`` is a barrier: it returns once everything
queued before it reached Redis. ``close()`` flushes, then stops the thread: nothing
queued is lost on a clean shutdown. The flusher never dies of a failed batch, so a
``flush()`` can never wait forever.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
from typing import Any

from hiercache.redis_tier import RedisCacheBackend

log = logging.getLogger("hiercache")

_SET, _BARRIER, _STOP = "set", "barrier", "stop"


class WriteBehindQueue:
    def __init__(self, backend: RedisCacheBackend, maxsize: int, batch_size: int) -> None:
        self.backend = backend
        self.batch_size = batch_size
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._unsent = 0  # accepted but not yet sent: queued or in the batch being sent
        self._unsent_lock = threading.Lock()
        self.dropped = 0

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def unsent(self) -> int:
        """Writes accepted and not yet sent, including the batch on its way to Redis."""
        return self._unsent

    def _count(self, n: int) -> None:
        with self._unsent_lock:
            self._unsent += n

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="hiercache-write-behind", daemon=True
                    )
                    self._thread.start()
                    # A process that exits without close() still gets its writes out.
                    atexit.register(self.close)

    def submit_set(self, key: str, payload: bytes, ttl_seconds: float) -> bool:
        """Queue a write; False when the queue is full (the caller then writes directly)."""
        self._ensure_thread()
        self._count(1)
        try:
            self._queue.put_nowait((_SET, key, payload, ttl_seconds))
        except queue.Full:
            self._count(-1)
            return False
        return True

    def flush(self) -> None:
        """Block until every write queued before this call has been sent."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put((_BARRIER, done))
        done.wait()

    async def aflush(self) -> None:
        """``flush`` without blocking the event loop."""
        if self._thread is not None:
            await asyncio.to_thread(self.flush)

    async def aclose(self) -> None:
        """``close`` without blocking the event loop."""
        if self._thread is not None:
            await asyncio.to_thread(self.close)

    def close(self) -> None:
        if self._thread is None:
            return
        self.flush()
        self._queue.put((_STOP,))
        self._thread.join()
        self._thread = None
        atexit.unregister(self.close)

    # -- the flusher thread ----------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            writes = [item for item in batch if item[0] == _SET]
            if writes:
                try:
                    self._send(writes)
                except Exception:  # a bug must not kill the flusher: flush() would hang
                    self.dropped += len(writes)
                    log.exception("hiercache: dropped %d write-behind writes", len(writes))
                finally:
                    self._count(-len(writes))
            for item in batch:
                if item[0] == _BARRIER:
                    item[1].set()
            if any(item[0] == _STOP for item in batch):
                return

    def _send(self, writes: list[tuple[Any, ...]]) -> None:
        ok = self.backend.run(self.backend.op_set_many((w[1], w[2], w[3]) for w in writes))
        if not ok:
            self.dropped += len(writes)
            log.warning("hiercache: dropped %d write-behind writes: Redis unavailable", len(writes))
