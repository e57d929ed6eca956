"""Flask under a real gunicorn with 2 workers, over HTTP, against a real redis-server:
sharing through L2, a clean shutdown, fork safety with ``--preload``, and every worker's
metrics in a real Prometheus through ``MetricsPerWorker``'s file_sd targets.

Which worker answers a request is up to the kernel. To address "the other worker", a test
parks one worker on ``/hold`` (a blocking ``BLPOP`` on a Redis list, announced on another
list, so the test knows it is parked): a sync worker serves one request at a time, so the
next request can only go to the other one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

pytest.importorskip("flask", reason="the flask extra is not installed")
pytest.importorskip("gunicorn", reason="the flask extra is not installed")

from prom import run_prometheus
from servers import free_port, wait_for_line

APP = textwrap.dedent(
    """
    import os, threading, time
    import redis
    from flask import Flask, jsonify, request
    from hiercache.contrib.flask import Hiercache

    app = Flask(__name__)
    app.config["HIERCACHE_REDIS_URL"] = os.environ["TEST_REDIS_URL"]
    app.config["HIERCACHE_NAME"] = "web"
    app.config["HIERCACHE_WRITE_BEHIND"] = True
    hc = Hiercache(app)
    # No socket timeout: a BLPOP may wait longer than redis-py's default one.
    control = redis.Redis.from_url(os.environ["TEST_REDIS_URL"], socket_timeout=None)

    def hiercache_threads(name="hiercache-write-behind"):
        return sorted(t.native_id for t in threading.enumerate() if t.name == name)

    PARENT = {"pid": os.getpid(), "threads": [], "warmers": []}
    if os.environ.get("TEST_USE_BEFORE_FORK"):  # with --preload: runs in the master
        hc.cache.set("preloaded", "yes")
        assert hc.cache.get("preloaded") == "yes"
        hc.cache.register_warmer(["warm"], str.upper)  # a background warming thread
        PARENT["threads"] = hiercache_threads()
        PARENT["warmers"] = hiercache_threads("hiercache-background")

    @app.get("/hold/<name>")
    def hold(name):  # parked until released; then, optionally, reads or writes a key
        if "before" in request.args:  # a read before parking: an L1 copy
            hc.cache.get(request.args["before"])
        control.rpush("entered", os.getpid())
        control.blpop([name], timeout=60)
        answer = dict(pid=os.getpid(), stats=hc.cache.get_statistics())
        if "read" in request.args:
            answer["value"] = hc.cache.get(request.args["read"])
        if "await" in request.args:  # until the backplane drops the L1 copy (or 10 s)
            key, wanted = request.args["await"].split("=")
            deadline = time.monotonic() + 10
            while hc.cache.get(key) != wanted and time.monotonic() < deadline:
                threading.Event().wait(0.01)
            answer["value"] = hc.cache.get(key)
        if "write" in request.args:
            hc.cache.set(request.args["write"], "x")
            hc.cache.flush()
            answer.update(threads=hiercache_threads(), parent=PARENT,
                          warmers=hiercache_threads("hiercache-background"))
        return jsonify(answer)

    @app.get("/set/<key>/<value>")
    def set_(key, value):
        hc.cache.set(key, value)
        hc.cache.flush()
        return jsonify(pid=os.getpid(), threads=hiercache_threads(), parent=PARENT,
                       warmers=hiercache_threads("hiercache-background"))

    @app.get("/get/<key>")
    def get(key):
        return jsonify(pid=os.getpid(), value=hc.cache.get(key))

    @app.get("/queue/<key>/<value>")
    def queue(key, value):
        hc.cache.set(key, value)  # write-behind: sent later, or at exit
        return jsonify(pid=os.getpid())

    @app.get("/item/<key>")
    def work(key):
        return jsonify(value=hc.cache.get_or_load(key, key.upper, ttl_seconds=600))

    @app.get("/stats")
    def stats():
        return jsonify(pid=os.getpid(), stats=hc.cache.get_statistics())
    """
)

CONF = textwrap.dedent(
    """
    import os
    from hiercache.contrib.gunicorn import MetricsPerWorker

    metrics = MetricsPerWorker(
        int(os.environ["TEST_METRICS_BASE"]), file_sd=os.environ["TEST_FILE_SD"],
        labels={"job": "web"}, service_name="web",
    )
    pre_fork, post_fork = metrics.pre_fork, metrics.post_fork
    when_ready, nworkers_changed = metrics.when_ready, metrics.nworkers_changed
    control_socket_disable = True  # no ~/.gunicorn/gunicorn.ctl from tests (gunicorn 27)
    """
)


@dataclass
class Gunicorn:
    url: str
    proc: subprocess.Popen[str]
    control: redis.Redis
    log: list[str] = field(default_factory=list)
    holds: int = 0

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:
            return json.loads(resp.read())

    def on_the_other_worker(
        self, then: Callable[[], Any], after: str = ""
    ) -> tuple[dict[str, Any], Any]:
        """Park one worker, run ``then()`` (served by the other), release the first, which
        then does what ``after`` asks (``read=KEY``, ``write=KEY``); returns (the parked
        worker's /hold answer, ``then()``'s result)."""
        self.holds += 1
        name = f"release-{self.holds}"
        parked: list[dict[str, Any]] = []
        path = f"/hold/{name}?{after}"
        t = threading.Thread(target=lambda: parked.append(self.get(path)))
        t.start()
        self.control.blpop(["entered"], timeout=30)
        try:
            result = then()
        finally:
            self.control.rpush(name, 1)
            t.join(30)
        return parked[0], result

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)  # graceful: workers finish and exit
        try:
            return self.proc.wait(timeout=30)
        finally:
            assert self.proc.stdout is not None
            self.log += self.proc.stdout.readlines()


def two_free_ports() -> int:
    """A base port with the next one free too."""
    for _ in range(50):
        base = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def start_gunicorn(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    started: list[Gunicorn] = []

    def start(*args: str, workers: int = 2, env: dict[str, str] | None = None) -> Gunicorn:
        (tmp_path / "web_app.py").write_text(APP)
        (tmp_path / "gunicorn_conf.py").write_text(CONF)
        port = free_port()
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CACHE_", "OTEL_"))},
            "TEST_REDIS_URL": redis_url,
            "TEST_METRICS_BASE": str(two_free_ports()),
            "TEST_FILE_SD": str(tmp_path / "sd" / "web.json"),
            **(env or {}),
        }
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "-w", str(workers)),
                *("-b", f"127.0.0.1:{port}", "-c", "gunicorn_conf.py", "--log-level", "info"),
                *args,
                "web_app:app",
            ],
            cwd=tmp_path,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        control = redis.Redis.from_url(redis_url, socket_timeout=None)  # BLPOPs wait long
        server = Gunicorn(f"http://127.0.0.1:{port}", proc, control)
        started.append(server)
        wait_for_line(proc, "Listening at", "gunicorn")
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()
        server.control.close()


def test_two_workers_share_l2_and_stop_cleanly(
    start_gunicorn: Callable[..., Gunicorn], raw: redis.Redis
) -> None:
    web = start_gunicorn()
    parked, wrote = web.on_the_other_worker(
        lambda: web.get("/set/greeting/hello"), after="read=greeting"
    )
    assert wrote["pid"] != parked["pid"]
    assert parked["value"] == "hello"  # read from L2 by the worker that did not write it
    for i in range(50):  # write-behind: queued, sent by the flusher or at exit
        web.get(f"/queue/q{i}/{i}")
    assert web.stop() == 0
    log = "".join(web.log)
    assert "Traceback" not in log
    assert log.count("Worker exiting") == 2
    assert all(raw.get(f"hiercache:q{i}") is not None for i in range(50))


def test_preloaded_app_used_before_fork_works_in_each_worker(
    start_gunicorn: Callable[..., Gunicorn], raw: redis.Redis
) -> None:
    web = start_gunicorn("--preload", env={"TEST_USE_BEFORE_FORK": "1"})
    second, first = web.on_the_other_worker(lambda: web.get("/set/a/1"), after="write=b")
    assert first["pid"] != second["pid"]  # one answer from each worker
    parent_threads = set(first["parent"]["threads"])
    assert parent_threads  # the master's write-behind thread, started before the fork
    assert first["parent"]["pid"] not in (first["pid"], second["pid"])
    for answer in (first, second):
        assert len(answer["threads"]) == 1  # its own flusher, started after the fork ...
        assert not parent_threads & set(answer["threads"])  # ... not the master's
    assert first["threads"] != second["threads"]
    parent_warmers = set(first["parent"]["warmers"])
    assert len(parent_warmers) == 1  # the master's background warmer ...
    for answer in (first, second):  # ... runs on in each worker, in a thread of its own
        assert len(answer["warmers"]) == 1
        assert not parent_warmers & set(answer["warmers"])
    assert raw.get("hiercache:a") is not None
    assert raw.get("hiercache:b") is not None  # flush() went through in both workers


def test_preloaded_workers_keep_l1_coherent_through_the_backplane(
    start_gunicorn: Callable[..., Gunicorn], raw: redis.Redis
) -> None:
    """The master used the cache (and so subscribed to the backplane) before the fork:
    each worker must subscribe on its own, or it never hears of the other's writes."""
    web = start_gunicorn("--preload", env={"TEST_USE_BEFORE_FORK": "1"})
    web.get("/set/shared/v1")
    parked, wrote = web.on_the_other_worker(
        lambda: web.get("/set/shared/v2"), after="before=shared&await=shared=v2"
    )
    assert parked["pid"] != wrote["pid"]
    assert parked["value"] == "v2"  # its L1 copy of v1 was dropped by the backplane


