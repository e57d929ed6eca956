"""The docs site: ``mkdocs build --strict`` succeeds, the generated pages cover every
setting and metric, and every code block of the site's own pages runs (python against a
real Redis, bash with the ``hiercache`` command) or is marked as a fragment with a reason.

docs/runbooks.md and docs/bundle.md belong to the bundle's part of the project (their blocks
are not marked): their sh block runs, their YAML loads as bundle settings and their PromQL
passes ``promtool``. docs/integrations.md belongs to the framework integrations and is
checked by their tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

from hiercache.bundle import BundleConfig
from hiercache.settings import CacheConfig
from hiercache.telemetry.catalogue import METRICS, InstrumentKind

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOT_OURS = {"runbooks.md", "bundle.md", "integrations.md"}
ENV_FREE = ("CACHE_", "REDIS_", "OTEL_")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
FRAGMENT = re.compile(r"<!-- fragment: (.{10,}?) -->\s*$")


def blocks(pages: Iterable[str] | None = None) -> list[tuple[str, int, str, str, str | None]]:
    """(page, line, language, code, fragment reason) of every fenced block of our pages
    (or of ``pages``)."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        if (page.name in NOT_OURS) if pages is None else (page.name not in pages):
            continue
        text = page.read_text()
        for match in FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").splitlines()
            marker = FRAGMENT.search(before[-1]) if before else None
            line = text.count("\n", 0, match.start()) + 1
            reason = marker.group(1) if marker else None
            found.append((page.name, line, match.group(1), match.group(2), reason))
    return found


BLOCKS = blocks()


def test_the_pages_have_code_blocks_and_fragments_say_why() -> None:
    runnable = [b for b in BLOCKS if b[4] is None]
    assert len(runnable) >= 5
    for page, line, language, _, reason in BLOCKS:
        assert reason is not None or language in ("python", "bash"), (page, line, language)


@pytest.mark.parametrize(
    ("page", "line", "language", "code"),
    [pytest.param(*b[:4], id=f"{b[0]}:{b[1]}") for b in BLOCKS if b[4] is None],
)
def test_code_block_runs(
    page: str, line: int, language: str, code: str, redis_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHE_", "REDIS_", "OTEL_"))}
    env |= {
        "CACHE_REDIS_URL": redis_url,
        "DOCS_REDIS_URL": redis_url,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    command = [sys.executable, "-c", code] if language == "python" else ["bash", "-ec", code]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, f"{page}:{line}\n{done.stdout}\n{done.stderr}"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    configuration = (site / "configuration" / "index.html").read_text()
    for name in CacheConfig.model_fields:
        assert f"<code>{name}</code>" in configuration, name
    assert "CACHE_L1_SIZE" in configuration  # an alias
    metrics = (site / "metrics" / "index.html").read_text()
    for metric in METRICS:
        series = "count" if metric.kind is InstrumentKind.HISTOGRAM else ""
        assert metric.prometheus_name("hiercache", series) in metrics, metric.name
    api = (site / "api" / "index.html").read_text()
    assert "get_statistics" in api  # mkdocstrings rendered the manager's members
    for page in ("runbooks", "bundle", "integrations", "cli", "migrating", "failure-modes"):
        assert (site / page / "index.html").is_file(), page


def test_the_bundle_and_runbook_pages_blocks_run(tmp_path: Path) -> None:
    found = blocks({"bundle.md", "runbooks.md"})
    languages = sorted(b[2] for b in found)
    assert languages == ["promql", "sh", "yaml"], languages
    code = {language: text for _, _, language, text, _ in found}
    # The YAML is the bundle.yml the sh block's third command reads.
    settings = tmp_path / "bundle.yml"
    settings.write_text(code["yaml"])
    assert BundleConfig.from_file(settings).hit_ratio_warning == 0.7
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_FREE)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-ec", code["sh"].replace("DIR", "out")],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "alerts" / "hiercache.rules.yml").is_file()
    # Every PromQL line is a valid expression (promtool), and names recorded series.
    exprs = [line.split("#")[0].strip() for line in code["promql"].splitlines()]
    exprs = [e for e in exprs if e]
    rules = {
        "groups": [
            {
                "name": "docs",
                "rules": [{"record": f"docs:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    rule_file = tmp_path / "docs.rules.yml"
    rule_file.write_text(yaml.safe_dump(rules))
    promtool = subprocess.run(
        ["promtool", "check", "rules", str(rule_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr
    recorded = (ROOT / "alerts" / "hiercache.rules.yml").read_text()
    for expr in exprs:
        name = re.match(r"[\w:]+", expr.split("(")[-1])
        if name and ":" in name.group(0):
            assert f"record: {name.group(0)}" in recorded, expr
