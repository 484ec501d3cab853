"""Closed-loop load generator: C clients, each sending its next request as soon as the last
one answered, over HTTP (Debian's `wrk` when installed, else aiohttp) or gRPC (nghttp2's
`h2load` when installed, else grpc.aio).

Every run is bounded twice, by wall time and by a request budget, and every request has its
own timeout, so a stalled server ends a run instead of hanging it. Only loopback URLs are
accepted: the benchmark must never send traffic anywhere else.

Bodies are serialised once before the run and cycled, so the client spends its CPU on HTTP and
gRPC, not on building JSON; the client shares the machine with the server under test, and the
same client drives every server, so the comparison stays fair. That is also why HTTP prefers
`wrk` (C, one thread): an aiohttp client at 32 connections takes most of a core from the two the
servers share, so the fastest servers measured partly the client (~25 % fewer req/s than wrk).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import grpc
import numpy as np

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def require_loopback(url_or_target: str) -> None:
    """Refuse any target that is not on this machine's loopback interface."""
    host = urlsplit(url_or_target if "//" in url_or_target else f"//{url_or_target}").hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"benchmark traffic goes to loopback only, not to {url_or_target!r}")


@dataclass
class Result:
    """What one run measured. Latencies are of successful requests, in milliseconds."""

    clients: int
    seconds: float
    ok: int
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    client_cpu_s: float = 0.0
    server_cpu_s: float = float("nan")

    @property
    def server_cpu_ms_per_request(self) -> float:
        """Server CPU time per answered request: robust to other load on a shared machine."""
        done = self.ok + self.error_count
        return self.server_cpu_s / done * 1000 if done else float("nan")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not len(self.latencies_ms):
            return float("nan")
        return float(np.percentile(self.latencies_ms, q))

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def p99(self) -> float:
        return self.percentile(99)


# One request: returns None on success or a short error label ("503", "timeout", ...).
Call = Callable[[int], Awaitable[str | None]]
# The server's CPU seconds so far (its whole process tree), read at the window's edges.
CpuProbe = Callable[[], float]


def _no_probe() -> float:
    return float("nan")


async def _closed_loop(call: Call, clients: int, seconds: float, max_requests: int,
                       warmup_s: float, probe: CpuProbe = _no_probe) -> Result:
    """Run `clients` loops of `call` for `warmup_s` (discarded) then `seconds` (measured)."""
    budget = itertools.count()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    measuring = False
    stop_at = time.perf_counter() + warmup_s + seconds

    async def client(index: int) -> None:
        seq = index
        while time.perf_counter() < stop_at:
            if measuring and next(budget) >= max_requests:
                return
            t0 = time.perf_counter()
            error = await call(seq)
            elapsed = time.perf_counter() - t0
            seq += clients
            if not measuring:
                continue
            if error is None:
                latencies.append(elapsed * 1000)
            else:
                errors[error] += 1

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    try:
        await asyncio.sleep(warmup_s)  # the warm-up window, then measure from here
        measuring = True
        cpu0, server0, t0 = os.times(), probe(), time.perf_counter()
        # A budget-exhausted run ends early; the deadline bounds the rest.
        await asyncio.wait(tasks, timeout=seconds + 30)
        elapsed = min(time.perf_counter(), stop_at) - t0
        cpu1, server1 = os.times(), probe()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Result(clients, elapsed, len(latencies), errors, np.asarray(latencies),
                  (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), server1 - server0)


def http_client() -> str:
    """The HTTP load generator used: `wrk` when on PATH (RISKSERVE_BENCH_HTTP_CLIENT=aiohttp
    forces the Python one)."""
    wanted = os.environ.get("RISKSERVE_BENCH_HTTP_CLIENT", "wrk")
    return "wrk" if wanted == "wrk" and shutil.which("wrk") else "aiohttp"


