"""The "riskserve / Model health" dashboard: drift, data quality, live quality from ground truth,
shadow candidates and loaded model versions."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard, statushistory, table, timeseries
from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

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
    quantile_queries,
    query,
    status_history_panel,
    table_panel,
    thresholds,
    timeseries_panel,
    to_json,
    with_threshold_lines,
)
from riskserve.core.specs import SPECS

# Alert lines drawn dashed, like the threshold lines of the other panels.
_DASHED = [DynamicConfigValue(id_val="custom.lineStyle",
                              value={"fill": "dash", "dash": [10, 10]})]

UID = "riskserve-model-health"
TITLE = "riskserve / Model health"

# The `metric` values of riskserve:live_quality:<window>, named like training's held-out metrics:
# shares where higher is better, and regression errors where lower is.
LIVE_RATIOS = "precision|recall|f1|accuracy"
LIVE_ERRORS = "mae|rmse"
QUALITY_ALERTS = (
    "RiskserveLiveQualityBelowHeldout fires when a live share stays more than "
    "riskserve:live_quality_margin:1h below the held-out value, and RiskserveLiveErrorAboveHeldout "
    "when MAE or RMSE stays more than riskserve:live_error_margin:1h (relative) above it, each "
    "for 30m and only when the hour holds riskserve:live_quality_min_outcomes:1h outcomes behind "
    "that metric"
)

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


# Ground truth ----------------------------------------------------------------------------------


def _heldout(metrics: str) -> str:
    # Every pod exports the same stored value; max dedupes them.
    return (
        "max by (job, namespace, model, version, metric) (riskserve_model_heldout_metric"
        f'{{{MODELS}, metric=~"{metrics}"}})'
    )


def live_quality_table() -> table.Panel:
    panel = table_panel(
        "Live vs held-out quality per version (last hour and day)",
        "Quality of each model version on the outcomes callers sent back to /v1/feedback "
        "(riskserve:live_quality:1h and :1d), beside the same metric on the held-out test set "
        "at training time (riskserve_model_heldout_metric). Binary: precision, recall, F1, "
        "accuracy; multiclass: accuracy; regression: MAE and RMSE (lower is better). "
        "'outcomes 1h' is what the hour's value rests on (e.g. predicted positives for "
        f"precision). {QUALITY_ALERTS}. Versions without feedback show only the held-out value.",
        query(f"riskserve:live_quality:1h{{{MODELS}}}", instant=True),
        query(f"riskserve:live_quality:1d{{{MODELS}}}", instant=True),
        query(_heldout(f"{LIVE_RATIOS}|{LIVE_ERRORS}"), instant=True),
        query(f"riskserve:live_quality_outcomes:1h{{{MODELS}}}", instant=True),
        rename={"Value #A": "live 1h", "Value #B": "live 1d", "Value #C": "held-out",
                "Value #D": "outcomes 1h"},
        hide=("Time", "job", "namespace"),
        width=24,
    )
    return panel.decimals(3).override_by_name(
        "outcomes 1h", [DynamicConfigValue(id_val="decimals", value=0)]
    )


def live_quality_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Live precision, recall, F1 and accuracy (last hour) against the alert line",
        "Rolling 1h live quality per version and metric, and as dashed lines the value it "
        "alerts under: held-out minus riskserve:live_quality_margin:1h. A live line under its "
        "dashed twin for 30m, on enough outcomes, is RiskserveLiveQualityBelowHeldout.",
        "percentunit",
        query(
            f'riskserve:live_quality:1h{{{MODELS}, metric=~"{LIVE_RATIOS}"}}',
            "{{model}} {{version}} {{metric}}",
        ),
        query(
            f"{_heldout(LIVE_RATIOS)} - scalar(riskserve:live_quality_margin:1h)",
            "{{model}} {{version}} {{metric}} alert under",
        ),
    ).override_by_query("B", _DASHED)


def live_error_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Live MAE and RMSE (last hour) against the alert line",
        "Rolling 1h live error of regression versions, and as dashed lines the value it "
        "alerts above: held-out x (1 + riskserve:live_error_margin:1h). A live line above its "
        "dashed twin for 30m, on enough outcomes, is RiskserveLiveErrorAboveHeldout.",
        "none",
        query(
            f'riskserve:live_quality:1h{{{MODELS}, metric=~"{LIVE_ERRORS}"}}',
            "{{model}} {{version}} {{metric}}",
        ),
        query(
            f"{_heldout(LIVE_ERRORS)} * (1 + scalar(riskserve:live_error_margin:1h))",
            "{{model}} {{version}} {{metric}} alert above",
        ),
    ).override_by_query("B", _DASHED)


def feedback_outcomes_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Outcomes received per second by model version",
        "Ground-truth outcomes arriving at /v1/feedback per version (riskserve_feedback_total "
        "for classifiers, the riskserve_feedback_abs_error count for regression). Outcomes "
        "often arrive days after the prediction (chargebacks, defaults), so the versions here "
        "can be older than the ones serving now.",
        "suffix: outcomes/s",
        query(
            "sum by (model, version) "
            f"(rate(riskserve_feedback_total{{{MODELS}}}[$__rate_interval]))"
            " or sum by (model, version) "
            f"(rate(riskserve_feedback_abs_error_count{{{MODELS}}}[$__rate_interval]))",
            "{{model}} {{version}}",
        ),
        width=14,
    )


def feedback_confusion_table() -> table.Panel:
    return table_panel(
        "Binary outcomes in the last hour",
        "Outcomes of binary versions in the last hour, the counts behind live precision "
        "(tp / (tp + fp)) and recall (tp / (tp + fn)): a precision swing on a handful of "
        "predicted positives is noise.",
        query(f"riskserve:feedback_outcomes:1h{{{MODELS}}} and "
              f"riskserve:feedback_true_positives:1h{{{MODELS}}}", instant=True),
        query(f"riskserve:feedback_true_positives:1h{{{MODELS}}}", instant=True),
        query(f"riskserve:feedback_false_positives:1h{{{MODELS}}}", instant=True),
        query(f"riskserve:feedback_false_negatives:1h{{{MODELS}}}", instant=True),
        rename={"Value #A": "outcomes", "Value #B": "true pos.", "Value #C": "false pos.",
                "Value #D": "false neg."},
        hide=("Time", "job", "namespace"),
        width=10,
        height=8,
    ).decimals(0)


# Shadow ----------------------------------------------------------------------------------------


def shadow_agreement_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Shadow agreement with production (last hour and day)",
        "Share of shadowed production rows on which the candidate gives the production "
        "version's answer (same class; regression: within the service's tolerance), "
        "riskserve:shadow_agreement_ratio:1h and :1d, per model and candidate version. "
        "`python -m training promote --prometheus` prints the same figure before promoting.",
        "percentunit",
        query(f"riskserve:shadow_agreement_ratio:1h{{{MODELS}}}", "{{model}} {{candidate}} 1h"),
        query(f"riskserve:shadow_agreement_ratio:1d{{{MODELS}}}", "{{model}} {{candidate}} 1d"),
        width=8,
    )


def shadow_score_delta_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Shadow score delta p50 / p95 / p99",
        "|candidate score - production score| per shadowed row (probabilities, or regression "
        "values), quantiles of riskserve_shadow_score_delta: how far apart the two versions "
        "are even where they agree on the class.",
        "none",
        *quantile_queries(
            ("model", "candidate"),
            f"rate(riskserve_shadow_score_delta_bucket{{{MODELS}}}[$__rate_interval])",
        ),
        width=8,
    )


def shadow_rows_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Shadowed and dropped rows per second",
        "Production rows also scored by the candidate (a RISKSERVE_SHADOW_RATE sample, after "
        "the answer is sent) and rows not shadowed because the model was busy "
        "(riskserve_shadow_dropped_total): shadowing yields to production, so a high dropped "
        "share means the agreement rests on the quiet periods only.",
        "suffix: rows/s",
        query(
            "sum by (model, candidate) "
            f"(rate(riskserve_shadow_rows_total{{{MODELS}}}[$__rate_interval]))",
            "{{model}} {{candidate}} shadowed",
        ),
        query(
            "sum by (model, candidate) "
            f"(rate(riskserve_shadow_dropped_total{{{MODELS}}}[$__rate_interval]))",
            "{{model}} {{candidate}} dropped",
        ),
        width=8,
    )


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
            "data quality, live quality from ground truth against held-out quality, shadow "
            "candidates' agreement, and loaded versions of the riskserve models.",
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
        .with_row(dashboard.Row("Ground truth"))
        .with_panel(live_quality_table())
        .with_panel(live_quality_timeseries())
        .with_panel(live_error_timeseries())
        .with_panel(feedback_outcomes_timeseries())
        .with_panel(feedback_confusion_table())
        .with_row(dashboard.Row("Shadow candidates"))
        .with_panel(shadow_agreement_timeseries())
        .with_panel(shadow_score_delta_timeseries())
        .with_panel(shadow_rows_timeseries())
        .with_row(dashboard.Row("Versions"))
        .with_panel(model_info_table())
        .with_panel(predictions_version_timeseries())
    )
