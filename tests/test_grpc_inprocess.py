"""The gRPC servicer on an in-process grpc.aio server (third tier): real protobuf over loopback,
the auth interceptor, the one error mapping and the data plane, without `bentoml serve`.
Clients are tritonclient's (its stubs and riskserve's share a process: riskserve's live in a
private descriptor pool)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from riskserve import auth
from riskserve.core.registry import Registry
from riskserve.core.specs import MODEL_NAMES, SPECS
from riskserve.core.validation import columns_from_frame
from riskserve.dataplane import DataPlane
from riskserve.devtools.samples import sample_frame
from riskserve.devtools.server import free_port
from riskserve.metrics import get_metrics
from riskserve.oip import grpc_server
from riskserve.settings import Settings, get_settings

KEY = "grpc-inprocess-key"


@pytest.fixture(scope="module")
def grpc_served(trained: dict) -> Iterator[SimpleNamespace]:
    """A grpc.aio server on its own event loop thread, serving the session store's models:
    its address, its data plane and its loop."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RISKSERVE_API_KEYS", f"{KEY},sha256:{auth.digest('other').hex()}")
    mp.delenv("RISKSERVE_API_KEYS_FILE", raising=False)
    get_settings.cache_clear()
    settings = Settings(max_rows=50)
    metrics = get_metrics()
    dp = DataPlane(Registry({n: trained[n].model for n in MODEL_NAMES},
                            on_load=metrics.model_loaded), settings, metrics)
    loop = asyncio.new_event_loop()
    port = free_port()
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        holder["server"] = loop.run_until_complete(grpc_server.serve(dp, "127.0.0.1", port))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30), "the in-process gRPC server did not start"
    try:
        yield SimpleNamespace(target=f"127.0.0.1:{port}", dp=dp, loop=loop)
    finally:
        asyncio.run_coroutine_threadsafe(holder["server"].stop(0.5), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        mp.undo()
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def grpc_target(grpc_served: SimpleNamespace) -> str:
    return grpc_served.target


@pytest.fixture(scope="module")
def client(grpc_target: str) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(grpc_target)


def inputs(name: str, n: int = 4) -> tuple[list[Any], Any]:
    frame = sample_frame(name, n)
    out = []
    for f in SPECS[name].features:
        values = frame[f.name].to_numpy()
        if f.is_category:
            arr, dt = np.array([str(v) for v in values], dtype=object), "BYTES"
        elif f.kind == "int":
            arr, dt = values.astype(np.int64), "INT64"
        else:
            arr, dt = values.astype(np.float64), "FP64"
        t = grpcclient.InferInput(f.name, [n], dt)
        t.set_data_from_numpy(arr)
        out.append(t)
    return out, frame


@pytest.mark.parametrize("name", ["fraud", "risk-flag", "keystroke-svm"])
def test_infer_matches_the_model(client: Any, trained: dict, name: str) -> None:
    tensors, frame = inputs(name)
    result = client.infer(name, tensors, headers={"x-api-key": KEY})
    expected = trained[name].model.predict(columns_from_frame(SPECS[name], frame))
    assert result.as_numpy("predict").tolist() == expected.predictions.tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), expected.probabilities,
                               rtol=1e-6)


