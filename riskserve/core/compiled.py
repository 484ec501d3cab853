"""Compiled serving artifacts: ONNX conversion, the ONNX Runtime adapter, and the parity check.

A model version keeps its native file (XGBoost UBJSON, LightGBM text, skops) as the source of
truth for training reports, promotion and explanations. Beside it, training may save
`model.onnx`; it is served only if it gave the same answers as the native model on the held-out
split (classes identical, probabilities within 1e-5, regression within 1e-6 relative) and measured
faster at the batch sizes served. ONNX is a protobuf graph executed by onnxruntime's own kernels:
loading it cannot run code, unlike a pickle.
"""

from __future__ import annotations

import importlib
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from riskserve.core.adapters import Adapter, LightGBMAdapter, SklearnAdapter, XGBoostAdapter
from riskserve.core.specs import ModelSpec

ONNX_FILE = "model.onnx"
ONNX_RUNTIME = "onnxruntime"
INPUT_NAME = "x"
# The opset ai.onnx.ml TreeEnsemble* kernels and plain math ops every onnxruntime >= 1.16 runs.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# onnxmltools' XGBoost/LightGBM converters support opsets up to 15.
ONNXMLTOOLS_OPSET = 15

PROBA_ATOL = 1e-5
REGRESSION_RTOL = 1e-6
# Values this close to zero are compared absolutely: a relative error of a near-zero count is noise.
REGRESSION_ATOL = 1e-9
BATCH_SIZES = (1, 8, 32, 512)
# Differences within this factor flip with load on a shared machine: a tie. Native serves only
# when clearly faster (overall, or from some batch size up); in a tie ONNX Runtime serves, for
# its start-up (see compile_version).
MIN_SPEEDUP = 1.1


class Unsupported(Exception):
    """The estimator has no faithful ONNX conversion here; the version serves native."""


class OnnxAdapter:
    """Scores with an onnxruntime session; same output shapes as the native adapters."""

    framework = ONNX_RUNTIME

    def __init__(self, session: Any, task: str) -> None:
        self.session = session
        self.task = task
        outputs = session.get_outputs()
        # Classifiers: (label, probabilities[N, K]); regressors: (variable[N, 1]).
        self.output = outputs[-1].name if task != "regression" else outputs[0].name
        self.input = session.get_inputs()[0].name

    @classmethod
    def load(cls, directory: Path, task: str) -> OnnxAdapter:
        return cls(session_from_file(directory / ONNX_FILE), task)

    def score(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output], {self.input: np.ascontiguousarray(x, np.float32)})[0]
        if self.task == "regression":
            return np.asarray(out).reshape(-1)
        return out[:, 1] if self.task == "binary" else out


