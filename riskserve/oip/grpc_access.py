"""One access-log line per gRPC call, in the shape and logger of BentoML's HTTP lines.

    <peer> (scheme=grpc,method=/inference.GRPCInferenceService/ModelInfer,length=58)
    (status=OK,length=41) 0.912ms key=fraud-team

on `bentoml.access`, so BentoML's log configuration formats, filters or disables both
protocols alike and riskserve.accesslog appends the caller's key name (set by the gRPC auth
interceptor; never the key). BentoML's own `AccessLogServerInterceptor` (for its legacy gRPC
server) is not reused: it turns every exception, the abort that carries riskserve's status
codes included, into INTERNAL and answers with its own legacy Response type.
Streaming calls (health Watch, reflection) are passed through unlogged, like the HTTP probes.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from riskserve import accesslog

logger = logging.getLogger(accesslog.ACCESS_LOGGER)


def _length(message: Any) -> int:
    return message.ByteSize() if hasattr(message, "ByteSize") else 0


def _logged(behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]],
            method: str) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    @functools.wraps(behavior)
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        response = None
        try:
            response = await behavior(request, context)
            return response
        finally:
            # abort() set the code before raising; an exception without one is UNKNOWN.
            code = context.code()
            status = code.name if isinstance(code, grpc.StatusCode) else (
                "OK" if response is not None else "UNKNOWN")
            logger.info("%s (scheme=grpc,method=%s,length=%d) (status=%s,length=%d) %.3fms",
                        context.peer(), method, _length(request), status, _length(response),
                        (time.perf_counter() - start) * 1000)
    return call


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    """Outermost interceptor: it times and logs whatever the inner ones (auth) decide too.

    The logging handler is built once per method and reused while the inner handler is the
    same object (grpc returns the registered one on every call; auth's refusals are new
    objects, so they get their own), instead of a new wrapper on every call.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        cached = self._wrapped.get(details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = grpc.unary_unary_rpc_method_handler(
            _logged(handler.unary_unary, details.method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
        self._wrapped[details.method] = (handler, wrapped)
        return wrapped


def enabled() -> bool:
    """BentoML's `logging.access.enabled` (on by default) and an INFO-level access logger:
    the switch that turns BentoML's HTTP access lines off turns these off too."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return (bool(BentoMLContainer.api_server_config.logging.access.enabled.get())
            and logger.isEnabledFor(logging.INFO))
