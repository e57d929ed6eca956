"""Deletes and invalidations that could not reach L2, kept and applied after recovery.

While the breaker is open (or a delete's round trip failed), ``delete`` and
``invalidate_pattern`` clear L1 and record the operation here: deduplicated, in order,
bounded by ``l2_deferred_max_size`` (beyond it the oldest is dropped and counted,
``{prefix}.write_behind.dropped{cache.drop.reason="deferred_overflow"}``). Each is counted
in ``{prefix}.l2.deferred`` by ``cache.operation`` (delete, invalidate). A write-behind write
given up (``queue_full``, ``expired``, ``error``) and a write-through write that could not
reach Redis keep a delete of their key here too, so an older value in Redis cannot outlive
them.

When the breaker closes, a background thread applies them on the sync client (so an
asyncio application and a threaded one behave alike); the write-behind flusher also
applies them before it sends a held write, so a write made after a delete lands after it.
An operation that fails again stays for the next recovery; one refused for another reason
than an outage is dropped (reason ``error``). A process that exits before Redis comes back
loses what is kept here: the keys then live in Redis until their TTL.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from itertools import islice
from typing import Literal

from hiercache import stats as S
from hiercache.health import OUTAGE_ERRORS, L2State
from hiercache.redis_tier import RedisCacheBackend
from hiercache.write_behind import SUMMARY_SECONDS, DropSummary

log = logging.getLogger("hiercache")

Kind = Literal["delete", "invalidate"]
#: One kept operation: ("delete", key) or ("invalidate", pattern).
Deferred = tuple[Kind, str]
#: Kept deletes in a row are applied together, this many keys to one UNLINK.
DELETE_BATCH = 500


class DeferredStore:
    def __init__(self, backend: RedisCacheBackend, max_size: int) -> None:
        self.backend = backend
        self.max_size = max_size
        self.stats = backend.stats
        self.summary = DropSummary(
            self.stats, "deferred deletes and invalidations", backend.health.clock, SUMMARY_SECONDS
        )
        self._ops: OrderedDict[Deferred, int] = OrderedDict()  # -> generation
        self._generation = 0
        self._lock = threading.Lock()
        self._apply_lock = threading.Lock()  # one applier at a time
        self._thread: threading.Thread | None = None
        backend.health.add_listener(self._health_changed)

    @property
    def pending(self) -> int:
        return len(self._ops)

    def kept(self) -> list[Deferred]:
        """The kept operations, oldest first (for diagnostics and tests)."""
        with self._lock:
            return list(self._ops)

    def delete(self, key: str) -> None:
        self._add(("delete", key))

    def invalidate(self, pattern: str) -> None:
        self._add(("invalidate", pattern))

    def _add(self, op: Deferred) -> None:
        self.stats.add(S.DEFERRED[op[0]])
        with self._lock:
            self._generation += 1
            if self._ops.pop(op, None) is None and len(self._ops) >= self.max_size:
                self._ops.popitem(last=False)
                overflow = True
            else:
                overflow = False
            self._ops[op] = self._generation  # the newest position: after earlier writes
        if overflow:
            self.summary.dropped("deferred_overflow")

    # -- applying ------------------------------------------------------------------------
    def _health_changed(self, state: L2State) -> None:
        if state is L2State.CLOSED and self._ops:
            with self._lock:
                if self._thread is not None and self._thread.is_alive():
                    return
                self._thread = threading.Thread(
                    target=self.apply, name="hiercache-deferred", daemon=True
                )
                self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for a background apply under way (for shutdown and tests)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def apply(self) -> bool:
        """Apply every kept operation, oldest first, on the sync client (deletes in a row
        share one UNLINK). True when none is left; stops at the first outage (what is left
        waits for the next recovery)."""
        with self._apply_lock:
            applied = 0
            while True:
                with self._lock:
                    if not self._ops:
                        break
                    batch = list(islice(self._ops.items(), DELETE_BATCH))
                if batch[0][0][0] == "delete":
                    batch = _leading_deletes(batch)
                    error = self._delete([key for (_, key), _ in batch])
                else:
                    batch = batch[:1]
                    error = self._invalidate(batch[0][0][1])
                if error in OUTAGE_ERRORS:
                    return False
                with self._lock:
                    for op, generation in batch:
                        if self._ops.get(op) == generation:  # not re-added meanwhile
                            del self._ops[op]
                if error is not None:
                    self.summary.dropped("error", len(batch))
                else:
                    applied += len(batch)
            if applied:
                log.info("hiercache: applied %d deferred deletes and invalidations", applied)
            return True

    def _delete(self, keys: list[str]) -> str | None:
        removed, error = self.backend.attempt(self.backend.op_delete(keys))
        if error is None:
            self.stats.add(S.EVICTION[S.L2, "deleted"], removed)
        return error

    def _invalidate(self, pattern: str) -> str | None:
        l2 = self.backend
        cursor = 0
        while True:
            (cursor, found), error = l2.attempt(l2.op_scan(cursor, pattern))
            if error is not None:
                return error
            if found:
                removed, error = l2.attempt(l2.op_unlink_raw(found))
                if error is not None:
                    return error
                self.stats.add(S.EVICTION[S.L2, "invalidated"], removed)
            if cursor == 0:
                return None


def _leading_deletes(batch: list[tuple[Deferred, int]]) -> list[tuple[Deferred, int]]:
    """The deletes at the head of ``batch``, up to its first invalidation."""
    for i, ((kind, _), _) in enumerate(batch):
        if kind != "delete":
            return batch[:i]
    return batch
