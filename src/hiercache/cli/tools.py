"""``bundle`` (the dashboards and rules generator) and ``bench`` (the benchmarks of a
source checkout)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import typer

import hiercache
from hiercache.cli.common import fail, prefix_option

__all__ = ["bench_command", "bundle_command", "source_checkout"]

BUNDLE_EPILOG = (
    "A --config file (YAML or JSON) maps setting names to values, e.g. prefix, selector, "
    "runbook_url, hit_ratio_warning, hit_ratio_critical, hit_ratio_for, "
    "l1_latency_p95_seconds, l2_latency_p95_seconds, memory_limit_bytes, min_request_rate; "
    "see docs/bundle.md for every key. --prefix and --runbook override the file."
)
#: What the benchmarks import beyond the library: module -> the extra that brings it.
BENCH_MODULES = ("cachetools", "opentelemetry.sdk", "opentelemetry.exporter.prometheus")

OUT = typer.Option(..., help="Directory to write the files under.", show_default=False)
CONFIG = typer.Option(
    None,
    show_default=False,
    help="YAML or JSON file of bundle settings. [default: none, the shipped values]",
)
CHECKOUT = typer.Option(
    None,
    show_default=False,
    help="The source checkout to run the benchmarks of. "
    "[default: the one hiercache is installed from]",
)


def bundle_command(
    out: Path = OUT,
    prefix: str | None = prefix_option(
        None,
        "Metric prefix the services use, their CACHE_METRICS_PREFIX. "
        "[default: the config file's, else hiercache]",
    ),
    runbook: str | None = typer.Option(
        None,
        show_default=False,
        help="Base URL of the runbook for the alerts' runbook_url. "
        "[default: the config file's, else docs/runbooks.md]",
    ),
    config: Path | None = CONFIG,
) -> None:
    """Render the Grafana dashboard, its provisioning files and the Prometheus rules under
    OUT. Needs the 'bundle' extra."""
    try:
        from hiercache import bundle
    except ImportError as exc:  # the bundle extra is not installed
        fail("bundle", str(exc), 2)
    overrides = {"prefix": prefix, "runbook_url": runbook}
    try:
        if config is not None:
            settings = bundle.BundleConfig.from_file(config, **overrides)
        else:
            settings = bundle.BundleConfig.from_mapping({}, **overrides)
    except bundle.BundleConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--config'") from None
    for path in bundle.write_bundle(out, config=settings):
        print(path)


def source_checkout() -> Path | None:
    """The source checkout hiercache runs from (``pip install -e``), if any."""
    root = Path(hiercache.__file__).resolve().parents[2]
    if (root / "benchmarks").is_dir() and (root / "Makefile").is_file():
        return root
    return None


def _missing_modules() -> list[str]:
    missing = []
    for module in BENCH_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def bench_command(
    checkout: Path | None = CHECKOUT,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the command, do not run it. [default: off]"
    ),
) -> None:
    """Run the benchmarks (make bench). Needs a source checkout (pip install -e from a
    clone) and the 'bench' extra."""
    root = checkout or source_checkout()
    if root is None or not (root / "benchmarks").is_dir() or not (root / "Makefile").is_file():
        where = f" ({root} has no benchmarks/ and Makefile)" if root is not None else ""
        fail(
            "bench",
            "the benchmarks need a source checkout: clone the repository and "
            f"pip install -e '.[bench]' there{where}",
            2,
        )
    missing = _missing_modules()
    if missing:
        fail(
            "bench",
            f"the benchmarks need the 'bench' extra (missing: {', '.join(missing)}): "
            "pip install -e '.[bench]'",
            2,
        )
    make = shutil.which("make")
    if make is None:
        fail("bench", "make is not on PATH: install it (apt-get install make)", 2)
    command = [make, "-C", str(root), "bench"]
    if dry_run:
        print(" ".join(command))
        return
    raise typer.Exit(subprocess.run(command, check=False).returncode)  # noqa: S603
