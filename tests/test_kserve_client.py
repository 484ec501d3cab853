"""KServe's own Python client (PyPI `kserve`) against a real `bentoml serve`: REST and gRPC.

The client runs from a venv of its own (riskserve.devtools.kserve_client, built on first use
from tests/kserve-client-requirements.txt) and reports what it decoded as JSON; its answers must
equal /v1's for the same rows: a binary and a multiclass model, over REST with JSON and with
binary tensors, and over gRPC. `is_server_live` / `is_server_ready` read the health body
(`{"live": true}`), which an empty 200 broke (JSONDecodeError).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from riskserve.core.specs import SPECS
from riskserve.devtools import kserve_client
from riskserve.devtools.samples import records, sample_frame

MODELS = ("fraud", "keystroke-rf")
ENCODINGS = [("rest", "json"), ("rest", "binary"), ("grpc", "raw")]
ROWS = 12


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict[str, Any]]]:
    return {name: records(name, sample_frame(name, ROWS)[list(SPECS[name].feature_names)])
            for name in MODELS}


@pytest.fixture(scope="module")
def report(served: Any, rows: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, Any]:
    python = kserve_client.ensure_venv()
    path: Path = tmp_path_factory.mktemp("kserve") / "rows.json"
    path.write_text(json.dumps(rows))
    return kserve_client.run(python, served.url, f"127.0.0.1:{served.grpc_port}", served.key,
                             path)


@pytest.fixture(scope="module")
def expected(served: Any, rows: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """/v1's answers for the same rows."""
    out = {}
    for name, model_rows in rows.items():
        resp = httpx.post(f"{served.url}/v1/predict", headers=served.headers, timeout=30,
                          json={"model": name, "inputs": model_rows})
        assert resp.status_code == 200, resp.text
        out[name] = resp.json()
    return out


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_server_live_and_ready(report: dict[str, Any], protocol: str) -> None:
    assert report[protocol]["live"] is True
    assert report[protocol]["ready"] is True


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("name", MODELS)
def test_model_ready(report: dict[str, Any], protocol: str, name: str) -> None:
    assert report[protocol]["models"][name]["ready"] is True


@pytest.mark.parametrize("name", MODELS)
def test_binary_tensors_both_ways(report: dict[str, Any], name: str) -> None:
    """The client sent binary inputs and asked for binary outputs: the answer was binary."""
    assert report["rest"]["models"][name]["binary_content_type"] == "application/octet-stream"


def test_unknown_model_is_not_ready(report: dict[str, Any]) -> None:
    assert report["rest"]["unknown_model_ready"] is False  # a 404, read as "not ready"


@pytest.mark.parametrize(("protocol", "encoding"), ENCODINGS)
@pytest.mark.parametrize("name", MODELS)
def test_predictions_equal_v1(report: dict[str, Any], expected: dict[str, Any], name: str,
                              protocol: str, encoding: str) -> None:
    outputs = report[protocol]["models"][name][encoding]
    v1 = expected[name]
    assert outputs["predict"]["shape"] == [ROWS]
    assert outputs["predict"]["data"] == v1["predictions"]
    proba = outputs["predict_proba"]
    assert proba["shape"] == [ROWS, len(v1["classes"])]
    np.testing.assert_allclose(np.reshape(proba["data"], proba["shape"]), v1["probabilities"],
                               rtol=0, atol=1e-9)
    # The rows score differently, so equal answers mean the right row reached the right slot.
    assert np.ptp(np.asarray(v1["probabilities"])[:, 0]) > 0
