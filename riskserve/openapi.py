"""The API document at /docs.json (and the Swagger page at /): riskserve's, not BentoML's template.

BentoML generates only the @bentoml.api POST routes, with its stock README as description, a
`None` version, 200/400/404/500 and JSON-Schema-2020 nullables that OpenAPI 3.0 cannot read.
`document` turns that into riskserve's document: title, version, a description of the models,
the keys and the error shape; every route the service answers (the mounted GET /v1/models and
every /v2 route of the Open Inference Protocol included) with its request and response schemas
and the statuses it really returns. Installed by riskserve.bentoml_fixes (`_openapi_fix`).
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from riskserve.core.specs import MODEL_NAMES, SPECS, Feature
from riskserve.v1 import schemas

TITLE = "riskserve"
REPO = Path(__file__).resolve().parent.parent
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
KEYED = [{"apiKey": []}, {"bearer": []}]

# Why each status is answered (per route, `_responses` picks the ones that route can give).
WHY = {
    "400": "Malformed request: not JSON, a missing or mistyped field (`detail.field` names "
           "the first, `detail.errors` lists pydantic's errors), an unreadable CSV.",
    "401": "Missing or unknown API key (answered before the body is read).",
    "403": "The key may not use this model (its `models=` scope); `detail.allowed` lists "
           "what it may use.",
    "404": "Unknown model or version; `detail.known` lists the known ones.",
    "413": "Body over RISKSERVE_MAX_PAYLOAD_BYTES (CSV: RISKSERVE_CSV_MAX_BYTES) or more rows "
           "than RISKSERVE_MAX_ROWS / RISKSERVE_CSV_MAX_ROWS.",
    "422": "A value breaks the model's contract: missing, wrong type, out of range, not finite "
           "or an unknown category; `detail.field` names it, `detail.rows` the rows.",
    "429": "Over the key's rate (Retry-After says when), the model's in-flight limit or "
           "RISKSERVE_MAX_CONCURRENCY: retry later.",
    "500": "Internal error; the server log has the details (never an answer to bad input).",
    "503": "Not ready yet (models still loading).",
    "504": "No answer within RISKSERVE_REQUEST_TIMEOUT_S.",
}
HEADERS = {
    "401": {"WWW-Authenticate": {"description": "`Bearer realm=\"riskserve\"`.",
                                 "schema": {"type": "string"}}},
    "429": {"Retry-After": {"description": "Seconds until the key's bucket has a token again "
                                           "(rate limits only).",
                            "schema": {"type": "integer", "minimum": 1}}},
}
# The statuses by kind of route, besides 200: what the middlewares (auth, body limit, BentoML's
# concurrency shed and timeout) add to what the route itself raises.
KEYED_GET = ("401", "429", "500", "504")
MODEL_GET = ("401", "403", "404", "429", "500", "504")
SCORING = ("400", "401", "403", "404", "413", "422", "429", "500", "504")
OIP_INFER = ("400", "401", "403", "404", "413", "429", "500", "504")  # the protocol's 400 for 422
# BentoML's own error schemas: kept (and corrected) for clients that generated code from them.
BENTOML_ERRORS = ("InvalidArgument", "NotFound", "InternalServerError")

TAGS = [
    {"name": "v1", "description": "riskserve's JSON and CSV API: rows of named features in, "
                                  "predictions (and explanations) out."},
    {"name": "v2", "description": "Open Inference Protocol v2 REST (KServe / Triton clients): "
                                  "one input tensor per feature, JSON or binary tensor data."},
    {"name": "probes", "description": "Liveness, readiness and Prometheus metrics; no key."},
]


# ---- version and description ------------------------------------------------------------------

def service_version() -> str:
    """The Bento's version when served from a Bento, else the package version + git commit."""
    import bentoml

    bento = getattr(bentoml.server_context, "bento_version", None)
    if bento and bento != "not available":
        return bento
    return _source_version()


@functools.cache
def _source_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("riskserve")
    except PackageNotFoundError:
        package = "0+unknown"
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True
                                ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{package}+git.{commit}" if commit else package


