"""`python -m benchmarks` (`make bench`): riskserve against the limit and its peers, in one run.

For fraud (XGBoost) and risk-flag (LightGBM): single-row online requests at 1, 8, 32 and 64
concurrent clients over riskserve's HTTP /v1, /v2 and gRPC, the same models in the
seed-style FastAPI app and in MLServer 1.7 (REST and gRPC), the raw in-process predict (the
limit), and a 100k-row CSV. Every server runs with the same worker count (headline: 2; one
worker is measured at the headline concurrency too). Results go to
reports/bench/<timestamp>/ (results.md, results.png, results.json, server logs) and the latest
copy to benchmarks/RESULTS.md and benchmarks/results.png.

Bounded: each cell runs `--seconds` after a `--warmup` and at most `--max-requests`, every
request times out, servers listen on 127.0.0.1 only, and the whole run fits in 10 minutes on
2 cores (first run included: it trains the models and builds the peer venvs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks import load, payloads, report, servers
from benchmarks.report import CsvRow, Row
from benchmarks.servers import CACHE, REPO, Running, Stored, log

MODELS = ("fraud", "risk-flag")
TRAIN_FULL = ("fraud", "risk-flag")
# The service loads every model at start; the others only need to exist, so they train quick.
TRAIN_QUICK = ("cyber-threat", "phishing", "keystroke-svm", "keystroke-rf", "keystroke-xgb")
KEY = "bench-key"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--workers", type=int, default=2, help="headline worker count (all servers)")
    p.add_argument("--also-workers", type=ints, default=[1],
                   help="other worker counts, measured at --headline-clients only")
    p.add_argument("--clients", type=ints, default=[1, 8, 32, 64])
    p.add_argument("--headline-clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=0.5,
                   help="unmeasured seconds before each round of a cell")
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved rounds per cell (the targets alternate between rounds)")
    p.add_argument("--max-requests", type=int, default=60_000, help="request budget per slice")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--peers", default="seed,mlserver", help="peers to run (empty: none)")
    p.add_argument("--csv-rows", type=int, default=100_000, help="0 skips the CSV runs")
    p.add_argument("--riskserve-env", action="append", default=[], metavar="K=V",
                   help="extra environment for riskserve (tuning experiments)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--no-publish", action="store_true",
                   help="do not copy the results to benchmarks/RESULTS.md and results.png")
    return p.parse_args(argv)


def ensure_trained() -> None:
    """Train into the bench store what it lacks: fraud and risk-flag full size, others quick."""
    reports = CACHE / "training-reports"
    for names, quick in ((TRAIN_FULL, False), (TRAIN_QUICK, True)):
        cmd = [sys.executable, "-m", "training", *names, "--missing-only",
               "--reports", str(reports), *(["--quick"] if quick else [])]
        subprocess.run(cmd, check=True, cwd=REPO, timeout=600, stdout=subprocess.DEVNULL)


def load_models(names: list[str]) -> dict[str, Stored]:
    from riskserve.core import store

    out = {}
    for name in names:
        stored = store.get_version(name, store.production_version(name))
        out[name] = Stored(store.load_stored(stored), Path(stored.path))
    return out


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


def software() -> str:
    from importlib.metadata import version

    def peer(kind: str, pkg: str) -> str:
        for line in servers.LOCKS[kind].read_text().splitlines():
            if line.startswith(f"{pkg}=="):
                return line.split("==")[1]
        return "?"

    return (f"riskserve on BentoML {version('bentoml')}, uvicorn {version('uvicorn')}, "
            f"xgboost {version('xgboost-cpu')}, lightgbm {version('lightgbm')}; "
            f"peers: FastAPI {peer('fastapi', 'fastapi')} + uvicorn {peer('fastapi', 'uvicorn')}, "
            f"MLServer {peer('mlserver', 'mlserver')}; load generator aiohttp "
            f"{version('aiohttp')} / grpcio {version('grpcio')}")


@dataclass
class Target:
    """One way to send a model's single-row requests to one running server."""

    server: str
    protocol: str
    running: Running
    where: str  # URL (HTTP) or host:port (gRPC)
    bodies: list[bytes]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_grpc(self) -> bool:
        return self.protocol == "grpc"

    @property
    def check_name(self) -> str:
        if self.server == "riskserve":
            return f"riskserve-{self.protocol}"
        return "seed" if self.server == "seed" else f"mlserver-{self.protocol}"

    async def run(self, clients: int, args: argparse.Namespace, seconds: float) -> load.Result:
        probe = self.running.cpu_seconds
        if self.is_grpc:
            metadata = tuple(self.headers.items())
            return await load.grpc_load(self.where, payloads.GRPC_INFER, self.bodies, metadata,
                                        clients, seconds, args.max_requests, args.warmup,
                                        probe=probe)
        headers = {"content-type": "application/json", **self.headers}
        return await load.http_load(self.where, self.bodies, headers, clients, seconds,
                                    args.max_requests, args.warmup, probe=probe)


