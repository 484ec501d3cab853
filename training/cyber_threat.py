"""cyber-threat: Ridge regression of a country's daily local infection rate (CyberData layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from riskserve.core.encoding import Encoder
from riskserve.core.specs import CYBER_THREAT, ModelSpec
from training.data import cyber_threat as data
from training.sources import read_or_build, to_contract

# The reference project's tuned alpha (its grid search over logspace(-3, 3)).
RIDGE_ALPHA = 0.21544346900318823
QUICK_ROWS = 6_000
# Real column -> contract feature. AttackDate, On Demand Scan and the Rank columns are dropped
# exactly as the reference project's train.py does.
COLUMNS = {
    "Country": "country",
    "Spam": "spam",
    "Ransomware": "ransomware",
    "Exploit": "exploit",
    "Malicious Mail": "malicious_mail",
    "Network Attack": "network_attack",
    "Web Threat": "web_threat",
}
LABEL = "Local Infection"


def load(path: Path | None, *, quick: bool, seed: int) -> tuple[pd.DataFrame, str]:
    return read_or_build(path, (*COLUMNS, LABEL),
                         lambda: data.generate(QUICK_ROWS if quick else None, seed=seed),
                         "generator:DrSufi/CyberData statistics")


def prepare(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Rename to the contract and drop rows with any missing value, like the reference does."""
    return to_contract(raw[[*COLUMNS, LABEL]].dropna(), COLUMNS, LABEL, CYBER_THREAT.label)


def fit(spec: ModelSpec, x: np.ndarray, y: np.ndarray, encoder: Encoder, *, quick: bool,
        seed: int) -> tuple[Any, str]:
    """log1p counts + one-hot country -> StandardScaler -> Ridge, on log1p of the target."""
    country = [0]  # the encoder puts features in contract order; country is first
    rates = list(range(1, x.shape[1]))
    features = ColumnTransformer([
        ("country", OneHotEncoder(handle_unknown="ignore", sparse_output=False), country),
        ("log1p", FunctionTransformer(np.log1p), rates),
    ])
    pipe = Pipeline([("features", features), ("scale", StandardScaler()),
                     ("ridge", Ridge(alpha=RIDGE_ALPHA))])
    model = TransformedTargetRegressor(regressor=pipe, func=np.log1p, inverse_func=np.expm1)
    return model.fit(x, y), "ridge"