def description() -> str:
    """What the service is, the models, how to authenticate, the error shape, where to read on."""
    models = "\n".join(f"| `{s.name}` | {s.task} | {s.description} |" for s in SPECS.values())
    statuses = "\n".join(f"| {code} | {why} |" for code, why in WHY.items())
    return f"""\
**riskserve**: one service scoring security and risk models, each pinned to the production
version of the model store. Three protocols over one data plane: **/v1** (JSON rows, CSV files, the
keystroke seed payload), **/v2** (Open Inference Protocol REST) and **gRPC**
(`inference.GRPCInferenceService`, on the gRPC port, 3001 by default; not in this document).
`GET /v1/models` lists each model's version, features (with dtypes, ranges and categories) and
held-out metrics.

| model | task | what it predicts |
|---|---|---|
{models}

## Authentication
Every route except the probes (`/livez`, `/readyz`, `/healthz`, `/metrics`, `/v2/health/*`)
and this documentation needs an API key, as `X-API-Key: <key>` or `Authorization: Bearer <key>`
(the **Authorize** button sets either). A key may be limited to some models (403 for the
others) and to a request rate (429 with `Retry-After`).

## Errors
Every error answer is JSON `{{"error": "<one line naming the field and what was expected>",
"detail": <structured: field, expected, rows, known models...>}}`; bad input is never a 500.
/v2 answers a contract violation with the protocol's 400 where /v1 says 422.

| status | when |
|---|---|
{statuses}

## More
`README.md` at the root of the riskserve repository: quick start, every setting, metrics and
dashboards; `helm/riskserve/README.md`: the Helm chart.
"""


# ---- schemas ------------------------------------------------------------------------------

def oas30(node: Any) -> Any:
    """A JSON Schema (pydantic's, BentoML's) in OpenAPI 3.0's dialect.

    OpenAPI 3.0 has no `type: null`: `anyOf [X, {type: null}]` becomes X with `nullable`, and
    a property whose default is null is nullable (BentoML drops the null branch but keeps
    `default: null`, which 3.0 validators then reject). Nor `type: file` (Swagger 2's), which
    BentoML writes for an uploaded file: that is a binary string.
    """
    if isinstance(node, list):
        return [oas30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: oas30(value) for key, value in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            del node[key]
            if len(rest) == 1 and "$ref" not in rest[0]:
                node = {**rest[0], **node}
            else:  # siblings of a $ref are ignored in 3.0: keep it inside a combinator
                node[key] = rest
            node["nullable"] = True
    if "default" in node and node["default"] is None:
        node["nullable"] = True
    if node.get("type") == "file":  # Swagger 2's file type, BentoML's for a Path parameter
        node.update(type="string", format="binary")
    return node


def add_models(target: dict[str, Any], models: Iterable[type[BaseModel]]) -> None:
    """Each pydantic model (and the models it uses) as a component schema."""
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            target[name] = oas30(sub)
        target[model.__name__] = oas30(schema)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"]
_PARAMETERS = {"type": "object", "additionalProperties": True,
               "description": "Protocol parameters (scalars). riskserve reads `binary_data_size` "
                              "(inputs), `binary_data` (outputs), `binary_data_output` and "
                              "`explain` (request)."}
_SCALAR = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}
_SHAPE = {"type": "array", "items": {"type": "integer"}}

