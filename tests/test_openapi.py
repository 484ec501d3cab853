"""The API document (/docs.json) and the Swagger page at `/` describe riskserve, not BentoML.

In process: `openapi.document()` over what BentoML generates for service.RiskServe (every
route, valid OpenAPI 3.0, statuses, the description). Then the real page: a `bentoml serve`
opened in headless Debian chromium (`make deps` installs it), whose rendered DOM must list
every operation of the document and none of BentoML's template README.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from riskserve import openapi
from riskserve.core.specs import MODEL_NAMES

# Every operation the service answers: (method, path) as documented.
OPERATIONS = {
    ("POST", "/v1/predict"), ("POST", "/v1/explain"), ("POST", "/v1/predict_csv"),
    ("POST", "/v1/feedback"), ("POST", "/v1/keystroke"),
    ("GET", "/v1/models"), ("GET", "/v1/models/{name}"),
    ("GET", "/v2"), ("GET", "/v2/models"), ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{name}"), ("GET", "/v2/models/{name}/versions/{version}"),
    ("GET", "/v2/models/{name}/ready"), ("GET", "/v2/models/{name}/versions/{version}/ready"),
    ("POST", "/v2/models/{name}/infer"), ("POST", "/v2/models/{name}/versions/{version}/infer"),
    ("GET", "/livez"), ("GET", "/readyz"), ("GET", "/healthz"), ("GET", "/metrics"),
}
OPEN = {"/livez", "/readyz", "/healthz", "/metrics", "/v2/health/live", "/v2/health/ready"}
# BentoML's stock README and contact, which must not reach riskserve's page.
TEMPLATE = ("Machine Learning Service created with BentoML", "BentoML Slack",
            "Contact BentoML Team", "join-slack", "contact@bentoml.com")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  # Loopback only: BentoML's page embeds Google Tag Manager; no name resolves.
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


# ---- in process: document() over BentoML's own generated document --------------------------

@pytest.fixture(scope="module")
def generated(trained: dict) -> dict[str, Any]:
    """What BentoML generates for the service (the input of `document`), from the session store."""
    import service

    return service.RiskServe.openapi_spec.asdict()


@pytest.fixture(scope="module")
def doc(generated: dict[str, Any]) -> dict[str, Any]:
    import copy

    return openapi.document(copy.deepcopy(generated))


def test_bentoml_alone_documents_only_its_post_routes(generated: dict[str, Any]) -> None:
    """The reason for `document`: BentoML's document misses the mounted routes and says
    `None` for the version; if this stops holding, upstream improved and the fix can shrink."""
    assert ("GET", "/v1/models") not in operations(generated)
    assert not any(p.startswith("/v2") for _, p in operations(generated))
    assert "Machine Learning Service created with BentoML" in generated["info"]["description"]


def test_every_route_is_documented(doc: dict[str, Any]) -> None:
    assert operations(doc) == OPERATIONS
    # BentoML's own statuses are ints in process: unnormalised, "200" was lost to the int 200.
    for ops in doc["paths"].values():
        for op in ops.values():
            assert all(isinstance(code, str) for code in op["responses"])
            assert "content" in op["responses"]["200"]


def test_document_is_valid_openapi_3(doc: dict[str, Any]) -> None:
    from openapi_spec_validator import validate

    assert doc["openapi"].startswith("3.0")
    validate(doc)  # raises on any invalid schema, e.g. JSON Schema 2020's {"type": "null"}


def test_info_is_riskserves(doc: dict[str, Any]) -> None:
    info = doc["info"]
    assert info["title"] == "riskserve"
    assert info["version"] not in ("None", "", "not available")
    assert info["version"] == openapi.service_version()
    assert "contact" not in info
    text = info["description"]
    assert not [t for t in TEMPLATE if t in text]
    for needed in ("X-API-Key", "Authorization: Bearer", '"error"', '"detail"', "README.md",
                   *MODEL_NAMES):
        assert needed in text, needed


def test_version_is_the_bentos_when_served_from_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import bentoml

    monkeypatch.setattr(bentoml.server_context, "bento_version", "abc123")
    assert openapi.service_version() == "abc123"
    monkeypatch.setattr(bentoml.server_context, "bento_version", "not available")
    assert openapi.service_version().startswith("0.") and "+git." in openapi.service_version()


def _status(doc: dict[str, Any], method: str, path: str) -> set[str]:
    return set(doc["paths"][path][method]["responses"])


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("post", "/v1/predict", {"200", "400", "401", "403", "404", "413", "422", "429", "500", "504"}),
    ("post", "/v1/predict_csv", {"200", "400", "401", "403", "404", "413", "422", "429", "500"}),
    ("post", "/v1/keystroke", {"200", "400", "401", "403", "413", "422", "429", "500", "504"}),
    ("get", "/v1/models/{name}", {"200", "401", "403", "404", "429", "500", "504"}),
    ("get", "/v1/models", {"200", "401", "429", "500", "504"}),
    ("post", "/v2/models/{name}/infer", {"200", "400", "401", "403", "404", "413", "429", "500"}),
    ("get", "/v2/health/ready", {"200", "503"}),
])
def test_statuses_actually_returned(doc: dict[str, Any], method: str, path: str,
                                    expected: set[str]) -> None:
    assert expected <= _status(doc, method, path)
    if path.startswith("/v2/"):
        assert "422" not in _status(doc, method, path)  # the protocol answers 400


def test_every_error_has_the_error_shape(doc: dict[str, Any]) -> None:
    err = doc["components"]["schemas"]["ErrorResponse"]
    assert err["required"] == ["error"] and set(err["properties"]) == {"error", "detail"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")) and "application/json" in answer["content"]:
                    schema = answer["content"]["application/json"]["schema"]
                    if not (path == "/v2/health/ready" and status == "503"):
                        assert schema == openapi.ERROR_REF, (method, path, status)
    assert "Retry-After" in doc["paths"]["/v1/predict"]["post"]["responses"]["429"]["headers"]


def test_keys_everywhere_but_the_open_routes(doc: dict[str, Any]) -> None:
    assert doc["security"] == [{"apiKey": []}, {"bearer": []}]
    assert doc["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert (op.get("security") == []) == (path in OPEN), path


def test_answers_are_schemas_not_free_objects(doc: dict[str, Any]) -> None:
    def ok(method: str, path: str) -> dict[str, Any]:
        return doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]

    assert ok("post", "/v1/explain")["schema"] == openapi.ref("ExplainResponse")
    assert ok("post", "/v1/feedback")["schema"] == openapi.ref("FeedbackResponse")
    assert ok("post", "/v1/keystroke")["schema"] == openapi.ref("KeystrokeResponse")
    assert ok("get", "/v1/models")["schema"] == openapi.ref("ModelList")
    assert ok("post", "/v2/models/{name}/infer")["schema"] == openapi.ref("OipInferenceResponse")
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert "application/octet-stream" in infer["responses"]["200"]["content"]  # binary tensors
    schemas = doc["components"]["schemas"]
    assert schemas["OipInferenceRequest"]["required"] == ["inputs"]
    assert {"name", "shape", "datatype"} <= set(schemas["OipRequestInput"]["required"])
    # Regression models answer `probabilities: null`: OpenAPI 3.0 says so with `nullable`.
    props = doc["paths"]["/v1/predict"]["post"]["responses"]["200"]["content"][
        "application/json"]["schema"]["properties"]
    assert props["probabilities"].get("nullable") is True


def test_oas30_rewrites_json_schema_nulls() -> None:
    assert openapi.oas30({"anyOf": [{"type": "string"}, {"type": "null"}], "title": "V"}) == {
        "type": "string", "title": "V", "nullable": True}
    ref = {"$ref": "#/components/schemas/X"}
    assert openapi.oas30({"anyOf": [ref, {"type": "null"}]}) == {"anyOf": [ref],
                                                                 "nullable": True}
    assert openapi.oas30({"type": "file"}) == {"type": "string", "format": "binary"}
    assert openapi.oas30({"type": "string", "default": None})["nullable"] is True


def test_examples_follow_the_contract(served: Any, doc: dict[str, Any]) -> None:
    """The Swagger page's "Try it out" examples are accepted by the real service."""
    for path in ("/v1/predict", "/v1/explain", "/v1/feedback", "/v1/keystroke"):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        resp = httpx.post(served.url + path, json=body["example"], headers=served.headers,
                          timeout=30)
        assert resp.status_code == 200, (path, resp.text)
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]
    resp = httpx.post(f"{served.url}/v2/models/fraud/infer", headers=served.headers,
                      json=infer["application/json"]["example"], timeout=30)
    assert resp.status_code == 200, resp.text


