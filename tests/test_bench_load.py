"""The bench's C load generators. wrk: every body reaches the server byte for byte, in turn,
with its headers; non-2xx answers are errors, not successes; latencies come back in
milliseconds. h2load (gRPC): real gRPC calls with the metadata, each latency logged, and a
request the server refuses stops the run before any load.

Run only where Debian's `wrk` / `h2load` are installed (`make deps` and `make bench` install
them; the bench falls back to aiohttp / grpc.aio without them).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmarks import load

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
needs_h2load = pytest.mark.skipif(shutil.which("h2load") is None,
                                  reason="h2load (nghttp2-client) is not installed")

BODIES = [b'{"rows": [{"a": 1}]}', b'{"b": "\\"quoted\\" \\\\ back\\nslash"}', bytes(range(256))]


class _QuietServer(ThreadingHTTPServer):
    """wrk resets its connections when its duration ends, mid-request: socketserver would print
    that as a traceback in the test output, though nothing is wrong. Other errors still print."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture()
def server() -> Iterator[tuple[str, Counter[bytes]]]:
    seen: Counter[bytes] = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            seen[body] += 1
            ok = self.headers.get("x-api-key") == "k" and body in BODIES[:2]
            self.send_response(200 if ok else 422)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    httpd = _QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/predict", seen
    finally:
        httpd.shutdown()


@needs_wrk
def test_wrk_sends_every_body_with_headers_and_counts_errors(
        server: tuple[str, Counter[bytes]]) -> None:
    url, seen = server
    result = asyncio.run(load.wrk_load(url, BODIES, {"x-api-key": "k"}, 2, 1.0, warmup_s=0))
    assert set(seen) == set(BODIES)  # all three, byte for byte (escaping, NUL, high bytes)
    assert max(seen.values()) - min(seen.values()) <= 2  # cycled in turn by each connection
    assert result.ok > 0 and result.errors["non-2xx"] > 0
    assert abs(result.errors["non-2xx"] - result.ok / 2) <= 0.1 * result.ok  # 1 body in 3 fails
    assert 0 < result.p50 <= result.p99 < 1000  # milliseconds


def test_remote_targets_are_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(load.wrk_load("http://example.com/", BODIES, {}, 1, 1.0, warmup_s=0))
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(load.h2load_load("example.com:50051", "/a.B/C", BODIES, (), 1, 1.0,
                                     warmup_s=0))


