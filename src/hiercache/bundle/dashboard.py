"""The "hiercache / Overview" Grafana dashboard, built with grafana-foundation-sdk.

Every query is filtered on the dashboard's ``job``, ``instance`` and ``cache_name``
variables and uses ``$__rate_interval``; every series name comes from the metric catalogue.
Definitions are those of ``rules.py``; calls saved = hits + coalesced waits.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import QueryEditorMode

from hiercache.bundle.config import DEFAULT_PREFIX, BundleConfig
from hiercache.bundle.panels import Panel, Query, rows
from hiercache.bundle.panels_coherence import coherence_rows
from hiercache.bundle.rules import always_exported

__all__ = ["dashboard"]

Json = dict[str, Any]
_DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")


def _target(ref: str, query: Query) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .datasource(_DS)
        .editor_mode(QueryEditorMode.CODE)
        .expr(query.expr)
        .legend_format(query.legend)
        .range()
        .ref_id(ref)
    )


def _thresholds(steps: tuple[tuple[float | None, str], ...]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


def _stat(panel: Panel) -> stat.Panel:
    built = (
        stat.Panel()
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.AREA)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .text_mode(cm.BigValueTextMode.AUTO)
    )
    if panel.value_texts:
        results = {
            value: dm.ValueMappingResult(color=color, index=i, text=text)
            for i, (value, (text, color)) in enumerate(panel.value_texts)
        }
        built = built.mappings([dm.ValueMap(options=results)])
    return built


def _timeseries(panel: Panel) -> timeseries.Panel:
    built = (
        timeseries.Panel()
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(cm.GraphDrawStyle.LINE)
        .fill_opacity(20 if panel.stacked else 10)
        .line_width(1)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(
            cb.StackingConfig()
            .group("A")
            .mode(cm.StackingMode.NORMAL if panel.stacked else cm.StackingMode.NONE)
        )
        .legend(
            cb.VizLegendOptions()
            .calcs([])
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)
        )
    )
    if panel.log_scale:
        built = built.scale_distribution(
            cb.ScaleDistributionConfig().type(cm.ScaleDistribution.LOG).log(10)
        )
    if panel.threshold_line:
        built = built.thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)
        )
    return built


def _panel(panel: Panel, panel_id: int, width: int, height: int) -> stat.Panel | timeseries.Panel:
    built = _stat(panel) if panel.kind == "stat" else _timeseries(panel)
    built = (
        built.id(panel_id)
        .title(panel.title)
        .description(panel.description)
        .datasource(_DS)
        .unit(panel.unit)
        .span(width)
        .height(height)
    )
    for i, query in enumerate(panel.queries):
        built = built.with_target(_target(chr(ord("A") + i), query))
    if panel.min is not None:
        built = built.min(panel.min)
    if panel.max is not None:
        built = built.max(panel.max)
    if panel.decimals is not None:
        built = built.decimals(panel.decimals)
    if panel.thresholds:
        built = built.thresholds(_thresholds(panel.thresholds))
    return built


def _variable(config: BundleConfig, name: str, label: str, matchers: str) -> db.QueryVariable:
    # Every cache exports its L1 entries gauge from the start; l2_up is missing for caches
    # configured without L2 (CACHE_L2_BACKEND=none), which would then be unselectable.
    query = f"label_values({always_exported(config, matchers)}, {name})"
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(_DS)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .regex("")
        .hide(dm.VariableHide.DONT_HIDE)
    )


def dashboard(config: BundleConfig) -> Json:
    """The overview dashboard for metrics named ``<prefix>_*``, as Grafana JSON."""
    prefix = config.prefix
    suffix = "" if prefix == DEFAULT_PREFIX else f" ({prefix})"
    built = (
        db.Dashboard(f"hiercache / Overview{suffix}")
        .uid(prefix.replace("_", "-")[:31] + "-overview")
        .description(
            "Two-tier cache (L1 memory, L2 Redis) health: hit ratios, traffic, latency per "
            "tier, memory, Redis errors, write-behind, stale serving and the backplane. "
            "Generated by hiercache.bundle; "
            "do not edit by hand."
        )
        .tags(["hiercache", "cache", "redis"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .version(1)
        .refresh(config.dashboard_refresh)
        .time("now-30m", "now")
        .timezone("browser")
        .annotation(
            db.AnnotationQuery()
            .built_in(1)
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .name("Annotations & Alerts")
            .type("dashboard")
        )
        .with_variable(
            db.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .regex("")
            .hide(dm.VariableHide.DONT_HIDE)
        )
        .with_variable(_variable(config, "job", "Job", ""))
        .with_variable(_variable(config, "instance", "Instance", 'job=~"$job"'))
        .with_variable(
            _variable(config, "cache_name", "Cache name", 'job=~"$job", instance=~"$instance"')
        )
    )
    next_id = 1
    for title, members in [*rows(config), *coherence_rows(config)]:
        built = built.with_row(db.Row(title).id(next_id).collapsed(False))
        next_id += 1
        height = 5 if all(p.kind == "stat" for p in members) else 8
        for panel in members:
            built = built.with_panel(_panel(panel, next_id, 24 // len(members), height))
            next_id += 1
    encoded: Json = json.loads(json.dumps(built.build(), cls=JSONEncoder))
    return encoded
