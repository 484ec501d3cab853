"""Where riskserve's workers spend their time under load: py-spy on every worker while the
bench load generator drives them.

`python -m benchmarks.profile [--model fraud] [--protocol v1|v2|grpc|csv] [--clients 32]
[--workers 1] [--neighbour keystroke-rf[,keystroke-svm,...] --neighbour-clients 4]` starts
riskserve, drives it for `--seconds` (with `--neighbour`, those models' /v1 single rows run
beside it: the noisy-neighbour scenario's cell; `csv` uploads `--csv-rows` rows again and
again from one client), samples every worker with py-spy (installed into
.cache/bench/tools-venv, pinned below), and writes reports/bench/profile-<stamp>/: the raw
collapsed stacks of each worker, the first worker's `flame.svg`, `profile.json` and `top.md`:
per riskserve-relevant bucket (HTTP server, BentoML request handling, validation, encoding,
model, metrics, ...) its share of the busy samples and its server CPU per answered request,
and the top functions by inclusive time.

`--misses reports/bench/<stamp>/results.json` profiles, for each target that run missed, the
failing cell beside the cell it is compared with (benchmarks/verdicts.py names them) and
writes benchmarks/PROFILES.md: the profile the issue asks a missed target to come with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

PY_SPY = "py-spy==0.4.3"
REPO = Path(__file__).resolve().parent.parent

GRPC_SERVER = "gRPC server (grpc.aio, protobuf)"
# A sample goes to the bucket of its innermost frame that matches a marker; within one frame,
# the first bucket listed wins.
BUCKETS = (
    ("model (xgboost / lightgbm / scikit-learn / onnxruntime)",
     ("xgboost/", "lightgbm/", "sklearn/", "onnxruntime/", "riskserve/core/compiled.py",
      "riskserve/core/onnx_linear.py")),
    ("CSV reading and answer lines (pandas, riskserve/v1/csv_echo.py)",
     ("pandas/", "riskserve/v1/csv_echo.py")),
    ("metrics: riskserve drift + BentoML (prometheus_client)", ("riskserve/metrics.py",
                                                               "riskserve/drift.py",
                                                               "prometheus_client/")),
    ("encoding (riskserve/core/encoding.py)", ("riskserve/core/encoding.py",)),
    ("validation (riskserve/core/validation.py, oip/codec.py)",
     ("riskserve/core/validation.py", "riskserve/oip/codec.py")),
    ("data plane + scheduling (dataplane.py, core/batching.py, executor threads)",
     ("riskserve/dataplane.py", "riskserve/core/batching.py", "concurrent/futures/",
      "threading.py")),
    ("auth + limits middleware", ("riskserve/auth.py", "riskserve/limits.py",
                                  "riskserve/ratelimit.py")),
    (GRPC_SERVER, ("grpc/", "grpc_server.py", "grpc_intake.py", "google/protobuf")),
    ("BentoML request handling (pydantic IO, tracing, serialisation)", ("_bentoml_sdk/",
                                                                        "_bentoml_impl/",
                                                                        "bentoml/", "pydantic",
                                                                        "opentelemetry/")),
    ("HTTP server (uvicorn, h11/httptools, starlette)", ("uvicorn/", "h11/", "httptools/",
                                                         "starlette/")),
    # uvloop is C and grpc.aio's server is Cython: their work shows as the loop's own frame
    # (asyncio.Runner.run with nothing above it), with httptools' parsing when it calls back.
    ("event loop + the native code it runs (uvloop, grpc.aio's Cython, httptools' C)",
     ("asyncio/", "uvloop/")),
)


def ensure_py_spy() -> Path:
    venv = REPO / ".cache" / "bench" / "tools-venv"
    exe = venv / "bin" / "py-spy"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", PY_SPY], check=True)
    return exe


# Threads whose stacks show no frame of their own (compiled code only): by thread name. grpc's
# poller runs epoll and hands events to the loop from Cython, so py-spy sees only threading.py
# frames in it, which read as the data plane's executor threads (17 % of a risk-flag gRPC
# profile was this thread, on the CPU).
THREAD_BUCKETS = (("(_poll_wrapper)", GRPC_SERVER),)


def bucket(stack: str) -> str:
    thread = stack.split(";", 1)[0]
    for marker, label in THREAD_BUCKETS:
        if marker in thread:
            return label
    for frame in reversed(stack.split(";")):
        for label, markers in BUCKETS:
            if any(m in frame for m in markers):
                return label
    return "other (interpreter, idle threads)"


@dataclass(frozen=True)
class Cell:
    """One load on riskserve to profile: a cell of the bench, named the way its report does."""

    model: str = "fraud"
    protocol: str = "v1"  # v1, v2, grpc or csv
    clients: int = 32
    workers: int = 1
    neighbours: tuple[str, ...] = ()  # models whose /v1 single rows run beside
    neighbour_clients: int = 4
    csv_rows: int = 100_000

    def label(self) -> str:
        what = (f"{self.model} CSV {self.csv_rows:,} rows, 1 client" if self.protocol == "csv"
                else f"{self.model} {self.protocol}, {self.clients} clients")
        beside = (f", beside {self.neighbour_clients} clients on each of "
                  f"{', '.join(self.neighbours)}" if self.neighbours else "")
        return f"{what}{beside}, {self.workers} worker{'s' * (self.workers > 1)}"


@dataclass
class Profile:
    """What one profiled load measured: the load's numbers and the workers' busy samples."""

    cell: Cell
    rps: float  # the profiled model's answers per second (uploads per second for csv)
    p99_ms: float
    errors: int
    cpu_ms: float  # server CPU per answered request, every model's requests counted
    samples: Tally  # over all workers

    @property
    def busy(self) -> int:
        return self.samples.busy

    @property
    def buckets(self) -> Counter[str]:
        return self.samples.buckets

    def ms(self, label: str) -> float:
        """The bucket's share of the busy samples times the CPU per answered request."""
        return self.buckets[label] / self.busy * self.cpu_ms if self.busy else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"cell": asdict(self.cell), "rps": self.rps, "p99_ms": self.p99_ms,
                "errors": self.errors, "cpu_ms": self.cpu_ms, "busy": self.busy,
                "buckets": dict(self.buckets.most_common())}


