"""The generated Grafana dashboards: up to date, well-formed, and every query valid PromQL."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import generate
from grafana.queries import (
    DASHBOARD_DIR,
    TRAFFIC_KINDS,
    PanelQuery,
    iter_panels,
    load_dashboards,
    panel_queries,
    substitute,
    variable_selectors,
)
from riskserve.devtools.prometheus import PrometheusServer, require_binary, run_prometheus

REPO = Path(__file__).resolve().parent.parent
HELM_DASHBOARDS = REPO / "helm" / "riskserve" / "files" / "dashboards"
RULES = REPO / "grafana" / "rules" / "riskserve.rules.yaml"
# Panels whose series exist only after feedback, shadow, rate-limit, scope or overload traffic
# (PanelQuery.needs_traffic): the live test may skip them until it sends that traffic, and
# test_traffic_panels_return_series_on_synthetic_series proves them meanwhile. Any other panel
# must return data after plain predictions; this list keeps that check from being weakened.
TRAFFIC_PANELS = {
    "feedback": {
        "riskserve-model-health:Live vs held-out quality per version (last hour and day)",
        "riskserve-model-health:Live precision, recall, F1 and accuracy (last hour) against the "
        "alert line",
        "riskserve-model-health:Live MAE and RMSE (last hour) against the alert line",
        "riskserve-model-health:Outcomes received per second by model version",
        "riskserve-model-health:Binary outcomes in the last hour",
    },
    "shadow": {
        "riskserve-model-health:Shadow agreement with production (last hour and day)",
        "riskserve-model-health:Shadow score delta p50 / p95 / p99",
        "riskserve-model-health:Shadowed and dropped rows per second",
    },
    "rate_limited": {"riskserve-overview:Calls refused per second by API key (rate limit, scope)"},
    "forbidden": {"riskserve-overview:Calls refused per second by API key (rate limit, scope)"},
    "overloaded": {"riskserve-overview:Requests shed per second by model (in-flight limit)"},
}
UIDS = {
    "riskserve-overview": "riskserve / Service overview",
    "riskserve-model-health": "riskserve / Model health",
}

DASHBOARDS = load_dashboards()
PANELS = [(uid, panel) for uid, board in DASHBOARDS.items() for panel in iter_panels(board)]
QUERIES = [query for board in DASHBOARDS.values() for query in panel_queries(board)]
SELECTORS = [
    (uid, name, selector)
    for uid, board in DASHBOARDS.items()
    for name, selector in variable_selectors(board).items()
]


def _panel_id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['title']}"


def _query_id(query: PanelQuery) -> str:
    return f"{query.dashboard_uid}:{query.panel_title}:{query.ref_id}"


# Generated files -------------------------------------------------------------------------------


def test_generate_check_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "grafana" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_helm_copies_are_identical() -> None:
    committed = sorted(path.name for path in DASHBOARD_DIR.glob("*.json"))
    assert committed == sorted(path.name for path in HELM_DASHBOARDS.glob("*.json"))
    for name in committed:
        assert (HELM_DASHBOARDS / name).read_bytes() == (DASHBOARD_DIR / name).read_bytes()


def test_check_reports_stale_and_leftover_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Aim the generator at a scratch tree, so the failure path runs without touching the repo.
    dirs = (tmp_path / "dashboards", tmp_path / "helm" / "dashboards")
    monkeypatch.setattr(generate, "DASHBOARD_DIRS", dirs)
    monkeypatch.setattr(generate, "HELM_RULES", tmp_path / "helm" / "riskserve.rules.yaml")
    assert generate.main(["--check"]) == 1  # nothing written yet
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0

    edited = dirs[1] / "riskserve-overview.json"
    edited.write_bytes(edited.read_bytes().replace(b"riskserve", b"riskserv3", 1))
    (dirs[0] / "old-dashboard.json").write_text("{}")
    capsys.readouterr()
    assert generate.main(["--check"]) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1, "one line"
    assert "riskserve-overview.json" in message and "old-dashboard.json" in message

    assert generate.main([]) == 0  # rewrites the edit, removes the leftover
    assert generate.main(["--check"]) == 0
    assert not (dirs[0] / "old-dashboard.json").exists()


def test_generated_json_is_sorted_and_indented() -> None:
    for path in DASHBOARD_DIR.glob("*.json"):
        assert path.read_bytes() == generate.render(DASHBOARDS[path.stem])


# Dashboard structure ---------------------------------------------------------------------------


def test_uids_and_titles_are_stable() -> None:
    assert {uid: board["title"] for uid, board in DASHBOARDS.items()} == UIDS
    for uid in UIDS:
        assert (DASHBOARD_DIR / f"{uid}.json").is_file()


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_variables(uid: str) -> None:
    variables = {v["name"]: v for v in DASHBOARDS[uid]["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["query"].startswith("label_values(riskserve_model_info")
    assert variables["model"]["query"].endswith(", model)")
    for variable in variables.values():
        assert "id" not in variable, "the SDK's shared zero id would make variables collide"
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_panel_ids_and_titles_are_unique(uid: str) -> None:
    panels = DASHBOARDS[uid]["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    titles = [panel["title"] for panel in iter_panels(DASHBOARDS[uid])]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("item", PANELS, ids=_panel_id)
def test_panel_has_description_datasource_and_targets(item: tuple[str, dict[str, Any]]) -> None:
    _, panel = item
    assert panel.get("description", "").strip()
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    targets = panel.get("targets") or []
    assert targets and all(target.get("expr") for target in targets)
    assert all(target["datasource"]["uid"] == "${datasource}" for target in targets)
    ref_ids = [target["refId"] for target in targets]
    assert len(set(ref_ids)) == len(ref_ids) and "" not in ref_ids


def test_cadvisor_panels_filter_by_pod() -> None:
    kubernetes = [query for query in QUERIES if query.needs_kubernetes]
    assert {query.panel_title for query in kubernetes} >= {
        "CPU usage by pod (cores)",
        "Memory working set by pod",
    }
    assert all('pod=~"$pod"' in query.expr for query in kubernetes)


def test_recorded_series_in_dashboards_exist_in_rules() -> None:
    recorded = {
        rule["record"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    used = {name for query in QUERIES for name in re.findall(r"riskserve:\w+:\w+", query.expr)}
    assert {"riskserve:feature_psi:1h", "riskserve:prediction_psi:1h"} <= used
    assert used - recorded == set(), "dashboards read series no rule records"


# Macro substitution ----------------------------------------------------------------------------


def test_substitute_replaces_macros_and_variables() -> None:
    expr = 'rate(x{model=~"$model", pod=~"${pod}"}[$__rate_interval]) * $__range_s'
    assert substitute(expr) == 'rate(x{model=~".*", pod=~".*"}[5m]) * 3600'
    assert substitute("y[$__interval] offset $__range") == "y[1m] offset 1h"
    assert substitute('z{model=~"${model:regex}"}', {"model": "fraud"}) == 'z{model=~"fraud"}'


def test_substitute_keeps_label_replace_references() -> None:
    expr = 'label_replace(x, "endpoint", "$1", "exported_endpoint", "(.+)")'
    assert substitute(expr) == expr


def test_substitute_rejects_unknown_variables() -> None:
    with pytest.raises(KeyError, match=r"\$cluster"):
        substitute('x{cluster=~"$cluster"}')


# Every query against a real Prometheus ---------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    # The rules are loaded too: Prometheus refuses to become ready with an invalid rule file.
    with run_prometheus(tmp_path_factory.mktemp("prometheus"), rule_files=[RULES]) as server:
        yield server


def test_prometheus_loaded_every_rule_group(prometheus: PrometheusServer) -> None:
    answer = prometheus.get("/api/v1/rules")
    assert answer["status"] == "success"
    loaded = {group["name"] for group in answer["data"]["groups"]}
    expected = {group["name"] for group in yaml.safe_load(RULES.read_text())["groups"]}
    assert loaded == expected


@pytest.mark.parametrize("query", QUERIES, ids=_query_id)
def test_panel_query_is_valid_promql(prometheus: PrometheusServer, query: PanelQuery) -> None:
    promql = query.promql()
    assert "$" not in promql.replace('"$1"', ""), promql
    answer = prometheus.query(promql)
    assert answer["status"] == "success", f"{answer.get('error')}\n{promql}"


@pytest.mark.parametrize("item", SELECTORS, ids=lambda item: f"{item[0]}:${item[1]}")
def test_variable_selector_is_valid_promql(
    prometheus: PrometheusServer, item: tuple[str, str, str]
) -> None:
    promql = substitute(item[2])
    answer = prometheus.query(promql)
    assert answer["status"] == "success", f"{answer.get('error')}\n{promql}"


def test_invalid_promql_is_reported(prometheus: PrometheusServer) -> None:
    # Guards the guard: a broken expression must come back as an error, not as "success".
    answer = prometheus.query("sum by (model) (rate(riskserve_predictions_total[5m])")
    assert answer["status"] == "error"


# Panels that need traffic the live test does not send yet ------------------------------------


def test_traffic_panels_are_marked_exactly() -> None:
    marked: dict[str, set[str]] = {kind: set() for kind in TRAFFIC_KINDS}
    for query in QUERIES:
        for kind in query.needs_traffic:
            marked[kind].add(f"{query.dashboard_uid}:{query.panel_title}")
    assert marked == TRAFFIC_PANELS
    # A held-out or threshold line beside a live one needs no feedback: only the live target
    # of such a panel is marked.
    (line,) = [q for q in QUERIES if q.panel_title.startswith("Live precision") and q.ref_id == "B"]
    assert line.needs_traffic == frozenset()


# One synthetic hour and a half of every kind of traffic, over both pods where it matters: real
# model names, the label sets the service exports (riskserve/metrics.py).
_LABELS = 'job="riskserve",namespace="risk",pod="a"'
_SYNTHETIC = {
    # fraud (binary), keystroke-xgb (multiclass), cyber-threat (regression)
    **{
        f'riskserve_feedback_total{{{_LABELS},model="fraud",version="v3",predicted="{p}",'
        f'actual="{a}"}}': f"0+{n}x100"
        for p, a, n in (("1", "1", 6), ("1", "0", 4), ("0", "1", 2), ("0", "0", 88))
    },
    f'riskserve_feedback_total{{{_LABELS},model="keystroke-xgb",version="v1",outcome="correct"}}':
        "0+70x100",
    f'riskserve_feedback_total{{{_LABELS},model="keystroke-xgb",version="v1",outcome="wrong"}}':
        "0+30x100",
    f'riskserve_feedback_abs_error_count{{{_LABELS},model="cyber-threat",version="v1"}}':
        "0+100x100",
    f'riskserve_feedback_abs_error_sum{{{_LABELS},model="cyber-threat",version="v1"}}': "0+2x100",
    f'riskserve_feedback_squared_error_total{{{_LABELS},model="cyber-threat",version="v1"}}':
        "0+0.06x100",
    **{
        f'riskserve_model_heldout_metric{{{_LABELS},model="{m}",version="{v}",metric="{k}"}}':
            f"{value}x100"
        for m, v, k, value in (
            ("fraud", "v3", "precision", 0.9), ("fraud", "v3", "recall", 0.8),
            ("fraud", "v3", "f1", 0.85), ("fraud", "v3", "accuracy", 0.95),
            ("keystroke-xgb", "v1", "accuracy", 0.9), ("cyber-threat", "v1", "mae", 0.01),
            ("cyber-threat", "v1", "rmse", 0.02),
        )
    },
    f'riskserve_shadow_rows_total{{{_LABELS},model="fraud",candidate="v4"}}': "0+100x100",
    f'riskserve_shadow_disagreements_total{{{_LABELS},model="fraud",candidate="v4"}}': "0+3x100",
    f'riskserve_shadow_dropped_total{{{_LABELS},model="fraud",candidate="v4"}}': "0+5x100",
    **{
        f'riskserve_shadow_score_delta_bucket{{{_LABELS},model="fraud",candidate="v4",le="{le}"}}':
            f"0+{n}x100"
        for le, n in (("0.01", 50), ("0.1", 90), ("+Inf", 100))
    },
    f'riskserve_rate_limited_total{{{_LABELS},key="loan-team"}}': "0+30x100",
    f'riskserve_auth_failures_total{{{_LABELS},reason="forbidden",protocol="http",key="loan-team"}}':
        "0+10x100",
    f'riskserve_request_errors_total{{{_LABELS},model="fraud",reason="overloaded"}}': "0+20x100",
}


def test_traffic_panels_return_series_on_synthetic_series(tmp_path: Path) -> None:
    """Every query marked as needing traffic returns a series once that traffic exists, with
    the shipped rules recording in between (promtool evaluates both, no server needed)."""
    exprs = sorted({query.promql() for query in QUERIES if query.needs_traffic})
    assert exprs
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": k, "values": v} for k, v in _SYNTHETIC.items()],
            # count() >= bool 1 is 1 for a non-empty answer and absent for an empty one.
            "promql_expr_test": [
                {"expr": f"count({expr}) >= bool 1", "eval_time": "90m",
                 "exp_samples": [{"labels": "{}", "value": 1}]}
                for expr in exprs
            ],
        }],
    }
    test_file = tmp_path / "traffic.test.yaml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(test_file)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
