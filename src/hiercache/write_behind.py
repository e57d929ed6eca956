"""Write-behind: L2 writes held in a bounded, coalescing queue and sent by one thread.

- **Absolute expiry.** A write keeps its deadline (clock + TTL at ``set``) and is sent with
  ``PX`` = what is left; one past it is dropped (reason ``expired``), never sent late.
- **Newest wins per key.** A newer write of a queued key replaces it (and moves to the back).
- **Never blocks.** With the queue full the OLDEST queued write is dropped (``queue_full``):
  ``set`` costs microseconds even when Redis hangs, instead of paying for the outage.
- **Outages.** While the breaker is open nothing is sent: writes wait, bounded by the queue
  size, and go out after recovery. A batch that failed with an outage error goes back to
  the front of the queue (unless a newer write or a delete of its key came meanwhile); one
  refused for another reason (OOM, a bug) is dropped (reason ``error``).
- **Ordering.** Deletes and invalidations ``cancel`` queued writes of their keys, so a held
  write never resurrects a key deleted after it; deletes and invalidations kept during an
  outage (``deferred.py``) are applied before any held write is sent.
- **No stale value.** A write dropped for ``queue_full``, ``expired`` or ``error`` leaves a
  delete of its key in the deferred store: the older value Redis may hold for that key must
  not outlive the newer one that was given up.
- ``flush()`` is a barrier for the writes queued before it; while L2 is down it returns
  early (False) instead of waiting for the outage to end. ``close()`` drains for at most
  ``drain_seconds`` (``write_behind_drain_seconds``): what is left is dropped (reason
  ``shutdown``), counted and logged once.
- **Logs.** One warning when writes start being held; drops summarised at most once a
  minute (``DropSummary``); never a line per failed batch.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hiercache import stats as S
from hiercache.health import OUTAGE_ERRORS, L2State
from hiercache.redis_tier import RedisCacheBackend
from hiercache.settings import CacheConfig
from hiercache.stats import CacheStats

if TYPE_CHECKING:
    from hiercache.deferred import DeferredStore

log = logging.getLogger("hiercache")

#: One write to send: (key, payload, remaining TTL in seconds).
Row = tuple[str, bytes, float]
#: A write whose remaining TTL is below this is dropped as expired (PX is in milliseconds).
MIN_REMAINING_SECONDS = 0.001
#: Drop summaries are logged at most this often.
SUMMARY_SECONDS = 60.0
#: Every queue, so a forked child can reset them (``_after_fork_in_child``).
_QUEUES: weakref.WeakSet[WriteBehindQueue] = weakref.WeakSet()


class DropSummary:
    """Counts dropped writes (``{prefix}.write_behind.dropped``, by reason) and logs them:
    the first drop at once, then at most one summary line per ``every`` seconds."""

    def __init__(
        self, stats: CacheStats, what: str, clock: Callable[[], float], every: float
    ) -> None:
        self.stats = stats
        self.what = what
        self.clock = clock
        self.every = every
        self._since: dict[str, int] = {}
        self._next = float("-inf")
        self._lock = threading.Lock()

    def dropped(self, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.stats.add(S.WB_DROPPED[reason], n)
        with self._lock:
            self._since[reason] = self._since.get(reason, 0) + n
        self.maybe_log()

    def maybe_log(self, force: bool = False) -> None:
        with self._lock:
            now = self.clock()
            if not self._since or (now < self._next and not force):
                return
            since, self._since = self._since, {}
            self._next = now + self.every
        detail = ", ".join(f"{reason}={n}" for reason, n in sorted(since.items()))
        log.warning("hiercache: dropped %d %s (%s)", sum(since.values()), self.what, detail)


@dataclass(slots=True)
class _Write:
    payload: bytes
    deadline: float  # on the cache's clock
    seq: int  # submission order, for flush()'s barrier


class WriteBehindQueue:
    def __init__(
        self,
        backend: RedisCacheBackend,
        maxsize: int,
        batch_size: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        drain_seconds: float = 5.0,
        deferred: DeferredStore | None = None,
    ) -> None:
        self.backend = backend
        self.maxsize = maxsize
        self.batch_size = batch_size
        self.clock = clock
        self.drain_seconds = drain_seconds
        self.deferred = deferred
        self.stats = backend.stats
        self.health = backend.health
        self.summary = DropSummary(self.stats, "write-behind writes", clock, SUMMARY_SECONDS)
        self._pending: OrderedDict[str, _Write] = OrderedDict()
        self._inflight: dict[str, _Write] = {}
        self._cancelled: set[str] = set()  # keys of the batch in flight deleted meanwhile
        # Re-entrant: a SIGTERM handler (shutdown.py) may close the queue on the main
        # thread while that thread is inside submit_set.
        self._cond = threading.Condition(threading.RLock())
        self._seq = 0
        self._stopping = False
        self._holding = False
        self._bug_logged = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.health.add_listener(self._health_changed)
        #: Set by the core when a backplane is on: wraps a batch's op with its message.
        self.announce: Callable[[Any, list[str]], Any] | None = None

        _QUEUES.add(self)

    def _after_fork(self) -> None:
        """In a forked child (``gunicorn --preload``): the parent's flusher does not exist
        here, its queued writes are the parent's to send, and its locks may have been held
        mid-fork. The child starts its own flusher with its first write."""
        self._pending, self._inflight, self._cancelled = OrderedDict(), {}, set()
        self._cond = threading.Condition(threading.RLock())
        self._start_lock = threading.Lock()
        self._thread, self._stopping = None, False
        self.summary = DropSummary(self.stats, "write-behind writes", self.clock, SUMMARY_SECONDS)

    @classmethod
    def from_config(
        cls,
        backend: RedisCacheBackend,
        config: CacheConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        deferred: DeferredStore | None = None,
    ) -> WriteBehindQueue:
        """The queue ``config`` describes (``write_behind_*`` settings)."""
        return cls(
            backend,
            config.write_behind_queue_size,
            config.write_behind_batch_size,
            clock=clock,
            drain_seconds=config.write_behind_drain_seconds,
            deferred=deferred,
        )

    @property
    def depth(self) -> int:
        """Writes queued (held, during an outage), not counting the batch being sent."""
        return len(self._pending)

    @property
    def unsent(self) -> int:
        """Writes accepted and not yet sent, including the batch on its way to Redis."""
        with self._cond:
            return len(self._pending) + len(self._inflight)

    @property
    def dropped(self) -> int:
        """``{prefix}.write_behind.dropped`` (every reason), as ``get_statistics()`` reads it."""
        return self.stats.total("write_behind_dropped")

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._stopping = False
                    self._thread = threading.Thread(
                        target=self._run, name="hiercache-write-behind", daemon=True
                    )
                    self._thread.start()
                    # A process that exits without close() still gets its writes out.
                    atexit.register(self.close)

    def _health_changed(self, state: L2State) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- what the fronts call ----------------------------------------------------------
    def submit_set(self, key: str, payload: bytes, ttl_seconds: float) -> None:
        """Queue a write; never blocks (see the module docstring for a full queue)."""
        self._ensure_thread()
        deadline = self.clock() + ttl_seconds
        with self._cond:
            self._seq += 1
            if self._pending.pop(key, None) is None and len(self._pending) >= self.maxsize:
                self._given_up("queue_full", [self._pending.popitem(last=False)[0]])
            self._pending[key] = _Write(payload, deadline, self._seq)
            self._cond.notify_all()

    def cancel(self, key: str) -> None:
        """Forget queued writes of ``key``: it was deleted after them. One in the batch
        being sent stays there for ``flush()`` (it may land), but is not sent again."""
        with self._cond:
            self._pending.pop(key, None)
            if key in self._inflight:
                self._cancelled.add(key)

    def cancel_matching(self, match: Callable[[str], bool]) -> None:
        """Forget queued writes of the keys ``match`` accepts: they were invalidated."""
        with self._cond:
            for key in [k for k in self._pending if match(k)]:
                del self._pending[key]
            self._cancelled.update(k for k in self._inflight if match(k))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write queued before this call was sent (or given up); True if
        so. Returns early (False) while L2 is down: held writes wait for recovery."""
        if self._thread is None:
            return not self._pending
        return self._wait_sent(timeout, while_down=False)

    def _wait_sent(self, timeout: float | None, while_down: bool) -> bool:
        with self._cond:
            target = self._seq

            def done() -> bool:
                first = next(iter(self._pending.values()), None)
                return (first is None or first.seq > target) and all(
                    w.seq > target for w in self._inflight.values()
                )

            def stop_waiting() -> bool:
                down = not while_down and not self.health.live
                return done() or down or self._thread is None

            self._cond.wait_for(stop_waiting, timeout)
            return done()

    async def aflush(self) -> bool:
        """``flush`` without blocking the event loop."""
        if self._thread is None:
            return not self._pending
        return await asyncio.to_thread(self.flush)

    async def aclose(self, timeout: float | None = None) -> int:
        """``close`` without blocking the event loop."""
        if self._thread is None:
            return 0
        return await asyncio.to_thread(self.close, timeout)

    def close(self, timeout: float | None = None) -> int:
        """Send what is queued, waiting at most ``timeout`` (default ``drain_seconds``),
        then stop the thread. Returns how many writes were left and dropped (``shutdown``)."""
        thread = self._thread
        if thread is None:
            return 0
        self._wait_sent(self.drain_seconds if timeout is None else timeout, while_down=True)
        with self._cond:
            left = len(self._pending) + len(self._inflight)
            self._pending.clear()
            self._inflight.clear()
            self._stopping = True
            self._thread = None
            self._cond.notify_all()
        if left:
            self.stats.add(S.WB_DROPPED["shutdown"], left)  # logged just below, once
            log.warning(
                "hiercache: %d write-behind writes not sent at shutdown: L2 at %s did not "
                "take them within %gs",
                left,
                self.health.target,
                self.drain_seconds if timeout is None else timeout,
            )
        self.summary.maybe_log(force=True)
        if thread is not threading.current_thread():
            # A send stuck on a hung Redis ends within one operation timeout.
            thread.join(self.backend.config.l2_operation_timeout_seconds + 0.5)
        atexit.unregister(self.close)
        return left

    # -- the flusher thread ----------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            rows: list[Row] = []
            now = self.clock()
            expired = []
            for key, write in batch:
                remaining = write.deadline - now
                if remaining < MIN_REMAINING_SECONDS:
                    expired.append(key)
                else:
                    rows.append((key, write.payload, remaining))
            if expired:
                with self._cond:
                    gone = [k for k in expired if self._inflight.pop(k, None)]
                    self._given_up("expired", gone)
            if self.deferred is not None and self.deferred.pending:
                self.deferred.apply()  # deletes kept during an outage go first
            error = self._send_safely(rows) if rows else None
            self._settle(error)

    def _next_batch(self) -> list[tuple[str, _Write]] | None:
        """Wait until there is something to send and L2 is up; take a batch. None: stop."""
        with self._cond:
            while not self._stopping:
                if self._pending and self.health.live:
                    break
                if self._pending and not self._holding:
                    self._holding = True
                    log.warning(
                        "hiercache: L2 at %s is down: holding write-behind writes until it "
                        "is back (at most %d; beyond that the oldest are dropped)",
                        self.health.target,
                        self.maxsize,
                    )
                self._cond.wait(SUMMARY_SECONDS)
                self.summary.maybe_log()
            else:
                return None
            batch: list[tuple[str, _Write]] = []
            while self._pending and len(batch) < self.batch_size:
                key, write = self._pending.popitem(last=False)
                self._inflight[key] = write
                batch.append((key, write))
            return batch

    def _send_safely(self, rows: list[Row]) -> str | None:
        try:
            return self._send(rows)
        except Exception:  # a bug must not kill the flusher: flush() would hang
            if not self._bug_logged:
                self._bug_logged = True
                log.exception("hiercache: a write-behind batch failed")
            return "error"

    def _settle(self, error: str | None) -> None:
        """After a send: forget what went; put an outage's batch back."""
        with self._cond:
            if error is None:
                self._inflight.clear()
                if self._holding:
                    self._holding = False
                    log.info("hiercache: held write-behind writes sent to %s", self.health.target)
            elif error in OUTAGE_ERRORS:
                back = [
                    (k, w)
                    for k, w in self._inflight.items()
                    if k not in self._pending and k not in self._cancelled
                ]
                self._inflight.clear()
                self._pending = OrderedDict([*back, *self._pending.items()])
                excess = len(self._pending) - self.maxsize
                self._given_up(
                    "queue_full", [self._pending.popitem(last=False)[0] for _ in range(excess)]
                )
            else:
                self._given_up("error", list(self._inflight.keys() - self._cancelled))
                self._inflight.clear()
            self._cancelled.clear()
            self._cond.notify_all()

    def _given_up(self, reason: str, keys: list[str]) -> None:
        """Count dropped writes; keep a delete of each key (see "No stale value")."""
        self.summary.dropped(reason, len(keys))
        if self.deferred is not None:
            for key in keys:
                self.deferred.delete(key)

    def _send(self, rows: list[Row]) -> str | None:
        """One pipelined batch; returns the failure's ``error.type``, None if it went.
        With a backplane, the batch's invalidation message rides in the same pipeline."""
        op = self.backend.op_set_many(rows)
        if self.announce is not None:
            op = self.announce(op, [row[0] for row in rows])
        _, error = self.backend.attempt(op)
        return error


def _after_fork_in_child() -> None:
    for wb in list(_QUEUES):
        wb._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
