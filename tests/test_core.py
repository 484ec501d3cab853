"""Pure unit tests of the shared package: drift math, validation, encoding, auth, batching."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import math
import types

import numpy as np
import pandas as pd
import pytest

from riskserve import drift
from riskserve.auth import KeyRing, presented_key, require_keys
from riskserve.core.batching import MicroBatcher
from riskserve.core.encoding import Encoder
from riskserve.core.scoring import Prediction
from riskserve.core.specs import CYBER_THREAT, FRAUD, RISK_FLAG, SPECS
from riskserve.core.validation import (
    CSV_READ_OPTIONS,
    columns_from_arrays,
    columns_from_frame,
    columns_from_records,
)
from riskserve.errors import ConfigurationError, InvalidInput
from riskserve.oip import codec
from riskserve.oip.codec import Tensor
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


def test_stacked_references_bin_like_each_reference() -> None:
    """The serving hot path bins every numeric feature at once: same bins, same counts."""
    rng = np.random.default_rng(5)
    refs = [drift.numeric_reference(rng.normal(size=500)),
            drift.numeric_reference(np.array([0.0, 0.5, 1.0] * 50)),
            drift.numeric_reference(rng.exponential(size=300), n_bins=4),
            drift.Reference("numeric", (1.0,), edges=(2.0,))]  # no min/max: never out of range
    x = np.stack([rng.normal(scale=3, size=64), rng.choice([0.0, 0.5, 1.0, 2.0], 64),
                  rng.exponential(scale=2, size=64), rng.normal(size=64)])
    x[0, 3] = x[2, 10] = np.nan
    x[1, :3] = [0.0, 0.5, 1.0]  # values equal to an edge
    stacked = drift.StackedReferences(refs)
    bins = stacked.assign(x)
    for i, ref in enumerate(refs):
        assert bins[i].tolist() == ref.assign(x[i]).tolist()
    assert stacked.out_of_range(x).tolist() == [r.out_of_range(x[i]) for i, r in
                                                enumerate(refs)]


def test_bin_of_one_value_is_assign() -> None:
    """The per-value binning small batches use gives assign's bin for every kind of value."""
    rng = np.random.default_rng(3)
    num = drift.numeric_reference(rng.normal(size=500))
    x = np.array([*rng.normal(size=50), *num.edges, num.min - 1, num.max + 1, np.nan])
    assert [num.bin_of(v) for v in x.tolist()] == num.assign(x).tolist()
    cat = drift.categorical_reference(np.array([f"c{i % 30}" for i in range(300)], dtype=object))
    values = np.array([*cat.categories, "never-seen", None], dtype=object)
    assert [cat.bin_of(v) for v in values.tolist()] == cat.assign(values).tolist()


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
    # Nullability is per feature: a fraud amount may not be hidden as a null.
    with pytest.raises(InvalidInput, match="null value") as err:
        columns_from_records(FRAUD, [GOOD_FRAUD, {**GOOD_FRAUD, "amount": None}])
    assert err.value.field == "amount" and err.value.detail["rows"] == [1]
    assert "not nullable" in err.value.message
    cyber = {"country": "France", "spam": 0.1, "ransomware": 0.0, "exploit": 0.0,
             "malicious_mail": 0.0, "network_attack": 0.0, "web_threat": None}
    with pytest.raises(InvalidInput, match="null value"):
        columns_from_records(CYBER_THREAT, [cyber])


def _per_feature(spec, rows):
    """The per-feature path alone (the fast plan switched off)."""
    from riskserve.core import validation

    plan = validation._plan(spec)
    original = plan.columns
    plan.columns = lambda records: None
    try:
        return columns_from_records(spec, rows)
    finally:
        plan.columns = original


