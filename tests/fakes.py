"""Test doubles and observers shared by the test modules."""

from __future__ import annotations

import threading
from typing import Any

from hiercache.singleflight import SingleFlight


class FakeClock:
    """A monotonic clock that moves only when told: drives TTLs and retry intervals."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ObservedFlight(SingleFlight):
    """A SingleFlight that tells the test when callers start waiting on a flight."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()
        self.listening = 0

    def _listen(self, flight: Any, wake: Any) -> None:
        super()._listen(flight, wake)
        with self.cond:
            self.listening += 1
            self.cond.notify_all()

    def wait_listening(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.listening >= n, timeout=30)
