"""The Prometheus rules: promtool checks and unit-tests them; they keep the DESIGN §5 contract."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from riskserve.core.scoring import Prediction
from riskserve.core.specs import SPECS
from riskserve.devtools.prometheus import require_binary
from training.evaluate import evaluate

REPO = Path(__file__).resolve().parent.parent
RULES_DIR = REPO / "grafana" / "rules"
RULES = RULES_DIR / "riskserve.rules.yaml"
RULES_TEST = RULES_DIR / "riskserve.rules.test.yaml"
HELM_RULES = REPO / "helm" / "riskserve" / "files" / "riskserve.rules.yaml"

# Recorded series that dashboards, alerts and users rely on (DESIGN.md §5 and the monitoring
# brief): drift per window, and per-model rate, error ratio and latency.
CONTRACT_RECORDS = (
    "riskserve:feature_psi:1h",
    "riskserve:feature_psi:1d",
    "riskserve:prediction_psi:1h",
    "riskserve:prediction_psi:1d",
    "riskserve:feature_bin_ratio:1h",
    "riskserve:feature_bin_ratio:1d",
    "riskserve:prediction_bin_ratio:1h",
    "riskserve:prediction_bin_ratio:1d",
    "riskserve:requests_rate:5m",
    "riskserve:error_ratio:5m",
    "riskserve:inference_seconds_p50:5m",
    "riskserve:inference_seconds_p95:5m",
    "riskserve:inference_seconds_p99:5m",
    # Ground truth and shadow (issue 14): live quality per window, its evidence, agreement.
    "riskserve:live_quality:1h",
    "riskserve:live_quality:1d",
    "riskserve:live_quality_outcomes:1h",
    "riskserve:feedback_outcomes:1h",
    "riskserve:feedback_outcomes:1d",
    "riskserve:shadow_agreement_ratio:1h",
    "riskserve:shadow_agreement_ratio:1d",
    "riskserve:shadow_rows:1h",
)
CONTRACT_ALERTS = (
    "RiskserveTargetDown",
    "RiskserveNoHealthyTarget",
    "RiskserveInferenceLatencyHigh",
    "RiskserveErrorRatioHigh",
    "RiskserveFeatureDrift",
    "RiskservePredictionDrift",
    "RiskserveAuthFailureSpike",
    "RiskserveLiveQualityBelowHeldout",
    "RiskserveLiveErrorAboveHeldout",
)
# The `metric` values of riskserve:live_quality:<window>, per task: they must be names that
# training stores as held-out metrics, or the alerts would join on nothing.
LIVE_METRICS = {
    "binary": {"precision", "recall", "f1", "accuracy"},
    "multiclass": {"accuracy"},
    "regression": {"mae", "rmse"},
}
# The tunables of the live-quality alerts (constant series, one place to change them).
QUALITY_THRESHOLDS = (
    "riskserve:live_quality_margin:1h",
    "riskserve:live_error_margin:1h",
    "riskserve:live_quality_min_outcomes:1h",
)
QUALITY_ALERTS = ("RiskserveLiveQualityBelowHeldout", "RiskserveLiveErrorAboveHeldout")
# The documented override point (see the header of the rules file).
JOB_SELECTOR = 'job=~".*riskserve.*"'


def _groups() -> dict[str, list[dict[str, Any]]]:
    return {group["name"]: group["rules"] for group in yaml.safe_load(RULES.read_text())["groups"]}


def _rules() -> list[dict[str, Any]]:
    return [rule for rules in _groups().values() for rule in rules]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        cwd=RULES_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_check_rules_passes() -> None:
    result = _promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("record", CONTRACT_RECORDS)
def test_contract_recording_rule_exists(record: str) -> None:
    assert record in {rule.get("record") for rule in _rules()}


@pytest.mark.parametrize("alert", CONTRACT_ALERTS)
def test_contract_alert_exists(alert: str) -> None:
    assert alert in {rule.get("alert") for rule in _rules()}


def test_recording_rule_names_follow_the_convention() -> None:
    # riskserve:<quantity>:<window>, the shape DESIGN §5 names (riskserve:feature_psi:<window>).
    names = [rule["record"] for rule in _rules() if "record" in rule]
    assert len(names) == len(set(names)), "a recording rule is defined twice"
    wrong = [name for name in names if not re.fullmatch(r"riskserve:[a-z0-9_]+:(5m|1h|1d)", name)]
    assert wrong == []


@pytest.mark.parametrize("name", [rule["alert"] for rule in _rules() if "alert" in rule])
def test_alert_has_severity_annotations_and_for(name: str) -> None:
    (alert,) = [rule for rule in _rules() if rule.get("alert") == name]
    assert alert["labels"]["severity"] in {"warning", "critical"}
    assert alert["annotations"]["summary"].strip()
    assert alert["annotations"]["description"].strip()
    assert re.fullmatch(r"\d+[smh]", alert["for"]), "alerts must be sustained, not one-sample"


def test_every_alert_is_unit_tested_firing() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert alerts - fired == set(), "alerts without a test that makes them fire"


def test_job_selector_only_in_target_alerts() -> None:
    # The documented override replaces this exact string; it must select the targets and
    # nothing else, or an override would silently change other rules.
    users = {
        rule.get("alert") or rule["record"] for rule in _rules() if JOB_SELECTOR in rule["expr"]
    }
    assert users == {"RiskserveTargetDown", "RiskserveNoHealthyTarget"}


def test_unit_tests_use_real_model_and_feature_names() -> None:
    # Fixtures named after the contract keep the tests readable as real scenarios and fail
    # when a model or feature is renamed in riskserve/specs.py.
    text = RULES_TEST.read_text()
    models = set(re.findall(r'model="([^"]+)"', text))
    assert models and models <= set(SPECS)
    pairs = set(re.findall(r'model="([^"]+)",version="[^"]+",feature="([^"]+)"', text))
    assert pairs
    for model, feature in pairs:
        assert feature in SPECS[model].feature_names, f"{model} has no feature {feature}"


def test_helm_copy_is_byte_identical() -> None:
    assert HELM_RULES.read_bytes() == RULES.read_bytes(), "run grafana/generate.py"


def test_local_prometheus_config_loads_the_rules() -> None:
    """`make monitor`'s config: promtool accepts it and it points at the shipped rules."""
    config = Path(__file__).resolve().parent.parent / "grafana" / "prometheus.yml"
    proc = subprocess.run([require_binary("promtool"), "check", "config", str(config)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(_rules())} rules found" in proc.stdout + proc.stderr


@pytest.mark.parametrize("task", sorted(LIVE_METRICS))
def test_live_quality_metric_names_are_training_metric_names(task: str) -> None:
    # Evaluate a tiny prediction of each task the way training does and compare the names.
    spec = next(spec for spec in SPECS.values() if spec.task == task)
    y = np.array([0, 1, 0, 1])
    scores = np.array([0.2, 0.8, 0.6, 0.4])
    pred = Prediction(predictions=(scores > 0.5).astype(int) if task != "regression" else scores,
                      scores=scores)
    assert LIVE_METRICS[task] <= set(evaluate(spec, y, pred))
    text = RULES.read_text()
    for metric in LIVE_METRICS[task]:
        assert f'"metric", "{metric}"' in text, f"no live {metric} is recorded"


def test_live_quality_groups_cover_the_same_quantities_per_window() -> None:
    groups = _groups()
    per_window = {
        window: {rule["record"].rsplit(":", 1)[0] for rule in groups[f"riskserve.quality.{window}"]}
        for window in ("1h", "1d")
    }
    assert per_window["1h"] == per_window["1d"]
    assert {"riskserve:live_quality", "riskserve:shadow_agreement_ratio"} <= per_window["1h"]


@pytest.mark.parametrize("alert", QUALITY_ALERTS)
def test_quality_alerts_read_their_thresholds_from_the_constants(alert: str) -> None:
    (rule,) = [rule for rule in _rules() if rule.get("alert") == alert]
    assert "riskserve:live_quality_min_outcomes:1h" in rule["expr"]
    assert re.search(r"riskserve:live_(quality|error)_margin:1h", rule["expr"])
    assert not re.search(r"[<>]=?\s*[0-9]", rule["expr"]), "a threshold written as a literal"
    constants = {r["record"]: r["expr"] for r in _groups()["riskserve.quality.thresholds"]}
    assert set(constants) == set(QUALITY_THRESHOLDS)
    assert all(re.fullmatch(r"vector\([0-9.]+\)", expr) for expr in constants.values())
