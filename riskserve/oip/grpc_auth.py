"""API-key authentication for the gRPC server: one interceptor, checked before any handler.

Keys come from the same `riskserve.auth` key ring as HTTP; probes, the standard health service and
reflection stay open, like /v2/health/* and /docs.json over HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from riskserve import auth
from riskserve.oip._proto import grpc_predict_v2_pb2 as pb

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

def _denial(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind that only answers UNAUTHENTICATED.

    No deserializer: the request body is never parsed for an unauthenticated caller.
    """
    async def deny(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class APIKeyInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without a valid key (metadata `x-api-key` or `authorization: Bearer`)."""

    MESSAGES: ClassVar[dict[str, str]] = {
        "missing": "missing API key: send metadata 'x-api-key: <key>' or "
                   "'authorization: Bearer <key>'",
        "invalid": "invalid API key",
    }

    def __init__(self, keyring: auth.KeyRing | None,
                 on_failure: Callable[[str], None]) -> None:
        self.keyring = keyring
        self.on_failure = on_failure

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if self.keyring is None or handler_call_details.method in OPEN_METHODS:
            return await continuation(handler_call_details)
        # gRPC metadata keys are already lower-case; binary (-bin) values are never keys.
        headers = {k.lower(): v for k, v in handler_call_details.invocation_metadata or ()
                   if isinstance(v, str)}
        key = auth.presented_key(headers)
        if key is not None and self.keyring.check(key):
            return await continuation(handler_call_details)
        reason = "missing" if key is None else "invalid"
        self.on_failure(reason)
        handler = await continuation(handler_call_details)
        return None if handler is None else _denial(handler, self.MESSAGES[reason])


