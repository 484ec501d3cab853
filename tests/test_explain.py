"""Explanations: additivity for every explainable model, reason codes, and the 422 for the rest."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from riskserve.core import explain, store
from riskserve.core.compiled import PROBA_ATOL, REGRESSION_RTOL
from riskserve.core.scoring import ScoringModel
from riskserve.core.specs import MODEL_NAMES, SPECS
from riskserve.core.validation import columns_from_frame
from riskserve.errors import InvalidInput
from tests.conftest import SEED
from training import pipeline
from training.__main__ import family_of

ROWS = 200
# The bound on base + sum(contributions) vs the model's own output.
ADDITIVITY = 1e-4
# Probabilities come out of the boosters as float32: near p = 1, 1 - p keeps few digits, so the
# log-odds recomputed from p can be off by ~ulp / (1 - p). Allow that rounding on top of 1e-4.
FLOAT32_ULP = 2.0**-23
# Models whose algorithm always has an exact method here (phishing depends on the pick).
ALWAYS_EXPLAINABLE = {"cyber-threat", "keystroke-xgb", "risk-flag", "fraud"}
NEVER_EXPLAINABLE = {"keystroke-svm", "keystroke-rf"}


@pytest.fixture(scope="module")
def frames() -> dict[str, object]:
    """Rows from each family's (quick) data set, as a caller would send them."""
    out = {}
    for name in MODEL_NAMES:
        prepared = pipeline.prepare(family_of(name), None, True, SEED)
        out[name] = prepared.frame.head(ROWS).reset_index(drop=True)
    return out


@pytest.fixture(scope="module")
def loaded(trained: dict) -> dict[str, ScoringModel]:
    """Each model as the service loads it: from the store, not the in-memory training object."""
    return {name: store.load_model(name, trained[name].version) for name in MODEL_NAMES}


@pytest.fixture(scope="module")
def explained(loaded: dict, frames: dict) -> dict[str, explain.Explanation]:
    """Each explainable model's explanation of its rows, computed once (risk-flag's LightGBM
    tree SHAP costs seconds under a loaded machine)."""
    return {n: explain.explain(m, _columns(n, frames)) for n, m in loaded.items()
            if explain.can_explain(m)}


def _columns(name: str, frames: dict) -> dict[str, np.ndarray]:
    return columns_from_frame(SPECS[name], frames[name])


def _native(model: ScoringModel) -> ScoringModel:
    """The same version scored by its framework's own adapter (what the explanation explains)."""
    return dataclasses.replace(model, adapter=model.native_adapter(), native_loader=None)


