"""Plain ASGI routes mounted into the BentoML service (BentoML's @api handles only POST)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from riskserve.errors import RiskserveError
from riskserve.v1.handlers import error_response


async def list_models(request: Request) -> JSONResponse:
    """GET /v1/models: every model with its production version, features and metrics."""
    return JSONResponse({"models": request.app.state.runtime.registry.describe()})


async def get_model(request: Request) -> JSONResponse:
    """GET /v1/models/{name}: one model's entry, 404 naming the known ones."""
    registry = request.app.state.runtime.registry
    try:
        registry.resolve(request.path_params["name"])
    except RiskserveError as exc:
        return error_response(exc)
    entry = next(m for m in registry.describe() if m["name"] == request.path_params["name"])
    return JSONResponse(entry)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404/405 (e.g. a model name containing '/') as riskserve's JSON error."""
    status = getattr(exc, "status_code", 404)
    return JSONResponse({"error": f"no route {request.method} {request.url.path}",
                         "detail": {"field": "path"}}, status_code=status)


def v1_app() -> Starlette:
    """Mounted at /v1; `app.state.runtime` is set by the service when a worker starts."""
    app = Starlette(routes=[
        Route("/models", list_models, methods=["GET"]),
        # `path`: a name with '/' is still this route, so it gets the JSON 404 listing models.
        Route("/models/{name:path}", get_model, methods=["GET"]),
    ], exception_handlers={404: _http_error, 405: _http_error})
    app.router.redirect_slashes = False  # a trailing slash is a 404, not a redirect
    return app
