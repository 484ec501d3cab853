"""The "riskserve / Model health" dashboard: drift, data quality and loaded model versions."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard, statushistory, table, timeseries

from grafana.panels import (
    MODELS,
    PSI_DRIFT,
    PSI_WATCH,
    RED,
    YELLOW,
    color_cells,
    datasource_variable,
    job_variable,
    model_variable,
    namespace_variable,
    new_dashboard,
    psi_thresholds,
    query,
    status_history_panel,
    table_panel,
    thresholds,
    timeseries_panel,
    to_json,
    with_threshold_lines,
)
from riskserve.core.specs import SPECS

UID = "riskserve-model-health"
TITLE = "riskserve / Model health"

PSI_BANDS = (
    f"PSI below {PSI_WATCH} is stable, {PSI_WATCH} to {PSI_DRIFT} worth watching, above "
    f"{PSI_DRIFT} a significant shift"
)


def _ratio(counter: str) -> str:
    # Share of scored rows of the same model version: each row carries every feature once.
    return (
        f"sum by (model, version, feature) (rate({counter}{{{MODELS}}}[$__rate_interval]))"
        " / on (model, version) group_left () "
        f"(sum by (model, version) (rate(riskserve_predictions_total{{{MODELS}}}"
        "[$__rate_interval])) > 0)"
    )


# Drift -----------------------------------------------------------------------------------------


def feature_psi_table() -> table.Panel:
    panel = table_panel(
        "Feature drift now (PSI, last hour and last day)",
        "Population stability index of each feature's served values against the training "
        f"distribution, recorded by riskserve:feature_psi:1h and :1d. {PSI_BANDS}; "
        "RiskserveFeatureDrift fires when the 1h PSI stays above it for 30m. Features of "
        "models without traffic in the window are absent.",
        query(f"riskserve:feature_psi:1h{{{MODELS}}}", instant=True),
        query(f"riskserve:feature_psi:1d{{{MODELS}}}", instant=True),
        rename={"Value #A": "PSI 1h", "Value #B": "PSI 1d"},
        hide=("Time", "job", "namespace"),
        height=12,
    )
    panel = panel.thresholds(psi_thresholds()).decimals(3)
    return color_cells(panel, "PSI 1h", "PSI 1d")


def feature_psi_statushistory() -> statushistory.Panel:
    return (
        status_history_panel(
            "Feature drift over time (PSI, last hour)",
            "One row per model and feature, coloured by the rolling 1h PSI: green below "
            f"{PSI_WATCH}, yellow up to {PSI_DRIFT}, red above. Shows when a shift started "
            "and whether it followed a version rollout.",
            query(f"riskserve:feature_psi:1h{{{MODELS}}}", "{{model}} {{version}} {{feature}}"),
        )
        .thresholds(psi_thresholds())
        .decimals(3)
    )


def prediction_psi_timeseries() -> timeseries.Panel:
    panel = timeseries_panel(
        "Prediction drift (PSI, last hour and last day)",
        "PSI of the served predictions (scores or classes) against the held-out predictions "
        f"at training time. {PSI_BANDS}; RiskservePredictionDrift fires when the 1h PSI "
        "stays above it for 30m.",
        "none",
        query(f"riskserve:prediction_psi:1h{{{MODELS}}}", "{{model}} {{version}} 1h"),
        query(f"riskserve:prediction_psi:1d{{{MODELS}}}", "{{model}} {{version}} 1d"),
    )
    return with_threshold_lines(panel, (PSI_WATCH, YELLOW), (PSI_DRIFT, RED))


def feature_bin_ratio_table() -> table.Panel:
    return table_panel(
        "Served vs training share per bin (last hour)",
        "For each feature bin, the share of the last hour's served values that fell in it "
        "(riskserve:feature_bin_ratio:1h) next to its share in the training data: the bins "
        "that moved explain a high PSI. Pick one model to keep the table short.",
        query(f"riskserve:feature_bin_ratio:1h{{{MODELS}}}", instant=True),
        query(f"riskserve:feature_reference_ratio:1h{{{MODELS}}}", instant=True),
        rename={"Value #A": "served", "Value #B": "training"},
        hide=("Time", "job", "namespace"),
        height=12,
    ).unit("percentunit")


# Data quality ----------------------------------------------------------------------------------


def feature_out_of_range_timeseries() -> timeseries.Panel:
    panel = timeseries_panel(
        "Out-of-training-range values by feature",
        "Share of scored rows whose value of a feature lies outside the min/max seen in "
        "training (riskserve_feature_out_of_range_total / rows): the model extrapolates "
        "there. RiskserveFeatureOutOfRange fires above 5% for 15m.",
        "percentunit",
        query(_ratio("riskserve_feature_out_of_range_total"), "{{model}} {{version}} {{feature}}"),
        width=8,
    )
    return with_threshold_lines(panel, (0.05, RED))


def feature_missing_timeseries() -> timeseries.Panel:
    panel = timeseries_panel(
        "Missing values by feature",
        "Share of scored rows that arrived without a value for a feature "
        "(riskserve_feature_missing_total / rows); a jump usually means an upstream field was "
        "renamed or dropped. RiskserveFeatureMissing fires above 10% for 15m.",
        "percentunit",
        query(_ratio("riskserve_feature_missing_total"), "{{model}} {{version}} {{feature}}"),
        width=8,
    )
    return with_threshold_lines(panel, (0.10, RED))


def feature_unseen_category_timeseries() -> timeseries.Panel:
    panel = timeseries_panel(
        "Unseen categories by feature",
        "Share of scored rows whose categorical value (country, city, profession...) never "
        "appeared in training (riskserve_feature_unseen_category_total / rows). "
        "RiskserveUnseenCategory fires above 10% for 15m.",
        "percentunit",
        query(
            _ratio("riskserve_feature_unseen_category_total"), "{{model}} {{version}} {{feature}}"
        ),
        width=8,
    )
    return with_threshold_lines(panel, (0.10, RED))


# Versions --------------------------------------------------------------------------------------


def model_info_table() -> table.Panel:
    expected = "; ".join(f"{spec.name} ({spec.algorithm}, {spec.task})" for spec in SPECS.values())
    panel = table_panel(
        "Loaded model versions",
        "Each model version loaded by the service (riskserve_model_info) and how many scrape "
        "targets (pods) serve it; two versions of one model mean a rollout is in progress. "
        f"The service should list all {len(SPECS)} models: {expected}.",
        query(
            "count by (model, version, algorithm) "
            f"(max by (model, version, algorithm, instance) (riskserve_model_info{{{MODELS}}}))",
            instant=True,
        ),
        rename={"Value": "targets"},
        width=10,
    )
    # Coloured so a version served by fewer targets than its siblings stands out mid-rollout.
    return color_cells(panel.thresholds(thresholds((1, "green"), base=RED)), "targets")


def predictions_version_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Rows scored per second by model version",
        "Traffic per model version: during a rollout the new version takes over. Drift is "
        "measured per version, against that version's own training data.",
        "suffix: rows/s",
        query(
            "sum by (model, version) "
            f"(rate(riskserve_predictions_total{{{MODELS}}}[$__rate_interval]))",
            "{{model}} {{version}}",
        ),
        width=14,
    )


def build() -> dict[str, Any]:
    """The model health dashboard as Grafana JSON."""
    return to_json(
        new_dashboard(
            TITLE,
            UID,
            "Feature and prediction drift (PSI against each version's training data), input "
            "data quality and loaded versions of the riskserve models.",
            "now-24h",
        )
        .with_variable(datasource_variable())
        .with_variable(job_variable())
        .with_variable(namespace_variable())
        .with_variable(model_variable())
        .with_row(dashboard.Row("Drift"))
        .with_panel(feature_psi_table())
        .with_panel(prediction_psi_timeseries().height(12))
        .with_panel(feature_psi_statushistory())
        .with_panel(feature_bin_ratio_table().span(24))
        .with_row(dashboard.Row("Data quality"))
        .with_panel(feature_out_of_range_timeseries())
        .with_panel(feature_missing_timeseries())
        .with_panel(feature_unseen_category_timeseries())
        .with_row(dashboard.Row("Versions"))
        .with_panel(model_info_table())
        .with_panel(predictions_version_timeseries())
    )
