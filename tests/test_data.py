"""Training data: each generator follows its real data set's layout and published statistics."""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from riskserve.core.specs import CYBER_THREAT, KEYSTROKE_RF, SPECS
from riskserve.core.validation import columns_from_frame
from training import cyber_threat as cyber_threat_training
from training.data import cyber_threat, fraud, keystroke, phishing, risk_flag

GENERATORS: dict[str, tuple[ModuleType, int]] = {
    # module, a small n_rows that still exercises every code path
    "cyber_threat": (cyber_threat, 3_000),
    "keystroke": (keystroke, 160),
    "risk_flag": (risk_flag, 3_000),
    "fraud": (fraud, 5_000),
}
DEFAULT_SIZES = {
    "cyber_threat": cyber_threat.DEFAULT_N_ROWS,
    "keystroke": keystroke.N_USERS * keystroke.REPS,
    "risk_flag": risk_flag.DEFAULT_N_ROWS,
    "fraud": fraud.DEFAULT_N_ROWS,
}
MAX_SECONDS = 2.0  # the brief: 200k rows well under 2 s, so a loop per row fails this


def share(mask: pd.Series) -> float:
    return float(mask.mean())


# ---------------------------------------------------------------- every generator


@pytest.mark.parametrize("name", GENERATORS)
def test_columns_are_the_real_raw_layout(name: str) -> None:
    module, n = GENERATORS[name]
    frame = module.generate(n, seed=0)
    assert tuple(frame.columns) == module.RAW_COLUMNS
    assert module.LABEL_COLUMN in module.RAW_COLUMNS
    assert len(frame) == n


@pytest.mark.parametrize("name", GENERATORS)
def test_same_seed_gives_identical_frame(name: str) -> None:
    module, n = GENERATORS[name]
    pd.testing.assert_frame_equal(module.generate(n, seed=7), module.generate(n, seed=7))


@pytest.mark.parametrize("name", GENERATORS)
def test_different_seed_gives_different_frame(name: str) -> None:
    module, n = GENERATORS[name]
    assert not module.generate(n, seed=1).equals(module.generate(n, seed=2))


@pytest.mark.parametrize("name", GENERATORS)
def test_default_size_is_fast_and_as_documented(name: str) -> None:
    module, _ = GENERATORS[name]
    start = time.perf_counter()
    frame = module.generate()
    elapsed = time.perf_counter() - start
    assert len(frame) == DEFAULT_SIZES[name]
    assert elapsed < MAX_SECONDS, f"{name} took {elapsed:.2f} s"


# ---------------------------------------------------------------- phishing (real data)


def test_phishing_is_the_real_river_sample() -> None:
    frame = phishing.load()
    assert frame.shape == (phishing.N_ROWS, len(phishing.RAW_COLUMNS)) == (1_250, 10)
    assert tuple(frame.columns) == phishing.RAW_COLUMNS
    assert int(frame[phishing.LABEL_COLUMN].sum()) == phishing.N_POSITIVE == 548
    assert not frame.isna().any().any()


def test_phishing_values_are_ternary_or_binary() -> None:
    frame = phishing.load()
    features = frame.drop(columns=phishing.LABEL_COLUMN)
    assert set(np.unique(features.to_numpy())) <= {0.0, 0.5, 1.0}
    assert set(frame["ip_in_url"].unique()) <= {0, 1}


def test_phishing_missing_river_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec: Callable = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "river" else real_find_spec(name, *a),
    )
    with pytest.raises(FileNotFoundError, match=r"pip install river==0\.26\.1 --no-deps"):
        phishing.load()


# ---------------------------------------------------------------- cyber threat


@pytest.fixture(scope="module")
def cyber() -> pd.DataFrame:
    return cyber_threat.generate()


@pytest.mark.parametrize("column", cyber_threat.RATE_COLUMNS)
def test_cyber_quartiles_within_factor_1_5_of_published(cyber: pd.DataFrame, column: str) -> None:
    stats = cyber_threat.STATS[column]
    observed = cyber[column].quantile([0.25, 0.5, 0.75]).to_numpy()
    ratio = observed / np.array([stats.p25, stats.p50, stats.p75])
    assert np.all((ratio > 1 / 1.5) & (ratio < 1.5)), ratio


