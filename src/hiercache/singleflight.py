"""Single-flight: concurrent loads of one key run the loader once per process.

``AsyncSingleFlight`` coalesces asyncio tasks, ``ThreadSingleFlight`` coalesces threads.
``do`` returns ``(result, shared)``; ``shared`` is True for callers that waited on
another caller's load. A failure reaches every waiter and is never remembered.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class AsyncSingleFlight:
    def __init__(self) -> None:
        self._calls: dict[str, asyncio.Future[Any]] = {}

    def is_loading(self, key: str) -> bool:
        return key in self._calls

    async def do(self, key: str, load: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        loop = asyncio.get_running_loop()
        while True:
            fut = self._calls.get(key)
            if fut is None or fut.get_loop() is not loop:
                break
            try:
                return await asyncio.shield(fut), True
            except asyncio.CancelledError:
                if not fut.cancelled():
                    raise
                # The leader was cancelled, not us: take over the load.
        fut = self._calls[key] = loop.create_future()
        try:
            result = await load()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            fut.set_result(result)
            return result, False
        finally:
            if self._calls.get(key) is fut:
                del self._calls[key]


class _Call:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class ThreadSingleFlight:
    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}
        self._lock = threading.Lock()

    def do(self, key: str, load: Callable[[], T]) -> tuple[T, bool]:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result, True
        try:
            call.result = load()
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.result, False