# The Open Inference Protocol's REST objects (KServe's open_inference_rest.yaml), as riskserve
# answers them. Prefixed `Oip` so they cannot collide with BentoML's generated names.
OIP_SCHEMAS: dict[str, dict[str, Any]] = {
    "OipServerMetadata": {
        "type": "object", "required": ["name", "version", "extensions"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "extensions": {"type": "array", "items": {"type": "string"},
                                      "description": "Protocol extensions served, e.g. "
                                                     "`binary_tensor_data`."}}},
    "OipRepositoryIndex": {
        "type": "object", "required": ["models"],
        "description": "Not in the protocol's core (Triton has one): the key's models.",
        "properties": {"models": {"type": "array", "items": {
            "type": "object", "required": ["name", "version", "state"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                           "state": {"type": "string", "enum": ["READY"]}}}}}},
    "OipTensorMetadata": {
        "type": "object", "required": ["name", "datatype", "shape"],
        "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                       "shape": {**_SHAPE, "description": "-1: any length (rows)."},
                       "parameters": _PARAMETERS}},
    "OipModelMetadata": {
        "type": "object", "required": ["name", "platform", "inputs", "outputs"],
        "properties": {"name": {"type": "string"},
                       "versions": {"type": "array", "items": {"type": "string"}},
                       "platform": {"type": "string", "description": "The model's framework."},
                       "inputs": {"type": "array", "items": ref("OipTensorMetadata"),
                                  "description": "One tensor per feature, in order."},
                       "outputs": {"type": "array", "items": ref("OipTensorMetadata"),
                                   "description": "`predict`; classifiers: `predict_proba`."}}},
    "OipModelReady": {"type": "object", "required": ["name", "ready"],
                      "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
    "OipServerLive": {"type": "object", "required": ["live"],
                      "properties": {"live": {"type": "boolean"}}},
    "OipServerReady": {"type": "object", "required": ["ready"],
                       "properties": {"ready": {"type": "boolean"}}},
    "OipTensorData": {
        "type": "array", "description": "Row-major values (nested arrays are flattened); a JSON "
                                        "null is a missing value where the feature is nullable.",
        "items": {"anyOf": [*_SCALAR["anyOf"], {"type": "array", "items": _SCALAR}]}},
    "OipRequestInput": {
        "type": "object", "required": ["name", "shape", "datatype"],
        "description": "`data`, or binary data after the JSON (`parameters.binary_data_size`).",
        "properties": {"name": {"type": "string", "description": "A feature name."},
                       "shape": _SHAPE, "datatype": {"type": "string", "enum": DATATYPES},
                       "parameters": _PARAMETERS, "data": ref("OipTensorData")}},
    "OipRequestOutput": {"type": "object", "required": ["name"],
                         "properties": {"name": {"type": "string",
                                                 "enum": ["predict", "predict_proba"]},
                                        "parameters": _PARAMETERS}},
    "OipInferenceRequest": {
        "type": "object", "required": ["inputs"],
        "properties": {"id": {"type": "string"}, "parameters": _PARAMETERS,
                       "inputs": {"type": "array", "items": ref("OipRequestInput")},
                       "outputs": {"type": "array", "items": ref("OipRequestOutput"),
                                   "description": "Default: every output."}}},
    "OipResponseOutput": {
        "type": "object", "required": ["name", "shape", "datatype"],
        "description": "`data`, or (binary) `parameters.binary_data_size` bytes after the JSON. "
                       "`predict_proba` has `parameters.classes` (a JSON array, as text).",
        "properties": {"name": {"type": "string"}, "shape": _SHAPE,
                       "datatype": {"type": "string"}, "parameters": _PARAMETERS,
                       "data": {"type": "array", "items": _SCALAR}}},
    "OipInferenceResponse": {
        "type": "object", "required": ["model_name", "outputs"],
        "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                       "id": {"type": "string"}, "parameters": _PARAMETERS,
                       "outputs": {"type": "array", "items": ref("OipResponseOutput")}}},
}


# ---- examples (from the contract, so they stay valid) ---------------------------------------

def example_value(f: Feature) -> Any:
    """A value the contract accepts for `f`."""
    if f.is_category:
        return f.categories[0] if f.categories else "example"
    value = 1 if f.min is None else max(f.min, min(1, f.max if f.max is not None else 1))
    return int(value) if f.kind == "int" else float(value)


def example_row(model: str) -> dict[str, Any]:
    return {f.name: example_value(f) for f in SPECS[model].features}


def example_tensors(model: str) -> dict[str, Any]:
    return {"inputs": [{"name": f.name, "datatype": f.datatype, "shape": [1],
                        "data": [example_value(f)]} for f in SPECS[model].features]}


# ---- responses and parameters ---------------------------------------------------------------

def _responses(ok: dict[str, Any], codes: Iterable[str]) -> dict[str, Any]:
    out = {"200": ok}
    for code in codes:
        out[code] = {"description": WHY[code], "content": _json(ERROR_REF)}
        if code in HEADERS:
            out[code]["headers"] = HEADERS[code]
    return out


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