@pytest.mark.parametrize("column", cyber_threat.RATE_COLUMNS)
def test_cyber_values_within_published_range(cyber: pd.DataFrame, column: str) -> None:
    stats = cyber_threat.STATS[column]
    values = cyber[column].dropna()
    assert values.min() >= stats.min and values.max() <= stats.max


@pytest.mark.parametrize("column", cyber_threat.RATE_COLUMNS)
def test_cyber_missing_share_matches_real_valid_n(cyber: pd.DataFrame, column: str) -> None:
    expected = 1 - cyber_threat.STATS[column].valid_n / cyber_threat.REAL_N_ROWS
    assert abs(share(cyber[column].isna()) - expected) < 0.02


def test_cyber_on_demand_scan_tracks_local_infection(cyber: pd.DataFrame) -> None:
    corr = cyber["On Demand Scan"].corr(cyber["Local Infection"])
    assert abs(corr - cyber_threat.PUBLISHED_CORR_ODS_LOCAL) < 0.05


def test_cyber_countries_and_days(cyber: pd.DataFrame) -> None:
    assert len(cyber_threat.COUNTRIES) == len(set(cyber_threat.COUNTRIES)) == 225
    assert set(cyber["Country"]) <= set(cyber_threat.COUNTRIES)
    days = pd.to_datetime(cyber["AttackDate"])
    assert days.nunique() == cyber_threat.SPAN_DAYS - cyber_threat.MISSED_DAYS == 420
    assert days.min() >= pd.Timestamp("2022-10-01") and days.max() <= pd.Timestamp("2023-12-31")
    assert not cyber.duplicated(["AttackDate", "Country"]).any()
    # Not every country every day: a day has fewer rows than there are countries.
    assert cyber.groupby("AttackDate").size().max() < len(cyber_threat.COUNTRIES)


def test_cyber_rank_is_per_day_descending(cyber: pd.DataFrame) -> None:
    day = cyber[cyber["AttackDate"] == cyber["AttackDate"].iloc[0]]
    for column in cyber_threat.RATE_COLUMNS:
        rank = day[f"Rank {column}"]
        assert rank.isna().equals(day[column].isna())
        top = day.loc[rank == 1, column]
        assert len(top) >= 1 and (top == day[column].max()).all()
        assert rank.max() <= day[column].notna().sum()


def test_cyber_ridge_learns_local_infection(cyber: pd.DataFrame) -> None:
    # The reference trainer: log1p of the kept rates + one-hot Country, scaled Ridge, no NaN rows.
    rates = ["Spam", "Ransomware", "Exploit", "Malicious Mail", "Network Attack", "Web Threat"]
    assert len(rates) == len(CYBER_THREAT.features) - 1
    rows = cyber[["Country", *rates, cyber_threat.LABEL_COLUMN]].dropna()
    x = pd.concat(
        [np.log1p(rows[rates]), pd.get_dummies(rows["Country"], drop_first=True, dtype=float)],
        axis=1,
    )
    y = np.log1p(rows[cyber_threat.LABEL_COLUMN])
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    model = make_pipeline(StandardScaler(), Ridge(alpha=0.21544346900318823)).fit(x_train, y_train)
    assert model.score(x_test, y_test) > 0.5


def test_cyber_too_many_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="n_rows"):
        cyber_threat.generate(225 * 420 + 1)


# ---------------------------------------------------------------- keystroke


@pytest.fixture(scope="module")
def keys() -> pd.DataFrame:
    return keystroke.generate()


def test_keystroke_layout_is_110_users_by_8_reps(keys: pd.DataFrame) -> None:
    assert keys.shape == (keystroke.N_USERS * keystroke.REPS, 1 + 2 * keystroke.N_KEYS)
    counts = keys[keystroke.LABEL_COLUMN].value_counts()
    assert len(counts) == 110 and (counts == 8).all()
    timing = keys[[*keystroke.PRESS_COLUMNS, *keystroke.RELEASE_COLUMNS]]
    assert all(pd.api.types.is_integer_dtype(t) for t in timing.dtypes)


