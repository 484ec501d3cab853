"""Explanations and ground truth against a real `bentoml serve`: /v1/explain, /v1/feedback, the
CSV's reason columns, and `parameters.explain` over /v2 REST and gRPC (tritonclient)."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient

from riskserve.core.specs import SPECS
from riskserve.devtools.samples import records, sample_frame

# Phishing explains when training picked XGBoost or LightGBM for it (quick mode may pick
# scikit-learn's HistGradientBoosting, which answers 422): tests/test_explain.py covers it.
EXPLAINABLE = ["fraud", "risk-flag", "keystroke-xgb", "cyber-threat"]


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def post(served: Any, route: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(served.url + route, json=body, headers=served.headers, timeout=60)


@pytest.mark.parametrize("name", EXPLAINABLE)
def test_explain_adds_up_for_every_explainable_model(served: Any, name: str) -> None:
    rows = records(name, sample_frame(name, 6))
    resp = post(served, "/v1/explain", {"model": name, "inputs": rows, "top": 2})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["explanations"]) == len(rows) and body["space"]
    totals = np.array([e["base"] + sum(e["contributions"].values())
                       for e in body["explanations"]])
    task = SPECS[name].task
    if task == "binary":  # base + contributions = log(p / (1 - p)) of the positive class
        p1 = np.array(body["probabilities"])[:, 1]
        np.testing.assert_allclose(totals, logit(np.clip(p1, 1e-15, 1 - 1e-15)), atol=1e-4)
    elif task == "regression":  # the model's output before the inverse log1p transform
        np.testing.assert_allclose(np.expm1(totals), body["predictions"], rtol=1e-4)
    for e in body["explanations"]:
        assert len(e["reasons"]) == 2
        magnitudes = [abs(r["contribution"]) for r in e["reasons"]]
        assert magnitudes == sorted(magnitudes, reverse=True)
        assert magnitudes[0] == pytest.approx(max(abs(c) for c in e["contributions"].values()))
    # the answer also carries what /v1/predict answers (the native model's probabilities, which
    # the compiled runtime /v1/predict may use matches within the 1e-5 parity bound)
    plain = post(served, "/v1/predict", {"model": name, "inputs": rows}).json()
    if task == "regression":
        np.testing.assert_allclose(body["predictions"], plain["predictions"], rtol=1e-6)
    else:
        assert body["predictions"] == plain["predictions"]
    if plain.get("probabilities"):
        np.testing.assert_allclose(body["probabilities"], plain["probabilities"], atol=1e-5)


def test_fraud_reasons_use_the_engineered_feature_names(served: Any) -> None:
    rows = records("fraud", sample_frame("fraud", 3))
    body = post(served, "/v1/explain", {"model": "fraud", "inputs": rows}).json()
    names = set(body["explanations"][0]["contributions"])
    assert {"orig_balance_error", "dest_balance_error"} <= names


@pytest.mark.parametrize("name", ["keystroke-svm", "keystroke-rf"])
def test_models_without_an_exact_method_are_422_naming_those_that_can(served: Any,
                                                                      name: str) -> None:
    rows = records(name, sample_frame(name, 1))
    resp = post(served, "/v1/explain", {"model": name, "inputs": rows})
    assert resp.status_code == 422
    assert "fraud" in resp.json()["detail"]["explainable"]
    assert "Traceback" not in resp.text


def test_explain_top_out_of_range_is_422(served: Any) -> None:
    rows = records("fraud", sample_frame("fraud", 1))
    resp = post(served, "/v1/explain", {"model": "fraud", "inputs": rows, "top": 99})
    assert resp.status_code == 422 and resp.json()["detail"]["field"] == "top"


def test_csv_explain_adds_reason_columns(served: Any) -> None:
    frame = sample_frame("risk-flag", 30)
    resp = httpx.post(served.url + "/v1/predict_csv", headers=served.headers, timeout=60,
                      files={"file": ("r.csv", frame.to_csv(index=False).encode(), "text/csv")},
                      data={"model": "risk-flag", "explain": "true"})
    assert resp.status_code == 200, resp.text[:300]
    out = pd.read_csv(io.BytesIO(resp.content))
    assert len(out) == 30
    assert {"reason_1", "reason_2", "reason_3"} <= set(out.columns)
    feature, _, value = out["reason_1"][0].partition("=")
    assert feature in SPECS["risk-flag"].feature_names and float(value) == float(value)


def test_v2_rest_explain_parameter_adds_contributions(served: Any) -> None:
    frame = sample_frame("fraud", 4)
    inputs = []
    for f in SPECS["fraud"].features:
        values = frame[f.name].tolist()
        datatype = "BYTES" if f.is_category else ("INT64" if f.kind == "int" else "FP64")
        inputs.append({"name": f.name, "datatype": datatype, "shape": [4],
                       "data": [str(v) if f.is_category else v for v in values]})
    resp = httpx.post(served.url + "/v2/models/fraud/infer", headers=served.headers, timeout=60,
                      json={"inputs": inputs, "parameters": {"explain": True}})
    assert resp.status_code == 200, resp.text
    outs = {o["name"]: o for o in resp.json()["outputs"]}
    contrib = outs["contributions"]
    features = json.loads(contrib["parameters"]["features"])
    assert contrib["datatype"] == "FP64" and contrib["shape"] == [4, len(features)]
    base = np.array(json.loads(contrib["parameters"]["base"]))
    totals = base + np.array(contrib["data"]).reshape(4, -1).sum(axis=1)
    p1 = np.array(outs["predict_proba"]["data"]).reshape(4, 2)[:, 1]
    np.testing.assert_allclose(totals, logit(np.clip(p1, 1e-15, 1 - 1e-15)), atol=1e-4)


def test_grpc_explain_parameter_with_tritonclient(served: Any) -> None:
    frame = sample_frame("risk-flag", 3)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    inputs = []
    for f in SPECS["risk-flag"].features:
        values = frame[f.name].to_numpy()
        if f.is_category:
            arr, dt = np.array([str(v) for v in values], dtype=object), "BYTES"
        else:
            arr, dt = values.astype(np.int64), "INT64"
        t = grpcclient.InferInput(f.name, [3], dt)
        t.set_data_from_numpy(arr)
        inputs.append(t)
    result = client.infer("risk-flag", inputs, headers={"x-api-key": served.key},
                          parameters={"explain": True})
    contributions = result.as_numpy("contributions")
    assert contributions.shape == (3, len(SPECS["risk-flag"].feature_names))
    meta = result.get_output("contributions")
    assert json.loads(meta.parameters["features"].string_param)[0] == "income"


def test_feedback_is_accepted_and_validated(served: Any) -> None:
    ok = post(served, "/v1/feedback", {"model": "fraud", "outcomes": [
        {"predicted": 1, "actual": 0}, {"predicted": 0, "actual": 0}]})
    assert ok.status_code == 200 and ok.json()["accepted"] == 2
    bad = post(served, "/v1/feedback", {"model": "fraud", "outcomes": [
        {"predicted": 1, "actual": 7}]})
    assert bad.status_code == 422 and "actual" in bad.json()["detail"]["field"]
    regression = post(served, "/v1/feedback", {"model": "cyber-threat", "outcomes": [
        {"predicted": 0.011, "actual": 0.013}]})
    assert regression.status_code == 200, regression.text
    metrics = httpx.get(served.url + "/metrics", timeout=10).text
    counted = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("riskserve_feedback_total{") and 'model="fraud"' in line
               and 'predicted="1"' in line and 'actual="0"' in line]
    assert sum(counted) >= 1
