"""Open Inference Protocol v2 over gRPC: inference.GRPCInferenceService inside each worker.

BentoML's new SDK serves HTTP only, so every worker starts this grpc.aio server on its own
event loop from a startup hook. All workers bind the same port: grpc.aio sets SO_REUSEPORT
on Linux and the kernel spreads new connections across them. The servicer uses the worker's
Runtime, so scoring, batching, validation, metrics and errors are the ones /v1 and /v2 use.
Auth is an interceptor checking `x-api-key` / `authorization: Bearer` metadata before any
handler runs; liveness, readiness, the standard health service and reflection stay open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from riskserve import auth
from riskserve.core.scoring import ScoringModel
from riskserve.errors import ConfigurationError, InvalidInput, RiskserveError
from riskserve.oip import codec
from riskserve.oip._proto import grpc_predict_v2_pb2 as pb
from riskserve.oip._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from riskserve.oip.codec import Tensor
from riskserve.oip.grpc_auth import APIKeyInterceptor
from riskserve.runtime import Runtime
from riskserve.v1 import handlers as api

logger = logging.getLogger("riskserve.oip.grpc")

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# The InferTensorContents field that carries each datatype.
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
INTERNAL_MESSAGE = "internal error; the server log has the details"


def _tensors(request: pb.ModelInferRequest) -> list[Tensor]:
    """Input tensors with their data: raw_input_contents if sent, else the typed field."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput("raw_input_contents", f"one entry per input "
                           f"({len(request.inputs)}), in the order of 'inputs'",
                           problem=f"got {len(raw)} entries")
    tensors = []
    for i, t in enumerate(request.inputs):
        if raw:
            if t.HasField("contents"):
                raise InvalidInput(t.name, "raw_input_contents or contents, not both",
                                   problem="both given")
            tensors.append(Tensor(t.name, t.datatype, tuple(t.shape), raw[i], raw=True))
        else:
            field = CONTENTS_FIELD.get(t.datatype)
            data = getattr(t.contents, field) if field else ()
            tensors.append(Tensor(t.name, t.datatype, tuple(t.shape), data))
    return tensors


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six RPCs of the protocol, answered from one worker's Runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def _abort(self, context: grpc.aio.ServicerContext, model: str | None,
                     exc: Exception, count: bool = False) -> NoReturn:
        """riskserve errors keep their gRPC code and message; anything else is a bare INTERNAL."""
        if isinstance(exc, RiskserveError):
            if count:
                self.rt.metrics.error(model, exc.reason)
            await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
        logger.error("unexpected error in gRPC for model %r", model, exc_info=exc)
        if count:
            self.rt.metrics.error(model, "internal")
        await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    def _resolve(self, name: str, version: str) -> ScoringModel:
        # An empty version means "the server's choice": the production version.
        return self.rt.registry.resolve(name, version or None)

    async def ServerLive(self, request: pb.ServerLiveRequest,
                         context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=bool(self.rt.registry.names))

    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        try:
            self._resolve(request.name, request.version)
        except Exception as exc:
            await self._abort(context, request.name, exc)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=codec.SERVER_NAME, version=codec.server_version(),
                                         extensions=list(codec.EXTENSIONS))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        try:
            model = self._resolve(request.name, request.version)
            versions = await asyncio.to_thread(codec.available_versions, model)
        except Exception as exc:
            await self._abort(context, request.name, exc)
        meta = codec.model_metadata(model, versions)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]])

    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        metrics = self.rt.metrics
        metrics.in_flight.inc()
        metrics.request(request.model_name, "grpc")
        try:
            return await self._infer(request)
        except Exception as exc:
            await self._abort(context, request.model_name, exc, count=True)
        finally:
            metrics.in_flight.dec()

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        rt = self.rt
        model = self._resolve(request.model_name, request.model_version)
        for o in request.outputs:
            codec.reject_classification(o.name, o.parameters)
        selected = codec.select_outputs(model, [o.name for o in request.outputs])
        tensors = _tensors(request)
        rows = codec.check_tensors(model.spec, tensors)
        api.check_rows(rt, rows)
        columns = codec.to_columns(model.spec, tensors, rows)
        pred = await api.score(rt, model, columns, rows, "grpc")

        response = pb.ModelInferResponse(model_name=model.spec.name,
                                         model_version=model.version, id=request.id)
        # Answer in the encoding the client used: raw in, raw out (tritonclient reads only
        # raw outputs for numeric tensors); typed contents in, typed contents out (grpcurl).
        raw = bool(request.raw_input_contents)
        for o in codec.outputs(model, pred, selected):
            tensor = response.outputs.add(name=o.name, datatype=o.datatype, shape=o.shape)
            for key, value in o.parameters.items():
                tensor.parameters[key].string_param = value
            if raw:
                response.raw_output_contents.append(codec.to_raw(o))
            elif o.datatype == "BYTES":
                tensor.contents.bytes_contents.extend(s.encode() for s in codec.to_list(o))
            else:
                getattr(tensor.contents, CONTENTS_FIELD[o.datatype]).extend(codec.to_list(o))
        return response


class OIPServer:
    """A started gRPC server and its health servicer, stopped by the service's shutdown hook."""

    def __init__(self, server: grpc.aio.Server, health_servicer: Any, address: str) -> None:
        self.server = server
        self.health = health_servicer
        self.address = address

    async def stop(self, grace_s: float = 5.0) -> None:
        """Report NOT_SERVING, then let in-flight calls finish for up to `grace_s`."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(rt: Runtime, host: str, port: int) -> OIPServer:
    """Start the gRPC server on the running event loop (the worker's) and mark it SERVING."""
    keyring = auth.require_keys(rt.settings)
    server = grpc.aio.server(
        interceptors=[APIKeyInterceptor(keyring,
                                        lambda reason: rt.metrics.auth_failure(reason, "grpc"))],
        options=[
            # Every worker binds the same port; the kernel balances connections between them.
            ("grpc.so_reuseport", 1),
            # The same body limit as HTTP (RESOURCE_EXHAUSTED above it).
            ("grpc.max_receive_message_length", rt.settings.max_payload_bytes),
        ],
        # Like BentoML's max_concurrency for HTTP: excess calls fail fast instead of queueing.
        maximum_concurrent_rpcs=rt.settings.max_concurrency,
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(rt), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                        server)
    address = _address(host, port)
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigurationError(f"cannot listen for gRPC on {address} ({exc}); set "
                                 f"RISKSERVE_GRPC_HOST / RISKSERVE_GRPC_PORT") from None
    await server.start()
    for service in ("", SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    logger.info("Open Inference Protocol gRPC listening on %s", address)
    return OIPServer(server, health_servicer, address)
