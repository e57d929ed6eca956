"""Single-flight: one load per key, errors shared and forgotten, cancelled leaders replaced."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from fakes import ObservedFlight
from hiercache.singleflight import SingleFlight


class Boom(Exception):
    pass


async def join(
    flight: SingleFlight, key: str, load: Any, started: asyncio.Event
) -> tuple[Any, bool]:
    """Call ``ado``; ``started`` is set just before, and the caller resumes only after this
    task has suspended inside ``do`` (an event wakes its waiters on a later loop turn)."""
    started.set()
    return await flight.ado(key, load)


# -- asyncio -----------------------------------------------------------------------
async def test_one_load_result_shared() -> None:
    flight = SingleFlight()
    gate, in_load = asyncio.Event(), asyncio.Event()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        in_load.set()
        await gate.wait()
        return "value"

    leader = asyncio.create_task(flight.ado("k", load))
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
    flight = SingleFlight()

    async def load_a() -> str:
        return "a"

    async def load_b() -> str:
        return "b"

    assert await asyncio.gather(flight.ado("a", load_a), flight.ado("b", load_b)) == [
        ("a", False),
        ("b", False),
    ]


async def test_error_reaches_all_waiters_and_is_not_remembered() -> None:
    flight = SingleFlight()
    gate, in_load = asyncio.Event(), asyncio.Event()
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        in_load.set()
        await gate.wait()
        raise Boom("backend down")

    leader = asyncio.create_task(flight.ado("k", failing))
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

    assert await flight.ado("k", ok) == ("recovered", False)  # the error was not kept


async def test_cancelled_leader_lets_a_waiter_take_over() -> None:
    flight = SingleFlight()
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

    leader = asyncio.create_task(flight.ado("k", stuck))
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
    flight = SingleFlight()
    gate, in_load = asyncio.Event(), asyncio.Event()

    async def load() -> str:
        in_load.set()
        await gate.wait()
        return "done"

    leader = asyncio.create_task(flight.ado("k", load))
    await in_load.wait()
    started = asyncio.Event()
    waiter = asyncio.create_task(join(flight, "k", load, started))
    await started.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    assert await leader == ("done", False)


# -- both fronts -----------------------------------------------------------------------
async def test_a_thread_waits_on_an_async_leader() -> None:
    flight = ObservedFlight()
    gate = asyncio.Event()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "from-async"

    leader = asyncio.create_task(flight.ado("k", load))
    await asyncio.sleep(0)
    assert flight.is_loading("k")
    thread_out: list[Any] = []
    worker = threading.Thread(target=lambda: thread_out.append(flight.do("k", lambda: "own")))
    worker.start()
    await asyncio.to_thread(flight.wait_listening, 1)  # the thread has joined the flight
    gate.set()
    assert await leader == ("from-async", False)
    await asyncio.to_thread(worker.join, 30)
    assert thread_out == [("from-async", True)]
    assert calls == 1


async def test_a_task_waits_on_a_thread_leader() -> None:
    flight = ObservedFlight()
    release = threading.Event()
    entered = threading.Event()

    def load() -> str:
        entered.set()
        assert release.wait(timeout=30)
        return "from-thread"

    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(flight.do("k", load)))
    worker.start()
    await asyncio.to_thread(entered.wait, 30)

    async def never() -> str:
        raise AssertionError("the thread leads this flight")

    waiter = asyncio.create_task(flight.ado("k", never))
    await asyncio.to_thread(flight.wait_listening, 1)
    release.set()
    assert await waiter == ("from-thread", True)
    await asyncio.to_thread(worker.join, 30)
    assert out == [("from-thread", False)]


async def test_waiters_on_another_event_loop_are_woken() -> None:
    flight = ObservedFlight()
    gate = asyncio.Event()

    async def load() -> int:
        await gate.wait()
        return 7

    leader = asyncio.create_task(flight.ado("k", load))
    await asyncio.sleep(0)
    out: list[Any] = []

    async def other_loop_waiter() -> None:
        out.append(await flight.ado("k", load))

    worker = threading.Thread(target=lambda: asyncio.run(other_loop_waiter()))
    worker.start()
    await asyncio.to_thread(flight.wait_listening, 1)
    gate.set()
    assert await leader == (7, False)
    await asyncio.to_thread(worker.join, 30)
    assert out == [(7, True)]


def test_a_thread_never_waits_on_its_own_flight() -> None:
    """A loader that re-enters for its own key loads again instead of deadlocking."""
    flight = SingleFlight()
    depth = 0

    def load() -> int:
        nonlocal depth
        depth += 1
        if depth == 1:
            return flight.do("k", load)[0] + 1
        return 1

    assert flight.do("k", load) == (2, False)
    assert not flight.is_loading("k")


# -- threads -----------------------------------------------------------------------
def run_threads(
    flight: SingleFlight, n: int, key: str, load: Any
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


def test_threads_share_one_load() -> None:
    flight = ObservedFlight()
    release = threading.Event()
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        assert release.wait(timeout=30)
        return "v"

    threads, out = run_threads(flight, 6, "k", load)
    flight.wait_listening(5)
    release.set()
    for t in threads:
        t.join(timeout=30)
    assert calls == 1
    assert sorted(out, key=lambda r: r[1]) == [("v", False)] + [("v", True)] * 5


def test_thread_error_reaches_all_waiters_and_is_not_remembered() -> None:
    flight = ObservedFlight()
    release = threading.Event()
    calls = 0

    def failing() -> str:
        nonlocal calls
        calls += 1
        assert release.wait(timeout=30)
        raise Boom("nope")

    threads, out = run_threads(flight, 4, "k", failing)
    flight.wait_listening(3)
    release.set()
    for t in threads:
        t.join(timeout=30)
    assert calls == 1
    assert all(isinstance(r, Boom) for r in out)
    assert flight.do("k", lambda: "fresh") == ("fresh", False)
