"""Open Inference Protocol v2 REST routes, mounted at /v2 inside the BentoML service.

Health, server and model metadata, model readiness and inference, per the KServe v2 REST
definition, plus Triton's binary tensor data extension (the default of tritonclient.http).
A thin codec over the data plane: requests are decoded into `Tensor`s (riskserve.oip.codec),
the data plane resolves, authorizes, validates, scores and counts, and the answer is encoded as
JSON or binary tensors. Authentication is the service's HTTP middleware (health stays open, see
riskserve.auth); errors are RiskserveErrors rendered by the app's one exception handler, as the
protocol's `{"error": "..."}` body (with riskserve's `detail`), 400 for bad input.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from riskserve import auth, http
from riskserve.core.encoding import Columns
from riskserve.core.scoring import ScoringModel
from riskserve.dataplane import Call, DataPlane, Inference
from riskserve.errors import BadRequest, RiskserveError
from riskserve.oip import codec
from riskserve.oip.codec import Tensor

logger = logging.getLogger("riskserve.oip.rest")

HEADER_LENGTH = "inference-header-content-length"


def _status(exc: RiskserveError) -> int:
    # The protocol reports failed requests as 400; /v1 uses 422 for contract violations.
    return 400 if exc.status == 422 else exc.status


def _dp(request: Request) -> DataPlane:
    return request.app.state.dataplane


def _call(request: Request) -> Call:
    return Call(request.path_params["name"], request.path_params.get("version"),
                auth.caller_of_scope(request.scope), "http")


async def live(request: Request) -> Response:
    """GET /v2/health/live: 200 and `{"live": true}` while the worker answers (KServe's server
    and client use that body; tritonclient ignores it)."""
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    """GET /v2/health/ready: 200 `{"ready": true}` once every production model is loaded."""
    dp = getattr(request.app.state, "dataplane", None)
    is_ready = dp is not None and bool(dp.registry.names)
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


async def server_metadata(request: Request) -> JSONResponse:
    """GET /v2: server name, version and extensions."""
    return JSONResponse({"name": codec.SERVER_NAME, "version": codec.server_version(),
                         "extensions": list(codec.EXTENSIONS)})


async def repository_index(request: Request) -> JSONResponse:
    """GET /v2/models: the models this key may use (a listing, like Triton's repository index)."""
    dp = _dp(request)
    caller = auth.caller_of_scope(request.scope)
    return JSONResponse({"models": [
        {"name": m["name"], "version": m["version"], "state": "READY"} for m in dp.models(caller)
    ]})


async def model_metadata(request: Request) -> Response:
    """GET /v2/models/{name}[/versions/{version}]: inputs, outputs, versions, platform."""
    model = _dp(request).model(_call(request))
    versions = await run_in_threadpool(codec.available_versions, model)
    return JSONResponse(codec.model_metadata(model, versions, parameters=True))


async def model_ready(request: Request) -> Response:
    """GET /v2/models/{name}[/versions/{version}]/ready: 200 when loaded, 404 if unknown."""
    model = _dp(request).model(_call(request))
    return JSONResponse({"name": model.spec.name, "ready": True})


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """JSON header and trailing binary tensor data (Triton binary extension)."""
    if header_length is None:
        return body, b""
    try:
        size = int(header_length)
    except ValueError:
        size = -1
    if not 0 <= size <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length must be an integer between 0 and the "
                         f"body size ({len(body)}), got {header_length!r}",
                         {"field": "Inference-Header-Content-Length"})
    return body[:size], body[size:]


def _parse_json(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", {"field": "body"}) from None
    if not isinstance(doc, dict):
        raise BadRequest("the request body must be a JSON object with 'inputs'",
                         {"field": "body"})
    return doc


def _parameters(item: dict[str, Any], where: str) -> dict[str, Any]:
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest(f"'{where}.parameters' must be a JSON object", {"field": where})
    return params


def _tensors(doc: dict[str, Any], binary: bytes) -> list[Tensor]:
    """The request's input tensors; binary data is sliced off in input order."""
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise BadRequest("'inputs' must be a list of tensor objects "
                         "({name, datatype, shape, data})", {"field": "inputs"})
    tensors: list[Tensor] = []
    offset = 0
    for i, item in enumerate(inputs):
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        label = name if isinstance(name, str) else f"inputs[{i}]"
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise BadRequest(f"input '{label}' needs a string 'name' and 'datatype'",
                             {"field": label})
        if not isinstance(shape, list) or not all(type(d) is int for d in shape):
            raise BadRequest(f"input '{label}': 'shape' must be a list of integers",
                             {"field": label})
        size = _parameters(item, label).get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise BadRequest(f"input '{label}': binary_data_size {size!r} does not fit the "
                                 f"{len(binary)} bytes of binary data after the JSON header",
                                 {"field": label})
            tensors.append(Tensor(name, datatype, tuple(shape), binary[offset:offset + size],
                                  raw=True))
            offset += size
        else:
            data = item.get("data")
            if not isinstance(data, list):
                raise BadRequest(f"input '{label}': 'data' must be a JSON array (or send "
                                 f"binary data with parameters.binary_data_size)",
                                 {"field": label})
            tensors.append(Tensor(name, datatype, tuple(shape), data))
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data are not claimed by any "
                         f"input's binary_data_size", {"field": "inputs"})
    return tensors