def combine(parts: list[load.Result]) -> load.Result:
    """Rounds of one cell as one result: counts and times add up, latencies pool."""
    errors: Counter[str] = Counter()
    for p in parts:
        errors.update(p.errors)
    return load.Result(parts[0].clients, sum(p.seconds for p in parts), sum(p.ok for p in parts),
                       errors, np.concatenate([p.latencies_ms for p in parts]),
                       sum(p.client_cpu_s for p in parts), sum(p.server_cpu_s for p in parts))


class Bench:
    """Runs cells and keeps every measured row."""

    def __init__(self, args: argparse.Namespace, models: dict[str, Stored]) -> None:
        self.args = args
        self.models = models
        self.bodies = {n: payloads.bodies(m.model) for n, m in models.items()}
        self.rows: list[Row] = []
        self.csv_rows: list[CsvRow] = []

    def record(self, model: str, workers: int, server: str, protocol: str,
               result: load.Result, rss: float, spread: float = float("nan")) -> None:
        kinds = ", ".join(f"{k}×{v}" for k, v in result.errors.most_common(3))
        row = Row(model, workers, result.clients, server, protocol, result.rps, result.p50,
                  result.p95, result.p99, result.ok + result.error_count, result.error_count,
                  kinds, rss, result.client_cpu_s / result.seconds if result.seconds else 0.0,
                  result.server_cpu_ms_per_request, spread)
        self.rows.append(row)
        log(f"  {model:9} w={workers} c={result.clients:<3} {row.label:20} "
            f"{row.rps:8.0f} req/s ±{spread:4.0%}  p50 {row.p50:6.2f}  p99 {row.p99:7.2f} ms  "
            f"errors {row.errors}  rss {rss:5.0f} MiB  server cpu/req {row.cpu_ms:.2f} ms  "
            f"client cpu {row.client_cpu:.2f}")

    def cells(self, targets: list[Target], model: str, workers: int, clients: list[int]) -> None:
        """Every target at every concurrency, in interleaved rounds.

        The machine may be shared: rounds alternate the targets so that background load
        lands on all of them alike instead of on whichever ran at the wrong moment.
        """
        a = self.args
        slice_s = a.seconds / a.rounds
        for c in clients:
            parts: dict[int, list[load.Result]] = {i: [] for i in range(len(targets))}
            for _ in range(a.rounds):
                for i, t in enumerate(targets):
                    parts[i].append(asyncio.run(t.run(c, a, slice_s)))
            for i, t in enumerate(targets):
                rates = [p.rps for p in parts[i]]
                mean = float(np.mean(rates))
                spread = (max(rates) - min(rates)) / 2 / mean if mean else float("nan")
                self.record(model, workers, t.server, t.protocol, combine(parts[i]),
                            t.running.rss_mb(), spread)

    def limits(self, workers: int) -> None:
        from benchmarks.inprocess import single_row_limit

        for name in self.models:
            result = single_row_limit(name, workers, self.args.seconds, self.args.max_requests)
            result.server_cpu_s = float(result.latencies_ms.sum()) / 1000  # busy time per call
            self.record(name, workers, "limit", "inprocess", result, float("nan"))


