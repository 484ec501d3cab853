"""The framework floor: what a handler that does nothing costs per request on each stack.

riskserve's gRPC is grpc.aio on the worker's uvloop; its HTTP is uvicorn (uvloop + httptools)
under BentoML. Both stacks are served here with an empty handler by the headline number of
processes, and driven by the same load generators (h2load, wrk) at the same concurrency as the
cells. Their difference in server CPU per request is the part of riskserve's gRPC/REST gap
that no riskserve code can remove (the verdict and the report's floor table show both).

    python -m benchmarks.floor grpc PORT PROCESSES   # the OIP servicer, ModelInfer answers at once
    uvicorn benchmarks.floor:app                     # POST anything, get a fixed JSON body
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
_BODY = b'{"predictions":[0]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(scope: Scope, receive: Callable[[], Awaitable[Message]],
              send: Callable[[Message], Awaitable[None]]) -> None:
    """A bare ASGI app: read the whole body, answer fixed JSON (no framework, no parsing)."""
    if scope["type"] != "http":  # lifespan: nothing to set up
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


async def serve_grpc(port: int) -> None:
    """grpc.aio on uvloop, configured like riskserve's (SO_REUSEPORT: one port per process)."""
    import grpc

    from riskserve.oip._proto import grpc_predict_v2_pb2 as pb
    from riskserve.oip._proto import grpc_predict_v2_pb2_grpc as pb_grpc

    class Empty(pb_grpc.GRPCInferenceServiceServicer):
        async def ModelInfer(self, request: pb.ModelInferRequest,
                             context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
            return pb.ModelInferResponse(model_name=request.model_name, id=request.id)

    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Empty(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"floor gRPC {os.getpid()} listening on {port}", flush=True)
    await server.wait_for_termination()


def main(argv: list[str]) -> None:
    """PROCESSES servers on one port: forked before grpc is imported (gRPC does not survive a
    fork), the first process their parent, so the bench's CPU probe sees the whole tree."""
    if argv[:1] != ["grpc"] or len(argv) != 3:
        sys.exit("usage: python -m benchmarks.floor grpc PORT PROCESSES")
    port, processes = int(argv[1]), int(argv[2])
    for _ in range(processes - 1):
        if os.fork() == 0:
            break
    import uvloop

    uvloop.run(serve_grpc(port))


if __name__ == "__main__":
    main(sys.argv[1:])
