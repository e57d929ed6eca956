"""Every gunicorn worker's metrics in Prometheus: a port per worker, found by file_sd.

In ``gunicorn.conf.py``:

.. code-block:: python

    from hiercache.contrib.gunicorn import MetricsPerWorker

    metrics = MetricsPerWorker(base_port=9500, file_sd="/etc/prometheus/sd/web.json")
    pre_fork, post_fork = metrics.pre_fork, metrics.post_fork
    when_ready, nworkers_changed = metrics.when_ready, metrics.nworkers_changed

- **A stable index per worker.** gunicorn numbers no workers, so ``pre_fork`` (in the
  master) gives each new worker the lowest index no live worker holds: a worker that dies
  is replaced on the same index, hence the same port, and Prometheus sees a counter reset
  on a known target instead of a new series appearing somewhere else.
- ``post_fork`` (in the worker) calls ``hiercache.telemetry.setup()`` with
  ``prometheus_port = base_port + index``. If that port is taken, ``setup()`` logs one
  error line naming it and the worker serves without a metrics endpoint (no crash loop).
- ``when_ready`` and ``nworkers_changed`` (in the master) write the file_sd target file:
  one target per index, ``host:base_port+index``, labelled ``worker="<index>"``. Written
  atomically (a temporary file, then ``rename``), as Prometheus expects.
- Do not call ``telemetry.setup()`` in an app that gunicorn preloads (``--preload``): the
  master would own the providers and the port. ``post_fork`` does it in each worker.

``uvicorn --workers N`` has no worker index and no fork hooks: run the ASGI app under
gunicorn with uvicorn's worker class (``gunicorn -k uvicorn.workers.UvicornWorker -c
gunicorn.conf.py``) to use this recipe, or push metrics over OTLP to a collector instead
of being scraped (``setup(prometheus=False, extra_readers=[PeriodicExportingMetricReader(
OTLPMetricExporter())])``), where no worker needs a port.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["MetricsPerWorker"]

log = logging.getLogger("hiercache")
_INDEX = "hiercache_worker_index"


class MetricsPerWorker:
    """gunicorn server hooks: per-worker metrics ports and a Prometheus file_sd file."""

    def __init__(
        self,
        base_port: int,
        *,
        file_sd: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        target_host: str | None = None,
        service_name: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """``host``: where each worker's endpoint listens; ``target_host``: the address
        Prometheus scrapes (default ``host``); ``labels``: added to every target."""
        if not 1 <= base_port <= 65535:
            raise ValueError(f"base_port must be a TCP port (1-65535), not {base_port!r}")
        self.base_port = base_port
        self.file_sd = Path(file_sd) if file_sd is not None else None
        self.host = host
        self.target_host = target_host or host
        self.service_name = service_name
        self.labels = dict(labels or {})
        self.handle: Any = None  # the worker's TelemetryHandle, after post_fork

    def port(self, index: int) -> int:
        return self.base_port + index

    # -- master -------------------------------------------------------------------------
    def pre_fork(self, server: Any, worker: Any) -> None:
        """Give ``worker`` the lowest index no live worker holds."""
        taken = {getattr(w, _INDEX, None) for w in server.WORKERS.values()}
        index = 0
        while index in taken:
            index += 1
        setattr(worker, _INDEX, index)

    def when_ready(self, server: Any) -> None:
        self.write_targets(server.num_workers)

    def nworkers_changed(self, server: Any, new_value: int, old_value: int | None) -> None:
        self.write_targets(new_value)

    def write_targets(self, workers: int) -> None:
        """Write the file_sd file for ``workers`` workers (atomically)."""
        if self.file_sd is None:
            return
        groups = [
            {
                "targets": [f"{self.target_host}:{self.port(i)}"],
                "labels": {**self.labels, "worker": str(i)},
            }
            for i in range(workers)
        ]
        self.file_sd.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.file_sd.parent, prefix=".hiercache-sd-")
        with os.fdopen(fd, "w") as out:
            json.dump(groups, out, indent=1)
        os.replace(tmp, self.file_sd)

    # -- worker -------------------------------------------------------------------------
    def post_fork(self, server: Any, worker: Any) -> None:
        """In the worker: the metrics endpoint on ``base_port + index``."""
        from hiercache.telemetry import setup  # the telemetry extra, in workers only

        index = int(getattr(worker, _INDEX, 0))
        self.handle = setup(
            service_name=self.service_name,
            prometheus_host=self.host,
            prometheus_port=self.port(index),
        )
        if self.handle.metrics_address is not None:
            log.info(
                "hiercache: worker %d (pid %d) serves /metrics on %s:%d",
                index, os.getpid(), *self.handle.metrics_address,
            )  # fmt: skip
