"""Turn validated feature columns into the float32 matrix an estimator was trained on.

The encoder's fitted state (category vocabularies, target encodings) is saved as JSON next to the
model, and the same `transform` runs in training evaluation and in serving, so the two can never
disagree about preprocessing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from riskserve.core.specs import ModelSpec

if TYPE_CHECKING:  # imported where used: pandas costs ~0.45 s of every process start
    import pandas as pd

Columns = Mapping[str, np.ndarray]


# Up to this many values a dict lookup in plain Python beats pandas, whose Index.get_indexer
# costs ~75 µs per call whatever the size: most of the encoding time of a one-row request.
SMALL = 64


@functools.lru_cache(maxsize=256)
def _lookup(vocabulary: tuple[str, ...]) -> dict[str, int]:
    return vocabulary_index(vocabulary)


def vocabulary_index(vocabulary: Sequence[str]) -> dict[str, int]:
    """Each category's code. Hot paths build it once and pass it to `category_codes`: for an
    open vocabulary (risk-flag's few hundred cities) turning the list into a hashable key on
    every call costs more than the lookup itself."""
    return {v: i for i, v in enumerate(vocabulary)}


def is_missing(values: np.ndarray) -> np.ndarray:
    """Which values of an object column are None/NaN (plain Python when small, like below)."""
    if len(values) <= SMALL and all(v is None or isinstance(v, str) for v in values):
        return np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    import pandas as pd

    return pd.isna(pd.Series(values, dtype=object)).to_numpy()


def category_codes(values: np.ndarray,
                   vocabulary: Sequence[str] | Mapping[str, int]) -> np.ndarray:
    """Each value's index in `vocabulary` (a list, or its `vocabulary_index`); -1 for unseen or
    missing (vectorised when large)."""
    if len(values) <= SMALL and all(v is None or isinstance(v, str) for v in values):
        table = (vocabulary if isinstance(vocabulary, Mapping)
                 else _lookup(tuple(vocabulary)))
        return np.fromiter((table.get(v, -1) for v in values), dtype=np.int64,  # type: ignore[arg-type]
                           count=len(values))
    import pandas as pd

    return pd.Index(list(vocabulary), dtype=object).get_indexer(values).astype(np.int64)


@dataclass
class Encoder:
    """Fitted preprocessing for one model version.

    `vocabularies` maps each categorical feature to its known values (code = index, unseen = -1,
    which the encoder passes on as NaN for tree models' native missing handling).
    `target_maps` maps target-encoded features to per-category smoothed label means; unseen
    categories get `target_priors`.
    """

    spec: ModelSpec
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    target_maps: dict[str, list[float]] = field(default_factory=dict)
    target_priors: dict[str, float] = field(default_factory=dict)
    # Lookup tables built from the fields above on first use (an encoder is not changed once it
    # has encoded): per request, only dict lookups and one take() remain.
    _tables: dict[str, tuple[dict[str, int], np.ndarray | None]] | None = field(
        default=None, init=False, repr=False, compare=False)

    def _table(self, name: str) -> tuple[dict[str, int], np.ndarray | None]:
        if self._tables is None:
            self._tables = {
                f: (vocabulary_index(vocab),
                    np.asarray(self.target_maps[f], dtype=np.float64)
                    if f in self.target_maps else None)
                for f, vocab in self.vocabularies.items()}
        return self._tables[name]

    def index(self, name: str) -> dict[str, int]:
        """The `vocabulary_index` of a categorical feature, built once: for `category_codes`
        on hot paths (drift counting asks it too)."""
        return self._table(name)[0]

    @property
    def output_names(self) -> list[str]:
        """Column names of the matrix `transform` returns (features then derived)."""
        return [*self.spec.feature_names, *(d.name for d in self.spec.derived)]

    @classmethod
    def fit(cls, spec: ModelSpec, frame: pd.DataFrame, label: np.ndarray | None = None,
            smoothing: float = 20.0) -> Encoder:
        """Learn vocabularies (sorted, so codes are stable) and smoothed target encodings."""
        import pandas as pd

        enc = cls(spec)
        for f in spec.features:
            if not f.is_category:
                continue
            seen = pd.Series(frame[f.name]).dropna().astype(str)
            vocab = list(f.categories) if f.categories else sorted(seen.unique().tolist())
            enc.vocabularies[f.name] = vocab
            if f.encoding == "target":
                if label is None:
                    raise ValueError(f"target encoding of '{f.name}' needs the label")
                y = np.asarray(label, dtype=np.float64)
                prior = float(y.mean())
                codes = category_codes(frame[f.name].astype(str).to_numpy(), vocab)
                ok = codes >= 0
                sums = np.bincount(codes[ok], weights=y[ok], minlength=len(vocab))
                counts = np.bincount(codes[ok], minlength=len(vocab))
                # Smoothing pulls rare categories towards the prior so one lucky row cannot
                # make a city look certain.
                enc.target_maps[f.name] = ((sums + smoothing * prior) /
                                           (counts + smoothing)).tolist()
                enc.target_priors[f.name] = prior
        return enc

    def transform(self, columns: Columns) -> np.ndarray:
        """Encode validated columns (numbers as float, categories as str objects) to float32."""
        n = len(next(iter(columns.values())))
        out = np.empty((n, len(self.output_names)), dtype=np.float32)
        numeric: dict[str, np.ndarray] = {}
        for j, f in enumerate(self.spec.features):
            col = columns[f.name]
            if f.is_category:
                index, targets = self._table(f.name)
                codes = category_codes(col, index)
                if f.encoding == "target":
                    assert targets is not None
                    vals = np.where(codes >= 0, targets[np.maximum(codes, 0)],
                                    self.target_priors[f.name])
                else:
                    vals = np.where(codes >= 0, codes, np.nan)
                out[:, j] = vals
            else:
                numeric[f.name] = np.asarray(col, dtype=np.float64)
                out[:, j] = numeric[f.name]
        base = len(self.spec.features)
        for k, d in enumerate(self.spec.derived):
            out[:, base + k] = d.compute(numeric)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "vocabularies": self.vocabularies,
            "target_maps": self.target_maps,
            "target_priors": self.target_priors,
        }

    @classmethod
    def from_json(cls, spec: ModelSpec, data: Mapping[str, Any]) -> Encoder:
        return cls(
            spec,
            vocabularies={k: list(v) for k, v in data.get("vocabularies", {}).items()},
            target_maps={k: list(v) for k, v in data.get("target_maps", {}).items()},
            target_priors=dict(data.get("target_priors", {})),
        )