# ---- the real page in headless chromium ------------------------------------------------------

def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium not found on PATH: run `make deps` (Debian package chromium)")
    return path


def rendered_dom(url: str, profile: Path, deadline_s: float = 180) -> str:
    """The page's DOM once Swagger UI rendered the operations (it fetches /docs.json after
    load): dumped under a growing virtual-time budget until the operations are there."""
    deadline = time.monotonic() + deadline_s
    budget_ms = 10_000
    dom = ""
    while time.monotonic() < deadline:
        proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                              capture_output=True, text=True, timeout=deadline_s)
        dom = proc.stdout
        if "opblock-summary-path" in dom:
            return dom
        budget_ms *= 2
    pytest.fail(f"Swagger UI did not render within {deadline_s} s; last DOM:\n{dom[-2000:]}")


@pytest.fixture(scope="module")
def swagger_dom(served: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    return rendered_dom(f"{served.url}/", tmp_path_factory.mktemp("chromium"))


def test_swagger_page_lists_every_route(served: Any, swagger_dom: str) -> None:
    listed = set(re.findall(r'opblock-summary-method">(\w+)</span>.*?data-path="([^"]+)"',
                            swagger_dom, flags=re.DOTALL))
    served_doc = httpx.get(f"{served.url}/docs.json", timeout=30).json()
    assert listed == operations(served_doc) == OPERATIONS


def test_swagger_page_is_riskserves(served: Any, swagger_dom: str) -> None:
    assert not [t for t in TEMPLATE if t in swagger_dom]
    title = re.search(r'<h2 class="title">(.*?)</h2>', swagger_dom, flags=re.DOTALL)
    assert title is not None and title.group(1).startswith("riskserve")
    version = httpx.get(f"{served.url}/docs.json", timeout=30).json()["info"]["version"]
    assert version in title.group(1)
    assert "X-API-Key" in swagger_dom  # the description, rendered


def test_riskserve_swagger_page_uses_only_served_assets(served: Any) -> None:
    """`openapi.swagger_page()` (the page without BentoML's tracker and title): every asset it
    references is served by BentoML, and nothing is loaded from another host."""
    page = openapi.swagger_page()
    assert "<title>riskserve API</title>" in page
    assert "googletagmanager" not in page and "https://" not in page and "http://" not in page
    assets = re.findall(r'(?:href|src)="\./([^"]+)"', page)
    assert len(assets) >= 5
    for asset in assets:
        assert httpx.get(f"{served.url}/{asset}", timeout=30).status_code == 200, asset
