"""Turn one run's rows into RESULTS.md (targets, every cell, ratios) and the PNG plot."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import verdicts
from benchmarks.neighbours import NeighbourRow
from benchmarks.report_rows import LIMIT_LABEL, TARGETS, ColdRow, CsvRow, Results, Row
from benchmarks.verdicts import find

# Peers riskserve's req/s is divided by, as (column title, server, protocol for gRPC rows).
PEER_COLUMNS = (("× seed", "seed", None), ("× MLServer", "mlserver", "grpc"),
                ("× KServe", "kserve", None), ("× Ray", "ray", None),
                ("× baseline", "baseline", "same"))


def _fmt(x: float, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:,.{digits}f}"


def _ratio(a: float, b: float | None) -> str:
    if not b or math.isnan(b) or math.isnan(a):
        return "—"
    return f"{a / b:.2f}×"


def ratios(rows: Sequence[Row], r: Row) -> list[str]:
    """riskserve vs each peer at the same model, clients and workers; then vs the limit."""
    key = {"model": r.model, "workers": r.workers}
    limit = find(rows, server="limit", **key)
    of_limit = _ratio(r.rps, limit.rps if limit else None)
    if r.server != "riskserve":
        return [""] * len(PEER_COLUMNS) + [of_limit]
    out = []
    for _, server, grpc_protocol in PEER_COLUMNS:
        want: dict[str, Any] = {"server": server, "clients": r.clients, **key}
        if grpc_protocol == "same":
            want["protocol"] = r.protocol
        elif grpc_protocol == "grpc":
            want["protocol"] = "grpc" if r.protocol == "grpc" else "rest"
        peer = find(rows, **want)
        out.append(_ratio(r.rps, peer.rps if peer else None))
    return [*out, of_limit]


def table(rows: Sequence[Row], select: Sequence[Row]) -> str:
    titles = " | ".join(t for t, _, _ in PEER_COLUMNS)
    out = [f"| model | clients | server / protocol | req/s | p50 ms | p95 ms | p99 ms | errors "
           f"| server CPU ms/req | RSS MiB | {titles} | of limit |\n",
           "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|" + "--:|" * (len(PEER_COLUMNS) + 1)
           + "\n"]
    for r in select:
        errors = str(r.errors) + (f" ({r.error_kinds})" if r.errors else "")
        label = f"**{r.label}**" if r.server == "riskserve" else r.label
        clients = "—" if r.server == "limit" else str(r.clients)
        rps = _fmt(r.rps) + ("" if math.isnan(r.spread) else f" ±{r.spread:.0%}")
        out.append(f"| {r.model} | {clients} | {label} | {rps} | {_fmt(r.p50, 2)} | "
                   f"{_fmt(r.p95, 2)} | {_fmt(r.p99, 2)} | {errors} | {_fmt(r.cpu_ms, 2)} | "
                   f"{_fmt(r.rss_mb)} | " + " | ".join(ratios(rows, r)) + " |\n")
    return "".join(out)


def _order(r: Row) -> tuple[Any, ...]:
    keys = [*TARGETS]
    pos = -1 if r.server == "limit" else keys.index((r.server, r.protocol))
    return (r.model, r.clients, pos)


def _workers(n: int) -> str:
    return f"{n} worker{'s' * (n != 1)}"


def _model_order(m: str) -> tuple[bool, bool, str]:
    return (m != "fraud", m.startswith("keystroke"), m)


def verdict_table(vs: Sequence[verdicts.Verdict]) -> str:
    out = ["| target | measured | result |\n|---|---|---|\n"]
    out += [f"| {v.target} | {v.measured} | {v.mark} |\n" for v in vs]
    return "".join(out)


def neighbour_tables(rows: Sequence[NeighbourRow]) -> str:
    """Every round, then the spread (min / median / max of the ratios) per neighbour."""
    if not rows:
        return ""
    out = ["## Noisy neighbour: fraud /v1 alone and beside the heavy models\n\n",
           "Ratios are against fraud alone in the same round (req/s: higher is better, "
           "p99: lower is better).\n\n",
           "| server | workers | neighbour | rounds | req/s ratio min / median / max "
           "| p99 ratio min / median / max | fraud req/s (median) | fraud p99 ms (median) |\n",
           "|---|--:|---|--:|---|---|--:|--:|\n"]
    groups = dict.fromkeys((r.server, r.workers, r.neighbour) for r in rows)
    for server, workers, name in groups:
        cells = [r for r in rows if (r.server, r.workers, r.neighbour) == (server, workers, name)]
        rps = [r.rps_ratio for r in cells if not math.isnan(r.rps_ratio)]
        p99 = [r.p99_ratio for r in cells if not math.isnan(r.p99_ratio)]

        def spread(xs: list[float]) -> str:
            if not xs:
                return "—"
            return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"

        out.append(f"| {server} | {workers} | {name} | {len(cells)} | {spread(rps)} | "
                   f"{spread(p99)} | {statistics.median(r.rps for r in cells):,.0f} | "
                   f"{statistics.median(r.p99 for r in cells):.2f} |\n")
    out += ["\nEvery round:\n\n",
            "| server | workers | round | neighbour | fraud req/s | fraud p99 ms | × req/s "
            "| × p99 | fraud errors | neighbours req/s | neighbour errors |\n",
            "|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|\n"]
    for r in rows:
        out.append(f"| {r.server} | {r.workers} | {r.round} | {r.neighbour} | {r.rps:,.0f} | "
                   f"{r.p99:.2f} | {_fmt(r.rps_ratio, 2)} | {_fmt(r.p99_ratio, 2)} | "
                   f"{r.errors} | {r.neighbour_rps:,.0f} | {r.neighbour_errors} |\n")
    return "".join(out) + "\n"


def floor_table(rows: Sequence[Row]) -> str:
    """The empty handlers of benchmarks/floor.py: each protocol stack's own cost."""
    if not rows:
        return ""
    out = ["## Framework floor: an empty handler on each protocol stack\n\n",
           "Same load generators, clients, request bodies and process count as the cells above; "
           "the handler does nothing. The gRPC/REST gap in server CPU per request that is left "
           "here cannot be removed by riskserve's code (benchmarks/floor.py).\n\n",
           "| stack | request body | processes | clients | req/s | p50 ms | p99 ms "
           "| server CPU ms/req |\n",
           "|---|---|--:|--:|--:|--:|--:|--:|\n"]
    for r in rows:
        out.append(f"| {r.label} | {r.model} | {r.workers} | {r.clients} | {_fmt(r.rps)} | "
                   f"{_fmt(r.p50, 2)} | {_fmt(r.p99, 2)} | {_fmt(r.cpu_ms, 3)} |\n")
    return "".join(out) + "\n"


