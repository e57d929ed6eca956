"""Prometheus rules: promtool checks and unit tests, and what every alert must carry.

``promtool test rules alerts/tests/*.yml`` runs the unit tests; the checks here also make sure
those tests cover every alert (fires, including its ``for``, stays silent on zero and on healthy
traffic, resolves) and every recording rule, and run the same tests against the bundle rendered
for another metric prefix.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hiercache import bundle
from servers import require_binary

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / bundle.ALERTS_FILE
TESTS = sorted((REPO / "alerts" / "tests").glob("*.yml"))
RUNBOOK = REPO / bundle.RUNBOOK_PATH


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def duration(text: str) -> int:
    """Seconds in a Prometheus duration such as ``1h30m`` or ``90s``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)([smhd])", text)
    assert "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * units[u] for n, u in parts)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool", "prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert len(TESTS) >= 5
    result = promtool("test", "rules", *map(str, TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TESTS), result.stdout


def test_unit_tests_pass_for_another_prefix(tmp_path: Path) -> None:
    """The rules rendered by ``hiercache bundle --prefix lukhas_cache`` behave the same."""
    bundle.write_bundle(tmp_path, prefix="lukhas_cache")
    rendered = tmp_path / bundle.ALERTS_FILE
    assert "hiercache_" not in rendered.read_text()
    result = promtool("check", "rules", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr
    copies = []
    for test in TESTS:
        text = test.read_text()
        text = text.replace("../hiercache.rules.yml", str(rendered))
        text = text.replace("hiercache.recording", "lukhas_cache.recording")
        text = text.replace("hiercache.alerts", "lukhas_cache.alerts")
        text = text.replace("hiercache_", "lukhas_cache_")
        text = text.replace("rendered for (hiercache)", "rendered for (lukhas_cache)")
        copy = tmp_path / "alerts" / "tests" / test.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text)
        copies.append(str(copy))
    result = promtool("test", "rules", *copies)
    assert result.returncode == 0, result.stdout + result.stderr


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub generates for a document's headings."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    anchors = github_anchors(RUNBOOK.read_text())
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names))
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "$value" in annotations["summary"] + annotations["description"], name
        assert "$value" in annotations["description"], name
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == bundle.RUNBOOK_PATH, name
        assert anchor in anchors, f"{name}: no section #{anchor} in {bundle.RUNBOOK_PATH}"
        section = RUNBOOK.read_text().split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("What it means", "Confirm", "Act"):
            assert f"**{part}" in section, f"{name}: runbook section lacks {part!r}"
        assert duration(alert["for"]) > 0, name


def test_the_seed_targets_are_the_thresholds() -> None:
    by_name = {a["alert"]: a["expr"] for a in alerts()}
    assert set(by_name) == {
        "HiercacheHitRatioLow",
        "HiercacheHitRatioCritical",
        "HiercacheL1HitRatioLow",
        "HiercacheL2HitRatioLow",
        "HiercacheL1LatencyHigh",
        "HiercacheL2LatencyHigh",
        "HiercacheMemoryHigh",
        "HiercacheL2ErrorRatioHigh",
        "HiercacheL2Unavailable",
        "HiercacheL2BreakerOpen",
        "HiercacheWriteBehindDropping",
        "HiercacheL2WritesRefused",
        "HiercacheStaleServingHigh",
        "HiercacheBackplaneDown",
        "HiercacheTargetDown",
        "HiercacheMetricsAbsent",
    }
    assert "< 0.5" in by_name["HiercacheHitRatioLow"]
    assert "< 0.3" in by_name["HiercacheHitRatioCritical"]
    assert "< 0.7" in by_name["HiercacheL1HitRatioLow"]
    assert "< 0.5" in by_name["HiercacheL2HitRatioLow"]
    assert "> 0.001" in by_name["HiercacheL1LatencyHigh"]
    assert "> 0.01" in by_name["HiercacheL2LatencyHigh"]
    assert f"> {500 * 1024 * 1024}" in by_name["HiercacheMemoryHigh"]
    for name in ("HiercacheHitRatioLow", "HiercacheHitRatioCritical", "HiercacheL1HitRatioLow"):
        # only while there is real traffic
        assert f"hiercache_requests:rate5m >= {bundle.MIN_REQUEST_RATE}" in by_name[name]
    assert f"l2_lookups:rate5m >= {bundle.MIN_REQUEST_RATE}" in by_name["HiercacheL2HitRatioLow"]
    for_ = {a["alert"]: a["for"] for a in alerts()}
    assert for_["HiercacheHitRatioLow"] == "10m"
    # L2 health: the breaker's gauge not closed (1 half-open, 2 open), any drop, any refusal
    assert "hiercache_l2_breaker_state" in by_name["HiercacheL2BreakerOpen"]
    assert by_name["HiercacheL2BreakerOpen"].endswith(") > 0")
    assert (
        "rate(hiercache_write_behind_dropped_total[5m])"
        in (by_name["HiercacheWriteBehindDropping"])
    )
    assert "cache_drop_reason" in by_name["HiercacheWriteBehindDropping"]
    assert (
        'hiercache_l2_errors_total{error_type="write_refused"}'
        in (by_name["HiercacheL2WritesRefused"])
    )
    assert (for_["HiercacheL2BreakerOpen"], for_["HiercacheL2WritesRefused"]) == ("2m", "5m")
    # Stale serving: stale values / requests above 5%, only with traffic (>= 1 request/s)
    stale = by_name["HiercacheStaleServingHigh"]
    assert "rate(hiercache_stale_served_total[5m])" in stale
    assert "/ job_cache_name:hiercache_requests:rate5m\n> 0.05\n" in stale
    assert stale.endswith(f"hiercache_requests:rate5m >= {bundle.MIN_REQUEST_RATE}")
    # The backplane: an instance's subscription down
    assert by_name["HiercacheBackplaneDown"] == (
        "min by (job, instance, cache_name) (hiercache_backplane_up) == 0"
    )
    assert (for_["HiercacheStaleServingHigh"], for_["HiercacheBackplaneDown"]) == ("5m", "2m")