async def http_load(url: str, bodies: Sequence[bytes], headers: dict[str, str], clients: int,
                    seconds: float, max_requests: int, warmup_s: float = 1.0,
                    timeout_s: float = 10.0, probe: CpuProbe = _no_probe) -> Result:
    """POST `bodies` (cycled) to `url` from `clients` keep-alive connections."""
    require_loopback(url)
    if http_client() == "wrk":
        return await wrk_load(url, bodies, headers, clients, seconds, warmup_s, timeout_s, probe)
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers=headers) as session:

        async def call(seq: int) -> str | None:
            try:
                async with session.post(url, data=bodies[seq % len(bodies)]) as resp:
                    await resp.read()
                    return None if resp.status == 200 else str(resp.status)
            except TimeoutError:
                return "timeout"
            except aiohttp.ClientError as exc:
                return type(exc).__name__

        return await _closed_loop(call, clients, seconds, max_requests, warmup_s, probe)


def grpc_client() -> str:
    """The gRPC load generator used: nghttp2's `h2load` when on PATH, like wrk for HTTP
    (RISKSERVE_BENCH_GRPC_CLIENT=grpcio forces the Python one)."""
    wanted = os.environ.get("RISKSERVE_BENCH_GRPC_CLIENT", "h2load")
    return "h2load" if wanted == "h2load" and shutil.which("h2load") else "grpcio"


async def grpc_load(target: str, method: str, requests: Sequence[bytes],
                    metadata: tuple[tuple[str, str], ...], clients: int, seconds: float,
                    max_requests: int, warmup_s: float = 1.0, timeout_s: float = 10.0,
                    probe: CpuProbe = _no_probe) -> Result:
    """Unary calls of `method` with pre-serialised `requests`, one connection per client:
    from h2load when installed (see `h2load_load`), else from grpc.aio."""
    require_loopback(target)
    if grpc_client() == "h2load":
        return await h2load_load(target, method, requests, metadata, clients, seconds,
                                 warmup_s, timeout_s, probe)
    return await grpcio_load(target, method, requests, metadata, clients, seconds,
                             max_requests, warmup_s, timeout_s, probe)


async def grpcio_load(target: str, method: str, requests: Sequence[bytes],
                      metadata: tuple[tuple[str, str], ...], clients: int, seconds: float,
                      max_requests: int, warmup_s: float = 1.0, timeout_s: float = 10.0,
                      probe: CpuProbe = _no_probe) -> Result:
    """Unary calls of `method` with pre-serialised `requests`, one channel per client.

    A channel per client (with its own subchannel pool, or gRPC would share one TCP connection
    between them) mirrors separate callers and lets the kernel spread connections across the
    server's workers, which share the port with SO_REUSEPORT.
    """
    require_loopback(target)
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(clients)]
    try:
        stubs = [ch.unary_unary(method, request_serializer=None, response_deserializer=None)
                 for ch in channels]
        await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), timeout_s)
                               for ch in channels))

        async def call(seq: int) -> str | None:
            try:
                await stubs[seq % clients](requests[seq % len(requests)], metadata=metadata,
                                           timeout=timeout_s)
                return None
            except grpc.aio.AioRpcError as exc:
                return exc.code().name

        return await _closed_loop(call, clients, seconds, max_requests, warmup_s, probe)
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))


async def _check_grpc(target: str, method: str, request: bytes,
                      metadata: tuple[tuple[str, str], ...], timeout_s: float) -> None:
    """One real gRPC call of the body h2load will send: h2load reads HTTP/2 statuses only,
    and a gRPC error (a bad request, a refused key) comes back as HTTP 200 with a
    grpc-status trailer, so the body is proven to get status OK before it is sent at load."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            await call(request, metadata=metadata, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise RuntimeError(f"the gRPC load's request fails before any load: "
                               f"{exc.code().name}: {exc.details()}") from None


def _h2load_totals(out: str) -> dict[str, float]:
    """h2load's summary lines as numbers (`requests: ... succeeded, ... failed, ...`)."""
    totals: dict[str, float] = {}
    for line in out.splitlines():
        if line.startswith(("requests:", "status codes:")):
            for part in line.split(":", 1)[1].split(","):
                value, _, name = part.strip().partition(" ")
                totals[name] = float(value)
        elif line.startswith("finished in"):
            totals["req/s"] = float(line.split(",")[1].split()[0])
    return totals


