"""Plain ASGI routes mounted into the BentoML service (BentoML's @api handles only POST)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from riskserve.api import error_response
from riskserve.errors import RiskserveError


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


def v1_app() -> Starlette:
    """Mounted at /v1; `app.state.runtime` is set by the service when a worker starts."""
    return Starlette(routes=[
        Route("/models", list_models, methods=["GET"]),
        Route("/models/{name}", get_model, methods=["GET"]),
    ])