def _requested(doc: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    """Requested output names and, per name, whether it goes back as binary data."""
    default_binary = bool(_parameters(doc, "request").get("binary_data_output", False))
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise BadRequest("'outputs' must be a list of {name, parameters} objects",
                         {"field": "outputs"})
    names: list[str] = []
    binary: dict[str, bool] = {}
    for o in outputs:
        name = o.get("name")
        if not isinstance(name, str):
            raise BadRequest("every requested output needs a string 'name'", {"field": "outputs"})
        params = _parameters(o, name)
        codec.reject_classification(name, params)
        names.append(name)
        binary[name] = bool(params.get("binary_data", default_binary))
    for name in (codec.PREDICT, codec.PREDICT_PROBA):
        binary.setdefault(name, default_binary)
    return names, binary


async def _read(request: Request) -> tuple[dict[str, Any], bytes]:
    if request.headers.get("content-encoding", "identity") != "identity":
        raise BadRequest("compressed request bodies are not supported; send identity encoding",
                         {"field": "Content-Encoding"})
    payload, binary = _split_body(await request.body(), request.headers.get(HEADER_LENGTH))
    doc = _parse_json(payload)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string", {"field": "id"})
    return doc, binary


async def infer(request: Request) -> Response:
    """POST /v2/models/{name}[/versions/{version}]/infer (`parameters.explain`: contributions).

    The body is read only inside the decoder, i.e. after the data plane resolved the model and
    authorized the key for it.
    """
    dp = _dp(request)
    parsed: dict[str, Any] = {}

    async def decode(model: ScoringModel) -> tuple[int, Callable[[], Columns]]:
        doc, binary = await _read(request)
        names, parsed["binary"] = _requested(doc)
        parsed["doc"] = doc
        parsed["selected"] = codec.select_outputs(model, names)
        tensors = _tensors(doc, binary)
        rows = codec.check_tensors(model.spec, tensors)
        return rows, lambda: codec.to_columns(model.spec, tensors, rows)

    call = _call(request)
    # Whether to explain is a request parameter, known only from the body: peek at it cheaply.
    if await _wants_explanation(request):
        result = await dp.explain(call, decode)
    else:
        result = await dp.infer(call, decode)
    return _encode(result, parsed["doc"], parsed["selected"], parsed["binary"])


async def _wants_explanation(request: Request) -> bool:
    body = await request.body()  # cached by Starlette: the decoder reads the same bytes
    if b'"explain"' not in body:
        return False
    header = request.headers.get(HEADER_LENGTH)
    try:
        doc = _parse_json(_split_body(body, header)[0])
    except BadRequest:
        return False  # the decoder reports it, with the model resolved first
    return bool(_parameters(doc, "request").get("explain", False))


def _encode(result: Inference, doc: dict[str, Any], selected: list[str],
            binary_outputs: dict[str, bool]) -> Response:
    model, pred = result.model, result.prediction
    body: dict[str, Any] = {"model_name": model.spec.name, "model_version": model.version}
    if doc.get("id") is not None:
        body["id"] = doc["id"]
    chunks: list[bytes] = []
    rendered = []
    outs = codec.outputs(model, pred, selected)
    if result.explanation is not None:
        outs.append(codec.contributions(result.explanation))
    for o in outs:
        entry: dict[str, Any] = {"name": o.name, "datatype": o.datatype, "shape": o.shape}
        params: dict[str, Any] = dict(o.parameters)
        if binary_outputs.get(o.name, binary_outputs.get(codec.PREDICT, False)):
            raw = codec.to_raw(o)
            params["binary_data_size"] = len(raw)
            chunks.append(raw)
        else:
            entry["data"] = codec.to_list(o)
        if params:
            entry["parameters"] = params
        rendered.append(entry)
    body["outputs"] = rendered
    if not chunks:
        return JSONResponse(body)
    header = json.dumps(body).encode()
    return Response(header + b"".join(chunks), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})


def v2_app() -> Starlette:
    """Mounted at /v2; `app.state.dataplane` is set by the service when a worker starts."""
    return Starlette(routes=[
        Route("/", server_metadata, methods=["GET"]),
        Route("/models", repository_index, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/models/{name}", model_metadata, methods=["GET"]),
        Route("/models/{name}/versions/{version}", model_metadata, methods=["GET"]),
        Route("/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/models/{name}/infer", infer, methods=["POST"]),
        Route("/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    ], exception_handlers=http.exception_handlers(_status))
