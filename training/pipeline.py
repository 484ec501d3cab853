"""The training pipeline shared by every family: validate, split, encode, fit, evaluate, save.

A family module only says how to load its raw data, map it onto the contract's columns and
fit an estimator; everything else, including the exact scoring code, is common.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, train_test_split

from riskserve import drift
from riskserve.core import store
from riskserve.core.adapters import adapter_for
from riskserve.core.encoding import Encoder
from riskserve.core.scoring import ScoringModel
from riskserve.core.specs import ModelSpec
from training import evaluate, validate

TEST_SIZE = 0.25


@dataclass
class Prepared:
    """Validated contract columns and labels of one family's data set."""

    frame: pd.DataFrame
    label: pd.Series
    source: str
    fingerprint: str


@dataclass
class TrainResult:
    spec: ModelSpec
    version: str
    metrics: dict[str, float]
    report_dir: Path
    model: ScoringModel
    promotion: store.Promotion | None


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable hash of the training data, stored with the model for lineage."""
    import hashlib

    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def prepare(family: ModuleType, data: Path | None, quick: bool, seed: int) -> Prepared:
    """Load (CSV or generator/packaged data) and map onto the contract columns."""
    raw, source = family.load(data, quick=quick, seed=seed)
    frame, label = family.prepare(raw)
    frame = frame.reset_index(drop=True)
    label = label.reset_index(drop=True)
    return Prepared(frame, label, source, fingerprint(pd.concat([frame, label], axis=1)))


def _labels(spec: ModelSpec, label: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Encode class labels as 0..K-1 for every framework; `classes` maps them back."""
    if spec.task == "regression":
        return label.to_numpy(dtype=np.float64), []
    if spec.task == "binary":
        return label.to_numpy(dtype=np.int64), [0, 1]
    classes, idx = np.unique(label.to_numpy(), return_inverse=True)
    return idx.astype(np.int64), classes.tolist()


def _training_matrix(encoder: Encoder, spec: ModelSpec, cols: dict[str, np.ndarray],
                     frame: pd.DataFrame, y: np.ndarray, seed: int) -> np.ndarray:
    """Encode training rows; target-encoded columns use out-of-fold means.

    Encoding a row with a mean that includes its own label leaks the label into the feature and
    makes trees trust city/state far more than they should on new applicants.
    """
    x = encoder.transform(cols)
    targets = [j for j, f in enumerate(spec.features) if f.encoding == "target"]
    if not targets:
        return x
    for fit_idx, enc_idx in KFold(5, shuffle=True, random_state=seed).split(frame):
        fold = Encoder.fit(spec, frame.iloc[fit_idx], y[fit_idx])
        sub = {k: v[enc_idx] for k, v in cols.items()}
        x_fold = fold.transform(sub)
        x[np.ix_(enc_idx, targets)] = x_fold[:, targets]
    return x


def references(spec: ModelSpec, cols: dict[str, np.ndarray]) -> dict[str, drift.Reference]:
    refs = {}
    for f in spec.features:
        if f.is_category:
            refs[f.name] = drift.categorical_reference(cols[f.name])
        else:
            refs[f.name] = drift.numeric_reference(cols[f.name])
    return refs


def prediction_reference(spec: ModelSpec, scores: np.ndarray) -> drift.Reference:
    if spec.task == "multiclass":
        return drift.categorical_reference(np.asarray(scores).astype(str).astype(object))
    return drift.numeric_reference(scores)


def train(spec: ModelSpec, family: ModuleType, prepared: Prepared, *, quick: bool, seed: int,
          reports: Path, save: bool = True) -> TrainResult:
    """Train, evaluate on the held-out split, save a new version and write its report."""
    cols = validate.validate(spec, prepared.frame, prepared.label)
    y, classes = _labels(spec, prepared.label)
    idx = np.arange(len(y))
    stratify = y if spec.is_classifier else None
    train_idx, test_idx = train_test_split(idx, test_size=TEST_SIZE, random_state=seed,
                                           stratify=stratify)
    col_train = {k: v[train_idx] for k, v in cols.items()}
    col_test = {k: v[test_idx] for k, v in cols.items()}
    frame_train = prepared.frame.iloc[train_idx]
    encoder = Encoder.fit(spec, frame_train, y[train_idx])
    x_train = _training_matrix(encoder, spec, col_train, frame_train, y[train_idx], seed)

    estimator, algorithm = family.fit(spec, x_train, y[train_idx], encoder, quick=quick,
                                      seed=seed)
    model = ScoringModel(spec, encoder, adapter_for(estimator, spec.task), classes=classes,
                         info={"algorithm": algorithm})
    pred = model.predict(col_test)
    y_test = np.asarray(classes)[y[test_idx]] if spec.task == "multiclass" else y[test_idx]
    metrics = evaluate.evaluate(spec, y_test, pred)
    model.references = references(spec, col_train)
    model.prediction_reference = prediction_reference(spec, model.predict(col_train).scores)

    version = "unsaved"
    promotion = None
    if save:
        extra = {"data_source": prepared.source, "data_fingerprint": prepared.fingerprint,
                 "n_train": len(train_idx), "n_test": len(test_idx), "algorithm": algorithm,
                 "library_versions": library_versions(), "quick": quick, "seed": seed}
        # The held-out matrix decides whether the compiled artifact is served (parity, speed);
        # the metrics above stay the native model's, the source of truth for promotion.
        version = store.save_model(model, metrics, extra,
                                   holdout=encoder.transform(col_test))
        model.version = version
        if not store.has_production(spec.name):
            promotion = store.promote(spec.name, version)
    report_dir = reports / spec.name / version
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "metrics.json").write_text(json.dumps(
        {"model": spec.name, "version": version, "algorithm": algorithm,
         "data_source": prepared.source, "metrics": metrics}, indent=1, sort_keys=True))
    evaluate.plot(spec, y_test, pred, report_dir / f"{_plot_name(spec)}.png")
    return TrainResult(spec, version, metrics, report_dir, model, promotion)


def _plot_name(spec: ModelSpec) -> str:
    return {"binary": "roc", "multiclass": "confusion", "regression": "residuals"}[spec.task]


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("bentoml", "scikit-learn", "xgboost-cpu", "lightgbm", "skops", "numpy",
                 "pandas", "onnx", "onnxruntime", "skl2onnx", "onnxmltools"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out