@pytest.mark.parametrize("name", sorted(SPECS))
def test_fast_plan_gives_the_per_feature_columns(name: str) -> None:
    """The vectorised plan answers valid rows exactly as the per-feature checks do, feature
    order and dtypes included, for one row and for many."""
    from riskserve.core import validation
    from riskserve.devtools.samples import records, sample_frame

    spec = SPECS[name]
    rows = records(name, sample_frame(name, 25)[list(spec.feature_names)])
    for batch in (rows[:1], rows):
        fast = validation._plan(spec).columns(batch)
        assert fast is not None
        slow = _per_feature(spec, batch)
        assert list(fast) == list(slow)
        for feature, column in slow.items():
            assert fast[feature].dtype == column.dtype
            assert fast[feature].flags.c_contiguous
            assert fast[feature].tolist() == column.tolist()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_fast_tensor_plan_gives_the_per_feature_columns(name: str) -> None:
    """Decoded tensors (/v2, gRPC) take the same vectorised plan, with the same answer."""
    from riskserve.core import validation
    from riskserve.devtools.samples import records, sample_frame

    spec = SPECS[name]
    rows = records(name, sample_frame(name, 25)[list(spec.feature_names)])
    for batch in (rows[:1], rows):
        slow = _per_feature(spec, batch)
        arrays = {k: v.copy() for k, v in slow.items()}
        fast = validation._plan(spec).arrays(arrays, {})
        assert fast is not None
        assert list(fast) == list(slow)
        for feature, column in slow.items():
            assert fast[feature].dtype == column.dtype
            assert fast[feature].tolist() == column.tolist()


@pytest.mark.parametrize("change", [
    {"amount": [math.inf]}, {"amount": [math.nan]}, {"amount": [-0.5]}, {"step": [2.5]},
    {"type": ["WIRE"]}, {"type": [None]}, {"type": [1]}, {"amount": [1.0, 2.0]},
    {"amount": [[1.0]]}, {"unknown": [1.0]},
])
def test_fast_tensor_plan_leaves_every_invalid_tensor_to_the_per_feature_checks(
        change: dict) -> None:
    from riskserve.core import validation

    good = {k: np.asarray(v) if not isinstance(v, str) else np.asarray([v], dtype=object)
            for k, v in columns_from_records(FRAUD, [GOOD_FRAUD]).items()}
    arrays = {**good, **{k: np.asarray(v, dtype=object if k == "type" else None)
                         for k, v in change.items()}}
    assert validation._plan(FRAUD).arrays(arrays, {}) is None
    missing = dict(good)
    del missing["amount"]
    assert validation._plan(FRAUD).arrays(missing, {}) is None
    sent_null = {"amount": np.array([True])}
    assert validation._plan(FRAUD).arrays(good, sent_null) is None


@pytest.mark.parametrize("change", [
    {"amount": "1"}, {"amount": True}, {"amount": None}, {"amount": float("inf")},
    {"amount": float("nan")}, {"amount": -0.5}, {"step": 2.5}, {"step": 10**400},
    {"type": "WIRE"}, {"type": None}, {"type": 1},
])
def test_fast_plan_leaves_every_invalid_row_to_the_per_feature_checks(change: dict) -> None:
    from riskserve.core import validation

    assert validation._plan(FRAUD).columns([GOOD_FRAUD, {**GOOD_FRAUD, **change}]) is None
    missing = dict(GOOD_FRAUD)
    del missing["amount"]
    assert validation._plan(FRAUD).columns([missing]) is None


NULLABLE_FRAUD = dataclasses.replace(FRAUD, features=tuple(
    dataclasses.replace(f, nullable=f.name in ("step", "type")) for f in FRAUD.features))


def test_a_nullable_feature_takes_null_but_never_nan() -> None:
    cols = columns_from_records(NULLABLE_FRAUD, [{**GOOD_FRAUD, "step": None, "type": None}])
    assert np.isnan(cols["step"][0]) and cols["type"][0] is None
    assert NULLABLE_FRAUD.accepts_missing and not FRAUD.accepts_missing
    with pytest.raises(InvalidInput, match="not a finite number") as err:
        columns_from_records(NULLABLE_FRAUD, [{**GOOD_FRAUD, "step": math.nan}])
    assert err.value.field == "step"
    with pytest.raises(InvalidInput, match="null value"):  # the neighbour stays strict
        columns_from_records(NULLABLE_FRAUD, [{**GOOD_FRAUD, "amount": None}])


