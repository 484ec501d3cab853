"""Single-row latency of one model over gRPC (Open Inference Protocol), REST /v2 and /v1.

Starts `bentoml serve` on loopback with the current model store (BENTOML_HOME), then for each
client sends `--warmup` requests (discarded) and `--n` sequential single-row requests (timed,
one at a time, so this measures latency, not throughput) and prints p50/p99 per client as a
Markdown table. Client-side request building is included for the off-the-shelf clients
(tritonclient), as their users pay it; the raw gRPC stub and httpx clients send pre-built
requests.

    BENTOML_HOME=... .venv/bin/python -m benchmarks.oip_latency --model fraud --n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from riskserve.core.specs import SPECS
from riskserve.devtools import server
from riskserve.devtools.samples import records, sample_frame


def timed(call: Callable[[int], object], n: int, warmup: int) -> np.ndarray:
    """Milliseconds per call for calls warmup..warmup+n (the warm-up calls are discarded)."""
    for i in range(warmup):
        call(i)
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        call(warmup + i)
        out[i] = (time.perf_counter() - start) * 1000
    return out


def columns(name: str, row: dict) -> list[tuple[str, str, np.ndarray]]:
    out = []
    for f in SPECS[name].features:
        if f.is_category:
            out.append((f.name, "BYTES", np.array([str(row[f.name])], dtype=object)))
        elif f.kind == "int":
            out.append((f.name, "INT64", np.array([row[f.name]], dtype=np.int64)))
        else:
            out.append((f.name, "FP64", np.array([row[f.name]], dtype=np.float64)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fraud")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    name = args.model
    rows = records(name, sample_frame(name, 200, seed=1))
    cols = [columns(name, r) for r in rows]
    log = Path(tempfile.mkdtemp(prefix="oip-latency-")) / "serve.log"
    svc = server.start(log, {}, workers=args.workers)
    headers = {"x-api-key": svc.key}
    try:
        th = httpclient.InferenceServerClient(f"127.0.0.1:{svc.port}")
        tg = grpcclient.InferenceServerClient(f"127.0.0.1:{svc.grpc_port}")
        channel = grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}")
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        web = httpx.Client(base_url=svc.url, headers=headers, timeout=30)

        def triton(module: object, i: int) -> list:
            inputs = []
            for fname, datatype, values in cols[i % len(cols)]:
                t = module.InferInput(fname, [1], datatype)
                t.set_data_from_numpy(values)
                inputs.append(t)
            return inputs

        raw_requests = []
        for c in cols:
            req = service_pb2.ModelInferRequest(model_name=name)
            for fname, datatype, values in c:
                req.inputs.add(name=fname, datatype=datatype, shape=[1])
                req.raw_input_contents.append(
                    len(values[0].encode()).to_bytes(4, "little") + values[0].encode()
                    if datatype == "BYTES" else values.tobytes())
            raw_requests.append(req)
        v2_bodies = [json.dumps({"inputs": [
            {"name": fname, "datatype": datatype, "shape": [1], "data": values.tolist()}
            for fname, datatype, values in c]}).encode() for c in cols]
        v1_bodies = [json.dumps({"model": name, "inputs": [r]}).encode() for r in rows]
        json_headers = {"content-type": "application/json"}

        def check(resp: httpx.Response) -> None:
            if resp.status_code != 200:
                raise RuntimeError(resp.text)

        clients: dict[str, Callable[[int], object]] = {
            "gRPC, tritonclient.grpc": lambda i: tg.infer(name, triton(grpcclient, i),
                                                          headers=dict(headers)),
            "gRPC, raw stub (pre-built request)": lambda i: stub.ModelInfer(
                raw_requests[i % len(rows)], metadata=tuple(headers.items()), timeout=30),
            "REST /v2, tritonclient.http (binary)": lambda i: th.infer(
                name, triton(httpclient, i), headers=dict(headers)),
            "REST /v2, httpx JSON": lambda i: check(web.post(
                f"/v2/models/{name}/infer", content=v2_bodies[i % len(rows)],
                headers=json_headers)),
            "REST /v1/predict, httpx JSON": lambda i: check(web.post(
                "/v1/predict", content=v1_bodies[i % len(rows)], headers=json_headers)),
        }
        print(f"model {name}, {args.n} sequential single-row requests per client after "
              f"{args.warmup} warm-up, {args.workers} worker(s), {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}\n")
        print("| client | p50 ms | p99 ms | mean ms |\n|---|---:|---:|---:|")
        for label, call in clients.items():
            ms = timed(call, args.n, args.warmup)
            print(f"| {label} | {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} | "
                  f"{ms.mean():.2f} |", flush=True)
        web.close()
        channel.close()
        tg.close()
        th.close()
    finally:
        svc.stop()


if __name__ == "__main__":
    main()
