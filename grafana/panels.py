"""Shared dashboard defaults: datasource, variables, label selectors, thresholds, panel builders.

Every panel of every riskserve dashboard is built through these helpers, so each one has a
description, the `$datasource` datasource, lettered targets and the same legend and tooltip.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import (
    dashboard,
    prometheus,
    statushistory,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    FieldColorModeId,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

TAG = "riskserve"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

# Label selectors. job and namespace scope every riskserve and BentoML series to the riskserve
# targets (another BentoML service scraped by the same Prometheus shares the bentoml_* names).
# All matchers are regex (=~) so that ".*" (the "All" value, and the substitution used by
# tests) also matches series without the label, e.g. a local Prometheus outside Kubernetes.
SERVICE = 'job=~"$job", namespace=~"$namespace"'
MODELS = f'{SERVICE}, model=~"$model"'
# BentoML's `endpoint` label is the request path. A prometheus-operator ServiceMonitor adds its
# own `endpoint` target label (the port name) and, unless it sets honorLabels: true, Prometheus
# renames BentoML's to `exported_endpoint`. Filters test both labels and by_endpoint() takes
# the path from whichever holds it, so the panels work with either ServiceMonitor setting.
PROBES = "/(livez|readyz|healthz|metrics)|/v2/health/.*"
# Probe requests are counted by BentoML too; they would swamp the API's rates and latencies.
API = f'{SERVICE}, endpoint!~"{PROBES}", exported_endpoint!~"{PROBES}"'
# cAdvisor series carry namespace and pod but not our job; container="" is the pod's cgroup
# total and "POD" the pause container, both of which would double count.
PODS = 'namespace=~"$namespace", pod=~"$pod", container!="", container!="POD"'

# PSI bands used by the drift panels and, for 0.25, the drift alerts.
PSI_WATCH = 0.1
PSI_DRIFT = 0.25

GREEN, YELLOW, RED = "green", "#EAB839", "red"


def by_endpoint(expr: str) -> str:
    """`expr` with the request path in `endpoint`, even where it arrived as exported_endpoint."""
    return f'label_replace({expr}, "endpoint", "$1", "exported_endpoint", "(.+)")'


def thresholds(*steps: tuple[float, str], base: str = GREEN) -> dashboard.ThresholdsConfig:
    """Absolute thresholds: `base` colour below the first step, then each (value, colour)."""
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps(
            [Threshold(value=None, color=base), *(Threshold(value=v, color=c) for v, c in steps)]
        )
    )


def psi_thresholds() -> dashboard.ThresholdsConfig:
    return thresholds((PSI_WATCH, YELLOW), (PSI_DRIFT, RED))


def query(expr: str, legend: str = "", *, instant: bool = False) -> prometheus.Dataquery:
    """A Prometheus target. Instant queries come back as a table (one row per series)."""
    target = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    if instant:
        target = target.instant().format(PromQueryFormat.TABLE)
    return target


QUANTILES = (0.5, 0.95, 0.99)


def quantile_queries(by: tuple[str, ...], buckets: str) -> list[prometheus.Dataquery]:
    """p50 / p95 / p99 targets of a histogram: `buckets` is the per-second bucket rate, split by
    the labels `by` (each line's legend names them and the quantile)."""
    labels = ", ".join(by)
    names = " ".join(f"{{{{{label}}}}}" for label in by)
    return [
        query(f"histogram_quantile({q}, sum by ({labels}, le) ({buckets}))",
              f"{names} p{round(q * 100)}")
        for q in QUANTILES
    ]


def _lettered(targets: tuple[prometheus.Dataquery, ...]) -> list[prometheus.Dataquery]:
    # Grafana needs distinct refIds to keep the results of several targets apart.
    assert targets, "a panel without a query shows nothing"
    return [target.ref_id(chr(ord("A") + i)) for i, target in enumerate(targets)]


P = TypeVar("P", timeseries.Panel, table.Panel, statushistory.Panel)


def _framed(panel: P, title: str, description: str, targets: tuple[prometheus.Dataquery, ...],
            width: int, height: int) -> P:
    """What every panel has: title, the reader's description, $datasource, queries, size."""
    assert description, f"panel {title!r} needs a description"
    return (panel.title(title).description(description).datasource(DATASOURCE)
            .targets(_lettered(targets)).span(width).height(height))


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    *targets: prometheus.Dataquery,
    width: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    """A line chart with a table legend (mean, max, last) sorted by the last value."""
    return (
        _framed(timeseries.Panel(), title, description, targets, width, height)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
            .sort_by("Last *")
            .sort_desc(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )


def with_threshold_lines(panel: timeseries.Panel, *steps: tuple[float, str]) -> timeseries.Panel:
    """Draw alert thresholds on a time series as dashed lines."""
    return panel.thresholds(thresholds(*steps, base="transparent")).thresholds_style(
        common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
    )


def table_panel(
    title: str,
    description: str,
    *targets: prometheus.Dataquery,
    rename: dict[str, str],
    hide: tuple[str, ...] = ("Time",),
    width: int = 12,
    height: int = 10,
) -> table.Panel:
    """A table of instant queries, merged on their labels, value columns renamed by `rename`."""
    panel = (
        _framed(table.Panel(), title, description, targets, width, height)
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
    )
    if len(targets) > 1:
        panel = panel.with_transformation(DataTransformerConfig(id_val="merge", options={}))
    return panel.with_transformation(
        DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {name: True for name in hide},
                "renameByName": rename,
            },
        )
    )


