"""Validate ground-truth outcomes sent back for served predictions (`POST /v1/feedback`).

The caller sends what it was told (`predicted`) and what happened (`actual`); nothing is stored,
the pairs only feed live-quality counters. So a label the model can never emit (a typo, a string
"1", a user id the model does not know) must be refused here with a 422 naming the item, not
silently become a new metric series or skew live precision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from riskserve.core.scoring import ScoringModel
from riskserve.errors import InvalidInput

FIELDS = ("predicted", "actual")
_ITEM = "an object {\"predicted\": ..., \"actual\": ...}"


@dataclass(frozen=True)
class Outcomes:
    """Validated outcome pairs of one model: labels as the model's classes, or float values."""

    task: str
    predicted: np.ndarray
    actual: np.ndarray

    def __len__(self) -> int:
        return len(self.predicted)

    @property
    def correct(self) -> int:
        """Classifiers: how many predictions were right."""
        return int(np.count_nonzero(self.predicted == self.actual))

    @property
    def abs_errors(self) -> np.ndarray:
        """Regression: |actual - predicted| per outcome."""
        return np.abs(self.actual.astype(np.float64) - self.predicted.astype(np.float64))


def _is_number(v: Any) -> bool:
    # bool is an int in Python, but `true` is never a label or an amount someone meant to send.
    return isinstance(v, int | float) and not isinstance(v, bool)


def _label_check(model: ScoringModel) -> tuple[str, Any]:
    """(what is expected, value -> canonical class or None) for the model's classes.

    JSON has one number type, so 1.0 is accepted for class 1, never "1" for 1 (a string is
    another type, and for string classes a number is).
    """
    classes = list(model.classes) if model.spec.task == "multiclass" else [0, 1]
    by_value: dict[Any, Any] = {}
    for c in classes:
        c = c.item() if isinstance(c, np.generic) else c
        by_value[(str, c) if isinstance(c, str) else (float, float(c))] = c

    def canonical(v: Any) -> Any:
        if isinstance(v, str):
            return by_value.get((str, v))
        if _is_number(v) and math.isfinite(v):
            return by_value.get((float, float(v)))
        return None

    shown = ", ".join(repr(c) for c in classes[:10])
    more = f", ... ({len(classes)} classes)" if len(classes) > 10 else ""
    return f"one of the model's classes: {shown}{more}", canonical


def _value_check() -> tuple[str, Any]:
    def canonical(v: Any) -> float | None:
        return float(v) if _is_number(v) and math.isfinite(v) else None

    return "a finite number", canonical


def validate(model: ScoringModel, outcomes: Any) -> Outcomes:
    """Check every `{"predicted", "actual"}` item against the model; 422 naming the first bad
    field (e.g. `outcomes[3].actual`) and listing every item with the same problem.

    Extra keys in an item (an id, a timestamp) are ignored. The row limit is the caller's.
    """
    if not isinstance(outcomes, Sequence) or isinstance(outcomes, str | bytes):
        raise InvalidInput("outcomes", f"a list of {_ITEM}", got=type(outcomes).__name__)
    if not outcomes:
        raise InvalidInput("outcomes", f"a non-empty list of {_ITEM}", problem="empty list")
    bad_items = [i for i, o in enumerate(outcomes) if not isinstance(o, Mapping)]
    if bad_items:
        first = bad_items[0]
        raise InvalidInput(f"outcomes[{first}]", _ITEM, bad_items,
                           got=type(outcomes[first]).__name__)
    expected, canonical = (_value_check() if model.spec.task == "regression"
                           else _label_check(model))
    columns: dict[str, list[Any]] = {}
    for name in FIELDS:
        missing = [i for i, o in enumerate(outcomes) if name not in o]
        if missing:
            raise InvalidInput(f"outcomes[{missing[0]}].{name}", expected, missing,
                               problem="missing")
        values = [canonical(o[name]) for o in outcomes]
        bad = [i for i, v in enumerate(values) if v is None]
        if bad:
            got = outcomes[bad[0]][name]
            raise InvalidInput(f"outcomes[{bad[0]}].{name}", expected, bad,
                               got=got if _is_number(got) or isinstance(got, str) else repr(got))
        columns[name] = values
    if model.spec.task == "regression":
        return Outcomes("regression", np.asarray(columns["predicted"], dtype=np.float64),
                        np.asarray(columns["actual"], dtype=np.float64))
    return Outcomes(model.spec.task, np.asarray(columns["predicted"]),
                    np.asarray(columns["actual"]))
