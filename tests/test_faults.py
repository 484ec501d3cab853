"""Faults survived, with real `bentoml serve` processes (two workers, loopback only).

- `kill -9` of one worker under load, over HTTP and over gRPC: the other keeps answering,
  circus respawns the dead one (which then serves again), and only requests that were on the
  killed worker fail.
- SIGTERM under load: requests in flight complete (a CSV upload too); with riskserve.lifecycle
  wired into service.py, readiness fails first and the worker serves on for the drain delay.
- A truncated or corrupt model file, or an unreadable store: `bentoml serve` refuses to start
  with one line naming the model, version and file, and no traceback.

The fast tier (the drain middleware with a real signal, the load check on a broken store)
runs in process. Client timeouts are hang detectors; every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pandas as pd
import psutil
import pytest

from riskserve import lifecycle
from riskserve.core.specs import MODEL_NAMES
from riskserve.devtools import samples, server
from riskserve.errors import ConfigurationError
from tests.polling import eventually

ROW = {"step": 1, "type": "TRANSFER", "amount": 181.0, "oldbalance_org": 181.0,
       "newbalance_orig": 0.0, "oldbalance_dest": 0.0, "newbalance_dest": 0.0}
CLIENTS = 6  # concurrent callers, each on its own keep-alive connection
HANG_S = 30.0
DRAIN_DELAY_S = 2.0
WORKER_MODULE = "_bentoml_impl.worker.service"
SERVICE_SOURCE = (server.REPO / "service.py").read_text()
# What service.py must contain for the lifecycle behaviour (see riskserve/lifecycle.py).
DRAIN_WIRED = "DrainMiddleware" in SERVICE_SOURCE
MODELS_CHECKED = "check_models_load" in SERVICE_SOURCE


def workers(served: server.Served) -> dict[int, int]:
    """Circus worker id -> pid of the service's live worker processes."""
    out: dict[int, int] = {}
    for child in psutil.Process(served.proc.pid).children(recursive=True):
        try:
            cmd = child.cmdline()
            alive = child.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            continue
        if alive and WORKER_MODULE in cmd and "--worker-id" in cmd:
            out[int(cmd[cmd.index("--worker-id") + 1])] = child.pid
    return out


def client_connections(pid: int, port: int) -> int:
    """Established HTTP connections a worker holds on the service port (its callers)."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for c in conns
               if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)


def served_by(log_text: str, wid: int, route: str = "path=/v1/predict") -> int:
    """How many answers on `route` (an access-log fragment) the access log attributes to
    circus worker `wid`."""
    return len(re.findall(rf"\[entry_service:riskserve:{wid}\][^\n]*{re.escape(route)}",
                          log_text))


@dataclass
class Outcome:
    """One request: when it was sent and ended (monotonic s), and its status or error."""

    sent: float
    done: float
    result: int | str


@dataclass
class Load:
    """CLIENTS callers posting single-row predictions until `stop` is set."""

    OK: ClassVar[int | str] = 200
    served: server.Served
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self) -> None:
        body = json.dumps({"model": "fraud", "inputs": [ROW]}).encode()
        headers = {**self.served.headers, "content-type": "application/json"}
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=self.served.url, timeout=HANG_S,
                                     limits=limits) as c:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    result: int | str = (await c.post("/v1/predict", content=body,
                                                      headers=headers)).status_code
                except httpx.HTTPError as exc:
                    result = type(exc).__name__
                self.outcomes.append(Outcome(sent, time.monotonic(), result))
                if result != self.OK:
                    await asyncio.sleep(0.02)  # a failed connection: do not spin

    def between(self, start: float, end: float) -> Counter[int | str]:
        return Counter(o.result for o in self.outcomes if start <= o.sent < end)


def grpc_stub(channel: Any) -> Any:
    from riskserve.oip._proto import grpc_predict_v2_pb2_grpc as pb_grpc

    return pb_grpc.GRPCInferenceServiceStub(channel)


def grpc_channel(served: server.Served) -> Any:
    """A channel with a connection of its own (a private subchannel pool): the kernel hands
    each new connection to either worker, as for HTTP keep-alive clients."""
    import grpc

    return grpc.aio.insecure_channel(f"127.0.0.1:{served.grpc_port}",
                                     options=[("grpc.use_local_subchannel_pool", 1)])


@dataclass
class GrpcLoad(Load):
    """The same callers over gRPC ModelInfer, each on its own channel; waiting for a channel
    to be ready (after its worker died) is what a client library's default retry does."""

    OK: ClassVar[int | str] = "OK"

    async def client(self) -> None:
        import grpc

        request = samples.grpc_request("fraud", ROW)
        metadata = (("x-api-key", self.served.key),)
        async with grpc_channel(self.served) as channel:
            stub = grpc_stub(channel)
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    await stub.ModelInfer(request, metadata=metadata, timeout=HANG_S,
                                          wait_for_ready=True)
                    result: int | str = self.OK
                except grpc.aio.AioRpcError as exc:
                    result = exc.code().name
                self.outcomes.append(Outcome(sent, time.monotonic(), result))
                if result != self.OK:
                    await asyncio.sleep(0.02)