def test_health_is_open_and_infer_needs_a_key(client: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    tensors, _ = inputs("fraud", 1)
    with pytest.raises(InferenceServerException) as err:
        client.infer("fraud", tensors)
    assert "UNAUTHENTICATED" in str(err.value.status())


@pytest.mark.parametrize(("model", "status"),
                         [("nope", "NOT_FOUND"), ("fraud", "INVALID_ARGUMENT")])
def test_errors_keep_their_codes(client: Any, model: str, status: str) -> None:
    tensors, _ = inputs("risk-flag", 1)  # risk-flag's inputs are wrong for fraud
    with pytest.raises(InferenceServerException) as err:
        client.infer(model, tensors, headers={"x-api-key": KEY})
    assert status in str(err.value.status())


def test_row_limit_is_resource_exhausted(client: Any) -> None:
    tensors, _ = inputs("fraud", 51)
    with pytest.raises(InferenceServerException) as err:
        client.infer("fraud", tensors, headers={"x-api-key": KEY})
    assert "RESOURCE_EXHAUSTED" in str(err.value.status())


def test_model_metadata(client: Any, trained: dict) -> None:
    meta = client.get_model_metadata("fraud", headers={"x-api-key": KEY})
    assert meta.versions[0] == trained["fraud"].version
    assert [i.name for i in meta.inputs] == list(SPECS["fraud"].feature_names)


def test_grpc_access_lines_follow_bentomls_access_log_switch() -> None:
    """The switch that turns BentoML's HTTP access lines off turns the gRPC ones off too:
    `logging.access.enabled`, and the access logger's level (INFO in a served worker)."""
    import logging

    from bentoml._internal.configuration.containers import BentoMLContainer

    from riskserve.oip import grpc_access

    access = logging.getLogger("bentoml.access")
    switch = BentoMLContainer.api_server_config.logging.access.enabled
    level, was = access.level, switch.get()
    try:
        access.setLevel(logging.INFO)
        switch.set(True)
        assert grpc_access.enabled()
        switch.set(False)
        assert not grpc_access.enabled()
        switch.set(True)
        access.setLevel(logging.WARNING)
        assert not grpc_access.enabled()
    finally:
        switch.set(was)
        access.setLevel(level)


def test_access_log_handler_is_built_once_per_method_and_handler() -> None:
    """The logging wrapper is reused while grpc hands back the same registered handler, and a
    different handler (auth's refusal) gets its own: never another method's or a stale one."""
    import grpc

    from riskserve.oip import grpc_access

    async def serve(_request: Any, _context: Any) -> None:
        return None

    async def refuse(_request: Any, _context: Any) -> None:
        return None

    served = grpc.unary_unary_rpc_method_handler(serve)
    refused = grpc.unary_unary_rpc_method_handler(refuse)
    # The interceptor reads only `.method` of the call details.
    ready = SimpleNamespace(method="/m/Ready", invocation_metadata=())
    infer = SimpleNamespace(method="/m/Infer", invocation_metadata=())
    interceptor = grpc_access.AccessLogInterceptor()

    def run(handler: Any, call: Any) -> Any:
        async def continuation(_details: Any) -> Any:
            return handler
        return asyncio.run(interceptor.intercept_service(continuation, call))

    first = run(served, ready)
    assert first.unary_unary.__wrapped__ is serve
    assert run(served, ready) is first
    assert run(served, infer) is not first
    assert run(refused, ready).unary_unary.__wrapped__ is refuse
    again = run(served, ready)
    assert again.unary_unary.__wrapped__ is serve and run(served, ready) is again


def test_every_scoring_call_is_counted_on_its_way_and_arrives_however_it_ends(
        grpc_served: SimpleNamespace, client: Any) -> None:
    """The data plane's Arrivals count each ModelInfer that passed auth until it is decoded or
    ends: answered, refused by the data plane (404, 400, 413), cancelled by its caller. A count
    that leaked would hold every later gRPC batch for the whole linger cap."""
    import grpc

    dp = grpc_served.dp
    counted: list[int] = []
    expect = dp.arrivals.expect

    def counting() -> Any:
        counted.append(1)
        return expect()

    def on_loop(fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), grpc_served.loop).result(5)

    on_loop(lambda: setattr(dp.arrivals, "expect", counting))
    try:
        good, _ = inputs("fraud", 1)
        client.infer("fraud", good, headers={"x-api-key": KEY})
        too_many, _ = inputs("fraud", 51)
        for model, tensors in (("nope", good), ("risk-flag", good), ("fraud", too_many)):
            with pytest.raises(InferenceServerException):
                client.infer(model, tensors, headers={"x-api-key": KEY})
        # Answered + three refused by the data plane: each counted once.
        assert len(counted) == 4, len(counted)
        for key in ("wrong", None):  # refused by auth: no caller on its way, never counted
            with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
                client.infer("fraud", good, headers={"x-api-key": key} if key else None)
        client.get_model_metadata("fraud", headers={"x-api-key": KEY})  # not a scoring call
        assert len(counted) == 4, len(counted)

        async def cancelled() -> None:
            async with grpc.aio.insecure_channel(grpc_served.target) as channel:
                call = channel.unary_unary(f"/{grpc_server.SERVICE}/ModelInfer",
                                           request_serializer=None,
                                           response_deserializer=None)
                body = _request_bytes("risk-flag")
                for _ in range(20):
                    task = asyncio.ensure_future(call(body, metadata=(("x-api-key", KEY),)))
                    await asyncio.sleep(0)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                        await task

        asyncio.run(cancelled())
        deadline = time.monotonic() + 10
        while on_loop(lambda: dp.arrivals.expected) != 0:
            assert time.monotonic() < deadline, on_loop(lambda: dp.arrivals.expected)
            time.sleep(0.01)
    finally:
        on_loop(lambda: setattr(dp.arrivals, "expect", expect))
    # The cancelled ones as far as they got (auth let each through: counted at most once).
    assert 4 <= len(counted) <= 24, len(counted)


def _request_bytes(name: str) -> bytes:
    from riskserve.devtools.samples import grpc_request, records

    return grpc_request(name, records(name, sample_frame(name, 1))[0]).SerializeToString()
