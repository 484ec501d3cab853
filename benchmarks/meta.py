"""What a reader needs beside the numbers: the machine, the software versions, the method."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping
from importlib.metadata import version
from pathlib import Path

from benchmarks import servers


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    distro = platform.freedesktop_os_release().get("PRETTY_NAME", platform.system()) \
        if hasattr(platform, "freedesktop_os_release") else platform.system()
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {distro}, "
            f"Linux {platform.release()}, Python {platform.python_version()}")


def settle(below: float, deadline_s: float, poll_s: float = 2.0,
           load: Callable[[], float] = lambda: os.getloadavg()[0],
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> tuple[float, float]:
    """Wait, up to `deadline_s`, for the 1-minute load average to fall below `below`; return
    the last reading and the seconds waited.

    Why: the work just before a run (training the bench store, a test run) leaves the average
    at 1.0-1.7 on 2 cores, and the first cells then share the CPU with its tail; the average
    decays with a one-minute time constant, so from 1.7 to 0.5 takes about 75 s. A machine that
    never gets that quiet is measured anyway once the deadline passes (and says so)."""
    start = clock()
    reading = load()
    while reading >= below and clock() - start < deadline_s:
        sleep(poll_s)  # polling interval; the reading is what the loop checks
        reading = load()
    return reading, clock() - start


def idle_cpu(cpu_seconds: Mapping[str, Callable[[], float]], window_s: float = 3.0,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> dict[str, float]:
    """Each server's CPU draw while nobody calls it, as a share of one core, over `window_s`.

    Why: every server stays up while the others are measured, and "idle" is not free for all
    of them (Ray Serve runs a dozen processes); what an idle server draws, every cell measured
    meanwhile runs without. The full bench's fraud gRPC cell fell from 0.85-0.87x to 0.81-0.84x
    of REST with the peers up (2026-12-06, two runs of each)."""
    before = {name: read() for name, read in cpu_seconds.items()}
    start = clock()
    sleep(window_s)  # the measuring window: no load runs during it
    elapsed = clock() - start
    return {name: (read() - before[name]) / elapsed for name, read in cpu_seconds.items()}


def _locked(kind: str, pkg: str) -> str:
    """A peer's version from its lock file (the peers run in venvs of their own)."""
    lock = servers.LOCKS[kind]
    if lock.is_file():
        for line in lock.read_text().splitlines():
            if line.lower().startswith(f"{pkg}=="):
                return line.split("==")[1].strip()
    return "?"


def software(peers: list[str]) -> str:
    names = {"seed": f"FastAPI {_locked('fastapi', 'fastapi')} + uvicorn "
                     f"{_locked('fastapi', 'uvicorn')}",
             "mlserver": f"MLServer {_locked('mlserver', 'mlserver')}",
             "kserve": f"KServe {_locked('kserve', 'kserve')}",
             "ray": f"Ray Serve {_locked('ray', 'ray')}"}
    listed = ", ".join(names[p] for p in peers if p in names) or "none"
    return (f"riskserve on BentoML {version('bentoml')}, uvicorn {version('uvicorn')}, "
            f"xgboost {version('xgboost-cpu')}, lightgbm {version('lightgbm')}, "
            f"scikit-learn {version('scikit-learn')}; peers: {listed}; load generator "
            f"{_http_client()} / {_grpc_client()}")


def _http_client() -> str:
    from benchmarks import load

    if load.http_client() == "aiohttp":
        return f"aiohttp {version('aiohttp')} (wrk not installed)"
    try:  # `wrk -v` prints its version and exits 1
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out.split(" [")[0].strip() or "wrk"


