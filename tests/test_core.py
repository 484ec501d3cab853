"""Pure unit tests of the shared package: drift math, validation, encoding, auth, batching."""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np
import pandas as pd
import pytest

from riskserve import drift
from riskserve.auth import KeyRing, presented_key, require_keys
from riskserve.core.batching import MicroBatcher
from riskserve.core.encoding import Encoder
from riskserve.core.scoring import Prediction
from riskserve.core.specs import CYBER_THREAT, FRAUD, RISK_FLAG, SPECS
from riskserve.core.validation import columns_from_arrays, columns_from_frame, columns_from_records
from riskserve.errors import ConfigurationError, InvalidInput
from riskserve.settings import Settings


# --- drift ---------------------------------------------------------------------------------
def test_numeric_reference_bins_sum_to_one_and_match_quantiles() -> None:
    x = np.random.default_rng(0).normal(size=10_000)
    ref = drift.numeric_reference(x)
    assert ref.n_bins == 11 and ref.proportions[-1] == 0.0  # last: above the training max
    assert sum(ref.proportions) == pytest.approx(1.0)
    assert all(p == pytest.approx(0.1, abs=0.01) for p in ref.proportions[:-1])
    assert drift.psi(ref.proportions, ref.counts(x)) < 0.01


def test_psi_detects_shift_and_floors_empty_bins() -> None:
    rng = np.random.default_rng(1)
    ref = drift.numeric_reference(rng.normal(size=5_000))
    same = drift.psi(ref.proportions, ref.counts(rng.normal(size=5_000)))
    shifted = drift.psi(ref.proportions, ref.counts(rng.normal(1.0, 1, size=5_000)))
    assert same < 0.02 < 0.25 < shifted
    assert np.isfinite(drift.psi([1.0, 0.0], [0, 10]))


def test_discrete_feature_reference_and_out_of_range() -> None:
    x = np.array([0.0, 0.5, 1.0] * 100)
    ref = drift.numeric_reference(x)
    assert ref.edges == (0.0, 0.5, 1.0)
    assert ref.proportions[-1] == 0.0  # above the training max: only out-of-range values
    assert ref.out_of_range(np.array([1.5, 0.5, -1.0])) == 2


def test_categorical_reference_caps_bins_and_groups_the_rest() -> None:
    values = np.array([f"city{i % 50}" for i in range(1_000)], dtype=object)
    ref = drift.categorical_reference(values)
    assert ref.n_bins == drift.MAX_CATEGORIES
    assert sum(ref.proportions) == pytest.approx(1.0)
    bins = ref.assign(np.array(["city1", "never-seen", None], dtype=object))
    assert bins[1] == ref.n_bins - 1 and bins[2] == -1


def test_reference_round_trips_json() -> None:
    ref = drift.numeric_reference(np.arange(100.0))
    assert drift.Reference.from_json(ref.to_json()) == ref


# --- validation ----------------------------------------------------------------------------
GOOD_FRAUD = {"step": 1, "type": "TRANSFER", "amount": 181.0, "oldbalance_org": 181.0,
              "newbalance_orig": 0.0, "oldbalance_dest": 0.0, "newbalance_dest": 0.0}


def test_records_to_columns_types() -> None:
    cols = columns_from_records(FRAUD, [GOOD_FRAUD, {**GOOD_FRAUD, "type": "PAYMENT"}])
    assert cols["amount"].dtype == np.float64 and cols["type"].dtype == object
    assert cols["type"].tolist() == ["TRANSFER", "PAYMENT"]


