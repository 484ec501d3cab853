"""API-key authentication for the gRPC server: one interceptor, checked before any handler.

Keys come from the same per-process `riskserve.auth` key ring as HTTP (so a rotated keys file
and a key's token bucket are shared by both protocols); the answers are the same errors as
HTTP's 401 / 429, as UNAUTHENTICATED / RESOURCE_EXHAUSTED (with a `retry-after` trailer).
Probes, the standard health service and reflection stay open, like /v2/health/* and /docs.json.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from riskserve import auth
from riskserve.errors import RateLimited, RiskserveError, Unauthorized
from riskserve.metrics import get_metrics
from riskserve.oip._proto import grpc_predict_v2_pb2 as pb
from riskserve.settings import Settings, get_settings

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# Probes and discovery stay open, like /v2/health/* and /docs.json over HTTP.
OPEN_METHODS = frozenset({
    f"/{SERVICE}/ServerLive",
    f"/{SERVICE}/ServerReady",
    f"/{health.SERVICE_NAME}/Check",
    f"/{health.SERVICE_NAME}/Watch",
    f"/{reflection.SERVICE_NAME}/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
})
_KEY_METADATA = ("x-api-key", "authorization")
# The authenticated Caller of the current call, set by the interceptor in the call's task.
_caller: contextvars.ContextVar[auth.Caller | None] = contextvars.ContextVar(
    "riskserve_grpc_caller", default=None)
# Set in a refused call's task while the interceptor asks the rest of the chain for the
# handler's shape only, so that inner interceptors (the arrival count) can tell it is no call.
_refusing: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "riskserve_grpc_refusing", default=False)


def admitted() -> bool:
    """False while the interceptor is refusing the current call (for inner interceptors)."""
    return not _refusing.get()


def _key_of(metadata: Any) -> str | None:
    """The presented key (gRPC metadata keys are lower-case; -bin values are never keys)."""
    headers = {k: v for k, v in metadata or () if k in _KEY_METADATA and isinstance(v, str)}
    return auth.presented_key(headers)


def _denial(handler: grpc.RpcMethodHandler, exc: RiskserveError) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind that only answers `exc`'s status and message.

    No deserializer: the request body is never parsed for a refused caller.
    """
    code = grpc.StatusCode[exc.grpc_code]
    trailer: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, RateLimited):
        trailer = (("retry-after", str(max(1, math.ceil(exc.retry_after_s)))),)

    async def deny(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, exc.message, trailing_metadata=trailer)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class APIKeyInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates calls (metadata `x-api-key` or `authorization: Bearer`) and applies the
    key's rate, per worker, before any handler or deserializer runs.

    `on_failure` is accepted for older wiring and ignored: `auth.authenticate` counts failures
    itself (with the key name where known), once.
    """

    def __init__(self, keyring: auth.KeyRing | None,
                 on_failure: Callable[[str], None] | None = None, *,
                 metrics: auth.AuthMetrics | None = None) -> None:
        self.keyring = keyring
        self._metrics = metrics

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if self.keyring is None or handler_call_details.method in OPEN_METHODS:
            return await continuation(handler_call_details)
        if self._metrics is None:
            self._metrics = get_metrics()
        try:
            caller = auth.authenticate(self.keyring,
                                       _key_of(handler_call_details.invocation_metadata),
                                       "grpc", self._metrics)
        except (Unauthorized, RateLimited) as exc:
            _refusing.set(True)  # the inner chain is asked for the handler's shape, no more
            handler = await continuation(handler_call_details)
            return None if handler is None else _denial(handler, exc)
        _caller.set(caller)
        return await continuation(handler_call_details)


def interceptor(settings: Settings) -> APIKeyInterceptor:
    """The interceptor on this process's shared key ring (fail-secure: raises without keys)."""
    return APIKeyInterceptor(auth.require_keys(settings))


def caller_of_grpc(context: grpc.aio.ServicerContext) -> auth.Caller:
    """The Caller behind a gRPC call, for the servicer.

    The interceptor authenticated and rate-limited it and left the Caller in the call's own
    task (grpc.aio runs the interceptors and the handler of one call in one task, as the
    access log's key name already relies on), so this is a lookup, like HTTP's scope. Without
    the interceptor (a servicer on a bare server) the key is read again from the metadata.
    """
    if (caller := _caller.get()) is not None:
        return caller
    settings = get_settings()
    if settings.auth_disabled:
        return auth.ANONYMOUS
    keyring = auth.require_keys(settings)  # the process's ring: cached, no file read here
    assert keyring is not None
    presented = _key_of(context.invocation_metadata())
    caller = None if presented is None else keyring.lookup(presented)
    if caller is None:
        raise Unauthorized(auth.INVALID if presented else auth.MISSING["grpc"],
                           {"field": "x-api-key", "reason": "invalid" if presented else "missing"})
    return caller
