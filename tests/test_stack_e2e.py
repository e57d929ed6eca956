"""End to end: a real Prometheus scraping real hiercache workloads, with the shipped rules.

Two ``hiercache demo --forever`` processes run against a real ``redis-server`` and serve
``/metrics`` on loopback: a healthy one (job ``hiercache``, the demo's default Zipf workload) and
a cold one (job ``hiercache-cold``: a million distinct prompts, uniform, so nearly every request
misses). The Debian ``prometheus`` binary scrapes both every second and evaluates
``alerts/hiercache.rules.yml`` every second.

* Every dashboard panel's query is run through ``/api/v1/query`` with the variables filled in
  (``$job``/``$instance``/``$cache_name`` the healthy demo's, ``$__rate_interval`` 10s). Each
  must succeed and return data: the library exports every counter slot from the start (zeros
  included), so even panels whose events are rare (L2 errors, coalesced waits, write-behind
  depth, stale values served, lock waits) have series; none is allowed to be empty. Both
  demos share the Redis and key prefix, so the healthy one receives the cold one's backplane
  messages, and their receive lag has observations.
* The hit-ratio alert's expression is true for the cold workload, not the healthy one, and
  Prometheus itself holds the alert pending for it.

* An L1-only workload (``CACHE_L2_BACKEND=none``: no ``l2_up`` series), scraped by a Prometheus
  of its own, is listed by the dashboard's variables, keeps HiercacheMetricsAbsent silent, and
  makes HiercacheTargetDown's expression true once stopped.

The last test runs ``scripts/stack.sh`` (the no-Docker stack) on free ports and checks that its
Prometheus scrapes its demo with the rules loaded and the Alertmanager attached.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hiercache import bundle
from prom import Prometheus, run_prometheus, substitute
from servers import (
    RedisServer,
    drain_in_background,
    free_port,
    require_binary,
    run_redis,
    wait_for_line,
)

REPO = Path(__file__).resolve().parents[1]
RATE_INTERVAL = "10s"
LOAD_TIMEOUTS = "Load timeouts and background refreshes"


@dataclass
class Demo:
    job: str
    port: int
    proc: subprocess.Popen[str]

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.port}"


def demo_env(redis_url: str | None) -> dict[str, str]:
    """The demo's environment: ``redis_url`` as its L2, or (None) no L2 at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CACHE_"))}
    if redis_url is None:
        env["CACHE_L2_BACKEND"] = "none"  # else the demo would pick its embedded L2
    else:
        env["CACHE_REDIS_URL"] = redis_url
    return env


