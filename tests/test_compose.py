"""The compose stack (docker-compose.observability.yml) and the configuration it mounts.

Docker does not run here, so the file is validated against the compose specification's schema,
every mounted file is checked to exist, the wiring between services is checked (scrape targets,
datasources, OTLP endpoints, health checks and ``depends_on``), and each configuration file is
checked by its own tool (``promtool check config``, ``amtool check-config``).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from hiercache import bundle
from servers import require_binary

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).resolve().parent / "schemas"  # vendored: see schemas/README.md
COMPOSE = REPO / "docker-compose.observability.yml"

#: Services without a health check, and why.
NO_HEALTHCHECK = {
    "otel-collector": "the image is distroless: no shell, wget or curl to probe with",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of each bind mount."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        assert source.startswith("./"), f"not a bind mount of a repository file: {volume}"
        out[target] = REPO / source
    return out


def test_compose_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    assert "draft-07" in schema["$schema"]  # spelled without the "#" the library looks for
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert not errors, "\n".join(errors)


def test_the_stack_has_its_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {
        "redis",
        "demo",
        "prometheus",
        "alertmanager",
        "otel-collector",
        "tempo",
        "grafana",
    }


def test_every_mounted_file_exists(services: dict[str, dict[str, Any]]) -> None:
    count = 0
    for name, service in services.items():
        for target, source in mounts(service).items():
            assert source.exists(), f"{name} mounts {source} at {target}, which does not exist"
            count += 1
        if "build" in service:
            context = REPO / service["build"]["context"]
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()
    assert count >= 8


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    """Every image, pulled or built FROM, names a patch version (not just ``3.11``)."""
    built = 0
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            dockerfile = REPO / build["context"] / build.get("dockerfile", "Dockerfile")
            bases = re.findall(r"^FROM\s+(?:--\S+\s+)?(\S+)", dockerfile.read_text(), re.M)
            assert bases, f"{name}: no FROM in {dockerfile}"
            for image in bases:
                repo, _, tag = image.rpartition(":")
                assert repo, f"{name}: {dockerfile.name} FROM {image} has no tag"
                # A variant may follow the version: 3.11.9-slim-bookworm.
                pinned = re.fullmatch(r"v?\d+\.\d+\.\d+(-[a-z0-9.]+)*", tag)
                assert pinned, f"{name}: {dockerfile.name} FROM {image} is not pinned"
            built += 1
            continue
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo, image
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"
    assert built >= 1  # the demo


def test_health_checks_and_dependency_conditions(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in NO_HEALTHCHECK:
            assert "healthcheck" not in service
        else:
            check = service.get("healthcheck")
            assert check, f"{name} has no health check"
            assert check["test"][0] == "CMD", name
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if dependency in NO_HEALTHCHECK:
                assert spec["condition"] == "service_started"
            else:
                assert spec["condition"] == "service_healthy", f"{name} -> {dependency}"
    assert set(services["grafana"]["depends_on"]) == {"prometheus", "tempo"}
    assert services["demo"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_prometheus_scrapes_only_services_of_the_stack(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    files = mounts(prometheus)
    config_path = files["/etc/prometheus/prometheus.yml"]
    assert config_path == REPO / "prometheus" / "prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load(config_path.read_text())

    targets = [
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    targets += [
        target
        for am in config["alerting"]["alertmanagers"]
        for static in am["static_configs"]
        for target in static["targets"]
    ]
    assert "demo:9464" in targets
    for target in targets:
        host, _, port = target.partition(":")
        assert host in services, f"scrape target {target} is not a service of the stack"
        assert port.isdigit()

    # The rules are mounted where rule_files looks, and they are the bundle's rules.
    rule_globs = config["rule_files"]
    mounted_rules = [t for t in files if t.startswith("/etc/prometheus/rules/")]
    assert mounted_rules
    for target in mounted_rules:
        assert any(fnmatch.fnmatch(target, g) for g in rule_globs)
        assert files[target] == REPO / bundle.ALERTS_FILE


def test_demo_is_built_here_and_serves_what_prometheus_scrapes(
    services: dict[str, dict[str, Any]],
) -> None:
    demo = services["demo"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", dockerfile, re.MULTILINE)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert cmd[:3] == ["hiercache", "demo", "--forever"]
    assert cmd[cmd.index("--metrics-port") + 1] == "9464"
    assert cmd[cmd.index("--metrics-host") + 1] == "0.0.0.0"  # reachable from Prometheus
    for path in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for item in path.split():
            assert (REPO / item).exists(), f"the Dockerfile copies missing {item}"
    # The demo's extras: telemetry for /metrics and OTLP, embedded for its Redis-less default,
    # cli for the hiercache command.
    (install,) = re.findall(r'^RUN pip install "\.\[([\w,]+)\]"$', dockerfile, re.MULTILINE)
    assert set(install.split(",")) == {"telemetry", "embedded", "cli"}

    env = demo["environment"]
    assert env["CACHE_REDIS_URL"] == "redis://redis:6379/0"
    collector = re.fullmatch(r"http://([\w-]+):(\d+)", env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert collector
    assert collector.group(1) in services
    collector_config = yaml.safe_load((REPO / "otel-collector" / "config.yaml").read_text())
    http = collector_config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.endswith(":" + collector.group(2))
    # The collector forwards traces to Tempo's OTLP receiver.
    exporter = collector_config["exporters"]["otlp/tempo"]["endpoint"]
    tempo = yaml.safe_load((REPO / "tempo" / "tempo.yaml").read_text())
    tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert exporter == "tempo:" + tempo_grpc.rpartition(":")[2]
    assert collector_config["service"]["pipelines"]["traces"]["exporters"] == ["otlp/tempo"]
    mounted = mounts(services["otel-collector"])
    assert mounted["/etc/otelcol-contrib/config.yaml"] == REPO / "otel-collector" / "config.yaml"
    assert mounts(services["tempo"])["/etc/tempo.yaml"] == REPO / "tempo" / "tempo.yaml"


def test_grafana_is_provisioned_anonymous_with_the_overview_as_home(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    files = mounts(grafana)
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert files[home] == REPO / bundle.DASHBOARD_FILE
    assert json.loads(files[home].read_text())["title"] == "hiercache / Overview"

    assert (
        files["/etc/grafana/provisioning/datasources"]
        == REPO / Path(bundle.DATASOURCES_FILE).parent
    )
    assert (
        files["/etc/grafana/provisioning/dashboards"] == REPO / Path(bundle.PROVIDERS_FILE).parent
    )

    providers = yaml.safe_load((REPO / bundle.PROVIDERS_FILE).read_text())["providers"]
    (provider,) = providers
    assert provider["folder"] == "hiercache"
    assert str(PurePosixPath(home).parent) == provider["options"]["path"]

    datasources = yaml.safe_load((REPO / bundle.DATASOURCES_FILE).read_text())["datasources"]
    kinds = {d["type"]: d for d in datasources}
    assert set(kinds) == {"prometheus", "tempo"}
    assert kinds["prometheus"]["isDefault"] is True
    for source in datasources:
        host = re.fullmatch(r"http://([\w-]+):(\d+)", source["url"])
        assert host, source["url"]
        assert host.group(1) in services, source["url"]
    assert kinds["tempo"]["url"].endswith(
        ":"
        + str(
            yaml.safe_load((REPO / "tempo" / "tempo.yaml").read_text())["server"][
                "http_listen_port"
            ]
        )
    )


def test_promtool_check_config_with_the_shipped_rules(tmp_path: Path) -> None:
    """``promtool check config`` on prometheus.yml, with the rules where the stack mounts them."""
    text = (REPO / "prometheus" / "prometheus.yml").read_text()
    assert "/etc/prometheus/rules/*.yml" in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/rules/*.yml", str(REPO / "alerts" / "*.yml")))
    result = subprocess.run(
        [require_binary("promtool", "prometheus"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    assert "rules found" in result.stdout + result.stderr  # the rule file was checked too


def test_amtool_check_config_and_inhibitions_name_real_alerts() -> None:
    config_path = REPO / "alertmanager" / "alertmanager.yml"
    result = subprocess.run(
        [require_binary("amtool", "prometheus-alertmanager"), "check-config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alert_names = {
        r["alert"] for g in bundle.alert_rules()["groups"] for r in g["rules"] if "alert" in r
    }
    config = yaml.safe_load(config_path.read_text())
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            label, op, value = re.fullmatch(r'(\w+) (=~|=) "(.+)"', matcher).groups()  # type: ignore[union-attr]
            assert label == "alertname"
            names = value.split("|") if op == "=~" else [value]
            assert set(names) <= alert_names, names


def test_stack_script_uses_the_same_configuration() -> None:
    script = (REPO / "scripts" / "stack.sh").read_text()
    result = subprocess.run(
        ["bash", "-n", str(REPO / "scripts" / "stack.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for path in ("prometheus/prometheus.yml", "alertmanager/alertmanager.yml", "alerts/"):
        assert path in script, path
    assert "hiercache demo --forever" in script.replace('"$PYTHON" -m ', "")
    # Every compose address Prometheus uses is rewritten for the loopback stack.
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    addresses = {
        t
        for job in config["scrape_configs"] + config["alerting"]["alertmanagers"]
        for s in job["static_configs"]
        for t in s["targets"]
    }
    for address in addresses:
        assert shlex.quote(address) in script or f'\\"{address}\\"' in script, address
