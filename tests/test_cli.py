"""``hiercache`` command line: help texts and defaults, one-line usage errors, --version,
the cli extra missing, ``bundle --config``, and the bundle extra staying out of the runtime
import. Each command's own behaviour is tested in tests/test_cli_*.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from hiercache import bundle
from hiercache.bundle import BundleConfig, BundleConfigError
from hiercache.cli import main
from hiercache.cli.app import COMMANDS
from prom import selectors


def run(
    *args: str, pre: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``hiercache ARGS`` in a subprocess; ``pre`` runs first (e.g. to block imports)."""
    script = f"{pre}\nimport sys\nfrom hiercache.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``hiercache ARGS`` in this process (help and usage errors: no I/O beyond the text)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def option_blocks(help_text: str) -> dict[str, str]:
    """Each option of a Rich help screen and the text shown for it (over wrapped lines)."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        match = re.match(r"^│\s+(--[a-z0-9-]+)", line)
        if match:
            current = match.group(1)
            blocks[current] = line
        elif current is not None and line.startswith("│") and not re.match(r"^│\s+-", line):
            blocks[current] += " " + line
        else:
            current = None
    return blocks


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # Rich's width: one line per option and default


@pytest.mark.usefixtures("wide")
@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_option_has_help_and_shows_its_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, _ = cli(capsys, *([command] if command else []), "--help")
    assert code == 0
    assert "``" not in text
    assert ":class:" not in text
    blocks = option_blocks(text)
    assert blocks, text
    for option, shown in blocks.items():
        if option == "--help":
            continue
        described = re.sub(r"<[^>]+>|\[[^\]]*\]|│|--[a-z0-9-]+|-[a-z]\b", "", shown).strip()
        assert len(described) > 10, (command, option, shown)  # a real help text
        assert "[default: " in shown or "[required]" in shown, (command, option, shown)


def test_demo_help_shows_the_request_default() -> None:
    assert "[default: 2000]" in run("demo", "--help").stdout


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"hiercache {version('hiercache')}"


@pytest.mark.parametrize("prefix", ["lukhas-cache", "1abc", 'x"} or vector(1)'])
def test_a_bad_prefix_is_a_one_line_usage_error(prefix: str, tmp_path: Path) -> None:
    done = run("bundle", "--prefix", prefix, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("hiercache bundle: error: Invalid value for '--prefix': invalid metric")
    assert repr(prefix) in line
    assert line.endswith("(see hiercache bundle --help)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "No such command 'nope'"),
        (["demo", "--requests", "0"], "'--requests': Input should be greater than or equal to 1"),
        (["demo", "--requests", "many"], "'--requests': Input should be a valid integer"),
        (["stats", "localhost:9464"], "URL 'localhost:9464': give http(s)://"),
        (["stats"], "Missing argument 'url'"),
        (["get"], "Missing argument 'key'"),
        (["demo", "--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 2
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"hiercache {args[0] if args[0] != 'nope' else ''}".strip())
    assert message in line, line


def test_missing_command_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("hiercache: error: missing command: one of demo")
    assert "bundle" in line


BLOCK_CLI = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("typer", "rich"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    """
)


@pytest.mark.parametrize("args", [[], ["demo"], ["--help"]])
def test_without_the_cli_extra_one_line_names_it(args: list[str]) -> None:
    done = run(*args, pre=BLOCK_CLI)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "the command line needs the 'cli' extra: pip install -e '.[cli]'" in line