# ---- fast tier: the drain mechanism with a real signal, the load check on a broken store ----

async def _asgi(app: Any, path: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
    return sent


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"connection", b"keep-alive")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_drain_fails_readiness_first_then_hands_sigterm_over() -> None:
    """SIGTERM: readiness is 503 at once, other routes still answer (with Connection: close)
    for the delay, then the server's own handler gets the signal, exactly once."""
    handed: list[float] = []
    original = signal.signal(signal.SIGTERM, lambda *_: handed.append(time.monotonic()))
    drain = lifecycle.Drain()
    told: list[bool] = []
    drain.on_drain(lambda: told.append(True))
    app = lifecycle.DrainMiddleware(_ok, delay_s=0.3, drain=drain)

    async def scenario() -> dict[str, Any]:
        await app({"type": "lifespan"}, None, None)  # installs the handler, like uvicorn
        before = await _asgi(app, "/readyz")
        signaled = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # circus forwards one more: ignored
        await asyncio.sleep(0)  # let the handler run
        ready = [await _asgi(app, p) for p in lifecycle.READINESS_PATHS]
        other = await _asgi(app, "/v1/predict")
        deadline = time.monotonic() + 10
        while not handed and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return {"before": before, "ready": ready, "other": other, "signaled": signaled}

    try:
        got = asyncio.run(scenario())
    finally:
        signal.signal(signal.SIGTERM, original)
    assert got["before"][0]["status"] == 200
    assert [r[0]["status"] for r in got["ready"]] == [503, 503]
    assert got["other"][0]["status"] == 200 and got["other"][1]["body"] == b"ok"
    assert (b"connection", b"close") in got["other"][0]["headers"]
    assert (b"connection", b"keep-alive") not in got["other"][0]["headers"]
    assert len(handed) == 1 and handed[0] - got["signaled"] >= 0.3
    assert told == [True] and drain.draining


def test_drain_delay_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="delay_s"):
        lifecycle.DrainMiddleware(_ok, delay_s=-1)


@pytest.fixture()
def store_copy(trained: dict, bentoml_home: Path, isolated_home: Path) -> Path:
    """The session's trained store, copied into a private home the test may break."""
    for part in ("models", "riskserve"):
        shutil.copytree(bentoml_home / part, isolated_home / part, symlinks=True,
                        dirs_exist_ok=True)
    return isolated_home


def version_dir(home: Path, name: str) -> tuple[str, Path]:
    pointer = json.loads((home / "riskserve" / "production.json").read_text())
    version = pointer[name]["version"]
    return version, home / "models" / name / version


