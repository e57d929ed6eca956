"""The embedded L2 (``l2_backend=embedded``): an in-process, Redis-compatible server.

It is fakeredis, which ships in the ``hiercache[embedded]`` extra rather than with the
library: this module is the one place that imports it, lazily, when an embedded cache makes
its first client. Without the extra that raises ``MissingExtraError`` naming it.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import MissingExtraError

#: The pip requirement that installs the embedded backend.
EXTRA = "hiercache[embedded]"
SETTING = "l2_backend=embedded"


def _fakeredis() -> Any:
    try:
        return importlib.import_module("fakeredis")
    except ImportError as exc:
        raise MissingExtraError(SETTING, EXTRA, "fakeredis") from exc


class EmbeddedServer:
    """One in-process server; its clients (async and sync) all see the same data."""

    def __init__(self) -> None:
        self._fakeredis = _fakeredis()
        self._server = self._fakeredis.FakeServer()

    def client(self, *, asynchronous: bool) -> Any:
        """A new client of this server: ``redis.asyncio.Redis``-like or ``redis.Redis``-like."""
        cls = self._fakeredis.FakeAsyncRedis if asynchronous else self._fakeredis.FakeRedis
        return cls(server=self._server)