def cold_table(rows: Sequence[ColdRow]) -> str:
    if not rows:
        return ""
    out = ["## Cold start and memory\n\n",
           "| server | workers | launch → ready s | RSS MiB (process tree) | RSS per worker MiB "
           "| processes | idle CPU, % of a core |\n|---|--:|--:|--:|--:|--:|--:|\n"]
    for c in sorted(rows, key=lambda c: (-c.workers, c.server != "riskserve", c.server)):
        idle = "—" if c.idle_cpu != c.idle_cpu else f"{c.idle_cpu:.1%}"  # NaN: not measured
        out.append(f"| {c.server} | {c.workers} | {c.seconds:.1f} | {c.rss_mb:,.0f} | "
                   f"{c.rss_per_worker_mb:,.0f} | {c.processes} | {idle} |\n")
    return "".join(out) + "\n"


def baseline_table(rows: Sequence[Row]) -> str:
    """Issue 11's before/after: current / baseline per route, same rounds."""
    pairs = [(b, find(rows, server="riskserve", model=b.model, workers=b.workers,
                      clients=b.clients, protocol=b.protocol))
             for b in rows if b.server == "baseline"]
    if not pairs:
        return ""
    out = ["## Before / after: this checkout against the baseline\n\n",
           "| model | workers | clients | route | baseline req/s | now req/s | × req/s "
           "| baseline p99 ms | now p99 ms | × p99 |\n",
           "|---|--:|--:|---|--:|--:|--:|--:|--:|--:|\n"]
    for b, now in sorted(pairs, key=lambda p: (_model_order(p[0].model), p[0].workers,
                                               p[0].clients, p[0].protocol)):
        if now is None:
            continue
        out.append(f"| {b.model} | {b.workers} | {b.clients} | {b.protocol} | {b.rps:,.0f} | "
                   f"{now.rps:,.0f} | {_ratio(now.rps, b.rps)} | {b.p99:.2f} | "
                   f"{now.p99:.2f} | {_ratio(now.p99, b.p99)} |\n")
    return "".join(out) + "\n"


