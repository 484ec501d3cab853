"""The limit: riskserve's own validation and scoring, called in-process with no server at all.

One single-row call is what a server must do per request at the very least:
`validation.columns_from_records` on the JSON row, then `ScoringModel.predict` (encoder +
framework fast path). N processes (N = the servers' worker count) each loop over it for a
bounded time and call count; their summed rate is the ceiling no server on this machine can
reach for single-row requests. The CSV limit is pandas read + validate + score + write of the
same 100k-row file in one process.

Run as `python -m benchmarks.inprocess MODEL SECONDS MAX_CALLS` (one process of the pool); it
prints one JSON line.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from benchmarks.load import Result


def _loop(name: str, seconds: float, max_calls: int) -> dict[str, object]:
    from benchmarks.payloads import records, sample_frame
    from riskserve.core import store
    from riskserve.core.validation import columns_from_records

    model = store.load_model(name)
    rows = records(name, sample_frame(name, 64))
    for row in rows:  # warm-up: first calls pay for lazy initialisation
        model.predict(columns_from_records(model.spec, [row]))
    latencies = []
    stop_at = time.perf_counter() + seconds
    start = time.perf_counter()
    i = 0
    while i < max_calls and time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        model.predict(columns_from_records(model.spec, [rows[i % len(rows)]]))
        latencies.append((time.perf_counter() - t0) * 1000)
        i += 1
    return {"calls": i, "seconds": time.perf_counter() - start,
            "latencies_ms": [round(x, 5) for x in latencies]}


def single_row_limit(name: str, processes: int, seconds: float, max_calls: int) -> Result:
    """Summed rate of `processes` in-process loops (each its own interpreter, like workers)."""
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.inprocess", name, str(seconds),
                               str(max_calls)], stdout=subprocess.PIPE)
             for _ in range(processes)]
    outs = []
    for p in procs:
        stdout, _ = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"in-process loop for {name} failed ({p.returncode})")
        outs.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    latencies = np.concatenate([np.asarray(o["latencies_ms"]) for o in outs])
    seconds_run = max(o["seconds"] for o in outs)
    return Result(clients=processes, seconds=seconds_run, ok=sum(o["calls"] for o in outs),
                  latencies_ms=latencies)


def csv_limit(name: str, payload: bytes) -> tuple[float, int]:
    """Seconds for read + validate + score + write of a CSV in one process; rows written.

    Written the way the service writes it where it can (the caller's lines plus the new cells,
    riskserve.v1.csv_echo), else with pandas; the file comes from a temporary path, as an
    upload does. The native model is loaded before the clock starts."""
    import tempfile
    from pathlib import Path

    from riskserve.core import store
    from riskserve.core.validation import columns_from_frame
    from riskserve.v1.csv_echo import LineEcho
    from riskserve.v1.handlers import render_chunk

    model = store.load_model(name)
    model.native_adapter()  # what the service loads on its first large batch
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        path.write_bytes(payload)
        t0 = time.perf_counter()
        frame = pd.read_csv(path, skipinitialspace=True)
        pred = model.predict(columns_from_frame(model.spec, frame))
        added = {"prediction": pred.predictions, "probability": pred.scores}
        echo, out = LineEcho.open(path), io.BytesIO()
        render_chunk(out, echo, frame, added, header=True)
        if echo is not None:
            echo.close()
        return time.perf_counter() - t0, out.getvalue().count(b"\n") - 1


if __name__ == "__main__":
    model_name, secs, calls = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(_loop(model_name, secs, calls)))
