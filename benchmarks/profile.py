"""Where a riskserve worker spends its time under load: py-spy on a worker while the bench
load generator drives it.

`python -m benchmarks.profile [--model fraud] [--protocol v1|v2|grpc] [--clients 32]
[--neighbour keystroke-rf --neighbour-clients 4]` starts riskserve with one worker (so one
process holds the whole picture), drives it for `--seconds` (with `--neighbour`, that model's
/v1 single rows run beside it: the noisy-neighbour scenario's cell), samples the worker
with py-spy (installed into .cache/bench/tools-venv, pinned below), and writes
reports/bench/profile-<stamp>/: `flame.svg`, the raw collapsed stacks, and `top.md`: the
share of samples per riskserve-relevant bucket (HTTP server, BentoML request handling,
validation, encoding, model, metrics, ...) and the top functions by inclusive time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PY_SPY = "py-spy==0.4.3"
REPO = Path(__file__).resolve().parent.parent

GRPC_SERVER = "gRPC server (grpc.aio, protobuf)"
# A sample goes to the bucket of its innermost frame that matches a marker; within one frame,
# the first bucket listed wins.
BUCKETS = (
    ("model (xgboost / lightgbm / scikit-learn / onnxruntime)",
     ("xgboost/", "lightgbm/", "sklearn/", "onnxruntime/", "riskserve/core/compiled.py",
      "riskserve/core/onnx_linear.py")),
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
    (GRPC_SERVER, ("grpc/", "grpc_server.py", "google/protobuf")),
    ("BentoML request handling (pydantic IO, tracing, serialisation)", ("_bentoml_sdk/",
                                                                        "_bentoml_impl/",
                                                                        "bentoml/", "pydantic",
                                                                        "opentelemetry/")),
    ("HTTP server (uvicorn, h11/httptools, starlette)", ("uvicorn/", "h11/", "httptools/",
                                                         "starlette/")),
    ("asyncio event loop", ("asyncio/", "uvloop/")),
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


def summarise(raw: Path, top: int = 25) -> str:
    """Shares per bucket and the top functions by inclusive samples, as Markdown."""
    buckets: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
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
        total += n
        buckets[bucket(stack)] += n
        for frame in set(stack.split(";")):
            inclusive[frame] += n
    lines = ["| where | share of busy samples |", "|---|--:|"]
    lines += [f"| {k} | {v / total:.0%} |" for k, v in buckets.most_common()]
    lines += ["", f"Top {top} frames by inclusive samples ({total} busy samples):", "",
              "| frame | inclusive |", "|---|--:|"]
    lines += [f"| `{k[:110]}` | {v / total:.0%} |" for k, v in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("BENTOML_HOME", str(REPO / ".cache" / "bench" / "bentoml"))
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    from benchmarks import load, payloads, servers
    from benchmarks.run import KEY, ensure_trained, load_models

    p = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    p.add_argument("--model", default="fraud")
    p.add_argument("--protocol", default="v1", choices=("v1", "v2", "grpc"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--neighbour", default=None,
                   help="a model whose /v1 single rows run beside (e.g. keystroke-rf)")
    p.add_argument("--neighbour-clients", type=int, default=4)
    p.add_argument("--riskserve-env", action="append", default=[], metavar="K=V")
    args = p.parse_args(argv)

    py_spy = ensure_py_spy()
    ensure_trained()
    loaded = load_models([args.model, *([args.neighbour] if args.neighbour else [])])
    b = payloads.bodies(loaded[args.model].model)
    heavy = payloads.bodies(loaded[args.neighbour].model).v1 if args.neighbour else []
    out = REPO / "reports" / "bench" / f"profile-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    env = dict(kv.split("=", 1) for kv in args.riskserve_env)
    running = servers.start_riskserve(1, out, env=env, key=KEY)
    try:
        import psutil

        worker = next(c for c in psutil.Process(running.proc.pid).children(recursive=True)
                      if "_bentoml_impl.worker" in " ".join(c.cmdline()))
        raw = out / "stacks.txt"
        spy_args = ["record", "--pid", str(worker.pid), "--duration", str(int(args.seconds)),
                    "--rate", "200", "--nonblocking", "--threads"]
        recorders = [
            subprocess.Popen([str(py_spy), *spy_args, "--format", fmt, "-o", str(path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for fmt, path in (("raw", raw), ("flamegraph", out / "flame.svg"))
        ]

        headers = {"content-type": "application/json", **running.headers}

        async def beside(work: Any) -> load.Result:
            if not heavy:
                return await work
            other = load.http_load(running.http_url + "/v1/predict", heavy, headers,
                                   args.neighbour_clients, args.seconds + 1, 1_000_000,
                                   warmup_s=0.5)
            return (await asyncio.gather(work, other))[0]

        def drive() -> None:
            url = running.http_url
            if args.protocol == "grpc":
                work = load.grpc_load(running.grpc_target or "", payloads.GRPC_INFER, b.grpc,
                                      (("x-api-key", KEY),), args.clients, args.seconds + 1,
                                      1_000_000, warmup_s=0.5)
            else:
                path = "/v1/predict" if args.protocol == "v1" else f"/v2/models/{args.model}/infer"
                body = b.v1 if args.protocol == "v1" else b.v2
                work = load.http_load(url + path, body, headers, args.clients,
                                      args.seconds + 1, 1_000_000, warmup_s=0.5)
            result = asyncio.run(beside(work))
            print(f"{result.rps:.0f} req/s, p99 {result.p99:.1f} ms, errors {result.error_count}")

        t = threading.Thread(target=drive)
        t.start()
        time.sleep(0.5)  # let the warm-up start before sampling; the recorder's own window
        for r in recorders:
            r.wait(timeout=args.seconds + 60)
        t.join(timeout=args.seconds + 60)
    finally:
        running.stop()
    besides = (f", beside {args.neighbour_clients} clients on {args.neighbour}"
               if args.neighbour else "")
    summary = (f"# riskserve worker profile: {args.model}, {args.protocol}, "
               f"{args.clients} clients{besides}, 1 worker\n\n" + summarise(raw))
    (out / "top.md").write_text(summary)
    print(summary)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