def session_from_file(path: Path) -> Any:
    """An InferenceSession with one thread: workers and the executor are the parallelism."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initialisers are not actionable
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# --- conversion ------------------------------------------------------------------------------


def to_onnx(adapter: Adapter, task: str, n_features: int) -> Any:
    """Convert a native adapter to an ONNX ModelProto taking the encoded float32 matrix `x`."""
    if isinstance(adapter, XGBoostAdapter):
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        return convert_xgboost(adapter.booster, initial_types=[
            (INPUT_NAME, FloatTensorType([None, n_features]))], target_opset=ONNXMLTOOLS_OPSET)
    if isinstance(adapter, LightGBMAdapter):
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        return convert_lightgbm(adapter.booster, initial_types=[
            (INPUT_NAME, FloatTensorType([None, n_features]))], zipmap=False,
            target_opset=ONNXMLTOOLS_OPSET)
    if isinstance(adapter, SklearnAdapter):
        from sklearn.compose import TransformedTargetRegressor

        if isinstance(adapter.estimator, TransformedTargetRegressor):
            from riskserve.core.onnx_linear import log_ridge_to_onnx

            return log_ridge_to_onnx(adapter.estimator, n_features, INPUT_NAME, TARGET_OPSET)
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType as SkFloat

        try:
            with warnings.catch_warnings():
                # The converter reads SVC.probA_/probB_, deprecated with probability=True (see
                # training/keystroke.py for why the SVM keeps it): not actionable in a log.
                warnings.filterwarnings("ignore", "Attribute `prob[AB]_`", FutureWarning)
                # zipmap=False: probabilities as a [N, K] tensor in `classes_` order (0..K-1
                # here, the order of `ScoringModel.classes`), not a list of dicts.
                proto = convert_sklearn(adapter.estimator, initial_types=[
                    (INPUT_NAME, SkFloat([None, n_features]))], options={"zipmap": False},
                    target_opset=TARGET_OPSET)
        except Exception as exc:  # skl2onnx raises several types for "no converter"
            raise Unsupported(f"skl2onnx: {type(exc).__name__}: {_first_line(exc)}") from exc
        return drop_zero_class_weights(proto)
    raise Unsupported(f"no ONNX conversion for framework '{adapter.framework}'")


# The leaf-to-class entries of an ai.onnx.ml TreeEnsembleClassifier (opset 3), one per entry.
_CLASS_ENTRY_INTS = ("class_ids", "class_nodeids", "class_treeids")


def drop_zero_class_weights(proto: Any) -> Any:
    """Remove the zero entries of multi-class TreeEnsembleClassifier leaves, in place.

    skl2onnx writes every leaf's weight for every class. keystroke-rf (300 trees, 110 classes)
    came out as 9.3 M entries, 99 % of them 0 because a leaf holds a few users: a 121 MB graph
    that took ~2 s per worker to load and 53 us a row. onnxruntime adds each listed weight of
    a reached leaf to scores that start at 0, so a zero entry adds nothing: without them the
    same non-zero terms are summed in the same order (bitwise-identical outputs; test_compiled
    checks it), in a 6.7 MB graph that loads in 0.09 s and scores a row in 10 us.

    Two-class ensembles keep every entry: with two classes onnxruntime decides how to score
    the second class from which class ids the weights name, so dropping one could change it.
    """
    for node in proto.graph.node:
        if node.op_type != "TreeEnsembleClassifier":
            continue
        attrs = {a.name: a for a in node.attribute}
        labels = attrs.get("classlabels_int64s") or attrs.get("classlabels_strings")
        n_classes = len(labels.ints) + len(labels.strings) if labels is not None else 0
        if n_classes <= 2 or "class_weights" not in attrs:
            continue
        weights = np.asarray(attrs["class_weights"].floats, dtype=np.float32)
        keep = weights != 0
        if keep.all():
            continue
        for name in _CLASS_ENTRY_INTS:
            kept = np.asarray(attrs[name].ints, dtype=np.int64)[keep]
            del attrs[name].ints[:]
            attrs[name].ints.extend(kept.tolist())
        del attrs["class_weights"].floats[:]
        attrs["class_weights"].floats.extend(weights[keep].tolist())
    return proto


# --- parity ----------------------------------------------------------------------------------


@dataclass
class Parity:
    """How far the compiled scores are from the native ones on the same rows."""

    ok: bool
    rows: int
    label_mismatches: int
    max_abs_diff: float
    max_rel_diff: float
    reason: str = ""


def compare(task: str, native: np.ndarray, compiled: np.ndarray, threshold: float) -> Parity:
    """Classes identical and probabilities within 1e-5; regression within 1e-6 relative."""
    a = np.asarray(native, dtype=np.float64)
    b = np.asarray(compiled, dtype=np.float64)
    if a.shape != b.shape:
        return Parity(False, len(a), len(a), float("inf"), float("inf"),
                      f"output shape {b.shape} differs from native {a.shape}")
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    if np.isnan(diff).any():
        return Parity(False, len(a), 0, float("inf"), float("inf"),
                      "NaN in one runtime's output but not the other's")
    max_abs = float(diff.max(initial=0.0))
    rel = diff / np.maximum(np.abs(a), REGRESSION_ATOL)
    max_rel = float(rel.max(initial=0.0))
    if task == "regression":
        bad = int(np.count_nonzero(diff > REGRESSION_RTOL * np.abs(a) + REGRESSION_ATOL))
        ok = bad == 0
        reason = "" if ok else (f"{bad} values differ by more than {REGRESSION_RTOL:g} relative "
                                f"(max {max_rel:.3g})")
        return Parity(ok, len(a), 0, max_abs, max_rel, reason)
    if task == "binary":
        mismatches = int(np.count_nonzero((a >= threshold) != (b >= threshold)))
    else:
        mismatches = int(np.count_nonzero(np.argmax(a, axis=1) != np.argmax(b, axis=1)))
    problems = []
    if mismatches:
        problems.append(f"{mismatches} of {len(a)} predicted classes differ")
    if max_abs > PROBA_ATOL:
        problems.append(f"probabilities differ by up to {max_abs:.3g} (> {PROBA_ATOL:g})")
    return Parity(not problems, len(a), mismatches, max_abs, max_rel, "; ".join(problems))


def nan_columns(spec: ModelSpec) -> list[int]:
    """Matrix columns that can hold NaN in serving: nullable features, open-vocabulary coded
    categories (an unseen value is encoded as NaN) and, when any input is nullable, the derived
    columns computed from it. Validation keeps NaN out of every other column."""
    cols = [j for j, f in enumerate(spec.features)
            if f.nullable or (f.is_category and f.encoding == "code" and f.categories is None)]
    if any(f.nullable for f in spec.features):
        base = len(spec.features)
        cols += [base + k for k in range(len(spec.derived))]
    return cols


def missing_probe(x: np.ndarray, columns: list[int], seed: int = 0,
                  rate: float = 0.2) -> np.ndarray:
    """Held-out rows with a fifth of the values in `columns` blanked (NaN): how serving sees
    missing and unseen-category values. Tree converters must route NaN the way the native
    library does, and the held-out split alone may hold no missing value at all."""
    rng = np.random.default_rng(seed)
    probe = np.array(x, dtype=np.float32, copy=True)
    mask = np.zeros(probe.shape, dtype=bool)
    mask[:, columns] = rng.random((len(probe), len(columns))) < rate
    probe[mask] = np.nan
    return probe


def check_parity(task: str, native: Adapter, compiled: Adapter, x: np.ndarray,
                 threshold: float, missing: list[int]) -> dict[str, Any]:
    """Parity on the held-out rows, and on a missing-value probe of the `missing` columns."""
    result: dict[str, Any] = {}
    held_out = compare(task, native.score(x), compiled.score(x), threshold)
    result["held_out"] = asdict(held_out)
    ok, reasons = held_out.ok, [f"held-out: {held_out.reason}"] if not held_out.ok else []
    if not missing:
        result["missing_values"] = "not applicable: no column of this contract can be missing"
        result["ok"] = ok
        result["reason"] = "; ".join(reasons)
        return result
    result["missing_columns"] = missing
    probe = missing_probe(x, missing)
    try:
        native_probe = native.score(probe)
    except ValueError as exc:  # scikit-learn estimators without NaN support refuse it: fine
        result["missing_values"] = f"not applicable: native rejects NaN ({_first_line(exc)})"
    else:
        missing = compare(task, native_probe, compiled.score(probe), threshold)
        result["missing_values"] = asdict(missing)
        if not missing.ok:
            ok = False
            reasons.append(f"missing values: {missing.reason}")
    result["ok"] = ok
    result["reason"] = "; ".join(reasons)
    return result


# --- timing ----------------------------------------------------------------------------------


def paired_best_ms(fa: Callable[[np.ndarray], Any], fb: Callable[[np.ndarray], Any],
                   x: np.ndarray, budget_s: float = 0.3, max_calls: int = 200,
                   min_calls: int = 5) -> tuple[float, float]:
    """Best-of-N wall time in ms of `fa(x)` and `fb(x)`, calls alternated.

    The least disturbed call is the model's own cost (timeit's rule): on a shared machine with
    a load average of 20, medians of a few calls swung by 10x between two runs of the same
    model, and a decision taken on them would pick the runtime at random.
    """
    ta, tb = paired_ms(fa, fb, x, budget_s, max_calls, min_calls)
    return float(ta.min()), float(tb.min())


def paired_ms(fa: Callable[[np.ndarray], Any], fb: Callable[[np.ndarray], Any], x: np.ndarray,
              budget_s: float, max_calls: int, min_calls: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-call ms of `fa(x)` and `fb(x)`, alternated within a time budget, after a warm-up
    call each (first calls allocate and fill caches)."""
    fa(x)
    fb(x)
    ta: list[float] = []
    tb: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(ta) < max_calls and (len(ta) < min_calls or time.perf_counter() < deadline):
        for fn, times in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(ta), np.asarray(tb)


