"""The observability bundle: Grafana dashboard, provisioning, and Prometheus rules.

Dev tooling, outside the runtime library: it needs the ``bundle`` extra
(``pip install 'hiercache[bundle]'``: PyYAML and grafana-foundation-sdk). The committed files
under ``dashboards/`` and ``alerts/hiercache.rules.yml`` are :func:`write_bundle`'s output for
the default :class:`BundleConfig` (a test keeps them byte-identical), and
``hiercache bundle [--config FILE] [--prefix P] --out DIR`` renders the same bundle with other
settings, e.g. for a service that sets ``CACHE_METRICS_PREFIX=P``.

Modules: ``config`` (settings), ``panels``, ``panels_coherence`` and ``dashboard`` (the
dashboard), ``rules`` (recording rules and alerts), ``provisioning`` (Grafana provisioning),
``yaml_text`` and ``render`` (output). Every metric name comes from
``hiercache.telemetry.catalogue``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

# First: a missing extra fails here, with one line naming it.
from hiercache.bundle.requirements import EXTRA_HINT

# isort: split
from hiercache.bundle import dashboard as _dashboard_module
from hiercache.bundle import provisioning as _provisioning
from hiercache.bundle import rules as _rules
from hiercache.bundle.config import DEFAULT_PREFIX, BundleConfig, BundleConfigError, check_prefix
from hiercache.bundle.render import (
    ALERTS_FILE,
    DASHBOARD_FILE,
    DATASOURCES_FILE,
    PROVIDERS_FILE,
    render_files,
    write_files,
)
from hiercache.bundle.yaml_text import to_yaml

__all__ = [
    "ALERTS_FILE",
    "DASHBOARD_FILE",
    "DATASOURCES_FILE",
    "DEFAULT_PREFIX",
    "EXTRA_HINT",
    "MEMORY_LIMIT_BYTES",
    "MIN_REQUEST_RATE",
    "PROVIDERS_FILE",
    "RUNBOOK_PATH",
    "BundleConfig",
    "BundleConfigError",
    "alert_rules",
    "dashboard",
    "dashboard_provider",
    "datasources",
    "render_bundle",
    "to_yaml",
    "write_bundle",
]

_DEFAULTS: Final = BundleConfig()
#: Where each alert's ``runbook_url`` points by default (an anchor per alert is appended).
RUNBOOK_PATH: Final = _DEFAULTS.runbook_url
#: Below this many requests per second a cache is "idle": ratio alerts stay silent.
MIN_REQUEST_RATE: Final = _DEFAULTS.min_request_rate
#: The per-instance L1 memory target.
MEMORY_LIMIT_BYTES: Final = _DEFAULTS.memory_limit_bytes


def _config(prefix: str | None, config: BundleConfig | None, **changes: Any) -> BundleConfig:
    base = config or _DEFAULTS
    if prefix is not None:
        changes["prefix"] = check_prefix(prefix)
    changes = {k: v for k, v in changes.items() if v is not None}
    return base.replace(**changes) if changes else base


def dashboard(prefix: str | None = None, *, config: BundleConfig | None = None) -> dict[str, Any]:
    """The "hiercache / Overview" dashboard (Grafana JSON) for metrics named ``<prefix>_*``."""
    return _dashboard_module.dashboard(_config(prefix, config))


def alert_rules(
    prefix: str | None = None, runbook: str | None = None, *, config: BundleConfig | None = None
) -> dict[str, Any]:
    """Prometheus rule groups: recording rules, then the alerts."""
    return _rules.alert_rules(_config(prefix, config, runbook_url=runbook))


def datasources(*, config: BundleConfig | None = None) -> dict[str, Any]:
    """Grafana data source provisioning: the stack's Prometheus (default) and Tempo."""
    return _provisioning.datasources(config or _DEFAULTS)


def dashboard_provider(*, config: BundleConfig | None = None) -> dict[str, Any]:
    """Grafana dashboard provisioning: the dashboard JSON files, folder "hiercache"."""
    return _provisioning.dashboard_provider(config or _DEFAULTS)


def render_bundle(
    prefix: str | None = None, runbook: str | None = None, *, config: BundleConfig | None = None
) -> dict[str, str]:
    """The bundle's files for ``prefix`` (or ``config``), as relative path -> text."""
    return render_files(_config(prefix, config, runbook_url=runbook))


def write_bundle(
    out_dir: Path,
    prefix: str | None = None,
    *,
    runbook: str | None = None,
    config: BundleConfig | None = None,
) -> list[Path]:
    """Write the dashboards, provisioning files and rules under ``out_dir``.

    ``runbook`` is the base of every alert's ``runbook_url`` (an anchor per alert is
    appended): point it at where your copy of ``docs/runbooks.md`` is published.
    Returns the written paths.
    """
    return write_files(out_dir, _config(prefix, config, runbook_url=runbook))
