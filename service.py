"""riskserve: one BentoML service hosting every model, routed by name, behind API keys.

Each model is its own class attribute (BentoML packs only models declared that way), pinned to
the production version the model store names at import time, and so is each model's shadow
candidate when the store names one. Every endpoint is a codec over one data plane
(riskserve/dataplane.py): /v1 here and in riskserve/v1, /v2 REST and gRPC in riskserve/oip.
"""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import asyncio
import gc
import importlib.util
import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.models import BentoModel
from bentoml.validators import ContentType

from riskserve import auth, bentoml_fixes, http, lifecycle
from riskserve.core import candidates, compiled, store
from riskserve.core.specs import MODEL_NAMES
from riskserve.dataplane import Call, DataPlane
from riskserve.errors import ConfigurationError
from riskserve.limits import BodyLimitMiddleware
from riskserve.oip import grpc_server
from riskserve.oip.rest import v2_app
from riskserve.settings import get_settings
from riskserve.v1 import handlers as v1
from riskserve.v1.app import v1_app
from riskserve.v1.schemas import PredictResponse, SeedModel, Timing


def _one_line(exc: ConfigurationError) -> SystemExit:
    """A configuration problem (empty store, corrupt model, no keys, a RISKSERVE_* value that
    does not parse) is one line, no traceback."""
    return SystemExit(f"riskserve: {exc.message}")


try:
    settings = get_settings()
except ConfigurationError as exc:
    raise _one_line(exc) from None
logging.getLogger("riskserve").setLevel(settings.log_level.upper())
logger = logging.getLogger("riskserve.service")
models_v1 = v1_app()
models_v2 = v2_app()


# The versions declared below, per model: recorded for `bentoml build` (riskserve/release.json),
# so that a packed Bento knows its production version from its shadow candidate.
DECLARED: dict[str, dict[str, str | None]] = {}


def production(name: str) -> BentoModel:
    """The model store's production version of `name`, as a packable BentoModel."""
    try:
        version = store.production_version(name)
    except ConfigurationError as exc:
        raise _one_line(exc) from None
    DECLARED[name] = {"production": version, "shadow": None}
    return BentoModel(f"{name}:{version}")


def shadow(name: str) -> BentoModel | None:
    """The model's shadow candidate (`python -m training shadow`), or None."""
    version = candidates.shadow_version(name)
    DECLARED[name]["shadow"] = version
    return None if version is None else BentoModel(f"{name}:{version}")


def attribute(name: str) -> str:
    """Class attribute holding a public model name (`risk-flag` -> `risk_flag`)."""
    return name.replace("-", "_")


def caller(ctx: bentoml.Context) -> auth.Caller:
    """The key behind an @bentoml.api request (set by the auth middleware)."""
    return auth.caller_of_scope(ctx.request.scope)


def _import_natives(adapters: list[Any]) -> None:
    """The background import of tune_worker; its log line tells the bench the worker is warm.

    The imported libraries (xgboost, scikit-learn: ~200k objects) are frozen too, as
    tune_worker froze everything before them: left to the cyclic GC, its full collections
    rescanned them and the p99 of /v1 at 32 clients went from ~20 to ~45 ms.
    """
    t0 = time.perf_counter()
    # pandas too (CSV parsing, validating batches above 64 rows): riskserve imports it where it
    # is used, so that it is not part of every process's start (~0.45 s, twice in series).
    importlib.import_module("pandas")
    modules = ["pandas", *compiled.import_natives(adapters)]
    if modules:
        gc.collect()
        gc.freeze()
    logger.info("%s: %s in %.1f s", compiled.NATIVES_IMPORTED, ", ".join(modules) or "none needed",
                time.perf_counter() - t0)


