"""The measured rows of one run (shared by the runner, the report and the verdicts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# (server, protocol) -> the label used in tables and plots, in display order.
TARGETS = {
    ("riskserve", "v1"): "riskserve HTTP /v1",
    ("riskserve", "v2"): "riskserve HTTP /v2",
    ("riskserve", "grpc"): "riskserve gRPC",
    ("baseline", "v1"): "baseline HTTP /v1",
    ("baseline", "v2"): "baseline HTTP /v2",
    ("baseline", "grpc"): "baseline gRPC",
    ("seed", "http"): "seed FastAPI",
    ("mlserver", "rest"): "MLServer REST",
    ("mlserver", "grpc"): "MLServer gRPC",
    ("kserve", "rest"): "KServe REST v2",
    ("ray", "http"): "Ray Serve HTTP",
    ("floor", "v1"): "uvicorn, empty handler",
    ("floor", "grpc"): "grpc.aio, empty handler",
}
LIMIT_LABEL = "in-process (limit)"


@dataclass
class Row:
    """One measured cell: a model at a concurrency on one server and protocol."""

    model: str
    workers: int
    clients: int
    server: str
    protocol: str
    rps: float
    p50: float
    p95: float
    p99: float
    requests: int
    errors: int
    error_kinds: str
    rss_mb: float
    client_cpu: float  # client CPU seconds per wall second (the load generator's share)
    cpu_ms: float = float("nan")  # server CPU ms per request (whole process tree)
    spread: float = float("nan")  # half the min-max range of req/s across rounds, relative

    @property
    def label(self) -> str:
        return LIMIT_LABEL if self.server == "limit" else TARGETS[(self.server, self.protocol)]


@dataclass
class CsvRow:
    model: str
    workers: int
    server: str
    how: str
    rows_in: int
    rows_out: int
    seconds: float
    rss_mb: float

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ColdRow:
    """One server start: launch -> ready, and its memory right after."""

    server: str
    workers: int
    seconds: float
    rss_mb: float
    rss_per_worker_mb: float
    processes: int
    idle_cpu: float = float("nan")  # share of one core the idle server draws (meta.idle_cpu)


@dataclass
class Results:
    rows: list[Row]
    csv: list[CsvRow]
    cold: list[ColdRow]
    neighbours: list[Any] = field(default_factory=list)  # neighbours.NeighbourRow
    floor: list[Row] = field(default_factory=list)  # benchmarks/floor.py's empty handlers
