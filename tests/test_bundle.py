"""The observability bundle: generated files, the dashboard schema, and dashboard-linter rules.

Grafana's dashboard linter cannot be installed here, so its rules (as of grafana/dashboard-linter
``lint/``) are checked directly: template-datasource, template-job, template-instance,
template-on-time-change-reload, template-label-promql, panel-datasource, panel-title-description,
panel-units, target-job, target-instance, target-rate-interval and target-counter-agg; plus our
own ``cache_name`` matcher rule.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hiercache import bundle
from prom import Selector, selectors

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).resolve().parent / "schemas"  # vendored: see schemas/README.md
PREFIXES = ["hiercache", "lukhas_cache"]

#: The metric contract: every name a query may use (without the prefix).
COUNTERS = {
    "hits_total",
    "misses_total",
    "promotions_total",
    "evictions_total",
    "l2_errors_total",
    "loads_total",
    "coalesced_total",
    "write_behind_dropped_total",
    "stale_served_total",
    "refreshes_total",
    "load_timeouts_total",
    "lock_waits_total",
    "lock_timeouts_total",
    "backplane_published_total",
    "backplane_received_total",
    "backplane_resyncs_total",
}
HISTOGRAM = {"latency_seconds_bucket", "latency_seconds_count", "latency_seconds_sum"}
GAUGES = {
    "entries",
    "size_bytes",
    "write_behind_queue_depth",
    "l2_up",
    "l2_breaker_state",
    "backplane_up",
}

#: Units the linter accepts that this dashboard has any use for.
VALID_UNITS = {"none", "short", "percent", "percentunit", "bytes", "s", "ms", "ops", "reqps"}

#: The panels issues #4, #8 (L2 health), #9 (stale serving) and #10 (backplane) ask for.
REQUIRED_PANELS = {
    "Overall hit ratio",
    "L1 hit ratio",
    "L2 hit ratio",
    "Requests per second by outcome",
    "Backend calls and calls saved",
    "Latency p50 by tier",
    "Latency p95 by tier",
    "Latency p99 by tier",
    "Promotions (L2 to L1)",
    "Evictions by reason",
    "L1 entries per instance",
    "L1 bytes per instance",
    "L2 errors by type",
    "L2 connection state",
    "L2 circuit breaker",
    "Write-behind queue depth",
    "Write-behind drops by reason",
    "Coalesced waits",
    "Stale values served by reason",
    "Load timeouts and background refreshes",
    "Lock waits",
    "Backplane link",
    "Backplane messages per second",
    "Backplane resyncs",
    "Backplane receive lag",
}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(dashboard) for t in p["targets"]]


# ---------------------------------------------------------------------------------------------
# Generated files
# ---------------------------------------------------------------------------------------------


def test_committed_bundle_is_exactly_write_bundle_output(tmp_path: Path) -> None:
    written = bundle.write_bundle(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(
        [bundle.DASHBOARD_FILE, bundle.DATASOURCES_FILE, bundle.PROVIDERS_FILE, bundle.ALERTS_FILE]
    )
    for path in written:
        relative = path.relative_to(tmp_path)
        committed = REPO / relative
        assert committed.read_bytes() == path.read_bytes(), (
            f"{relative} differs from hiercache.bundle's output: regenerate with "
            "`hiercache bundle --out .`"
        )


def test_cli_renders_the_bundle_for_another_prefix(tmp_path: Path) -> None:
    out = tmp_path / "lukhas"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hiercache",
            "bundle",
            "--prefix",
            "lukhas_cache",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    printed = {Path(line) for line in result.stdout.split()}
    assert printed == {out / f for f in bundle.render_bundle("lukhas_cache")}

    dashboard = json.loads((out / bundle.DASHBOARD_FILE).read_text())
    rules = yaml.safe_load((out / bundle.ALERTS_FILE).read_text())
    exprs = [expr for _, expr in targets(dashboard)]
    exprs += [
        re.sub(r"^label_values\((.+), \w+\)$", r"\1", v["query"])
        for v in variables(dashboard).values()
        if v["type"] == "query"
    ]
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    for expr in exprs:
        assert "hiercache_" not in expr, expr
        for sel in selectors(expr):
            for name in sel.metric_names():
                assert name == "up" or "lukhas_cache_" in name, (name, expr)
    assert dashboard["uid"] != bundle.dashboard()["uid"]


def test_invalid_prefix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(bundle.BundleConfigError, match="invalid metric prefix"):
        bundle.write_bundle(tmp_path, prefix="lukhas-cache")
    with pytest.raises(ValueError, match="invalid metric prefix"):
        bundle.render_bundle('x"} or vector(1) or {y="')
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# YAML output (PyYAML, literal blocks for multi-line strings)
# ---------------------------------------------------------------------------------------------

TRICKY = [
    "plain",
    "yes",
    "No",
    "null",
    "10m",
    "0.5",
    "-1",
    "a: b",
    "# not a comment",
    "ends with colon:",
    "{{ $value | humanizePercentage }}",
    "it's quoted",
    'double "quotes"',
    "",
    " leading space",
    "trailing space ",
    "multi\nline",
    "multi\nline\n",
    "\nleading newline",
    "line with trailing space \nnext",
    "tab\tinside",
    "caf\u00e9 \u2014 unicode",
    "control \x01 \x7f",
    "a\n\nblank line inside",
    "https://example.com/runbooks.md#anchor",
    "@at",
    "*star",
    "!bang",
    "%percent",
    "[list]",
    "- dash",
]


def test_yaml_emitter_round_trips_tricky_values() -> None:
    data: dict[str, Any] = {
        "strings": TRICKY,
        "keyed": {value or "empty": value for value in TRICKY if value},
        "numbers": [0, 1, -2, 0.5, 1e-06, 524288000],
        "booleans": [True, False],
        "nothing": None,
        "empty_list": [],
        "empty_map": {},
        "nested": [{"a": [{"b": {"c": ["d"]}}], "e": []}, [], [[1, 2], {}]],
    }
    text = bundle.to_yaml(data, "a header\nsecond line")
    assert text.startswith("# a header\n# second line\n")
    assert yaml.safe_load(text) == data


@pytest.mark.parametrize("prefix", PREFIXES)
def test_rule_and_provisioning_yaml_round_trip(prefix: str) -> None:
    files = bundle.render_bundle(prefix)
    assert yaml.safe_load(files[bundle.ALERTS_FILE]) == bundle.alert_rules(prefix)
    assert yaml.safe_load(files[bundle.DATASOURCES_FILE]) == bundle.datasources()
    assert yaml.safe_load(files[bundle.PROVIDERS_FILE]) == bundle.dashboard_provider()
    assert json.loads(files[bundle.DASHBOARD_FILE]) == bundle.dashboard(prefix)


# ---------------------------------------------------------------------------------------------
# Dashboard: schema and linter rules
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / "grafana-dashboard.schema.json").read_text())
    return schema


@pytest.mark.parametrize("prefix", PREFIXES)
def test_dashboard_validates_against_the_grafana_schema(
    prefix: str, dashboard_schema: dict[str, Any]
) -> None:
    validator = jsonschema.validators.validator_for(dashboard_schema)(dashboard_schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(bundle.dashboard(prefix))
    ]
    assert not errors, "\n".join(errors)


def test_committed_dashboard_files_validate(dashboard_schema: dict[str, Any]) -> None:
    files = sorted((REPO / "dashboards").glob("*.json"))
    assert files
    for path in files:
        jsonschema.validate(json.loads(path.read_text()), dashboard_schema)


def test_dashboard_has_the_panels_of_the_issue() -> None:
    dashboard = bundle.dashboard()
    assert dashboard["title"] == "hiercache / Overview"
    titles = [p["title"] for p in panels(dashboard)]
    assert len(titles) == len(set(titles))
    assert set(titles) >= REQUIRED_PANELS, REQUIRED_PANELS - set(titles)

    by_title = {p["title"]: p for p in panels(dashboard)}
    overall = by_title["Overall hit ratio"]
    assert overall["type"] == "stat"
    steps = overall["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.6, 0.8]  # the seed's thresholds
    for title in ("L1 hit ratio", "L2 hit ratio"):
        assert by_title[title]["type"] == "stat"
    legends = [t["legendFormat"] for t in by_title["Requests per second by outcome"]["targets"]]
    assert legends == ["L1 hit", "L2 hit", "miss"]
    memory = by_title["L1 bytes per instance"]["fieldConfig"]["defaults"]
    assert memory["unit"] == "bytes"
    assert memory["thresholds"]["steps"][-1]["value"] == 500 * 1024 * 1024
    assert memory["custom"]["thresholdsStyle"]["mode"] == "line"
    breaker = by_title["L2 circuit breaker"]
    assert breaker["type"] == "stat"
    mapped = breaker["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {v: m["text"] for v, m in mapped.items()} == {
        "0": "closed",
        "1": "half-open",
        "2": "open",
    }
    (drops,) = by_title["Write-behind drops by reason"]["targets"]
    assert (
        "sum by (cache_drop_reason) (rate(hiercache_write_behind_dropped_total{" in (drops["expr"])
    )
    (stale,) = by_title["Stale values served by reason"]["targets"]
    assert "sum by (cache_stale_reason) (rate(hiercache_stale_served_total{" in stale["expr"]
    timeouts, refreshes = by_title["Load timeouts and background refreshes"]["targets"]
    assert "sum by (cache_timeout) (rate(hiercache_load_timeouts_total{" in timeouts["expr"]
    assert "sum by (cache_result) (rate(hiercache_refreshes_total{" in refreshes["expr"]
    waits = [t["expr"] for t in by_title["Lock waits"]["targets"]]
    assert [e.split("{")[0] for e in waits] == [
        "sum(rate(hiercache_lock_waits_total",
        "sum(rate(hiercache_lock_timeouts_total",
    ]
    link = by_title["Backplane link"]
    assert link["type"] == "stat"
    (up,) = link["targets"]
    assert up["expr"].startswith("min by (instance, cache_name) (hiercache_backplane_up{")
    mapped = link["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {v: m["text"] for v, m in mapped.items()} == {"0": "down", "1": "up"}
    legends = [t["legendFormat"] for t in by_title["Backplane messages per second"]["targets"]]
    assert legends == ["published", "received"]
    (resyncs,) = by_title["Backplane resyncs"]["targets"]
    assert "hiercache_backplane_resyncs_total{" in resyncs["expr"]
    lag = by_title["Backplane receive lag"]
    assert lag["fieldConfig"]["defaults"]["unit"] == "s"
    assert [t["legendFormat"] for t in lag["targets"]] == ["p50", "p99"]
    for target, q in zip(lag["targets"], ("0.5", "0.99"), strict=True):
        assert target["expr"].startswith(f"histogram_quantile({q}, sum by (le) (rate(")
        assert 'cache_level="backplane", cache_operation="receive"' in target["expr"]
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[-2:] == ["Stale serving and locks", "Backplane"]
    for title in ("Latency p50 by tier", "Latency p95 by tier", "Latency p99 by tier"):
        (target,) = by_title[title]["targets"]
        assert "histogram_quantile" in target["expr"]
        assert "by (cache_level, le)" in target["expr"]  # one series per tier, backend too


def test_dashboard_layout_has_unique_ids_and_no_overlaps() -> None:
    dashboard = bundle.dashboard()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))


@pytest.mark.parametrize("prefix", PREFIXES)
def test_template_variables_follow_the_linter(prefix: str) -> None:
    dashboard = bundle.dashboard(prefix)
    found = variables(dashboard)
    assert set(found) == {"datasource", "job", "instance", "cache_name"}

    # template-datasource-rule: one Prometheus datasource variable, named and labelled so.
    datasource_vars = [v for v in found.values() if v["type"] == "datasource"]
    assert datasource_vars == [found["datasource"]]
    assert found["datasource"]["query"] == "prometheus"
    assert found["datasource"]["label"] == "Data source"

    # template-job-rule, template-instance-rule (and the same for cache_name).
    expected_matchers = {"job": set(), "instance": {"job"}, "cache_name": {"job", "instance"}}
    for name, label in (("job", "Job"), ("instance", "Instance"), ("cache_name", "Cache name")):
        var = found[name]
        assert var["type"] == "query"
        assert var["datasource"]["uid"] in ("$datasource", "${datasource}")
        assert var["label"] == label
        assert var["multi"] is True
        assert var["includeAll"] is True
        assert var["allValue"] == ".+"
        assert var["refresh"] == 2  # template-on-time-change-reload
        # template-label-promql-rule: label_values(<valid selector>, <label>)
        m = re.fullmatch(r"label_values\((.+), ([a-z_]+)\)", var["query"])
        assert m, var["query"]
        assert m.group(2) == name
        (sel,) = selectors(m.group(1))
        # Keyed on a series every cache exports, L1-only ones included (they have no l2_up).
        assert sel.name == f"{prefix}_entries"
        level, *filters = sel.matchers
        assert level == ("cache_level", "=", "l1_memory")
        assert {label for label, _, _ in filters} == expected_matchers[name]
        for label, op, value in filters:
            assert (op, value) == ("=~", f"${label}")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_target_and_absence_alerts_do_not_need_l2_up(prefix: str) -> None:
    """A cache configured without L2 exports no l2_up: these alerts must see it anyway."""
    rules = {
        r["alert"]: r
        for g in bundle.alert_rules(prefix)["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    for alert in ("HiercacheTargetDown", "HiercacheMetricsAbsent"):
        names = {n for sel in selectors(rules[alert]["expr"]) for n in sel.metric_names()}
        assert f"{prefix}_l2_up" not in names, alert
        assert f"{prefix}_entries" in names, alert


@pytest.mark.parametrize("prefix", PREFIXES)
def test_panels_follow_the_linter(prefix: str) -> None:
    dashboard = bundle.dashboard(prefix)
    for panel in dashboard["panels"]:
        assert panel["title"], panel
        if panel["type"] == "row":
            continue
        title = panel["title"]
        # panel-title-description-rule
        assert panel["description"].strip(), title
        # panel-units-rule
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit in VALID_UNITS, (title, unit)
        assert not panel["fieldConfig"]["overrides"], title
        # panel-datasource-rule, and every target on the templated datasource
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title


def check_selector(sel: Selector, prefix: str, expr: str) -> None:
    where = f"{sel} in {expr!r}"
    # target-job-rule, target-instance-rule, and cache_name the same way
    for label in ("job", "instance", "cache_name"):
        assert sel.matcher(label) == ("=~", f"${label}"), where
    names = sel.metric_names()
    assert names, where
    for name in names:
        assert name.startswith(f"{prefix}_"), where
        suffix = name.removeprefix(f"{prefix}_")
        assert suffix in COUNTERS | HISTOGRAM | GAUGES, f"unknown metric {name}: {where}"
        if suffix in COUNTERS | HISTOGRAM:
            # target-counter-agg-rule: counters only inside rate/irate/increase
            assert sel.range is not None, where
            assert sel.enclosing in ("rate", "irate", "increase"), where
        else:
            assert sel.range is None, f"gauge {name} under a range function: {where}"
    if sel.range is not None:
        # target-rate-interval-rule
        assert sel.range == "$__rate_interval", where
        assert sel.enclosing in ("rate", "irate", "increase"), where


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_query_filters_on_the_variables_and_uses_rate_interval(prefix: str) -> None:
    dashboard = bundle.dashboard(prefix)
    checked = 0
    for _title, expr in targets(dashboard):
        found = selectors(expr)
        assert found, expr
        for sel in found:
            check_selector(sel, prefix, expr)
            checked += 1
    assert checked >= 20


def check_all(found: list[Selector], expr: str) -> None:
    for sel in found:
        check_selector(sel, "hiercache", expr)


def test_linter_checks_catch_violations() -> None:
    """The checks above are not vacuous: each rule rejects a query that breaks it."""
    bad = [
        'sum(hiercache_hits_total{job=~"$job", instance=~"$instance", cache_name=~"$cache_name"})',
        'sum(rate(hiercache_hits_total{job=~"$job", instance=~"$instance", '
        'cache_name=~"$cache_name"}[5m]))',
        'sum(rate(hiercache_hits_total{job=~"$job", cache_name=~"$cache_name"}[$__rate_interval]))',
        'sum(rate(hiercache_hits_total{instance=~"$instance", cache_name=~"$cache_name"}'
        "[$__rate_interval]))",
        'sum(rate(hiercache_hits_total{job="x", instance=~"$instance", cache_name=~"$cache_name"}'
        "[$__rate_interval]))",
        'rate(hiercache_entries{job=~"$job", instance=~"$instance", cache_name=~"$cache_name"}'
        "[$__rate_interval])",
        'max_over_time(hiercache_hits_total{job=~"$job", instance=~"$instance", '
        'cache_name=~"$cache_name"}[$__rate_interval])',
        'rate(hiercache_hitz_total{job=~"$job", instance=~"$instance", cache_name=~"$cache_name"}'
        "[$__rate_interval])",
    ]
    for expr in bad:
        with pytest.raises(AssertionError):
            check_all(selectors(expr), expr)


def test_yaml_emitter_special_floats_and_unsupported_types() -> None:
    loaded = yaml.safe_load(
        bundle.to_yaml({"inf": float("inf"), "-inf": float("-inf"), "nan": 1.5})
    )
    assert loaded == {"inf": float("inf"), "-inf": float("-inf"), "nan": 1.5}
    assert math.isnan(yaml.safe_load(bundle.to_yaml({"x": float("nan")}))["x"])
    with pytest.raises(TypeError, match="cannot emit"):
        bundle.to_yaml({"x": object()})


# ---------------------------------------------------------------------------------------------
# Settings (BundleConfig) and their documentation
# ---------------------------------------------------------------------------------------------


def test_every_setting_is_documented_with_its_default() -> None:
    doc = (REPO / "docs" / "bundle.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|", doc, re.M))
    config = bundle.BundleConfig()
    fields = {f.name for f in dataclasses.fields(config)}
    assert set(rows) == fields
    for name in fields:
        value = getattr(config, name)
        shown = "(none)" if value == "" else f"`{value}`"
        assert rows[name] == shown, name


def test_defaults_render_the_committed_bundle() -> None:
    assert bundle.render_bundle() == bundle.render_bundle(config=bundle.BundleConfig())
    assert bundle.render_bundle(config=bundle.BundleConfig.from_mapping({})) == (
        bundle.render_bundle()
    )


def test_settings_reach_the_dashboard_and_the_rules() -> None:
    config = bundle.BundleConfig(
        hit_ratio_target=0.65,
        hit_ratio_good=0.9,
        l1_hit_ratio_warning=0.75,
        memory_limit_bytes=2 * 1024**3,
        selector='env="prod"',
        rate_window="2m",
        dashboard_refresh="30s",
        prometheus_url="http://prom.internal:9090",
    )
    dashboard = bundle.dashboard(config=config)
    assert dashboard["refresh"] == "30s"
    by_title = {p["title"]: p for p in panels(dashboard)}
    steps = by_title["Overall hit ratio"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.65, 0.9]
    l1 = by_title["L1 hit ratio"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert l1[-1]["value"] == 0.75
    assert "2048 MiB" in by_title["L1 bytes per instance"]["description"]
    for _, expr in targets(dashboard):
        for sel in selectors(expr):
            assert sel.matcher("env") == ("=", "prod"), expr
    rules = bundle.alert_rules(config=config)
    recorded = [r["record"] for r in rules["groups"][0]["rules"]]
    assert all(name.endswith(":rate2m") or name.endswith("_rate2m") for name in recorded)
    assert bundle.datasources(config=config)["datasources"][0]["url"] == (
        "http://prom.internal:9090"
    )


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(bundle.BundleConfigError, match="'rate_window'"):
        bundle.BundleConfig(rate_window="five minutes")
    with pytest.raises(bundle.BundleConfigError, match="'min_request_rate'"):
        bundle.BundleConfig(min_request_rate=0)
    with pytest.raises(bundle.BundleConfigError, match="invalid metric prefix 'a-b'"):
        bundle.BundleConfig(prefix="a-b")
    with pytest.raises(bundle.BundleConfigError, match="'l2_latency_p95_seconds': expected"):
        bundle.BundleConfig(l2_latency_p95_seconds="10ms")  # type: ignore[arg-type]
    with pytest.raises(bundle.BundleConfigError, match="'memory_limit_bytes': expected int"):
        bundle.BundleConfig(memory_limit_bytes=True)
