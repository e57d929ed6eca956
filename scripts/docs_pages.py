"""The docs site's generated pages: configuration (from ``CacheConfig``) and the metrics
reference (from the metric catalogue). ``mkdocs.yml`` runs this as a hook; run it as a
script to print a page: ``python scripts/docs_pages.py configuration.md``."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Any

from hiercache.cli.settings_view import env_names, shown
from hiercache.settings import CacheConfig
from hiercache.telemetry.catalogue import LATENCY_BUCKETS, METRICS, InstrumentKind

FALLBACK_INTEGRATIONS = """# Django, FastAPI and Flask

The framework integrations (`hiercache.contrib`) are being written; this page is replaced
by their guide when it lands. Until then, use the cache directly: see the
[quick start](index.md) (`HierarchicalCacheManager` with `async with` in an asyncio app,
`cache.sync` in a threaded one).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def configuration_page() -> str:
    lines = [
        "# Configuration",
        "",
        "Generated from `hiercache.settings.CacheConfig`. Every setting is a keyword argument",
        "of `CacheConfig(...)` and an environment variable (also read from `.env`); the",
        "first variable listed is the canonical one, the others are aliases. Secrets",
        "(`SecretStr`) are never shown: `hiercache config` prints the resolved settings with",
        "them masked, and exits 2 naming every invalid one.",
        "",
        "| setting | environment variables | type | default | constraints |",
        "|---|---|---|---|---|",
    ]
    for name, info in CacheConfig.model_fields.items():
        default: Any = info.get_default(call_default_factory=True)
        constraints = ", ".join(
            f"`{m}`" for m in info.metadata if type(m).__name__ not in ("Strict",)
        )
        annotation = getattr(info.annotation, "__name__", None) or str(info.annotation)
        annotation = annotation.replace("typing.", "").replace("pydantic.types.", "")
        if isinstance(info.annotation, type) and issubclass(info.annotation, Enum):
            choices = ", ".join(f"`{member.value}`" for member in info.annotation)
            constraints = f"one of {choices}"
        if "SecretStr" in annotation:
            constraints = "a secret: `hiercache config` shows `******`"
        lines.append(
            f"| `{name}` | {', '.join(f'`{e}`' for e in env_names(name, info))} "
            f"| `{_cell(annotation)}` | `{_cell(shown(default))}` "
            f"| {_cell(constraints)} |"
        )
    return "\n".join(lines) + "\n"


KIND = {
    InstrumentKind.OBSERVABLE_COUNTER: "counter",
    InstrumentKind.HISTOGRAM: "histogram",
    InstrumentKind.OBSERVABLE_GAUGE: "gauge",
}


def metrics_page(prefix: str = "hiercache") -> str:
    lines = [
        "# Metrics reference",
        "",
        "Generated from the metric catalogue (`hiercache.telemetry.catalogue.METRICS`), for",
        f"the default prefix `{prefix}` (`CACHE_METRICS_PREFIX` changes it). Names are",
        "shown as OpenTelemetry instruments and as the Prometheus exporter exposes them.",
        "",
        "| Prometheus name | instrument | kind | unit | labels | description |",
        "|---|---|---|---|---|---|",
    ]
    for m in METRICS:
        if m.kind is InstrumentKind.HISTOGRAM:
            names = "<br>".join(
                f"`{m.prometheus_name(prefix, s)}`" for s in ("bucket", "sum", "count")
            )
        else:
            names = f"`{m.prometheus_name(prefix)}`"
        labels = ", ".join(f"`{label}`" for label in m.prometheus_labels())
        lines.append(
            f"| {names} | `{m.instrument_name(prefix)}` | {KIND[m.kind]} "
            f"| `{m.unit or '1'}` | {labels} | {_cell(m.description)} |"
        )
    buckets = ", ".join(f"{b:g}" for b in LATENCY_BUCKETS)
    lines += ["", f"Latency histogram buckets (seconds): {buckets}.", ""]
    return "\n".join(lines)


GENERATED = {"configuration.md": configuration_page, "metrics.md": metrics_page}


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated pages (and a short integrations page if missing)."""
    from mkdocs.structure.files import File

    for path, make in GENERATED.items():
        files.append(File.generated(config, path, content=make()))
    if files.get_file_from_path("integrations.md") is None:
        files.append(File.generated(config, "integrations.md", content=FALLBACK_INTEGRATIONS))
    return files


if __name__ == "__main__":
    sys.stdout.write(GENERATED[sys.argv[1]]())
