"""The half-open probe: a daemon thread that pings L2 while the breaker is open.

It sleeps until the breaker opens, then every ``open_seconds`` moves it to half-open,
sends one ping on the sync client and reports the answer. No caller ever waits for a
probe, and a blackholed Redis costs the prober, not a request, its timeout.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

from hiercache.health import L2Health, L2State

#: How often an open breaker's prober looks at the clock (only while it is open).
POLL_SECONDS = 0.1
#: Every prober, so a forked child can reset them (see ``_after_fork_in_child``).
_PROBERS: weakref.WeakSet[Prober] = weakref.WeakSet()


class Prober:
    def __init__(self, health: L2Health, ping: Callable[[], bool]) -> None:
        self.health = health
        self.ping = ping
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        health.add_listener(self._changed)
        _PROBERS.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread does not exist here; start our own if the
        breaker is open (otherwise nothing would ever probe and close it)."""
        self._thread = None
        self._wake, self._stop, self._lock = threading.Event(), threading.Event(), threading.Lock()
        self.resume()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def resume(self) -> None:
        """Start probing again if the breaker is open (after a ``close()`` and reuse)."""
        if self.health.state is L2State.OPEN:
            self._ensure_thread()

    def _changed(self, state: L2State) -> None:
        if state is L2State.OPEN:
            self._wake.set()
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="hiercache-l2-prober", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        health = self.health
        while not self._stop.is_set():
            if health.state is not L2State.OPEN:
                self._wake.wait()  # until the breaker opens again (or close())
                self._wake.clear()
                continue
            # Re-read the clock at least every POLL_SECONDS (it may be a test's fake clock).
            self._stop.wait(min(health.seconds_until_probe(), POLL_SECONDS))
            if not self._stop.is_set() and health.probe_due():
                health.probed(self.ping())

    def close(self) -> None:
        """Stop the thread (a later open starts a new one)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            self._stop.clear()
            self._wake.clear()


def _after_fork_in_child() -> None:
    for prober in list(_PROBERS):
        prober._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
