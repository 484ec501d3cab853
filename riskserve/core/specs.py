"""The model contract: every public model's name, task, ordered features and label, declared once.

Training, serving, validation, drift, dashboards and tests all import these objects, so a field is
renamed or re-ranged in exactly one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np

Task = Literal["regression", "binary", "multiclass"]
Kind = Literal["float", "int", "category"]
# How the encoder turns a categorical feature into a number for the estimator.
Encoding = Literal["numeric", "code", "target"]


@dataclass(frozen=True)
class Feature:
    """One input column. `min`/`max` are hard validity bounds (reject), not the training range.

    `nullable` says whether a caller may leave the value out (JSON null, a blank CSV cell, a
    null in an Open Inference Protocol JSON tensor). It is True only where the real data set
    leaves the column blank *and* the model scores a blank natively, so a caller cannot hide a
    value the real data always has (a fraud `amount`) by sending it as missing.
    """

    name: str
    kind: Kind
    description: str
    min: float | None = None
    max: float | None = None
    # A closed set of allowed values (anything else is rejected). None on a category means an
    # open vocabulary (city, country): unseen values are accepted and counted as drift.
    categories: tuple[str, ...] | None = None
    encoding: Encoding = "numeric"
    nullable: bool = False

    @property
    def is_category(self) -> bool:
        return self.kind == "category"

    @property
    def datatype(self) -> str:
        """Open Inference Protocol tensor datatype for this feature."""
        return {"float": "FP64", "int": "INT64", "category": "BYTES"}[self.kind]


@dataclass(frozen=True)
class Derived:
    """A feature computed from inputs in the encoder, identically for training and serving."""

    name: str
    compute: Callable[[Mapping[str, np.ndarray]], np.ndarray]
    description: str


@dataclass(frozen=True)
class ModelSpec:
    """The public contract of one served model."""

    name: str
    family: str
    task: Task
    algorithm: str
    label: str
    features: tuple[Feature, ...]
    primary_metric: str
    description: str
    derived: tuple[Derived, ...] = ()
    greater_is_better: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def accepts_missing(self) -> bool:
        """Whether any feature is nullable (read-only; nullability is per `Feature.nullable`)."""
        return any(f.nullable for f in self.features)

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


T = TypeVar("T")


def per_spec(build: Callable[[ModelSpec], T]) -> Callable[[ModelSpec], T]:
    """Memoise something derived from a spec (a validation plan, a lookup table), built once.

    Keyed by identity, as specs hold a dict and so are unhashable; the spec is kept beside
    its value, so an id reused after a spec is gone never returns another spec's value.
    """
    cache: dict[int, tuple[ModelSpec, T]] = {}

    def get(spec: ModelSpec) -> T:
        hit = cache.get(id(spec))
        if hit is None or hit[0] is not spec:
            hit = cache[id(spec)] = (spec, build(spec))
        return hit[1]

    get.__doc__ = build.__doc__
    get.__name__ = build.__name__
    return get


def _rate(name: str, what: str) -> Feature:
    return Feature(name, "float", f"Share of devices reporting {what} that day (0..1).", 0.0, 1.0)


def _ternary(name: str, what: str) -> Feature:
    return Feature(name, "float", f"{what}: 0 legitimate, 0.5 suspicious, 1 phishing-like.",
                   0.0, 1.0)


def _binary(name: str, what: str) -> Feature:
    return Feature(name, "int", f"{what}: 0 no, 1 yes.", 0, 1)


def _timing(name: str, what: str, lo: float) -> Feature:
    return Feature(name, "float", f"{what}, milliseconds.", lo, 60_000.0)


# Nullability, per family, from the real data sets (shared DATA.md): nothing is nullable today.
# - cyber-threat: CyberData leaves every rate blank in 5-33 % of rows, but the reference trainer
#   drops those rows and Ridge cannot score a blank, so a blank would be a made-up answer.
# - phishing (river's UCI sample), keystroke (derived from complete press/release times),
#   risk-flag (the Kaggle loan data has no blank cell) and fraud (PaySim: no blank cell; an
#   absent amount or balance is how a caller would hide a transaction's shape): never blank.
CYBER_THREAT = ModelSpec(
    name="cyber-threat",
    family="cyber_threat",
    task="regression",
    algorithm="ridge",
    label="local_infection",
    primary_metric="r2",
    description="Local infection rate of a country on a day from its other threat indicators "
    "(Ridge on log1p counts, one-hot country, standard scaling).",
    features=(
        Feature("country", "category", "Country name as in the CyberData set.", encoding="code"),
        _rate("spam", "spam"),
        _rate("ransomware", "ransomware"),
        _rate("exploit", "exploits"),
        _rate("malicious_mail", "malicious mail"),
        _rate("network_attack", "network attacks"),
        _rate("web_threat", "web threats"),
    ),
)

PHISHING = ModelSpec(
    name="phishing",
    family="phishing",
    task="binary",
    algorithm="gradient-boosted-trees",
    label="is_phishing",
    primary_metric="roc_auc",
    description="Whether a website is a phishing site, from page and URL indicators "
    "(UCI Website Phishing).",
    features=(
        _ternary("empty_server_form_handler", "Form handler empty or off-domain"),
        _ternary("popup_window", "Pop-up window with text fields"),
        _ternary("https", "HTTPS certificate trust"),
        _ternary("request_from_other_domain", "Share of objects loaded from other domains"),
        _ternary("anchor_from_other_domain", "Share of anchors pointing to other domains"),
        _ternary("is_popular", "Site traffic rank"),
        _ternary("long_url", "URL length"),
        _binary("age_of_domain", "Domain younger than six months"),
        _binary("ip_in_url", "IP address used in the URL"),
    ),
)

_KEYSTROKE_FEATURES = (
    _timing("ht_mean", "Mean hold time (release - press of one key)", 0.0),
    _timing("ht_std", "Std of hold time", 0.0),
    _timing("ppt_mean", "Mean press-press time between consecutive keys", -60_000.0),
    _timing("ppt_std", "Std of press-press time", 0.0),
    _timing("rrt_mean", "Mean release-release time between consecutive keys", -60_000.0),
    _timing("rrt_std", "Std of release-release time", 0.0),
    _timing("rpt_mean", "Mean release-press time (press minus the previous key's release)",
            -60_000.0),
    _timing("rpt_std", "Std of release-press time", 0.0),
)


def _keystroke(name: str, algorithm: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        family="keystroke",
        task="multiclass",
        algorithm=algorithm,
        label="user",
        primary_metric="macro_f1",
        description=f"Which user typed a sample, from keystroke timing statistics ({algorithm}).",
        features=_KEYSTROKE_FEATURES,
    )


KEYSTROKE_SVM = _keystroke("keystroke-svm", "svm")
KEYSTROKE_RF = _keystroke("keystroke-rf", "random-forest")
KEYSTROKE_XGB = _keystroke("keystroke-xgb", "xgboost")

RISK_FLAG = ModelSpec(
    name="risk-flag",
    family="risk_flag",
    task="binary",
    algorithm="lightgbm",
    label="risk_flag",
    primary_metric="roc_auc",
    description="Whether a loan applicant is flagged risky (LightGBM; city and state "
    "target-encoded with the mapping saved in the model).",
    features=(
        Feature("income", "int", "Yearly income.", 0, 1e9),
        Feature("age", "int", "Age in years.", 18, 120),
        Feature("experience", "int", "Years of professional experience.", 0, 80),
        Feature("married", "category", "Marital status.", categories=("single", "married"),
                encoding="code"),
        Feature("house_ownership", "category", "Home ownership.",
                categories=("rented", "owned", "norent_noown"), encoding="code"),
        Feature("car_ownership", "category", "Owns a car.", categories=("no", "yes"),
                encoding="code"),
        Feature("profession", "category", "Profession.", encoding="code"),
        Feature("city", "category", "City of residence.", encoding="target"),
        Feature("state", "category", "State of residence.", encoding="target"),
        Feature("current_job_yrs", "int", "Years in the current job.", 0, 80),
        Feature("current_house_yrs", "int", "Years in the current house.", 0, 80),
    ),
)

FRAUD_TYPES = ("CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER")

FRAUD = ModelSpec(
    name="fraud",
    family="fraud",
    task="binary",
    algorithm="xgboost",
    label="is_fraud",
    primary_metric="pr_auc",
    description="Whether a mobile-money transaction is fraud (PaySim schema, XGBoost).",
    features=(
        Feature("step", "int", "Hour of the simulation (1 step = 1 hour).", 0, 1e6),
        Feature("type", "category", "Transaction type.", categories=FRAUD_TYPES, encoding="code"),
        Feature("amount", "float", "Amount in local currency.", 0.0, 1e12),
        Feature("oldbalance_org", "float", "Origin balance before.", 0.0, 1e12),
        Feature("newbalance_orig", "float", "Origin balance after.", 0.0, 1e12),
        Feature("oldbalance_dest", "float", "Destination balance before.", 0.0, 1e12),
        Feature("newbalance_dest", "float", "Destination balance after.", 0.0, 1e12),
    ),
    derived=(
        Derived(
            "orig_balance_error",
            lambda c: c["newbalance_orig"] + c["amount"] - c["oldbalance_org"],
            "How far the origin's balance change misses the amount (draining leaves 0).",
        ),
        Derived(
            "dest_balance_error",
            lambda c: c["oldbalance_dest"] + c["amount"] - c["newbalance_dest"],
            "How far the destination's balance change misses the amount.",
        ),
    ),
)

SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in (CYBER_THREAT, PHISHING, KEYSTROKE_SVM, KEYSTROKE_RF, KEYSTROKE_XGB, RISK_FLAG, FRAUD)
}
MODEL_NAMES: tuple[str, ...] = tuple(SPECS)

# The seed keystroke API named its models "SVM", "RF" and "XGB".
KEYSTROKE_BY_SEED_NAME = {"SVM": "keystroke-svm", "RF": "keystroke-rf", "XGB": "keystroke-xgb"}


def get_spec(name: str) -> ModelSpec:
    """Look up a spec by public name, raising the 404 error users see for unknown names."""
    from riskserve.errors import ModelNotFound

    try:
        return SPECS[name]
    except KeyError:
        raise ModelNotFound(name, known=MODEL_NAMES) from None
