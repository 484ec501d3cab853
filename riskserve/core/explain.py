"""Exact per-row explanations (reason codes): what each feature added to one model's answer.

Only exact methods, no sampling, so an explanation is reproducible and adds up to the model's
own output: tree SHAP computed by XGBoost (`pred_contribs`) and LightGBM (`pred_contrib`)
themselves, and for a standardised linear pipeline (cyber-threat's Ridge) coefficient x
standardised value, with one-hot columns summed back onto the input feature they encode.
Contributions are per column of the encoder's matrix (`Encoder.output_names`), so engineered
features (fraud's `orig_balance_error`, `dest_balance_error`) are reported under their own names.

What `base + sum(contributions)` equals (`Explanation.space`):
- binary: the log-odds of the positive class, log(p / (1 - p));
- multiclass: the raw margin of the predicted class (before the softmax);
- regression: the model's output before any inverse target transform (cyber-threat trains on
  log1p(local_infection), so its contributions add up to log1p of the prediction).

Models with no exact method here raise `NotExplainable` (422) naming the models that can: the
SVM (no exact attribution exists for an RBF kernel), a scikit-learn HistGradientBoosting phishing
model, and the random forest. An exact tree SHAP for the forest would need PyPI `shap` (0.51.0):
214 MB installed (llvmlite 173 MB, numba 35 MB), 1.5 s to import, and on the full 300-tree,
110-user forest ~985 ms per row against ~300 ms for a whole predict call (best of 3, same
machine at load 16 on 2 cores): not worth it, so the forest is not explained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from riskserve.core.scoring import ScoringModel
from riskserve.core.specs import SPECS, Derived
from riskserve.errors import InvalidInput, RiskserveError

DEFAULT_TOP = 3
# Algorithms whose spec alone guarantees an exact method: the fallback list of explainable
# models when the caller does not pass the loaded ones (phishing's algorithm is picked at
# training time, so only a loaded phishing model can say whether it explains).
_EXACT_ALGORITHMS = frozenset({"xgboost", "lightgbm", "ridge"})


class NotExplainable(RiskserveError):
    """The model has no exact explanation method; names the models that have one."""

    status = 422
    grpc_code = "INVALID_ARGUMENT"
    reason = "not_explainable"

    def __init__(self, name: str, explainable: Sequence[str], algorithm: str | None = None
                 ) -> None:
        explainable = sorted(explainable)
        what = f" ({algorithm})" if algorithm else ""
        super().__init__(
            f"model '{name}'{what} has no exact explanation method; models that can explain: "
            f"{', '.join(explainable) or 'none'}",
            {"field": "model", "explainable": explainable})


@dataclass
class Explanation:
    """Per-row additive explanation of N rows over F features.

    `base[i] + contributions[i].sum()` equals the model output named by `space` for row i.
    Only `base` and `contributions` are per row, so a batch splits with
    `batching.split_rows` (rows of those two, the rest shared). `derived` are the spec's engineered
    features, so reason codes can show their value (computed from the row's inputs).
    """

    base: np.ndarray  # [N] float64
    contributions: np.ndarray  # [N, F] float64
    features: list[str]
    space: str
    derived: tuple[Derived, ...] = ()

    def __len__(self) -> int:
        return len(self.base)

    @property
    def totals(self) -> np.ndarray:
        """base + sum of contributions per row: the model output in `space`."""
        return self.base + self.contributions.sum(axis=1)


# A method maps (native estimator, encoded matrix, model) -> (base [N], contributions [N, F]).
Method = Callable[[Any, np.ndarray, ScoringModel], tuple[np.ndarray, np.ndarray]]


def _native(model: ScoringModel) -> Any:
    """The framework adapter holding the native estimator (not a compiled serving runtime such
    as ONNX, which has no SHAP)."""
    getter = getattr(model, "native_adapter", None)
    return getter() if callable(getter) else model.adapter


def _per_class(raw: np.ndarray, n: int, width: int) -> np.ndarray:
    """Reshape a framework's contribution output to [N, K, F+1] (K = 1 for single-output)."""
    return raw.reshape(n, -1, width)


def _pick(per_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Single output: its row. Multiclass: the predicted class's row (largest margin, which is
    the argmax of the softmax probabilities `ScoringModel.predict` labels by)."""
    if per_class.shape[1] == 1:
        chosen = per_class[:, 0, :]
    else:
        margins = per_class.sum(axis=2)
        chosen = per_class[np.arange(len(per_class)), np.argmax(margins, axis=1), :]
    chosen = chosen.astype(np.float64)
    return chosen[:, -1], chosen[:, :-1]  # both frameworks put the bias in the last column


def _xgboost(booster: Any, x: np.ndarray, model: ScoringModel) -> tuple[np.ndarray, np.ndarray]:
    import xgboost as xgb

    raw = np.asarray(booster.predict(xgb.DMatrix(x, nthread=1), pred_contribs=True))
    return _pick(_per_class(raw, len(x), x.shape[1] + 1))


def _lightgbm(booster: Any, x: np.ndarray, model: ScoringModel) -> tuple[np.ndarray, np.ndarray]:
    raw = np.asarray(booster.predict(x, pred_contrib=True, num_threads=1))
    return _pick(_per_class(raw, len(x), x.shape[1] + 1))


@dataclass(frozen=True)
class _Linear:
    """A fitted `[ColumnTransformer] -> [StandardScaler] -> linear regressor` pipeline, maybe
    inside a TransformedTargetRegressor, with which input column owns each design column."""

    features: Any | None  # ColumnTransformer
    scaler: Any | None  # StandardScaler
    linear: Any
    owner: np.ndarray  # [D] input column index of each design column
    target_func: str | None  # e.g. "log1p" when the target was transformed

    def explain(self, x: np.ndarray, n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
        z = self.features.transform(x) if self.features is not None else x
        z = np.asarray(z, dtype=np.float64)
        if self.scaler is not None:
            z = self.scaler.transform(z)
        terms = z * np.asarray(self.linear.coef_, dtype=np.float64).ravel()
        # Sum each input's design columns (a one-hot block) onto it: one matrix product.
        ownership = np.zeros((len(self.owner), n_inputs))
        ownership[np.arange(len(self.owner)), self.owner] = 1.0
        contributions = terms @ ownership
        base = np.full(len(x), float(np.ravel(self.linear.intercept_)[0]))
        return base, contributions


def _owners(ct: Any, n_inputs: int) -> np.ndarray | None:
    """Input column of every output column of a fitted ColumnTransformer, or None when some
    transformer does not map columns one-to-one or one-to-block (then the terms cannot be
    attributed exactly)."""
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    owner = np.full(sum(s.stop - s.start for s in ct.output_indices_.values()), -1)
    for name, trans, cols in ct.transformers_:
        block = ct.output_indices_[name]
        if trans == "drop" or block.stop == block.start:
            continue
        cols = np.arange(n_inputs)[cols].ravel().tolist()
        if trans == "passthrough" or (isinstance(trans, FunctionTransformer) and (
                trans.func is None or isinstance(trans.func, np.ufunc))):
            widths = [1] * len(cols)  # elementwise: output j comes from input j
        elif (isinstance(trans, OneHotEncoder) and trans.drop is None
              and trans.max_categories is None and trans.min_frequency is None):
            widths = [len(c) for c in trans.categories_]
        else:
            return None
        if sum(widths) != block.stop - block.start:
            return None
        owner[block] = np.repeat(cols, widths)
    return owner if (owner >= 0).all() else None


def _linear_parts(estimator: Any, n_inputs: int) -> _Linear | None:
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    target_func = None
    if isinstance(estimator, TransformedTargetRegressor):
        func = estimator.func
        target_func = getattr(func, "__name__", repr(func)) if func is not None else None
        estimator = estimator.regressor_
    steps = [s for _, s in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    linear = steps.pop()
    coef = getattr(linear, "coef_", None)
    if coef is None or np.ndim(coef) != 1 or not type(linear).__module__.startswith(
            "sklearn.linear_model"):
        return None
    ct = steps.pop(0) if steps and isinstance(steps[0], ColumnTransformer) else None
    scaler = steps.pop(0) if steps and isinstance(steps[0], StandardScaler) else None
    if steps:
        return None  # an unknown step between the features and the linear model
    owner = _owners(ct, n_inputs) if ct is not None else np.arange(n_inputs)
    if owner is None or len(owner) != len(coef):
        return None
    return _Linear(ct, scaler, linear, owner, target_func)


def _method(model: ScoringModel) -> tuple[Method, Any] | None:
    """The exact method for a model's native estimator and the object it runs on, or None."""
    adapter = _native(model)
    framework = getattr(adapter, "framework", None)
    if framework == "xgboost":
        return _xgboost, adapter.booster
    if framework == "lightgbm":
        return _lightgbm, adapter.booster
    if framework == "sklearn" and model.spec.task == "regression":
        parts = _linear_parts(adapter.estimator, len(model.encoder.output_names))
        if parts is not None:
            return (lambda p, x, m: p.explain(x, x.shape[1])), parts
    return None


def can_explain(model: ScoringModel) -> bool:
    """Whether `explain` has an exact method for this loaded model version."""
    return _method(model) is not None


def explainable(models: Iterable[ScoringModel] | Mapping[str, ScoringModel]) -> list[str]:
    """Names of the given loaded models that can explain (sorted), for 422 answers and listings."""
    values = models.values() if isinstance(models, Mapping) else models
    return sorted({m.spec.name for m in values if can_explain(m)})


def _default_explainable() -> list[str]:
    return sorted(n for n, s in SPECS.items() if s.algorithm in _EXACT_ALGORITHMS)


def space(model: ScoringModel) -> str:
    """What base + sum(contributions) equals for this model (see the module docstring)."""
    spec = model.spec
    if spec.task == "binary":
        return f"log-odds of {spec.label}=1: log(p / (1 - p))"
    if spec.task == "multiclass":
        return f"margin (pre-softmax score) of the predicted {spec.label}"
    method = _method(model)
    func = method[1].target_func if method and isinstance(method[1], _Linear) else None
    if func:
        return f"{func}({spec.label}): the model output before the inverse target transform"
    return spec.label


def explain(model: ScoringModel, columns: Mapping[str, np.ndarray], *,
            explainable_models: Sequence[str] | None = None) -> Explanation:
    """Explain validated columns row by row, exactly.

    `explainable_models` names the loaded models that can explain, for the 422 a model without
    an exact method answers; by default the models whose algorithm always has one.
    """
    method = _method(model)
    if method is None:
        known = _default_explainable() if explainable_models is None else explainable_models
        raise NotExplainable(model.spec.name, known,
                             str(model.info.get("algorithm", model.spec.algorithm)))
    run, native = method
    x = model.encoder.transform(columns)
    base, contributions = run(native, x, model)
    return Explanation(np.asarray(base, dtype=np.float64),
                       np.asarray(contributions, dtype=np.float64),
                       list(model.encoder.output_names), space(model), model.spec.derived)


def check_top(expl: Explanation, top: Any) -> int:
    """`top` must be an integer in [1, feature count]; 422 naming the field otherwise."""
    n = len(expl.features)
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or not 1 <= top <= n:
        raise InvalidInput("top", f"an integer in [1, {n}] (the model's feature count)",
                           got=top if isinstance(top, int | float | str) else repr(top))
    return int(top)


def _plain(value: Any) -> Any:
    """JSON-friendly: numpy scalars to Python, NaN (a missing value) to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _derived_value(expl: Explanation, name: str, values: Mapping[str, Any]) -> float | None:
    for d in expl.derived:
        if d.name == name:
            try:
                inputs = {k: np.asarray([np.nan if v is None else v], dtype=np.float64)
                          for k, v in values.items() if not isinstance(v, str)}
                return _plain(float(np.asarray(d.compute(inputs))[0]))
            except (KeyError, TypeError, ValueError):
                return None
    return None


def _order(expl: Explanation, top: int) -> np.ndarray:
    """Feature indices by |contribution|, largest first (stable: ties keep feature order)."""
    return np.argsort(-np.abs(expl.contributions), axis=1, kind="stable")[:, :top]


def reasons(expl: Explanation, row: int, values: Mapping[str, Any],
            top: int = DEFAULT_TOP) -> list[dict[str, Any]]:
    """The row's top features by |contribution|: {"feature", "value", "contribution"}.

    `values` is the row's input (feature -> value as sent); a derived feature's value is
    computed from it with the spec's own formula (None when an input it needs is missing).
    """
    top = check_top(expl, top)
    c = expl.contributions[row]
    out = []
    for j in np.argsort(-np.abs(c), kind="stable")[:top]:
        name = expl.features[j]
        value = values[name] if name in values else _derived_value(expl, name, values)
        out.append({"feature": name, "value": _plain(value), "contribution": float(c[j])})
    return out


def contributions_by_feature(expl: Explanation, row: int) -> dict[str, float]:
    """One row's contributions keyed by feature, in feature order (the JSON answer's map)."""
    return {f: float(c) for f, c in zip(expl.features, expl.contributions[row], strict=True)}


def reason_columns(expl: Explanation, top: int = DEFAULT_TOP) -> dict[str, np.ndarray]:
    """CSV columns reason_1..reason_<top>, each "feature=contribution" (6 significant digits)."""
    top = check_top(expl, top)
    order = _order(expl, top)
    rows = np.arange(len(expl))
    names = np.asarray(expl.features, dtype=object)
    out = {}
    for k in range(top):
        idx = order[:, k]
        out[f"reason_{k + 1}"] = np.array(
            [f"{f}={c:.6g}" for f, c in zip(names[idx], expl.contributions[rows, idx],
                                             strict=True)], dtype=object)
    return out