def test_stale_and_backplane_alerts_follow_their_settings() -> None:
    """``stale_served_ratio_*``, ``backplane_down_for`` and ``min_request_rate`` reach the rules."""
    config = bundle.BundleConfig(
        stale_served_ratio_warning=0.2,
        stale_served_ratio_for="15m",
        backplane_down_for="30s",
        min_request_rate=5,
    )
    found = {
        r["alert"]: r
        for g in bundle.alert_rules(config=config)["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    stale, down = found["HiercacheStaleServingHigh"], found["HiercacheBackplaneDown"]
    assert "\n> 0.2\n" in stale["expr"]
    assert stale["expr"].endswith(">= 5")
    assert "(above 20%)" in stale["annotations"]["description"]
    assert (stale["for"], down["for"]) == ("15m", "30s")
    assert "for 30 seconds" in down["annotations"]["description"]
    with pytest.raises(bundle.BundleConfigError, match="'stale_served_ratio_warning'"):
        bundle.BundleConfig(stale_served_ratio_warning=1.5)
    with pytest.raises(bundle.BundleConfigError, match="'backplane_down_for'"):
        bundle.BundleConfig(backplane_down_for="two minutes")


def load_tests() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, group) for p in TESTS for group in yaml.safe_load(p.read_text())["tests"]]


def test_unit_tests_cover_every_alert() -> None:
    """Each alert fires (no earlier than its ``for``), resolves, and is silent when it should be."""
    groups = load_tests()
    quiet = {group["name"]: group for name, group in groups if name == "quiet.test.yml"}
    idle = next(g for n, g in quiet.items() if "idle" in n)
    healthy = next(g for n, g in quiet.items() if "healthy" in n)

    def silent_in(group: dict[str, Any], alert: str) -> bool:
        return any(
            t["alertname"] == alert and not t.get("exp_alerts")
            for t in group.get("alert_rule_test", [])
        )

    for alert in alerts():
        name, hold = alert["alert"], duration(alert["for"])
        assert silent_in(idle, name), f"{name}: no zero-traffic test"
        assert silent_in(healthy, name), f"{name}: no healthy-traffic test"
        proven = False
        for _file, group in groups:
            cases = [t for t in group.get("alert_rule_test", []) if t["alertname"] == name]
            fired = sorted(duration(t["eval_time"]) for t in cases if t.get("exp_alerts"))
            quiet_at = {duration(t["eval_time"]) for t in cases if not t.get("exp_alerts")}
            if not fired:
                continue
            first = fired[0]
            step = duration(group.get("interval", "1m"))
            # the step before the first firing is silent (the `for` hold), firing comes no
            # earlier than `for` after the start, and a later step is silent again (resolved)
            if first - step in quiet_at and first >= hold and any(t > first for t in quiet_at):
                proven = True
        assert proven, f"{name}: no test shows it firing after `for`, then resolving"


def test_unit_tests_check_every_recording_rule() -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    checked = " ".join(
        case["expr"]
        for _file, group in load_tests()
        for case in group.get("promql_expr_test", [])
        if _file == "recording.test.yml"
    )
    for name in recorded:
        assert name in checked, f"recording rule {name} has no value test"


def test_rule_files_are_the_bundle_for_the_default_prefix() -> None:
    assert RULES.read_text() == bundle.render_bundle()[bundle.ALERTS_FILE]


@pytest.mark.parametrize("prefix", ["hiercache", "lukhas_cache"])
def test_recording_rules_aggregate_per_job_and_cache_name(prefix: str) -> None:
    data = bundle.alert_rules(prefix)
    recording = [r for g in data["groups"] for r in g["rules"] if "record" in r]
    assert len(recording) >= 9
    for rule in recording:
        assert rule["record"].startswith(("job_cache_name:", "job_cache_name_cache_level:"))
        assert f":{prefix}_" in rule["record"]
        assert "sum by (job, cache_name" in rule["expr"] or ":rate5m" in rule["expr"]