@pytest.fixture()
def grpc_server() -> Iterator[tuple[str, Counter[tuple[bytes, str | None]]]]:
    """A real gRPC server (grpcio's sync one): OK for the first body with key "k", else
    INVALID_ARGUMENT; counts what it received, with the key it came with."""
    from concurrent import futures

    import grpc

    seen: Counter[tuple[bytes, str | None]] = Counter()

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        key = dict(context.invocation_metadata()).get("x-api-key")
        seen[(request, key)] += 1
        if request != BODIES[0] or key != "k":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no")
        return b"answer"

    class Handler(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(unary)

    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers([Handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", seen
    finally:
        server.stop(0)


@needs_h2load
def test_h2load_makes_real_grpc_calls_and_logs_each_latency(
        grpc_server: tuple[str, Counter[tuple[bytes, str | None]]]) -> None:
    target, seen = grpc_server
    warmed = asyncio.run(load.h2load_load(target, "/a.B/C", BODIES, (("x-api-key", "k"),), 2,
                                          1.0, warmup_s=1.0))
    before = seen[(BODIES[0], "k")]  # the warmed run's: its check call, 1 s of warm-up, 1 s
    result = asyncio.run(load.h2load_load(target, "/a.B/C", BODIES, (("x-api-key", "k"),), 2,
                                          1.0, warmup_s=0))
    assert set(seen) == {(BODIES[0], "k")}  # the protobuf body, framed, with its metadata
    assert result.error_count == 0 and result.ok > 50
    # Every logged call reached the server, plus the check call and at most one call per
    # client still in flight when the duration ended (h2load stops those unlogged).
    assert result.ok + 1 <= seen[(BODIES[0], "k")] - before <= result.ok + 1 + 2
    # The warm-up's calls are not counted: the warmed run logged about half the calls the
    # server saw (judged within that run: the machine's speed drifts between runs).
    assert 0.25 * before < warmed.ok < 0.75 * before
    assert 0 < result.p50 <= result.p99 < 1000  # milliseconds
    assert result.rps == pytest.approx(result.ok / result.seconds)


@needs_h2load
def test_h2load_refuses_to_load_a_request_the_server_rejects(
        grpc_server: tuple[str, Counter[tuple[bytes, str | None]]]) -> None:
    """h2load sees HTTP 200 for a gRPC error: the body is checked with a real call first."""
    target, seen = grpc_server
    with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
        asyncio.run(load.h2load_load(target, "/a.B/C", BODIES, (("x-api-key", "wrong"),), 2,
                                     1.0, warmup_s=0))
    assert sum(seen.values()) == 1  # the check call only: no load was sent


def test_a_peer_that_answered_nothing_in_the_window_is_a_measured_ratio() -> None:
    """0 req/s from a slow peer (the seed app's forest at 32 clients) is beaten, not unknown;
    a cell that was not run at all stays 'not measured'."""
    from benchmarks.verdicts import _at_least

    beaten = _at_least("x ≥ 20× seed", 1009.0, 0.0, 20, "req/s")
    assert beaten.passed is True and "answered nothing" in beaten.measured
    assert _at_least("x ≥ 20× seed", 1009.0, float("nan"), 20, "req/s").passed is None
    assert _at_least("x ≥ 20× seed", 100.0, 10.0, 20, "req/s").passed is False


def test_the_floor_servers_answer_over_their_protocols_with_every_process(tmp_path: Path) -> None:
    """benchmarks/floor.py's empty handlers, started as the bench starts them: the OIP gRPC
    call gets its (empty) answer from one of two processes on one port; HTTP answers JSON."""
    import grpc
    import httpx

    from benchmarks import servers
    from riskserve.oip._proto import grpc_predict_v2_pb2 as pb
    from riskserve.oip._proto import grpc_predict_v2_pb2_grpc as pb_grpc

    g, h = servers.start_floor("grpc", 2, tmp_path), servers.start_floor("http", 1, tmp_path)
    try:
        assert g.processes() == 2  # the parent serves too: the CPU probe sees both
        with grpc.insecure_channel(g.grpc_target or "") as channel:
            answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                pb.ModelInferRequest(model_name="fraud", id="r1"), timeout=10)
        assert (answer.model_name, answer.id, len(answer.outputs)) == ("fraud", "r1", 0)
        r = httpx.post(h.http_url + "/v1/predict", content=b'{"inputs": [{}]}', timeout=10)
        assert r.status_code == 200 and r.json() == {"predictions": [0]}
    finally:
        g.stop()
        h.stop()
    assert not g.alive() and not h.alive()


def test_only_the_most_recently_used_baseline_worktrees_are_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--baseline` leaves a worktree per ref; older ones are removed, the newest kept."""
    import os

    from benchmarks import baseline

    monkeypatch.setattr(baseline, "CACHE", tmp_path)
    for age, sha in enumerate(("aaaa", "bbbb", "cccc", "dddd")):
        folder = tmp_path / f"baseline-{sha}"
        (folder / "riskserve").mkdir(parents=True)
        os.utime(folder, (1_000_000 - age, 1_000_000 - age))  # aaaa used last
    (tmp_path / "tools-venv").mkdir()  # not a baseline: never touched

    removed = baseline.prune(2)
    assert sorted(p.name for p in removed) == ["baseline-cccc", "baseline-dddd"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline-aaaa", "baseline-bbbb",
                                                          "tools-venv"]