def color_cells(panel: table.Panel, *columns: str) -> table.Panel:
    """Colour the background of `columns` by the panel's thresholds."""
    for column in columns:
        panel = panel.override_by_name(
            column,
            [DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"})],
        )
    return panel


def status_history_panel(
    title: str,
    description: str,
    *targets: prometheus.Dataquery,
    width: int = 24,
    height: int = 12,
) -> statushistory.Panel:
    """One row per series, each cell coloured by the thresholds (a heatmap of states)."""
    return (
        _framed(statushistory.Panel(), title, description, targets, width, height)
        .show_value(common.VisibilityMode.NEVER)
        .color_scheme(dashboard.FieldColor().mode(FieldColorModeId.THRESHOLDS))
        .legend(common_builders.VizLegendOptions().show_legend(False))
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.SINGLE))
    )


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(
    name: str, label: str, selector: str, *, all_value: str | None = None
) -> dashboard.QueryVariable:
    """A multi-value variable of the values of label `name` on `selector`, defaulting to All.

    Without `all_value`, "All" expands to exactly the listed values (e.g. only riskserve pods);
    with ".*" it also covers series lacking the label.
    """
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({selector}, {name})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )
    return variable.all_value(all_value) if all_value is not None else variable


def job_variable() -> dashboard.QueryVariable:
    # Jobs that export riskserve_model_info are riskserve targets, whatever the release name.
    return label_variable("job", "Job", "riskserve_model_info")


def namespace_variable() -> dashboard.QueryVariable:
    return label_variable(
        "namespace", "Namespace", 'riskserve_model_info{job=~"$job"}', all_value=".*"
    )


def model_variable() -> dashboard.QueryVariable:
    return label_variable("model", "Model", f"riskserve_model_info{{{SERVICE}}}", all_value=".*")


def pod_variable() -> dashboard.QueryVariable:
    return label_variable("pod", "Pod", f"riskserve_model_info{{{SERVICE}}}")


def new_dashboard(title: str, uid: str, description: str, time_from: str) -> dashboard.Dashboard:
    """Dashboard defaults: stable uid, riskserve tag, shared crosshair, links to the others."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .time(time_from, "now")
        .timezone("browser")
        .refresh("1m")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("riskserve")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
    )


def to_json(builder: dashboard.Dashboard) -> dict[str, Any]:
    """The dashboard as a plain JSON object, panels numbered in order (ids must be unique)."""
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number
    # The SDK gives every variable the same all-zero id; Grafana keys variables by name when
    # the id is absent, as in its own exports.
    for variable in model["templating"]["list"]:
        variable.pop("id", None)
    return model
