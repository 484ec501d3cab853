"""The /v1 HTTP API of a real `bentoml serve` process: predictions, auth, errors, CSV, seed API."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from riskserve.core.specs import MODEL_NAMES, SPECS
from riskserve.core.validation import columns_from_frame
from riskserve.devtools import server
from riskserve.devtools.samples import GOOD_FRAUD as GOOD
from riskserve.devtools.samples import records, sample_frame, stored_model
from training import pipeline
from training.__main__ import family_of


def post(served: Any, body: dict[str, Any], headers: dict[str, str] | None = None,
         route: str = "/v1/predict") -> httpx.Response:
    return httpx.post(served.url + route, json=body,
                      headers=served.headers if headers is None else headers, timeout=60)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_prediction_equals_in_process_model(served: Any, trained: dict, name: str) -> None:
    frame = sample_frame(name)
    resp = post(served, {"model": name, "inputs": records(name, frame)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    model = stored_model(name, trained[name].version)
    expected = model.predict(columns_from_frame(SPECS[name], frame))
    assert body["model"] == name and body["version"] == trained[name].version
    if SPECS[name].task == "regression":
        np.testing.assert_allclose(body["predictions"], expected.predictions, rtol=1e-9)
        assert body.get("probabilities") is None
    else:
        assert body["predictions"] == expected.predictions.tolist()
        np.testing.assert_allclose(body["probabilities"], expected.probabilities, rtol=1e-6)
        assert body["classes"] == list(model.classes)


def test_bearer_token_is_accepted(served: Any) -> None:
    frame = sample_frame("fraud", 2)
    resp = post(served, {"model": "fraud", "inputs": records("fraud", frame)},
                headers={"Authorization": f"Bearer {served.key}"})
    assert resp.status_code == 200, resp.text


PROTECTED = [
    ("POST", "/v1/predict"), ("POST", "/v1/predict_csv"), ("POST", "/v1/keystroke"),
    ("GET", "/v1/models"), ("GET", "/v1/models/fraud"),
]


@pytest.mark.parametrize(("method", "route"), PROTECTED)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer no"},
                                     {"Authorization": "test-key"}])
def test_protected_routes_reject_missing_or_wrong_key(served: Any, method: str, route: str,
                                                      headers: dict[str, str]) -> None:
    resp = httpx.request(method, served.url + route, headers=headers, timeout=10,
                         json={"model": "fraud", "inputs": []} if method == "POST" else None)
    assert resp.status_code == 401
    assert resp.json()["error"] in ("invalid API key",) or "missing API key" in resp.json()["error"]


@pytest.mark.parametrize("route", ["/livez", "/readyz", "/metrics"])
def test_probes_and_metrics_are_open(served: Any, route: str) -> None:
    assert httpx.get(served.url + route, timeout=10).status_code == 200


def test_model_listing(served: Any, trained: dict) -> None:
    resp = httpx.get(served.url + "/v1/models", headers=served.headers, timeout=10)
    assert resp.status_code == 200
    listing = {m["name"]: m for m in resp.json()["models"]}
    assert list(listing) == list(MODEL_NAMES)
    fraud = listing["fraud"]
    assert fraud["version"] == trained["fraud"].version
    assert [f["name"] for f in fraud["features"]] == list(SPECS["fraud"].feature_names)
    assert fraud["metrics"]["pr_auc"] == pytest.approx(trained["fraud"].metrics["pr_auc"])
    assert fraud["trained_at"]
    one = httpx.get(served.url + "/v1/models/fraud", headers=served.headers, timeout=10)
    assert one.json()["name"] == "fraud"
    missing = httpx.get(served.url + "/v1/models/nope", headers=served.headers, timeout=10)
    assert missing.status_code == 404 and "fraud" in missing.json()["detail"]["known"]


def test_unknown_model_and_version_are_404(served: Any) -> None:
    rows = records("fraud", sample_frame("fraud", 1))
    resp = post(served, {"model": "frauds", "inputs": rows})
    assert resp.status_code == 404
    assert "unknown model 'frauds'" in resp.json()["error"]
    resp = post(served, {"model": "fraud", "version": "doesnotexist", "inputs": rows})
    assert resp.status_code == 404
    assert resp.json()["detail"]["field"] == "version"


def test_explicit_version_routes_to_that_version(served: Any, trained: dict,
                                                 tmp_path: Path) -> None:
    family = family_of("phishing")
    other = pipeline.train(SPECS["phishing"], family, pipeline.prepare(family, None, True, 99),
                           quick=True, seed=99, reports=tmp_path)
    assert other.version != trained["phishing"].version
    frame = sample_frame("phishing", 5)
    rows = records("phishing", frame)
    resp = post(served, {"model": "phishing", "version": other.version, "inputs": rows})
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == other.version
    expected = stored_model("phishing", other.version).predict(
        columns_from_frame(SPECS["phishing"], frame))
    np.testing.assert_allclose(resp.json()["probabilities"], expected.probabilities, rtol=1e-6)
    default = post(served, {"model": "phishing", "inputs": rows})
    assert default.json()["version"] == trained["phishing"].version



@pytest.mark.parametrize(("row", "field", "status"), [
    ({**GOOD, "amount": "a lot"}, "amount", 422),
    ({**GOOD, "amount": -3}, "amount", 422),
    ({**GOOD, "type": "WIRE"}, "type", 422),
    ({**GOOD, "step": 2.5}, "step", 422),
    ({k: v for k, v in GOOD.items() if k != "type"}, "type", 422),
    ({**GOOD, "amuont": 1.0}, "amuont", 422),
])
def test_bad_rows_get_4xx_naming_the_field(served: Any, row: dict, field: str,
                                           status: int) -> None:
    resp = post(served, {"model": "fraud", "inputs": [GOOD, row]})
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["detail"]["field"] == field
    assert f"'{field}'" in body["error"]
    assert "Traceback" not in resp.text


@pytest.mark.parametrize(("body", "field", "status"), [
    ({"inputs": [GOOD]}, "model", 400),
    ({"model": "fraud"}, "inputs", 400),
    ({"model": "fraud", "inputs": "rows"}, "inputs", 400),
    ([GOOD], "body", 400),
    ({"model": "fraud", "inputs": []}, "inputs", 422),  # the contract's check, not the schema's
])
def test_malformed_requests_are_4xx_naming_the_field(served: Any, body: Any, field: str,
                                                      status: int) -> None:
    """The body's schema check answers in riskserve's error format and logs no traceback
    (BentoML logged one per bad body). The worker writes its log before it answers, so the
    log is complete when the answer arrives."""
    logged = len(served.log_text())
    resp = httpx.post(served.url + "/v1/predict", json=body, headers=served.headers, timeout=10)
    assert resp.status_code == status, resp.text
    got = resp.json()
    assert got["detail"]["field"] == field and f"field '{field}'" in got["error"]
    assert "Traceback" not in served.log_text()[logged:]


def test_invalid_json_is_400(served: Any) -> None:
    resp = httpx.post(served.url + "/v1/predict", content=b'{"model": ',
                      headers={**served.headers, "content-type": "application/json"}, timeout=10)
    assert resp.status_code == 400
    assert "Invalid JSON" in resp.text and "Traceback" not in resp.text


def test_oversized_payloads_are_413(served: Any) -> None:
    too_many = post(served, {"model": "fraud", "inputs": [GOOD] * 5001})
    assert too_many.status_code == 413
    assert "5001 rows" in too_many.json()["error"]
    huge = b'{"model": "fraud", "inputs": [' + b'{"step": 1},' * 400_000 + b'{}]}'
    resp = httpx.post(served.url + "/v1/predict", content=huge,
                      headers={**served.headers, "content-type": "application/json"}, timeout=30)
    assert resp.status_code == 413
    assert resp.json()["detail"]["limit_bytes"] == 4 * 1024 * 1024


def test_keystroke_seed_payload(served: Any, trained: dict) -> None:
    frame = sample_frame("keystroke-rf", 1)
    row = frame.iloc[0]
    payload = {"Model": "RF"}
    for group in ("HT", "PPT", "RRT", "RPT"):
        payload[group] = {"Mean": float(row[f"{group.lower()}_mean"]),
                          "STD": float(row[f"{group.lower()}_std"])}
    resp = post(served, payload, route="/v1/keystroke")
    assert resp.status_code == 200, resp.text
    expected = stored_model("keystroke-rf", trained["keystroke-rf"].version).predict(
        columns_from_frame(SPECS["keystroke-rf"],
                                                                        frame))
    assert resp.json() == {"UserID": expected.predictions[0].item()}
    bad = post(served, {**payload, "Model": "KNN"}, route="/v1/keystroke")
    assert bad.status_code == 400 and "Model" in bad.text
    negative = post(served, {**payload, "HT": {"Mean": 90, "STD": -1}}, route="/v1/keystroke")
    assert negative.status_code == 400 and "STD" in negative.text


def _csv_frame(rows: int) -> pd.DataFrame:
    from training import fraud

    raw = fraud.data.generate(rows, seed=5)
    frame, _ = fraud.prepare(raw)
    return frame


def test_csv_round_trip_100k_rows(served: Any, trained: dict) -> None:
    frame = _csv_frame(100_000)
    payload = frame.to_csv(index=False).encode()
    resp = httpx.post(served.url + "/v1/predict_csv", headers=served.headers, timeout=120,
                      files={"file": ("tx.csv", payload, "text/csv")}, data={"model": "fraud"})
    assert resp.status_code == 200, resp.text[:500]
    assert resp.headers["content-type"].startswith("text/csv")
    out = pd.read_csv(io.BytesIO(resp.content))
    assert len(out) == 100_000 == int(resp.headers["x-riskserve-rows"])
    assert list(out.columns) == [*frame.columns, "prediction", "probability"]
    pd.testing.assert_frame_equal(out[frame.columns], frame, check_dtype=False)
    expected = stored_model("fraud", trained["fraud"].version).predict(
        columns_from_frame(SPECS["fraud"], frame))
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected.predictions)
    np.testing.assert_allclose(out["probability"].to_numpy(), expected.scores, rtol=1e-5)


def test_csv_errors_name_the_row_and_column(served: Any) -> None:
    frame = _csv_frame(200)
    frame = frame.astype({"amount": object})
    frame.loc[150, "amount"] = "oops"
    resp = httpx.post(served.url + "/v1/predict_csv", headers=served.headers, timeout=30,
                      files={"file": ("tx.csv", frame.to_csv(index=False).encode(), "text/csv")},
                      data={"model": "fraud"})
    assert resp.status_code == 422
    assert resp.json()["detail"] == {"field": "amount", "expected": "a number in [0, 1e+12]",
                                     "rows": [150], "got": "oops"}
    empty = httpx.post(served.url + "/v1/predict_csv", headers=served.headers, timeout=30,
                       files={"file": ("e.csv", b"", "text/csv")}, data={"model": "fraud"})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    missing = httpx.post(served.url + "/v1/predict_csv", headers=served.headers, timeout=30,
                         files={"file": ("m.csv", b"step,amount\n1,2\n", "text/csv")},
                         data={"model": "fraud"})
    assert missing.status_code == 422 and missing.json()["detail"]["field"] == "type"


def test_refuses_to_start_without_keys(trained: dict, tmp_path: Path) -> None:
    env = {"RISKSERVE_API_KEYS": "", "RISKSERVE_API_KEYS_FILE": ""}
    proc = server.start(tmp_path / "nokeys.log", env, wait=False)
    try:
        proc.proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.stop()
        pytest.fail("the service kept running without API keys")
    assert proc.proc.returncode != 0
    assert "no API keys configured" in proc.log_text()


def test_auth_disabled_serves_without_key_and_warns(trained: dict, tmp_path: Path) -> None:
    proc = server.start(tmp_path / "open.log", {"RISKSERVE_API_KEYS": "",
                                                "RISKSERVE_AUTH_DISABLED": "true"})
    try:
        rows = records("fraud", sample_frame("fraud", 1))
        resp = httpx.post(proc.url + "/v1/predict", json={"model": "fraud", "inputs": rows},
                          timeout=30)
        assert resp.status_code == 200
        assert "AUTHENTICATION IS DISABLED" in proc.log_text()
    finally:
        proc.stop()
    assert os.environ.get("RISKSERVE_AUTH_DISABLED") is None


def test_workers_run_uvloop_and_httptools(served: Any) -> None:
    """uvicorn picks uvloop and httptools when installed (requirements.txt pins them); each
    worker logs what it really runs, and gRPC is served from that same loop."""
    log = served.log_text()
    assert "event loop uvloop.Loop, HTTP parser httptools" in log, log[-2000:]
