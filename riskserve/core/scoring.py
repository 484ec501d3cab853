"""A scoring model: encoder + framework adapter + output mapping, for one model version.

Offline evaluation in training and online serving both call `ScoringModel.predict`, so the
numbers in the model's metrics come from exactly the code that answers requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from riskserve.core.adapters import Adapter
from riskserve.core.encoding import Columns, Encoder
from riskserve.core.specs import ModelSpec
from riskserve.drift import Reference


@dataclass
class Prediction:
    """Predictions for N rows: labels or values, and class probabilities for classifiers."""

    predictions: np.ndarray
    probabilities: np.ndarray | None = None  # [N, len(classes)]
    scores: np.ndarray | None = None  # what drift bins: P(positive) or the regression value

    def __len__(self) -> int:
        return len(self.predictions)


@dataclass
class ScoringModel:
    """Everything needed to score one model version, loaded once per worker."""

    spec: ModelSpec
    encoder: Encoder
    adapter: Adapter
    version: str = "unsaved"
    classes: list[Any] = field(default_factory=list)
    threshold: float = 0.5
    references: dict[str, Reference] = field(default_factory=dict)
    prediction_reference: Reference | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # Loads the native adapter on first use when `adapter` is a compiled one (explanations need
    # the framework's own booster or estimator; serving does not, so it is not loaded eagerly).
    native_loader: Callable[[], Adapter] | None = field(default=None, repr=False)
    _native: Adapter | None = field(default=None, init=False, repr=False)

    def native_adapter(self) -> Adapter:
        """The framework's own adapter (XGBoost/LightGBM booster, scikit-learn estimator).

        Tree SHAP and coefficient explanations need the native object even when requests are
        served by a compiled artifact; it is loaded lazily from the version folder because most
        workers never explain and the native forest costs memory.
        """
        if self.native_loader is None:
            return self.adapter
        if self._native is None:
            self._native = self.native_loader()
        return self._native

    def predict(self, columns: Columns, native: bool = False) -> Prediction:
        """Score validated columns in one vectorised call (`native`: with the framework's own
        model, as explanations do, so their contributions add up to exactly this answer)."""
        adapter = self.native_adapter() if native else self.adapter
        raw = adapter.score(self.encoder.transform(columns))
        task = self.spec.task
        if task == "regression":
            values = raw.astype(np.float64)
            return Prediction(values, None, values)
        if task == "binary":
            p1 = raw.astype(np.float64)
            labels = (p1 >= self.threshold).astype(np.int64)
            return Prediction(labels, np.column_stack([1.0 - p1, p1]), p1)
        proba = raw.astype(np.float64)
        labels = np.asarray(self.classes)[np.argmax(proba, axis=1)]
        return Prediction(labels, proba, labels)