@bentoml.asgi_app(models_v1, path="/v1")
@bentoml.asgi_app(models_v2, path="/v2")
@bentoml.service(
    name="riskserve",
    workers=settings.workers,
    traffic={"timeout": settings.request_timeout_s, "max_concurrency": settings.max_concurrency},
    # An OpenTelemetry span per prediction cost ~0.25 ms CPU per request (+24% req/s on fraud
    # /v1 without it); nothing exports spans here. Probes and the rest keep theirs.
    tracing={"excluded_urls": "v1/predict,v1/keystroke,v1/predict_csv,v1/explain,v1/feedback,"
                              "v2/models"},
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
    # Shadow candidates (None when the store names none): declared here so `bentoml build`
    # packs them and the image can shadow them too.
    cyber_threat_shadow = shadow("cyber-threat")
    phishing_shadow = shadow("phishing")
    keystroke_svm_shadow = shadow("keystroke-svm")
    keystroke_rf_shadow = shadow("keystroke-rf")
    keystroke_xgb_shadow = shadow("keystroke-xgb")
    risk_flag_shadow = shadow("risk-flag")
    fraud_shadow = shadow("fraud")

    @bentoml.on_deployment
    def check_configuration() -> None:
        """Fail before any worker starts without API keys (fail-secure) or with a model that
        cannot load: in a worker the error would only end that worker, which BentoML respawns."""
        try:
            auth.require_keys(get_settings())
            lifecycle.check_models_load(MODEL_NAMES)
        except ConfigurationError as exc:
            raise _one_line(exc) from None

    def __init__(self) -> None:
        stored = {name: getattr(self, attribute(name)) for name in MODEL_NAMES}
        shadows = {name: m for name in MODEL_NAMES
                   if (m := getattr(self, f"{attribute(name)}_shadow")) is not None}
        try:
            self.dp = DataPlane.create(stored, settings, shadows)
        except ConfigurationError as exc:  # a corrupt or unreadable model file
            raise _one_line(exc) from None
        keys = auth.require_keys(settings)  # the process's shared ring (None: auth disabled)
        self.dp.metrics.known_keys(keys.names if keys is not None else [auth.ANONYMOUS.name])
        models_v1.state.dataplane = self.dp
        models_v2.state.dataplane = self.dp
        self.grpc: grpc_server.OIPServer | None = None

    @bentoml.on_startup
    async def start_grpc(self) -> None:
        """Serve gRPC from this worker's event loop; every worker binds the same port."""
        self.grpc = await grpc_server.serve(self.dp, settings.grpc_host, settings.grpc_port)
        # On SIGTERM the gRPC health service reports NOT_SERVING with /readyz, before draining.
        lifecycle.DRAIN.on_drain(self.grpc.health.enter_graceful_shutdown)

    @bentoml.on_startup
    async def tune_worker(self) -> None:
        """Log the event loop and HTTP parser in use, then freeze what lives as long as the
        worker: frozen, the cyclic GC stops rescanning the ~240k objects built by now
        (libraries, models, metric children) on every full collection; under load those
        collections paused a worker for 100-250 ms each, the p99 of every route."""
        loop = type(asyncio.get_running_loop())
        http_parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
        logger.info("riskserve worker %d: event loop %s.%s, HTTP parser %s", os.getpid(),
                    loop.__module__, loop.__name__, http_parser)
        gc.collect()
        gc.freeze()
        # After start, not before: readiness does not wait for the native libraries of
        # ONNX-served versions, and their first large batch does not either.
        reg = self.dp.registry
        adapters = [m.adapter for m in (*reg.production.values(), *reg.candidates.values())]
        threading.Thread(target=_import_natives, args=(adapters,), name="rs-import-natives",
                         daemon=True).start()

    @bentoml.on_shutdown
    async def stop_grpc(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop()

    @bentoml.api(route="/v1/predict")
    async def predict(self, model: str, inputs: list[dict[str, Any]], ctx: bentoml.Context,
                      version: str | None = None) -> PredictResponse:
        """Score rows (`[{feature: value}]`) with a model; `version` defaults to production."""
        return await v1.predict(self.dp, Call(model, version, caller(ctx)), inputs)

    @bentoml.api(route="/v1/explain")
    async def explain(self, model: str, inputs: list[dict[str, Any]], ctx: bentoml.Context,
                      version: str | None = None, top: int | None = None) -> dict[str, Any]:
        """`/v1/predict` plus, per row, exact contributions and the `top` reasons (default 3)."""
        return await v1.explain(self.dp, Call(model, version, caller(ctx)), inputs, top)

    @bentoml.api(route="/v1/feedback")
    async def feedback(self, model: str, outcomes: list[dict[str, Any]], ctx: bentoml.Context,
                       version: str | None = None) -> dict[str, Any]:
        """Ground truth: `[{"predicted", "actual"}]` for served rows; counted, not stored."""
        return await v1.feedback(self.dp, Call(model, version, caller(ctx)), outcomes)

    @bentoml.api(route="/v1/predict_csv")
    async def predict_csv(self, file: Path, model: str, ctx: bentoml.Context,
                          version: str | None = None, explain: bool = False
                          ) -> Annotated[Path, ContentType("text/csv")]:
        """Score a CSV upload (multipart `file` + `model`); returns the CSV plus predictions
        (`explain=true`: plus reason_1..3)."""
        return await v1.predict_csv(self.dp, Call(model, version, caller(ctx)), file, explain)

    @bentoml.api(route="/v1/keystroke")
    async def keystroke(  # parameter names are the seed API's JSON fields
        self, Model: SeedModel, HT: Timing, PPT: Timing, RRT: Timing, RPT: Timing,
        ctx: bentoml.Context,
    ) -> dict[str, Any]:
        """The Threat Fabric seed payload: timing stats in, `{"UserID": ...}` out."""
        call = v1.seed_call(Model, Call(None, None, caller(ctx)))
        return await v1.keystroke(self.dp, call, {"HT": HT, "PPT": PPT, "RRT": RRT, "RPT": RPT})


store.write_release(DECLARED)
bentoml_fixes.apply(workers=settings.workers)
RiskServe.add_asgi_middleware(lifecycle.DrainMiddleware, delay_s=settings.drain_delay_s)
RiskServe.add_asgi_middleware(http.MountPaths)
RiskServe.add_asgi_middleware(BodyLimitMiddleware, max_bytes=settings.max_payload_bytes,
                              csv_max_bytes=settings.csv_max_bytes)
RiskServe.add_asgi_middleware(auth.APIKeyMiddleware, settings=settings)