NON_FINITE = [math.inf, -math.inf, math.nan, float("1e999")]


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
def test_non_finite_json_numbers_are_refused(value: float) -> None:
    """What BentoML hands over for `1e999`, `Infinity`, `-Infinity` and `NaN` tokens."""
    rows = [GOOD_FRAUD, GOOD_FRAUD, {**GOOD_FRAUD, "amount": value}]
    with pytest.raises(InvalidInput) as err:
        columns_from_records(FRAUD, rows)
    assert err.value.field == "amount" and err.value.detail["rows"] == [2]
    assert err.value.detail["problem"] == "not a finite number"
    json.dumps(err.value.to_dict(), allow_nan=False)  # renderable as strict JSON: no 500


def test_integer_beyond_float64_is_refused_not_an_overflow() -> None:
    with pytest.raises(InvalidInput, match="number too large") as err:
        columns_from_records(FRAUD, [{**GOOD_FRAUD, "step": 10**400}])
    assert err.value.field == "step"
    json.dumps(err.value.to_dict(), allow_nan=False)


def read_csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), skipinitialspace=True, **CSV_READ_OPTIONS)


CSV_HEADER = ",".join(FRAUD.feature_names)


@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity", "nan", "NaN", "1e999", "-nan"])
def test_non_finite_csv_cells_are_refused(cell: str) -> None:
    csv = f"{CSV_HEADER}\n1,TRANSFER,181,181,0,0,0\n2,TRANSFER,{cell},181,0,0,0\n"
    with pytest.raises(InvalidInput) as err:
        columns_from_frame(FRAUD, read_csv(csv), offset=10)
    assert err.value.field == "amount" and err.value.detail["rows"] == [11]
    assert err.value.detail["problem"] == "not a finite number"
    json.dumps(err.value.to_dict(), allow_nan=False)


def test_only_a_blank_csv_cell_is_missing() -> None:
    frame = read_csv(f"{CSV_HEADER}\n1,TRANSFER,,181,0,0,0\n")
    with pytest.raises(InvalidInput, match="null value"):
        columns_from_frame(FRAUD, frame)
    frame = read_csv(f"{CSV_HEADER}\n,NULL,181,181,0,0,0\n")
    with pytest.raises(InvalidInput) as err:  # "NULL" is a word, not a missing value
        columns_from_frame(NULLABLE_FRAUD, frame)
    assert err.value.field == "type" and err.value.detail["got"] == "NULL"
    ok = columns_from_frame(NULLABLE_FRAUD, read_csv(f"{CSV_HEADER}\n,,181,181,0,0,0\n"))
    assert np.isnan(ok["step"][0]) and ok["type"][0] is None


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


@pytest.mark.parametrize(("env", "value", "says"), [
    ("RISKSERVE_GRPC_INTAKE_DEPTH", "abc", "valid integer"),
    ("RISKSERVE_GRPC_INTAKE_DEPTH", "0", "greater than or equal to 1"),
    ("RISKSERVE_HEAVY_NICE", "50", "less than or equal to 19"),
])
def test_a_setting_that_does_not_parse_is_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, env: str, value: str, says: str) -> None:
    from riskserve.settings import get_settings

    monkeypatch.setenv(env, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError) as err:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = err.value.message
    assert message.startswith(f"{env}={value!r}: ") and says in message, message
    assert "\n" not in message


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


# --- Open Inference Protocol codec: the same strict numbers on every protocol ---------------
def fraud_tensors(amount: Tensor, rows: int) -> list[Tensor]:
    """Valid columnar fraud tensors (JSON data) with `amount` replaced."""
    out = [amount]
    for f in FRAUD.features:
        if f.name != "amount":
            value = GOOD_FRAUD[f.name]
            out.append(Tensor(f.name, f.datatype, (rows,), [value] * rows))
    return out


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_v2_json_non_finite_tokens_are_refused(token: str) -> None:
    data = json.loads(f"[181.0, {token}]")  # what rest.py's json.loads hands the codec
    tensors = fraud_tensors(Tensor("amount", "FP64", (2,), data), 2)
    with pytest.raises(InvalidInput) as err:
        codec.to_columns(FRAUD, tensors, codec.check_tensors(FRAUD, tensors))
    assert err.value.field == "amount" and err.value.detail["rows"] == [1]
    assert err.value.detail["problem"] == "not a finite number"