def batches(x: np.ndarray, sizes: tuple[int, ...] = BATCH_SIZES) -> dict[int, np.ndarray]:
    """A batch of each size from the held-out rows (repeated when there are fewer rows)."""
    reps = -(-max(sizes) // max(len(x), 1))
    pool = np.ascontiguousarray(np.tile(x, (reps, 1)), dtype=np.float32)
    return {n: pool[:n] for n in sizes}


def measure(native: Adapter, compiled: Adapter, x: np.ndarray) -> dict[str, Any]:
    """Best-of-N ms per call of both runtimes at each served batch size, the geometric-mean
    speedup, and `native_from_rows`: the batch size from which native is clearly faster (at it
    and every larger size measured), or None when compiled wins throughout."""
    timings: dict[str, dict[str, float]] = {"native_ms": {}, "compiled_ms": {}}
    for n, batch in batches(x).items():
        nat, comp = paired_best_ms(native.score, compiled.score, batch)
        timings["native_ms"][str(n)] = round(nat, 4)
        timings["compiled_ms"][str(n)] = round(comp, 4)
    ratios = {int(k): timings["native_ms"][k] / max(timings["compiled_ms"][k], 1e-6)
              for k in timings["native_ms"]}
    native_from = None
    for n in sorted(ratios, reverse=True):
        if ratios[n] * MIN_SPEEDUP > 1.0:  # native not clearly faster here: stop
            break
        native_from = n
    speedup = float(np.exp(np.mean(np.log(list(ratios.values())))))
    return {**timings, "speedup": round(speedup, 3), "native_from_rows": native_from}


class DispatchAdapter:
    """Compiled below `native_from_rows` rows, native from there: both passed the parity check,
    so the answer is the same whichever scores a batch; only the time differs (XGBoost's
    multi-threaded-free inplace_predict beats ONNX Runtime's tree kernel on large batches of
    some models, ONNX Runtime wins on small ones by 10-100x).

    The native model is loaded on the first large batch, not at start: most workers never see
    one (single-row traffic), and the keystroke forest alone costs ~5 s and ~1 GiB to load.
    """

    def __init__(self, compiled: Adapter, native: Callable[[], Adapter], native_framework: str,
                 native_from_rows: int) -> None:
        self.compiled = compiled
        self.native = Once(native)
        self.native_from_rows = native_from_rows
        self.native_framework = native_framework
        self.framework = f"{compiled.framework}+{native_framework}"

    def score(self, x: np.ndarray) -> np.ndarray:
        if len(x) >= self.native_from_rows:
            return self.native().score(x)
        return self.compiled.score(x)


# The worker's log line once `import_natives` is done (the bench waits for it: a profile
# taken before would measure the import).
NATIVES_IMPORTED = "native libraries imported in the background"
# What a native model of each framework needs imported before it can load.
NATIVE_MODULES = {"xgboost": ("xgboost",), "lightgbm": ("lightgbm",),
                  "sklearn": ("sklearn.ensemble", "skops.io")}


def import_natives(adapters: Iterable[Adapter]) -> list[str]:
    """Import the libraries the dispatching adapters' native models need, without loading
    the models; returns the modules imported.

    Meant for a background thread once a worker is up: importing xgboost alone takes ~0.85 s
    (and ~125 MiB), which the first large batch or CSV would otherwise wait for, while the
    models themselves (the keystroke forest: ~5 s, ~500 MiB) stay lazy.
    """
    wanted = dict.fromkeys(m for a in adapters if isinstance(a, DispatchAdapter)
                           for m in NATIVE_MODULES.get(a.native_framework, ()))
    for module in wanted:
        importlib.import_module(module)
    return list(wanted)


class Once:
    """A loader that runs at most once, whichever thread asks first (the batchers' executor
    threads and an explanation may ask together); later calls return the same object."""

    def __init__(self, load: Callable[[], Adapter]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._value: Adapter | None = None

    def __call__(self) -> Adapter:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._load()
        return self._value


# --- the decision at training time -----------------------------------------------------------


@dataclass
class CompileReport:
    """What the manifest records about the compiled artifact and the runtime served."""

    runtime: str
    file: str | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    native_from_rows: int | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compile_version(directory: Path, spec: ModelSpec, native: Adapter, x_holdout: np.ndarray,
                    threshold: float) -> CompileReport:
    """Convert, check parity on the held-out rows, time both, and keep the ONNX file only if
    it is served. Any failure serves native, with the reason recorded for the manifest."""
    framework = native.framework
    task = spec.task
    path = directory / ONNX_FILE
    try:
        proto = to_onnx(native, task, x_holdout.shape[1])
        path.write_bytes(proto.SerializeToString())
        compiled = OnnxAdapter.load(directory, task)
    except Exception as exc:  # converters raise many types; none may stop a training run
        path.unlink(missing_ok=True)
        return CompileReport(framework, reason=f"conversion failed: {type(exc).__name__}: "
                                               f"{_first_line(exc)}")
    try:
        parity = check_parity(task, native, compiled, x_holdout, threshold, nan_columns(spec))
    except Exception as exc:
        path.unlink(missing_ok=True)
        return CompileReport(framework, reason=f"parity check failed to run: "
                                               f"{type(exc).__name__}: {_first_line(exc)}")
    if not parity["ok"]:
        path.unlink(missing_ok=True)
        return CompileReport(framework, parity=parity,
                             reason=f"parity failed, serving native: {parity['reason']}")
    timing = measure(native, compiled, x_holdout)
    speedup = timing["speedup"]
    if speedup * MIN_SPEEDUP <= 1.0:
        path.unlink(missing_ok=True)
        return CompileReport(framework, parity=parity, timing=timing,
                             reason=f"ONNX Runtime slower (x{speedup} geometric mean over "
                                    f"{len(BATCH_SIZES)} batch sizes, native clearly faster "
                                    f"below x{round(1 / MIN_SPEEDUP, 3)}), serving native")
    # Within MIN_SPEEDUP either way the runtimes tie on speed, and start-up decides: an ONNX
    # session loads in ~0.1 s, while the native library must be imported first (LightGBM
    # imports scikit-learn and SciPy: ~1.8 s per worker, on every start).
    why = (f"x{speedup}, a tie within x{MIN_SPEEDUP}: ONNX Runtime serves, as it loads without "
           f"the {framework} library" if speedup < MIN_SPEEDUP
           else f"x{speedup} faster than {framework}")
    native_from = timing["native_from_rows"]
    if native_from is not None:
        return CompileReport(f"{ONNX_RUNTIME}+{framework}", file=ONNX_FILE, parity=parity,
                             timing=timing, native_from_rows=native_from,
                             reason=f"parity held; {why} overall, {framework} from "
                                    f"{native_from} rows")
    return CompileReport(ONNX_RUNTIME, file=ONNX_FILE, parity=parity, timing=timing,
                         reason=f"parity held; {why}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