def served_file(directory: Path) -> str:
    """The file a worker loads at start: the compiled artifact when one is served, else the
    native model (a native file beside a served ONNX one is loaded only for explanations)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    if manifest.get("runtime", manifest["framework"]) != manifest["framework"]:
        return str(manifest["compiled"]["file"])
    return str(manifest["model_file"])


def break_file(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if how == "truncated" else b"\x00garbage" * 40)


SERVED = "served"  # the model file the worker loads, whatever its format
BROKEN = [("fraud", SERVED, "truncated"), ("risk-flag", SERVED, "corrupt"),
          ("cyber-threat", SERVED, "truncated"), ("phishing", "manifest.json", "truncated")]


@pytest.mark.parametrize(("name", "file", "how"), BROKEN)
def test_check_models_load_names_model_version_and_file(store_copy: Path, name: str,
                                                        file: str, how: str) -> None:
    assert len(lifecycle.check_models_load(MODEL_NAMES)) == len(MODEL_NAMES)  # intact: loads
    version, directory = version_dir(store_copy, name)
    file = served_file(directory) if file == SERVED else file
    break_file(directory / file, how)
    with pytest.raises(ConfigurationError) as err:
        lifecycle.check_models_load(MODEL_NAMES)
    message = err.value.message
    assert f"model '{name}' version '{version}' cannot be loaded" in message
    assert file in message and "\n" not in message


# ---- real processes ---------------------------------------------------------------------

@pytest.fixture()
def pair(trained: dict, tmp_path: Path) -> Iterator[server.Served]:
    """Two workers on the session store, drain delay set for when lifecycle is wired."""
    served = server.start(tmp_path / "serve.log", {"RISKSERVE_DRAIN_DELAY_S": str(DRAIN_DELAY_S)},
                          workers=2, timeout_s=180)
    try:
        yield served
    finally:
        served.stop()


async def kill_busiest_and_respawn(pair: server.Served, before: dict[int, int], port: int
                                   ) -> tuple[int, dict[int, int], float, float]:
    """SIGKILL the worker holding more of the callers' connections on `port`; once circus has
    a new process under its id that loaded the models, return that id, the connections each
    worker held, and when it was killed and back."""
    held = {wid: client_connections(pid, port) for wid, pid in before.items()}
    victim_wid = max(held, key=held.__getitem__)
    victim = before[victim_wid]
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    offset = len(pair.log_text())
    initialized = f"[entry_service:riskserve:{victim_wid}] Service riskserve initialized"
    deadline = time.monotonic() + 120
    while not (workers(pair).get(victim_wid) not in (None, victim)
               and initialized in pair.log_text()[offset:]):
        assert time.monotonic() < deadline, f"no respawn: {workers(pair)}"
        await asyncio.sleep(0.2)
    return victim_wid, held, killed, time.monotonic()


async def until_answered_by(pair: server.Served, wid: int, route: str,
                            call: Callable[[], Awaitable[None]]) -> None:
    """New connections (the kernel hands each to either worker) until worker `wid` answers
    one on `route`: the callers' connections all went to the survivor."""
    offset = len(pair.log_text())
    deadline = time.monotonic() + 120
    while served_by(pair.log_text()[offset:], wid, route) == 0:
        assert time.monotonic() < deadline, "the respawned worker answers nothing"
        await call()


def check_only_the_killed_workers_calls_failed(load: Load, killed: float, back: float,
                                               victim_wid: int, held: dict[int, int]) -> None:
    failed = [o for o in load.outcomes if o.result != load.OK]
    during = load.between(killed, back)
    after = load.between(back, float("inf"))
    print(f"\nkill -9 worker {victim_wid} (holding {held[victim_wid]} of {sum(held.values())} "
          f"caller connections): {len(load.outcomes)} requests, failed "
          f"{dict(Counter(o.result for o in failed))}; until respawned "
          f"({back - killed:.1f} s) {dict(during)}; after {dict(after)}")
    assert load.between(0, killed)[load.OK] > 0
    # Only requests on the killed worker fail: the one in flight or the next one on each
    # connection it held, so at most one per connection it held, and none before the kill.
    assert held[victim_wid] > 0, held
    assert all(o.done >= killed for o in failed), failed
    assert len(failed) <= held[victim_wid], failed
    assert during[load.OK] > 0, f"the surviving worker did not answer: {during}"
    assert set(after) == {load.OK}, after


def test_kill_9_one_worker_under_load(pair: server.Served) -> None:
    before = eventually(lambda: (w if len(w := workers(pair)) == 2 else None), 30,
                        "two workers", interval_s=0.1)

    async def fresh_predict() -> None:
        async with httpx.AsyncClient(base_url=pair.url, timeout=HANG_S) as fresh:
            resp = await fresh.post("/v1/predict", json={"model": "fraud", "inputs": [ROW]},
                                    headers={**pair.headers, "connection": "close"})
            assert resp.status_code == 200, resp.text

    async def scenario() -> tuple[Load, float, float, int, dict[int, int]]:
        load = Load(pair)
        clients = [asyncio.create_task(load.client()) for _ in range(CLIENTS)]
        await asyncio.sleep(1.5)
        victim_wid, held, killed, back = await kill_busiest_and_respawn(pair, before,
                                                                        pair.port)
        await until_answered_by(pair, victim_wid, "path=/v1/predict", fresh_predict)
        load.stop.set()
        await asyncio.gather(*clients)
        return load, killed, back, victim_wid, held

    load, killed, back, victim_wid, held = asyncio.run(scenario())
    check_only_the_killed_workers_calls_failed(load, killed, back, victim_wid, held)
    assert pair.proc.poll() is None


