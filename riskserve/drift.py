"""Reference distributions and binning for drift: pure numpy, no BentoML or Prometheus here.

Training stores one `Reference` per feature and for the prediction; serving counts served values
per reference bin and Prometheus computes PSI from those counters, so the math must live in one
place that both sides import and that tests can exercise on plain arrays.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from riskserve.core.encoding import category_codes, is_missing, vocabulary_index

N_BINS = 10
MAX_CATEGORIES = 20  # keeps the `bin` label bounded for open vocabularies like cities
OTHER = "__other__"
PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class Reference:
    """Training distribution of one column: bin edges or categories, and each bin's share."""

    kind: Literal["numeric", "categorical"]
    proportions: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None

    @property
    def n_bins(self) -> int:
        """Numeric: one bin per edge plus the open bin above the training max (out of range).
        Categorical: one per listed category plus the shared `__other__` bin."""
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.categories) + 1

    def assign(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each value; -1 for missing values (which are counted apart)."""
        if self.kind == "numeric":
            x = np.asarray(values, dtype=np.float64)
            bins = np.searchsorted(np.asarray(self.edges), x, side="left")
            return np.where(np.isnan(x), -1, bins)
        codes = category_codes(values, list(self.categories))
        other = len(self.categories)  # last bin holds every category outside the top ones
        missing = is_missing(values)
        return np.where(missing, -1, np.where(codes < 0, other, codes))

    def bin_of(self, value: float | str | None) -> int:
        """`assign` for one value, in plain Python: a float (NaN missing) for a numeric
        reference; a str or None (missing) for a categorical one. A one-row batch is binned
        in ~1 µs per feature this way, against ~10-20 µs for `assign`'s numpy calls."""
        if self.kind == "numeric":
            return -1 if value != value else bisect_left(self.edges, value)  # type: ignore[arg-type]
        if value is None:
            return -1
        return self._index.get(value, len(self.categories))  # type: ignore[arg-type]

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return vocabulary_index(self.categories)

    def counts(self, values: np.ndarray) -> np.ndarray:
        """How many values fall in each bin (missing values excluded)."""
        bins = self.assign(values)
        return np.bincount(bins[bins >= 0], minlength=self.n_bins)[: self.n_bins]

    def out_of_range(self, values: np.ndarray) -> int:
        """Numeric values outside the training min/max: a data-quality signal, not an error."""
        if self.kind != "numeric" or self.min is None or self.max is None:
            return 0
        x = np.asarray(values, dtype=np.float64)
        return int(np.count_nonzero((x < self.min) | (x > self.max)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reference:
        return cls(
            kind=data["kind"],
            proportions=tuple(data["proportions"]),
            edges=tuple(data.get("edges", ())),
            categories=tuple(data.get("categories", ())),
            min=data.get("min"),
            max=data.get("max"),
        )


class StackedReferences:
    """Several numeric references binned in one pass: the same bins as each one's `assign`,
    from a handful of numpy calls per batch instead of several per feature (drift counting
    runs on every scored batch, most of them a single row)."""

    def __init__(self, refs: Sequence[Reference]) -> None:
        width = max(len(r.edges) for r in refs)
        # Padding edges of +inf are never below a value, so they never move a value's bin.
        self.edges = np.full((len(refs), width), np.inf)
        for i, r in enumerate(refs):
            self.edges[i, :len(r.edges)] = r.edges
        bounded = [r.min is not None and r.max is not None for r in refs]
        self.lo = np.array([r.min if b else -np.inf for r, b in zip(refs, bounded, strict=True)])
        self.hi = np.array([r.max if b else np.inf for r, b in zip(refs, bounded, strict=True)])
        self.width = width + 1  # bins per reference, padded to the widest

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Bin of each value of `x` [references, rows]; -1 for missing (NaN) values."""
        bins = np.count_nonzero(self.edges[:, None, :] < x[:, :, None], axis=2)
        return np.where(np.isnan(x), -1, bins)

    def out_of_range(self, x: np.ndarray) -> np.ndarray:
        """Per reference, how many values lie outside the training min/max."""
        return np.count_nonzero((x < self.lo[:, None]) | (x > self.hi[:, None]), axis=1)


def numeric_reference(values: np.ndarray, n_bins: int = N_BINS) -> Reference:
    """Quantile bins: interior edges at the 1/n..(n-1)/n quantiles, duplicates merged.

    Discrete features (0/0.5/1) collapse to a few bins; the open top bin then holds only
    out-of-range values and has a training share of 0, which PSI floors.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise ValueError("cannot build a reference from an empty column")
    qs = np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1])
    edges = np.unique(np.concatenate([qs, [x.max()]]))
    ref = Reference("numeric", (), tuple(float(e) for e in edges), min=float(x.min()),
                    max=float(x.max()))
    counts = ref.counts(x)
    return Reference("numeric", tuple((counts / counts.sum()).tolist()), ref.edges,
                     min=ref.min, max=ref.max)


def categorical_reference(values: np.ndarray, max_categories: int = MAX_CATEGORIES) -> Reference:
    """The most frequent categories get a bin each; the rest share the last (`__other__`) bin."""
    import pandas as pd  # imported where used (see riskserve.core.encoding)

    s = pd.Series(values, dtype=object).dropna().astype(str)
    if s.empty:
        raise ValueError("cannot build a reference from an empty column")
    freq = s.value_counts()
    top = tuple(sorted(freq.index[: max_categories - 1].tolist()))
    ref = Reference("categorical", (), categories=top)
    counts = ref.counts(s.to_numpy(dtype=object))
    return Reference("categorical", tuple((counts / counts.sum()).tolist()), categories=top)


def psi(expected: np.ndarray, actual_counts: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index of served counts against reference proportions.

    Both shares are floored (the same floor as the Prometheus recording rules) so an empty bin
    adds a large but finite term instead of infinity.
    """
    actual_counts = np.asarray(actual_counts, dtype=np.float64)
    total = actual_counts.sum()
    if total == 0:
        return 0.0
    a = np.maximum(actual_counts / total, floor)
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    return float(np.sum((a - e) * np.log(a / e)))
