"""The few primitives that differ between the asyncio and the blocking front, in pairs.

The fronts are one source (``_async/``) and its generated twin (``_sync/``, see
``scripts/unasync.py``): where the async code says ``await aresolve(x)`` or
``AsyncBackground``, the sync code says ``resolve(x)`` or ``SyncBackground``. Every pair
below is that substitution's other half.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

T = TypeVar("T")


async def aresolve(result: Awaitable[T] | T) -> T:
    """Await ``result`` if a caller's function returned an awaitable (sync ones are fine)."""
    if inspect.isawaitable(result):
        return await result
    return result


def resolve(result: T) -> T:
    """A sync function's result; an awaitable is refused (it needs the async API)."""
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # no "coroutine was never awaited" warning on top of the error
        raise TypeError(
            "the sync API got an awaitable from a loader; "
            "use the async API (await cache.get_or_load(...)) for async loaders"
        )
    return result


async def agather_limited(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run ``calls`` concurrently, at most ``limit`` at once; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(call) for call in calls)))


def gather_limited(calls: Sequence[Callable[[], T]], limit: int) -> list[T]:
    """Run ``calls`` one after another (a thread has no cheaper concurrency)."""
    return [call() for call in calls]


async def asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


class AsyncDetached(Generic[T]):
    """Work that goes on after its caller stops waiting (a shared load; a refresh)."""

    _alive: ClassVar[set[asyncio.Task[Any]]] = set()  # a task nobody holds may be collected

    def __init__(self, run: Callable[[], Awaitable[T]]) -> None:
        async def body() -> T:
            return await run()

        self._task = asyncio.get_running_loop().create_task(body())
        self._alive.add(self._task)
        self._task.add_done_callback(self._finished)

    @classmethod
    def _finished(cls, task: asyncio.Task[Any]) -> None:
        cls._alive.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an unwatched failure is not "never retrieved"

    async def result(self, timeout: float | None) -> T:
        """Its result, waiting at most ``timeout`` seconds (``TimeoutError``); the work
        itself is never cancelled by the wait."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:  # a distinct class before Python 3.11
            raise TimeoutError from None


class SyncDetached(Generic[T]):
    """Work that goes on after its caller stops waiting, in a daemon thread."""

    def __init__(self, run: Callable[[], T]) -> None:
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        thread = threading.Thread(target=self._run, args=(run,), daemon=True)
        thread.name = "hiercache-detached"
        thread.start()

    def _run(self, run: Callable[[], T]) -> None:
        try:
            self._result = run()
        except BaseException as exc:
            self._error = exc
        finally:
            self._done.set()

    def result(self, timeout: float | None) -> T:
        if not self._done.wait(timeout):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[no-any-return]


class AsyncBackground:
    """One background loop as a task on the running event loop."""

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._task is not None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self, run: Callable[[], Awaitable[Any]]) -> None:
        self._stopped = False
        self._task = asyncio.get_running_loop().create_task(run())  # type: ignore[arg-type]

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def stop(self) -> None:
        if self._task is not None:
            # The flag ends the loop even if the cancellation is swallowed on the way
            # (redis-py's asyncio client can lose one that lands mid-command).
            self._stopped = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class SyncBackground:
    """One background loop in a daemon thread."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._run: Callable[[], Any] | None = None
        _BACKGROUNDS.add(self)

    def _after_fork(self) -> None:
        """In a forked child (``gunicorn --preload``): the parent's thread does not exist
        here; a loop that was running runs on in a thread of the child's own."""
        self._stop = threading.Event()
        if self._thread is not None and self._run is not None:
            self.start(self._run)

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def start(self, run: Callable[[], Any]) -> None:
        self._run = run
        self._stop.clear()
        self._thread = threading.Thread(target=run, name="hiercache-background", daemon=True)
        self._thread.start()

    def pause(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            if self._thread is not threading.current_thread():
                self._thread.join()
            self._thread = None


#: Every background loop, so a forked child can restart them (``SyncBackground._after_fork``).
_BACKGROUNDS: weakref.WeakSet[SyncBackground] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for background in list(_BACKGROUNDS):
        background._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
