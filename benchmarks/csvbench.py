"""Batch scoring of one CSV file per server: riskserve's upload against the peers' best way.

riskserve and the seed app take the CSV itself; the tensor peers (MLServer, KServe, Ray Serve)
have no CSV endpoint, so the client reads and encodes the file (untimed) and sends one FP32
tensor, which favours them. Rows out must equal rows in, or the run fails.
"""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import pandas as pd

from benchmarks import load, payloads
from benchmarks.report_rows import CsvRow
from benchmarks.servers import Running, Stored, log

LABELS = {"riskserve": "riskserve", "baseline": "baseline", "seed": "seed FastAPI",
          "mlserver": "MLServer", "kserve": "KServe", "ray": "Ray Serve"}
TENSOR_PEERS = ("mlserver", "kserve", "ray")


def _timed_post(url: str, **kwargs: Any) -> tuple[float, httpx.Response]:
    load.require_loopback(url)
    t0 = time.perf_counter()
    resp = httpx.post(url, timeout=300, **kwargs)
    return time.perf_counter() - t0, resp


def _rows_out(server: str, r: httpx.Response) -> int:
    if server in TENSOR_PEERS:
        return int(r.json()["outputs"][0]["shape"][0])
    return r.content.count(b"\n") - 1


# Untimed uploads of this many rows first, once per worker: a version's first large batch
# loads its native model (riskserve) or warms the runtime (peers), once, not per file.
WARMUP_ROWS = 2_000


def _request(server: str, running: Running, stored: Stored, payload: bytes,
             tensors: dict[bytes, bytes]) -> tuple[str, str, dict[str, Any]]:
    """How `payload` goes to `server`: a label, the URL and httpx's keyword arguments
    (`tensors`: the tensor peers' encoded bodies, built once per payload)."""
    name = stored.model.spec.name
    if server in TENSOR_PEERS:
        if payload not in tensors:
            frame = pd.read_csv(io.BytesIO(payload))
            tensors[payload] = payloads.tensor_body(
                payloads.encoded(stored.model, payloads.records(name, frame)))
        tensor = tensors[payload]
        return ("POST /v2 infer: one FP32 tensor, encoded by the client (not CSV)",
                f"{running.http_url}/v2/models/{name}/infer",
                {"content": tensor, "headers": {"content-type": "application/json"}})
    files = {"file": ("rows.csv", payload, "text/csv")}
    if server == "seed":
        return ("POST /predict_csv (UploadFile, one pandas frame)",
                f"{running.http_url}/predict_csv/{name}", {"files": files})
    return ("POST /v1/predict_csv (multipart, validated, streamed back)",
            f"{running.http_url}/v1/predict_csv",
            {"headers": running.headers, "data": {"model": name}, "files": files})


def run(servers_up: dict[str, Running], stored: Stored, workers: int, payload: bytes,
        tries: int = 1) -> list[CsvRow]:
    """Best of `tries` uploads of `payload` to every running server that serves the model,
    after `workers` untimed uploads of its first WARMUP_ROWS rows."""
    name = stored.model.spec.name
    rows_in = payload.count(b"\n") - 1
    warmup = b"\n".join(payload.split(b"\n", WARMUP_ROWS + 1)[:WARMUP_ROWS + 1]) + b"\n"
    out = []
    tensors: dict[bytes, bytes] = {}
    for server, running in servers_up.items():
        if server in TENSOR_PEERS and stored.framework not in ("xgboost", "lightgbm"):
            continue
        how, url, kwargs = _request(server, running, stored, payload, tensors)
        _, warm_url, warm_kwargs = _request(server, running, stored, warmup, tensors)
        for _ in range(workers):  # each upload is a new connection: likely another worker
            _timed_post(warm_url, **warm_kwargs)
        best = float("inf")
        rows_out = 0
        for _ in range(tries):
            secs, r = _timed_post(url, **kwargs)
            if r.status_code != 200:
                raise RuntimeError(f"{server} CSV answered {r.status_code}: {r.text[:300]}")
            rows_out = _rows_out(server, r)
            best = min(best, secs)
        if rows_out != rows_in:
            raise RuntimeError(f"{server} CSV answered {rows_out} rows for {rows_in}")
        out.append(CsvRow(name, workers, LABELS[server], how, rows_in, rows_out, best,
                          running.rss_mb()))
        log(f"  {name:9} CSV {rows_in:>7} rows {LABELS[server]:13} {best:6.2f} s")
    return out
