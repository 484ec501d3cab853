"""Open Inference Protocol v2 over gRPC: inference.GRPCInferenceService inside each worker.

BentoML's new SDK serves HTTP only, so every worker starts this grpc.aio server on its own
event loop from a startup hook. All workers bind the same port: grpc.aio sets SO_REUSEPORT
on Linux and the kernel spreads new connections across them. The servicer is a codec over
the worker's data plane, so scoring, batching, validation, metrics and errors are the ones /v1
and /v2 use. Auth is an interceptor (riskserve.oip.grpc_auth) checking `x-api-key` /
`authorization: Bearer` metadata before any handler runs; liveness, readiness, the standard
health service and reflection stay open. Every unary call gets an access-log line like HTTP's
(riskserve.oip.grpc_access). Calls come in through riskserve.oip.grpc_intake: several armed
requests per method, and a count of ModelInfer calls on their way that lingering batches wait
for, so gRPC requests share model calls like HTTP's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from riskserve.core.encoding import Columns
from riskserve.core.scoring import ScoringModel
from riskserve.dataplane import Call, DataPlane, Inference
from riskserve.errors import ConfigurationError, InternalError, InvalidInput, RiskserveError
from riskserve.oip import codec, grpc_access, grpc_auth, grpc_intake
from riskserve.oip._proto import grpc_predict_v2_pb2 as pb
from riskserve.oip._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from riskserve.oip.codec import Tensor

logger = logging.getLogger("riskserve.oip.grpc")

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# The calls whose batches linger: the data plane waits for these when they are on their way.
SCORING_METHODS = frozenset({f"/{SERVICE}/ModelInfer"})
# The InferTensorContents field that carries each datatype.
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}



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


def _rpc(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The one gRPC error mapping: a RiskserveError keeps its status code and message (429s
    as RESOURCE_EXHAUSTED, 403s as PERMISSION_DENIED...); anything else is logged and answered
    with InternalError's bare INTERNAL, never a traceback."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except RiskserveError as exc:
            await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
        except Exception as exc:
            logger.error("unexpected error in gRPC %s", method.__name__, exc_info=exc)
            internal = InternalError()
            await context.abort(grpc.StatusCode[internal.grpc_code], internal.message)

    return wrapper


def _wants_explanation(request: pb.ModelInferRequest) -> bool:
    param = request.parameters.get("explain")
    return param is not None and param.WhichOneof("parameter_choice") == "bool_param" \
        and param.bool_param


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six RPCs of the protocol: a codec between protobuf and the worker's data plane."""

    def __init__(self, dp: DataPlane) -> None:
        self.dp = dp

    def _call(self, name: str, version: str, context: grpc.aio.ServicerContext) -> Call:
        # An empty version means "the server's choice": the production version.
        return Call(name, version or None, grpc_auth.caller_of_grpc(context), "grpc")

    async def ServerLive(self, request: pb.ServerLiveRequest,
                         context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=bool(self.dp.registry.names))

    @_rpc
    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        self.dp.model(self._call(request.name, request.version, context))
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=codec.SERVER_NAME, version=codec.server_version(),
                                         extensions=list(codec.EXTENSIONS))

    @_rpc
    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        model = self.dp.model(self._call(request.name, request.version, context))
        versions = await asyncio.to_thread(codec.available_versions, model)
        meta = codec.model_metadata(model, versions)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                    for t in meta["inputs"]],
            outputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                     for t in meta["outputs"]])

    @_rpc
    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        selected: list[str] = []

        async def decode(model: ScoringModel) -> tuple[int, Callable[[], Columns]]:
            grpc_intake.arrived()  # it is queued before the loop turns (see Arrivals)
            for o in request.outputs:
                codec.reject_classification(o.name, o.parameters)
            selected.extend(codec.select_outputs(model, [o.name for o in request.outputs]))
            tensors = _tensors(request)
            rows = codec.check_tensors(model.spec, tensors)
            return rows, lambda: codec.to_columns(model.spec, tensors, rows)

        call = self._call(request.model_name, request.model_version, context)
        if _wants_explanation(request):
            result = await self.dp.explain(call, decode)
        else:
            result = await self.dp.infer(call, decode)
        return _encode(request, result, selected)


def _encode(request: pb.ModelInferRequest, result: Inference,
            selected: list[str]) -> pb.ModelInferResponse:
    model = result.model
    response = pb.ModelInferResponse(model_name=model.spec.name, model_version=model.version,
                                     id=request.id)
    # Answer in the encoding the client used: raw in, raw out (tritonclient reads only raw
    # outputs for numeric tensors); typed contents in, typed contents out (grpcurl).
    raw = bool(request.raw_input_contents)
    outs = codec.outputs(model, result.prediction, selected)
    if result.explanation is not None:
        outs.append(codec.contributions(result.explanation))
    for o in outs:
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


async def serve(dp: DataPlane, host: str, port: int) -> OIPServer:
    """Start the gRPC server on the running event loop (the worker's) and mark it SERVING."""
    settings = dp.settings
    # Innermost: a call counts as on its way to the data plane once auth let it through.
    interceptors: list[grpc.aio.ServerInterceptor] = [
        grpc_auth.interceptor(settings),
        grpc_intake.ArrivalInterceptor(dp.arrivals, SCORING_METHODS, grpc_auth.admitted)]
    if grpc_access.enabled():  # outermost: it also logs what auth refused
        interceptors.insert(0, grpc_access.AccessLogInterceptor())
    server = grpc_intake.server(
        settings.grpc_intake_depth,
        interceptors=interceptors,
        options=[
            # Every worker binds the same port; the kernel balances connections between them.
            ("grpc.so_reuseport", 1),
            # The same body limit as HTTP (RESOURCE_EXHAUSTED above it).
            ("grpc.max_receive_message_length", settings.max_payload_bytes),
        ],
        # Like BentoML's max_concurrency for HTTP: excess calls fail fast instead of queueing.
        maximum_concurrent_rpcs=settings.max_concurrency,
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(dp), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # Our stubs live in a private descriptor pool (see riskserve/oip/_proto): reflect that one.
    reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                        server, pool=pb.DESCRIPTOR.pool)
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
