"""Open Inference Protocol v2 REST routes, mounted at /v2 inside the BentoML service.

Health, server and model metadata, model readiness and inference, per the KServe v2 REST
definition, plus Triton's binary tensor data extension (the default of tritonclient.http).
Authentication is the service's HTTP middleware (health stays open, see riskserve.auth);
errors follow the protocol's `{"error": "..."}` body (with riskserve's `detail`), 400 for
bad input.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from riskserve.errors import BadRequest, RiskserveError
from riskserve.oip import codec
from riskserve.oip.codec import Tensor
from riskserve.runtime import Runtime
from riskserve.v1 import handlers as api

logger = logging.getLogger("riskserve.oip.rest")

HEADER_LENGTH = "inference-header-content-length"


def _status(exc: RiskserveError) -> int:
    # The protocol reports failed requests as 400; /v1 uses 422 for contract violations.
    return 400 if exc.status == 422 else exc.status


def _error(exc: RiskserveError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=_status(exc))


async def _guarded(rt: Runtime, model: str, work: Awaitable[Response]) -> Response:
    """The /v1 guard (metrics, no stack traces) with the protocol's 400 for bad input."""
    return await api.guarded(rt, model, work, render=_error)


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def live(request: Request) -> Response:
    """GET /v2/health/live: 200 while the worker answers (body empty, as the protocol says)."""
    return Response(status_code=200)


async def ready(request: Request) -> Response:
    """GET /v2/health/ready: 200 once every production model is loaded in this worker."""
    runtime = getattr(request.app.state, "runtime", None)
    return Response(status_code=200 if runtime is not None and runtime.registry.names else 503)


async def server_metadata(request: Request) -> JSONResponse:
    """GET /v2: server name, version and extensions."""
    return JSONResponse({"name": codec.SERVER_NAME, "version": codec.server_version(),
                         "extensions": list(codec.EXTENSIONS)})


async def model_metadata(request: Request) -> Response:
    """GET /v2/models/{name}[/versions/{version}]: inputs, outputs, versions, platform."""
    try:
        model = _runtime(request).registry.resolve(request.path_params["name"],
                                                   request.path_params.get("version"))
    except RiskserveError as exc:
        return _error(exc)
    versions = await run_in_threadpool(codec.available_versions, model)
    return JSONResponse(codec.model_metadata(model, versions))


async def model_ready(request: Request) -> Response:
    """GET /v2/models/{name}[/versions/{version}]/ready: 200 when loaded, 404 if unknown."""
    try:
        _runtime(request).registry.resolve(request.path_params["name"],
                                           request.path_params.get("version"))
    except RiskserveError as exc:
        return _error(exc)
    return Response(status_code=200)


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


async def _infer(rt: Runtime, request: Request, name: str, version: str | None) -> Response:
    model = rt.registry.resolve(name, version)
    if request.headers.get("content-encoding", "identity") != "identity":
        raise BadRequest("compressed request bodies are not supported; send identity encoding",
                         {"field": "Content-Encoding"})
    payload, binary = _split_body(await request.body(), request.headers.get(HEADER_LENGTH))
    doc = _parse_json(payload)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string", {"field": "id"})
    names, binary_outputs = _requested(doc)
    selected = codec.select_outputs(model, names)
    tensors = _tensors(doc, binary)
    rows = codec.check_tensors(model.spec, tensors)
    api.check_rows(rt, rows)
    columns = codec.to_columns(model.spec, tensors, rows)
    pred = await api.score(rt, model, columns, rows, "http")

    body: dict[str, Any] = {"model_name": model.spec.name, "model_version": model.version}
    if request_id is not None:
        body["id"] = request_id
    chunks: list[bytes] = []
    rendered = []
    for o in codec.outputs(model, pred, selected):
        entry: dict[str, Any] = {"name": o.name, "datatype": o.datatype, "shape": o.shape}
        params: dict[str, Any] = dict(o.parameters)
        if binary_outputs[o.name]:
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


async def infer(request: Request) -> Response:
    """POST /v2/models/{name}[/versions/{version}]/infer."""
    rt = _runtime(request)
    name = request.path_params["name"]
    return await _guarded(rt, name, _infer(rt, request, name, request.path_params.get("version")))


def v2_app() -> Starlette:
    """Mounted at /v2; `app.state.runtime` is set by the service when a worker starts."""
    return Starlette(routes=[
        Route("/", server_metadata, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/models/{name}", model_metadata, methods=["GET"]),
        Route("/models/{name}/versions/{version}", model_metadata, methods=["GET"]),
        Route("/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/models/{name}/infer", infer, methods=["POST"]),
        Route("/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    ])


class V2RootAlias:
    """ASGI middleware: serve `GET /v2` (server metadata) without a redirect.

    The /v2 mount only matches paths below it, so Starlette would answer `/v2` with a 307 to
    `/v2/`, which tritonclient does not follow. Rewriting the one path keeps the mount intact.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/v2":
            scope = {**scope, "path": "/v2/", "raw_path": b"/v2/"}
        await self.app(scope, receive, send)