def check_answer(target: Target, expected: float, model: str) -> None:
    """One request: the server must answer what the in-process model answers for the row."""
    import grpc

    from riskserve.oip._proto import grpc_predict_v2_pb2 as pb
    from riskserve.oip._proto import grpc_predict_v2_pb2_grpc as pb_grpc

    load.require_loopback(target.where)
    body = target.bodies[0]
    if target.is_grpc:
        with grpc.insecure_channel(target.where) as ch:
            resp = pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(
                pb.ModelInferRequest.FromString(body), timeout=10,
                metadata=tuple(target.headers.items()))
        got = payloads.positive_probability(target.check_name, resp.SerializeToString())
    else:
        r = httpx.post(target.where, content=body, timeout=10,
                       headers={"content-type": "application/json", **target.headers})
        if r.status_code != 200:
            raise RuntimeError(f"{target.check_name} answered {r.status_code}: {r.text[:300]}")
        got = payloads.positive_probability(target.check_name, r.content)
    if not np.isclose(got, expected, rtol=1e-4, atol=1e-6):
        raise RuntimeError(f"{target.check_name} scored {model} row 0 as {got}, in-process "
                           f"says {expected}: not the same model or encoding")


def targets_for(name: str, b: payloads.Bodies, servers_up: dict[str, Running]
                ) -> list[Target]:
    out = []
    if rs := servers_up.get("riskserve"):
        out += [Target("riskserve", "v1", rs, f"{rs.http_url}/v1/predict", b.v1, rs.headers),
                Target("riskserve", "v2", rs, f"{rs.http_url}/v2/models/{name}/infer", b.v2,
                       rs.headers),
                Target("riskserve", "grpc", rs, rs.grpc_target or "", b.grpc,
                       {"x-api-key": KEY})]
    if seed := servers_up.get("seed"):
        out.append(Target("seed", "http", seed, f"{seed.http_url}/predict/{name}", b.seed))
    if ml := servers_up.get("mlserver"):
        out += [Target("mlserver", "rest", ml, f"{ml.http_url}/v2/models/{name}/infer",
                       b.mlserver_rest),
                Target("mlserver", "grpc", ml, ml.grpc_target or "", b.mlserver_grpc)]
    return out


def _timed_post(url: str, **kwargs: Any) -> tuple[float, httpx.Response]:
    load.require_loopback(url)
    t0 = time.perf_counter()
    resp = httpx.post(url, timeout=180, **kwargs)
    return time.perf_counter() - t0, resp