def test_keystroke_presses_start_at_zero_and_increase(keys: pd.DataFrame) -> None:
    press = keys[list(keystroke.PRESS_COLUMNS)].to_numpy()
    assert (press[:, 0] == 0).all()
    assert (np.diff(press, axis=1) > 0).all()


def test_keystroke_holds_are_plausible_ms(keys: pd.DataFrame) -> None:
    hold = keys[list(keystroke.RELEASE_COLUMNS)].to_numpy() - keys[
        list(keystroke.PRESS_COLUMNS)
    ].to_numpy()
    assert hold.min() > 0 and hold.max() < 500
    low, high = np.percentile(hold, [5, 95])
    assert keystroke.HOLD_CLIP_MS[0] - 10 <= low and high <= keystroke.HOLD_CLIP_MS[1]
    assert abs(np.median(hold) - keystroke.HOLD_MEAN_MS) < 15


def test_keystroke_pause_and_hard_digraphs_make_a_tail(keys: pd.DataFrame) -> None:
    press_press = np.diff(keys[list(keystroke.PRESS_COLUMNS)].to_numpy(), axis=1)
    assert abs(np.median(press_press) - keystroke.PP_MEDIAN_MS) < 40
    assert np.percentile(press_press, 99) > 2 * keystroke.PP_MEDIAN_MS
    assert press_press.max() > keystroke.PAUSE_MS[0]


def test_keystroke_features_shape_and_columns(keys: pd.DataFrame) -> None:
    derived = keystroke.features(keys)
    assert tuple(derived.columns) == (*KEYSTROKE_RF.feature_names, KEYSTROKE_RF.label)
    assert derived.shape == (len(keys), 9)
    assert not derived.isna().any().any()


def test_keystroke_features_match_hand_computation(keys: pd.DataFrame) -> None:
    row = keys.iloc[123]
    press = [int(row[c]) for c in keystroke.PRESS_COLUMNS]
    release = [int(row[c]) for c in keystroke.RELEASE_COLUMNS]
    hand = {
        "ht": [r - p for p, r in zip(press, release, strict=True)],
        "ppt": [press[i] - press[i - 1] for i in range(1, 13)],
        "rrt": [release[i] - release[i - 1] for i in range(1, 13)],
        "rpt": [press[i] - release[i - 1] for i in range(1, 13)],
    }
    derived = keystroke.features(keys).iloc[123]
    for name, values in hand.items():
        assert derived[f"{name}_mean"] == pytest.approx(statistics.fmean(values))
        assert derived[f"{name}_std"] == pytest.approx(statistics.pstdev(values))
    assert derived["user"] == row["user"]


def test_keystroke_size_keywords() -> None:
    assert keystroke.generate(n_users=5, reps=3).shape[0] == 15
    assert keystroke.generate(20)["user"].nunique() == 3  # 8 + 8 + 4 rows


def test_keystroke_users_are_separable(keys: pd.DataFrame) -> None:
    derived = keystroke.features(keys)
    x, y = derived[list(keystroke.FEATURE_COLUMNS)], derived["user"]
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0
    )
    model = RandomForestClassifier(200, random_state=0, n_jobs=-1).fit(x_train, y_train)
    # Chance is 1/110 < 1 %; the generator gives ~35-40 %.
    assert model.score(x_test, y_test) > 0.25


# ---------------------------------------------------------------- risk flag


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return risk_flag.generate()


def test_risk_flag_positive_share(loans: pd.DataFrame) -> None:
    assert abs(loans[risk_flag.LABEL_COLUMN].mean() - risk_flag.POSITIVE_SHARE) < 0.01
    assert set(loans[risk_flag.LABEL_COLUMN].unique()) == {0, 1}


@pytest.mark.parametrize(
    ("column", "names", "expected"),
    [
        ("Profession", risk_flag.PROFESSIONS, 51),
        ("CITY", risk_flag.CITIES, 317),
        ("STATE", risk_flag.STATES, 29),
    ],
)
def test_risk_flag_cardinalities(
    loans: pd.DataFrame, column: str, names: tuple[str, ...], expected: int
) -> None:
    assert len(set(names)) == len(names) == expected
    assert loans[column].nunique() == expected
    assert set(loans[column]) <= set(names)


