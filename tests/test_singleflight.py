"""Single-flight: one load per key, errors shared and forgotten, cancelled leaders replaced."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from hiercache import singleflight
from hiercache.singleflight import AsyncSingleFlight, ThreadSingleFlight


class Boom(Exception):
    pass


async def join(
    flight: AsyncSingleFlight, key: str, load: Any, started: asyncio.Event
) -> tuple[Any, bool]:
    """Call ``do``; ``started`` is set just before, and the caller resumes only after this
    task has suspended inside ``do`` (an event wakes its waiters on a later loop turn)."""
    started.set()
    return await flight.do(key, load)


# -- asyncio -----------------------------------------------------------------------
async def test_one_load_result_shared() -> None:
    flight = AsyncSingleFlight()
    gate, in_load = asyncio.Event(), asyncio.Event()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        in_load.set()
        await gate.wait()
        return "value"

    leader = asyncio.create_task(flight.do("k", load))
    await in_load.wait()
    assert flight.is_loading("k")
    waiters = []
    for _ in range(5):
        started = asyncio.Event()
        waiters.append(asyncio.create_task(join(flight, "k", load, started)))
        await started.wait()
    gate.set()
    assert await leader == ("value", False)
    assert [await w for w in waiters] == [("value", True)] * 5
    assert calls == 1
    assert not flight.is_loading("k")


async def test_different_keys_do_not_share() -> None:
    flight = AsyncSingleFlight()

    async def load_a() -> str:
        return "a"

    async def load_b() -> str:
        return "b"

    assert await asyncio.gather(flight.do("a", load_a), flight.do("b", load_b)) == [
        ("a", False),
        ("b", False),
    ]


async def test_error_reaches_all_waiters_and_is_not_remembered() -> None:
    flight = AsyncSingleFlight()
    gate, in_load = asyncio.Event(), asyncio.Event()
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        in_load.set()
        await gate.wait()
        raise Boom("backend down")

    leader = asyncio.create_task(flight.do("k", failing))
    await in_load.wait()
    waiters = []
    for _ in range(3):
        started = asyncio.Event()
        waiters.append(asyncio.create_task(join(flight, "k", failing, started)))
        await started.wait()
    gate.set()
    results = await asyncio.gather(leader, *waiters, return_exceptions=True)
    assert all(isinstance(r, Boom) and str(r) == "backend down" for r in results)
    assert calls == 1
    assert not flight.is_loading("k")

    async def ok() -> str:
        return "recovered"

    assert await flight.do("k", ok) == ("recovered", False)  # the error was not kept


async def test_cancelled_leader_lets_a_waiter_take_over() -> None:
    flight = AsyncSingleFlight()
    in_load = asyncio.Event()
    never = asyncio.Event()

    async def stuck() -> str:
        in_load.set()
        await never.wait()
        return "never"

    waiter_loads = 0

    async def waiter_load() -> str:
        nonlocal waiter_loads
        waiter_loads += 1
        return "from waiter"

    leader = asyncio.create_task(flight.do("k", stuck))
    await in_load.wait()
    started = asyncio.Event()
    waiter = asyncio.create_task(join(flight, "k", waiter_load, started))
    await started.wait()
    assert not waiter.done()
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await waiter == ("from waiter", False)
    assert waiter_loads == 1
    assert not flight.is_loading("k")


async def test_cancelled_waiter_does_not_cancel_the_load() -> None:
    flight = AsyncSingleFlight()
    gate, in_load = asyncio.Event(), asyncio.Event()

    async def load() -> str:
        in_load.set()
        await gate.wait()
        return "done"

    leader = asyncio.create_task(flight.do("k", load))
    await in_load.wait()
    started = asyncio.Event()
    waiter = asyncio.create_task(join(flight, "k", load, started))
    await started.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    assert await leader == ("done", False)


async def test_a_future_from_another_loop_is_ignored() -> None:
    flight = AsyncSingleFlight()
    other_loop = asyncio.new_event_loop()
    try:
        flight._calls["k"] = other_loop.create_future()

        async def load() -> int:
            return 1

        assert await flight.do("k", load) == (1, False)
    finally:
        other_loop.close()


# -- threads -----------------------------------------------------------------------
class CountingEvent(threading.Event):
    """An Event that reports how many threads are blocked in ``wait``."""

    waiting = 0
    cond = threading.Condition()

    def wait(self, timeout: float | None = None) -> bool:
        with CountingEvent.cond:
            CountingEvent.waiting += 1
            CountingEvent.cond.notify_all()
        return super().wait(timeout)


@pytest.fixture
def counted_calls(monkeypatch: pytest.MonkeyPatch) -> type[CountingEvent]:
    class Call(singleflight._Call):
        def __init__(self) -> None:
            super().__init__()
            self.done = CountingEvent()

    CountingEvent.waiting = 0
    monkeypatch.setattr(singleflight, "_Call", Call)
    return CountingEvent


def run_threads(
    flight: ThreadSingleFlight, n: int, key: str, load: Any
) -> tuple[list[threading.Thread], list[Any]]:
    out: list[Any] = [None] * n

    def worker(i: int) -> None:
        try:
            out[i] = flight.do(key, load)
        except BaseException as exc:
            out[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, out


def test_threads_share_one_load(counted_calls: type[CountingEvent]) -> None:
    flight = ThreadSingleFlight()
    release = threading.Event()
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        assert release.wait(timeout=30)
        return "v"

    threads, out = run_threads(flight, 6, "k", load)
    with counted_calls.cond:
        assert counted_calls.cond.wait_for(lambda: counted_calls.waiting == 5, timeout=30)
    release.set()
    for t in threads:
        t.join(timeout=30)
    assert calls == 1
    assert sorted(out, key=lambda r: r[1]) == [("v", False)] + [("v", True)] * 5


def test_thread_error_reaches_all_waiters_and_is_not_remembered(
    counted_calls: type[CountingEvent],
) -> None:
    flight = ThreadSingleFlight()
    release = threading.Event()
    calls = 0

    def failing() -> str:
        nonlocal calls
        calls += 1
        assert release.wait(timeout=30)
        raise Boom("nope")

    threads, out = run_threads(flight, 4, "k", failing)
    with counted_calls.cond:
        assert counted_calls.cond.wait_for(lambda: counted_calls.waiting == 3, timeout=30)
    release.set()
    for t in threads:
        t.join(timeout=30)
    assert calls == 1
    assert all(isinstance(r, Boom) for r in out)
    assert flight.do("k", lambda: "fresh") == ("fresh", False)
