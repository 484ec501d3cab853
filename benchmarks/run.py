"""`python -m benchmarks` (`make bench`): riskserve against the limit, its peers and its past.

Scenarios (`--scenarios`, all by default), every server with the same worker count:
- peers: fraud (XGBoost) and risk-flag (LightGBM), single-row requests at `--clients` over
  riskserve's HTTP /v1, /v2 and gRPC, beside the seed-style FastAPI app, MLServer (REST, gRPC),
  KServe's model server (REST v2) and Ray Serve, and the raw in-process predict (the limit);
  the other worker counts (`--also-workers`) at the headline concurrency only; and the
  framework floor (benchmarks/floor.py): an empty grpc.aio servicer and an empty uvicorn app.
- keystroke: keystroke-rf and keystroke-svm the same way, against the seed app (the peers'
  booster runtimes do not take scikit-learn models).
- neighbours: fraud at 16 clients alone and beside 4 clients on each heavy model, with every
  worker count of `--neighbour-workers`, every round kept (benchmarks/neighbours.py).
- csv: one file of each `--csv-rows` size per server, and the in-process limit.
Every start is timed (cold start) and its RSS read. `--baseline REF` serves riskserve at REF
too (benchmarks/baseline.py), in the same rounds, for a per-route before/after ratio.

Results go to reports/bench/<timestamp>/ (results.md, results.png, results.json, server logs)
and the latest copy to benchmarks/RESULTS.md and benchmarks/results.png. Bounded: each cell
runs `--seconds` after a `--warmup` and at most `--max-requests`, every request times out, and
servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from benchmarks import baseline, csvbench, load, meta, neighbours, payloads, report, servers
from benchmarks.report_rows import LIMIT_LABEL, ColdRow, CsvRow, Results, Row
from benchmarks.servers import CACHE, REPO, Running, Stored, log

SCENARIOS = ("peers", "keystroke", "neighbours", "csv")
PEERS = ("seed", "mlserver", "kserve", "ray")
BOOSTER_MODELS = ("fraud", "risk-flag")
KEYSTROKE_MODELS = ("keystroke-rf", "keystroke-svm")
# Everything a scenario measures trains full size, so the heavy models cost what they really do.
TRAIN_FULL = ("fraud", "risk-flag", "keystroke-svm", "keystroke-rf", "keystroke-xgb")
# The service loads every model at start; these only need to exist, so they train quick.
TRAIN_QUICK = ("cyber-threat", "phishing")
KEY = "bench-key"
VENVS = {"seed": "fastapi", "mlserver": "mlserver", "kserve": "kserve", "ray": "ray"}


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def _names(s: str) -> list[str]:
    return [x for x in s.split(",") if x]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", type=_names, default=list(SCENARIOS),
                   help=f"comma list of {','.join(SCENARIOS)} (default: all)")
    p.add_argument("--peers", type=_names, default=list(PEERS),
                   help=f"comma list of {','.join(PEERS)} (empty: riskserve alone)")
    p.add_argument("--baseline", metavar="GIT_REF", default=None,
                   help="also serve riskserve at this commit, same rounds (e.g. 9febb48)")
    p.add_argument("--baseline-clients", type=_ints, default=[1, 32],
                   help="concurrencies at which the baseline is measured")
    p.add_argument("--workers", type=int, default=2, help="headline worker count (all servers)")
    p.add_argument("--also-workers", type=_ints, default=[1],
                   help="other worker counts for the peers scenario, at --headline-clients only")
    p.add_argument("--clients", type=_ints, default=[1, 8, 32, 64])
    p.add_argument("--keystroke-clients", type=_ints, default=[1, 8, 32])
    p.add_argument("--headline-clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=2.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=0.5,
                   help="unmeasured seconds before each round of a cell")
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved rounds per cell (the targets alternate between rounds)")
    p.add_argument("--max-requests", type=int, default=60_000, help="request budget per slice")
    p.add_argument("--models", type=_names, default=list(BOOSTER_MODELS),
                   help="models of the peers scenario")
    p.add_argument("--keystroke-models", type=_names, default=list(KEYSTROKE_MODELS))
    p.add_argument("--neighbour-workers", type=_ints, default=[1, 2])
    p.add_argument("--neighbour-rounds", type=int, default=3)
    p.add_argument("--neighbour-seconds", type=float, default=2.0,
                   help="measured seconds per neighbour cell and round")
    p.add_argument("--fraud-clients", type=int, default=16)
    p.add_argument("--heavy-clients", type=int, default=4)
    p.add_argument("--csv-rows", type=_ints, default=[100_000, 400_000],
                   help="CSV sizes (empty or 0: no CSV runs)")
    p.add_argument("--csv-tries", type=int, default=3,
                   help="uploads per CSV cell, best kept (one upload swung Ray 0.93-1.43x)")
    p.add_argument("--riskserve-env", action="append", default=[], metavar="K=V",
                   help="extra environment for riskserve (tuning experiments)")
    p.add_argument("--train-quick", action="store_true",
                   help="train missing models quick (smoke runs only: the heavy models then "
                        "cost less than they really do)")
    p.add_argument("--settle-load", type=float, default=0.5,
                   help="before the first cell, wait for the 1-min load average to fall below "
                        "this (0: do not wait)")
    p.add_argument("--settle-s", type=float, default=180.0,
                   help="the longest that wait lasts; the run then starts anyway")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--no-profiles", action="store_true",
                   help="when publishing, do not profile the missed targets into PROFILES.md")
    p.add_argument("--no-publish", action="store_true",
                   help="do not copy the results to benchmarks/RESULTS.md and results.png")
    args = p.parse_args(argv)
    unknown = (set(args.scenarios) - set(SCENARIOS)) | (set(args.peers) - set(PEERS))
    if unknown:
        p.error(f"unknown scenario or peer: {', '.join(sorted(unknown))}")
    args.csv_rows = [n for n in args.csv_rows if n > 0]
    if args.out is not None:  # servers run from other directories (the baseline's checkout)
        args.out = args.out.resolve()
    return args


def ensure_trained(all_quick: bool = False) -> None:
    """Train into the bench store what it lacks (see TRAIN_FULL / TRAIN_QUICK)."""
    reports = CACHE / "training-reports"
    for names, quick in ((TRAIN_FULL, all_quick), (TRAIN_QUICK, True)):
        cmd = [sys.executable, "-m", "training", *names, "--missing-only",
               "--reports", str(reports), *(["--quick"] if quick else [])]
        subprocess.run(cmd, check=True, cwd=REPO, timeout=1800, stdout=subprocess.DEVNULL)


def load_models(names: list[str]) -> dict[str, Stored]:
    from riskserve.core import store

    out = {}
    for name in names:
        stored = store.get_version(name, store.production_version(name))
        out[name] = Stored(store.load_stored(stored), Path(stored.path))
    return out


@dataclass
class Target:
    """One way to send a model's single-row requests to one running server."""

    server: str
    protocol: str
    running: Running
    where: str  # URL (HTTP) or host:port (gRPC)
    bodies: list[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    only_clients: tuple[int, ...] = ()  # measured at these concurrencies only (empty: all)

    @property
    def is_grpc(self) -> bool:
        return self.protocol == "grpc"

    @property
    def answer_shape(self) -> str:
        """How its answers read (payloads.answer_probability)."""
        if self.is_grpc or self.protocol == "v1":
            return self.protocol
        return "seed" if self.server == "seed" else "v2"

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
        self.cold_rows: list[ColdRow] = []
        self.neighbour_rows: list[neighbours.NeighbourRow] = []
        self.floor_rows: list[Row] = []

    def record(self, model: str, workers: int, server: str, protocol: str,
               result: load.Result, rss: float, spread: float = float("nan"),
               into: list[Row] | None = None) -> None:
        kinds = ", ".join(f"{k}×{v}" for k, v in result.errors.most_common(3))
        row = Row(model, workers, result.clients, server, protocol, result.rps, result.p50,
                  result.p95, result.p99, result.ok + result.error_count, result.error_count,
                  kinds, rss, result.client_cpu_s / result.seconds if result.seconds else 0.0,
                  result.server_cpu_ms_per_request, spread)
        (self.rows if into is None else into).append(row)
        log(f"  {model:13} w={workers} c={result.clients:<3} {row.label:22} "
            f"{row.rps:8.0f} req/s ±{spread:4.0%}  p50 {row.p50:6.2f}  p99 {row.p99:7.2f} ms  "
            f"errors {row.errors}  rss {rss:5.0f} MiB  server cpu/req {row.cpu_ms:.2f} ms")

    def cells(self, targets: list[Target], model: str, workers: int, clients: list[int],
              into: list[Row] | None = None) -> None:
        """Every target at every concurrency, in interleaved rounds (rows into `into`, else
        the run's rows).

        The machine may be shared: rounds alternate the targets so that background load
        lands on all of them alike instead of on whichever ran at the wrong moment.
        """
        a = self.args
        slice_s = a.seconds / a.rounds
        for c in clients:
            now = [t for t in targets if not t.only_clients or c in t.only_clients]
            parts: dict[int, list[load.Result]] = {i: [] for i in range(len(now))}
            for _ in range(a.rounds):
                for i, t in enumerate(now):
                    parts[i].append(asyncio.run(t.run(c, a, slice_s)))
            for i, t in enumerate(now):
                rates = [p.rps for p in parts[i]]
                mean = float(np.mean(rates))
                spread = (max(rates) - min(rates)) / 2 / mean if mean else float("nan")
                self.record(model, workers, t.server, t.protocol, combine(parts[i]),
                            t.running.rss_mb(), spread, into)

    def floors(self, workers: int, clients: list[int], logs: Path) -> None:
        """benchmarks/floor.py's empty handlers over gRPC and HTTP, fraud's request bodies,
        in the same interleaved rounds: what each protocol stack costs before any work."""
        name = "fraud" if "fraud" in self.bodies else next(iter(self.bodies))
        b = self.bodies[name]
        up = {p: servers.start_floor(p, workers, logs) for p in ("grpc", "http")}
        try:
            targets = [Target("floor", "grpc", up["grpc"], up["grpc"].grpc_target or "", b.grpc),
                       Target("floor", "v1", up["http"], up["http"].http_url, b.v1)]
            self.cells(targets, f"({name} body)", workers, clients, self.floor_rows)
        finally:
            stop_all(up)

    def limits(self, names: list[str], workers: int) -> None:
        from benchmarks.inprocess import single_row_limit

        for name in names:
            result = single_row_limit(name, workers, self.args.seconds, self.args.max_requests)
            result.server_cpu_s = float(result.latencies_ms.sum()) / 1000  # busy time per call
            self.record(name, workers, "limit", "inprocess", result, float("nan"))


def check_answer(target: Target, b: payloads.Bodies, model: str) -> None:
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
        payload = resp.SerializeToString()
    else:
        r = httpx.post(target.where, content=body, timeout=10,
                       headers={"content-type": "application/json", **target.headers})
        if r.status_code != 200:
            raise RuntimeError(f"{target.server} {target.protocol} answered {r.status_code}: "
                               f"{r.text[:300]}")
        payload = r.content
    got = payloads.answer_probability(target.answer_shape, payload, b.multiclass)
    expected = float(b.expected[0])
    if not np.isclose(got, expected, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"{target.server} {target.protocol} scored {model} row 0 as {got}, "
                           f"in-process says {expected}: not the same model or encoding")


def riskserve_targets(name: str, b: payloads.Bodies, rs: Running, server: str,
                      only_clients: tuple[int, ...] = ()) -> list[Target]:
    return [Target(server, "v1", rs, f"{rs.http_url}/v1/predict", b.v1, rs.headers,
                   only_clients),
            Target(server, "v2", rs, f"{rs.http_url}/v2/models/{name}/infer", b.v2,
                   rs.headers, only_clients),
            Target(server, "grpc", rs, rs.grpc_target or "", b.grpc, {"x-api-key": KEY},
                   only_clients)]


def targets_for(name: str, b: payloads.Bodies, up: dict[str, Running],
                args: argparse.Namespace, tensor_peers: bool) -> list[Target]:
    """Every target serving `name`: riskserve, the baseline, and the peers that take it."""
    out = riskserve_targets(name, b, up["riskserve"], "riskserve")
    if base := up.get("baseline"):
        out += riskserve_targets(name, b, base, "baseline", tuple(args.baseline_clients))
    if seed := up.get("seed"):
        out.append(Target("seed", "http", seed, f"{seed.http_url}/predict/{name}", b.seed))
    if not tensor_peers:
        return out
    v2_path = f"/v2/models/{name}/infer"
    if ml := up.get("mlserver"):
        out += [Target("mlserver", "rest", ml, ml.http_url + v2_path, b.tensor_rest),
                Target("mlserver", "grpc", ml, ml.grpc_target or "", b.tensor_grpc)]
    if ks := up.get("kserve"):
        out.append(Target("kserve", "rest", ks, ks.http_url + v2_path, b.tensor_rest))
    if ray := up.get("ray"):
        out.append(Target("ray", "http", ray, ray.http_url + v2_path, b.tensor_rest))
    return out


STARTERS = {
    "mlserver": servers.start_mlserver,
    "kserve": servers.start_kserve,
    "ray": servers.start_ray,
}


def start_all(bench: Bench, workers: int, peers: list[str], logs: Path,
              baseline_root: Path | None) -> dict[str, Running]:
    """Every server at `workers`, side by side (each idles while another is measured)."""
    up: dict[str, Running] = {}
    a = bench.args
    tensor_models = {n: bench.models[n] for n in a.models if n in bench.models}
    try:
        extra = dict(kv.split("=", 1) for kv in a.riskserve_env)
        up["riskserve"] = servers.start_riskserve(workers, logs, env=extra, key=KEY)
        if baseline_root is not None:
            up["baseline"] = servers.start_riskserve(workers, logs, env=extra, key=KEY,
                                                     baseline=baseline_root, name="baseline")
        for peer in peers:
            if peer == "seed":
                pickle_path = CACHE / "seed-models.pkl"
                servers.write_seed_pickle(bench.models, pickle_path)
                up["seed"] = servers.start_seed(workers, pickle_path, logs)
            elif tensor_models:
                up[peer] = STARTERS[peer](workers, tensor_models, logs)
    except BaseException:
        stop_all(up)
        raise
    idle = meta.idle_cpu({name: running.cpu_seconds for name, running in up.items()})
    for name, running in up.items():
        bench.cold_rows.append(ColdRow(name, workers, running.cold_start_s, running.rss_mb(),
                                       running.rss_per_worker_mb(), running.processes(),
                                       idle[name]))
        log(f"  {name} w={workers}: ready in {running.cold_start_s:.1f} s, "
            f"RSS {running.rss_mb():.0f} MiB ({running.rss_per_worker_mb():.0f} per worker), "
            f"idle {idle[name]:.1%} of a core")
    return up


def stop_all(up: dict[str, Running]) -> None:
    for running in up.values():
        running.stop()


def csv_payloads(names: list[str], sizes: list[int]) -> dict[tuple[str, int], bytes]:
    return {(n, rows): payloads.sample_frame(n, rows, seed=5).to_csv(index=False).encode()
            for rows in sizes for n in names}


def plan(args: argparse.Namespace) -> list[int]:
    """Worker counts to start servers at, the headline first."""
    scen = set(args.scenarios)
    counts = [args.workers]
    if "peers" in scen:
        counts += args.also_workers
    if "neighbours" in scen:
        counts += args.neighbour_workers
    return list(dict.fromkeys(counts))


def needed_models(args: argparse.Namespace) -> list[str]:
    scen = set(args.scenarios)
    names = list(args.models) if {"peers", "csv"} & scen else []
    if "keystroke" in scen:
        names += args.keystroke_models
    if "neighbours" in scen:
        names += ["fraud", *neighbours.HEAVY]
    return list(dict.fromkeys(names))


def measure_at(bench: Bench, workers: int, up: dict[str, Running], logs: Path) -> None:
    """Every scenario that runs at this worker count, on the servers already up."""
    a = bench.args
    scen = set(a.scenarios)
    headline = workers == a.workers
    for name, b in bench.bodies.items():  # every server measured must answer like in-process
        measured = ((name in a.models and "peers" in scen)
                    or (name in a.keystroke_models and "keystroke" in scen and headline))
        for t in targets_for(name, b, up, a, name in a.models):
            if measured or (t.server in ("riskserve", "baseline") and t.protocol == "v1"):
                check_answer(t, b, name)
    if "peers" in scen and (headline or workers in a.also_workers):
        clients = a.clients if headline else [a.headline_clients]
        bench.limits(a.models, workers)
        for name in a.models:
            bench.cells(targets_for(name, bench.bodies[name], up, a, True), name, workers,
                        clients)
        if headline:
            bench.floors(workers, [a.headline_clients], logs)
    if "keystroke" in scen and headline:
        bench.limits(a.keystroke_models, workers)
        for name in a.keystroke_models:
            bench.cells(targets_for(name, bench.bodies[name], up, a, False), name, workers,
                        a.keystroke_clients)
    if "neighbours" in scen and workers in a.neighbour_workers:
        v1 = {n: bench.bodies[n].v1 for n in ("fraud", *neighbours.HEAVY)}
        for server in ("riskserve", "baseline"):
            if server in up:
                bench.neighbour_rows += neighbours.measure(
                    up[server], server, workers, v1, a.neighbour_rounds, a.neighbour_seconds,
                    a.warmup, a.max_requests, a.fraud_clients, a.heavy_clients)
    if "csv" in scen and headline and a.csv_rows:
        from benchmarks.inprocess import csv_limit

        for (name, rows), payload in csv_payloads(a.models, a.csv_rows).items():
            secs, rows_out = csv_limit(name, payload)
            bench.csv_rows.append(CsvRow(name, workers, LIMIT_LABEL,
                                         "read + validate + predict + write (csv_echo)", rows,
                                         rows_out, secs, float("nan")))
            bench.csv_rows += csvbench.run(up, bench.models[name], workers, payload,
                                           a.csv_tries)


def peers_at(args: argparse.Namespace, workers: int) -> list[str]:
    """Peers worth starting at this worker count (the seed app also serves keystroke)."""
    scen = set(args.scenarios)
    headline = workers == args.workers
    if (("peers" in scen and (headline or workers in args.also_workers))
            or (headline and "csv" in scen and args.csv_rows)):
        return list(args.peers)
    if headline and "keystroke" in scen and "seed" in args.peers:
        return ["seed"]
    return []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or REPO / "reports" / "bench" / stamp
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    log(f"model store {os.environ['BENTOML_HOME']}: training what is missing")
    ensure_trained(args.train_quick)
    for peer in sorted({p for w in plan(args) for p in peers_at(args, w)}):
        servers.ensure_venv(VENVS[peer])
    baseline_root, baseline_sha = (baseline.checkout(args.baseline) if args.baseline
                                   else (None, ""))
    bench = Bench(args, load_models(needed_models(args)))

    settled = ""
    if args.settle_load > 0:
        log(f"waiting up to {args.settle_s:.0f} s for the 1-min load average to fall below "
            f"{args.settle_load}")
        reading, waited = meta.settle(args.settle_load, args.settle_s)
        settled = (f" (waited {waited:.0f} s for it to fall below {args.settle_load}"
                   f"{'' if reading < args.settle_load else '; it did not'})")
    load_before = os.getloadavg()
    for workers in plan(args):
        peers = peers_at(args, workers)
        log(f"starting {', '.join(['riskserve', *(['baseline'] if baseline_root else []), *peers])}"
            f" with {workers} worker(s) each")
        up = start_all(bench, workers, peers, logs, baseline_root)
        try:
            measure_at(bench, workers, up, logs)
        finally:
            stop_all(up)
    load_after = os.getloadavg()

    wall = time.monotonic() - started
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": meta.machine(), "software": meta.software(args.peers), "wall_s": wall,
        "load": f"{load_before[0]:.1f} before{settled}, {load_after[0]:.1f} after "
                "(1-min load average)",
        "command": "make bench" if argv is None and len(sys.argv) <= 1
        else "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv),
        "baseline": f"{args.baseline} ({baseline_sha})" if args.baseline else "",
        "method": meta.METHOD.format(
            seconds=args.seconds, warmup=args.warmup, rounds=args.rounds,
            max_requests=args.max_requests, csv_tries=args.csv_tries,
            fraud_clients=args.fraud_clients, heavy_clients=args.heavy_clients,
            neighbour_rounds=args.neighbour_rounds, neighbour_seconds=args.neighbour_seconds),
        # How the targets were judged, so `python -m benchmarks.profile --misses` can again.
        "judged": {"workers": args.workers, "clients": args.headline_clients,
                   "neighbour_workers": args.neighbour_workers,
                   "fraud_clients": args.fraud_clients, "heavy_clients": args.heavy_clients},
    }
    results = Results(bench.rows, bench.csv_rows, bench.cold_rows, bench.neighbour_rows,
                      bench.floor_rows)
    (out / "results.md").write_text(report.markdown(results, info, args.workers,
                                                    args.headline_clients,
                                                    args.neighbour_workers))
    report.plot(results, out / "results.png", args.workers,
                f"riskserve vs peers, single-row requests, {args.workers} workers — "
                f"{info['machine']}")
    (out / "results.json").write_text(json.dumps({"meta": info, **report.to_json(results)},
                                                 indent=1, default=float))
    if not args.no_publish:
        shutil.copy(out / "results.md", REPO / "benchmarks" / "RESULTS.md")
        shutil.copy(out / "results.png", REPO / "benchmarks" / "results.png")
        if not args.no_profiles:
            from benchmarks import profile  # its py-spy runs start servers of their own

            profile.misses(out / "results.json")
    log(f"done in {wall:.0f} s: {out / 'results.md'}")
    return 0
