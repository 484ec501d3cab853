"""One adapter per framework with the same save / load / score shape, in non-pickle formats.

XGBoost is stored as UBJSON and LightGBM as its text format (both the libraries' own portable
formats); scikit-learn estimators go through skops, which refuses to load any type not on an
explicit allow-list, so a tampered model file cannot execute code the way a pickle can.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from riskserve.errors import ConfigurationError

XGBOOST_FILE = "model.ubj"
LIGHTGBM_FILE = "model.txt"
SKOPS_FILE = "model.skops"

# skops loads only these type prefixes; everything else in a file is treated as hostile.
SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


class Adapter(Protocol):
    """Scores an encoded float32 matrix.

    `score` returns regression values [N], the positive-class probability [N] for binary
    models, or class probabilities [N, K] for multiclass models.
    """

    framework: str

    def score(self, x: np.ndarray) -> np.ndarray: ...


class XGBoostAdapter:
    framework = "xgboost"

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    @classmethod
    def from_estimator(cls, estimator: Any) -> XGBoostAdapter:
        return cls(estimator.get_booster())

    def save(self, directory: Path) -> str:
        self.booster.save_model(str(directory / XGBOOST_FILE))
        return XGBOOST_FILE

    @classmethod
    def load(cls, directory: Path) -> XGBoostAdapter:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(str(directory / XGBOOST_FILE))
        # One thread per call: concurrency comes from workers and batching, and oversubscribing
        # two cores with OpenMP threads from several batches only adds contention.
        booster.set_param({"nthread": 1})
        return cls(booster)

    def score(self, x: np.ndarray) -> np.ndarray:
        # inplace_predict skips DMatrix construction: the fast path for small online batches.
        return np.asarray(self.booster.inplace_predict(x))


class LightGBMAdapter:
    framework = "lightgbm"

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    @classmethod
    def from_estimator(cls, estimator: Any) -> LightGBMAdapter:
        return cls(estimator.booster_)

    def save(self, directory: Path) -> str:
        self.booster.save_model(str(directory / LIGHTGBM_FILE))
        return LIGHTGBM_FILE

    @classmethod
    def load(cls, directory: Path) -> LightGBMAdapter:
        import lightgbm as lgb

        text = (directory / LIGHTGBM_FILE).read_text()
        check_lightgbm_text(text)
        return cls(lgb.Booster(model_str=text))

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, num_threads=1))


def check_lightgbm_text(text: str) -> None:
    """Refuse a truncated LightGBM text model before LightGBM parses it.

    LightGBM 4.7 crashes the process (SIGSEGV) on a text model cut in half, instead of raising:
    the header's `tree_sizes` must list one size per `Tree=` block and the trees must end.
    """
    sizes = next((line for line in text.splitlines() if line.startswith("tree_sizes=")), None)
    n_trees = text.count("\nTree=")
    if sizes is None or "\nend of trees\n" not in text or len(sizes.split()) != n_trees:
        raise ValueError(f"not a complete LightGBM model: {n_trees} trees, "
                         f"{'no tree_sizes' if sizes is None else len(sizes.split())} sizes, "
                         f"{'an' if 'end of trees' in text else 'no'} 'end of trees' marker")


class SklearnAdapter:
    framework = "sklearn"

    def __init__(self, estimator: Any, task: str) -> None:
        self.estimator = estimator
        self.task = task

    @classmethod
    def from_estimator(cls, estimator: Any, task: str) -> SklearnAdapter:
        return cls(estimator, task)

    def save(self, directory: Path) -> str:
        import zipfile

        import skops.io as sio

        # Forests store a dense class-probability row per node: mostly zeros, so deflate
        # shrinks a 110-user random forest roughly tenfold.
        sio.dump(self.estimator, directory / SKOPS_FILE, compression=zipfile.ZIP_DEFLATED)
        return SKOPS_FILE

    @classmethod
    def load(cls, directory: Path, task: str) -> SklearnAdapter:
        import skops.io as sio

        path = directory / SKOPS_FILE
        untrusted = sio.get_untrusted_types(file=path)
        hostile = [t for t in untrusted if not t.startswith(SKOPS_TRUSTED_PREFIXES)]
        if hostile:
            raise ConfigurationError(
                f"refusing to load {path}: it contains types outside the allow-list: {hostile}"
            )
        estimator = sio.load(path, trusted=untrusted)
        # One thread per call, as for the boosters: a forest saved with n_jobs=2 would start a
        # joblib pool per request (20 ms one row with n_jobs=1, 54 ms with n_jobs=2 measured).
        threads = {k: 1 for k in estimator.get_params(deep=True) if k.endswith("n_jobs")}
        if threads:
            estimator.set_params(**threads)
        return cls(estimator, task)

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return np.asarray(self.estimator.predict(x))
        proba = np.asarray(self.estimator.predict_proba(x))
        return proba[:, 1] if self.task == "binary" else proba


def load_adapter(framework: str, directory: Path, task: str) -> Adapter:
    """Load the adapter a model version was saved with (named in its manifest)."""
    if framework == "xgboost":
        return XGBoostAdapter.load(directory)
    if framework == "lightgbm":
        return LightGBMAdapter.load(directory)
    if framework == "sklearn":
        return SklearnAdapter.load(directory, task)
    raise ConfigurationError(f"unknown framework '{framework}' in model manifest at {directory}")


def adapter_for(estimator: Any, task: str) -> Adapter:
    """Wrap a freshly fitted estimator in the adapter that matches its library."""
    module = type(estimator).__module__
    if module.startswith("xgboost"):
        return XGBoostAdapter.from_estimator(estimator)
    if module.startswith("lightgbm"):
        return LightGBMAdapter.from_estimator(estimator)
    return SklearnAdapter.from_estimator(estimator, task)
