"""Request limits: body size (413, JSON) and a fix to BentoML's request timeout middleware.

Content-Length is checked up front; chunked uploads without it are counted as they stream and
cut off at the limit, so an oversized body never reaches the JSON or multipart parser.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any

CSV_PATH = "/v1/predict_csv"


def _body(limit: int) -> bytes:
    return json.dumps({
        "error": f"request body too large: the limit is {limit} bytes",
        "detail": {"limit_bytes": limit},
    }).encode()


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes` (`csv_max_bytes` on the CSV upload route)."""

    def __init__(self, app: Any, max_bytes: int, csv_max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.csv_max_bytes = csv_max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        limit = self.csv_max_bytes if scope["path"] == CSV_PATH else self.max_bytes
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _reject(send, limit)
                    return
        seen = 0
        started = rejected = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit and not started:
                    # Answer now and tell the app the client went away, so it stops parsing;
                    # anything the app still tries to send is dropped below.
                    rejected = True
                    await _reject(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


async def _reject(send: Any, limit: int) -> None:
    body = _body(limit)
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def _timeout_call(self: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """BentoML 1.4's TimeoutMiddleware.__call__, with its timer cancelled when it is done.

    The original arms `loop.call_later(timeout, ...)` per request and never cancels it, so
    every request's timer handle (with its future, its contextvars context and the request's
    OpenTelemetry span) stays alive for the whole timeout (RISKSERVE_REQUEST_TIMEOUT_S, 60 s)
    after the answer went out: at 700 req/s that is ~40,000 live spans per worker, and the
    cyclic GC's full collections over them paused the worker for 200-300 ms (the p99 of every
    HTTP route). Same behaviour otherwise: 504 if nothing was sent within the timeout.
    """
    if scope["type"] not in ("http", "websocket"):
        await self.app(scope, receive, send)
        return
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    # An empty context: the timer must not keep the request's context (and its span) alive.
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter,
                            context=contextvars.Context())

    async def _send(message: dict[str, Any]) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    try:
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                from starlette.responses import JSONResponse

                resp = JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"},
                    status_code=504)
                await resp(scope, receive, send)
        else:
            timer.cancel()
            await fut  # the response has started: let it finish
    finally:
        timer.cancel()


def fix_bentoml_timeout_middleware() -> bool:
    """Replace BentoML's TimeoutMiddleware.__call__ with `_timeout_call` (idempotent).

    Runs when this module is imported, which service.py does before BentoML builds a worker's
    ASGI app. Only BentoML's known shape is patched (it has `_set_timer_out`); anything else
    is left alone. Remove once BentoML cancels the timer itself.
    """
    try:
        from bentoml._internal.server.http import traffic
    except ImportError:  # BentoML not installed (training-only environments)
        return False
    cls: Any = traffic.TimeoutMiddleware
    if getattr(cls, "_riskserve_fixed", False) or not hasattr(cls, "_set_timer_out"):
        return False
    cls.__call__ = _timeout_call
    cls._riskserve_fixed = True
    return True


fix_bentoml_timeout_middleware()
