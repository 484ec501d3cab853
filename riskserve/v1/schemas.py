"""Pydantic schemas of the public HTTP API (they also document it in the OpenAPI spec)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scalar = float | int | str | bool | None


class PredictResponse(BaseModel):
    """Predictions for the rows sent, in order."""

    model: str = Field(description="Public model name that answered.")
    version: str = Field(description="Model version that answered.")
    predictions: list[float | int | str] = Field(
        description="Class label (classifiers) or value (regression) per row.")
    probabilities: list[list[float]] | None = Field(
        None, description="Per row, the probability of each class in `classes` (classifiers).")
    classes: list[int | str] | None = Field(None, description="Class order of `probabilities`.")


class Timing(BaseModel):
    """Mean and standard deviation of one keystroke timing, in milliseconds."""

    model_config = ConfigDict(extra="forbid")

    Mean: float = Field(description="Mean, ms.")
    STD: float = Field(ge=0, description="Standard deviation, ms.")


class KeystrokeResponse(BaseModel):
    UserID: int | str = Field(description="The predicted user.")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: what went wrong, and structured detail naming the field."""

    error: str
    detail: Any = None


SeedModel = Literal["SVM", "RF", "XGB"]


# Answers every @bentoml.api route can give besides BentoML's own 200/400/404/500, with why.
EXTRA_ERRORS = {
    "401": "Missing or invalid API key (answered before any model work).",
    "413": "Body over RISKSERVE_MAX_PAYLOAD_BYTES (CSV: RISKSERVE_CSV_MAX_BYTES) or too many rows.",
    "422": "A field is missing, of the wrong type, out of range or an unknown category.",
    "429": "More than RISKSERVE_MAX_CONCURRENCY requests in flight in this worker; retry.",
    "504": "No answer within RISKSERVE_REQUEST_TIMEOUT_S.",
}
ERROR_SCHEMAS = ("InvalidArgument", "NotFound", "InternalServerError")


def complete_openapi(doc: dict[str, Any]) -> dict[str, Any]:
    """Make BentoML's generated OpenAPI document describe what the service really answers.

    BentoML declares only 200/400/404/500 and types every error's `detail` as a string, while
    riskserve's errors carry a structured `detail` (the field, the rows, the known models) and
    BentoML's own 400s a list of pydantic errors; auth, size limits, contract violations,
    overload and timeouts (401/413/422/429/504) were undeclared. Also declares the API key.
    """
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema()
    for name in ERROR_SCHEMAS:
        props = schemas.get(name, {}).get("properties", {})
        if "detail" in props:
            props["detail"] = {"title": "Error Detail",
                               "description": "Structured detail: the field, rows, expected "
                                              "values, known models or pydantic's errors."}
    components["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearer": {"type": "http", "scheme": "bearer"},
    }
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            if method != "post" or not path.startswith("/v1/"):
                continue
            op["security"] = [{"apiKey": []}, {"bearer": []}]
            responses = op.setdefault("responses", {})
            for status, why in EXTRA_ERRORS.items():
                responses.setdefault(status, {"description": why,
                                              "content": {"application/json": {"schema": ref}}})
    return doc
