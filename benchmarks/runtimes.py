"""Native vs compiled (ONNX Runtime) scoring per model, side by side, in one process.

    python -m benchmarks.runtimes [--budget 0.4] [--out benchmarks/RUNTIMES.md]

For each model's production version in the store ($BENTOML_HOME), times the native adapter
(XGBoost / LightGBM / scikit-learn, one thread) and the ONNX Runtime adapter (one thread) at 1,
32 and 512 rows, calls alternated so load from other processes hits both alike, and checks
parity on the same rows. A version saved without `model.onnx` (trained before compiled
inference, or where conversion or parity failed) is converted on the fly into a temporary
folder, so the table always shows what compiling would give. Writes a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

SIZES = (1, 32, 512)
OUT = Path(__file__).parent / "RUNTIMES.md"


@dataclass
class Row:
    model: str
    served: str
    framework: str
    rows: int
    calls: int
    native_median: float
    native_p99: float
    compiled_median: float
    compiled_p99: float
    native_best: float
    compiled_best: float

    @property
    def speedup(self) -> float:
        """On best-of-N: the least disturbed call is the model's own cost on a busy machine."""
        return self.native_best / max(self.compiled_best, 1e-9)


def paired(fa: Any, fb: Any, x: np.ndarray, budget_s: float, max_calls: int = 2000,
           min_calls: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per-call ms of `fa(x)` and `fb(x)`, alternated, within a time budget (the same timing
    training uses to choose the runtime)."""
    from riskserve.core.compiled import paired_ms

    return paired_ms(fa, fb, x, budget_s, max_calls, min_calls)


def rows_for(name: str, encoder: Any, n: int) -> np.ndarray:
    """Encoded rows from the family's quick data set (what the parity check runs on)."""
    from riskserve.core.specs import SPECS
    from riskserve.core.validation import columns_from_frame
    from training import pipeline
    from training.__main__ import family_of

    prepared = pipeline.prepare(family_of(name), None, True, 11)
    frame = prepared.frame.sample(min(n, len(prepared.frame)), random_state=11)
    return encoder.transform(columns_from_frame(SPECS[name], frame))


def adapters(name: str, workdir: Path) -> tuple[Any, Any, Any, str]:
    """(scoring model, native adapter, compiled adapter, served runtime) of production."""
    from riskserve.core import compiled, store
    from riskserve.core.adapters import load_adapter

    stored = store.get_version(name, store.production_version(name))
    model = store.load_stored(stored)
    folder = Path(stored.path)
    native = load_adapter(model.info["framework"], folder, model.spec.task)
    if (folder / compiled.ONNX_FILE).exists():
        onnx = compiled.OnnxAdapter.load(folder, model.spec.task)
    else:
        tmp = workdir / name
        tmp.mkdir(parents=True)
        n = len(model.encoder.output_names)
        (tmp / compiled.ONNX_FILE).write_bytes(
            compiled.to_onnx(native, model.spec.task, n).SerializeToString())
        onnx = compiled.OnnxAdapter.load(tmp, model.spec.task)
    return model, native, onnx, str(model.info["runtime"])


def run(budget_s: float, names: list[str]) -> tuple[list[Row], list[dict[str, Any]]]:
    from riskserve.core import compiled

    rows: list[Row] = []
    parity: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="runtimes-") as work:
        for name in names:
            model, native, onnx, served = adapters(name, Path(work))
            x = rows_for(name, model.encoder, 2000)
            p = compiled.compare(model.spec.task, native.score(x), onnx.score(x),
                                 model.threshold)
            parity.append({"model": name, "rows": p.rows, "ok": p.ok,
                           "label_mismatches": p.label_mismatches,
                           "max_abs_diff": p.max_abs_diff, "max_rel_diff": p.max_rel_diff})
            for n, batch in compiled.batches(x, SIZES).items():
                tn, tc = paired(native.score, onnx.score, batch, budget_s)
                rows.append(Row(name, served, native.framework, n, len(tn),
                                float(np.median(tn)), float(np.percentile(tn, 99)),
                                float(np.median(tc)), float(np.percentile(tc, 99)),
                                float(tn.min()), float(tc.min())))
                r = rows[-1]
                print(f"{name:14s} {n:4d} rows  native {r.native_best:9.3f} ms best "
                      f"{r.native_median:9.3f} median  onnx {r.compiled_best:8.3f} best "
                      f"{r.compiled_median:8.3f} median  x{r.speedup:.1f}", flush=True)
    return rows, parity


def store_home() -> str:
    from riskserve.core import store

    return str(store.bentoml_home())


def markdown(rows: list[Row], parity: list[dict[str, Any]], seconds: float) -> str:
    load = os.getloadavg()[0]
    out = [
        "# Native vs compiled scoring, in process",
        "",
        f"`python -m benchmarks.runtimes` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the end, {seconds:.0f} s; "
        f"Python {platform.python_version()}, model store {store_home()}. One thread per "
        "call in both runtimes (XGBoost nthread=1, LightGBM num_threads=1, scikit-learn "
        "n_jobs=1, onnxruntime "
        "intra/inter-op threads 1). Calls alternate between the two runtimes so other load "
        "on the machine hits both alike; best, median and p99 of `calls` calls each, in ms; "
        "the speedup is native best / ONNX best, since on a loaded machine the least "
        "disturbed call is the model's own cost and medians mostly measure the neighbours. "
        "`served` is the runtime the production version serves (decided at training time by "
        "parity and a measured speedup).",
        "",
        "| model | served | rows | calls | native best | native median | native p99 | "
        "ONNX best | ONNX median | ONNX p99 | speedup |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(f"| {r.model} | {r.served} | {r.rows} | {r.calls} | {r.native_best:.3f} "
                   f"| {r.native_median:.3f} | {r.native_p99:.3f} | {r.compiled_best:.3f} "
                   f"| {r.compiled_median:.3f} | {r.compiled_p99:.3f} | x{r.speedup:.1f} |")
    out += [
        "",
        "## Parity (the same rows through both runtimes)",
        "",
        "Rule at training time: predicted classes identical, probabilities within 1e-5, "
        "regression within 1e-6 relative; checked on the held-out split, and for columns "
        "that can be missing, on a copy with a fifth of those values blanked.",
        "",
        "| model | rows | parity | label mismatches | max abs diff | max rel diff |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for p in parity:
        out.append(f"| {p['model']} | {p['rows']} | {'ok' if p['ok'] else 'FAILS'} | "
                   f"{p['label_mismatches']} | {p['max_abs_diff']:.2e} | "
                   f"{p['max_rel_diff']:.2e} |")
    out += [
        "",
        "max rel diff of a classifier is relative to probabilities that can be ~1e-6 "
        "themselves, so only the absolute difference is bounded there.",
        "",
        "## Not measured",
        "",
        "lleaves (LightGBM) and treelite/TL2cgen compile trees to a native shared library "
        "that is loaded with `dlopen`: machine code read from the model store, which the "
        "no-pickle rule (nothing in a model version may run code when loaded) excludes. "
        "treelite's interpreter (GTIL) stays; it was not measured here.",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.4,
                        help="seconds of alternating calls per model and batch size")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--models", nargs="*", help="default: all seven")
    args = parser.parse_args()
    from riskserve.core.specs import MODEL_NAMES

    start = time.perf_counter()
    rows, parity = run(args.budget, args.models or list(MODEL_NAMES))
    text = markdown(rows, parity, time.perf_counter() - start)
    args.out.write_text(text)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
