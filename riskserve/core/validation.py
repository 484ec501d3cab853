"""Validate inputs against the model contract and convert them to typed numpy columns.

JSON rows, CSV chunks, Open Inference Protocol tensors and training data all end here, so a
value is accepted or rejected the same way everywhere. Checks are vectorised per column; an
error names the field, what was expected and the first offending rows.

Numbers are strict: a missing value is only ever an explicit null (JSON `null`, a blank CSV
cell) on a nullable feature. A non-finite number (`1e999` parses as inf, Python's json takes
`NaN`/`Infinity` tokens, CSV cells `inf`/`nan`) is rejected, never read as a missing value,
since NaN is how numpy spells "missing" to the models and a caller could otherwise hide a value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from riskserve.core.encoding import category_codes, is_missing
from riskserve.core.specs import Feature, ModelSpec, per_spec
from riskserve.errors import InvalidInput

if TYPE_CHECKING:  # pandas is imported where used (see riskserve.core.encoding)
    import pandas as pd

_NUMBER_TYPES = frozenset({int, float})
_MISSING = object()
NON_FINITE = "not a finite number"
# How a CSV is read for validation: only a blank cell is missing. pandas' default NA strings
# ("nan", "NaN", "NULL", "None", "n/a"...) would silently turn those words into missing values.
CSV_READ_OPTIONS: dict[str, Any] = {"keep_default_na": False, "na_values": [""]}


def _expected(f: Feature) -> str:
    if f.is_category:
        if f.categories:
            return "one of " + ", ".join(repr(c) for c in f.categories)
        return "a string"
    kind = "an integer" if f.kind == "int" else "a number"
    if f.min is not None and f.max is not None:
        return f"{kind} in [{f.min:g}, {f.max:g}]"
    return kind


def _rows(mask: np.ndarray, offset: int) -> np.ndarray:
    return np.flatnonzero(mask) + offset


def _reject_nulls(f: Feature, nulls: np.ndarray, offset: int) -> None:
    if not f.nullable and nulls.any():
        raise InvalidInput(f.name, f"{_expected(f)} (this feature is not nullable)",
                           _rows(nulls, offset), problem="null value")


def check_finite(f: Feature, x: np.ndarray, nulls: np.ndarray | None = None,
                 offset: int = 0) -> None:
    """Reject inf/-inf/NaN in a float column, except where `nulls` marks an explicit null.

    Also used by the Open Inference Protocol codec on decoded tensors, so a NaN sent over
    gRPC or REST is refused with the same message as on /v1.
    """
    bad = ~np.isfinite(x)
    if nulls is not None:
        bad &= ~nulls
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InvalidInput(f.name, _expected(f), _rows(bad, offset), got=float(x[first]),
                           problem=NON_FINITE)


def check_numeric(spec: ModelSpec, f: Feature, x: np.ndarray, offset: int = 0,
                  nulls: np.ndarray | None = None) -> np.ndarray:
    """Null, finiteness, range and integrality checks on a float64 column; returns it.

    `nulls` marks the values sent as an explicit null (they are NaN in `x`). Without it every
    NaN in `x` is taken as a null: only for frames whose reader already turned exactly the
    blank cells into NaN (`CSV_READ_OPTIONS`, training frames).
    """
    if nulls is None:
        nulls = np.isnan(x)
    check_finite(f, x, nulls, offset)
    _reject_nulls(f, nulls, offset)
    present = ~nulls
    bad = np.zeros(len(x), dtype=bool)
    if f.min is not None:
        bad |= present & (x < f.min)
    if f.max is not None:
        bad |= present & (x > f.max)
    if f.kind == "int":
        bad |= present & (x != np.floor(x))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InvalidInput(f.name, _expected(f), _rows(bad, offset), got=float(x[first]))
    return x


def check_category(spec: ModelSpec, f: Feature, values: np.ndarray, offset: int = 0) -> np.ndarray:
    """Missing-value and closed-vocabulary checks on an object column of str/None."""
    missing = is_missing(values)
    _reject_nulls(f, missing, offset)
    if f.categories:
        bad = (category_codes(values, f.categories) < 0) & ~missing
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise InvalidInput(f.name, _expected(f), _rows(bad, offset), got=str(values[first]))
    return values


def _numeric_from_list(spec: ModelSpec, f: Feature, values: list[Any]) -> np.ndarray:
    types = set(map(type, values))
    if not types <= _NUMBER_TYPES | {type(None)}:
        # bool is a subclass of int in Python but never a meaningful amount or age.
        wrong = [i for i, v in enumerate(values) if type(v) not in _NUMBER_TYPES and v is not None]
        raise InvalidInput(f.name, _expected(f), wrong, got=repr(values[wrong[0]])[:80])
    try:
        x = np.array(values, dtype=np.float64)  # None becomes NaN here
    except OverflowError:  # an integer beyond float64 (JSON has no size limit)
        wrong = [i for i, v in enumerate(values) if type(v) is int and abs(v) > 2**1023]
        raise InvalidInput(f.name, _expected(f), wrong, problem="number too large",
                           got=f"{str(values[wrong[0]])[:20]}...") from None
    nulls = (np.fromiter((v is None for v in values), dtype=bool, count=len(values))
             if type(None) in types else np.zeros(len(values), dtype=bool))
    return check_numeric(spec, f, x, nulls=nulls)


def _category_from_list(spec: ModelSpec, f: Feature, values: list[Any]) -> np.ndarray:
    types = set(map(type, values))
    if not types <= {str, type(None)}:
        wrong = [i for i, v in enumerate(values) if not isinstance(v, str) and v is not None]
        raise InvalidInput(f.name, _expected(f), wrong, got=repr(values[wrong[0]])[:80])
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return check_category(spec, f, arr)


def columns_from_records(spec: ModelSpec, records: Sequence[Mapping[str, Any]]
                         ) -> dict[str, np.ndarray]:
    """Validate JSON rows (`[{feature: value}]`) into typed columns.

    Unknown fields are rejected rather than ignored: a misspelled feature must not silently
    become a missing value.
    """
    if not records:
        raise InvalidInput("inputs", "at least one row")
    names = spec.feature_names
    unknown = set().union(*records) - set(names)
    if unknown:
        field = sorted(unknown)[0]
        raise InvalidInput(field, f"no such feature; {spec.name} takes {', '.join(names)}")
    fast = _plan(spec).columns(records)
    if fast is not None:
        return fast
    # Something is off (or null): the per-feature checks below find it and name the field.
    cols: dict[str, np.ndarray] = {}
    for f in spec.features:
        values = [r.get(f.name, _MISSING) for r in records]
        absent = [i for i, v in enumerate(values) if v is _MISSING]
        if absent:
            raise InvalidInput(f.name, _expected(f), absent, problem="field is missing")
        if f.is_category:
            cols[f.name] = _category_from_list(spec, f, values)
        else:
            cols[f.name] = _numeric_from_list(spec, f, values)
    return cols


class _Plan:
    """One spec's checks, vectorised over every numeric feature at once.

    Accepting a valid request is the hot path (one JSON row per call, ~10 features): the
    per-feature path below costs ~10 numpy calls per feature, this one a handful per request.
    It accepts a strict subset of what the per-feature path accepts, with the same values;
    anything it does not accept (a wrong type, a null, a value out of bounds, a missing field)
    goes to the per-feature path, which decides and writes the error.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.features = spec.features
        numeric = [f for f in spec.features if not f.is_category]
        self.numeric = tuple(f.name for f in numeric)
        # Unbounded sides become the largest finite float: `lo <= x <= hi` then also refuses
        # NaN (every comparison is false) and +-inf, in the same two comparisons.
        top = np.finfo(np.float64).max
        self.lo = np.array([-top if f.min is None else f.min for f in numeric])[:, None]
        self.hi = np.array([top if f.max is None else f.max for f in numeric])[:, None]
        self.ints = np.array([f.kind == "int" for f in numeric], dtype=bool)
        self.any_int = bool(self.ints.any())
        self.categories = {f.name: None if f.categories is None else frozenset(f.categories)
                           for f in spec.features if f.is_category}

    def columns(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray] | None:
        """Typed columns when every value is valid; None to let the per-feature path decide."""
        try:
            table = [[r[n] for n in self.numeric] for r in records]
            cats = {n: [r[n] for r in records] for n in self.categories}
        except (KeyError, TypeError):  # a field is missing, or a row is not an object
            return None
        if not set(map(type, itertools.chain.from_iterable(table))) <= _NUMBER_TYPES:
            return None
        if not self._valid_categories(cats):
            return None
        try:
            x = np.array(table, dtype=np.float64).reshape(len(records), len(self.numeric))
        except OverflowError:
            return None
        by_column = np.ascontiguousarray(x.T)
        if not self._valid_numbers(by_column):
            return None
        return self._assemble(len(records), by_column, cats)

    def arrays(self, arrays: Mapping[str, np.ndarray],
               nulls: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The same for decoded tensors (/v2, gRPC): one check over every numeric input."""
        if len(arrays) != len(self.features) or any(n.any() for n in nulls.values()):
            return None
        try:
            x = np.array([arrays[n] for n in self.numeric], dtype=np.float64)
            cats = {n: arrays[n] for n in self.categories}
        except (KeyError, ValueError, TypeError):  # missing input, ragged lengths, non-numbers
            return None
        if self.numeric:
            if x.ndim != 2:  # a tensor of another shape: the per-feature path says which
                return None
            rows = x.shape[1]
        else:
            rows = len(next(iter(cats.values())))
            x = np.empty((0, rows))
        if any(len(c) != rows for c in cats.values()) or not self._valid_categories(cats):
            return None
        if not self._valid_numbers(x):
            return None
        return self._assemble(rows, x, cats)

    def _valid_categories(self, cats: Mapping[str, Sequence[Any]]) -> bool:
        """Every value a string, and in the vocabulary where the feature has a closed one."""
        for name, values in cats.items():
            allowed = self.categories[name]
            if not set(map(type, values)) <= {str} or (
                    allowed is not None and not allowed.issuperset(values)):
                return False
        return True

    def _valid_numbers(self, x: np.ndarray) -> bool:
        """Every value of `x` [numeric features, rows] finite, in bounds, integral if int."""
        with np.errstate(invalid="ignore"):
            if not ((x >= self.lo) & (x <= self.hi)).all():
                return False
            if self.any_int:
                whole = x[self.ints]
                return bool((whole == np.floor(whole)).all())
        return True

    def _assemble(self, rows: int, by_column: np.ndarray,
                  cats: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        by_feature = dict(zip(self.numeric, by_column, strict=True))
        out: dict[str, np.ndarray] = {}
        for f in self.features:
            if f.is_category:
                values = cats[f.name]
                if isinstance(values, np.ndarray) and values.dtype == object:
                    out[f.name] = values  # a decoded tensor: already this request's own array
                    continue
                arr = np.empty(rows, dtype=object)
                arr[:] = values
                out[f.name] = arr
            else:
                out[f.name] = by_feature[f.name]
        return out


_plan = per_spec(_Plan)


def columns_from_frame(spec: ModelSpec, frame: pd.DataFrame, offset: int = 0
                       ) -> dict[str, np.ndarray]:
    """Validate a DataFrame (a CSV chunk, training data) into typed columns.

    `offset` is the index of the frame's first row in the whole file, so errors point at the
    row a user can find in their CSV.
    """
    import pandas as pd

    missing_cols = [n for n in spec.feature_names if n not in frame.columns]
    if missing_cols:
        raise InvalidInput(missing_cols[0], "a column of that name", problem="column is missing")
    cols: dict[str, np.ndarray] = {}
    for f in spec.features:
        s = frame[f.name]
        na = s.isna().to_numpy()
        if f.is_category:
            values = s.astype(str).to_numpy(dtype=object)
            values[na] = None
            cols[f.name] = check_category(spec, f, values, offset)
        else:
            x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
            unparsable = np.isnan(x) & ~na
            if unparsable.any():
                first = int(np.flatnonzero(unparsable)[0])
                text = str(s.iloc[first])
                raise InvalidInput(f.name, _expected(f), _rows(unparsable, offset),
                                   got=text[:80], problem=NON_FINITE if _is_nan(text) else None)
            cols[f.name] = check_numeric(spec, f, x, offset, nulls=na)
    return cols


def _is_nan(text: str) -> bool:
    """A cell such as "nan" or "NaN": a number to Python, but not a finite one."""
    try:
        return math.isnan(float(text))
    except ValueError:
        return False


def columns_from_arrays(spec: ModelSpec, arrays: Mapping[str, np.ndarray],
                        nulls: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Validate already-typed columns (Open Inference Protocol tensors).

    `nulls` marks, per numeric input, the values that were an explicit null (JSON `null`);
    every other NaN or inf is refused as a non-finite number. Categorical inputs carry their
    nulls as None.
    """
    nulls = nulls or {}
    fast = _plan(spec).arrays(arrays, nulls)
    if fast is not None:
        return fast
    names = spec.feature_names
    unknown = sorted(set(arrays) - set(names))
    if unknown:
        raise InvalidInput(unknown[0], f"no such input; {spec.name} takes {', '.join(names)}")
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) > 1:
        raise InvalidInput("inputs", f"every input with the same length, got lengths {lengths}")
    cols: dict[str, np.ndarray] = {}
    for f in spec.features:
        if f.name not in arrays:
            raise InvalidInput(f.name, _expected(f), problem="input is missing")
        a = arrays[f.name]
        if f.is_category:
            cols[f.name] = check_category(spec, f, np.asarray(a, dtype=object))
        else:
            x = np.asarray(a, dtype=np.float64)
            sent_null = nulls.get(f.name, np.zeros(len(x), dtype=bool))
            cols[f.name] = check_numeric(spec, f, x, nulls=sent_null)
    return cols