@pytest.mark.parametrize(("change", "field", "fragment"), [
    ({"amount": "lots"}, "amount", "a number"),
    ({"amount": -1}, "amount", "[0, 1e+12]"),
    ({"step": 1.5}, "step", "an integer"),
    ({"type": "WIRE"}, "type", "'CASH_IN'"),
    ({"type": 3}, "type", "one of"),
    ({"amount": True}, "amount", "a number"),
    ({"bogus": 1}, "bogus", "no such feature"),
])
def test_bad_records_name_the_field(change: dict, field: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        columns_from_records(FRAUD, [GOOD_FRAUD, {**GOOD_FRAUD, **change}])
    assert err.value.field == field
    assert fragment in err.value.message
    if field != "bogus":
        assert err.value.detail["rows"] == [1]


def test_missing_field_and_null_policy() -> None:
    row = dict(GOOD_FRAUD)
    del row["amount"]
    with pytest.raises(InvalidInput, match="field is missing"):
        columns_from_records(FRAUD, [row])
    # Tree models accept null (NaN); the Ridge model does not.
    assert np.isnan(columns_from_records(FRAUD, [{**GOOD_FRAUD, "amount": None}])["amount"][0])
    cyber = {"country": "France", "spam": 0.1, "ransomware": 0.0, "exploit": 0.0,
             "malicious_mail": 0.0, "network_attack": 0.0, "web_threat": None}
    with pytest.raises(InvalidInput, match="null value"):
        columns_from_records(CYBER_THREAT, [cyber])


def test_frame_validation_reports_file_rows() -> None:
    frame = pd.DataFrame([GOOD_FRAUD] * 3).astype({"amount": object})
    frame.loc[2, "amount"] = "x"
    with pytest.raises(InvalidInput) as err:
        columns_from_frame(FRAUD, frame, offset=1000)
    assert err.value.detail["rows"] == [1002]


def test_arrays_validation_checks_lengths_and_names() -> None:
    arrays = {k: np.array([v]) for k, v in GOOD_FRAUD.items()}
    assert columns_from_arrays(FRAUD, arrays)["amount"][0] == 181.0
    with pytest.raises(InvalidInput, match="same length"):
        columns_from_arrays(FRAUD, {**arrays, "amount": np.array([1.0, 2.0])})


# --- encoding ------------------------------------------------------------------------------
def test_target_encoding_smooths_and_defaults_unseen() -> None:
    frame = pd.DataFrame({f.name: ["x"] * 40 if f.is_category else [30] * 40
                          for f in RISK_FLAG.features})
    frame["married"] = "single"
    frame["house_ownership"] = "rented"
    frame["car_ownership"] = "no"
    frame.loc[:19, "city"] = "A"
    frame.loc[20:, "city"] = "B"
    y = np.array([1] * 20 + [0] * 20)
    enc = Encoder.fit(RISK_FLAG, frame, y)
    cols = columns_from_frame(RISK_FLAG, frame.iloc[[0, 20]].assign(city=["A", "Nowhere"]))
    x = enc.transform(cols)
    j = RISK_FLAG.feature_names.index("city")
    assert 0.5 < x[0, j] < 1.0  # pulled towards the 0.5 prior by smoothing
    assert x[1, j] == pytest.approx(0.5)  # unseen city: the prior
    assert Encoder.from_json(RISK_FLAG, enc.to_json()).to_json() == enc.to_json()


def test_fraud_derived_features() -> None:
    enc = Encoder.fit(FRAUD, pd.DataFrame([GOOD_FRAUD]))
    x = enc.transform(columns_from_records(FRAUD, [GOOD_FRAUD]))
    assert enc.output_names[-2:] == ["orig_balance_error", "dest_balance_error"]
    assert x[0, -2] == 0.0 and x[0, -1] == 181.0


# --- auth ----------------------------------------------------------------------------------
def test_keyring_plain_and_hashed(tmp_path) -> None:
    hashed = "sha256:" + hashlib.sha256(b"second").hexdigest()
    keyfile = tmp_path / "keys"
    keyfile.write_text("# comment\nthird\n")
    ring = KeyRing.from_settings(Settings(api_keys=f"first, {hashed}",
                                          api_keys_file=str(keyfile)))
    assert len(ring) == 3
    assert ring.check("first") and ring.check("second") and ring.check("third")
    assert not ring.check("fourth") and not ring.check("")


def test_fail_secure_without_keys() -> None:
    with pytest.raises(ConfigurationError, match="no API keys configured"):
        require_keys(Settings(api_keys=""))
    assert require_keys(Settings(api_keys="", auth_disabled=True)) is None
    with pytest.raises(ConfigurationError, match="64 hex"):
        KeyRing.from_settings(Settings(api_keys="sha256:abc"))


def test_presented_key_header_forms() -> None:
    assert presented_key({"x-api-key": " k1 "}) == "k1"
    assert presented_key({"authorization": "Bearer k2"}) == "k2"
    assert presented_key({"authorization": "Basic k3"}) is None
    assert presented_key({}) is None


# --- batching ------------------------------------------------------------------------------
def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    calls: list[int] = []

    def predict(cols: dict[str, np.ndarray]) -> Prediction:
        calls.append(len(cols["x"]))
        return Prediction(cols["x"] * 2)

    async def run() -> list[Prediction]:
        b = MicroBatcher(predict, max_rows=64)
        return await asyncio.gather(*(b.submit({"x": np.array([float(i)] * 3)}, 3)
                                      for i in range(20)))

    results = asyncio.run(run())
    assert [r.predictions.tolist() for r in results] == [[2.0 * i] * 3 for i in range(20)]
    assert sum(calls) == 60 and len(calls) < 20  # rows were merged into fewer model calls
    assert max(calls) <= 64


def test_spec_names_are_unique_and_features_ordered() -> None:
    assert len(SPECS) == 7
    for spec in SPECS.values():
        assert len(set(spec.feature_names)) == len(spec.feature_names)