def _path_params(version: bool) -> list[dict[str, Any]]:
    params = [{"name": "name", "in": "path", "required": True, "description": "Model name.",
               "schema": {"type": "string", "enum": list(MODEL_NAMES)}}]
    if version:
        params.append({"name": "version", "in": "path", "required": True,
                       "description": "A stored version (see `versions` in the metadata).",
                       "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}})
    return params


def _get(summary: str, tag: str, op_id: str, ok: dict[str, Any], codes: Iterable[str],
         parameters: list[dict[str, Any]] | None = None, open_route: bool = False
         ) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": [tag], "summary": summary, "operationId": op_id,
                          "responses": _responses(ok, codes)}
    if parameters:
        op["parameters"] = parameters
    if open_route:
        op["security"] = []
    return {"get": op}


# ---- paths --------------------------------------------------------------------------------

def v1_listing_paths() -> dict[str, Any]:
    """The GET routes riskserve.v1.app mounts beside BentoML's POST routes."""
    return {
        "/v1/models": _get("Every model the key may use", "v1", "listModels",
                           _ok("Version, task, runtime, features and metrics of each model.",
                               ref("ModelList")), KEYED_GET),
        "/v1/models/{name}": _get("One model's listing entry", "v1", "getModel",
                                  _ok("The model's entry.", ref("ModelInfo")), MODEL_GET,
                                  _path_params(False)),
    }


def v2_paths() -> dict[str, Any]:
    """Every route of riskserve.oip.rest, in the protocol's terms."""
    health = ("429", "500", "504")  # open, but still behind BentoML's concurrency shed
    paths = {
        "/v2/health/live": _get("Server live", "v2", "v2ServerLive",
                                _ok("The worker answers.", ref("OipServerLive")), health,
                                open_route=True),
        "/v2/health/ready": _get("Server ready", "v2", "v2ServerReady",
                                 _ok("Every production model is loaded.",
                                     ref("OipServerReady")), health, open_route=True),
        "/v2": _get("Server metadata", "v2", "v2ServerMetadata",
                    _ok("Name, version and extensions.", ref("OipServerMetadata")), KEYED_GET),
        "/v2/models": _get("Repository index", "v2", "v2RepositoryIndex",
                           _ok("The key's models.", ref("OipRepositoryIndex")), KEYED_GET),
    }
    paths["/v2/health/ready"]["get"]["responses"]["503"] = {
        "description": WHY["503"], "content": _json(ref("OipServerReady"))}
    for suffix, version in (("", False), ("/versions/{version}", True)):
        base = f"/v2/models/{{name}}{suffix}"
        op = "V" if version else ""
        paths[base] = _get("Model metadata", "v2", f"v2ModelMetadata{op}",
                           _ok("Inputs (one per feature), outputs, versions, platform.",
                               ref("OipModelMetadata")), MODEL_GET, _path_params(version))
        paths[f"{base}/ready"] = _get("Model ready", "v2", f"v2ModelReady{op}",
                                      _ok("The model is loaded.", ref("OipModelReady")),
                                      MODEL_GET, _path_params(version))
        paths[f"{base}/infer"] = {"post": {
            "tags": ["v2"], "summary": "Inference", "operationId": f"v2ModelInfer{op}",
            "description": "One input tensor per feature (`GET /v2/models/{name}` lists them), "
                           "shape `[rows]`. Outputs `predict` and, for classifiers, "
                           "`predict_proba` ([rows, classes]); `parameters.explain: true` adds "
                           "`contributions`. Binary tensor data (Triton's extension): send "
                           "`Inference-Header-Content-Length` and the raw bytes after the JSON.",
            "parameters": [*_path_params(version),
                           {"name": "Inference-Header-Content-Length", "in": "header",
                            "required": False, "schema": {"type": "integer", "minimum": 0},
                            "description": "Binary requests: the JSON header's length."}],
            "requestBody": {"required": True, "content": {
                **_json(ref("OipInferenceRequest"), example_tensors("fraud")),
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": _responses({
                "description": "The outputs; with binary outputs requested, "
                               "application/octet-stream: the JSON header, then the data.",
                "content": {**_json(ref("OipInferenceResponse")),
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}}}},
                OIP_INFER),
        }}
    return paths


def probe_paths(generated: dict[str, Any]) -> dict[str, Any]:
    """BentoML's probes and metrics, open, with their real answers (plain text)."""
    text = {"text/plain": {"schema": {"type": "string"}}}
    why = {"/livez": "The worker is alive.", "/readyz": "The service is ready for traffic.",
           "/healthz": "Deprecated alias of /livez.",
           "/metrics": "Prometheus exposition: BentoML's and riskserve's series."}
    paths = {}
    for path, what in why.items():
        op = dict(generated.get(path, {}).get("get", {}))
        op.update(tags=["probes"], summary=what, security=[],
                  operationId=path.strip("/"),
                  responses={"200": {"description": what, "content": text},
                             "500": {"description": WHY["500"], "content": _json(ERROR_REF)}})
        if path == "/readyz":
            op["responses"]["503"] = {"description": WHY["503"], "content": text}
        if path == "/healthz":
            op["deprecated"] = True
        paths[path] = {"get": op}
    return paths