def test_risk_flag_each_city_in_one_state(loans: pd.DataFrame) -> None:
    assert (loans.groupby("CITY")["STATE"].nunique() == 1).all()
    assert (loans["CITY"].map(risk_flag.STATE_OF_CITY) == loans["STATE"]).all()


@pytest.mark.parametrize(
    ("column", "bounds"),
    [
        ("Income", risk_flag.INCOME_RANGE),
        ("Age", risk_flag.AGE_RANGE),
        ("Experience", risk_flag.EXPERIENCE_RANGE),
        ("CURRENT_JOB_YRS", risk_flag.JOB_YRS_RANGE),
        ("CURRENT_HOUSE_YRS", risk_flag.HOUSE_YRS_RANGE),
    ],
)
def test_risk_flag_ranges(loans: pd.DataFrame, column: str, bounds: tuple[int, int]) -> None:
    values = loans[column]
    assert pd.api.types.is_integer_dtype(values)
    assert values.min() >= bounds[0] and values.max() <= bounds[1]
    # Roughly uniform: both ends of the range are reached (within 2 % of its width).
    width = bounds[1] - bounds[0]
    assert values.min() <= bounds[0] + 0.02 * width and values.max() >= bounds[1] - 0.02 * width


def test_risk_flag_job_years_within_experience(loans: pd.DataFrame) -> None:
    assert (loans["CURRENT_JOB_YRS"] <= loans["Experience"]).all()


@pytest.mark.parametrize(
    ("column", "counts"),
    [
        ("Married/Single", risk_flag.MARRIED_COUNTS),
        ("House_Ownership", risk_flag.HOUSE_COUNTS),
        ("Car_Ownership", risk_flag.CAR_COUNTS),
    ],
)
def test_risk_flag_category_shares(loans: pd.DataFrame, column: str, counts: dict) -> None:
    observed = loans[column].value_counts(normalize=True)
    assert set(observed.index) == set(counts)
    total = sum(counts.values())
    for value, count in counts.items():
        assert abs(observed[value] - count / total) < 0.03, value


def test_risk_flag_ids_are_unique_sequence(loans: pd.DataFrame) -> None:
    assert (loans["Id"].to_numpy() == np.arange(1, len(loans) + 1)).all()


def test_risk_flag_risk_sticks_to_repeated_profiles(loans: pd.DataFrame) -> None:
    # A profile = all fields but the jittered ones; 10-25 copies each (the last may be short).
    key = [
        "Age", "Experience", "Married/Single", "House_Ownership", "Car_Ownership", "Profession",
        "CITY",
    ]
    label = loans[risk_flag.LABEL_COLUMN]
    group = loans.groupby(key)[risk_flag.LABEL_COLUMN]
    size, total = group.transform("size"), group.transform("sum")
    assert share(size >= risk_flag.REPLICATES[0]) > 0.95
    # Leave-one-out risk of a row's siblings predicts it far above the base rate...
    sibling_risk = (total - label) / (size - 1).clip(lower=1)
    assert average_precision_score(label, sibling_risk) > 0.45
    # ...while a linear model on the raw columns stays close to it.
    x = loans.drop(columns=["Id", risk_flag.LABEL_COLUMN]).apply(
        lambda c: c.astype("category").cat.codes if not pd.api.types.is_numeric_dtype(c) else c
    )
    x_train, x_test, y_train, y_test = train_test_split(
        x, label, test_size=0.25, stratify=label, random_state=0
    )
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x_train, y_train)
    assert average_precision_score(y_test, linear.predict_proba(x_test)[:, 1]) < 0.25


# ---------------------------------------------------------------- fraud


@pytest.fixture(scope="module")
def payments() -> pd.DataFrame:
    return fraud.generate()


@pytest.fixture(scope="module")
def fraud_heavy() -> pd.DataFrame:
    # Many fraud rows, so per-fraud statistics are tight.
    return fraud.generate(40_000, seed=3, fraud_rate=0.2)


