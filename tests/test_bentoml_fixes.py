"""riskserve.bentoml_fixes: each fix does its job, and a canary per fix runs BentoML's original
code and fails once upstream behaves differently (then the fix can probably go: re-check it).
In process, no server."""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any

import pytest
from _bentoml_impl.server.app import ServiceAppFactory
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from bentoml.exceptions import BentoMLException
from starlette.background import BackgroundTasks
from starlette.exceptions import HTTPException

from riskserve import bentoml_fixes
from riskserve.errors import InvalidInput


async def _ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _pending_timers_after_one_request(call: Any) -> int:
    loop = asyncio.get_running_loop()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    middleware = TimeoutMiddleware(_ok_app, timeout=3600)
    await call(middleware, {"type": "http"}, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    return sum(1 for h in loop._scheduled if not h.cancelled() and h.when() > loop.time() + 60)


def test_canary_bentoml_timeout_middleware_still_leaks_its_timer() -> None:
    original = bentoml_fixes.original_of(TimeoutMiddleware, "__call__")
    pending = asyncio.run(_pending_timers_after_one_request(original))
    assert pending == 1, ("BentoML's TimeoutMiddleware now cancels its timer after answering: "
                          "the 'timeout-timer' fix in riskserve/bentoml_fixes.py can go")


def test_timeout_fix_cancels_the_timer() -> None:
    assert asyncio.run(_pending_timers_after_one_request(bentoml_fixes._timeout_call)) == 0


def _wrapper_answer(endpoint_error: Exception) -> tuple[int, Any]:
    """Run BentoML's original api_endpoint_wrapper around an endpoint raising `error`."""

    async def api_endpoint(name: str, request: Any) -> Any:
        raise endpoint_error

    ctx = SimpleNamespace(response=SimpleNamespace(background=BackgroundTasks()))
    fake = SimpleNamespace(api_endpoint=api_endpoint, _add_response_headers=lambda r: None,
                           service=SimpleNamespace(context=ctx))
    request = SimpleNamespace(close=lambda: None, url=SimpleNamespace(path="/v1/predict"),
                              method="POST", headers={})
    wrapper = bentoml_fixes.original_of(ServiceAppFactory, "api_endpoint_wrapper")
    logging.disable(logging.CRITICAL)  # BentoML logs the exception it catches
    try:
        resp = asyncio.run(wrapper(fake, "predict", request))
    finally:
        logging.disable(logging.NOTSET)
    return resp.status_code, json.loads(resp.body)


def test_canary_bentoml_renders_its_4xx_as_a_list() -> None:
    status, body = _wrapper_answer(BentoMLException("bad", error_code=HTTPStatus.BAD_REQUEST))
    assert status == 400
    assert isinstance(body, list), ("BentoML now renders 4xx errors as an object (PR #5709): "
                                    "drop that branch of the 'api-errors' fix")


def test_canary_bentoml_turns_form_parser_400_and_riskserve_errors_into_500() -> None:
    assert _wrapper_answer(HTTPException(400, "Invalid multipart data."))[0] == 500
    assert _wrapper_answer(InvalidInput("amount", "a number"))[0] == 500, (
        "BentoML now passes handler exceptions through: re-check the 'api-errors' fix")


def _fixed_endpoint_answer(error: Exception) -> tuple[int, Any]:
    bentoml_fixes.apply()

    async def original(self: Any, name: str, request: Any) -> Any:
        raise error

    saved = bentoml_fixes._originals.get((ServiceAppFactory, "api_endpoint"))
    bentoml_fixes._originals[(ServiceAppFactory, "api_endpoint")] = original
    try:
        bentoml_fixes._endpoint_fix()
        resp = asyncio.run(ServiceAppFactory.api_endpoint(SimpleNamespace(), "predict", None))
    finally:
        if saved is not None:
            bentoml_fixes._originals[(ServiceAppFactory, "api_endpoint")] = saved
        bentoml_fixes._endpoint_fix()
    return resp.status_code, json.loads(resp.body)


@pytest.mark.parametrize(("error", "status", "field"), [
    (InvalidInput("amount", "a number"), 422, "amount"),
    (HTTPException(400, "Invalid multipart data."), 400, "body"),
    (BentoMLException("bad", error_code=HTTPStatus.NOT_FOUND), 404, None),
])
def test_endpoint_fix_renders_one_json_object(error: Exception, status: int,
                                              field: str | None) -> None:
    got_status, body = _fixed_endpoint_answer(error)
    assert got_status == status and isinstance(body, dict) and body["error"]
    if field:
        assert body["detail"]["field"] == field


def test_outside_the_version_range_nothing_is_applied(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="riskserve.bentoml_fixes"):
        assert bentoml_fixes.apply("1.5.0") == []
    assert len(caplog.records) == 1 and "1.5.0" in caplog.text
    assert bentoml_fixes.bentoml_version() in bentoml_fixes.WRITTEN_FOR


def test_every_fix_names_what_it_tracks() -> None:
    for fix in (*bentoml_fixes.FIXES, bentoml_fixes.SOCKET_FIX):
        assert fix.tracks and fix.install.__doc__


def test_canary_bentoml_index_page_still_loads_a_tracker() -> None:
    from pathlib import Path

    import _bentoml_impl.server as server

    page = (Path(server.__file__).parent / "main-openapi.html").read_text()
    assert "googletagmanager" in page, ("BentoML's Swagger page no longer loads Google Tag "
                                        "Manager: the index part of the 'openapi' fix can go")


class _Svc:
    """A plain object standing in for a service instance (APIMethod only needs the attribute)."""


def _api_method() -> Any:
    from _bentoml_sdk.method import APIMethod

    def predict(self: Any, x: int) -> int:
        return x * 2

    return APIMethod(func=predict)


def test_canary_bentoml_rebuilds_the_api_wrapper_on_every_request() -> None:
    from _bentoml_sdk.method import APIMethod

    original = bentoml_fixes.original_of(APIMethod, "_local_call")
    method, svc = _api_method(), _Svc()
    assert original(method, svc) is not original(method, svc), (
        "BentoML now builds an API method's local caller once: the 'api-method-per-request' "
        "fix in riskserve/bentoml_fixes.py can go")


def test_api_method_fix_builds_the_wrapper_once_per_instance() -> None:
    method, svc, other = _api_method(), _Svc(), _Svc()
    first = bentoml_fixes._cached_local_call(method, svc)
    assert bentoml_fixes._cached_local_call(method, svc) is first
    assert first(21) == 42  # still calls the method on its instance
    assert bentoml_fixes._cached_local_call(method, other) is not first


def test_canary_bentoml_still_shares_one_http_socket_between_workers() -> None:
    import inspect

    from _bentoml_impl.server import serving

    source = inspect.getsource(serving.serve_http)
    assert "API_SERVER_NAME" in source and serving.API_SERVER_NAME == bentoml_fixes.API_SOCKET
    assert "so_reuseport" not in source, (
        "BentoML now asks circus for SO_REUSEPORT sockets: the 'socket-per-worker' fix in "
        "riskserve/bentoml_fixes.py can probably go")


@pytest.mark.skipif(__import__("sys").platform != "linux", reason="SO_REUSEPORT is Linux's")
def test_socket_fix_gives_each_worker_its_own_socket_on_one_port() -> None:
    import socket

    from circus.sockets import CircusSocket

    assert "socket-per-worker" not in bentoml_fixes.apply(workers=1)
    bentoml_fixes.apply(workers=2)
    assert "socket-per-worker" in bentoml_fixes._applied
    api = CircusSocket(name=bentoml_fixes.API_SOCKET, host="127.0.0.1", port=0,
                       family=socket.AF_INET, backlog=16)
    other = CircusSocket(name="_bento_other", host="127.0.0.1", port=0)
    assert api.so_reuseport and not other.so_reuseport
    # What circus does per worker (Process._get_sockets_fds): a new socket from the config,
    # bound to the same port as the others.
    first = CircusSocket.load_from_config(api._cfg)
    first.bind_and_listen()
    second = CircusSocket.load_from_config({**api._cfg, "port": first.port})
    try:
        second.bind_and_listen()
        assert second.port == first.port and second.fileno() != first.fileno()
        assert second.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    finally:
        for s in (api, other, first, second):
            s.close()


def test_endpoint_fix_names_the_first_field_pydantic_refused() -> None:
    from pydantic import BaseModel, ValidationError

    class Body(BaseModel):
        model: str
        inputs: list[dict[str, float]]

    try:
        Body.model_validate({"model": "fraud", "inputs": [{"amount": "lots"}], "x": 1})
    except ValidationError as exc:
        status, body = _fixed_endpoint_answer(exc)
    assert status == 400 and body["detail"]["field"] == "inputs[0].amount"
    assert body["error"].startswith("field 'inputs[0].amount': ")
    assert "lots" not in json.dumps(body)  # pydantic's input values are not echoed back
