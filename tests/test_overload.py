"""Overload: far more concurrent callers than the service admits, over HTTP, gRPC and CSV.

A real `bentoml serve` with RISKSERVE_MAX_CONCURRENCY=4 gets a bounded flood (a fixed number
of requests from many concurrent clients, loopback only). Every request must get an answer -
success, or a fast shed (HTTP 429/503, gRPC RESOURCE_EXHAUSTED/UNAVAILABLE) - and no other
error; the service must keep serving right after; every CSV it accepts must come back with
every row scored. Client timeouts are hang detectors, not speed targets (those live in
benchmarks/). The timeout middleware fix (riskserve.limits) is checked in-process.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pandas as pd
import pytest

from riskserve.devtools import server
from tests.conftest import burn_cpu

MAX_CONCURRENCY = 4
CLIENTS = 48  # 12x what one worker admits
FLOOD = 480  # requests per flood: bounded by count, and each by HANG_S
GRPC_ROWS = 400
HANG_S = 30.0  # an answer slower than this is a hang, whatever the machine
SHED_HTTP = {429, 503}
SHED_GRPC = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
ROW = {"step": 1, "type": "TRANSFER", "amount": 181.0, "oldbalance_org": 181.0,
       "newbalance_orig": 0.0, "oldbalance_dest": 0.0, "newbalance_dest": 0.0}


@pytest.fixture(scope="module")
def small(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.Served]:
    """One worker that admits only MAX_CONCURRENCY requests at a time (HTTP and gRPC)."""
    log = tmp_path_factory.mktemp("overload") / "serve.log"
    proc = server.start(log, {"RISKSERVE_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
                              "RISKSERVE_REQUEST_TIMEOUT_S": str(HANG_S)})
    try:
        yield proc
    finally:
        proc.stop()


async def http_flood(served: server.Served, n: int = FLOOD) -> list[httpx.Response]:
    """`n` single-row predictions from CLIENTS concurrent connections."""
    body = json.dumps({"model": "fraud", "inputs": [ROW]}).encode()
    headers = {**served.headers, "content-type": "application/json"}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    queue = iter(range(n))
    out: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=served.url, limits=limits, timeout=HANG_S) as client:

        async def worker() -> None:
            for _ in queue:
                out.append(await client.post("/v1/predict", content=body, headers=headers))

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return out


def assert_serves(served: server.Served, times: int = 20) -> None:
    """Recovered at once: the very next requests, one at a time, all succeed."""
    for _ in range(times):
        resp = httpx.post(f"{served.url}/v1/predict", headers=served.headers, timeout=HANG_S,
                          json={"model": "fraud", "inputs": [ROW]})
        assert resp.status_code == 200, resp.text
    assert served.proc.poll() is None, "the service died under load"


def test_http_flood_is_shed_fast_then_recovers(small: server.Served) -> None:
    responses = asyncio.run(http_flood(small))
    statuses = Counter(r.status_code for r in responses)
    assert len(responses) == FLOOD  # every request got an answer (none hung past HANG_S)
    assert set(statuses) <= {200} | SHED_HTTP, statuses
    assert statuses[200] > 0, statuses
    assert sum(statuses[s] for s in SHED_HTTP) > 0, f"nothing was shed: {statuses}"
    for r in responses:
        body = r.json()
        if r.status_code == 200:
            assert len(body["predictions"]) == 1 and len(body["probabilities"]) == 1
        else:
            assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in small.log_text()
    assert_serves(small)


async def grpc_flood(served: server.Served, n: int = FLOOD, clients: int = CLIENTS,
                     rows: int = GRPC_ROWS) -> Counter[grpc.StatusCode]:
    """`n` ModelInfer calls of `rows` rows each from `clients` concurrent channels.

    gRPC answers a one-row call so fast that 48 callers rarely have 4 in flight at once;
    calls of a few hundred rows keep each one busy long enough to overload the limit.
    """
    # tritonclient's stubs, as in test_oip.py: riskserve's own register the same `inference.*`
    # names in protobuf's default pool, and both cannot be imported in one process.
    from tritonclient.grpc import service_pb2 as pb

    from riskserve.core.specs import SPECS

    request = pb.ModelInferRequest(model_name="fraud")
    for f in SPECS["fraud"].features:
        t = request.inputs.add(name=f.name, datatype=f.datatype, shape=[rows])
        if f.datatype == "BYTES":
            t.contents.bytes_contents.extend([str(ROW[f.name]).encode()] * rows)
        elif f.datatype == "INT64":
            t.contents.int64_contents.extend([int(ROW[f.name])] * rows)
        else:
            t.contents.fp64_contents.extend([float(ROW[f.name])] * rows)
    payload = request.SerializeToString()
    target = f"127.0.0.1:{served.grpc_port}"
    # One connection per client (a local subchannel pool each), as separate callers would.
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(clients)]
    codes: Counter[grpc.StatusCode] = Counter()
    queue = iter(range(n))
    try:

        async def worker(channel: grpc.aio.Channel) -> None:
            call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                       request_serializer=None, response_deserializer=None)
            for _ in queue:
                try:
                    await call(payload, metadata=(("x-api-key", served.key),), timeout=HANG_S)
                    codes[grpc.StatusCode.OK] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code()] += 1

        await asyncio.gather(*(worker(ch) for ch in channels))
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))
    return codes


def test_grpc_flood_is_shed_fast_then_recovers(small: server.Served) -> None:
    codes = asyncio.run(grpc_flood(small))
    assert sum(codes.values()) == FLOOD
    assert set(codes) <= {grpc.StatusCode.OK} | SHED_GRPC, codes  # no DEADLINE_EXCEEDED
    assert codes[grpc.StatusCode.OK] > 0, codes
    assert sum(codes[c] for c in SHED_GRPC) > 0, f"nothing was shed: {codes}"
    after = asyncio.run(grpc_flood(small, n=10, clients=1))  # right after, one at a time
    assert after == {grpc.StatusCode.OK: 10}, after
    assert_serves(small)


def csv_payload(rows: int, seed: int) -> tuple[bytes, pd.DataFrame]:
    from training import fraud

    frame, _ = fraud.prepare(fraud.data.generate(rows, seed=seed))
    return frame.to_csv(index=False).encode(), frame


async def upload_until_accepted(client: httpx.AsyncClient, served: server.Served,
                                payload: bytes, attempts: int = 40) -> tuple[httpx.Response, int]:
    """POST the CSV until it is accepted (a shed upload is retried); bounded by `attempts`."""
    for shed in range(attempts):
        resp = await client.post("/v1/predict_csv", headers=served.headers,
                                  files={"file": ("rows.csv", payload, "text/csv")},
                                  data={"model": "fraud"})
        if resp.status_code not in SHED_HTTP:
            return resp, shed
    raise AssertionError(f"CSV upload shed {attempts} times in a row")


def test_every_accepted_csv_row_is_scored_under_flood(small: server.Served) -> None:
    uploads = [csv_payload(2_000 + 500 * i, seed=i) for i in range(6)]

    async def scenario() -> tuple[list[tuple[httpx.Response, int]], list[httpx.Response]]:
        limits = httpx.Limits(max_connections=len(uploads))
        async with httpx.AsyncClient(base_url=small.url, limits=limits, timeout=HANG_S) as c:
            flood = asyncio.create_task(http_flood(small))
            results = await asyncio.gather(*(upload_until_accepted(c, small, p)
                                             for p, _ in uploads))
            return results, await flood

    results, flood = asyncio.run(scenario())
    assert {r.status_code for r in flood} <= {200} | SHED_HTTP
    for (resp, _), (_, frame) in zip(results, uploads, strict=True):
        assert resp.status_code == 200, resp.text[:300]
        out = pd.read_csv(io.BytesIO(resp.content))
        assert len(out) == len(frame) == int(resp.headers["x-riskserve-rows"])
        assert out["prediction"].notna().all() and out["probability"].between(0, 1).all()
        pd.testing.assert_frame_equal(out[frame.columns], frame, check_dtype=False)
    assert_serves(small)


def test_timeout_middleware_answers_504_and_cancels_its_timer() -> None:
    """BentoML's TimeoutMiddleware as riskserve.bentoml_fixes patches it: a request that never
    answers gets a 504; one that answers leaves no armed timer holding its context."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    from riskserve import bentoml_fixes

    bentoml_fixes.apply()
    assert TimeoutMiddleware.__call__ is bentoml_fixes._timeout_call
    assert bentoml_fixes.apply() == []  # idempotent

    async def never(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(app: Any, timeout: float) -> tuple[list[dict[str, Any]], list[Any]]:
        loop = asyncio.get_running_loop()
        timers: list[Any] = []
        original = loop.call_later

        def recording_call_later(*args: Any, **kwargs: Any) -> Any:
            handle = original(*args, **kwargs)
            timers.append(handle)
            return handle

        loop.call_later = recording_call_later  # type: ignore[method-assign]
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        await TimeoutMiddleware(app, timeout=timeout)({"type": "http", "path": "/x"},
                                                      receive, send)
        return sent, timers

    sent, _ = asyncio.run(call(never, 0.2))
    assert sent[0]["status"] == 504
    sent, timers = asyncio.run(call(answer, 60.0))
    assert sent[0]["status"] == 200
    assert len(timers) == 1 and timers[0].cancelled()


def test_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The concurrency limit and the timeout are RISKSERVE_* settings (the flood tests above
    run with RISKSERVE_MAX_CONCURRENCY=4)."""
    from riskserve.settings import Settings

    monkeypatch.setenv("RISKSERVE_MAX_CONCURRENCY", "7")
    monkeypatch.setenv("RISKSERVE_REQUEST_TIMEOUT_S", "2.5")
    s = Settings()
    assert (s.max_concurrency, s.request_timeout_s) == (7, 2.5)


def test_batcher_never_leaves_a_caller_hanging() -> None:
    """A failing model call fails every caller of its batch (none waits forever) and the next
    batch is served again; cheap calls run on the loop once measured, slow ones on the model's
    own thread (the cost decides, not the row count)."""
    import threading

    import numpy as np

    from riskserve.core.batching import MicroBatcher
    from riskserve.core.scoring import Prediction

    threads: list[int] = []
    fail = {"on": True}

    def predict(columns: Any) -> Prediction:
        threads.append(threading.get_ident())
        if fail["on"]:
            raise RuntimeError("model exploded")
        x = columns["x"]
        if len(x) > 100:  # a heavy call: over the ~1 ms inline budget (in CPU time)
            burn_cpu(0.005)
        return Prediction(x * 2, None, x)

    async def scenario() -> tuple[list[Any], list[Prediction], list[Prediction]]:
        b = MicroBatcher(predict, max_rows=10_000)
        calls = [b.submit({"x": np.arange(3.0)}, 3) for _ in range(5)]
        failed = await asyncio.gather(*calls, return_exceptions=True)
        fail["on"] = False
        small = [await b.submit({"x": np.full(2, float(i))}, 2) for i in range(4)]
        big = [await b.submit({"x": np.ones(200)}, 200) for _ in range(2)]
        return failed, small, big

    loop_thread = threading.get_ident()
    failed, small, big = asyncio.run(scenario())
    assert all(isinstance(e, RuntimeError) for e in failed)
    assert [p.predictions.tolist() for p in small] == [[2.0 * i] * 2 for i in range(4)]
    assert all(p.predictions.tolist() == [2.0] * 200 for p in big)
    assert threads[-3] == loop_thread  # small, measured cheap: on the loop
    assert threads[-1] != loop_thread  # big, once measured heavy: on the model's thread