@dataclass
class Tally:
    """Busy samples per bucket, per frame (inclusive and own), and their total."""

    buckets: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)
    busy: int = 0


def tally(raws: list[Path]) -> Tally:
    """Count the busy samples of py-spy's raw (collapsed) stacks over `raws`."""
    t = Tally()
    for raw in raws:
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            # Idle threads (executor workers waiting) are not work; py-spy leaves out threads
            # the OS reports idle, so what is left of grpc's poller was on the CPU.
            leaf = stack.split(";")[-1]
            if any(w in leaf for w in ("wait (threading.py", "_worker (concurrent", "select (",
                                       "poll (", "epoll")):
                continue
            t.busy += n
            t.buckets[bucket(stack)] += n
            t.own[leaf] += n
            for frame in set(stack.split(";")):
                t.inclusive[frame] += n
    return t


def top_frames(frames: Counter[str], total: int, top: int, what: str) -> list[str]:
    return [f"| frame | {what} |", "|---|--:|",
            *(f"| `{k[:110]}` | {v / total:.0%} |" for k, v in frames.most_common(top))]


def summarise(prof: Profile, top: int = 25) -> str:
    """One profile as Markdown: the load, the buckets, the top frames."""
    lines = [f"# riskserve profile: {prof.cell.label()}", "",
             f"{_load_line(prof)}.", "",
             "| where | share of busy samples | server CPU ms per request |", "|---|--:|--:|"]
    lines += [f"| {k} | {v / prof.busy:.0%} | {prof.ms(k):.3f} |"
              for k, v in prof.buckets.most_common()]
    lines += ["", f"Top {top} frames by own samples ({prof.busy} busy samples):", "",
              *top_frames(prof.samples.own, prof.busy, top, "own"),
              "", f"Top {top} frames by inclusive samples:", "",
              *top_frames(prof.samples.inclusive, prof.busy, top, "inclusive")]
    return "\n".join(lines) + "\n"


def _load_line(prof: Profile) -> str:
    unit = "uploads/s" if prof.cell.protocol == "csv" else "req/s"
    return (f"{prof.rps:,.1f} {unit}, p99 {prof.p99_ms:,.1f} ms, errors {prof.errors}, "
            f"server CPU {prof.cpu_ms:.2f} ms per answered request")


