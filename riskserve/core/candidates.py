"""Shadow candidates: a version scored beside production on live traffic (placeholder until the
store pointer lands; no candidate is ever named)."""

from __future__ import annotations

import numpy as np

from riskserve.core.scoring import Prediction


def shadow_version(name: str) -> str | None:
    return None


def compare(task: str, prod: Prediction, cand: Prediction) -> tuple[int, np.ndarray]:
    if task == "regression":
        delta = np.abs(cand.predictions - prod.predictions)
        return int(np.count_nonzero(delta > 1e-3 * np.abs(prod.predictions))), delta
    delta = np.abs(np.asarray(cand.scores, float) - np.asarray(prod.scores, float))
    return int(np.count_nonzero(cand.predictions != prod.predictions)), delta