def test_fraud_rate_is_as_requested(payments: pd.DataFrame, fraud_heavy: pd.DataFrame) -> None:
    assert abs(payments["isFraud"].mean() - fraud.FRAUD_RATE) <= 2 / len(payments)
    assert abs(fraud_heavy["isFraud"].mean() - 0.2) <= 2 / len(fraud_heavy)
    assert fraud.generate(2_000, fraud_rate=0.0)["isFraud"].sum() == 0


def test_fraud_only_in_transfer_and_cash_out(fraud_heavy: pd.DataFrame) -> None:
    kinds = fraud_heavy.loc[fraud_heavy["isFraud"] == 1, "type"].value_counts()
    assert set(kinds.index) == set(fraud.FRAUD_TYPES)
    assert kinds["TRANSFER"] == kinds["CASH_OUT"]


def test_fraud_drains_origin_and_respects_cap(fraud_heavy: pd.DataFrame) -> None:
    rows = fraud_heavy[fraud_heavy["isFraud"] == 1]
    assert (rows["amount"] > 0).all() and (rows["amount"] <= fraud.FRAUD_AMOUNT_CAP).all()
    np.testing.assert_allclose(
        rows["newbalanceOrig"], rows["oldbalanceOrg"] - rows["amount"], atol=0.011
    )
    drained = (rows["newbalanceOrig"] == 0) | (rows["amount"] == fraud.FRAUD_AMOUNT_CAP)
    assert drained.all()
    assert share(rows["newbalanceOrig"] == 0) > 0.9


def test_fraud_pairs_are_transfer_then_cash_out(fraud_heavy: pd.DataFrame) -> None:
    transfer = np.flatnonzero((fraud_heavy["isFraud"] == 1) & (fraud_heavy["type"] == "TRANSFER"))
    first, second = fraud_heavy.iloc[transfer], fraud_heavy.iloc[transfer + 1]
    assert (second["type"].to_numpy() == "CASH_OUT").all()
    assert (second["isFraud"].to_numpy() == 1).all()
    assert (second["amount"].to_numpy() == first["amount"].to_numpy()).all()
    assert (second["step"].to_numpy() == first["step"].to_numpy()).all()
    assert (second["nameOrig"].to_numpy() == first["nameDest"].to_numpy()).all()


def test_fraud_amount_mean_near_published(fraud_heavy: pd.DataFrame) -> None:
    amount = fraud_heavy.loc[fraud_heavy["isFraud"] == 1, "amount"]
    assert 1.1e6 < amount.mean() < 1.9e6  # published ~1.47 M