def compare(profiles: list[Profile]) -> str:
    """Profiles of the same target side by side: per bucket, its share and ms per request."""
    head = "| | " + " | ".join(p.cell.label() for p in profiles) + " |"
    lines = [head, "|---|" + "--:|" * len(profiles),
             "| load | " + " | ".join(_load_line(p) for p in profiles) + " |"]
    labels = Counter[str]()
    for p in profiles:
        labels.update({k: v / p.busy for k, v in p.buckets.items()} if p.busy else {})
    for label, _ in labels.most_common():
        cells = (f"{p.buckets[label] / p.busy:.0%} · {p.ms(label):.3f} ms" if p.busy else "—"
                 for p in profiles)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _workers(running: Any) -> list[Any]:
    import psutil

    return [c for c in psutil.Process(running.proc.pid).children(recursive=True)
            if "_bentoml_impl.worker" in " ".join(c.cmdline())]


def run(cell: Cell, seconds: float = 10.0, env: dict[str, str] | None = None) -> Profile:
    """Serve riskserve with `cell.workers` workers, drive `cell`'s load and py-spy every
    worker meanwhile; the files go to reports/bench/profile-<stamp>/."""
    from benchmarks import csvbench, load, payloads, servers
    from benchmarks.run import KEY, ensure_trained, load_models
    from benchmarks.servers import log

    py_spy = ensure_py_spy()
    ensure_trained()
    loaded = load_models([cell.model, *cell.neighbours])
    b = payloads.bodies(loaded[cell.model].model)
    out = REPO / "reports" / "bench" / f"profile-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    out.mkdir(parents=True, exist_ok=True)
    running = servers.start_riskserve(cell.workers, out, env=env or {}, key=KEY)
    results: list[load.Result] = []
    try:
        workers = _workers(running)
        raws = [out / f"stacks-worker{i + 1}.txt" for i in range(len(workers))]
        spy_args = ["record", "--duration", str(int(seconds)), "--rate", "200", "--nonblocking",
                    "--threads"]
        outputs = [(w, "raw", raw) for w, raw in zip(workers, raws, strict=True)]
        outputs.append((workers[0], "flamegraph", out / "flame.svg"))
        recorders = [subprocess.Popen([str(py_spy), *spy_args, "--pid", str(w.pid),
                                       "--format", fmt, "-o", str(path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for w, fmt, path in outputs]
        headers = {"content-type": "application/json", **running.headers}
        url = running.http_url

        async def drive() -> list[load.Result]:
            probe = running.cpu_seconds
            if cell.protocol == "grpc":
                work = load.grpc_load(running.grpc_target or "", payloads.GRPC_INFER, b.grpc,
                                      (("x-api-key", KEY),), cell.clients, seconds + 1,
                                      1_000_000, warmup_s=0.5, probe=probe)
            elif cell.protocol == "csv":
                payload = payloads.sample_frame(cell.model, cell.csv_rows,
                                                seed=5).to_csv(index=False).encode()
                _, csv_url, kwargs = csvbench._request("riskserve", running,
                                                       loaded[cell.model], payload, {})
                work = asyncio.to_thread(_uploads, csv_url, kwargs, seconds + 1, probe)
            else:
                path = "/v1/predict" if cell.protocol == "v1" else f"/v2/models/{cell.model}/infer"
                work = load.http_load(url + path, b.v1 if cell.protocol == "v1" else b.v2,
                                      headers, cell.clients, seconds + 1, 1_000_000,
                                      warmup_s=0.5, probe=probe)
            beside = [load.http_load(url + "/v1/predict",
                                     payloads.bodies(loaded[n].model).v1, headers,
                                     cell.neighbour_clients, seconds + 1, 1_000_000,
                                     warmup_s=0.5) for n in cell.neighbours]
            return list(await asyncio.gather(work, *beside))

        def drive_in_thread() -> None:
            results.extend(asyncio.run(drive()))

        t = threading.Thread(target=drive_in_thread)
        t.start()
        for r in recorders:
            r.wait(timeout=seconds + 60)
        t.join(timeout=seconds + 60)
    finally:
        running.stop()
    if not results:
        raise RuntimeError(f"the load of {cell.label()} did not finish: see {out}")
    main, answered = results[0], sum(r.ok + r.error_count for r in results)
    prof = Profile(cell, main.rps, main.percentile(99), main.error_count,
                   main.server_cpu_s / answered * 1000 if answered else math.nan, tally(raws))
    (out / "profile.json").write_text(json.dumps(prof.to_json(), indent=1))
    (out / "top.md").write_text(summarise(prof))
    log(f"profile of {cell.label()}: {_load_line(prof)}; written to {out}")
    return prof


def _uploads(url: str, kwargs: dict[str, Any], seconds: float, probe: Any) -> Any:
    """One client uploading the same CSV file again and again for about `seconds`."""
    from benchmarks import csvbench, load

    latencies, errors = [], Counter[str]()
    cpu0, t0 = probe(), time.perf_counter()
    while time.perf_counter() - t0 < seconds or not (latencies or errors):
        secs, resp = csvbench._timed_post(url, **kwargs)
        if resp.status_code == 200:
            latencies.append(secs * 1000)
        else:
            errors[str(resp.status_code)] += 1
    return load.Result(1, time.perf_counter() - t0, len(latencies), errors,
                       np.asarray(latencies), 0.0, probe() - cpu0)


def misses(results_json: Path, seconds: float = 10.0,
           publish: Path | None = REPO / "benchmarks" / "PROFILES.md") -> list[Profile]:
    """Profile the cells behind every target `results_json`'s run missed; write `publish`."""
    from benchmarks import report, verdicts
    from benchmarks.servers import log

    data = json.loads(results_json.read_text())
    meta = data["meta"]
    results = report.from_json(data)
    failed = [v for v in verdicts.all_verdicts(results, **meta["judged"]) if v.passed is False]
    parts = [
        "# Where the time goes in the targets missed\n\n",
        f"For each target `benchmarks/RESULTS.md` marks FAIL (the run of {meta['date']}), "
        "py-spy (200 Hz, every worker) on riskserve under the load of the missed cell, beside "
        "the cell it is judged against; the loads are run again here, one after another, "
        f"{seconds:.0f} s each, so their own numbers differ from the bench's. `share · ms`: the "
        "bucket's share of the workers' busy samples, and that share of the server CPU per "
        "answered request (every model's requests counted). Written by `make profile-misses` "
        "(`make bench` runs it after a run that missed a target); raw stacks and flame graphs "
        "in reports/bench/profile-*/.\n\n",
    ]
    profiles: list[Profile] = []
    for v in failed:
        parts.append(f"## {v.target}\n\nIn the bench: {v.measured}.\n\n")
        if not v.profile:
            parts.append("No load of riskserve to profile for this target.\n\n")
            continue
        done = [run(cell, seconds) for cell in v.profile]
        profiles += done
        parts += [compare(done), "\n",
                  f"Top frames by own samples, {done[-1].cell.label()}:\n\n",
                  "\n".join(top_frames(done[-1].samples.own, done[-1].busy, 12, "own")),
                  "\n\n"]
    if publish is not None:
        publish.write_text("".join(parts) if failed else
                           "# Where the time goes in the targets missed\n\nNone missed in "
                           f"the run of {meta['date']}.\n")
        log(f"wrote {publish}")
    return profiles


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("BENTOML_HOME", str(REPO / ".cache" / "bench" / "bentoml"))
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    p.add_argument("--model", default="fraud")
    p.add_argument("--protocol", default="v1", choices=("v1", "v2", "grpc", "csv"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--csv-rows", type=int, default=100_000)
    p.add_argument("--neighbour", default="",
                   help="comma list of models whose /v1 single rows run beside (keystroke-rf)")
    p.add_argument("--neighbour-clients", type=int, default=4)
    p.add_argument("--riskserve-env", action="append", default=[], metavar="K=V")
    p.add_argument("--misses", type=Path, default=None, metavar="RESULTS_JSON",
                   help="profile the targets that run missed and write benchmarks/PROFILES.md")
    args = p.parse_args(argv)
    if args.misses is not None:
        misses(args.misses, args.seconds)
        return 0
    cell = Cell(args.model, args.protocol, args.clients, args.workers,
                tuple(n for n in args.neighbour.split(",") if n), args.neighbour_clients,
                args.csv_rows)
    env = dict(kv.split("=", 1) for kv in args.riskserve_env)
    print(summarise(run(cell, args.seconds, env)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
