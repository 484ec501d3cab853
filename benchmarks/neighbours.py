"""Noisy neighbour: does a heavy model slow fraud down when both share riskserve's workers?

Each round measures fraud /v1 at `fraud_clients` clients alone, then beside `heavy_clients`
clients on each heavy model in turn (keystroke-rf, keystroke-svm, keystroke-xgb, single rows
over /v1/predict) and beside all three at once, every load of a cell running concurrently for
the same window. Ratios are taken against the alone cell *of the same round*, so slow drift of
the machine's background load cancels out. Every round opens new connections: with several
workers the kernel spreads them over the workers (SO_REUSEPORT) differently each time, which
is why every round is kept and the spread (min / median / max) reported, not only a mean.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks import load
from benchmarks.servers import Running, log

HEAVY = ("keystroke-rf", "keystroke-svm", "keystroke-xgb")
ALL = "all three"


@dataclass
class NeighbourRow:
    """fraud's numbers in one round, alone or beside one neighbour set, on one server."""

    server: str  # "riskserve" or "baseline"
    workers: int
    round: int
    neighbour: str  # "alone", a heavy model's name, or ALL
    rps: float
    p99: float
    errors: int
    neighbour_rps: float  # the heavy models' answered req/s (all of them, summed)
    neighbour_errors: int
    rps_ratio: float = float("nan")  # vs alone in the same round
    p99_ratio: float = float("nan")


def _neighbour_sets(heavy: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    sets = [("alone", ())] + [(h, (h,)) for h in heavy]
    if len(heavy) > 1:
        sets.append((ALL, tuple(heavy)))
    return sets


async def _cell(running: Running, bodies: dict[str, list[bytes]], fraud_clients: int,
                heavy_clients: int, neighbours: tuple[str, ...], seconds: float,
                warmup: float, max_requests: int) -> tuple[load.Result, list[load.Result]]:
    """fraud and its neighbours, all started together and measured over the same window."""
    url = f"{running.http_url}/v1/predict"
    headers = {"content-type": "application/json", **running.headers}
    runs = [load.http_load(url, bodies["fraud"], headers, fraud_clients, seconds, max_requests,
                           warmup)]
    runs += [load.http_load(url, bodies[n], headers, heavy_clients, seconds, max_requests,
                            warmup) for n in neighbours]
    results = await asyncio.gather(*runs)
    return results[0], list(results[1:])


def measure(running: Running, label: str, workers: int, bodies: dict[str, list[bytes]],
            rounds: int, seconds: float, warmup: float, max_requests: int,
            fraud_clients: int = 16, heavy_clients: int = 4,
            heavy: Sequence[str] = HEAVY) -> list[NeighbourRow]:
    """Every round of every neighbour set on one running server."""
    out: list[NeighbourRow] = []
    for r in range(1, rounds + 1):
        alone: NeighbourRow | None = None
        for name, neighbours in _neighbour_sets(heavy):
            fraud, others = asyncio.run(_cell(running, bodies, fraud_clients, heavy_clients,
                                              neighbours, seconds, warmup, max_requests))
            row = NeighbourRow(label, workers, r, name, fraud.rps, fraud.p99,
                               fraud.error_count, sum(o.rps for o in others),
                               sum(o.error_count for o in others))
            if alone is None:
                alone = row
            elif alone.rps and alone.p99:
                row.rps_ratio, row.p99_ratio = row.rps / alone.rps, row.p99 / alone.p99
            out.append(row)
            log(f"  neighbours {label:9} w={workers} round {r} {name:13} fraud "
                f"{row.rps:7.0f} req/s p99 {row.p99:7.2f} ms  (x{row.rps_ratio:.2f} req/s, "
                f"x{row.p99_ratio:.2f} p99)  neighbours {row.neighbour_rps:6.0f} req/s, "
                f"errors {row.errors}/{row.neighbour_errors}")
    return out
