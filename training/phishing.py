"""phishing: gradient-boosted trees on the real UCI Website Phishing sample shipped by river."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from riskserve.core.encoding import Encoder
from riskserve.core.specs import PHISHING, ModelSpec
from training.data import phishing as data
from training.sources import read_or_build


def load(path: Path | None, *, quick: bool, seed: int) -> tuple[pd.DataFrame, str]:
    # Real data is small (1,250 rows): quick mode uses all of it too.
    return read_or_build(path, data.RAW_COLUMNS, data.load,
                         "real:UCI Website Phishing via river 0.26.1")


def prepare(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return raw[list(PHISHING.feature_names)], raw[data.LABEL_COLUMN].rename(PHISHING.label)


def _candidates(seed: int, quick: bool) -> dict[str, Any]:
    import lightgbm as lgb
    import xgboost as xgb

    n = 100 if quick else 300
    return {
        "xgboost": xgb.XGBClassifier(n_estimators=n, max_depth=4, learning_rate=0.05,
                                     subsample=0.9, random_state=seed, n_jobs=2),
        "lightgbm": lgb.LGBMClassifier(n_estimators=n, num_leaves=15, learning_rate=0.05,
                                       random_state=seed, n_jobs=2, verbose=-1),
        "sklearn-hgb": HistGradientBoostingClassifier(max_iter=n, learning_rate=0.05,
                                                      random_state=seed),
    }


def fit(spec: ModelSpec, x: np.ndarray, y: np.ndarray, encoder: Encoder, *, quick: bool,
        seed: int) -> tuple[Any, str]:
    """Pick the best of XGBoost / LightGBM / sklearn by 3-fold validation AUC, refit on all."""
    scores: dict[str, float] = {}
    folds = StratifiedKFold(3, shuffle=True, random_state=seed)
    for name, est in _candidates(seed, quick).items():
        aucs = []
        for tr, va in folds.split(x, y):
            est.fit(x[tr], y[tr])
            aucs.append(roc_auc_score(y[va], est.predict_proba(x[va])[:, 1]))
        scores[name] = float(np.mean(aucs))
    best = max(scores, key=scores.__getitem__)
    return _candidates(seed, quick)[best].fit(x, y), best