def _grpc_client() -> str:
    from benchmarks import load

    if load.grpc_client() == "grpcio":
        return f"grpc.aio {version('grpcio')} (h2load not installed)"
    try:
        out = subprocess.run(["h2load", "--version"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out.strip().splitlines()[0] if out.strip() else "h2load"


METHOD = """\
- Closed loop: C clients each send one single-row request, wait for the answer, send the
  next ({seconds:g} s measured per cell, in {rounds} rounds each after {warmup:g} s of warm-up,
  at most {max_requests:,} requests per round, 10 s timeout per request). req/s counts
  successful answers; p50/p95/p99 are over them; errors are any other status or a timeout.
  The load generator (HTTP: Debian's `wrk`, one thread, keep-alive connections, cycling
  pre-formatted requests, falling back to aiohttp where wrk is not installed; gRPC: nghttp2's
  `h2load`, one thread, one HTTP/2 connection per client, one stream at a time, sending the
  first row's request (checked first with a real gRPC call: h2load sees HTTP statuses, not
  gRPC ones), falling back to grpc.aio with one channel per client) runs on the same 2 cores
  as the server, the same for every server. wrk reports a latency histogram: percentiles are
  read from 1000 of its quantiles; h2load logs every request's latency.
- Same model version everywhere: riskserve loads it from the BentoML store; the seed-style
  FastAPI app unpickles the same estimator (XGBClassifier / LightGBM Booster / the fitted
  scikit-learn forest or SVM pipeline, with the n_jobs it was trained with) with the encoder's
  tables and builds a pandas DataFrame per request; MLServer's xgboost / lightgbm runtimes,
  the KServe `kserve.Model` (benchmarks/kserve_app.py) and the Ray Serve deployment
  (benchmarks/ray_app.py) load the stored model.ubj / model.txt. Before each server is
  measured, its answer for one row is checked against the in-process prediction.
- The seed app runs under `uvicorn --workers N` through benchmarks/seed_serve.py, which only
  restores TCP_NODELAY: stock `uvicorn --workers` (0.54) leaves Nagle on (uvicorn issue
  #3149) and then answers every keep-alive request ~45 ms late (48 ms p50 at one client).
- The tensor peers (MLServer, KServe, Ray Serve) get each row already encoded (one FP32
  tensor [1, F], encoded by riskserve's Encoder in the client), because their runtimes take
  only the estimator's float matrix; riskserve and the seed app receive raw fields
  (categories as strings) and encode them server-side. riskserve also checks an API key and
  validates every field; the peers do not.
- Workers: riskserve `RISKSERVE_WORKERS=N` (BentoML worker processes), the seed app
  `uvicorn --workers N`, MLServer `parallel_workers: N` (inference processes behind its one
  HTTP/gRPC front process), KServe `--workers N` (uvicorn processes), Ray Serve
  `num_replicas: N` with one CPU each (`ray.init(num_cpus=N)`, behind Ray's HTTP proxy). One
  OpenMP thread per model call everywhere (riskserve sets nthread=1; the peers run with
  OMP_NUM_THREADS=1), so no server oversubscribes the cores. All servers run side by side,
  each idle while another is measured; what each draws idle (a share of one core, over 3 s
  once all are up) is in the cold-start table: every cell runs beside that. Each cell is split
  into rounds that alternate the targets, so background load on a shared machine falls on all
  of them alike. RSS is the sum over the server's whole process tree after the cell; server
  CPU ms/req is that tree's user+system CPU time over the measured window divided by the
  requests answered (robust to other load, unlike req/s).
- × seed / × MLServer / × KServe / × Ray: riskserve's req/s divided by the peer's at the same
  model, clients and workers (MLServer REST for /v1 and /v2, MLServer gRPC for gRPC). "of
  limit": req/s divided by the in-process limit: `validation.columns_from_records` +
  `ScoringModel.predict` of one row in a loop, in N processes, no server (its latency columns
  are per call).
- Noisy neighbour: fraud /v1 at {fraud_clients} clients, alone and beside {heavy_clients}
  clients on each heavy model (single rows over /v1/predict), {neighbour_rounds} rounds of
  {neighbour_seconds:g} s each; every ratio is against the alone cell of the same round.
- Cold start: from launching the server process to ready (riskserve: /readyz 200 and every
  worker's startup hook, which starts its gRPC server, logged; the peers: every model's v2
  ready endpoint 200, or Ray Serve's `serve.run` returned). RSS per worker: the process
  tree's RSS right after start divided by N.
- Baseline (`--baseline REF`): riskserve at REF, from a git worktree, same venv, same model
  store, measured in the same rounds as the current checkout; ratio = current / baseline.
- CSV: one upload of each size (generated rows, best of {csv_tries}) after one untimed
  2,000-row upload per worker (a version's first large batch loads its native model, once per
  worker), rows out counted in the answer. The in-process limit reads, validates, scores and
  writes the file the way the service does (the caller's lines plus the new cells), with the
  native model loaded before the clock starts.
"""
