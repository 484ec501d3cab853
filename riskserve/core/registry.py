"""The routing table: public model name (and optional version) -> a loaded scoring model.

Production versions (and each model's shadow candidate, if the store names one) are loaded once
per worker at start. Any other version that the model store holds is loaded on first request and
kept in a small LRU cache; a packed Bento holds only the versions it declares, so there every
other version is a 404 listing what exists.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from riskserve.core import store
from riskserve.core.scoring import ScoringModel
from riskserve.core.specs import MODEL_NAMES
from riskserve.errors import ModelNotFound

# Version strings that mean "whatever is in production".
PRODUCTION_ALIASES = frozenset({"", "latest", "production"})


class Registry:
    """Loaded models by name and version; `on_load` / `on_evict` let the data plane keep its
    per-version metrics and batchers in step with what is loaded."""

    def __init__(self, production: dict[str, ScoringModel], *,
                 candidates: dict[str, ScoringModel] | None = None, extra_versions: int = 4,
                 on_load: Callable[[ScoringModel], None] = lambda m: None,
                 on_evict: Callable[[ScoringModel], None] = lambda m: None) -> None:
        self.production = production
        self.candidates = candidates or {}
        self._extra: OrderedDict[tuple[str, str], ScoringModel] = OrderedDict()
        self._extra_size = extra_versions
        self._lock = threading.Lock()
        self._on_load = on_load
        self._on_evict = on_evict
        for model in (*production.values(), *self.candidates.values()):
            on_load(model)

    @property
    def names(self) -> list[str]:
        return [n for n in MODEL_NAMES if n in self.production]

    def candidate(self, name: str) -> ScoringModel | None:
        """The model's shadow candidate, scored beside production (None: no shadow)."""
        return self.candidates.get(name)

    def resolve(self, name: str, version: str | None = None,
                known: Iterable[str] | None = None) -> ScoringModel:
        """The model to answer with; 404 naming the known models (`known`: the ones the caller
        may see) or versions otherwise."""
        model = self.production.get(name)
        if model is None:
            raise ModelNotFound(name, self.names if known is None else known)
        if version is None or version in PRODUCTION_ALIASES or version == model.version:
            return model
        shadow = self.candidates.get(name)
        if shadow is not None and version == shadow.version:
            return shadow
        key = (name, version)
        with self._lock:
            if key in self._extra:
                self._extra.move_to_end(key)
                return self._extra[key]
        stored = store.get_version(name, version)  # raises ModelNotFound with known versions
        loaded = store.load_stored(stored)
        evicted = []
        with self._lock:
            self._extra[key] = loaded
            while len(self._extra) > self._extra_size:
                evicted.append(self._extra.popitem(last=False)[1])
        self._on_load(loaded)
        for old in evicted:
            self._on_evict(old)
        return loaded

    def describe(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """The model listing: what each model takes, what serves it and how well it scored."""
        return [describe(self.production[n], self.candidates.get(n)) for n in names
                if n in self.production]


def describe(m: ScoringModel, shadow: ScoringModel | None = None) -> dict[str, Any]:
    spec = m.spec
    return {
        "name": spec.name,
        "version": m.version,
        "task": spec.task,
        "algorithm": m.info.get("algorithm", spec.algorithm),
        "runtime": m.info.get("runtime", m.info.get("framework")),
        "description": spec.description,
        "features": [
            {"name": f.name, "dtype": f.kind, "datatype": f.datatype,
             "min": f.min, "max": f.max,
             "categories": list(f.categories) if f.categories else None,
             "nullable": f.nullable, "description": f.description}
            for f in spec.features
        ],
        "classes": m.classes or None,
        "metrics": m.info.get("metrics", {}),
        "primary_metric": spec.primary_metric,
        "trained_at": m.info.get("trained_at"),
        "shadow": shadow.version if shadow is not None else None,
    }
