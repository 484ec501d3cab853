"""The one way an HTTP error answer is rendered: a RiskserveError as `{"error", "detail"}` JSON.

The /v1 and /v2 Starlette apps register `exception_handlers()`, the BentoML-built app renders
through `error_response` (riskserve.bentoml_fixes), and the ASGI middlewares (auth, limits) call
`send_error`, so status, body and headers (Retry-After, WWW-Authenticate) never differ by route.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from riskserve.errors import InternalError, RateLimited, RiskserveError, Unauthorized

logger = logging.getLogger("riskserve.http")


def _headers(exc: RiskserveError) -> dict[str, str]:
    if isinstance(exc, RateLimited):
        return {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))}
    if isinstance(exc, Unauthorized):
        return {"www-authenticate": 'Bearer realm="riskserve"'}
    return {}


def error_response(exc: RiskserveError, status: int | None = None) -> JSONResponse:
    """The answer for `exc`; `status` overrides its HTTP status (the OIP's 400 for 422)."""
    return JSONResponse(exc.to_dict(), status_code=status or exc.status, headers=_headers(exc))


async def send_error(send: Any, exc: RiskserveError, close: bool = False) -> None:
    """Render `exc` straight onto an ASGI `send` (for middlewares, which run before any app)."""
    response = error_response(exc)
    if close:
        response.headers["connection"] = "close"
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> dict[str, Any]:  # pragma: no cover - responses never read
    return {"type": "http.disconnect"}


def exception_handlers(status: Callable[[RiskserveError], int] = lambda e: e.status
                       ) -> dict[Any, Callable[..., Any]]:
    """Starlette exception handlers: riskserve errors with their status (or `status(exc)`),
    Starlette's own 404/405 as riskserve's JSON, anything else a logged generic 500."""

    async def riskserve_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RiskserveError)
        return error_response(exc, status(exc))

    async def no_route(request: Request, exc: Exception) -> JSONResponse:
        code = getattr(exc, "status_code", 404)
        err = RiskserveError(f"no route {request.method} {request.url.path}", {"field": "path"})
        return error_response(err, code)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error on %s %s", request.method, request.url.path,
                     exc_info=exc)
        return error_response(InternalError())

    return {RiskserveError: riskserve_error, 404: no_route, 405: no_route, Exception: unexpected}


class MountPaths:
    """ASGI middleware for the paths Starlette's mounts of the /v1 and /v2 apps get wrong.

    - `GET /v2` (server metadata): the /v2 mount only matches paths below it, so Starlette
      would answer a 307 to `/v2/`, which tritonclient does not follow; the one path is
      rewritten instead.
    - A newline in a path under a mount (a model name with `%0A`): a Mount's `.*` does not
      match a newline, so the request fell through to the outer app's plain-text 404; it gets
      riskserve's JSON 404 here, like any other unknown route.
    """

    def __init__(self, app: Any, prefixes: tuple[str, ...] = ("/v1/", "/v2/")) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/v2":
                scope = {**scope, "path": "/v2/", "raw_path": b"/v2/"}
            elif "\n" in path and path.startswith(self.prefixes):
                err = RiskserveError(f"no route {scope['method']} {path!r}", {"field": "path"})
                await error_response(err, 404)(scope, receive, send)
                return
        await self.app(scope, receive, send)
