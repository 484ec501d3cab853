"""The targets of issues 11 and 12, judged from one run's rows: what was measured, pass or fail.

A target whose cells were not measured (a scenario or peer left out) says so instead of
passing. Ratios use the headline worker count; the noisy-neighbour targets are judged on the
median over rounds (the worst round is shown beside it), because with several workers each
round lands the connections on the workers differently.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.neighbours import ALL, HEAVY, NeighbourRow
from benchmarks.profile import Cell
from benchmarks.report_rows import ColdRow, CsvRow, Results, Row


@dataclass
class Verdict:
    target: str
    measured: str
    passed: bool | None  # None: not measured in this run
    # The loads to profile when it fails (benchmarks/profile.py --misses): the cell it is
    # judged against first, then the failing one; empty where riskserve has no load to show.
    profile: tuple[Cell, ...] = ()

    @property
    def mark(self) -> str:
        return {True: "pass", False: "**FAIL**", None: "not measured"}[self.passed]


def find(rows: Iterable[Row], **want: Any) -> Row | None:
    for r in rows:
        if all(getattr(r, k) == v for k, v in want.items()):
            return r
    return None


def _rps(rows: list[Row], **want: Any) -> float:
    r = find(rows, **want)
    return r.rps if r else math.nan


def _at_least(target: str, a: float, b: float, factor: float, what: str) -> Verdict:
    if math.isnan(a) or math.isnan(b):
        return Verdict(target, "—", None)
    if not b:  # measured, but nothing answered in the window (a slow peer at many clients)
        return Verdict(target, f"{a:,.0f} vs 0 {what}: the other answered nothing within the "
                               f"measured window", a > 0 or None)
    ratio = a / b
    return Verdict(target, f"{ratio:.2f}× ({a:,.0f} vs {b:,.0f} {what})", ratio >= factor)


def neighbour_verdicts(rows: list[NeighbourRow], workers: list[int], fraud_clients: int = 16,
                       heavy_clients: int = 4) -> list[Verdict]:
    out = []
    for w in workers:
        mine = [r for r in rows if r.server == "riskserve" and r.workers == w
                and r.neighbour != "alone"]
        for name in dict.fromkeys(r.neighbour for r in mine):
            cells = [r for r in mine if r.neighbour == name]
            p99 = [r.p99_ratio for r in cells if not math.isnan(r.p99_ratio)]
            rps = [r.rps_ratio for r in cells if not math.isnan(r.rps_ratio)]
            if not p99 or not rps:
                continue
            p99_med, rps_med = statistics.median(p99), statistics.median(rps)
            # Everything the server answered in the cell (fraud + neighbours) against fraud
            # alone: near 1 means the server lost nothing to the neighbours and fraud's drop is
            # the CPU share the neighbours' own requests took on the same cores.
            served = statistics.median(r.rps_ratio * (1 + r.neighbour_rps / r.rps)
                                       for r in cells if r.rps and not math.isnan(r.rps_ratio))
            out.append(Verdict(
                f"fraud beside {name}, {w} worker{'s' * (w > 1)}: p99 ≤ 1.5× and req/s ≥ 0.7× "
                f"alone",
                f"p99 ×{p99_med:.2f} (worst ×{max(p99):.2f}), req/s ×{rps_med:.2f} "
                f"(worst ×{min(rps):.2f}) over {len(cells)} round{'s' * (len(cells) > 1)}; "
                f"all answers (fraud + neighbours) ×{served:.2f} of fraud alone",
                p99_med <= 1.5 and rps_med >= 0.7,
                (Cell("fraud", "v1", fraud_clients, w),
                 Cell("fraud", "v1", fraud_clients, w, HEAVY if name == ALL else (name,),
                      heavy_clients))))
    return out


def online_verdicts(rows: list[Row], workers: int, clients: int,
                    floor: Sequence[Row] = ()) -> list[Verdict]:
    at = {"workers": workers, "clients": clients}
    fraud = {"model": "fraud", **at}
    v1 = _rps(rows, server="riskserve", protocol="v1", **fraud)
    out = [
        _at_least(f"keystroke-rf /v1 at {clients} clients ≥ 20× the seed app",
                  _rps(rows, model="keystroke-rf", server="riskserve", protocol="v1", **at),
                  _rps(rows, model="keystroke-rf", server="seed", **at), 20, "req/s"),
        _at_least(f"fraud /v1 at {clients} clients ≥ 4× MLServer REST", v1,
                  _rps(rows, server="mlserver", protocol="rest", **fraud), 4, "req/s"),
        _at_least(f"fraud /v1 at {clients} clients ≥ 10× the seed app", v1,
                  _rps(rows, server="seed", **fraud), 10, "req/s"),
        _at_least(f"fraud /v1 at {clients} clients ahead of KServe", v1,
                  _rps(rows, server="kserve", **fraud), 1.0, "req/s"),
        _at_least(f"fraud /v1 at {clients} clients ahead of Ray Serve", v1,
                  _rps(rows, server="ray", **fraud), 1.0, "req/s"),
    ]
    for model in sorted({r.model for r in rows if r.server == "riskserve"}):
        grpc = _rps(rows, model=model, server="riskserve", protocol="grpc", **at)
        rest = _rps(rows, model=model, server="riskserve", protocol="v1", **at)
        if not math.isnan(grpc):
            v = _at_least(f"{model} gRPC within 20 % of REST /v1 ({clients} clients)",
                          grpc, rest, 0.8, "req/s")
            # Server CPU per request does not depend on the client (h2load vs wrk, or the
            # Python fallbacks): it says how much of the gap is the server's.
            g = find(rows, model=model, server="riskserve", protocol="grpc", **at)
            r = find(rows, model=model, server="riskserve", protocol="v1", **at)
            if g and r and not math.isnan(g.cpu_ms + r.cpu_ms) and r.cpu_ms:
                v.measured += (f"; server CPU per request {g.cpu_ms:.2f} vs {r.cpu_ms:.2f} ms "
                               f"(×{g.cpu_ms / r.cpu_ms:.2f})")
            v.measured += _floor_note(floor, workers, clients)
            v.profile = (Cell(model, "v1", clients, workers), Cell(model, "grpc", clients,
                                                                   workers))
            out.append(v)
    return out


def _floor_note(floor: Sequence[Row], workers: int, clients: int) -> str:
    """The empty handlers' CPU per request: the part of the gap below riskserve's code."""
    at = {"workers": workers, "clients": clients, "server": "floor"}
    g, h = find(floor, protocol="grpc", **at), find(floor, protocol="v1", **at)
    if not (g and h) or math.isnan(g.cpu_ms + h.cpu_ms):
        return ""
    return (f"; an empty handler alone costs {g.cpu_ms:.2f} ms on grpc.aio vs {h.cpu_ms:.2f} "
            f"on uvicorn")


def csv_verdicts(rows: list[CsvRow]) -> list[Verdict]:
    out = []
    for model, size in dict.fromkeys((c.model, c.rows_in) for c in rows):
        cells = [c for c in rows if c.model == model and c.rows_in == size]
        mine = next((c for c in cells if c.server == "riskserve"), None)
        limit = next((c for c in cells if c.server == "in-process (limit)"), None)
        if mine is None:
            continue
        cell = (Cell(model, "csv", 1, mine.workers, csv_rows=size),)
        if limit is not None:
            out.append(_at_least(f"{model} CSV {size:,} rows ≥ 60 % of in-process rows/s",
                                 mine.rows_per_s, limit.rows_per_s, 0.6, "rows/s"))
            out[-1].profile = cell
        peers = [c for c in cells if c.server not in ("riskserve", "baseline",
                                                      "in-process (limit)")]
        if peers:
            best = max(peers, key=lambda c: c.rows_per_s)
            out.append(_at_least(f"{model} CSV {size:,} rows ahead of every peer",
                                 mine.rows_per_s, best.rows_per_s, 1.0,
                                 f"rows/s of {best.server}"))
            out[-1].profile = cell
    return out


def cold_verdicts(rows: list[ColdRow], workers: int) -> list[Verdict]:
    mine = next((c for c in rows if c.server == "riskserve" and c.workers == workers), None)
    base = next((c for c in rows if c.server == "baseline" and c.workers == workers), None)
    if mine is None:
        return []
    out = [Verdict(f"cold start ≤ 5 s ({workers} worker{'s' * (workers > 1)})",
                   f"{mine.seconds:.1f} s",
                   mine.seconds <= 5.0)]
    if base is not None:
        growth = mine.rss_per_worker_mb / base.rss_per_worker_mb - 1
        out.append(Verdict("RSS per worker grows ≤ 30 % over the baseline",
                           f"{mine.rss_per_worker_mb:.0f} vs {base.rss_per_worker_mb:.0f} MiB "
                           f"({growth:+.0%})", growth <= 0.30))
    else:
        out.append(Verdict("RSS per worker grows ≤ 30 % over the baseline",
                           f"{mine.rss_per_worker_mb:.0f} MiB (no --baseline)", None))
    return out


def baseline_verdicts(rows: list[Row], workers: int) -> list[Verdict]:
    """Issue 11: no route slower than the baseline by more than 5 % (req/s)."""
    out = []
    for b in rows:
        if b.server != "baseline" or b.workers != workers:
            continue
        mine = find(rows, server="riskserve", model=b.model, workers=workers,
                    clients=b.clients, protocol=b.protocol)
        if mine is not None:
            out.append(_at_least(f"{b.model} {b.protocol} at {b.clients} client"
                                 f"{'s' * (b.clients > 1)}: no slower than the baseline by "
                                 f"> 5 %", mine.rps, b.rps, 0.95, "req/s"))
    return out


def all_verdicts(results: Results, workers: int, clients: int,
                 neighbour_workers: list[int], fraud_clients: int = 16,
                 heavy_clients: int = 4) -> list[Verdict]:
    return [*neighbour_verdicts(results.neighbours, neighbour_workers, fraud_clients,
                                heavy_clients),
            *online_verdicts(results.rows, workers, clients, results.floor),
            *csv_verdicts(results.csv),
            *cold_verdicts(results.cold, workers),
            *baseline_verdicts(results.rows, workers)]