def start_demo(job: str, redis_url: str | None, *args: str) -> Demo:
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hiercache", "demo", "--forever"),
            *("--metrics-port", str(port), "--backend-ms", "0", "--requests", "500"),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=demo_env(redis_url),
        cwd=REPO,
    )
    try:  # the demo says when its /metrics endpoint is serving
        wait_for_line(proc, "serving metrics on", f"hiercache demo ({job})")
    except RuntimeError:
        stop(proc)
        raise
    drain_in_background(proc)
    return Demo(job, port, proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def redis_for_demos() -> Iterator[RedisServer]:
    """A Redis of this module's own: no other test flushes or stops it under the demos."""
    with run_redis() as server:
        yield server


@pytest.fixture(scope="module")
def demos(redis_for_demos: RedisServer) -> Iterator[dict[str, Demo]]:
    url = redis_for_demos.url
    started: list[Demo] = []
    try:
        started.append(start_demo("hiercache", url))
        started.append(start_demo("hiercache-cold", url, "--prompts", "1000000", "--zipf", "0"))
        yield {d.job: d for d in started}
    finally:
        for demo in started:
            stop(demo.proc)


@pytest.fixture(scope="module")
def prometheus(demos: dict[str, Demo]) -> Iterator[Prometheus]:
    scrape = "\n".join(
        f"  - job_name: {d.job}\n    static_configs:\n      - targets: ['{d.instance}']"
        for d in demos.values()
    )
    config = (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {REPO / bundle.ALERTS_FILE}\n"
        f"scrape_configs:\n{scrape}\n"
    )
    with run_prometheus(config) as prom:
        yield prom


def panel_targets() -> list[tuple[str, str, str]]:
    dashboard = json.loads((REPO / bundle.DASHBOARD_FILE).read_text())
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_every_panel_query_returns_data(prometheus: Prometheus, demos: dict[str, Demo]) -> None:
    healthy = demos["hiercache"]
    values = {
        "job": healthy.job,
        "instance": healthy.instance,
        "cache_name": ".+",
        "__rate_interval": RATE_INTERVAL,
    }
    queries = [(title, ref, substitute(expr, values)) for title, ref, expr in panel_targets()]
    assert len(queries) >= 18

    def all_have_data() -> dict[str, list[dict[str, Any]]] | None:
        results = {}
        for title, ref, expr in queries:
            result = prometheus.query(expr)  # raises if Prometheus rejects the query
            if not result:
                return None
            results[f"{title}/{ref}"] = result
        return results

    try:
        results = prometheus.poll(all_have_data, "every panel query to return data")
    except AssertionError:
        empty = [f"{t}/{r}: {e}" for t, r, e in queries if not prometheus.query(e)]
        raise AssertionError("panels without data:\n" + "\n".join(empty)) from None

    def value(key: str) -> float:
        (sample,) = results[key]
        return float(sample["value"][1])

    assert 0.5 < value("Overall hit ratio/A") <= 1
    assert 0 < value("L1 hit ratio/A") <= 1
    assert 0 < value("L2 hit ratio/A") <= 1  # the demo clears L1 so L2 answers too
    for quantile in ("p50", "p95", "p99"):
        levels = {s["metric"]["cache_level"] for s in results[f"Latency {quantile} by tier/A"]}
        assert {"l1_memory", "l2_redis", "backend"} <= levels, (quantile, levels)
    reasons = {s["metric"]["cache_eviction_reason"] for s in results["Evictions by reason/A"]}
    assert "size" in reasons
    (state,) = results["L2 connection state/A"]
    assert state["value"][1] == "1"
    (breaker,) = results["L2 circuit breaker/A"]
    assert breaker["value"][1] == "0"  # closed
    drops = {s["metric"]["cache_drop_reason"] for s in results["Write-behind drops by reason/A"]}
    assert "queue_full" in drops  # exported (as zeros) before anything is dropped
    # Stale serving and locks: exported (as zeros) before any value is served stale.
    stale = {s["metric"]["cache_stale_reason"] for s in results["Stale values served by reason/A"]}
    assert stale == {"error", "timeout", "revalidate"}
    timeouts = {s["metric"]["cache_timeout"] for s in results[LOAD_TIMEOUTS + "/A"]}
    assert timeouts == {"soft", "hard"}
    assert {s["metric"]["cache_result"] for s in results[LOAD_TIMEOUTS + "/B"]} >= {"error"}
    assert value("Lock waits/A") == 0  # the demo takes no stampede lock
    assert value("Lock waits/B") == 0  # lock timeouts
    # The backplane: both demos share one Redis and key prefix, so the healthy one receives
    # the cold one's invalidations, and its receive lag is observed (p50, p99 in seconds).
    (link,) = results["Backplane link/A"]
    assert link["value"][1] == "1"  # up
    by_key = {f"{title}/{ref}": expr for title, ref, expr in queries}

    def positive(key: str) -> float:
        def sample() -> float | None:
            (found,) = prometheus.query(by_key[key])
            number = float(found["value"][1])
            return number if math.isfinite(number) and number > 0 else None

        return prometheus.poll(sample, f"{key} > 0")

    # Published: exported, but the healthy demo stops publishing once its 200 prompts are
    # loaded (TTL 600 s), so the rate is 0 after warm-up.
    assert value("Backplane messages per second/A") >= 0
    assert positive("Backplane messages per second/B") > 0  # received from the cold demo
    p50, p99 = positive("Backplane receive lag/A"), positive("Backplane receive lag/B")
    print(f"backplane receive lag: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
    # Measured here: p50 ~3 ms, p99 ~200 ms (two busy demos on 2 shared cores; the subscriber
    # thread waits for the GIL). The bound is a bucket boundary with a wide margin.
    assert p50 <= p99 < 2.5, (p50, p99)
    # Only the selected job and instance: the cold demo's series are filtered out.
    for result in results.values():
        for sample in result:
            assert sample["metric"].get("job", healthy.job) == healthy.job
            assert sample["metric"].get("instance", healthy.instance) == healthy.instance


def test_variable_queries_list_the_workloads(
    prometheus: Prometheus, demos: dict[str, Demo]
) -> None:
    """The job variable's ``label_values`` selector finds both jobs."""
    dashboard = json.loads((REPO / bundle.DASHBOARD_FILE).read_text())
    (job_var,) = [v for v in dashboard["templating"]["list"] if v["name"] == "job"]
    selector = job_var["query"].removeprefix("label_values(").rsplit(",", 1)[0]

    def jobs() -> set[str] | None:
        found = {s["metric"]["job"] for s in prometheus.query(selector)}
        return found if found >= set(demos) else None

    assert prometheus.poll(jobs, "both jobs in the job variable") >= set(demos)


def query_variables() -> list[dict[str, Any]]:
    dashboard = json.loads((REPO / bundle.DASHBOARD_FILE).read_text())
    return [v for v in dashboard["templating"]["list"] if v["type"] == "query"]


def alert_expr(name: str) -> str:
    (expr,) = [
        r["expr"]
        for g in bundle.alert_rules()["groups"]
        for r in g["rules"]
        if r.get("alert") == name
    ]
    return str(expr)


def test_an_l1_only_workload_is_seen_without_l2_up() -> None:
    """A cache configured without L2 (``CACHE_L2_BACKEND=none``) exports no ``l2_up``.

    Scraped alone by a Prometheus with the shipped rules, it must still be listed by the
    dashboard's variables and keep HiercacheMetricsAbsent silent; stopped, it must make
    HiercacheTargetDown's expression true (and the alert pending).
    """
    demo = start_demo("hiercache-l1", None)
    try:
        config = (
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {REPO / bundle.ALERTS_FILE}\n"
            f"scrape_configs:\n  - job_name: {demo.job}\n"
            f"    static_configs:\n      - targets: ['{demo.instance}']\n"
        )
        with run_prometheus(config) as prom:
            entries = f'hiercache_entries{{job="{demo.job}", cache_level="l1_memory"}}'
            prom.poll(lambda: prom.query(entries) or None, "the L1-only demo's entries gauge")
            assert prom.query(f'up{{job="{demo.job}"}} == 1')
            assert not prom.query(f'hiercache_l2_up{{job="{demo.job}"}}')

            values = {"job": demo.job, "instance": demo.instance}
            listed = {}
            for var in query_variables():
                m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
                assert m, var["query"]
                selector = substitute(m.group(1), values)
                listed[var["name"]] = {s["metric"][m.group(2)] for s in prom.query(selector)}
            assert listed == {
                "job": {demo.job},
                "instance": {demo.instance},
                "cache_name": {"demo"},
            }

            assert prom.query(alert_expr("HiercacheMetricsAbsent")) == []

            def absent_alert_gone() -> bool | None:  # pending from before the first scrape
                alerts = prom.query('ALERTS{alertname="HiercacheMetricsAbsent"}')
                return True if not alerts else None

            prom.poll(absent_alert_gone, "HiercacheMetricsAbsent to stay inactive")
            assert not prom.query('ALERTS{alertname="HiercacheL2Unavailable"}')

            stop(demo.proc)
            target_down = alert_expr("HiercacheTargetDown")

            def down() -> list[dict[str, Any]] | None:
                return prom.query(target_down) or None

            (sample,) = prom.poll(down, "HiercacheTargetDown's expression for the stopped demo")
            assert sample["metric"]["job"] == demo.job
            assert sample["metric"]["instance"] == demo.instance

            def pending() -> list[dict[str, Any]] | None:
                return prom.query('ALERTS{alertname="HiercacheTargetDown"}') or None

            (state,) = prom.poll(pending, "HiercacheTargetDown pending for the stopped demo")
            assert state["metric"]["alertstate"] == "pending"
            assert state["metric"]["job"] == demo.job
    finally:
        stop(demo.proc)


def test_rules_load_and_evaluate_without_errors(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.api("/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if not rules or any(r.get("lastEvaluation", "").startswith("0001") for r in rules):
            return None
        return rules

    rules = prometheus.poll(evaluated, "every rule to be evaluated once")
    expected = {
        r.get("alert") or r.get("record")
        for g in bundle.alert_rules()["groups"]
        for r in g["rules"]
    }
    assert {r["name"] for r in rules} == expected
    for rule in rules:
        assert rule["health"] == "ok", rule


def test_a_low_hit_ratio_makes_the_alert_expression_true(
    prometheus: Prometheus, demos: dict[str, Demo]
) -> None:
    (alert,) = [
        r
        for g in bundle.alert_rules()["groups"]
        for r in g["rules"]
        if r.get("alert") == "HiercacheHitRatioLow"
    ]

    def cold_matches() -> list[dict[str, Any]] | None:
        result = prometheus.query(alert["expr"])
        jobs = {s["metric"]["job"] for s in result}
        return result if "hiercache-cold" in jobs else None

    result = prometheus.poll(cold_matches, "the hit-ratio alert expression for the cold demo")
    jobs = {s["metric"]["job"] for s in result}
    assert "hiercache" not in jobs  # the healthy demo does not match
    for sample in result:
        assert float(sample["value"][1]) < 0.5

    # Prometheus evaluates the shipped rule itself: the alert is pending (for: 10m).
    def pending() -> list[dict[str, Any]] | None:
        found = prometheus.query('ALERTS{alertname="HiercacheHitRatioLow", job="hiercache-cold"}')
        return found or None

    (state,) = prometheus.poll(pending, "HiercacheHitRatioLow pending for the cold demo")
    assert state["metric"]["alertstate"] == "pending"
    assert state["metric"]["severity"] == "warning"
    assert not prometheus.query('ALERTS{alertname=~"HiercacheHitRatio.*", job="hiercache"}')


def test_stack_script_runs_the_stack_without_docker(tmp_path: Path) -> None:
    """``scripts/stack.sh``: Redis, Prometheus, Alertmanager and the demo from local binaries."""
    require_binary("redis-server", "redis-server")
    require_binary("prometheus", "prometheus")
    ports = {
        "REDIS_PORT": free_port(),
        "PROMETHEUS_PORT": free_port(),
        "ALERTMANAGER_PORT": free_port(),
        "DEMO_PORT": free_port(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CACHE_"))}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(
        STACK_DIR=str(tmp_path / "stack"),
        PYTHON=sys.executable,
        DEMO_ARGS="--backend-ms 0 --requests 200",
    )
    proc = subprocess.Popen(
        ["bash", str(REPO / "scripts" / "stack.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        wait_for_line(proc, "stack is up", "scripts/stack.sh")
        drain_in_background(proc)
        prom = Prometheus(f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}", proc)

        def demo_scraped() -> list[dict[str, Any]] | None:
            return prom.query('hiercache_l2_up{job="hiercache"} == 1') or None

        prom.poll(demo_scraped, "the stack's Prometheus to scrape the demo (connected to Redis)")
        groups = {g["name"] for g in prom.api("/api/v1/rules")["groups"]}
        assert groups == {"hiercache.recording", "hiercache.alerts"}
        managers = prom.api("/api/v1/alertmanagers")["activeAlertmanagers"]
        assert managers == [{"url": f"http://127.0.0.1:{ports['ALERTMANAGER_PORT']}/api/v2/alerts"}]

        # Stopping Redis leaves the stack up, so the L2 alerts can be watched fire and resolve.
        stack_dir = tmp_path / "stack"
        subprocess.run([str(stack_dir / "redis-stop.sh")], check=True, timeout=30)

        def l2_down() -> list[dict[str, Any]] | None:
            return prom.query('hiercache_l2_up{job="hiercache"} == 0') or None

        prom.poll(l2_down, "the demo's l2_up to read 0 with Redis stopped")
        assert proc.poll() is None  # the stack is still running
        subprocess.run([str(stack_dir / "redis-start.sh")], check=True, timeout=30)
        prom.poll(demo_scraped, "the demo back on Redis (l2_up 1) after redis-start.sh")
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert proc.returncode == 143
    log = (tmp_path / "stack" / "prometheus.log").read_text()
    assert "Server is ready to receive web requests." in log


def test_demo_with_the_compose_environment_exports_spans_over_otlp(
    redis_for_demos: RedisServer,
) -> None:
    """The demo, configured as in the compose file, sends spans to the collector's OTLP port.

    A loopback HTTP server stands in for the collector (``otel-collector:4318``).
    """
    compose = yaml.safe_load((REPO / "docker-compose.observability.yml").read_text())
    env = demo_env(redis_for_demos.url)
    env.update(compose["services"]["demo"]["environment"])
    received: list[tuple[str, int]] = []
    got_traces = threading.Event()

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append((self.path, len(body)))
            if self.path == "/v1/traces" and body:
                got_traces.set()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{server.server_address[1]}"
    env["CACHE_REDIS_URL"] = redis_for_demos.url
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hiercache", "demo", "--forever"),
            *("--backend-ms", "0", "--metrics-port", str(free_port())),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        drain_in_background(proc)
        # The batch span processor exports every 5 s; waiting on an external process.
        assert got_traces.wait(timeout=30), f"no spans received: {received}"
    finally:
        stop(proc)
        server.shutdown()
    assert all(path == "/v1/traces" for path, _ in received)