def test_bundle_config_file_overrides_thresholds_and_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bundle.yml"
    config.write_text(
        textwrap.dedent(
            """
            prefix: lukhas_cache
            selector: 'job="api"'
            hit_ratio_warning: 0.55
            hit_ratio_for: 20m
            memory_limit_bytes: 1073741824
            runbook_url: https://example.com/runbooks.md
            """
        )
    )
    out = tmp_path / "out"
    assert main(["bundle", "--config", str(config), "--out", str(out)]) == 0
    printed = {Path(line) for line in capsys.readouterr().out.split()}
    assert printed == {out / relative for relative in bundle.render_bundle()}

    rules = yaml.safe_load((out / bundle.ALERTS_FILE).read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    low = alerts["HiercacheHitRatioLow"]
    assert "lukhas_cache_hit_ratio:ratio_rate5m < 0.55" in low["expr"]
    assert low["for"] == "20m"
    assert "(below 55%) for 20 minutes" in low["annotations"]["description"]
    assert low["annotations"]["runbook_url"] == (
        "https://example.com/runbooks.md#hiercacheratiolow".replace("ratio", "hitratio")
    )
    assert "> 1073741824" in alerts["HiercacheMemoryHigh"]["expr"]
    assert "1024 MiB" in alerts["HiercacheMemoryHigh"]["annotations"]["description"]
    # The selector is on every selector of every rule.
    for group in rules["groups"]:
        for rule in group["rules"]:
            for sel in selectors(rule["expr"]):
                if sel.name and sel.name.startswith("job_cache_name"):
                    continue  # recording rule outputs carry the job label already
                assert sel.matcher("job") == ("=", "api"), (sel, rule["expr"])
    dashboard = json.loads((out / bundle.DASHBOARD_FILE).read_text())
    memory = next(p for p in dashboard["panels"] if p["title"] == "L1 bytes per instance")
    assert memory["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 1073741824

    # --prefix wins over the file.
    assert main(["bundle", "--config", str(config), "--prefix", "other", "--out", str(out)]) == 0
    rules = yaml.safe_load((out / bundle.ALERTS_FILE).read_text())
    assert rules["groups"][0]["name"] == "other.recording"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hit_ratio_warnin: 0.5\n", "unknown bundle setting 'hit_ratio_warnin'"),
        ("hit_ratio_warning: high\n", "'hit_ratio_warning': expected float, got str"),
        ("hit_ratio_warning: 1.5\n", "'hit_ratio_warning': 1.5 not in 0..1"),
        ("hit_ratio_for: 10 minutes\n", "'hit_ratio_for': '10 minutes' is not a Prometheus"),
        ('selector: \'job="a"} or vector(1) or {x="\'\n', "'selector'"),
        ("memory_limit_bytes: 0\n", "'memory_limit_bytes': must be > 0"),
        ("hit_ratio_critical: 0.9\n", "'hit_ratio_critical': must not exceed"),
        ("- a list\n", "expected a mapping"),
        ("a: [\n", "not YAML/JSON"),
    ],
)
def test_bad_config_files_are_one_line_usage_errors(
    tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "bad.yml"
    config.write_text(content)
    done = run("bundle", "--config", str(config), "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("hiercache bundle: error: Invalid value for '--config': ")
    assert message in line
    assert not (tmp_path / "out").exists()


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(BundleConfigError, match=r"nope\.yml"):
        BundleConfig.from_file(tmp_path / "nope.yml")


def test_a_json_config_file_works_too(tmp_path: Path) -> None:
    config = tmp_path / "bundle.json"
    config.write_text(json.dumps({"l2_latency_p95_seconds": 0.025, "latency_for": "5m"}))
    loaded = BundleConfig.from_file(config)
    rules = bundle.alert_rules(config=loaded)
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    l2 = alerts["HiercacheL2LatencyHigh"]
    assert l2["expr"].endswith("> 0.025")
    assert "(above the 25ms target) for 5 minutes" in l2["annotations"]["description"]


BLOCK = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("yaml", "grafana_foundation_sdk", "_yaml")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    """
)


def test_bundle_without_the_extra_names_the_extra(tmp_path: Path) -> None:
    done = run("bundle", "--out", str(tmp_path / "out"), pre=BLOCK)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert "pip install 'hiercache[bundle]'" in line
    assert not (tmp_path / "out").exists()


def test_runtime_import_does_not_need_the_bundle_extra() -> None:
    script = BLOCK + textwrap.dedent(
        """
        import asyncio
        import hiercache
        import hiercache.telemetry
        from hiercache import CacheConfig, HierarchicalCacheManager
        from hiercache.cli import main

        async def use():
            async with HierarchicalCacheManager(CacheConfig(name="x", l2_backend="none")) as m:
                await m.set("a", 1)
                assert await m.get("a") == 1

        asyncio.run(use())
        import contextlib, io
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["bundle", "--help"]) == 0
        loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
        print("loaded", loaded)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded []"
