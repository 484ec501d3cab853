"""The /v1 routes BentoML's @bentoml.api cannot declare (it handles only POST): the listings.

Mounted at /v1 by service.py; `app.state.dataplane` is set when a worker starts. Errors are
raised as RiskserveError and rendered by the app's exception handlers (riskserve.http).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from riskserve import auth, http
from riskserve.dataplane import Call, DataPlane


def _dp(request: Request) -> DataPlane:
    return request.app.state.dataplane


async def list_models(request: Request) -> JSONResponse:
    """GET /v1/models: every model the key may use, with version, runtime, features, metrics."""
    return JSONResponse({"models": _dp(request).models(auth.caller_of_scope(request.scope))})


async def get_model(request: Request) -> JSONResponse:
    """GET /v1/models/{name}: one model's entry; 404 naming the known ones, 403 off scope."""
    dp = _dp(request)
    model = dp.model(Call(request.path_params["name"], None, auth.caller_of_scope(request.scope)))
    return JSONResponse(dp.registry.describe([model.spec.name])[0])


def v1_app() -> Starlette:
    """The /v1 listing routes; a name with '/' still reaches get_model (a JSON 404)."""
    app = Starlette(routes=[
        Route("/models", list_models, methods=["GET"]),
        Route("/models/{name:path}", get_model, methods=["GET"]),
    ], exception_handlers=http.exception_handlers())
    app.router.redirect_slashes = False  # a trailing slash is a 404, not a redirect
    return app
