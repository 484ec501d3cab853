"""riskserve: one BentoML service hosting every model, routed by name, behind API keys.

Each model is its own class attribute (BentoML packs only models declared that way), pinned to
the production version the model store names at import time. The behaviour lives in the
`riskserve` package; this file only declares the service and its endpoints.
"""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.models import BentoModel
from bentoml.validators import ContentType

from riskserve.auth import APIKeyMiddleware, require_keys
from riskserve.core import store
from riskserve.core.specs import KEYSTROKE_BY_SEED_NAME, MODEL_NAMES
from riskserve.errors import ConfigurationError
from riskserve.limits import BodyLimitMiddleware
from riskserve.metrics import count_http_auth_failure
from riskserve.oip import grpc_server
from riskserve.oip.rest import V2RootAlias, v2_app
from riskserve.runtime import Runtime
from riskserve.settings import get_settings
from riskserve.v1 import handlers as api
from riskserve.v1.app import v1_app
from riskserve.v1.schemas import PredictResponse, SeedModel, Timing

settings = get_settings()
models_v1 = v1_app()
models_v2 = v2_app()


def production(name: str) -> BentoModel:
    """The model store's production version of `name`, as a packable BentoModel."""
    try:
        return BentoModel(f"{name}:{store.production_version(name)}")
    except ConfigurationError as exc:  # an empty store: say what to run, not a traceback
        raise SystemExit(f"riskserve: {exc.message}") from None


def attribute(name: str) -> str:
    """Class attribute holding a public model name (`risk-flag` -> `risk_flag`)."""
    return name.replace("-", "_")


@bentoml.asgi_app(models_v1, path="/v1")
@bentoml.asgi_app(models_v2, path="/v2")
@bentoml.service(
    name="riskserve",
    workers=settings.workers,
    traffic={"timeout": settings.request_timeout_s, "max_concurrency": settings.max_concurrency},
    # An OpenTelemetry span per prediction cost ~0.25 ms CPU per request (+24% req/s on fraud
    # /v1 without it); nothing exports spans here. Probes and the rest keep theirs.
    tracing={"excluded_urls": "v1/predict,v1/keystroke,v1/predict_csv,v2/models"},
)
class RiskServe:
    """Scores every riskserve model over HTTP (/v1 JSON and CSV, /v2 Open Inference Protocol)
    and gRPC (Open Inference Protocol, started by each worker on the shared gRPC port)."""

    cyber_threat = production("cyber-threat")
    phishing = production("phishing")
    keystroke_svm = production("keystroke-svm")
    keystroke_rf = production("keystroke-rf")
    keystroke_xgb = production("keystroke-xgb")
    risk_flag = production("risk-flag")
    fraud = production("fraud")

    @bentoml.on_deployment
    def check_configuration() -> None:
        """Fail before any worker starts when no API keys are configured (fail-secure)."""
        try:
            require_keys(get_settings())
        except ConfigurationError as exc:
            raise SystemExit(f"riskserve: {exc.message}") from None

    def __init__(self) -> None:
        stored = {name: getattr(self, attribute(name)) for name in MODEL_NAMES}
        self.rt = Runtime.create(stored, settings)
        models_v1.state.runtime = self.rt
        models_v2.state.runtime = self.rt
        self.grpc: grpc_server.OIPServer | None = None

    @bentoml.on_startup
    async def start_grpc(self) -> None:
        """Serve gRPC from this worker's event loop; every worker binds the same port."""
        self.grpc = await grpc_server.serve(self.rt, settings.grpc_host, settings.grpc_port)

    @bentoml.on_shutdown
    async def stop_grpc(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop()

    @bentoml.api(route="/v1/predict")
    async def predict(self, model: str, inputs: list[dict[str, Any]],
                      version: str | None = None) -> PredictResponse:
        """Score rows (`[{feature: value}]`) with a model; `version` defaults to production."""
        return await api.guarded(self.rt, model, api.predict_rows(self.rt, model, version, inputs))

    @bentoml.api(route="/v1/predict_csv")
    async def predict_csv(self, file: Path, model: str, version: str | None = None
                          ) -> Annotated[Path, ContentType("text/csv")]:
        """Score a CSV upload (multipart `file` + `model`); returns the CSV plus predictions."""
        return await api.guarded(self.rt, model, api.predict_csv(self.rt, file, model, version))

    @bentoml.api(route="/v1/keystroke")
    async def keystroke(  # parameter names are the seed API's JSON fields
        self, Model: SeedModel, HT: Timing, PPT: Timing, RRT: Timing, RPT: Timing
    ) -> dict[str, Any]:
        """The Threat Fabric seed payload: timing stats in, `{"UserID": ...}` out."""
        timings = {"HT": HT, "PPT": PPT, "RRT": RRT, "RPT": RPT}
        work = api.keystroke(self.rt, Model, timings)
        return await api.guarded(self.rt, KEYSTROKE_BY_SEED_NAME[Model], work)


RiskServe.add_asgi_middleware(V2RootAlias)
RiskServe.add_asgi_middleware(BodyLimitMiddleware, max_bytes=settings.max_payload_bytes,
                              csv_max_bytes=settings.csv_max_bytes)
RiskServe.add_asgi_middleware(APIKeyMiddleware, settings=settings,
                              on_failure=count_http_auth_failure)
