"""Flask: ``Hiercache(app)`` (or ``Hiercache()`` then ``init_app(app)``).

.. code-block:: python

    app = Flask(__name__)
    app.config["HIERCACHE_REDIS_URL"] = "redis://localhost:6379/0"
    app.config["HIERCACHE_L1_MAX_SIZE"] = 10_000
    hc = Hiercache(app)

    @app.get("/user/<uid>")
    def user(uid):
        return hc.cache.get_or_load(f"user:{uid}", lambda: load_user(uid), ttl_seconds=60)

- **Settings.** Every ``HIERCACHE_<NAME>`` key of ``app.config`` sets the ``CacheConfig``
  field ``<name>`` (``HIERCACHE_REDIS_URL`` -> ``redis_url``, ``HIERCACHE_WRITE_THROUGH``
  -> ``write_through``, ...); what is not given comes from the ``CACHE_*`` environment, as
  for ``CacheConfig()``. An unknown ``HIERCACHE_*`` key, or a bad value, raises
  ``FlaskConfigError`` naming the key.
- **One cache per app and process.** ``init_app`` builds a ``HierarchicalCacheManager``
  and keeps it in ``app.extensions["hiercache"]``. ``hc.cache`` is its blocking front
  (``manager.sync``), for the current app (or the only one).
- **Clean shutdown.** The cache is flushed (write-behind) and closed at interpreter exit
  (``atexit``), which a gunicorn worker reaches on a graceful stop; ``hc.close()`` does it
  earlier. Fork-safe: with ``gunicorn --preload`` each worker starts its own write-behind
  thread and Redis connections (see ``docs/integrations.md``).
"""

from __future__ import annotations

import atexit
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, has_app_context
from pydantic import ValidationError

from hiercache import SyncCache
from hiercache.errors import CacheError
from hiercache.manager import HierarchicalCacheManager
from hiercache.settings import CacheConfig

__all__ = ["PREFIX", "FlaskConfigError", "Hiercache", "config_from_app"]

#: The prefix of hiercache's keys in ``app.config``.
PREFIX = "HIERCACHE_"
EXTENSION = "hiercache"


class FlaskConfigError(CacheError, ValueError):
    """A ``HIERCACHE_*`` key of ``app.config`` is unknown or has a bad value."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"app.config[{key!r}]: {reason}")
        self.key = key


def config_from_app(app_config: Mapping[str, Any]) -> CacheConfig:
    """The ``CacheConfig`` of ``app.config``'s ``HIERCACHE_*`` keys."""
    fields = CacheConfig.model_fields
    kwargs: dict[str, Any] = {}
    for key, value in app_config.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if name not in fields:
            raise FlaskConfigError(key, f"no hiercache setting {name!r}")
        kwargs[name] = value
    try:
        return CacheConfig(**kwargs)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "?"
        raise FlaskConfigError(PREFIX + name.upper(), error["msg"]) from None


class Hiercache:
    """The Flask extension: one hiercache manager per app, closed at exit."""

    def __init__(self, app: Flask | None = None) -> None:
        self.app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> HierarchicalCacheManager:
        manager = HierarchicalCacheManager(config_from_app(app.config))
        app.extensions[EXTENSION] = manager
        atexit.register(manager.sync.close)  # flushes write-behind writes, then closes
        if self.app is None:
            self.app = app
        return manager

    @property
    def manager(self) -> HierarchicalCacheManager:
        """The manager of the current app (or of the app given to the constructor)."""
        app = current_app if has_app_context() else self.app
        if app is None:
            raise RuntimeError("Hiercache: no app (call init_app, or use it in an app context)")
        manager: HierarchicalCacheManager = app.extensions[EXTENSION]
        return manager

    @property
    def cache(self) -> SyncCache:
        """The blocking front: ``get``, ``set``, ``get_or_load``, ``get_statistics``, ..."""
        return self.manager.sync

    def close(self) -> None:
        """Flush pending writes and close the current app's cache now."""
        manager = self.manager
        manager.sync.close()
        atexit.unregister(manager.sync.close)