def run_csv(bench: Bench, servers_up: dict[str, Running], name: str, workers: int,
            payload: bytes) -> None:
    """One 100k-row file per server; rows out must equal rows in."""
    rows_in = payload.count(b"\n") - 1
    csv_file = {"file": ("rows.csv", payload, "text/csv")}
    for server, running in servers_up.items():
        if server == "riskserve":
            how = "POST /v1/predict_csv (multipart, validated, streamed back)"
            secs, r = _timed_post(f"{running.http_url}/v1/predict_csv", headers=running.headers,
                                  files=csv_file, data={"model": name})
            rows_out = r.content.count(b"\n") - 1
        elif server == "seed":
            how = "POST /predict_csv (UploadFile, one pandas frame)"
            secs, r = _timed_post(f"{running.http_url}/predict_csv/{name}", files=csv_file)
            rows_out = r.content.count(b"\n") - 1
        else:
            # MLServer has no CSV endpoint: the client encodes the file and sends one tensor.
            import io

            import pandas as pd

            frame = pd.read_csv(io.BytesIO(payload))
            x = payloads.encoded(bench.models[name].model, payloads.records(name, frame))
            how = "POST /v2 infer: one FP32 tensor, encoded by the client (not CSV)"
            secs, r = _timed_post(f"{running.http_url}/v2/models/{name}/infer",
                                  content=payloads.mlserver_body(x),
                                  headers={"content-type": "application/json"})
            rows_out = int(r.json()["outputs"][0]["shape"][0]) if r.status_code == 200 else 0
        if r.status_code != 200:
            raise RuntimeError(f"{server} CSV answered {r.status_code}: {r.text[:300]}")
        label = {"riskserve": "riskserve", "seed": "seed FastAPI", "mlserver": "MLServer"}[server]
        bench.csv_rows.append(CsvRow(name, workers, label, how, rows_in, rows_out, secs,
                                     running.rss_mb()))
        log(f"  {name:9} CSV {label:13} {secs:6.2f} s  rows {rows_in} -> {rows_out}")


def start_all(bench: Bench, workers: int, peers: list[str], logs: Path) -> dict[str, Running]:
    """Every server at `workers`, side by side (each idles while another is measured)."""
    up: dict[str, Running] = {}
    try:
        extra = dict(kv.split("=", 1) for kv in bench.args.riskserve_env)
        up["riskserve"] = servers.start_riskserve(workers, logs, env=extra, key=KEY)
        if "seed" in peers:
            pickle_path = CACHE / "seed-models.pkl"
            servers.write_seed_pickle(bench.models, pickle_path)
            up["seed"] = servers.start_seed(workers, pickle_path, logs)
        if "mlserver" in peers:
            up["mlserver"] = servers.start_mlserver(workers, bench.models, logs)
    except BaseException:
        stop_all(up)
        raise
    return up


def stop_all(up: dict[str, Running]) -> None:
    for running in up.values():
        running.stop()


def csv_payloads(names: list[str], rows: int) -> dict[str, bytes]:
    if rows <= 0:
        return {}
    return {n: payloads.sample_frame(n, rows, seed=5).to_csv(index=False).encode() for n in names}


