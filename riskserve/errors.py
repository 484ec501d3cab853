"""One error hierarchy for every user-facing failure, carrying its HTTP status and gRPC code.

HTTP handlers, the gRPC servicer and the training CLI all render these the same way, so a user
gets one clear line naming what was wrong and what was expected, never a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


class RiskserveError(Exception):
    """Base class. `status` is the HTTP status, `grpc_code` a grpc.StatusCode member name."""

    status: int = 400
    grpc_code: str = "INVALID_ARGUMENT"
    reason: str = "bad_request"  # the `reason` label of riskserve_request_errors_total

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.detail is not None:
            body["detail"] = self.detail
        return body


class ModelNotFound(RiskserveError):
    status = 404
    grpc_code = "NOT_FOUND"
    reason = "not_found"

    def __init__(self, name: str, known: Iterable[str], version: str | None = None) -> None:
        known = sorted(known)
        if version is None:
            msg = f"unknown model '{name}'; known models: {', '.join(known)}"
            detail = {"field": "model", "known": known}
        else:
            msg = f"model '{name}' has no version '{version}'; known versions: {', '.join(known)}"
            detail = {"field": "version", "known": known}
        super().__init__(msg, detail)


class InvalidInput(RiskserveError):
    """A field is missing, of the wrong type or out of range. Names the field and the rows."""

    status = 422
    reason = "invalid_input"

    def __init__(self, field: str, expected: str, rows: Sequence[int] = (),
                 got: Any = None, problem: str | None = None) -> None:
        where = ""
        if len(rows):
            shown = ", ".join(str(int(r)) for r in rows[:5])
            more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
            where = f" (rows {shown}{more})"
        msg = f"field '{field}': {problem + '; ' if problem else ''}expected {expected}{where}"
        detail: dict[str, Any] = {"field": field, "expected": expected}
        if problem:
            detail["problem"] = problem
        if len(rows):
            detail["rows"] = [int(r) for r in rows[:20]]
        if got is not None:
            detail["got"] = _json_safe(got)
        super().__init__(msg, detail)
        self.field = field


def _json_safe(value: Any) -> Any:
    """Non-finite floats (1e999 parsed as inf, NaN) cannot be rendered as strict JSON: say them
    as text instead of failing the error answer itself."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


class BadRequest(RiskserveError):
    """The request itself is malformed (not JSON, wrong content type, empty CSV...)."""

    status = 400


class PayloadTooLarge(RiskserveError):
    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"
    reason = "payload_too_large"


class Unauthorized(RiskserveError):
    """No key or an unknown key (answered before any body parsing or model work)."""

    status = 401
    grpc_code = "UNAUTHENTICATED"
    reason = "unauthenticated"


class Forbidden(RiskserveError):
    """A valid key outside its scope: names the key (never the key itself) and what it may use."""

    status = 403
    grpc_code = "PERMISSION_DENIED"
    reason = "forbidden"

    def __init__(self, key_name: str, model: str, allowed: Sequence[str]) -> None:
        allowed = list(allowed)
        super().__init__(f"key '{key_name}' may not use model '{model}'; it may use: "
                         f"{', '.join(allowed) or 'no model'}",
                         {"field": "model", "key": key_name, "allowed": allowed})


class RateLimited(RiskserveError):
    """A key over its request rate; `retry_after_s` becomes the Retry-After header."""

    status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    reason = "rate_limited"

    def __init__(self, key_name: str, rate: float, retry_after_s: float) -> None:
        super().__init__(f"key '{key_name}' is over its rate of {rate:g} requests/s per worker; "
                         f"retry after {retry_after_s:.2f} s",
                         {"key": key_name, "rate": rate, "retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s


class Overloaded(RiskserveError):
    """One model's in-flight limit is reached: only that model's excess is shed, fast."""

    status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    reason = "overloaded"


class InternalError(RiskserveError):
    """Anything unexpected: logged with its traceback, answered with this one generic line."""

    status = 500
    grpc_code = "INTERNAL"
    reason = "internal"

    def __init__(self) -> None:
        super().__init__("internal error; the server log has the details")


class ConfigurationError(RiskserveError):
    """The service or a command cannot run as configured (no keys, empty model store...)."""

    status = 500
    grpc_code = "FAILED_PRECONDITION"
    reason = "internal"


class DataValidationError(RiskserveError):
    """Training data failed validation; the message names the column and offending rows."""