def csv_table(rows: Sequence[CsvRow]) -> str:
    if not rows:
        return ""
    out = ["## CSV: one file per request\n\n",
           "| model | rows | server | how | rows out | seconds | rows/s | of in-process "
           "| RSS MiB |\n|---|--:|---|---|--:|--:|--:|--:|--:|\n"]
    for c in sorted(rows, key=lambda c: (_model_order(c.model), c.rows_in,
                                         c.server != LIMIT_LABEL, c.server)):
        limit = next((x for x in rows if x.model == c.model and x.rows_in == c.rows_in
                      and x.server == LIMIT_LABEL), None)
        of = f"{c.rows_per_s / limit.rows_per_s:.0%}" if limit and c is not limit else "—"
        out.append(f"| {c.model} | {c.rows_in:,} | {c.server} | {c.how} | {c.rows_out:,} | "
                   f"{c.seconds:.2f} | {_fmt(c.rows_per_s)} | {of} | {_fmt(c.rss_mb)} |\n")
    return "".join(out) + "\n"


def markdown(results: Results, meta: dict[str, Any], headline_workers: int,
             headline_clients: int, neighbour_workers: list[int]) -> str:
    """The whole report: targets, headline, every cell, neighbours, cold start, CSV, method."""
    rows = results.rows
    head = [r for r in rows if r.workers == headline_workers
            and (r.clients == headline_clients or r.server == "limit")]
    vs = verdicts.all_verdicts(results, headline_workers, headline_clients, neighbour_workers)
    parts = [
        f"# riskserve benchmark ({meta['date']})\n\n",
        f"Machine: {meta['machine']}.  \n",
        f"Software: {meta['software']}.  \n",
        f"Command: `{meta['command']}` ({meta['wall_s']:.0f} s for the whole run).  \n",
        *([f"Baseline: riskserve at {meta['baseline']}, same venv and model store.  \n"]
          if meta.get("baseline") else []),
        f"Machine load: {meta['load']}; other work on a shared machine lowers every number, "
        f"which is why targets alternate in rounds (± is the spread between rounds).\n\n",
        f"## Targets ({_workers(headline_workers)}, single-row requests)\n\n",
        verdict_table(vs), "\n",
        *(["Each missed target's profile, beside the cell it is judged against, is in "
           "[PROFILES.md](PROFILES.md) (`make profile-misses`, which `make bench` runs after "
           "a run that missed one); `make profile MODEL= PROTOCOL= WORKERS= NEIGHBOUR=` "
           "profiles any other cell.\n\n"]
          if any(v.passed is False for v in vs) else []),
        f"## Headline: single-row requests, {headline_clients} concurrent clients, "
        f"{_workers(headline_workers)} each\n\n",
        table(rows, sorted(head, key=lambda r: (_model_order(r.model), _order(r)))), "\n",
        floor_table(results.floor),
    ]
    for w in sorted({r.workers for r in rows}, key=lambda w: w != headline_workers):
        cells = sorted((r for r in rows if r.workers == w),
                       key=lambda r: (_model_order(r.model), _order(r)))
        if w == headline_workers:
            cells = [r for r in cells if r.clients != headline_clients and r.server != "limit"]
            title = f"## Every other concurrency, {w} workers\n\n"
        else:
            title = f"## {w} worker{'s' if w > 1 else ''}\n\n"
        if cells:
            parts += [title, table(rows, cells), "\n"]
    parts += [neighbour_tables(results.neighbours), cold_table(results.cold),
              baseline_table(rows), csv_table(results.csv),
              "## How it was measured\n\n", meta["method"], "\n"]
    return "".join(parts)


STYLES = {"riskserve": "-", "baseline": "-.", "seed": "--", "mlserver": ":", "kserve": ":",
          "ray": "--"}


