"""L2 health: one small state machine per cache, shared by both fronts and the backend.

States::

    STARTING --probe ok--> UP --connection failure--> DEGRADED --any success--> UP
        |                   ^                            |
        +--probe failed--> DOWN <--------probe failed----+ (only probes run while DOWN)
                            |
                            +--probe ok (every retry_interval)--> UP

While ``STARTING`` or ``DOWN`` the cache runs L1-only and pings L2 at most once per
``retry_interval`` (``probe_due``). ``UP`` and ``DEGRADED`` both use L2; ``l2_up`` reads 1
only when ``UP``. Each change that matters to an operator is logged once: down, back.
No I/O here: the caller sends the ping and reports its answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum

log = logging.getLogger("hiercache")


class L2State(str, Enum):
    STARTING = "starting"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


class L2Health:
    """The health of one cache's L2. Thread-safe; every method is O(1)."""

    def __init__(
        self,
        target: str,
        name: str,
        retry_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target  # safe to log: redis_target holds no credentials
        self.name = name
        self.retry_interval = retry_interval
        self.clock = clock
        self.state = L2State.STARTING
        self._next_probe = 0.0
        self._down_reported = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"L2Health({self.target!r}, {self.state.value})"

    @property
    def live(self) -> bool:
        """Whether operations use L2 (it answered a probe and no probe has failed since)."""
        return self.state is L2State.UP or self.state is L2State.DEGRADED

    @property
    def up(self) -> bool:
        """What ``l2_up`` reports: live, and the last operation reached Redis."""
        return self.state is L2State.UP

    def probe_due(self) -> bool:
        """True when L2 is not live and a ping is due; the caller then sends one."""
        if self.live:
            return False
        with self._lock:
            now = self.clock()
            if now < self._next_probe:
                return False
            self._next_probe = now + self.retry_interval
            return True

    def probed(self, ok: bool) -> None:
        """Record a ping's answer: one warning when L2 is down, one note when it is back."""
        with self._lock:
            self.state = L2State.UP if ok else L2State.DOWN
            if not ok and not self._down_reported:
                self._down_reported = True
                log.warning(
                    "hiercache: Redis not available at %s; running L1-only (cache %r), "
                    "retrying every %gs",
                    self.target,
                    self.name,
                    self.retry_interval,
                )
            elif ok and self._down_reported:
                self._down_reported = False
                log.warning(
                    "hiercache: Redis at %s is available again (cache %r)", self.target, self.name
                )

    def succeeded(self) -> None:
        """An operation reached Redis."""
        if self.state is not L2State.UP and self.state is not L2State.DOWN:
            self.state = L2State.UP

    def failed(self, error_type: str) -> None:
        """An operation failed; a lost connection marks L2 degraded (logged once)."""
        if error_type != "connection":
            return
        with self._lock:
            if self.state is L2State.UP:
                log.warning("hiercache: Redis at %s unreachable (%s)", self.target, error_type)
                self.state = L2State.DEGRADED
