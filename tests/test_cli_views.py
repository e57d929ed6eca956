"""The pure parts of ``stats`` and ``advise``: grouping samples by cache, the breaker and
backplane rows, bucket quantiles, and the advisor's choice. (End to end: test_cli_observe.)"""

from __future__ import annotations

import pytest
from rich.console import Console

from hiercache.cli.advise import advise, curves
from hiercache.cli.metrics_source import Sample, check_url, is_metrics_endpoint
from hiercache.cli.stats_view import Latency, render, snapshot


def sample(name: str, value: float, **labels: str) -> Sample:
    return Sample(name, labels, value)


def text(caches: object) -> str:
    console = Console(width=200, record=True)
    console.print(caches)
    return console.export_text()


def test_breaker_and_backplane_series_are_shown_per_cache() -> None:
    samples = [
        sample("hiercache_hits_total", 8, cache_name="a", cache_level="l1_memory"),
        sample("hiercache_misses_total", 2, cache_name="a", cache_operation="get"),
        sample("hiercache_l2_up", 0, cache_name="a"),
        sample("hiercache_l2_breaker_state", 2, cache_name="a", instance="i1"),
        sample("hiercache_l2_breaker_state", 2, cache_name="a", instance="i2"),
        sample("hiercache_l2_breaker_state", 0, cache_name="b"),
        sample("hiercache_l2_breaker_opened_total", 4, cache_name="b"),
        sample("hiercache_backplane_up", 1, cache_name="a"),
        sample("hiercache_backplane_received_total", 5, cache_name="a"),
        sample("hiercache_l2_errors_total", 3, cache_name="a", error_type="timeout"),
        sample("hiercache_hits_total", 1, cache_name="b", cache_level="l2_redis"),
        sample("other_hits_total", 100, cache_name="a", cache_level="l1_memory"),
    ]
    (a, b) = snapshot(samples, "hiercache")
    assert (a.name, a.requests, a.ratio("overall"), a.ratio("l1")) == ("a", 10, 0.8, 0.8)
    assert a.ratio("l2") == 0.0
    assert a.l2_up == 0
    assert a.breaker == {"open": 2}  # two instances with an open breaker
    assert a.backplane == {"backplane_up": 1, "backplane_received_total": 5}
    assert b.ratio("l2") == 1.0
    shown = text(render([a, b], "http://x/metrics"))
    assert "DOWN" in shown
    assert "open x2" in shown
    assert "closed, opened_total=4" in shown
    assert "backplane_received_total" in shown
    assert "timeout" in shown


def test_no_backplane_says_so() -> None:
    caches = snapshot([sample("hiercache_misses_total", 1, cache_name="a")], "hiercache")
    shown = text(render(caches, "u"))
    assert "no backplane metrics" in shown
    assert "no evictions" in shown


def test_bucket_quantile_interpolates_like_histogram_quantile() -> None:
    lat = Latency(count=100, total=1.0)
    lat.buckets.update({0.001: 50, 0.01: 90, 0.1: 100, float("inf"): 100})
    assert lat.quantile(0.5) == pytest.approx(0.001)
    assert lat.quantile(0.95) == pytest.approx(0.01 + 0.09 * 0.5)
    assert Latency().quantile(0.95) is None


def test_advise_picks_the_smallest_capacity_near_the_best() -> None:
    samples = [
        sample("p_l1_hit_ratio_estimate", r, cache_name="c", cache_l1_capacity=str(cap))
        for cap, r in ((50, 0.2), (100, 0.5), (200, 0.7), (400, 0.705), (800, 0.71))
    ] + [sample("p_l1_hit_ratio_estimate", 0.9, cache_name="c")]  # no capacity: ignored
    (curve,) = curves(samples, "p").values()
    advice = advise("c", curve, None, 0.01)
    assert (advice.current, advice.recommended) == (200, 200)
    assert "keep L1 at 200" in advice.text()
    grow = advise("c", curve, 100, 0.0)
    assert grow.recommended == 800
    assert grow.text().startswith("grow L1 from 100 to 800 entries (CACHE_L1_MAX_SIZE=800)")
    between = advise("c", curve, 300, 0.01)  # not on the curve: interpolated
    assert dict(between.curve)[300] == pytest.approx(0.7025)
    assert between.recommended == 200
    assert "could shrink from 300 to 200" in between.text()


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [("http://h:9464/metrics", True), ("http://h:9464/metrics/", True), ("http://h:9090", False)],
)
def test_metrics_endpoint_or_prometheus(url: str, endpoint: bool) -> None:
    assert check_url(url) == url
    assert is_metrics_endpoint(url) is endpoint


@pytest.mark.parametrize("url", ["h:9090", "file:///etc/passwd", "http://"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="give http"):
        check_url(url)
