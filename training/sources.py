"""Where a family's raw data comes from: a user's CSV in the real layout, or the built-in source."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from riskserve.errors import DataValidationError
from training.validate import require_columns


def read_or_build(data: Path | None, columns: tuple[str, ...], build: Callable[[], pd.DataFrame],
                  builtin: str) -> tuple[pd.DataFrame, str]:
    """Read `data` (checking its columns) or fall back to `build()`; returns (frame, source)."""
    if data is None:
        return build(), builtin
    if not data.exists():
        raise DataValidationError(f"{data}: no such file; pass a CSV in the real data set's layout")
    try:
        raw = pd.read_csv(data)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError(f"{data}: not a readable CSV ({exc})") from None
    require_columns(raw, columns, str(data))
    return raw, f"csv:{data.name}"


def to_contract(raw: pd.DataFrame, columns: dict[str, str], label: str, contract_label: str
                ) -> tuple[pd.DataFrame, pd.Series]:
    """Select the real columns, rename them to the contract's feature names, split the label."""
    return raw[list(columns)].rename(columns=columns), raw[label].rename(contract_label)