def plot(results: Results, path: Path, workers: int, title: str) -> None:
    """req/s and p99 against clients, one column per model, the limit as a dashed line;
    a last column with the noisy-neighbour ratios when that scenario ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results.rows
    models = sorted({r.model for r in rows if r.workers == workers}, key=_model_order)
    ncols = len(models) + (1 if results.neighbours else 0)
    fig, axes = plt.subplots(2, max(ncols, 1), figsize=(6 * max(ncols, 1), 8.5), squeeze=False)
    for col, model in enumerate(models):
        cells = [r for r in rows if r.model == model and r.workers == workers]
        top, bottom = axes[0][col], axes[1][col]
        for (server, protocol), label in TARGETS.items():
            series = sorted((r for r in cells if r.server == server and r.protocol == protocol),
                            key=lambda r: r.clients)
            if not series:
                continue
            xs = [r.clients for r in series]
            kw = {"label": label, "linestyle": STYLES[server], "marker": "o",
                  "linewidth": 2.4 if server == "riskserve" else 1.4}
            top.plot(xs, [r.rps for r in series], **kw)
            bottom.plot(xs, [r.p99 for r in series], **kw)
        limit = find(cells, server="limit")
        if limit:
            top.axhline(limit.rps, color="grey", linestyle="-.", linewidth=1,
                        label=f"{LIMIT_LABEL}: {limit.rps:,.0f}/s")
        top.set_title(f"{model}: throughput ({workers} workers)")
        top.set_ylabel("requests / s (log)")
        bottom.set_title(f"{model}: p99 latency")
        bottom.set_ylabel("p99 ms (log)")
        bottom.set_yscale("log")
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({r.clients for r in cells if r.server != "limit"}))
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.set_xlabel("concurrent clients")
            ax.grid(True, alpha=0.3)
        top.set_yscale("log")
        top.legend(fontsize=7)
    if results.neighbours:
        _plot_neighbours(results.neighbours, axes[0][-1], axes[1][-1])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_neighbours(rows: Sequence[NeighbourRow], top: Any, bottom: Any) -> None:
    """Every round's ratio as a dot, per (server, workers) and neighbour, with the targets."""
    groups = list(dict.fromkeys((r.server, r.workers) for r in rows))
    names = list(dict.fromkeys(r.neighbour for r in rows if r.neighbour != "alone"))
    width = 0.8 / max(len(groups), 1)
    for gi, (server, w) in enumerate(groups):
        for ni, name in enumerate(names):
            cells = [r for r in rows if (r.server, r.workers, r.neighbour) == (server, w, name)]
            x = ni + gi * width
            label = f"{server}, {w} worker{'s' * (w > 1)}" if ni == 0 else None
            marker = "o" if server == "riskserve" else "x"
            color = f"C{gi}"
            top.scatter([x] * len(cells), [r.rps_ratio for r in cells], marker=marker,
                        color=color, label=label)
            bottom.scatter([x] * len(cells), [r.p99_ratio for r in cells], marker=marker,
                           color=color, label=label)
    top.axhline(0.7, color="red", linestyle="--", linewidth=1, label="target ≥ 0.7×")
    bottom.axhline(1.5, color="red", linestyle="--", linewidth=1, label="target ≤ 1.5×")
    for ax, what in ((top, "req/s"), (bottom, "p99")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, fontsize=8)
        ax.set_title(f"noisy neighbour: fraud {what} beside / alone, every round")
        ax.set_ylabel(f"{what} ratio")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)


def to_json(results: Results) -> dict[str, Any]:
    return {"rows": [asdict(r) for r in results.rows], "csv": [asdict(c) for c in results.csv],
            "cold": [asdict(c) for c in results.cold],
            "neighbours": [asdict(n) for n in results.neighbours],
            "floor": [asdict(r) for r in results.floor]}


def from_json(data: dict[str, Any]) -> Results:
    """The rows `to_json` wrote (results.json), back as the dataclasses the verdicts judge."""
    return Results([Row(**r) for r in data["rows"]], [CsvRow(**c) for c in data["csv"]],
                   [ColdRow(**c) for c in data["cold"]],
                   [NeighbourRow(**n) for n in data["neighbours"]],
                   [Row(**r) for r in data["floor"]])
