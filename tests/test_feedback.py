"""Feedback validation: labels must be the model's classes, values finite; 422s name the item."""

from __future__ import annotations

import numpy as np
import pytest

from riskserve.core import feedback
from riskserve.core.encoding import Encoder
from riskserve.core.scoring import ScoringModel
from riskserve.core.specs import SPECS
from riskserve.errors import InvalidInput

USERS = [3, 7, 11]


def _model(name: str, classes: list | None = None) -> ScoringModel:
    """Validation needs only the task and the classes: no trained model."""
    spec = SPECS[name]
    default = [0, 1] if spec.task == "binary" else []
    return ScoringModel(spec, Encoder(spec), adapter=None,  # type: ignore[arg-type]
                        classes=default if classes is None else classes)


def _error(model: ScoringModel, outcomes: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        feedback.validate(model, outcomes)
    assert info.value.status == 422
    return info.value


def test_binary_outcomes_are_accepted_as_int_labels() -> None:
    out = feedback.validate(_model("fraud"), [{"predicted": 1, "actual": 0},
                                              {"predicted": 0, "actual": 0, "id": "tx-9"},
                                              {"predicted": 1.0, "actual": 1}])
    assert len(out) == 3 and out.task == "binary"
    assert out.predicted.tolist() == [1, 0, 1] and out.actual.tolist() == [0, 0, 1]
    assert out.correct == 2


@pytest.mark.parametrize(("bad", "field"), [
    ({"predicted": 2, "actual": 0}, "outcomes[1].predicted"),
    ({"predicted": 1, "actual": "1"}, "outcomes[1].actual"),
    ({"predicted": True, "actual": 0}, "outcomes[1].predicted"),
    ({"predicted": 0.5, "actual": 0}, "outcomes[1].predicted"),
    ({"predicted": None, "actual": 0}, "outcomes[1].predicted"),
    ({"predicted": 1}, "outcomes[1].actual"),
    ({"actual": 1}, "outcomes[1].predicted"),
    ([1, 0], "outcomes[1]"),
])
def test_binary_labels_outside_0_1_name_the_item(bad: object, field: str) -> None:
    err = _error(_model("fraud"), [{"predicted": 0, "actual": 0}, bad])
    assert err.field == field
    assert err.detail["rows"] == [1]


def test_every_bad_item_is_listed_and_the_first_named() -> None:
    items = [{"predicted": 0, "actual": a} for a in (0, 5, 1, 9, 0)]
    err = _error(_model("risk-flag"), items)
    assert err.field == "outcomes[1].actual"
    assert err.detail["rows"] == [1, 3]
    assert err.detail["got"] == 5
    assert "0, 1" in err.detail["expected"]


def test_multiclass_labels_must_be_the_models_users() -> None:
    model = _model("keystroke-xgb", USERS)
    out = feedback.validate(model, [{"predicted": 3, "actual": 7}, {"predicted": 11, "actual": 11}])
    assert out.predicted.tolist() == [3, 11] and out.correct == 1
    err = _error(model, [{"predicted": 3, "actual": 4}])
    assert err.field == "outcomes[0].actual"
    assert "3, 7, 11" in err.detail["expected"]
    # A string is not the integer user id it spells.
    assert _error(model, [{"predicted": "3", "actual": 3}]).field == "outcomes[0].predicted"


def test_string_classes_are_matched_as_strings() -> None:
    model = _model("keystroke-svm", ["alice", "bob"])
    assert feedback.validate(model, [{"predicted": "bob", "actual": "alice"}]).correct == 0
    assert _error(model, [{"predicted": "carol", "actual": "bob"}]).field == \
        "outcomes[0].predicted"


def test_regression_takes_finite_numbers() -> None:
    model = _model("cyber-threat")
    out = feedback.validate(model, [{"predicted": 0.01, "actual": 0.012},
                                    {"predicted": 0, "actual": 0.5}])
    assert out.predicted.dtype == np.float64
    np.testing.assert_allclose(out.abs_errors, [0.002, 0.5])
    for bad in (float("inf"), float("nan"), "0.1", None, True):
        err = _error(model, [{"predicted": 0.1, "actual": 0.1}, {"predicted": bad, "actual": 1}])
        assert err.field == "outcomes[1].predicted"
        assert err.detail["expected"] == "a finite number"


@pytest.mark.parametrize("outcomes", [[], {"predicted": 1, "actual": 1}, "x", None, 3])
def test_not_a_non_empty_list_is_a_422_on_outcomes(outcomes: object) -> None:
    err = _error(_model("fraud"), outcomes)
    assert err.field == "outcomes"
