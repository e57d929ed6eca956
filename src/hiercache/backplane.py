"""The backplane: L1 coherence across processes over Redis pub/sub.

Every cache on a Redis publishes what it changed (keys, a pattern, a clear) on its
namespace's channel, ``hiercache:bp:<key_prefix>``, *after* the Redis write has landed (in
the same pipeline as the write, or from the write-behind flusher once its batch is in).
Every other cache of that namespace drops the matching L1 entries when the message
arrives; a cache ignores its own messages (each carries its origin id).

One subscriber per process and Redis serves every cache there (one ``PSUBSCRIBE`` on the
channel prefix, read by a daemon thread with the sync client): both fronts of a cache, and
all caches, share it. When the subscription drops, messages may be lost: each cache is told
(``link_down``), bounds the staleness of what it holds, and drops its L1 once when the link
is back (``link_up``: a resync).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import orjson
import redis

log = logging.getLogger("hiercache")

CHANNEL_PREFIX: Final = "hiercache:bp:"
#: How long the subscriber waits between reconnection attempts (doubling up to the max).
RECONNECT_SECONDS: Final = (0.05, 2.0)


def channel_of(key_prefix: str) -> str:
    return CHANNEL_PREFIX + key_prefix


def encode_message(
    origin: str, seq: int, keys: list[str] | None = None, pattern: str | None = None
) -> bytes:
    """One message: the origin, its sequence number, the wall time, and keys or a pattern."""
    body: dict[str, Any] = {"o": origin, "s": seq, "t": time.time()}
    if keys is not None:
        body["k"] = keys
    if pattern is not None:
        body["p"] = pattern
    return orjson.dumps(body)


class Listener(Protocol):
    """What a cache gives the subscriber."""

    def received(self, message: dict[str, Any]) -> None: ...

    def link_down(self) -> None: ...

    def link_up(self) -> None: ...


class _TrackedPubSub(redis.client.PubSub):
    """A PubSub that reports its reconnections: redis-py reconnects (and re-subscribes) by
    itself inside ``get_message``, so a second connect means the link dropped and messages
    may have been missed meanwhile."""

    def __init__(self, pool: redis.ConnectionPool, reconnected: Callable[[], None]) -> None:
        super().__init__(pool, ignore_subscribe_messages=True)
        self._reconnected = reconnected
        self.armed = False  # set once the first subscription is confirmed

    def on_connect(self, connection: Any) -> None:
        super().on_connect(connection)
        if self.armed:
            self._reconnected()


class Subscriber:
    """The one pub/sub connection of a process to one Redis, in a daemon thread."""

    _shared: dict[str, Subscriber] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def for_client(cls, target: str, make_client: Callable[[], redis.Redis]) -> Subscriber:
        """The process's subscriber for ``target`` (a new one after a fork)."""
        key = f"{os.getpid()}|{target}"
        with cls._shared_lock:
            found = cls._shared.get(key)
            if found is None:
                found = cls._shared[key] = cls(make_client)
            return found

    def __init__(self, make_client: Callable[[], redis.Redis]) -> None:
        self._make_client = make_client
        self._listeners: dict[str, list[Listener]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.up = False
        self._ever_up = False
        self._up_event = threading.Event()

    def add(self, channel: str, listener: Listener) -> None:
        with self._lock:
            self._listeners.setdefault(channel, []).append(listener)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="hiercache-backplane", daemon=True
                )
                self._thread.start()

    def remove(self, channel: str, listener: Listener) -> None:
        """Stop telling ``listener``; the thread ends with the last listener."""
        with self._lock:
            found = self._listeners.get(channel, [])
            if listener in found:
                found.remove(listener)

    def wait_up(self, timeout: float) -> bool:
        """Block until the subscription is live (for start-up and tests)."""
        return self._up_event.wait(timeout)

    def _all(self) -> list[Listener]:
        with self._lock:
            return [x for group in self._listeners.values() for x in group]

    def _wanted(self) -> bool:
        """Whether anyone still listens; if not, the thread ends (under the lock, so a
        listener added meanwhile either sees the thread running or starts a new one)."""
        with self._lock:
            if any(self._listeners.values()):
                return True
            self._thread = None
            return False

    def _run(self) -> None:
        delay = RECONNECT_SECONDS[0]
        while self._wanted():
            client: Any = None
            pubsub: Any = None
            try:  # a cluster client connects as it is made: inside the try too
                client = self._make_client()
                pool = getattr(client, "connection_pool", None)
                pubsub = (
                    _TrackedPubSub(pool, self._resync)
                    if isinstance(pool, redis.ConnectionPool)
                    else client.pubsub(ignore_subscribe_messages=True)
                )
                pubsub.psubscribe(CHANNEL_PREFIX + "*")
                while pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
                    pass  # the subscription's confirmation
                self._set_up()
                if isinstance(pubsub, _TrackedPubSub):
                    pubsub.armed = True
                delay = RECONNECT_SECONDS[0]
                while self._has_listeners():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "pmessage":
                        self._dispatch(message)
            except Exception:  # any failure (a cluster client has its own error types)
                # means the link is down; the thread must live on to reconnect.
                self._mark_down()
                time.sleep(delay)
                delay = min(delay * 2, RECONNECT_SECONDS[1])
            finally:
                for closing in (pubsub, client):
                    try:
                        if closing is not None:
                            closing.close()
                    except Exception:  # noqa: S110 - closing a broken link
                        pass
        self._mark_down()

    def _has_listeners(self) -> bool:
        with self._lock:
            return any(self._listeners.values())

    def _set_up(self) -> None:
        was_down_after_up = self._ever_up and not self.up
        self.up = True
        self._ever_up = True
        self._up_event.set()
        if was_down_after_up:  # back after a drop: messages may have been missed
            for listener in self._all():
                listener.link_up()

    def _resync(self) -> None:
        for listener in self._all():
            listener.link_up()

    def _mark_down(self) -> None:
        if self.up:
            self.up = False
            self._up_event.clear()
            for listener in self._all():
                listener.link_down()

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        with self._lock:
            listeners = list(self._listeners.get(channel, ()))
        if not listeners:
            return
        try:
            body = orjson.loads(message["data"])
        except orjson.JSONDecodeError:
            log.debug("hiercache: ignoring an unreadable backplane message")
            return
        if not isinstance(body, dict):
            return
        for listener in listeners:
            try:
                listener.received(body)
            except Exception:  # one cache's bug must not stop the others' coherence
                log.exception("hiercache: backplane listener failed")
