"""The API document at /docs.json (and the Swagger page at /): riskserve's, not BentoML's template.

BentoML generates the @bentoml.api POST routes; `document` completes that with what the service
really answers (riskserve's structured errors, auth, 401/403/413/422/429/504) and the security
schemes. Installed by riskserve.bentoml_fixes.
"""

from __future__ import annotations

from typing import Any

from riskserve.v1.schemas import ErrorResponse

# Answers every @bentoml.api route can give besides BentoML's own 200/400/404/500, with why.
EXTRA_ERRORS = {
    "401": "Missing or invalid API key (answered before any model work).",
    "403": "The key may not use this model (its `models=` scope).",
    "413": "Body over RISKSERVE_MAX_PAYLOAD_BYTES (CSV: RISKSERVE_CSV_MAX_BYTES) or too many rows.",
    "422": "A field is missing, of the wrong type, out of range or an unknown category.",
    "429": "Over the key's rate, the model's in-flight limit or RISKSERVE_MAX_CONCURRENCY; "
           "retry (Retry-After says when, for rate limits).",
    "504": "No answer within RISKSERVE_REQUEST_TIMEOUT_S.",
}
ERROR_SCHEMAS = ("InvalidArgument", "NotFound", "InternalServerError")


def document(doc: dict[str, Any]) -> dict[str, Any]:
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
