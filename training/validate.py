"""Validate training data before any fitting: schema, dtypes, ranges, missing values, labels.

Feature checks reuse the serving validator, so data a model was trained on is data it would
also accept online. Errors name the column and the offending rows (as data rows, 0-based).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from riskserve.core.specs import ModelSpec
from riskserve.core.validation import columns_from_frame
from riskserve.errors import DataValidationError, InvalidInput

MIN_ROWS = 50
MIN_CLASS_ROWS = 2  # a stratified split needs at least two rows of every class


def require_columns(raw: pd.DataFrame, columns: Iterable[str], source: str) -> None:
    """Fail early, naming every missing column, when a CSV is not in the expected layout."""
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(map(str, raw.columns[:20]))}"
        )


def validate(spec: ModelSpec, frame: pd.DataFrame, label: pd.Series) -> dict[str, np.ndarray]:
    """Check features and label; return the typed feature columns."""
    if len(frame) < MIN_ROWS:
        raise DataValidationError(f"{spec.name}: only {len(frame)} rows; need at least {MIN_ROWS}")
    try:
        cols = columns_from_frame(spec, frame)
    except InvalidInput as exc:
        raise DataValidationError(f"{spec.name}: column {exc.message.removeprefix('field ')}",
                                  exc.detail) from None
    _validate_label(spec, label)
    return cols


def _validate_label(spec: ModelSpec, label: pd.Series) -> None:
    name = spec.label
    missing = label.isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)[:5].tolist()
        raise DataValidationError(f"{spec.name}: label column '{name}' has missing values "
                                  f"(rows {rows})")
    if spec.task == "regression":
        y = pd.to_numeric(label, errors="coerce")
        if y.isna().any() or not np.isfinite(y.to_numpy()).all():
            raise DataValidationError(f"{spec.name}: label column '{name}' must be numeric")
        return
    counts = label.value_counts()
    if spec.task == "binary":
        extra = sorted(set(counts.index) - {0, 1})
        if extra:
            raise DataValidationError(f"{spec.name}: label column '{name}' must be 0/1, "
                                      f"found {extra[:5]}")
        if len(counts) < 2:
            raise DataValidationError(f"{spec.name}: label column '{name}' has only one class; "
                                      "cannot learn to separate it")
    rare = counts[counts < MIN_CLASS_ROWS]
    if len(rare):
        raise DataValidationError(f"{spec.name}: label column '{name}' has classes with fewer "
                                  f"than {MIN_CLASS_ROWS} rows: {rare.index[:5].tolist()}")
