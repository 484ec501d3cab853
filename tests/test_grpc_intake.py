"""riskserve.oip.grpc_intake on real grpc.aio servers in process (fast tier): several armed
requests per method, every call still answered once and by its own handler, a stop under load
no slower than grpc.aio's own, and grpc.aio's own server on grpcio releases it was not written
for. The servicer is a stub (it echoes the request id): what is tested is the intake, not the
data plane; tests/test_grpc_inprocess.py serves the real one through it."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc._cython import cygrpc

from riskserve.oip import grpc_intake
from riskserve.oip._proto import grpc_predict_v2_pb2 as pb
from riskserve.oip._proto import grpc_predict_v2_pb2_grpc as pb_grpc

INFER = "/inference.GRPCInferenceService/ModelInfer"


class Echo(pb_grpc.GRPCInferenceServiceServicer):
    """ModelInfer answers with the request's id after some loop work (~0.1 ms)."""

    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        sum(range(3000))
        return pb.ModelInferResponse(model_name="echo", id=request.id)


async def _serve(depth: int) -> tuple[grpc.aio.Server, str]:
    server = grpc_intake.server(depth)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def _infer(channel: grpc.aio.Channel) -> Callable[..., Awaitable[bytes]]:
    return channel.unary_unary(INFER, request_serializer=None, response_deserializer=None)


async def _until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("depth", [1, 8])
def test_every_call_is_answered_once_by_its_own_handler(depth: int) -> None:
    """16 channels x 20 concurrent calls: each answer carries its own request's id; with depth
    8, eight requests for ModelInfer stay armed in the C core once the traffic is over."""

    async def scenario() -> tuple[list[str], list[str], Any]:
        server, target = await _serve(depth)
        channels = [grpc.aio.insecure_channel(target, options=[
            ("grpc.use_local_subchannel_pool", 1)]) for _ in range(16)]
        try:
            calls = [_infer(channels[i % 16])(
                pb.ModelInferRequest(model_name="echo", id=str(i)).SerializeToString(),
                timeout=10) for i in range(320)]
            answers = [pb.ModelInferResponse.FromString(a).id
                       for a in await asyncio.gather(*calls)]
            intakes = getattr(server._server, "_intakes", {})
            if depth > 1:
                await _until(lambda: intakes[INFER.encode()].armed == depth)
            return answers, [str(i) for i in range(320)], server._server
        finally:
            await asyncio.gather(*(c.close() for c in channels))
            await server.stop(1)

    answers, ids, core = asyncio.run(scenario())
    assert answers == ids
    if depth == 1:
        assert type(core) is cygrpc.AioServer  # grpc.aio's own
    else:
        assert isinstance(core, grpc_intake.IntakeServer)
        assert INFER.encode() in core._intakes


@pytest.mark.parametrize("depth", [1, 8])
def test_a_stop_under_load_is_as_quick_as_grpc_aios_own(depth: int) -> None:
    """32 callers keep calling while the server stops with 5 s of grace. A call matched by an
    extra armed request after grpc.aio stopped dispatching would wait out the grace for
    UNAVAILABLE (3.0 s with a 3 s grace before IntakeServer.shutdown drained them); here the
    stop takes what grpc.aio's own takes, and no caller waits for an answer that never comes."""

    async def scenario() -> tuple[float, collections.Counter[str], list[float]]:
        server, target = await _serve(depth)
        stopping = asyncio.Event()
        codes: collections.Counter[str] = collections.Counter()
        failed_after: list[float] = []
        body = pb.ModelInferRequest(model_name="echo").SerializeToString()

        async def caller() -> None:
            async with grpc.aio.insecure_channel(target, options=[
                    ("grpc.use_local_subchannel_pool", 1)]) as channel:
                infer = _infer(channel)
                while not stopping.is_set():
                    sent = time.monotonic()
                    try:
                        await infer(body, timeout=10)
                        codes["OK"] += 1
                    except grpc.aio.AioRpcError as exc:
                        codes[exc.code().name] += 1
                        failed_after.append(time.monotonic() - sent)
                        await asyncio.sleep(0.01)  # a failed caller backs off, then retries

        callers = [asyncio.create_task(caller()) for _ in range(32)]
        await _until(lambda: codes["OK"] >= 2000, timeout_s=60)  # a guard, not a timing
        start = time.monotonic()
        await server.stop(5)
        took = time.monotonic() - start
        stopping.set()
        await asyncio.gather(*callers)
        return took, codes, failed_after

    took, codes, failed_after = asyncio.run(scenario())
    assert took < 1.5, (took, codes)
    assert max(failed_after, default=0.0) < 1.0, (sorted(failed_after)[-5:], codes)
    assert set(codes) <= {"OK", "UNAVAILABLE", "CANCELLED"}, codes


def test_other_grpcio_releases_get_grpc_aios_own_server(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert grpc_intake.supported()  # the pinned release (requirements.txt)
    monkeypatch.setattr(grpc, "__version__", "1.86.0")
    assert not grpc_intake.supported()

    async def scenario() -> Any:
        server = grpc_intake.server(8)
        try:
            return server._server
        finally:
            await server.stop(None)

    with caplog.at_level(logging.WARNING, logger="riskserve.oip.grpc"):
        core = asyncio.run(scenario())
    assert type(core) is cygrpc.AioServer
    assert "grpcio 1.86.0 is outside" in caplog.text
