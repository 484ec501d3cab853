"""Metrics and drift end to end: a real 2-worker service, real traffic, Debian's real Prometheus.

Prometheus scrapes the service every second with the shipped rules file loaded, so these tests
check the exported counters, the recording rules' PSI, and every dashboard query together.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from grafana import queries
from riskserve.core import candidates
from riskserve.core.specs import SPECS
from riskserve.devtools import server
from riskserve.devtools.prometheus import PrometheusServer, run_prometheus
from riskserve.devtools.samples import records
from tests.conftest import REPO, SEED
from tests.polling import eventually
from training import pipeline
from training.__main__ import family_of

RULES = REPO / "grafana" / "rules" / "riskserve.rules.yaml"
# The kinds of traffic (grafana/queries.py TRAFFIC_KINDS) the stack below sends.
PRODUCED_TRAFFIC = frozenset({"feedback", "shadow"})
ROWS = 3_000
CHUNK = 100


def training_like(name: str, n: int = ROWS) -> pd.DataFrame:
    """Rows from the very distribution the session's model was trained on (same seed)."""
    frame = pipeline.prepare(family_of(name), None, True, SEED).frame
    return frame.sample(n, replace=len(frame) < n, random_state=1).reset_index(drop=True)


def send(svc: server.Served, name: str, frame: pd.DataFrame) -> int:
    rows = records(name, frame)
    with httpx.Client(base_url=svc.url, headers=svc.headers, timeout=60) as client:
        for i in range(0, len(rows), CHUNK):
            resp = client.post("/v1/predict", json={"model": name, "inputs": rows[i:i + CHUNK]})
            assert resp.status_code == 200, resp.text
    return len(rows)


def scalar(prom: PrometheusServer, promql: str) -> float | None:
    result = prom.query(promql)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def by_label(prom: PrometheusServer, promql: str, label: str) -> dict[str, float]:
    return {r["metric"][label]: float(r["value"][1])
            for r in prom.query(promql)["data"]["result"]}


@pytest.fixture(scope="module")
def stack(trained: dict, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[server.Served, PrometheusServer, dict[str, int]]]:
    """Two workers, traffic for fraud (as trained) and risk-flag (age shifted), Prometheus."""
    work = tmp_path_factory.mktemp("live")
    # A shadow candidate for phishing: named in the store only while the service starts (it
    # loads the candidate then), so other tests' servers do not shadow.
    family = family_of("phishing")
    candidate = pipeline.train(SPECS["phishing"], family, pipeline.prepare(family, None, True, 5),
                               quick=True, seed=5, reports=work)
    candidates.set_shadow("phishing", candidate.version)
    try:
        svc = server.start(work / "serve.log", {}, workers=2)
    finally:
        candidates.set_shadow("phishing", None)
    try:
        with run_prometheus(work, scrape_targets=[f"127.0.0.1:{svc.port}"],
                            rule_files=[RULES]) as prom:
            # increase() cannot see what a counter held at its first scrape: wait until
            # Prometheus has the zero-initialised bins before any traffic, as in production.
            for model in ("fraud", "risk-flag"):
                eventually(lambda m=model: scalar(
                    prom, f'sum(riskserve_feature_bin_total{{model="{m}"}})') == 0,
                    what=f"the zero-initialised {model} bins")
            eventually(lambda: scalar(prom, 'sum(riskserve_feedback_total{model="phishing"})')
                       == 0 and scalar(prom, 'sum(riskserve_shadow_rows_total)') == 0,
                       what="the zero-initialised feedback and shadow series")
            sent = {"fraud": send(svc, "fraud", training_like("fraud"))}
            shifted = training_like("risk-flag")
            shifted["age"] = np.minimum(shifted["age"] + 25, 120)
            sent["risk-flag"] = send(svc, "risk-flag", shifted)
            _exercise_every_series(svc)
            sent["phishing"] = _shadow_and_feedback(svc)
            yield svc, prom, sent
    finally:
        svc.stop()


