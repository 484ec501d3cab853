"""Held-out metrics per task and the report plot that goes with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from riskserve.core.scoring import Prediction
from riskserve.core.specs import ModelSpec


def evaluate(spec: ModelSpec, y_true: np.ndarray, pred: Prediction) -> dict[str, float]:
    """The metrics that matter for the task; the spec's `primary_metric` is among them."""
    if spec.task == "regression":
        y = np.asarray(y_true, dtype=np.float64)
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y, pred.predictions))),
            "mae": float(skm.mean_absolute_error(y, pred.predictions)),
            "r2": float(skm.r2_score(y, pred.predictions)),
            "n_test": float(len(y)),
        }
    if spec.task == "binary":
        y = np.asarray(y_true, dtype=np.int64)
        p1 = pred.scores
        return {
            "roc_auc": float(skm.roc_auc_score(y, p1)),
            "pr_auc": float(skm.average_precision_score(y, p1)),
            "f1": float(skm.f1_score(y, pred.predictions, zero_division=0)),
            "precision": float(skm.precision_score(y, pred.predictions, zero_division=0)),
            "recall": float(skm.recall_score(y, pred.predictions, zero_division=0)),
            "accuracy": float(skm.accuracy_score(y, pred.predictions)),
            "positive_rate": float(y.mean()),
            "n_test": float(len(y)),
        }
    return {
        "accuracy": float(skm.accuracy_score(y_true, pred.predictions)),
        "macro_f1": float(skm.f1_score(y_true, pred.predictions, average="macro",
                                       zero_division=0)),
        "n_test": float(len(y_true)),
    }


def plot(spec: ModelSpec, y_true: np.ndarray, pred: Prediction, path: Path) -> Path:
    """ROC for binary, confusion matrix for multiclass, residuals for regression."""
    import matplotlib

    matplotlib.use("Agg")  # headless: reports are written by CI and servers too
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    if spec.task == "binary":
        fpr, tpr, _ = skm.roc_curve(y_true, pred.scores)
        auc = skm.roc_auc_score(y_true, pred.scores)
        ax.plot(fpr, tpr, label=f"ROC AUC {auc:.3f}")
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right")
    elif spec.task == "multiclass":
        cm = skm.confusion_matrix(y_true, pred.predictions)
        ax.imshow(cm, cmap="Blues")
        ax.set_xlabel("predicted user")
        ax.set_ylabel("true user")
    else:
        resid = np.asarray(y_true, dtype=np.float64) - pred.predictions
        ax.scatter(pred.predictions, resid, s=3, alpha=0.4)
        ax.axhline(0, color="k", linewidth=0.8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("residual")
    ax.set_title(spec.name)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
