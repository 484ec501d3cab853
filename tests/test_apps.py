"""The /v1 listing app and the /v2 REST app under Starlette's TestClient (second tier): real
routing, auth middleware, exception handlers and data plane, on the session store's models,
without a server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from riskserve.auth import APIKeyMiddleware, KeyRing
from riskserve.core.registry import Registry
from riskserve.core.specs import MODEL_NAMES, SPECS
from riskserve.core.validation import columns_from_frame
from riskserve.dataplane import DataPlane
from riskserve.devtools.samples import sample_frame
from riskserve.metrics import get_metrics
from riskserve.oip.rest import v2_app
from riskserve.settings import Settings
from riskserve.v1.app import v1_app

OPS, LOANS = "ops-key-0123456789", "loan-key-0123456789"


@pytest.fixture(scope="module")
def dp(trained: dict) -> DataPlane:
    metrics = get_metrics()
    registry = Registry({n: trained[n].model for n in MODEL_NAMES}, on_load=metrics.model_loaded)
    return DataPlane(registry, Settings(max_rows=100), metrics)


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    path: Path = tmp_path_factory.mktemp("keys") / "keys"
    path.write_text(f"# team keys\n{OPS} name=ops\n{LOANS} name=loans models=risk-flag\n")
    ring = KeyRing.from_settings(Settings(api_keys_file=str(path)))
    assert ring is not None
    return ring


def client(app: Any, prefix: str, dp: DataPlane, ring: KeyRing) -> Iterator[TestClient]:
    """The app mounted where the service mounts it, behind the real auth middleware."""
    app.state.dataplane = dp
    root = Starlette(routes=[Mount(prefix, app)])
    with TestClient(APIKeyMiddleware(root, keyring=ring), base_url=f"http://testserver{prefix}",
                    raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def v1(dp: DataPlane, ring: KeyRing) -> Iterator[TestClient]:
    yield from client(v1_app(), "/v1", dp, ring)


@pytest.fixture(scope="module")
def v2(dp: DataPlane, ring: KeyRing) -> Iterator[TestClient]:
    yield from client(v2_app(), "/v2", dp, ring)


def key(k: str) -> dict[str, str]:
    return {"x-api-key": k}


# ---- /v1 listings --------------------------------------------------------------------------

def test_listing_shows_only_what_the_key_may_use(v1: TestClient) -> None:
    every = v1.get("/models", headers=key(OPS)).json()["models"]
    assert [m["name"] for m in every] == list(MODEL_NAMES)
    assert all(m["runtime"] for m in every)
    assert all("nullable" in f for m in every for f in m["features"])
    scoped = v1.get("/models", headers=key(LOANS)).json()["models"]
    assert [m["name"] for m in scoped] == ["risk-flag"]


def test_model_entry_scope_and_unknown(v1: TestClient) -> None:
    assert v1.get("/models/risk-flag", headers=key(LOANS)).json()["name"] == "risk-flag"
    forbidden = v1.get("/models/fraud", headers=key(LOANS))
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == ("key 'loans' may not use model 'fraud'; "
                                         "it may use: risk-flag")
    assert forbidden.json()["detail"]["field"] == "model"
    unknown = v1.get("/models/nope", headers=key(LOANS))
    assert unknown.status_code == 404 and unknown.json()["detail"]["known"] == ["risk-flag"]
    assert v1.get("/models", headers=key("wrong")).status_code == 401
    assert v1.get("/models/", headers=key(OPS)).status_code == 404  # no slash redirect


# ---- /v2 REST ------------------------------------------------------------------------------

def tensors(name: str, n: int = 3) -> tuple[list[dict[str, Any]], Any]:
    frame = sample_frame(name, n)
    out = []
    for f in SPECS[name].features:
        values = frame[f.name].tolist()
        if f.is_category:
            out.append({"name": f.name, "datatype": "BYTES", "shape": [n],
                        "data": [str(v) for v in values]})
        else:
            out.append({"name": f.name, "datatype": "INT64" if f.kind == "int" else "FP64",
                        "shape": [n], "data": [int(v) if f.kind == "int" else float(v)
                                               for v in values]})
    return out, frame


def test_health_answers_kserve_style_json(v2: TestClient) -> None:
    assert v2.get("/health/live").json() == {"live": True}
    assert v2.get("/health/ready").json() == {"ready": True}


@pytest.mark.parametrize("name", ["fraud", "keystroke-xgb", "cyber-threat"])
def test_infer_matches_the_model(v2: TestClient, trained: dict, name: str) -> None:
    inputs, frame = tensors(name)
    resp = v2.post(f"/models/{name}/infer", headers=key(OPS), json={"id": "t", "inputs": inputs})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    expected = trained[name].model.predict(columns_from_frame(SPECS[name], frame))
    predict = next(o for o in body["outputs"] if o["name"] == "predict")
    assert body["id"] == "t" and body["model_version"] == trained[name].version
    np.testing.assert_allclose(np.asarray(predict["data"], dtype=float),
                               expected.predictions.astype(float), rtol=1e-9)


def test_scoped_key_is_forbidden_before_the_body_is_read(v2: TestClient) -> None:
    resp = v2.post("/models/fraud/infer", headers=key(LOANS), content=b"{not json")
    assert resp.status_code == 403 and "key 'loans'" in resp.json()["error"]
    assert v2.get("/models/fraud", headers=key(LOANS)).status_code == 403
    assert v2.get("/models/fraud/ready", headers=key(LOANS)).status_code == 403
    index = v2.get("/models", headers=key(LOANS)).json()["models"]
    assert [m["name"] for m in index] == ["risk-flag"]


def test_bad_tensors_are_400_naming_the_input(v2: TestClient) -> None:
    inputs, _ = tensors("fraud")
    inputs[2] = {**inputs[2], "data": ["x", "y", "z"]}
    resp = v2.post("/models/fraud/infer", headers=key(OPS), json={"inputs": inputs})
    assert resp.status_code == 400 and resp.json()["detail"]["field"] == "amount"
    too_many, _ = tensors("fraud", 101)
    assert v2.post("/models/fraud/infer", headers=key(OPS),
                   json={"inputs": too_many}).status_code == 413


def test_metadata_names_runtime_and_inputs(v2: TestClient, trained: dict) -> None:
    meta = v2.get("/models/risk-flag", headers=key(OPS)).json()
    assert meta["name"] == "risk-flag" and meta["versions"][0] == trained["risk-flag"].version
    assert [i["name"] for i in meta["inputs"]] == list(SPECS["risk-flag"].feature_names)


def test_mount_paths_answer_what_the_mounts_cannot() -> None:
    """`GET /v2` reaches the /v2 app without a redirect; a newline in a mounted path (which
    a Mount's regex cannot match) is riskserve's JSON 404, not the outer app's plain text."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from riskserve.http import MountPaths

    async def root(request: Any) -> JSONResponse:
        return JSONResponse({"path": request.url.path})

    inner = Starlette(routes=[Route("/", root), Route("/models/{name}", root)])
    client = TestClient(MountPaths(Starlette(routes=[Mount("/v2", inner)])))
    assert client.get("/v2", follow_redirects=False).json() == {"path": "/v2/"}
    assert client.get("/v2/models/fraud").status_code == 200
    r = client.get("/v2/models/fr%0Aaud")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json()["detail"]["field"] == "path"
