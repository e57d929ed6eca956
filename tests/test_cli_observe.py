"""``hiercache stats``, ``advise`` and ``demo --serve``, end to end: each CLI call is a
subprocess reading a real /metrics endpoint (``telemetry.setup()`` in another process, or
the demo) or a real Prometheus scraping it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from prom import run_prometheus

# A known workload on a real Redis: 3 L1 hits, 1 L2 hit (written by another cache), 2
# misses, then it serves /metrics until its stdin closes.
WORKLOAD = textwrap.dedent(
    """
    import sys
    from hiercache import CacheConfig, HierarchicalCacheManager
    from hiercache.telemetry import setup

    handle = setup(service_name="cli-test", prometheus_host="127.0.0.1", prometheus_port=0)
    url = sys.argv[1]
    shop = HierarchicalCacheManager(CacheConfig(name="shop", redis_url=url, write_through=True))
    other = HierarchicalCacheManager(CacheConfig(name="other", redis_url=url, write_through=True))
    shop.sync.set("a", 1)
    for _ in range(3):
        assert shop.sync.get("a") == 1
    other.sync.set("b", 2)
    assert shop.sync.get("b") == 2
    assert shop.sync.get("x") is None and shop.sync.get("y") is None
    print("ready", handle.metrics_address[1], flush=True)
    sys.stdin.read()
    """
)

ADVISOR = textwrap.dedent(
    """
    import sys
    from prometheus_client import Gauge, start_http_server

    g = Gauge("hiercache_l1_hit_ratio_estimate", "advisor", ["cache_name", "cache_l1_capacity"])
    for capacity, ratio in ((500, 0.40), (1000, 0.62), (2000, 0.80), (4000, 0.805), (8000, 0.81)):
        g.labels("api", str(capacity)).set(ratio)
    server, _ = start_http_server(0, addr="127.0.0.1")
    print("ready", server.server_port, flush=True)
    sys.stdin.read()
    """
)


def clean_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("CACHE_", "REDIS_", "OTEL_"))
    } | {"COLUMNS": "160"}


def hiercache(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hiercache", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean_env(),
    )


@contextmanager
def serving(code: str, *args: str) -> Iterator[int]:
    """Run ``code`` in a subprocess until it prints ``ready PORT``; yield the port."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.match(r"ready (\d+)", line)
        assert match, line + proc.stdout.read()
        yield int(match.group(1))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def row(out: str, first: str) -> list[str]:
    """The cells of the table row starting with ``first``."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{out}")


def check_shop(out: str) -> None:
    # requests 6 = 4 hits + 2 misses; overall 4/6; L1 3/6; L2 1/(1+2)
    cells = row(out, "shop")
    assert cells[:6] == ["shop", "6", "66.7%", "50.0%", "33.3%", "up"], out
    assert cells[6].startswith("closed"), out  # the l2.breaker.state gauge
    assert re.search(r"│ shop\s+│ backplane_up\s+│\s+1 │", out), out  # subscribed
    assert row(out, "other")[:2] == ["other", "0"], out
    assert "l2_redis" in out
    assert "no L2 errors" in out  # zero counts are not listed


def test_stats_once_from_a_metrics_endpoint(redis_url: str) -> None:
    with serving(WORKLOAD, redis_url) as port:
        done = hiercache("stats", f"http://127.0.0.1:{port}/metrics", "--once")
    assert done.returncode == 0, done.stderr
    check_shop(done.stdout)


def test_stats_once_from_prometheus(redis_url: str) -> None:
    with serving(WORKLOAD, redis_url) as port:
        config = (
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        )
        with run_prometheus(config) as prom:
            prom.poll(
                lambda: prom.query('hiercache_hits_total{cache_name="shop"}') or None,
                "the first scrape",
            )
            done = hiercache("stats", prom.url, "--once")
            reference = prom.query(
                "histogram_quantile(0.95, sum by (le, cache_level) "
                '(hiercache_latency_seconds_bucket{cache_name="shop"}))'
            )
    assert done.returncode == 0, done.stderr
    check_shop(done.stdout)
    # p95 per tier as Prometheus' histogram_quantile computes it, to the printed precision
    p95 = {
        r["metric"]["cache_level"]: float(r["value"][1]) * 1000
        for r in reference
        if r["value"][1] != "NaN"
    }
    assert p95, reference
    for level, expected in p95.items():
        cells = next(
            c for line in done.stdout.splitlines()
            if (c := [x.strip() for x in line.strip("│┃ ").split("│")])[:2] == ["shop", level]
        )  # fmt: skip
        assert float(cells[4]) == pytest.approx(expected, abs=0.0011), (level, cells)


def test_stats_errors_are_one_line() -> None:
    done = hiercache("stats", "http://127.0.0.1:1/metrics", "--once")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("hiercache stats: error: cannot read http://127.0.0.1:1/metrics")


def test_stats_with_a_wrong_prefix_says_so(redis_url: str) -> None:
    with serving(WORKLOAD, redis_url) as port:
        done = hiercache("stats", f"http://127.0.0.1:{port}/metrics", "--once", "--prefix", "x")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "no x_* metrics at" in line


def test_advise_without_the_gauge_says_so(redis_url: str) -> None:
    no_advisor = WORKLOAD.replace(
        "write_through=True)", "write_through=True, l1_advisor_enabled=False)"
    )
    with serving(no_advisor, redis_url) as port:
        done = hiercache("advise", f"http://127.0.0.1:{port}/metrics")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "no hiercache_l1_hit_ratio_estimate gauge at" in line


def test_advise_reads_a_real_caches_estimates(redis_url: str) -> None:
    """The size advisor's gauge, exported by a real cache, is what advise reads."""
    with serving(WORKLOAD, redis_url) as port:
        done = hiercache("advise", f"http://127.0.0.1:{port}/metrics")
    assert done.returncode == 0, done.stderr
    for capacity in ("500", "1000", "2000", "4000", "8000"):  # 1/2x .. 8x l1_max_size
        assert row(done.stdout, capacity)