# The answer schema of each @bentoml.api route whose handler returns a plain dict.
V1_ANSWERS = {"/v1/explain": "ExplainResponse", "/v1/feedback": "FeedbackResponse",
              "/v1/keystroke": "KeystrokeResponse"}
V1_EXAMPLES = {
    "/v1/predict": {"model": "fraud", "inputs": [example_row("fraud")]},
    "/v1/explain": {"model": "fraud", "inputs": [example_row("fraud")], "top": 3},
    "/v1/feedback": {"model": "fraud", "outcomes": [{"predicted": 0, "actual": 0}]},
    "/v1/keystroke": {"Model": "RF", **{g: {"Mean": 100.0, "STD": 10.0}
                                        for g in ("HT", "PPT", "RRT", "RPT")}},
}
V1_ORDER = ("/v1/predict", "/v1/explain", "/v1/predict_csv", "/v1/feedback", "/v1/keystroke")


def v1_api_paths(generated: dict[str, Any]) -> dict[str, Any]:
    """BentoML's @bentoml.api routes, completed: answers, statuses, examples, the key."""
    paths = {}
    ordered = [p for p in V1_ORDER if p in generated]
    ordered += [p for p in generated if p.startswith("/v1/") and p not in ordered]
    for path in ordered:
        op = dict(generated[path]["post"])
        op["tags"] = ["v1"]
        op.pop("security", None)  # the document's default: a key
        ok = dict(op.get("responses", {}).get("200", {"description": "OK"}))
        if path in V1_ANSWERS:
            ok["content"] = _json(ref(V1_ANSWERS[path]))
        if path == "/v1/predict_csv":
            ok["headers"] = {h: {"schema": {"type": "string"}, "description": d} for h, d in (
                ("X-Riskserve-Rows", "Rows scored."), ("X-Riskserve-Model", "Model name."),
                ("X-Riskserve-Version", "Model version."))}
        codes = [c for c in SCORING if not (path == "/v1/keystroke" and c == "404")]
        op["responses"] = _responses(ok, codes)
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None and path in V1_EXAMPLES:
            body["example"] = V1_EXAMPLES[path]
        paths[path] = {"post": op}
    return paths


# The Swagger page at `/`: BentoML's own assets (served at ./static_content) and initializer
# (which loads ./docs.json), without its page's Google Tag Manager snippet, "BentoML Prediction
# Service" title and GitHub corner, and with the document's title visible.
SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>riskserve API</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./static_content/index.css" />
    <!-- BentoML's index.css hides the title (its README repeats the name): show riskserve's. -->
    <style>.info .main .title, .info .main .title span { visibility: visible; position: static; }
    </style>
    <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"""


def swagger_page() -> str:
    """The HTML of `/` (for BentoML's `ServiceAppFactory.index_page`, see bentoml_fixes)."""
    return SWAGGER_PAGE


def document(doc: dict[str, Any]) -> dict[str, Any]:
    """riskserve's OpenAPI document, from the one BentoML generated (`Service.openapi_spec`).

    BentoML's request schemas of the @bentoml.api routes are kept (they are what its
    validation enforces); everything else is riskserve's: info, tags, security, the answers.
    """
    doc = oas30(doc)
    generated = doc.get("paths", {})
    for ops in generated.values():
        for op in ops.values():  # BentoML's statuses are ints until the JSON answer is encoded
            op["responses"] = {str(code): r for code, r in op.get("responses", {}).items()}
    doc["info"] = {"title": TITLE, "version": service_version(), "description": description()}
    doc["tags"] = TAGS
    doc["security"] = KEYED
    doc["paths"] = {**v1_api_paths(generated), **v1_listing_paths(), **v2_paths(),
                    **probe_paths(generated)}
    components = doc.setdefault("components", {})
    components["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "`Authorization: Bearer <key>`, the same keys."},
    }
    found = components.setdefault("schemas", {})
    add_models(found, [schemas.ErrorResponse, schemas.ExplainResponse, schemas.FeedbackResponse,
                       schemas.KeystrokeResponse, schemas.ModelList])
    found.update(OIP_SCHEMAS)
    for name in BENTOML_ERRORS:
        props = found.get(name, {}).get("properties", {})
        if "detail" in props:  # BentoML types it as a string; riskserve's is structured
            props["detail"] = dict(found["ErrorResponse"]["properties"]["detail"])
    return doc