def test_fraud_spread_evenly_over_steps(fraud_heavy: pd.DataFrame) -> None:
    steps = fraud_heavy.loc[fraud_heavy["isFraud"] == 1, "step"]
    assert steps.min() >= 1 and steps.max() <= fraud.N_STEPS
    assert abs(share(steps <= fraud.N_STEPS // 2) - 0.5) < 0.05
    genuine = fraud_heavy.loc[fraud_heavy["isFraud"] == 0, "step"]
    assert share(genuine <= fraud.N_STEPS // 2) > 0.7  # genuine volume is front-loaded


def test_fraud_type_shares(payments: pd.DataFrame) -> None:
    observed = payments["type"].value_counts(normalize=True)
    for kind, count in fraud.TYPE_COUNTS.items():
        assert abs(observed[kind] - count / fraud.REAL_N_ROWS) < 0.01, kind


def test_fraud_step_and_amount_quartiles(payments: pd.DataFrame) -> None:
    steps = payments["step"].quantile([0.25, 0.5, 0.75]).to_numpy()
    np.testing.assert_allclose(steps, fraud.STEP_QUARTILES, rtol=0.1)
    amounts = payments["amount"].quantile([0.25, 0.5, 0.75]).to_numpy()
    np.testing.assert_allclose(amounts, [13_390, 74_872, 208_722], rtol=0.2)
    assert payments["amount"].max() <= fraud.AMOUNT_MAX


def test_fraud_hour_cycle(payments: pd.DataFrame) -> None:
    hour = payments.loc[payments["isFraud"] == 0, "step"] % 24
    shares = hour.value_counts(normalize=True).reindex(range(24), fill_value=0.0)
    assert shares.loc[3:6].sum() < 0.005
    assert abs(shares[19] - 0.129) < 0.015 and abs(shares[18] - 0.106) < 0.015


def test_fraud_merchants_only_for_payments(payments: pd.DataFrame) -> None:
    merchant = payments["nameDest"].str.startswith("M")
    assert (merchant == (payments["type"] == "PAYMENT")).all()
    assert payments["nameOrig"].str.fullmatch(r"C\d{9,10}").all()
    assert (payments.loc[merchant, ["oldbalanceDest", "newbalanceDest"]] == 0).all().all()


def test_fraud_genuine_balances_update_consistently(payments: pd.DataFrame) -> None:
    rows = payments[payments["isFraud"] == 0]
    cash_in = rows["type"] == "CASH_IN"
    expected_orig = np.where(
        cash_in,
        rows["oldbalanceOrg"] + rows["amount"],
        (rows["oldbalanceOrg"] - rows["amount"]).clip(lower=0),
    )
    np.testing.assert_allclose(rows["newbalanceOrig"], expected_orig, atol=0.011)
    assert payments[["oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest"]].ge(
        0
    ).all().all()
    # Published: newbalanceOrig's median is 0 and oldbalanceOrg's is 14,208.
    assert payments["newbalanceOrig"].median() == 0
    assert 14_208 / 1.5 < payments["oldbalanceOrg"].median() < 14_208 * 1.5


def test_fraud_dest_zero_quirk(payments: pd.DataFrame, fraud_heavy: pd.DataFrame) -> None:
    def quirk(rows: pd.DataFrame) -> pd.Series:
        return (
            (rows["oldbalanceDest"] == 0)
            & (rows["newbalanceDest"] == 0)
            & (rows["amount"] > 0)
            & (rows["type"] != "PAYMENT")
        )

    fraud_rows = fraud_heavy[fraud_heavy["isFraud"] == 1]
    assert abs(share(quirk(fraud_rows)) - fraud.DEST_ZERO_QUIRK["fraud"]) < 0.05
    genuine = payments[payments["isFraud"] == 0]
    assert 0.0002 < share(quirk(genuine)) < 0.0012  # published ~0.06 %


def test_fraud_flagged_follows_documented_rule(
    payments: pd.DataFrame, fraud_heavy: pd.DataFrame
) -> None:
    for frame in (payments, fraud_heavy):
        flagged = frame[frame["isFlaggedFraud"] == 1]
        assert (flagged["type"] == "TRANSFER").all()
        assert (flagged["amount"] > fraud.FLAG_THRESHOLD).all()
        assert (flagged["isFraud"] == 1).all()
    assert payments["isFlaggedFraud"].sum() <= 3  # 16 in 6.36 M rows: rare
    assert fraud_heavy["isFlaggedFraud"].sum() >= 1


# ---------------------------------------------------------------- generators vs the contract

FAMILIES = sorted({spec.family: name for name, spec in SPECS.items()}.items())


@pytest.mark.parametrize(("family", "name"), FAMILIES)
def test_training_data_leaves_blank_only_nullable_features(family: str, name: str) -> None:
    """What a trainer fits on is what serving accepts: blanks only in `Feature.nullable`
    columns (none today), so the strict serving validator takes every training row."""
    from training import pipeline
    from training.__main__ import family_of

    prepared = pipeline.prepare(family_of(name), None, True, 0)
    spec = SPECS[name]
    blank = {f.name for f in spec.features if prepared.frame[f.name].isna().any()}
    assert blank <= {f.name for f in spec.features if f.nullable}, blank
    columns = columns_from_frame(spec, prepared.frame)
    assert all(len(c) == len(prepared.frame) for c in columns.values())


def test_cyber_blanks_are_real_but_not_served() -> None:
    """The real CyberData leaves rates blank, and so does the generator; the trainer drops
    those rows like the reference does, since Ridge cannot score a blank: not nullable."""
    raw = cyber_threat.generate(3_000, seed=0)
    assert raw[list(cyber_threat_training.COLUMNS)].isna().any().any()
    assert not any(f.nullable for f in CYBER_THREAT.features)
    frame, _ = cyber_threat_training.prepare(raw)
    assert not frame.isna().any().any()
