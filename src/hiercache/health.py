"""L2 health: a circuit breaker, one per cache, shared by both fronts and the backend.

States::

    STARTING --first ping ok--> CLOSED --N outage failures in a row--> OPEN
        |                         ^                                     |
        +--first ping failed------|------------------------------> OPEN |
                                  |                                     | after open_seconds
                                  +------ping ok------ HALF_OPEN <------+
                                                         |
                                                         +--ping failed--> OPEN

Only ``CLOSED`` uses L2: while ``OPEN`` or ``HALF_OPEN`` every operation skips it at the
cost of one attribute read, and ``l2_up`` reads 0. Outage-class errors (timeout,
connection, and topology until the primary is found again) count towards opening; a
success resets the count; other errors (a refused write, a wrong type) leave it alone.
The half-open ping is sent by the backend's prober thread (``prober.py``), never by a
caller. Opening and closing are logged once each as warnings; the half-open round trips
of a long outage only at debug level, so an outage is two lines. No I/O here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Final

log = logging.getLogger("hiercache")

#: Error types that mean "L2 is not answering": they open the breaker.
OUTAGE_ERRORS: Final = frozenset({"timeout", "connection", "topology"})


class L2State(str, Enum):
    STARTING = "starting"
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: The ``l2.breaker.state`` gauge: 0 closed, 1 half-open, 2 open (starting counts as open).
BREAKER_GAUGE: Final = {
    L2State.CLOSED: 0,
    L2State.HALF_OPEN: 1,
    L2State.OPEN: 2,
    L2State.STARTING: 2,
}


Listener = Callable[["L2State"], None]


class L2Health:
    """The breaker of one cache's L2. Thread-safe; the success path takes no lock."""

    def __init__(
        self,
        target: str,
        name: str,
        *,
        failures: int = 5,
        open_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self.target = target  # safe to log: redis_target holds no credentials
        self.name = name
        self.failure_threshold = failures
        self.open_seconds = open_seconds
        self.clock = clock
        self.state = L2State.STARTING
        self.consecutive_failures = 0
        self.opened = 0  # how many times the breaker has opened
        self._on_open = on_open  # counts openings (the l2.breaker.openings counter)
        self._opened_at = 0.0
        self._ever_closed = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listeners: list[Listener] = []

    def __repr__(self) -> str:
        return f"L2Health({self.target!r}, {self.state.value})"

    @property
    def live(self) -> bool:
        """Whether operations use L2 now."""
        return self.state is L2State.CLOSED

    @property
    def up(self) -> bool:
        """What ``l2_up`` reports."""
        return self.state is L2State.CLOSED

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(state)`` after every state change (on the thread that made it)."""
        self._listeners.append(listener)

    def wait_live(self, timeout: float) -> bool:
        """Block until the breaker is closed, at most ``timeout`` seconds; True if it is."""
        with self._changed:
            return self._changed.wait_for(lambda: self.state is L2State.CLOSED, timeout)

    # -- what the backend reports ----------------------------------------------------------
    def succeeded(self) -> None:
        """An operation (or a probe) reached Redis."""
        if self.state is L2State.CLOSED and not self.consecutive_failures:
            return  # the hot path: nothing to change
        self._move(L2State.CLOSED, reset=True)

    def failed(self, error_type: str) -> None:
        """An operation failed with ``error_type`` (see ``l2_errors``)."""
        if error_type not in OUTAGE_ERRORS:
            return
        with self._lock:
            self.consecutive_failures += 1
            state = self.state
            opens = state is not L2State.CLOSED or (
                self.consecutive_failures >= self.failure_threshold
            )
        if opens and state is not L2State.OPEN:
            self._move(L2State.OPEN)

    def probed(self, ok: bool) -> None:
        """Record a ping's answer (at start, or half-open): closed if ok, else open."""
        self._move(L2State.CLOSED if ok else L2State.OPEN, reset=ok)

    def probe_due(self) -> bool:
        """True when the breaker is open and its ping is due: it goes half-open, and the
        caller (the prober) sends one ping and reports it. At start a ping is always due."""
        with self._lock:
            if self.state is L2State.STARTING:
                return True
            if self.state is not L2State.OPEN:
                return False
            if self.clock() < self._opened_at + self.open_seconds:
                return False
        self._move(L2State.HALF_OPEN)
        return True

    def seconds_until_probe(self) -> float:
        """How long the prober should wait before asking ``probe_due`` again."""
        if self.state is not L2State.OPEN:
            return self.open_seconds
        return max(0.0, self._opened_at + self.open_seconds - self.clock())

    # -- transitions -------------------------------------------------------------------
    def _move(self, state: L2State, reset: bool = False) -> None:
        with self._changed:
            previous = self.state
            if reset:
                self.consecutive_failures = 0
            if previous is state:
                return
            self.state = state
            if state is L2State.OPEN:
                self._opened_at = self.clock()
                self.opened += 1
                if self._on_open is not None:
                    self._on_open()
            elif state is L2State.CLOSED:
                self._ever_closed = True
            self._changed.notify_all()
        self._log(previous, state)
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:  # a listener's bug must not break the breaker
                log.exception("hiercache: L2 health listener failed")

    def _log(self, previous: L2State, state: L2State) -> None:
        target, name = self.target, self.name
        if state is L2State.OPEN and previous is L2State.STARTING:
            log.warning(
                "hiercache: Redis not available at %s; running L1-only (cache %r), "
                "retrying every %gs",
                target,
                name,
                self.open_seconds,
            )
        elif state is L2State.OPEN and previous is L2State.CLOSED:
            log.warning(
                "hiercache: Redis at %s unreachable: circuit open, running L1-only (cache %r), "
                "retrying every %gs",
                target,
                name,
                self.open_seconds,
            )
        elif state is L2State.CLOSED and previous is not L2State.STARTING:
            log.warning("hiercache: Redis at %s is available again (cache %r)", target, name)
        else:  # half-open and back to open: once per open_seconds while down, so not a warning
            log.debug("hiercache: L2 breaker %s -> %s (cache %r)", previous.value, state, name)