def test_kill_9_one_worker_under_grpc_load(pair: server.Served) -> None:
    """The same over gRPC: every worker serves the one gRPC port (SO_REUSEPORT), the dead
    worker's channels reconnect to whichever worker the kernel picks, and only the calls in
    flight on it fail (UNAVAILABLE)."""
    before = eventually(lambda: (w if len(w := workers(pair)) == 2 else None), 30,
                        "two workers", interval_s=0.1)
    request = samples.grpc_request("fraud", ROW)

    async def fresh_infer() -> None:
        async with grpc_channel(pair) as channel:
            await grpc_stub(channel).ModelInfer(
                request, metadata=(("x-api-key", pair.key),), timeout=HANG_S)

    async def scenario() -> tuple[Load, float, float, int, dict[int, int]]:
        load = GrpcLoad(pair)
        clients = [asyncio.create_task(load.client()) for _ in range(CLIENTS)]
        await asyncio.sleep(1.5)
        victim_wid, held, killed, back = await kill_busiest_and_respawn(pair, before,
                                                                        pair.grpc_port)
        await until_answered_by(pair, victim_wid, "method=/inference.GRPCInferenceService/"
                                "ModelInfer", fresh_infer)
        load.stop.set()
        await asyncio.gather(*clients)
        return load, killed, back, victim_wid, held

    load, killed, back, victim_wid, held = asyncio.run(scenario())
    check_only_the_killed_workers_calls_failed(load, killed, back, victim_wid, held)
    assert pair.proc.poll() is None


def csv_upload(rows: int) -> tuple[bytes, int]:
    from training import fraud

    frame, _ = fraud.prepare(fraud.data.generate(rows, seed=3))
    return frame.to_csv(index=False).encode(), len(frame)


def test_sigterm_under_load_drains_and_fails_readiness_first(pair: server.Served) -> None:
    payload, rows = csv_upload(40_000)

    async def scenario() -> dict[str, Any]:
        load = Load(pair)
        probes: list[tuple[float, int | str]] = []

        async def probe() -> None:
            async with httpx.AsyncClient(base_url=pair.url, timeout=2) as c:
                while not load.stop.is_set():
                    try:
                        result: int | str = (await c.get("/readyz")).status_code
                    except httpx.HTTPError as exc:
                        result = type(exc).__name__
                    probes.append((time.monotonic(), result))
                    await asyncio.sleep(0.05)

        async def upload() -> httpx.Response:
            async with httpx.AsyncClient(base_url=pair.url, timeout=120) as c:
                return await c.post("/v1/predict_csv", headers=pair.headers,
                                    data={"model": "fraud"},
                                    files={"file": ("rows.csv", payload, "text/csv")})

        tasks = [asyncio.create_task(load.client()) for _ in range(CLIENTS)]
        prober = asyncio.create_task(probe())
        await asyncio.sleep(1.0)
        csv = asyncio.create_task(upload())
        await asyncio.sleep(0.3)  # the upload is in flight
        signaled = time.monotonic()
        os.kill(pair.proc.pid, signal.SIGTERM)  # the arbiter only, as the kubelet does
        # Callers behave like a load balancer: they stop sending once readiness fails (or
        # the port is gone), half a drain delay later.
        deadline = signaled + 30
        while not any(t > signaled and r != 200 for t, r in probes):
            assert time.monotonic() < deadline, "readiness never stopped answering 200"
            await asyncio.sleep(0.02)
        failed_at = next(t for t, r in probes if t > signaled and r != 200)
        await asyncio.sleep(DRAIN_DELAY_S / 2)
        load.stop.set()
        await asyncio.gather(*tasks, prober)
        response = await csv
        code = await asyncio.to_thread(pair.proc.wait, 60)
        return {"load": load, "probes": probes, "signaled": signaled, "failed_at": failed_at,
                "csv": response, "code": code}

    got = asyncio.run(scenario())
    load: Load = got["load"]
    signaled, failed_at = got["signaled"], got["failed_at"]
    first_failure = next(r for t, r in got["probes"] if t == failed_at)
    after = load.between(signaled, float("inf"))
    print(f"\nSIGTERM: readiness {first_failure} after {failed_at - signaled:.2f} s; "
          f"requests sent after SIGTERM {dict(after)}; exit code {got['code']}")
    # Accepted before SIGTERM (sent a moment before it): every request completes, the CSV
    # with every row.
    accepted = load.between(0, signaled - 0.2)
    assert accepted[200] > 0 and set(accepted) == {200}, accepted
    resp = got["csv"]
    assert resp.status_code == 200, resp.text[:300]
    assert len(pd.read_csv(io.BytesIO(resp.content))) == rows
    assert got["code"] == 0 and "Traceback" not in pair.log_text()
    if not DRAIN_WIRED:
        pytest.xfail("service.py does not add riskserve.lifecycle.DrainMiddleware yet: "
                     f"readiness went straight to {first_failure}, requests after SIGTERM "
                     f"{dict(after)}")
    assert first_failure == 503 and failed_at - signaled < 1.0
    # During the drain delay nothing is refused: callers that honour readiness lose nothing.
    assert set(after) == {200}, after


