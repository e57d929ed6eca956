"""A TCP proxy in front of a real redis-server, to inject network faults at run time.

Modes (switch with ``set_mode`` or the shortcuts, from any thread, while clients are connected):

- ``pass``: bytes flow both ways.
- ``blackhole``: connections stay open (new ones are accepted too), nothing is forwarded and
  nothing is answered: what a partition or a hung server looks like to a client.
- ``delay``: every reply reaches the client ``delay_ms`` later than Redis sent it (latency is
  added, throughput is not limited: replies are queued with their due time).
- ``reset``: every open connection, and every new one, is closed with a TCP RST.

Use the ``redis_proxy`` fixture (``pytest_plugins = ["tcp_proxy"]`` in a test module) or
``run_proxy(host, port)``. The proxy runs an asyncio loop in one daemon thread, listens on a
free loopback port, and is stopped (listener and every connection closed, thread joined)
when the fixture or context manager exits.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import Enum

import pytest

from servers import RedisServer

CHUNK = 64 * 1024


class Mode(str, Enum):
    PASS = "pass"
    BLACKHOLE = "blackhole"
    DELAY = "delay"
    RESET = "reset"


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; see the module docstring for modes."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.mode = Mode.PASS
        self.delay_s = 0.0
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- control (any thread) -----------------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def set_mode(self, mode: Mode | str, delay_ms: float = 0.0) -> None:
        """Switch mode; returns once ``reset`` has reset every open connection."""
        self.delay_s = delay_ms / 1000
        self.mode = Mode(mode)
        if self.mode is Mode.RESET:
            self._call(self._reset_all())

    def pass_through(self) -> None:
        self.set_mode(Mode.PASS)

    def blackhole(self) -> None:
        self.set_mode(Mode.BLACKHOLE)

    def delay(self, ms: float) -> None:
        self.set_mode(Mode.DELAY, ms)

    def reset(self) -> None:
        self.set_mode(Mode.RESET)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    # -- the loop's side ----------------------------------------------------------------
    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _reset_all(self) -> None:
        for client, upstream in list(self._conns):
            _rst(client)
            if upstream is not None:
                _rst(upstream)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._reset_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        entry: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (writer, None)
        try:
            if self.mode is Mode.RESET:
                _rst(writer)
                return
            self._conns.add(entry)
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _rst(writer)
                return
            self._conns.discard(entry)
            entry = (writer, up_writer)
            self._conns.add(entry)
            await asyncio.gather(
                self._requests(reader, up_writer),
                self._replies(up_reader, writer),
                return_exceptions=True,
            )
        finally:
            self._conns.discard(entry)
            for w in entry:
                if w is not None:
                    w.transport.abort()
            self._tasks.discard(task)

    async def _requests(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(CHUNK):
            if self.mode is Mode.BLACKHOLE:
                continue  # swallowed
            dst.write(data)
            await dst.drain()
        dst.transport.abort()

    async def _replies(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send_when_due(queue, dst))
        try:
            while data := await src.read(CHUNK):
                if self.mode is Mode.BLACKHOLE:
                    continue
                delay = self.delay_s if self.mode is Mode.DELAY else 0.0
                queue.put_nowait((time.monotonic() + delay, data))
        finally:
            sender.cancel()
            dst.transport.abort()

    async def _send_when_due(
        self, queue: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter
    ) -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the injected latency itself
            if self.mode is not Mode.BLACKHOLE:
                dst.write(data)
                await dst.drain()


@contextmanager
def run_proxy(upstream_host: str, upstream_port: int) -> Iterator[TcpProxy]:
    """A started proxy in front of ``upstream``; stopped (and its thread joined) on exit."""
    proxy = TcpProxy(upstream_host, upstream_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def redis_proxy(redis_server: RedisServer) -> Iterator[TcpProxy]:
    """A proxy in ``pass`` mode in front of the session redis-server."""
    with run_proxy(redis_server.host, redis_server.port) as proxy:
        yield proxy