METHOD = """\
- Closed loop: C clients each send one single-row request, wait for the answer, send the
  next ({seconds:g} s measured per cell, in rounds each after {warmup:g} s of warm-up, at most
  {max_requests:,} requests per round, 10 s timeout per request). req/s counts successful
  answers; p50/p95/p99 are over them; errors are any other status or a timeout. The load
  generator (Python: aiohttp for HTTP with keep-alive connections, grpc.aio with one channel
  per client) runs on the same 2 cores as the server, the same for every server.
- Same model version everywhere: riskserve loads it from the BentoML store; the seed-style
  FastAPI app unpickles the same booster (XGBClassifier / LightGBM Booster) with the encoder's
  tables and builds a pandas DataFrame per request; MLServer's xgboost / lightgbm runtimes load
  the stored model.ubj / model.txt. Before each server is measured, its answer for one row is
  checked against the in-process prediction.
- The seed app runs under `uvicorn --workers N` through benchmarks/seed_serve.py, which only
  restores TCP_NODELAY: stock `uvicorn --workers` (0.54) leaves Nagle on (uvicorn issue
  #3149) and then answers every keep-alive request ~45 ms late (48 ms p50 at one client).
- MLServer gets each row already encoded (one FP32 tensor [1, F], encoded by riskserve's
  Encoder in the client), because its runtimes take only the estimator's float matrix;
  riskserve and the seed app receive raw fields (categories as strings) and encode them
  server-side. riskserve also checks an API key and validates every field; the peers do not.
- Workers: riskserve `RISKSERVE_WORKERS=N` (BentoML worker processes), the seed app
  `uvicorn --workers N`, MLServer `parallel_workers: N` (inference processes behind its one
  HTTP/gRPC front process). One OpenMP thread per model call everywhere (riskserve sets
  nthread=1; the peers run with OMP_NUM_THREADS=1), so no server oversubscribes the cores.
  All servers run side by side, each idle while another is measured; each cell is split into
  {rounds} rounds that alternate the targets, so background load on a shared machine falls on
  all of them alike. RSS is the sum over the server's whole process tree after the cell;
  server CPU ms/req is that tree's user+system CPU time over the measured window divided by
  the requests answered (robust to other load, unlike req/s).
- × seed FastAPI / × MLServer: riskserve's req/s divided by the peer's at the same model,
  clients and workers (MLServer REST for /v1 and /v2, MLServer gRPC for gRPC). "of limit":
  req/s divided by the in-process limit: `validation.columns_from_records` +
  `ScoringModel.predict` of one row in a loop, in N processes, no server (its latency columns
  are per call).
- CSV: one upload of {csv_rows:,} generated rows (best of 2), rows out counted in the answer.
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    names = [n for n in args.models.split(",") if n]
    peers = [p for p in args.peers.split(",") if p]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or REPO / "reports" / "bench" / stamp
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    log(f"model store {os.environ['BENTOML_HOME']}: training what is missing")
    ensure_trained()
    for kind in ("fastapi" if "seed" in peers else "", "mlserver" if "mlserver" in peers else ""):
        if kind:
            servers.ensure_venv(kind)
    models = load_models(names)
    bench = Bench(args, models)
    csv = csv_payloads(names, args.csv_rows)

    plan = [(args.workers, args.clients, csv)] + [
        (w, [args.headline_clients], {}) for w in args.also_workers if w != args.workers]
    load_before = os.getloadavg()
    for workers, clients, csv_now in plan:
        log(f"in-process limit, {workers} process(es)")
        bench.limits(workers)
        for name, payload in csv_now.items():
            from benchmarks.inprocess import csv_limit

            secs, rows_out = csv_limit(name, payload)
            bench.csv_rows.append(CsvRow(name, workers, "in-process (limit)", "pandas read + "
                                         "validate + predict + to_csv", payload.count(b"\n") - 1,
                                         rows_out, secs, float("nan")))
        log(f"starting {', '.join(['riskserve', *peers])} with {workers} worker(s) each")
        up = start_all(bench, workers, peers, logs)
        try:
            for name, b in bench.bodies.items():
                targets = targets_for(name, b, up)
                for t in targets:
                    check_answer(t, float(b.expected[0]), name)
                bench.cells(targets, name, workers, clients)
            for name, payload in csv_now.items():
                run_csv(bench, up, name, workers, payload)
        finally:
            stop_all(up)
    load_after = os.getloadavg()

    wall = time.monotonic() - started
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "software": software(), "wall_s": wall,
        "load": f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (1-min load average)",
        "command": "make bench" if argv is None and len(sys.argv) <= 1
        else "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "method": METHOD.format(seconds=args.seconds, warmup=args.warmup, rounds=args.rounds,
                                max_requests=args.max_requests, csv_rows=args.csv_rows),
    }
    md = report.markdown(bench.rows, bench.csv_rows, meta, args.workers, args.headline_clients)
    (out / "results.md").write_text(md)
    report.plot(bench.rows, out / "results.png", args.workers,
                f"riskserve vs peers, single-row requests, {args.workers} workers — "
                f"{meta['machine']}")
    (out / "results.json").write_text(json.dumps({"meta": meta, **report.to_json(
        bench.rows, bench.csv_rows)}, indent=1, default=float))
    if not args.no_publish:
        shutil.copy(out / "results.md", REPO / "benchmarks" / "RESULTS.md")
        shutil.copy(out / "results.png", REPO / "benchmarks" / "results.png")
    log(f"done in {wall:.0f} s: {out / 'results.md'}")
    return 0