async def _h2load(cmd: list[str], seconds: float, log: str) -> tuple[dict[str, float],
                                                                      list[list[str]]]:
    cmd = [*cmd[:1], f"-D{max(1, round(seconds))}", f"--log-file={log}", *cmd[1:]]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), seconds + 60)
    totals = _h2load_totals(out.decode())
    if "succeeded" not in totals:
        raise RuntimeError(f"h2load printed no result (exit {proc.returncode}): "
                           f"{(err or out).decode()[-300:]}")
    with open(log) as fh:
        return totals, [line.split("\t") for line in fh if line.strip()]


async def h2load_load(target: str, method: str, requests: Sequence[bytes],
                      metadata: tuple[tuple[str, str], ...], clients: int, seconds: float,
                      warmup_s: float = 1.0, timeout_s: float = 10.0,
                      probe: CpuProbe = _no_probe) -> Result:
    """`grpc_load` from nghttp2's h2load: gRPC is HTTP/2 POSTs of length-prefixed protobuf.

    C, one thread, one connection and one stream at a time per client: what wrk is for HTTP,
    so gRPC and REST are measured with the same kind of client (grpc.aio took ~0.2 ms of CPU
    per call from the two cores the servers share). A warm-up run (discarded), then the
    measured one. h2load sends one body for every request: `requests[0]`, checked first with
    a real gRPC call (`_check_grpc`). Every request's latency comes from h2load's log file;
    non-2xx, failed and timed-out requests are errors.
    """
    require_loopback(target)
    await _check_grpc(target, method, requests[0], metadata, timeout_s)
    with tempfile.TemporaryDirectory(prefix="rs-h2load-") as tmp:
        body, log = os.path.join(tmp, "body"), os.path.join(tmp, "log")
        with open(body, "wb") as fh:
            fh.write(b"\x00" + len(requests[0]).to_bytes(4, "big") + requests[0])
        headers = [("content-type", "application/grpc"), ("te", "trailers"), *metadata]
        cmd = ["h2load", f"-c{clients}", "-m1", "-t1", f"-N{max(1, round(timeout_s))}",
               "-d", body, *itertools.chain.from_iterable(("-H", f"{k}: {v}")
                                                          for k, v in headers),
               f"http://{target}{method}"]
        if warmup_s > 0:  # h2load appends to its log: the warm-up's goes to another file
            await _h2load(cmd, warmup_s, log + "-warmup")
        cpu0, server0 = os.times(), probe()
        totals, rows = await _h2load(cmd, seconds, log)
        cpu1, server1 = os.times(), probe()
    latencies = np.array([int(r[2]) / 1000 for r in rows if r[1].startswith("2")])
    errors: Counter[str] = Counter({k: int(totals.get(k, 0)) for k in ("errored", "timeout")
                                    if totals.get(k)})
    non_2xx = sum(int(totals.get(k, 0)) for k in ("3xx", "4xx", "5xx"))
    if non_2xx:
        errors["non-2xx"] = non_2xx
    failed = int(totals.get("failed", 0)) - non_2xx - errors["errored"] - errors["timeout"]
    if failed > 0:
        errors["failed"] = failed
    client = ((cpu1.children_user - cpu0.children_user)
              + (cpu1.children_system - cpu0.children_system))
    elapsed = totals["done"] / totals["req/s"] if totals.get("req/s") else max(1, round(seconds))
    return Result(clients, elapsed, len(latencies), errors, latencies, client, server1 - server0)