def _exercise_every_series(svc: server.Served) -> None:
    """One of each thing a panel may show: errors, auth failures, nulls, unseen, out of range."""
    base = records("risk-flag", training_like("risk-flag", 3))
    odd = [{**base[0], "city": "Atlantis"}, base[1], {**base[2], "income": 999_000_000}]
    with httpx.Client(base_url=svc.url, headers=svc.headers, timeout=30) as client:
        assert client.post("/v1/predict", json={"model": "risk-flag", "inputs": odd}
                           ).status_code == 200
        # No risk-flag feature is nullable: a null is a 422, never a silent missing value.
        assert client.post("/v1/predict", json={"model": "risk-flag",
                                                "inputs": [{**base[1], "income": None}]}
                           ).status_code == 422
        assert client.post("/v1/predict", json={"model": "risk-flag",
                                                "inputs": [{**base[0], "age": -1}]}
                           ).status_code == 422
        assert client.post("/v1/predict", json={"model": "nope", "inputs": base}
                           ).status_code == 404
    assert httpx.get(svc.url + "/v1/models", timeout=10).status_code == 401


# Ground truth sent back for phishing: 6 true positives, 2 false positives, 4 false negatives.
FEEDBACK = ([{"predicted": 1, "actual": 1}] * 6 + [{"predicted": 1, "actual": 0}] * 2
            + [{"predicted": 0, "actual": 1}] * 4 + [{"predicted": 0, "actual": 0}] * 8)
SHADOW_ROWS = 50


def _shadow_and_feedback(svc: server.Served) -> int:
    """Phishing rows one at a time (each shadowed once the answer is out), then feedback."""
    rows = records("phishing", training_like("phishing", SHADOW_ROWS))
    with httpx.Client(base_url=svc.url, headers=svc.headers, timeout=30) as client:
        for row in rows:
            assert client.post("/v1/predict", json={"model": "phishing", "inputs": [row]}
                               ).status_code == 200
        resp = client.post("/v1/feedback", json={"model": "phishing", "outcomes": FEEDBACK})
        assert resp.status_code == 200, resp.text
        assert resp.json()["accepted"] == len(FEEDBACK)
        regression = client.post("/v1/feedback", json={"model": "cyber-threat", "outcomes": [
            {"predicted": 0.010, "actual": 0.013}, {"predicted": 0.020, "actual": 0.016}]})
        assert regression.status_code == 200, regression.text
    return len(rows)


def test_feedback_becomes_live_precision_and_recall(stack: tuple) -> None:
    _, prom, _ = stack

    def quality(metric: str) -> float | None:
        return scalar(prom, f'riskserve:live_quality:1h{{model="phishing",metric="{metric}"}}')

    precision = eventually(lambda: quality("precision"), what="live precision recorded")
    assert precision == pytest.approx(6 / 8)
    assert quality("recall") == pytest.approx(6 / 10)
    assert quality("accuracy") == pytest.approx(14 / 20)
    assert scalar(prom, 'sum(riskserve_model_heldout_metric{model="phishing",'
                        'metric="roc_auc"}) > 0') is not None


def test_shadow_candidate_agreement_is_recorded(stack: tuple) -> None:
    _, prom, _ = stack
    shadowed = eventually(lambda: scalar(prom, "sum(riskserve_shadow_rows_total)"),
                          what="shadow rows scraped")
    dropped = scalar(prom, "sum(riskserve_shadow_dropped_total)") or 0
    assert shadowed + dropped == SHADOW_ROWS
    assert shadowed > 0
    ratio = eventually(lambda: scalar(prom, 'riskserve:shadow_agreement_ratio:1h'
                                            '{model="phishing"}'),
                       what="the recorded shadow agreement ratio")
    assert 0.0 <= ratio <= 1.0


