"""`python -m benchmarks.decisions`: what explanations and shadow scoring cost, side by side.

- /v1/explain throughput for fraud and risk-flag (single rows, 8 clients) beside /v1/predict
  on the same server;
- fraud /v1/predict at 16 clients on a server that shadows a fraud candidate, against the same
  server without one, rounds interleaved (the target: production p99 within 10 % of no shadow).

Two `bentoml serve` processes (2 workers each) on the bench store, loopback only. Writes
benchmarks/DECISIONS.md (and reports/bench/decisions-<stamp>.md).
"""

from __future__ import annotations

import os
from pathlib import Path

# The bench's own store, like `python -m benchmarks` (set before BentoML is imported).
os.environ["BENTOML_HOME"] = os.environ.get(
    "BENCH_BENTOML_HOME", str(Path(__file__).resolve().parent.parent / ".cache/bench/bentoml"))
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

import argparse
import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np

from benchmarks import load, payloads
from benchmarks.servers import CACHE, REPO, log
from riskserve.core import candidates, store
from riskserve.devtools import server

KEY = "bench-key"


def _explain_bodies(name: str, rows: list[dict]) -> list[bytes]:
    return [json.dumps({"model": name, "inputs": [r], "top": 3}).encode() for r in rows]


def _second_fraud_version() -> str:
    """A fraud candidate to shadow: trained once (quick) into the bench store, kept."""
    versions = [str(m.tag.version) for m in store.list_versions("fraud")]
    prod = store.production_version("fraud")
    others = [v for v in versions if v != prod]
    if others:
        return others[0]
    subprocess.run([sys.executable, "-m", "training", "fraud", "--quick", "--reports",
                    str(CACHE / "training-reports")], check=True, cwd=REPO, timeout=600,
                   stdout=subprocess.DEVNULL)
    return next(str(m.tag.version) for m in store.list_versions("fraud")
                if str(m.tag.version) != prod)


def _run(url: str, bodies: list[bytes], clients: int, seconds: float) -> load.Result:
    headers = {"content-type": "application/json", "x-api-key": KEY}
    return asyncio.run(load.http_load(url, bodies, headers, clients, seconds, 200_000, 0.5))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.decisions", description=__doc__)
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per cell and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    out = REPO / "reports" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "decisions-logs"
    logs.mkdir(exist_ok=True)
    candidate = _second_fraud_version()
    fraud = payloads.bodies(store.load_model("fraud"))
    risk = payloads.bodies(store.load_model("risk-flag"))
    lines = [f"# Explanations and shadow scoring — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
             f"`python -m benchmarks.decisions`, {args.workers} workers, single-row requests, "
             f"{args.rounds} interleaved rounds of {args.seconds:g} s per cell.", ""]

    plain = server.start(logs / "plain.log", {}, key=KEY, workers=args.workers)
    candidates.set_shadow("fraud", candidate, reason="bench")
    try:
        shadowing = server.start(logs / "shadow.log", {}, key=KEY, workers=args.workers)
    finally:
        candidates.set_shadow("fraud", None, reason="bench")
    try:
        log("explain vs predict, 8 clients")
        lines += ["## /v1/explain beside /v1/predict (8 clients)", "",
                  "| model | route | req/s | p50 ms | p99 ms |", "|---|---|--:|--:|--:|"]
        for name, b in (("fraud", fraud), ("risk-flag", risk)):
            for route, bodies in (("predict", b.v1), ("explain", _explain_bodies(name, b.rows))):
                r = _run(f"{plain.url}/v1/{route}", bodies, 8, args.seconds)
                lines.append(f"| {name} | /v1/{route} | {r.rps:,.0f} | {r.p50:.2f} | "
                             f"{r.p99:.2f} |")
                log(f"  {name} /v1/{route}: {r.rps:.0f} req/s p99 {r.p99:.2f} ms "
                    f"errors {r.error_count}")
        log("fraud with and without a shadow candidate, 16 clients")
        rates: dict[str, list[float]] = {"no shadow": [], "shadow": []}
        p99s: dict[str, list[float]] = {"no shadow": [], "shadow": []}
        for _ in range(args.rounds):
            for label, svc in (("no shadow", plain), ("shadow", shadowing)):
                r = _run(f"{svc.url}/v1/predict", fraud.v1, 16, args.seconds)
                rates[label].append(r.rps)
                p99s[label].append(r.p99)
        metrics = shadowing_metrics(shadowing)
        base, shadow = float(np.median(p99s["no shadow"])), float(np.median(p99s["shadow"]))
        ratio = shadow / base if base else float("nan")
        lines += ["", "## fraud /v1/predict at 16 clients, shadowing a candidate or not", "",
                  "| server | req/s (median) | p99 ms (median) | p99 per round |",
                  "|---|--:|--:|---|"]
        for label in rates:
            lines.append(f"| {label} | {np.median(rates[label]):,.0f} | "
                         f"{np.median(p99s[label]):.2f} | "
                         f"{', '.join(f'{v:.2f}' for v in p99s[label])} |")
        verdict = "PASS" if ratio <= 1.10 else "MISS"
        lines += ["", f"Production p99 with a shadow / without: **×{ratio:.2f}** — target "
                  f"≤ ×1.10: **{verdict}**. Shadowed rows {metrics['rows']:.0f}, dropped "
                  f"(model busy) {metrics['dropped']:.0f}, disagreements "
                  f"{metrics['disagreements']:.0f}.", ""]
        log(f"  p99 ratio x{ratio:.2f} ({verdict}); {metrics}")
    finally:
        plain.stop()
        shadowing.stop()
    text = "\n".join(lines)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"decisions-{stamp}.md").write_text(text)
    (REPO / "benchmarks" / "DECISIONS.md").write_text(text)
    print(text)
    return 0


def shadowing_metrics(svc: server.Served) -> dict[str, float]:
    import httpx

    text = httpx.get(svc.url + "/metrics", timeout=10).text
    out = {"rows": 0.0, "dropped": 0.0, "disagreements": 0.0}
    for line in text.splitlines():
        for key, metric in (("rows", "riskserve_shadow_rows_total{"),
                            ("dropped", "riskserve_shadow_dropped_total{"),
                            ("disagreements", "riskserve_shadow_disagreements_total{")):
            if line.startswith(metric):
                out[key] += float(line.rsplit(" ", 1)[1])
    return out


if __name__ == "__main__":
    raise SystemExit(main())

