"""The /v1 HTTP API's behaviour, kept out of service.py so that file stays a thin declaration.

Every handler validates against the model contract, scores through the registry's batchers and
renders `RiskserveError`s as JSON with their status; anything unexpected is logged and answered
with a generic 500 that carries no stack trace.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from starlette.responses import JSONResponse, Response, StreamingResponse

from riskserve.core import validation
from riskserve.core.scoring import Prediction, ScoringModel
from riskserve.core.specs import KEYSTROKE_BY_SEED_NAME
from riskserve.errors import BadRequest, InvalidInput, PayloadTooLarge, RiskserveError
from riskserve.runtime import Runtime
from riskserve.settings import Settings
from riskserve.v1.schemas import PredictResponse

logger = logging.getLogger("riskserve.v1.handlers")


def error_response(exc: RiskserveError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


async def guarded(rt: Runtime, model: str | None, work: Awaitable[Any],
                  render: Callable[[RiskserveError], Response] = error_response) -> Any:
    """Await an HTTP handler: count the request and it in flight, render riskserve errors with
    `render` (JSON with their status), and hide anything unexpected behind a logged 500 that
    carries no stack trace."""
    rt.metrics.in_flight.inc()
    rt.metrics.request(model, "http")
    try:
        return await work
    except RiskserveError as exc:
        rt.metrics.error(model, exc.reason)
        return render(exc)
    except Exception:
        logger.exception("unexpected error while serving model %r", model)
        rt.metrics.error(model, "internal")
        return JSONResponse({"error": "internal error; the server log has the details"},
                            status_code=500)
    finally:
        rt.metrics.in_flight.dec()


def render(model: ScoringModel, pred: Prediction) -> PredictResponse:
    """The response object, built without re-validating what the model just produced."""
    return PredictResponse.model_construct(
        model=model.spec.name,
        version=model.version,
        predictions=pred.predictions.tolist(),
        probabilities=None if pred.probabilities is None else pred.probabilities.tolist(),
        classes=None if pred.probabilities is None else list(model.classes),
    )


def check_rows(rt: Runtime, rows: int) -> None:
    if rows > rt.settings.max_rows:
        raise PayloadTooLarge(f"{rows} rows in one request; the limit is "
                              f"{rt.settings.max_rows} (use /v1/predict_csv for files)",
                              {"field": "inputs", "limit_rows": rt.settings.max_rows})


async def score(rt: Runtime, model: ScoringModel, columns: Mapping[str, np.ndarray], rows: int,
                protocol: str) -> Prediction:
    """Score validated columns through the model's batcher and count the rows served.

    gRPC batches only grow while a model call runs off the event loop (riskserve.core.batching).
    """
    pred = await rt.registry.predict(model, columns, rows, inline=protocol != "grpc")
    rt.metrics.predictions(model, rows, protocol)
    return pred


async def predict_rows(rt: Runtime, name: str, version: str | None,
                       inputs: Sequence[Mapping[str, Any]]) -> PredictResponse:
    """POST /v1/predict: validate rows, score them (batched with concurrent requests)."""
    model = rt.registry.resolve(name, version)
    check_rows(rt, len(inputs))
    columns = validation.columns_from_records(model.spec, inputs)
    return render(model, await score(rt, model, columns, len(inputs), "http"))


async def keystroke(rt: Runtime, seed_model: str, timings: Mapping[str, Any]) -> dict[str, Any]:
    """POST /v1/keystroke: the seed project's payload, answered with {"UserID": ...}."""
    model = rt.registry.resolve(KEYSTROKE_BY_SEED_NAME[seed_model])
    row = {}
    for group in ("HT", "PPT", "RRT", "RPT"):
        row[f"{group.lower()}_mean"] = float(timings[group].Mean)
        row[f"{group.lower()}_std"] = float(timings[group].STD)
    columns = validation.columns_from_records(model.spec, [row])
    pred = await score(rt, model, columns, 1, "http")
    user = pred.predictions[0]
    return {"UserID": user.item() if hasattr(user, "item") else user}


def _prediction_columns(model: ScoringModel, pred: Prediction) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"prediction": pred.predictions}
    if pred.probabilities is not None:
        out["probability"] = (pred.probabilities[:, 1] if model.spec.task == "binary"
                              else pred.probabilities.max(axis=1))
    return out


