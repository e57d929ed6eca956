"""Sentinel failovers, as they happen: a thread subscribed to ``+switch-master``.

redis-py's Sentinel pool asks the sentinels for the primary only when it opens a
connection, so pooled connections keep writing to the old primary after a failover for
as long as it stays up and writable (until the sentinels turn it into a replica, seconds
later, and the writes made meanwhile are lost). The watch subscribes to the sentinels'
``+switch-master`` channel and, when the service's primary moves, calls ``on_switch``
(the backend then drops its connections, so the next operation finds the new primary).
READONLY replies remain the backstop when a message is missed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final

import redis
from redis.exceptions import RedisError

log = logging.getLogger("hiercache")

CHANNEL: Final = "+switch-master"
#: How long one wait for a message lasts (bounds how long ``close`` takes).
POLL_SECONDS: Final = 0.2


class SentinelWatch:
    """Calls ``on_switch()`` whenever the sentinels announce a new primary for ``service``
    (and after re-subscribing, since a message may have been missed meanwhile)."""

    def __init__(
        self,
        hosts: tuple[tuple[str, int], ...],
        service: str,
        sentinel_kwargs: dict[str, Any],
        on_switch: Callable[[], None],
        retry_seconds: float = 1.0,
    ) -> None:
        self.hosts = hosts
        self.service = service
        self.kwargs = sentinel_kwargs
        self.on_switch = on_switch
        self.retry_seconds = retry_seconds
        self.switches = 0  # how many announcements for our service were seen
        self._stop = threading.Event()
        self._subscribed_before = False
        self._thread = threading.Thread(
            target=self._run, name="hiercache-sentinel-watch", daemon=True
        )
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for host, port in self.hosts:
                if self._stop.is_set():
                    return
                try:
                    self._listen(host, port)
                except (RedisError, OSError) as exc:
                    log.debug("hiercache: sentinel %s:%s not watchable: %s", host, port, exc)
            self._stop.wait(self.retry_seconds)  # every sentinel failed: try again later

    def _listen(self, host: str, port: int) -> None:
        client = redis.Redis(host=host, port=port, **self.kwargs)
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(CHANNEL)
            if self._subscribed_before:  # a switch may have happened while we were away
                self._switched()
            self._subscribed_before = True
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=POLL_SECONDS)
                if message is not None and self._is_ours(message.get("data")):
                    self.switches += 1
                    self._switched()
        finally:
            pubsub.close()
            client.close()

    def _is_ours(self, data: Any) -> bool:
        # "<service> <old host> <old port> <new host> <new port>"
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        return text.split(" ", 1)[0] == self.service

    def _switched(self) -> None:
        try:
            self.on_switch()
        except Exception:  # a bug in the callback must not end the watch
            log.exception("hiercache: sentinel switch handler failed")


__all__ = ["CHANNEL", "SentinelWatch"]