def test_metrics_of_every_worker_reach_prometheus(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    web = start_gunicorn()
    requests = 400
    for i in range(requests):
        web.get(f"/item/k{(i * i) % 61}")  # repeats: hits; new keys: misses
    held, other = web.on_the_other_worker(lambda: web.get("/stats"))
    workers = [held, other]
    assert held["pid"] != other["pid"]
    hits = sum(w["stats"]["hits"] for w in workers)
    misses = sum(w["stats"]["misses"] for w in workers)
    assert hits + misses >= requests
    assert all(w["stats"]["requests"] > 0 for w in workers)  # both workers took traffic

    targets = json.loads((tmp_path / "sd" / "web.json").read_text())
    assert [t["labels"]["worker"] for t in targets] == ["0", "1"]
    config = (
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: web\n    file_sd_configs:\n"
        f"      - files: ['{tmp_path / 'sd' / 'web.json'}']\n        refresh_interval: 1s\n"
    )
    with run_prometheus(config) as prom:

        def scraped_all() -> tuple[float, float] | None:
            up = prom.query('sum(up{job="web"})')
            h = prom.query('sum(hiercache_hits_total{cache_name="web"})')
            m = prom.query('sum(hiercache_misses_total{cache_name="web"})')
            if not (up and h and m) or float(up[0]["value"][1]) != 2:
                return None
            got = float(h[0]["value"][1]), float(m[0]["value"][1])
            return got if got == (hits, misses) else None

        prom_hits, prom_misses = prom.poll(scraped_all, "both workers' counters in Prometheus")
    ratio_workers = hits / (hits + misses)
    ratio_prometheus = prom_hits / (prom_hits + prom_misses)
    print(f"hit ratio: workers {ratio_workers:.4f}, Prometheus {ratio_prometheus:.4f}")
    assert abs(ratio_prometheus - ratio_workers) <= 0.01 * ratio_workers


def test_a_taken_metrics_port_is_one_log_line_not_a_crash_loop(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    base = two_free_ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base))
        squatter.listen()
        web = start_gunicorn(workers=1, env={"TEST_METRICS_BASE": str(base)})
        assert web.get("/get/x")["value"] is None  # the worker serves requests
        web.stop()
    log = "".join(web.log)
    assert log.count(f"cannot serve /metrics on 127.0.0.1:{base}") == 1
    assert log.count("Booting worker") == 1  # never restarted
    assert "Traceback" not in log


def test_a_replaced_worker_takes_the_dead_ones_index_and_port(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    web = start_gunicorn()
    ports = [int(t["targets"][0].rsplit(":", 1)[1]) for t in sd_targets(tmp_path)]

    def serving(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5):
                return True
        except OSError:
            return False

    def all_serving() -> bool:
        pause, deadline = threading.Event(), time.monotonic() + 60
        while not all(map(serving, ports)) and time.monotonic() < deadline:
            pause.wait(0.1)  # a worker starts its endpoint after it boots
        return all(map(serving, ports))

    assert all_serving()
    victim = web.get("/stats")["pid"]
    os.kill(victim, signal.SIGKILL)
    assert web.proc.stdout is not None
    booted = 0
    for line in web.proc.stdout:  # the two first workers, then the replacement
        web.log.append(line)
        booted += "Booting worker" in line
        if booted == 3:
            break
    assert all_serving()  # the same two ports: the replacement took the dead one's
    assert [t["labels"]["worker"] for t in sd_targets(tmp_path)] == ["0", "1"]


def sd_targets(tmp_path: Path) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = json.loads((tmp_path / "sd" / "web.json").read_text())
    return targets
