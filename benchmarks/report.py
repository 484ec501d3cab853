"""Turn measured rows into the Markdown table (with ratios to the peers) and the PNG plot."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# (server, protocol) -> the label used in tables and plots, in display order.
TARGETS = {
    ("riskserve", "v1"): "riskserve HTTP /v1",
    ("riskserve", "v2"): "riskserve HTTP /v2",
    ("riskserve", "grpc"): "riskserve gRPC",
    ("seed", "http"): "seed FastAPI",
    ("mlserver", "rest"): "MLServer REST",
    ("mlserver", "grpc"): "MLServer gRPC",
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


def _fmt(x: float, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:,.{digits}f}"


def _ratio(a: float, b: float | None) -> str:
    if not b or math.isnan(b) or math.isnan(a):
        return "—"
    return f"{a / b:.2f}×"


def _find(rows: Iterable[Row], **want: Any) -> Row | None:
    for r in rows:
        if all(getattr(r, k) == v for k, v in want.items()):
            return r
    return None


def ratios(rows: Sequence[Row], r: Row) -> tuple[str, str, str]:
    """riskserve vs the seed app, vs MLServer over the same kind of transport, vs the limit."""
    key = {"model": r.model, "workers": r.workers}
    limit = _find(rows, server="limit", **key)
    of_limit = _ratio(r.rps, limit.rps if limit else None)
    if r.server != "riskserve":
        return "", "", of_limit
    seed = _find(rows, server="seed", clients=r.clients, **key)
    ml = _find(rows, server="mlserver", clients=r.clients,
               protocol="grpc" if r.protocol == "grpc" else "rest", **key)
    return (_ratio(r.rps, seed.rps if seed else None), _ratio(r.rps, ml.rps if ml else None),
            of_limit)


HEADER = ("| model | clients | server / protocol | req/s | p50 ms | p95 ms | p99 ms | errors "
          "| server CPU ms/req | RSS MiB | × seed FastAPI | × MLServer | of limit |\n"
          "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")


def table(rows: Sequence[Row], select: Sequence[Row]) -> str:
    out = [HEADER]
    for r in select:
        vs_seed, vs_ml, of_limit = ratios(rows, r)
        errors = str(r.errors) + (f" ({r.error_kinds})" if r.errors else "")
        label = f"**{r.label}**" if r.server == "riskserve" else r.label
        clients = "—" if r.server == "limit" else str(r.clients)
        rps = _fmt(r.rps) + ("" if math.isnan(r.spread) else f" ±{r.spread:.0%}")
        out.append(f"| {r.model} | {clients} | {label} | {rps} | {_fmt(r.p50, 2)} | "
                   f"{_fmt(r.p95, 2)} | {_fmt(r.p99, 2)} | {errors} | {_fmt(r.cpu_ms, 2)} | "
                   f"{_fmt(r.rss_mb)} | "
                   f"{vs_seed} | {vs_ml} | {of_limit} |\n")
    return "".join(out)


def _order(r: Row) -> tuple[Any, ...]:
    keys = [*TARGETS]
    pos = -1 if r.server == "limit" else keys.index((r.server, r.protocol))
    return (r.model, r.clients, pos)


def markdown(rows: Sequence[Row], csv_rows: Sequence[CsvRow], meta: dict[str, Any],
             headline_workers: int, headline_clients: int) -> str:
    """The whole report: headline, every cell, CSV, other worker counts, method notes."""
    models = sorted({r.model for r in rows}, key=lambda m: (m != "fraud", m))
    head = [r for r in rows if r.workers == headline_workers
            and (r.clients == headline_clients or r.server == "limit")]
    parts = [
        f"# riskserve benchmark ({meta['date']})\n\n",
        f"Machine: {meta['machine']}.  \n",
        f"Software: {meta['software']}.  \n",
        f"Command: `{meta['command']}` ({meta['wall_s']:.0f} s for the whole run).  \n",
        f"Machine load: {meta['load']}; other work on a shared machine lowers every number, "
        f"which is why targets alternate in rounds (± is the spread between rounds).\n\n",
        f"## Headline: single-row requests, {headline_clients} concurrent clients, "
        f"{headline_workers} workers each\n\n",
        table(rows, sorted(head, key=_order)),
        "\n",
    ]
    for w in sorted({r.workers for r in rows}):
        cells = sorted((r for r in rows if r.workers == w), key=_order)
        if w == headline_workers:
            cells = [r for r in cells if r.clients != headline_clients or r.server == "limit"]
            title = f"## Every other concurrency, {w} workers\n\n"
        else:
            title = f"## {w} worker{'s' if w > 1 else ''}\n\n"
        if cells:
            parts += [title, table(rows, cells), "\n"]
    if csv_rows:
        parts += ["## CSV: 100,000 rows in one request\n\n",
                  "| model | server | how | rows in | rows out | seconds | rows/s | RSS MiB |\n",
                  "|---|---|---|--:|--:|--:|--:|--:|\n"]
        for c in sorted(csv_rows, key=lambda c: (models.index(c.model), c.server)):
            parts.append(f"| {c.model} | {c.server} | {c.how} | {c.rows_in:,} | "
                         f"{c.rows_out:,} | {c.seconds:.2f} | {_fmt(c.rows_per_s)} | "
                         f"{_fmt(c.rss_mb)} |\n")
        parts.append("\n")
    parts += ["## How it was measured\n\n", meta["method"], "\n"]
    return "".join(parts)


def plot(rows: Sequence[Row], path: Path, workers: int, title: str) -> None:
    """req/s and p99 against clients, one column per model, the limit as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r.model for r in rows}, key=lambda m: (m != "fraud", m))
    fig, axes = plt.subplots(2, len(models), figsize=(6.5 * len(models), 8.5), squeeze=False)
    styles = {"riskserve": "-", "seed": "--", "mlserver": ":"}
    for col, model in enumerate(models):
        cells = [r for r in rows if r.model == model and r.workers == workers]
        top, bottom = axes[0][col], axes[1][col]
        for (server, protocol), label in TARGETS.items():
            series = sorted((r for r in cells if r.server == server and r.protocol == protocol),
                            key=lambda r: r.clients)
            if not series:
                continue
            xs = [r.clients for r in series]
            kw = {"label": label, "linestyle": styles[server], "marker": "o",
                  "linewidth": 2.4 if server == "riskserve" else 1.6}
            top.plot(xs, [r.rps for r in series], **kw)
            bottom.plot(xs, [r.p99 for r in series], **kw)
        limit = _find(cells, server="limit")
        if limit:
            top.axhline(limit.rps, color="grey", linestyle="-.", linewidth=1,
                        label=f"{LIMIT_LABEL}: {limit.rps:,.0f}/s")
        top.set_title(f"{model}: throughput ({workers} workers)")
        top.set_ylabel("requests / s")
        bottom.set_title(f"{model}: p99 latency")
        bottom.set_ylabel("p99 ms (log)")
        bottom.set_yscale("log")
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xticks([1, 8, 32, 64])
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.set_xlabel("concurrent clients")
            ax.grid(True, alpha=0.3)
        top.set_yscale("log")
        top.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_json(rows: Sequence[Row], csv_rows: Sequence[CsvRow]) -> dict[str, Any]:
    return {"rows": [asdict(r) for r in rows], "csv": [asdict(c) for c in csv_rows]}
