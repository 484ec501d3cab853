"""risk-flag: LightGBM loan risk flag (Kaggle "Loan Prediction Based on Customer Behavior")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskserve.core.encoding import Encoder
from riskserve.core.specs import RISK_FLAG, ModelSpec
from training.data import risk_flag as data
from training.sources import read_or_build, to_contract

QUICK_ROWS = 8_000
COLUMNS = {
    "Income": "income",
    "Age": "age",
    "Experience": "experience",
    "Married/Single": "married",
    "House_Ownership": "house_ownership",
    "Car_Ownership": "car_ownership",
    "Profession": "profession",
    "CITY": "city",
    "STATE": "state",
    "CURRENT_JOB_YRS": "current_job_yrs",
    "CURRENT_HOUSE_YRS": "current_house_yrs",
}
LABEL = "Risk_Flag"


def load(path: Path | None, *, quick: bool, seed: int) -> tuple[pd.DataFrame, str]:
    return read_or_build(path, (*COLUMNS, LABEL),
                         lambda: data.generate(QUICK_ROWS if quick else None, seed=seed),
                         "generator:Kaggle loan-risk schema and statistics")


def prepare(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return to_contract(raw, COLUMNS, LABEL, RISK_FLAG.label)


def fit(spec: ModelSpec, x: np.ndarray, y: np.ndarray, encoder: Encoder, *, quick: bool,
        seed: int) -> tuple[Any, str]:
    """LightGBM with native categorical splits on coded columns; city/state arrive encoded."""
    import lightgbm as lgb

    categorical = [j for j, f in enumerate(spec.features) if f.encoding == "code"]
    est = lgb.LGBMClassifier(n_estimators=150 if quick else 500, num_leaves=127,
                             learning_rate=0.05, min_child_samples=5, subsample=0.9,
                             subsample_freq=1, colsample_bytree=0.9, random_state=seed,
                             n_jobs=2, verbose=-1)
    est.fit(x, y, categorical_feature=categorical)
    return est, "lightgbm"