def _chunks(path: Path, chunk_rows: int) -> pd.io.parsers.TextFileReader:
    try:
        return pd.read_csv(path, chunksize=chunk_rows, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise BadRequest("the CSV file is empty; send a header row and data rows",
                         {"field": "file"}) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the file is not a readable CSV: {exc}", {"field": "file"}) from None


async def predict_csv(rt: Runtime, path: Path, name: str, version: str | None
                      ) -> StreamingResponse:
    """POST /v1/predict_csv: validate the whole file, then stream it back with predictions.

    Validation reads the file once in chunks before the first byte is sent, so a bad row deep in
    a large file is still a clean 4xx naming the row, and memory stays bounded by the chunk size.
    """
    model = rt.registry.resolve(name, version)
    settings = rt.settings
    rows = await asyncio.to_thread(_validate_file, model, settings, path)

    async def stream() -> AsyncIterator[bytes]:
        offset = 0
        for chunk in _chunks(path, settings.csv_chunk_rows):
            columns = validation.columns_from_frame(model.spec, chunk, offset)
            # Big chunks gain nothing from batching with others: score them directly.
            pred = await asyncio.to_thread(rt.registry.score, model, columns)
            rt.metrics.predictions(model, len(chunk), "http")
            for col, values in _prediction_columns(model, pred).items():
                chunk[col] = values
            buf = io.StringIO()
            chunk.to_csv(buf, index=False, header=offset == 0)
            offset += len(chunk)
            yield buf.getvalue().encode()

    return StreamingResponse(stream(), media_type="text/csv",
                             headers={"x-riskserve-rows": str(rows),
                                      "x-riskserve-model": model.spec.name,
                                      "x-riskserve-version": model.version})


def _validate_file(model: ScoringModel, settings: Settings, path: Path) -> int:
    rows = 0
    for chunk in _chunks(path, settings.csv_chunk_rows):
        validation.columns_from_frame(model.spec, chunk, rows)
        rows += len(chunk)
        if rows > settings.csv_max_rows:
            raise PayloadTooLarge(f"the CSV has more than {settings.csv_max_rows} rows; split it",
                                  {"field": "file", "limit_rows": settings.csv_max_rows})
    if rows == 0:
        raise InvalidInput("file", "at least one data row after the header")
    return rows


def install_bentoml_fixes() -> bool:
    """Patch three answers of BentoML 1.4's @bentoml.api handling (idempotent).

    Found by fuzzing /docs.json with schemathesis (tests/test_fuzz.py):
    - a malformed multipart upload made Starlette raise HTTPException(400) inside BentoML's
      request parsing, which BentoML answered with a generic 500; it is now that 400, as JSON;
    - BentoML rendered its own 4xx exceptions as a one-element JSON list, not an object;
    - /docs.json declared only 200/400/404/500 with a string `detail`, so the service's real
      401/413/422/429/504 answers and structured details violated its own schema
      (see `schemas.complete_openapi`).
    Runs when this module is imported, which service.py does before BentoML builds its app.
    The timeout middleware fix lives in riskserve.limits.
    """
    try:
        from _bentoml_impl.server.app import ServiceAppFactory
        from bentoml.exceptions import BentoMLException
    except ImportError:  # BentoML not installed (training-only environments)
        return False
    if getattr(ServiceAppFactory, "_riskserve_fixed", False):
        return False
    from starlette.exceptions import HTTPException

    from riskserve.v1.schemas import complete_openapi

    original_endpoint = ServiceAppFactory.api_endpoint

    async def api_endpoint(self: Any, name: str, request: Any) -> Any:
        try:
            return await original_endpoint(self, name, request)
        except HTTPException as exc:  # e.g. "Invalid multipart data." from the form parser
            return JSONResponse({"error": str(exc.detail), "detail": {"field": "body"}},
                                status_code=exc.status_code)
        except BentoMLException as exc:
            if exc.error_code.value >= 500:
                raise  # BentoML's own generic 500 (logged), as before
            return JSONResponse({"error": str(exc)}, status_code=exc.error_code.value)

    async def openapi_spec_view(self: Any, request: Any) -> Any:
        try:
            return JSONResponse(complete_openapi(self.service.openapi_spec.asdict()))
        except Exception:
            logger.exception("failed to generate the OpenAPI document")
            return JSONResponse({"error": "Failed to generate OpenAPI spec"}, status_code=500)

    ServiceAppFactory.api_endpoint = api_endpoint
    ServiceAppFactory.openapi_spec_view = openapi_spec_view
    ServiceAppFactory._riskserve_fixed = True
    return True


install_bentoml_fixes()