def test_metric_counts_are_exact_across_two_workers(stack: tuple) -> None:
    svc, prom, sent = stack
    text = httpx.get(svc.url + "/metrics", timeout=10).text
    fraud = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("riskserve_predictions_total{") and 'model="fraud"' in line)
    assert fraud == sent["fraud"]
    eventually(lambda: scalar(prom, 'sum(riskserve_predictions_total{model="fraud"})')
               == sent["fraud"], what="Prometheus to scrape the fraud row count")
    # The extra requests above added 3 valid risk-flag rows; the invalid one added none.
    eventually(lambda: scalar(prom, 'sum(riskserve_predictions_total{model="risk-flag"})')
               == sent["risk-flag"] + 3, what="the risk-flag row count")
    pids = {line.split('pid="')[1].split('"')[0] for line in text.splitlines()
            if "bentoml_service_request_in_progress" in line and 'pid="' in line}
    assert len(pids) <= 2  # sanity: both workers report into one exposition
    requests = by_label(prom, "sum by (model) (riskserve_requests_total) > 0", "model")
    # Each /v1/predict call counts once: ROWS/CHUNK per model, plus the extra risk-flag
    # requests (one valid, two invalid) and the unknown-model one.
    # Phishing: one request per shadowed row, plus the feedback request.
    assert requests == {"fraud": ROWS / CHUNK, "risk-flag": ROWS / CHUNK + 3, "unknown": 1,
                        "phishing": SHADOW_ROWS + 1, "cyber-threat": 1}
    assert scalar(prom, 'sum(riskserve_request_errors_total{reason="invalid_input"})') == 2
    assert scalar(prom, 'sum(riskserve_request_errors_total{model="unknown",reason="not_found"})'
                  ) == 1
    assert scalar(prom, 'sum(riskserve_auth_failures_total{reason="missing",protocol="http"})'
                  ) == 1


def _psi(prom: PrometheusServer, model: str) -> dict[str, float]:
    features = set(SPECS[model].feature_names)

    def ready() -> dict[str, float] | None:
        psi = by_label(prom, f'riskserve:feature_psi:1h{{model="{model}"}}', "feature")
        return psi if set(psi) == features else None

    return eventually(ready, what=f"PSI of every {model} feature")


def test_training_distribution_has_low_psi(stack: tuple) -> None:
    _, prom, sent = stack
    eventually(lambda: scalar(prom, 'sum(riskserve_predictions_total{model="fraud"})')
               == sent["fraud"], what="fraud rows scraped")
    psi = _psi(prom, "fraud")
    assert max(psi.values()) < 0.1, psi
    assert scalar(prom, 'riskserve:prediction_psi:1h{model="fraud"}') < 0.1


def test_shifted_feature_has_high_psi_and_others_stay_low(stack: tuple) -> None:
    _, prom, sent = stack
    eventually(lambda: scalar(prom, 'sum(riskserve_predictions_total{model="risk-flag"})')
               == sent["risk-flag"] + 3, what="risk-flag rows scraped")
    psi = _psi(prom, "risk-flag")
    assert psi["age"] > 0.25, psi
    others = {k: v for k, v in psi.items() if k != "age"}
    assert max(others.values()) < 0.1, psi


def test_data_quality_counters(stack: tuple) -> None:
    _, prom, _ = stack
    def get(metric: str) -> float | None:
        return scalar(prom, f'sum({metric}{{model="risk-flag"}})')
    eventually(lambda: get("riskserve_feature_unseen_category_total") == 1,
               what="one unseen city")
    assert get("riskserve_feature_missing_total") == 0  # the null was refused, not counted
    assert get("riskserve_feature_out_of_range_total") >= 1  # the 999M income (+ shifted ages)


def _dashboard_queries() -> list[tuple[str, str]]:
    out = []
    for uid, dashboard in queries.load_dashboards().items():
        for q in queries.panel_queries(dashboard):
            # Refusal and overload panels are proven on synthetic series in test_dashboards.
            if not q.needs_kubernetes and not q.needs_traffic - PRODUCED_TRAFFIC:
                out.append((f"{uid}/{q.panel_title}/{q.ref_id}", q.promql()))
        for name, selector in queries.variable_selectors(dashboard).items():
            out.append((f"{uid}/${name}", queries.substitute(selector)))
    return out


@pytest.mark.parametrize(("where", "promql"), _dashboard_queries(),
                         ids=[w for w, _ in _dashboard_queries()])
def test_every_dashboard_query_returns_series(stack: tuple, where: str, promql: str) -> None:
    _, prom, sent = stack
    eventually(lambda: scalar(prom, 'sum(riskserve_predictions_total{model="fraud"})')
               == sent["fraud"], what="traffic scraped")

    def answered() -> list[Any]:
        body = prom.query(promql)
        assert body["status"] == "success", body
        return body["data"]["result"]

    eventually(answered, timeout_s=30, what=f"a series for {where}: {promql}")