@pytest.mark.skipif(not MODELS_CHECKED, reason="service.py's on_deployment hook does not call "
                    "riskserve.lifecycle.check_models_load yet: a broken model only kills "
                    "workers, which circus respawns, and `bentoml serve` stays up")
@pytest.mark.parametrize(("name", "file", "how"), BROKEN[:2])
def test_broken_model_file_refuses_to_start(trained: dict, bentoml_home: Path, tmp_path: Path,
                                            name: str, file: str, how: str) -> None:
    home = copy_store(bentoml_home, tmp_path / "home")
    version, directory = version_dir(home, name)
    file = served_file(directory) if file == SERVED else file
    break_file(directory / file, how)
    code, log = serve_until_exit(home, tmp_path)
    assert code != 0
    lines = [line for line in log.splitlines() if "cannot be loaded" in line]
    assert len(lines) == 1, log[-2000:]
    assert f"model '{name}' version '{version}'" in lines[0] and file in lines[0]
    assert "Traceback" not in log


def test_a_setting_that_does_not_parse_refuses_to_start_in_one_line(
        trained: dict, bentoml_home: Path, tmp_path: Path) -> None:
    served = server.start(tmp_path / "serve.log", {"BENTOML_HOME": str(bentoml_home),
                                                   "RISKSERVE_GRPC_INTAKE_DEPTH": "lots"},
                          wait=False)
    try:
        code = served.proc.wait(timeout=90)
    finally:
        served.stop()
    log = served.log_text()
    assert code != 0
    assert "Traceback" not in log, log[-2000:]
    lines = [line for line in log.splitlines() if line.startswith("riskserve: ")]
    assert lines == ["riskserve: RISKSERVE_GRPC_INTAKE_DEPTH='lots': input should be a valid "
                     "integer, unable to parse string as an integer; see the settings table in "
                     "the README"], log[-2000:]


def copy_store(source: Path, home: Path) -> Path:
    """A private copy of the session store (models and pointers) to break."""
    for part in ("models", "riskserve"):
        shutil.copytree(source / part, home / part, symlinks=True)
    return home


def serve_until_exit(home: Path, tmp_path: Path) -> tuple[int, str]:
    """`bentoml serve` on `home`, expected to refuse to start: its exit code and log."""
    served = server.start(tmp_path / "serve.log", {"BENTOML_HOME": str(home)}, workers=2,
                          wait=False)
    try:
        code = served.proc.wait(timeout=90)
    finally:
        served.stop()
    return code, served.log_text()


def garble(path: Path) -> None:
    path.write_bytes(b":\x00{ not json, not yaml")


# How a store becomes unreadable as root (chmod cannot hide a folder from root): the
# production pointer or a version's BentoML metadata garbled, or a version's folder gone.
UNREADABLE = {
    "pointer": lambda home, d: garble(home / "riskserve" / "production.json"),
    "metadata": lambda home, d: garble(d / "model.yaml"),
    "folder": lambda home, d: shutil.rmtree(d.parent),
}


@pytest.mark.parametrize("case", ["pointer", "metadata", "folder"])
def test_unreadable_store_refuses_to_start(trained: dict, bentoml_home: Path, tmp_path: Path,
                                           case: str) -> None:
    home = copy_store(bentoml_home, tmp_path / "store")
    _, directory = version_dir(home, "fraud")
    UNREADABLE[case](home, directory)
    code, log = serve_until_exit(home, tmp_path)
    assert code != 0
    assert "Traceback" not in log, log[-2000:]
    lines = [line for line in log.splitlines() if line.startswith("riskserve: ")]
    # the pointer file is every model's: its line names the file (and the first model read)
    expected = "production.json" if case == "pointer" else "'fraud'"
    assert len(lines) == 1 and expected in lines[0], log[-2000:]