# wrk runs this per thread: requests pre-formatted once and cycled; `done` prints the totals,
# the error counts and 1000 latency quantiles (microseconds) as one JSON line.
_WRK_SCRIPT = """
local bodies = {%(bodies)s}
wrk.method = "POST"
wrk.headers = {%(headers)s}
local reqs, n = {}, 0
function init(args)
  for i, b in ipairs(bodies) do reqs[i] = wrk.format(nil, nil, nil, b) end
end
function request()
  n = n %% #reqs + 1
  return reqs[n]
end
function done(summary, latency, requests)
  local q = {}
  for i = 0, %(quantiles)d - 1 do
    q[#q + 1] = latency:percentile((i + 0.5) * 100 / %(quantiles)d)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "quantiles_us": [%%s]}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(q, ",")))
end
"""
WRK_QUANTILES = 1000


def _lua_string(data: bytes) -> str:
    """A Lua string literal of any bytes (decimal escapes for everything but plain ASCII)."""
    safe = set(range(0x20, 0x7F)) - {ord("\\"), ord('"')}
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in data) + '"'


def _wrk_script(bodies: Sequence[bytes], headers: dict[str, str]) -> str:
    return _WRK_SCRIPT % {
        "bodies": ",".join(_lua_string(b) for b in bodies),
        "headers": ",".join(f"[{_lua_string(k.encode())}] = {_lua_string(v.encode())}"
                            for k, v in headers.items()),
        "quantiles": WRK_QUANTILES,
    }


async def _wrk(url: str, script: str, clients: int, seconds: float,
               timeout_s: float) -> dict[str, object]:
    # wrk takes whole seconds: a 0.5 s warm-up runs for 1 s.
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s",
           f"--timeout={max(1, round(timeout_s))}s", "-s", script, url]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), seconds + timeout_s + 30)
    for line in out.decode().splitlines():
        if line.startswith("WRK "):
            return json.loads(line[4:])
    raise RuntimeError(f"wrk printed no result (exit {proc.returncode}): "
                       f"{(err or out).decode()[-300:]}")


async def wrk_load(url: str, bodies: Sequence[bytes], headers: dict[str, str], clients: int,
                   seconds: float, warmup_s: float = 1.0, timeout_s: float = 10.0,
                   probe: CpuProbe = _no_probe) -> Result:
    """`http_load` with wrk: a warm-up run (discarded), then the measured one.

    wrk reports a latency histogram, not every request: `latencies_ms` holds 1000 evenly spaced
    quantiles, each repeated for its share of the answered requests, so percentiles (and rounds
    pooled by `combine`) read the same as the aiohttp client's raw samples to 0.1 percentile.
    wrk has no request budget; the wall-time bound and the per-request timeout bound a run.
    Client CPU is this process's children's: with concurrent runs (neighbours) it is their sum.
    """
    require_loopback(url)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_wrk_script(bodies, headers))
    try:
        if warmup_s > 0:
            await _wrk(url, fh.name, clients, warmup_s, timeout_s)
        cpu0, server0 = os.times(), probe()
        r = await _wrk(url, fh.name, clients, seconds, timeout_s)
        cpu1, server1 = os.times(), probe()
    finally:
        os.unlink(fh.name)
    errors: Counter[str] = Counter({k: int(r[k]) for k in ("connect", "read", "write", "timeout")
                                    if r[k]})
    if r["status"]:
        errors["non-2xx"] = int(r["status"])
    ok = max(int(r["requests"]) - int(r["status"]), 0)
    quantiles = np.asarray(r["quantiles_us"], dtype=float) / 1000
    latencies = np.repeat(quantiles, max(1, round(ok / len(quantiles)))) if ok else np.empty(0)
    client = ((cpu1.children_user - cpu0.children_user)
              + (cpu1.children_system - cpu0.children_system))
    return Result(clients, int(r["duration_us"]) / 1e6, ok, errors, latencies, client,
                  server1 - server0)
