"""Shadow candidates: the store's second pointer per model, and how a candidate's answers compare.

A candidate version is scored on live production rows after the answer went out, so it can be
judged on real traffic before `promote`. Like production, which version is the candidate lives in
a small JSON file beside the BentoML store (`$BENTOML_HOME/riskserve/shadow.json`, replaced
atomically so a serving process never reads half a file) with an append-only history
(`shadow.jsonl`: who, when, old, new), because BentoML has no mutable label.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from riskserve.core import store
from riskserve.core.scoring import Prediction
from riskserve.core.specs import get_spec
from riskserve.errors import ConfigurationError, InvalidInput

# Regression answers "disagree" when they differ by more than this share of production's value
# (plus REGRESSION_ATOL, so a production value of exactly 0 does not make every difference
# count): 1e-3 is far below cyber-threat's held-out error (~10 % relative) yet far above float
# noise between two versions of the same pipeline, so it flags a real change of answer only.
REGRESSION_TOLERANCE = 1e-3
REGRESSION_ATOL = 1e-9


def pointer_file() -> Path:
    return store.bentoml_home() / "riskserve" / "shadow.json"


def history_file() -> Path:
    """Append-only JSON lines: who named or cleared which candidate, and when."""
    return store.bentoml_home() / "riskserve" / "shadow.jsonl"


def _read() -> dict[str, Any]:
    path = pointer_file()
    if path.exists():
        return json.loads(path.read_text())
    # In a packed Bento (no pointer files): the candidates service.py declared at build time.
    return {name: {"version": r["shadow"]} for name, r in store.read_release().items()
            if r.get("shadow")}


def _production(name: str) -> str | None:
    try:
        return store.production_version(name)
    except ConfigurationError:  # no version at all
        return None


def pointed(name: str) -> str | None:
    """What the pointer file names, as written (`shadow_version` is what the service uses)."""
    return _read().get(name, {}).get("version")


def shadow_version(name: str) -> str | None:
    """The model's candidate, or None: none named, no longer in the store, or since promoted
    to production (a model never shadows itself)."""
    named = pointed(name)
    if named is None or named not in {str(m.tag.version) for m in store.list_versions(name)}:
        return None
    return None if named == _production(name) else named


@dataclass(frozen=True)
class ShadowChange:
    """What `set_shadow` did, for the CLI to print."""

    name: str
    old: str | None
    new: str | None
    changed: bool
    at: str


def set_shadow(name: str, version: str | None, *, reason: str = "manual") -> ShadowChange:
    """Name `version` as the model's candidate (None: shadowing off), with a history line.

    The version must exist in the store (404 listing the known ones) and must not be
    production (scoring a model against itself measures nothing). Setting what is already set
    changes nothing and writes no history.
    """
    get_spec(name)  # 404 for an unknown model
    if version is not None:
        store.get_version(name, version)  # 404 naming the known versions
        production = _production(name)
        if version == production:
            raise InvalidInput("version", f"a version other than production ({production})",
                               got=version, problem="that is the production version")
    old = pointed(name)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if old == version:
        return ShadowChange(name, old, version, False, now)
    pointer = _read()
    if version is None:
        pointer.pop(name, None)
    else:
        pointer[name] = {"version": version, "since": now}
    path = pointer_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(pointer, indent=1, sort_keys=True))
    os.replace(tmp, path)  # atomic: a serving process never reads half a file
    entry = {"at": now, "who": getpass.getuser(), "model": name, "old": old, "new": version,
             "reason": reason}
    with history_file().open("a") as fh:
        fh.write(json.dumps(entry) + "\n")
    return ShadowChange(name, old, version, True, now)


def history(name: str | None = None) -> list[dict[str, Any]]:
    """Recorded changes, oldest first (only `name`'s when given)."""
    path = history_file()
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if name is None or e.get("model") == name]


def compare(task: str, prod: Prediction, cand: Prediction) -> tuple[int, np.ndarray]:
    """(rows whose answer differs, |score delta| per row) of production vs its candidate.

    Differs: another class for classifiers; for regression a gap beyond REGRESSION_TOLERANCE of
    production's value. Score delta: binary |P(positive)| difference; regression |value|
    difference; multiclass the difference in top-class probability (the confidence), which
    needs no shared class order, since two versions may have been trained on different users.
    """
    if len(prod) != len(cand):
        raise ValueError(f"production scored {len(prod)} rows, the candidate {len(cand)}")
    if task == "regression":
        p = np.asarray(prod.predictions, dtype=np.float64)
        c = np.asarray(cand.predictions, dtype=np.float64)
        delta = np.abs(c - p)
        differs = ~(delta <= REGRESSION_TOLERANCE * np.abs(p) + REGRESSION_ATOL)  # NaN differs
        return int(np.count_nonzero(differs)), delta
    differs = np.asarray(prod.predictions) != np.asarray(cand.predictions)
    if task == "binary":
        delta = np.abs(_positive(cand) - _positive(prod))
    else:
        delta = np.abs(_top(cand) - _top(prod))
    return int(np.count_nonzero(differs)), delta


def _positive(pred: Prediction) -> np.ndarray:
    if pred.probabilities is not None:
        return np.asarray(pred.probabilities, dtype=np.float64)[:, 1]
    return np.asarray(pred.scores, dtype=np.float64)


def _top(pred: Prediction) -> np.ndarray:
    if pred.probabilities is None:
        return np.zeros(len(pred))
    return np.asarray(pred.probabilities, dtype=np.float64).max(axis=1)
