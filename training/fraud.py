"""fraud: XGBoost on PaySim-style mobile-money transactions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskserve.core.encoding import Encoder
from riskserve.core.specs import FRAUD, ModelSpec
from training.data import fraud as data
from training.sources import read_or_build, to_contract

QUICK_ROWS = 40_000
# Quick runs are for tests: raise the fraud share so a small sample still has positives.
QUICK_FRAUD_RATE = 0.01
COLUMNS = {
    "step": "step",
    "type": "type",
    "amount": "amount",
    "oldbalanceOrg": "oldbalance_org",
    "newbalanceOrig": "newbalance_orig",
    "oldbalanceDest": "oldbalance_dest",
    "newbalanceDest": "newbalance_dest",
}
LABEL = "isFraud"


def load(path: Path | None, *, quick: bool, seed: int) -> tuple[pd.DataFrame, str]:
    def build() -> pd.DataFrame:
        if quick:
            return data.generate(QUICK_ROWS, seed=seed, fraud_rate=QUICK_FRAUD_RATE)
        return data.generate(seed=seed)

    return read_or_build(path, (*COLUMNS, LABEL), build, "generator:PaySim statistics")


def prepare(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return to_contract(raw, COLUMNS, LABEL, FRAUD.label)


def fit(spec: ModelSpec, x: np.ndarray, y: np.ndarray, encoder: Encoder, *, quick: bool,
        seed: int) -> tuple[Any, str]:
    import xgboost as xgb

    est = xgb.XGBClassifier(n_estimators=100 if quick else 300, max_depth=6,
                            learning_rate=0.1, subsample=0.9, colsample_bytree=0.9,
                            tree_method="hist", random_state=seed, n_jobs=2,
                            eval_metric="aucpr")
    return est.fit(x, y), "xgboost"