def test_v2_json_null_is_missing_only_where_nullable() -> None:
    tensors = fraud_tensors(Tensor("amount", "FP64", (2,), [None, 181.0]), 2)
    with pytest.raises(InvalidInput, match="null value"):
        codec.to_columns(FRAUD, tensors, 2)
    step = Tensor("step", "INT64", (2,), [None, 3])
    tensors = [step, *(t for t in fraud_tensors(Tensor("amount", "FP64", (2,), [1.0, 2.0]), 2)
                       if t.name != "step")]
    cols = codec.to_columns(NULLABLE_FRAUD, tensors, 2)
    assert np.isnan(cols["step"][0]) and cols["step"][1] == 3
    # A NaN beside a null in the same array is still a NaN, not a second null.
    tensors[0] = Tensor("step", "FP64", (2,), [None, math.nan])
    with pytest.raises(InvalidInput, match="not a finite number"):
        codec.to_columns(NULLABLE_FRAUD, tensors, 2)


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=repr)
@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
def test_grpc_non_finite_contents_and_raw_bytes_are_refused(datatype: str, value: float,
                                                            raw: bool) -> None:
    values = np.array([181.0, value, 1.0], dtype=codec.NUMPY_DTYPES[datatype])
    data = values.tobytes() if raw else values.tolist()  # typed contents: a float sequence
    amount = Tensor("amount", datatype, (3,), data if raw else tuple(data), raw=raw)
    tensors = fraud_tensors(amount, 3)
    with pytest.raises(InvalidInput) as err:
        codec.to_columns(FRAUD, tensors, codec.check_tensors(FRAUD, tensors))
    assert err.value.field == "amount" and err.value.detail["rows"] == [1]
    json.dumps(err.value.to_dict(), allow_nan=False)


def test_v2_json_integer_beyond_float64_is_refused() -> None:
    tensors = fraud_tensors(Tensor("amount", "INT64", (1,), [10**400]), 1)
    with pytest.raises(InvalidInput, match="number too large"):
        codec.to_columns(FRAUD, tensors, 1)


def test_metadata_shows_nullability_per_input() -> None:
    # The attributes model_metadata reads of a ScoringModel.
    model = types.SimpleNamespace(spec=NULLABLE_FRAUD, classes=[0, 1],
                                  info={"framework": "xgboost"})
    meta = codec.model_metadata(model, ["v1"], parameters=True)
    assert {t["name"]: t["parameters"]["nullable"] for t in meta["inputs"]} == {
        f.name: f.name in ("step", "type") for f in FRAUD.features}
    # The gRPC TensorMetadata message has only name, datatype and shape.
    plain = codec.model_metadata(model, ["v1"])
    assert all(set(t) == {"name", "datatype", "shape"} for t in plain["inputs"])


def _tensor_variants() -> list[list[Tensor]]:
    """Valid fraud tensors and one-change variants of them: every way the fast contract
    check could wrongly accept (a duplicate, a missing or unknown input, a datatype, a shape,
    rows that differ or are zero)."""
    good = fraud_tensors(Tensor("amount", "FP64", (2,), [1.0, 2.0]), 2)
    out = [good, [*good[:-1]], [*good, good[0]], [*good[:-1], good[0]],
           [*good[:-1], Tensor("x", "FP64", (2,), [1, 2])]]
    for i, t in enumerate(good):
        for change in ({"datatype": "BYTES" if t.datatype != "BYTES" else "FP64"},
                       {"shape": (2, 1)}, {"shape": (1, 2)}, {"shape": (3,)}, {"shape": (0,)},
                       {"shape": (2, 1, 1)}, {"shape": ()}, {"name": t.name.upper()}):
            variant = list(good)
            variant[i] = dataclasses.replace(t, **change)
            out.append(variant)
    out.append([dataclasses.replace(t, shape=(2, 1)) for t in good])
    return out


@pytest.mark.parametrize("tensors", _tensor_variants())
def test_fast_contract_check_accepts_only_what_the_full_check_accepts(
        tensors: list[Tensor]) -> None:
    fast = codec._conforming_rows(FRAUD, tensors)
    try:
        full: int | None = codec._check_each(FRAUD, tensors)
    except InvalidInput:
        full = None
    assert fast is None or fast == full
