"""Single-flight: concurrent loads of one key run the loader once per process.

One ``SingleFlight`` per cache serves both fronts: asyncio tasks (``ado``) on any event
loop and threads (``do``) join the same flight, so one key loaded from the async and the
sync API at once is loaded once. Each call returns ``(result, shared)``; ``shared`` is
True for callers that waited on another caller's load. A failure reaches every waiter
and is never remembered.

A leader that is cancelled (asyncio) abandons its flight: waiters then start over and one
of them leads. A thread never waits on a flight led from its own thread (an event loop
running in it, or a loader that re-enters the cache for its own key): that would
deadlock, so it loads on its own instead.

A write, delete or invalidation of a key while its load is under way marks the flight
superseded: the load still answers its callers, but stores nothing (as Caffeine does), so
a slow load can never put back a value that was deleted or replaced after it started.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _Flight:
    """One load in progress: its outcome and whoever waits for it."""

    __slots__ = ("abandoned", "done", "error", "result", "superseded", "thread", "waiters")

    def __init__(self) -> None:
        self.done = False
        self.abandoned = False
        self.superseded = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.get_ident()
        self.waiters: list[Callable[[], object]] = []


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class SingleFlight:
    """Coalesces loads of one key across asyncio tasks and threads."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()

    def is_loading(self, key: str) -> bool:
        return key in self._flights

    # -- writes that make a load in flight stale -------------------------------------------
    def supersede(self, key: str) -> None:
        """A write, delete or invalidation of ``key`` happened: a load of it already under
        way must not store its (older) result. Lock-free: one dict lookup."""
        flight = self._flights.get(key)
        if flight is not None:
            flight.superseded = True

    def supersede_matching(self, match: Callable[[str], bool]) -> None:
        """``supersede`` every key under load for which ``match`` is true."""
        with self._lock:
            flights = [(k, f) for k, f in self._flights.items() if match(k)]
        for _, flight in flights:
            flight.superseded = True

    def superseded(self, key: str) -> bool:
        """Whether the load of ``key`` under way was overtaken by a write or invalidation."""
        flight = self._flights.get(key)
        return flight is not None and flight.superseded

    def _join(self, key: str) -> tuple[_Flight, bool]:
        """The flight of ``key`` and whether the caller leads it (a new flight)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                return flight, True
            return flight, False

    def _listen(self, flight: _Flight, wake: Callable[[], object]) -> None:
        """Call ``wake`` once ``flight`` is over (at once if it already is)."""
        with self._lock:
            if not flight.done:
                flight.waiters.append(wake)
                return
        wake()

    def _finish(
        self,
        key: str,
        flight: _Flight,
        result: Any = None,
        error: BaseException | None = None,
        abandoned: bool = False,
    ) -> None:
        with self._lock:
            flight.result, flight.error, flight.abandoned = result, error, abandoned
            flight.done = True
            if self._flights.get(key) is flight:
                del self._flights[key]
            waiters, flight.waiters = flight.waiters, []
        for wake in waiters:
            try:
                wake()
            except RuntimeError:  # a waiter's event loop is closed: nobody left to wake
                pass

    @staticmethod
    def _outcome(flight: _Flight) -> tuple[Any, bool]:
        if flight.error is not None:
            raise flight.error
        return flight.result, True

    async def ado(self, key: str, load: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Run ``load`` unless a load of ``key`` is under way; then share its outcome."""
        while True:
            flight, leader = self._join(key)
            if leader:
                break
            loop = asyncio.get_running_loop()
            woken: asyncio.Future[None] = loop.create_future()
            self._listen(flight, functools.partial(loop.call_soon_threadsafe, _settle, woken))
            await woken  # a cancelled waiter leaves the flight alone
            if not flight.abandoned:
                return self._outcome(flight)
        try:
            result = await load()
        except asyncio.CancelledError:
            self._finish(key, flight, abandoned=True)
            raise
        except BaseException as exc:
            self._finish(key, flight, error=exc)
            raise
        self._finish(key, flight, result)
        return result, False

    def do(self, key: str, load: Callable[[], T]) -> tuple[T, bool]:
        """The blocking twin of ``ado``, for threads."""
        while True:
            flight, leader = self._join(key)
            if leader:
                break
            if flight.thread == threading.get_ident():
                return load(), False  # waiting on ourselves would never end
            woken = threading.Event()
            self._listen(flight, woken.set)
            woken.wait()
            if not flight.abandoned:
                return self._outcome(flight)
        try:
            result = load()
        except BaseException as exc:
            self._finish(key, flight, error=exc)
            raise
        self._finish(key, flight, result)
        return result, False