def test_advise_prints_the_curve_and_a_recommendation() -> None:
    with serving(ADVISOR) as port:
        done = hiercache("advise", f"http://127.0.0.1:{port}/metrics")
        shrink = hiercache("advise", f"http://127.0.0.1:{port}/metrics", "--current", "8000")
    assert done.returncode == 0, done.stderr
    assert row(done.stdout, "500")[1] == "40.0%"
    assert "<- now" in row(done.stdout, "2000")[2]  # the middle point of 0.5x .. 8x
    assert "grow" not in done.stdout
    assert "keep L1 at 2000 entries" in done.stdout  # 4000 and 8000 gain < 1 point
    assert "could shrink from 8000 to 2000 entries (CACHE_L1_MAX_SIZE=2000)" in shrink.stdout
    wider = hiercache("advise", f"http://127.0.0.1:{port}/metrics", "--tolerance", "0.001")
    assert wider.returncode == 1  # the endpoint is gone: a clear error, not a traceback
    assert "cannot read" in wider.stderr


def test_advise_recommends_growing() -> None:
    with serving(ADVISOR) as port:
        done = hiercache(
            "advise", f"http://127.0.0.1:{port}/metrics", "--current", "1000", "--tolerance", "0"
        )
    assert done.returncode == 0, done.stderr
    assert "grow L1 from 1000 to 8000 entries (CACHE_L1_MAX_SIZE=8000): " in done.stdout
    assert "62.0% -> 81.0%" in done.stdout


def test_demo_serve_runs_continuously_with_metrics() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hiercache", "demo", "--serve", "--metrics-port", "0",
         "--requests", "200", "--backend-ms", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.match(r"serving metrics on http://127\.0\.0\.1:(\d+)/metrics", first)
        assert match, first
        rounds = [proc.stdout.readline() for _ in range(2)]  # it keeps going
        assert rounds[0].startswith("round 1: overall hit ratio")
        assert rounds[1].startswith("round 2: ")
        done = hiercache("stats", f"http://127.0.0.1:{match.group(1)}/metrics", "--once")
        assert done.returncode == 0, done.stderr
        cells = row(done.stdout, "demo")
        assert int(cells[1].replace(",", "")) >= 400  # two rounds of 200 at least
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0  # SIGTERM finishes the round and exits cleanly


def test_demo_metrics_port_in_use_is_a_clear_error() -> None:
    with serving(ADVISOR) as port:
        done = hiercache("demo", "--serve", "--metrics-port", str(port), "--backend-ms", "0")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in line
    assert "choose another --metrics-port" in line


@pytest.mark.parametrize("url", ["ftp://x/metrics", "http:///metrics"])
def test_stats_bad_urls_are_usage_errors(url: str) -> None:
    done = hiercache("stats", url)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert f"URL {url!r}" in line


def test_demo_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hiercache", "demo", "--requests", "300", "--backend-ms", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=clean_env() | {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "requests" in done.stderr
    assert "300/300" in done.stderr  # Rich's bar, finished
    assert "hit ratio: overall" in done.stdout  # and the table after it


def test_stats_live_view_refreshes_until_interrupted(redis_url: str) -> None:
    with serving(WORKLOAD, redis_url) as port:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hiercache", "stats", f"http://127.0.0.1:{port}/metrics",
             "--interval", "0.2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env() | {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "NO_COLOR": "1"},
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            seen = b""
            while seen.count(b"hiercache at") < 3:  # the first view and two refreshes
                chunk = proc.stdout.read1(65536)
                assert chunk, proc.stderr.read() if proc.stderr else b""
                seen += chunk
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == 0
    assert b"66.7%" in seen
