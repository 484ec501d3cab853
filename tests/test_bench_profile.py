"""`make profile` and `make profile-misses`: py-spy's samples counted into buckets, a missed
target naming the loads that show where its time goes, and one real profile of a real
riskserve (py-spy from .cache/bench/tools-venv, the session's model store) into PROFILES.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import report, verdicts
from benchmarks.neighbours import ALL, HEAVY, NeighbourRow
from benchmarks.profile import GRPC_SERVER, Cell, Profile, bucket, compare, tally
from benchmarks.report_rows import CsvRow, Results, Row

THREAD = ("Thread._bootstrap (threading.py:1002);Thread._bootstrap_inner (threading.py:1045);"
          "Thread.run (threading.py:982)")
LOOP = "thread (1): MainThread;<module> (x.py:1);Runner.run (asyncio/runners.py:118)"


def test_the_profile_puts_grpcs_poller_thread_in_the_grpc_bucket() -> None:
    """grpc's poller shows only threading.py frames (its work is Cython): by thread name it is
    the gRPC server's, not the data plane's executor threads' (which share those frames)."""
    assert bucket(f"thread (7): Thread-1 (_poll_wrapper);{THREAD}") == GRPC_SERVER
    assert bucket(f"thread (8): rs-fraud_0;{THREAD}").startswith("data plane")


def test_busy_samples_are_counted_per_bucket_and_idle_threads_left_out(tmp_path: Path) -> None:
    model = f"{LOOP};OnnxAdapter.score (riskserve/core/compiled.py:68)"
    csv = f"thread (9): rs-csv;{THREAD};_cells (riskserve/v1/csv_echo.py:59)"
    idle = f"thread (9): rs-csv;{THREAD};_worker (concurrent/futures/thread.py:81)"
    (tmp_path / "w1.txt").write_text(f"{model} 30\n{LOOP} 10\n{idle} 500\n")
    (tmp_path / "w2.txt").write_text(f"{csv} 60\n")

    t = tally([tmp_path / "w1.txt", tmp_path / "w2.txt"])

    assert t.busy == 100  # the 500 idle samples are not work
    assert t.buckets["model (xgboost / lightgbm / scikit-learn / onnxruntime)"] == 30
    assert t.buckets["CSV reading and answer lines (pandas, riskserve/v1/csv_echo.py)"] == 60
    assert t.own["Runner.run (asyncio/runners.py:118)"] == 10  # uvloop's own (C) work
    prof = Profile(Cell(), 100.0, 5.0, 0, 2.0, t)
    assert prof.ms("model (xgboost / lightgbm / scikit-learn / onnxruntime)") == pytest.approx(0.6)
    table = compare([prof, prof])
    assert "| model (xgboost / lightgbm / scikit-learn / onnxruntime) | 30% · 0.600 ms |" in table


def _row(model: str, protocol: str, rps: float) -> Row:
    return Row(model, 2, 32, "riskserve", protocol, rps, 1.0, 2.0, 3.0, 1000, 0, "", 500.0, 0.1,
               0.7)


def _results() -> Results:
    rows = [_row("risk-flag", "v1", 2500.0), _row("risk-flag", "grpc", 1400.0),
            _row("fraud", "v1", 2600.0), _row("fraud", "grpc", 2300.0)]
    csv = [CsvRow("fraud", 2, "riskserve", "multipart", 2000, 2000, 0.5, 800.0),
           CsvRow("fraud", 2, "in-process (limit)", "in process", 2000, 2000, 0.1, 0.0)]
    neighbours = [NeighbourRow("riskserve", 2, 1, "alone", 3000.0, 9.0, 0, 0.0, 0),
                  NeighbourRow("riskserve", 2, 1, ALL, 1500.0, 20.0, 0, 300.0, 0, 0.5, 2.2)]
    return Results(rows, csv, [], neighbours)


def test_a_missed_target_names_the_loads_that_show_where_its_time_goes() -> None:
    vs = {v.target: v for v in verdicts.all_verdicts(_results(), 2, 32, [2], 16, 4)}

    grpc = vs["risk-flag gRPC within 20 % of REST /v1 (32 clients)"]
    assert grpc.passed is False
    assert grpc.profile == (Cell("risk-flag", "v1", 32, 2), Cell("risk-flag", "grpc", 32, 2))
    beside = vs["fraud beside all three, 2 workers: p99 ≤ 1.5× and req/s ≥ 0.7× alone"]
    assert beside.passed is False
    assert beside.profile == (Cell("fraud", "v1", 16, 2), Cell("fraud", "v1", 16, 2, HEAVY, 4))
    csv = vs["fraud CSV 2,000 rows ≥ 60 % of in-process rows/s"]
    assert csv.passed is False and csv.profile == (Cell("fraud", "csv", 1, 2, csv_rows=2000),)
    assert vs["fraud gRPC within 20 % of REST /v1 (32 clients)"].passed is True


def test_results_json_reads_back_into_the_same_verdicts() -> None:
    results = _results()
    again = report.from_json(json.loads(json.dumps(report.to_json(results), default=float)))
    assert ([(v.target, v.measured, v.passed) for v in verdicts.all_verdicts(again, 2, 32, [2])]
            == [(v.target, v.measured, v.passed)
                for v in verdicts.all_verdicts(results, 2, 32, [2])])


def test_profile_misses_profiles_a_real_riskserve_into_profiles_md(
        trained: dict[str, object], tmp_path: Path) -> None:
    """The one missed target here is a CSV one: one load, one real riskserve, py-spy on it."""
    from benchmarks import profile

    results = Results([], [CsvRow("fraud", 1, "riskserve", "multipart", 2000, 2000, 0.5, 800.0),
                           CsvRow("fraud", 1, "in-process (limit)", "", 2000, 2000, 0.1, 0.0)],
                      [])
    judged = {"workers": 1, "clients": 32, "neighbour_workers": [1], "fraud_clients": 16,
              "heavy_clients": 4}
    run = tmp_path / "results.json"
    run.write_text(json.dumps({"meta": {"date": "2026-12-04 12:00 UTC", "judged": judged},
                               **report.to_json(results)}, default=float))
    published = tmp_path / "PROFILES.md"

    [prof] = profile.misses(run, seconds=2, publish=published)

    assert prof.cell == Cell("fraud", "csv", 1, 1, csv_rows=2000)
    assert prof.errors == 0 and prof.rps > 0 and prof.cpu_ms > 0 and prof.busy > 0
    assert prof.buckets["model (xgboost / lightgbm / scikit-learn / onnxruntime)"] > 0
    text = published.read_text()
    assert "## fraud CSV 2,000 rows ≥ 60 % of in-process rows/s" in text
    assert "| | fraud CSV 2,000 rows, 1 client, 1 worker |" in text
    assert "In the bench: 0.20× (4,000 vs 20,000 rows/s)." in text