def _target(model: ScoringModel, columns: dict[str, np.ndarray],
            served_slack: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """What base + sum(contributions) must equal per row, and the tolerance per row.

    `served_slack` is how far the scoring runtime may be from the native model (a compiled ONNX
    artifact is served only within PROBA_ATOL / REGRESSION_RTOL of it on held-out rows).
    """
    pred = model.predict(columns)
    task = model.spec.task
    if task == "binary":
        p = pred.probabilities[:, 1]
        assert ((p > 0) & (p < 1)).all()
        return np.log(p / (1 - p)), (ADDITIVITY + 8 * FLOAT32_ULP / (1 - p)
                                     + served_slack / (p * (1 - p)))
    if task == "multiclass":
        # The margin of the predicted class: from the native booster, since a softmax cannot
        # be inverted to absolute margins.
        import xgboost as xgb

        x = model.encoder.transform(columns)
        margins = model.native_adapter().booster.predict(xgb.DMatrix(x), output_margin=True)
        k = np.argmax(pred.probabilities, axis=1)
        assert (np.asarray(model.classes)[k] == pred.predictions).all()
        return margins[np.arange(len(k)), k], np.full(len(k), ADDITIVITY)
    # cyber-threat fits on log1p(target) and predicts expm1 of the Ridge output.
    y = pred.predictions
    return np.log1p(y), ADDITIVITY + served_slack * np.abs(y) / (1 + y)


def test_the_expected_models_can_explain(loaded: dict) -> None:
    names = explain.explainable(loaded)
    assert set(names) >= ALWAYS_EXPLAINABLE
    assert not NEVER_EXPLAINABLE & set(names)
    phishing = loaded["phishing"].info["algorithm"] in ("xgboost", "lightgbm")
    assert ("phishing" in names) == phishing
    assert names == sorted(names)
    assert explain.explainable(list(loaded.values())) == names


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_contributions_add_up_to_the_model_output(loaded: dict, frames: dict, explained: dict,
                                                  name: str) -> None:
    model = loaded[name]
    if not explain.can_explain(model):
        pytest.skip(f"{name} ({model.info['algorithm']}) has no exact method")
    columns = _columns(name, frames)
    expl = explained[name]
    n, features = len(frames[name]), model.encoder.output_names
    assert expl.contributions.shape == (n, len(features))
    assert expl.base.shape == (n,)
    assert expl.features == features
    assert np.isfinite(expl.contributions).all() and np.isfinite(expl.base).all()
    # Exact for the native model, within 1e-4 (+ float32 rounding of its probabilities).
    target, tol = _target(_native(model), columns)
    err = np.abs(expl.totals - target)
    assert (err <= tol).all(), f"{name}: worst row {int(np.argmax(err - tol))}, error {err.max()}"
    # And consistent with what the service answers, whichever runtime it serves.
    slack = REGRESSION_RTOL if model.spec.task == "regression" else PROBA_ATOL
    target, tol = _target(model, columns, slack)
    assert (np.abs(expl.totals - target) <= tol).all()
    # Not a constant: real attributions vary with the rows.
    assert expl.contributions.std(axis=0).max() > 0


@pytest.mark.parametrize("name", sorted(NEVER_EXPLAINABLE))
def test_models_without_an_exact_method_raise_not_explainable(loaded: dict, frames: dict,
                                                              name: str) -> None:
    model = loaded[name]
    assert not explain.can_explain(model)
    with pytest.raises(explain.NotExplainable) as info:
        explain.explain(model, _columns(name, frames), explainable_models=["fraud", "risk-flag"])
    err = info.value
    assert (err.status, err.grpc_code, err.reason) == (422, "INVALID_ARGUMENT", "not_explainable")
    assert err.detail == {"field": "model", "explainable": ["fraud", "risk-flag"]}
    assert name in err.message and "fraud, risk-flag" in err.message
    # Without the loaded list, the models whose algorithm always explains are named.
    with pytest.raises(explain.NotExplainable) as info:
        explain.explain(model, _columns(name, frames))
    assert set(info.value.detail["explainable"]) == ALWAYS_EXPLAINABLE


def test_spaces_say_what_the_contributions_add_up_to(loaded: dict) -> None:
    assert explain.space(loaded["fraud"]).startswith("log-odds of is_fraud=1")
    assert "margin" in explain.space(loaded["keystroke-xgb"])
    cyber = explain.space(loaded["cyber-threat"])
    assert cyber.startswith("log1p(local_infection)") and "inverse" in cyber


def test_engineered_features_are_reported_under_their_own_names(explained: dict,
                                                                frames: dict) -> None:
    expl = explained["fraud"]
    assert expl.features[-2:] == ["orig_balance_error", "dest_balance_error"]
    # The fraud model leans on the balance errors: they must carry real weight somewhere.
    assert np.abs(expl.contributions[:, -2:]).max() > 0.1
    row = frames["fraud"].iloc[0].to_dict()
    by_name = {r["feature"]: r for r in explain.reasons(expl, 0, row, len(expl.features))}
    expected = row["newbalance_orig"] + row["amount"] - row["oldbalance_org"]
    assert by_name["orig_balance_error"]["value"] == pytest.approx(expected, abs=1e-6)


def test_one_hot_country_is_summed_back_onto_country(loaded: dict, frames: dict,
                                                    explained: dict) -> None:
    model = loaded["cyber-threat"]
    columns = _columns("cyber-threat", frames)
    expl = explained["cyber-threat"]
    assert expl.features == list(SPECS["cyber-threat"].feature_names)  # one column per input
    # Changing only the country changes only the country's contribution.
    vocab = model.encoder.vocabularies["country"]
    other = np.where(columns["country"] == vocab[0], vocab[1], vocab[0]).astype(object)
    moved = explain.explain(model, {**columns, "country": other})
    j = expl.features.index("country")
    rest = [k for k in range(len(expl.features)) if k != j]
    np.testing.assert_allclose(moved.contributions[:, rest], expl.contributions[:, rest])
    assert not np.allclose(moved.contributions[:, j], expl.contributions[:, j])


def test_reasons_are_the_top_contributions_with_their_values(explained: dict,
                                                            frames: dict) -> None:
    expl = explained["risk-flag"]
    row = frames["risk-flag"].iloc[3].to_dict()
    top = explain.reasons(expl, 3, row)
    assert len(top) == explain.DEFAULT_TOP
    magnitudes = [abs(r["contribution"]) for r in top]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert magnitudes[0] == pytest.approx(np.abs(expl.contributions[3]).max())
    for r in top:
        assert r["value"] == row[r["feature"]]
        j = expl.features.index(r["feature"])
        assert r["contribution"] == pytest.approx(expl.contributions[3, j])
    everything = explain.reasons(expl, 3, row, len(expl.features))
    assert {r["feature"] for r in everything} == set(expl.features)


@pytest.mark.parametrize("top", [0, -1, 12, True, "3", 2.0, None])
def test_top_outside_the_feature_count_is_a_422_naming_top(explained: dict, top: object) -> None:
    expl = explained["risk-flag"]
    with pytest.raises(InvalidInput) as info:
        explain.reasons(expl, 0, {}, top)  # type: ignore[arg-type]
    assert info.value.field == "top" and info.value.status == 422
    assert "[1, 11]" in info.value.message


def test_reason_columns_for_csv(explained: dict, frames: dict) -> None:
    expl = explained["fraud"]
    cols = explain.reason_columns(expl)
    assert list(cols) == ["reason_1", "reason_2", "reason_3"]
    for i in (0, 17, ROWS - 1):
        expected = explain.reasons(expl, i, frames["fraud"].iloc[i].to_dict())
        for k, r in enumerate(expected):
            feature, value = cols[f"reason_{k + 1}"][i].split("=")
            assert feature == r["feature"]
            assert float(value) == pytest.approx(r["contribution"], rel=1e-5)
            assert value == f"{r['contribution']:.6g}"
    assert len(explain.reason_columns(expl, 1)) == 1


def test_a_split_batch_explains_each_part_like_the_whole(loaded: dict, frames: dict,
                                                         explained: dict) -> None:
    """The data plane splits one batched explanation per request with dataclasses.replace."""
    expl = explained["fraud"]
    part = dataclasses.replace(expl, base=expl.base[10:20], contributions=expl.contributions[10:20])
    row = frames["fraud"].iloc[12].to_dict()
    assert explain.reasons(part, 2, row, 9) == explain.reasons(expl, 12, row, 9)
    one = explain.explain(loaded["fraud"], {k: v[12:13] for k, v in
                                            _columns("fraud", frames).items()})
    np.testing.assert_allclose(one.contributions[0], expl.contributions[12], rtol=1e-6)
