"""Mobile-money transactions generated in the PaySim (Kaggle PaySim1) log layout, with fraud pairs.

Real data set: Kaggle "PaySim1" `PS_20174392719_1491204439457_log.csv` (Lopez-Rojas, Elmir &
Axelsson 2016; CC BY-SA 4.0), 6,362,620 rows x 11 columns. PaySim is itself a simulation fitted to
one month of an African mobile-money service, and nothing real is in a package registry, so this
module generates rows that follow its published statistics:

* type counts of the Kaggle log (CASH_OUT 35.2 %, PAYMENT 33.8 %, CASH_IN 22.0 %, TRANSFER 8.4 %,
  DEBIT 0.65 %) and fraud counts per type (TRANSFER 4,097, CASH_OUT 4,116; 0.129 % of rows);
* per-type amount mean / sd from PaySim's real aggregate parameter file
  `paramFiles/aggregatedTransactions.csv` (EdgarLopezPhD/PaySim, GPL-3.0), as lognormals;
* the share of transactions by hour of day from the same file (03-06 h almost idle, 18-21 h peak);
  the day-level volume envelope is a normal fitted to the log's step quartiles 156 / 239 / 335;
* origin and destination balance medians and means of the Kaggle `describe()` output;
* fraud: a TRANSFER from the victim to a mule, then a CASH_OUT of the same amount by the mule, in
  the same step, both draining their origin; amounts capped at 10,000,000 (bigger thefts are split),
  mean ~1.47 M; spread evenly over steps 1-743 (~11 fraud rows per step at the real rate);
* quirks: `oldbalanceDest = newbalanceDest = 0` despite a non-zero amount in ~50 % of fraud rows
  and ~0.06 % of genuine ones; merchants (`M...`, PAYMENT destinations only) always show 0 balances;
  `isFlaggedFraud` (16 rows in 6.36 M, all TRANSFER) follows the documented rule "transfer above
  200,000", applied to a small share of fraudulent transfers so it stays as rare as in the log.

Assumptions (not published): genuine origins with insufficient funds end at 0 rather than going
negative (as in the log, where newbalanceOrig's median is 0); an origin's balance scales with the
amount it moves; a cash-in agent holds at least the cash it pays out;
the fraud CASH_OUT's origin is the TRANSFER's destination (the real log does not always link them);
the per-type fraud counts and the fraud mean amount are recalled from public EDAs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

RAW_COLUMNS: tuple[str, ...] = (
    "step",
    "type",
    "amount",
    "nameOrig",
    "oldbalanceOrg",
    "newbalanceOrig",
    "nameDest",
    "oldbalanceDest",
    "newbalanceDest",
    "isFraud",
    "isFlaggedFraud",
)
LABEL_COLUMN = "isFraud"
DEFAULT_N_ROWS = 200_000
FRAUD_RATE = 0.0013

REAL_N_ROWS = 6_362_620
TYPE_COUNTS = {
    "CASH_OUT": 2_237_500,
    "PAYMENT": 2_151_495,
    "CASH_IN": 1_399_284,
    "TRANSFER": 532_909,
    "DEBIT": 41_432,
}
FRAUD_COUNTS = {"TRANSFER": 4_097, "CASH_OUT": 4_116}
FRAUD_TYPES = tuple(FRAUD_COUNTS)
# Per-type amount (mean, sd) from PaySim's aggregatedTransactions.csv.
AMOUNT_MEAN_SD = {
    "TRANSFER": (869_735.0, 2_108_565.0),
    "CASH_OUT": (171_651.0, 130_012.0),
    "CASH_IN": (166_187.0, 124_875.0),
    "PAYMENT": (12_807.0, 12_315.0),
    "DEBIT": (5_163.0, 13_249.0),
}
AMOUNT_MAX = 92_445_517.0
FRAUD_AMOUNT_CAP = 10_000_000.0
# Victim balances: lognormal with median 441k and sigma 1.8, so min(balance, cap) averages ~1.47 M.
FRAUD_BALANCE_MEDIAN = 441_000.0
FRAUD_BALANCE_SIGMA = 1.8
FLAG_THRESHOLD = 200_000.0
FLAGGED_ROWS = 16
# Chance that a fraudulent TRANSFER over the threshold is flagged, so that 16 of the log's 4,097
# fraudulent transfers are: divide by the share of victim balances above the threshold.
_ABOVE_THRESHOLD = 0.5 * math.erfc(
    math.log(FLAG_THRESHOLD / FRAUD_BALANCE_MEDIAN) / (FRAUD_BALANCE_SIGMA * math.sqrt(2))
)
FLAG_PROB = FLAGGED_ROWS / (FRAUD_COUNTS["TRANSFER"] * _ABOVE_THRESHOLD)
DEST_ZERO_QUIRK = {"fraud": 0.5, "genuine": 0.0006}

N_STEPS = 743
STEP_QUARTILES = (156, 239, 335)
# Normal day envelope: sd = IQR / 1.349; the centre sits 17 steps under the median because the
# evening peak of the hour cycle pushes steps later within each day (checked by simulation).
STEP_CENTER = 228.0
STEP_SD = 133.0
# Share of transactions per hour of day (0..23): 18 h 10.6 %, 19-20 h 12.9 % each, 21 h 10.2 % and
# ~0 at 03-06 h are published; the other hours are a smooth morning-to-evening ramp (assumed).
HOUR_SHARE = np.array(
    [1.6, 0.7, 0.2, 0.02, 0.02, 0.02, 0.02, 0.5, 1.5, 3.0, 3.9, 4.4,
     4.8, 5.0, 5.0, 5.1, 5.3, 5.9, 10.6, 12.9, 12.9, 10.2, 4.2, 2.22]
) / 100.0

# Origin balance before: 0 for a quarter of rows, else the amount times a lognormal ratio (people
# move sums in proportion to what they hold). Fitted by simulation to the log's oldbalanceOrg
# median 14,208 and mean 833,883 and newbalanceOrig median 0 (mean lands ~6 % under 855,114).
ORIG_ZERO_SHARE = 0.245
ORIG_RATIO_LOG_MU, ORIG_RATIO_LOG_SIGMA = -0.26, 2.31
BALANCE_CAP = 50_000_000.0  # so one extreme draw cannot dominate a mean
# Customer destination balance before: 0 for 10 % of rows, else lognormal; fitted by simulation to
# the log's oldbalanceDest / newbalanceDest medians 132,706 / 214,661 and means 1.10 M / 1.22 M.
DEST_ZERO_SHARE = 0.10
DEST_LOG_MU, DEST_LOG_SIGMA = 13.03, 1.71
# Account numbers look like C1231006815 / M1979787155 (9-10 digits).
ACCOUNT_RANGE = (100_000_000, 2_147_483_647)
CUSTOMER_DEST_POOL = 0.45  # distinct customer destinations per genuine row (they recur)


def lognormal_from_moments(mean: float, sd: float) -> tuple[float, float]:
    """Return (mu, sigma) of a lognormal with the given mean and standard deviation."""
    sigma2 = np.log1p((sd / mean) ** 2)
    return float(np.log(mean) - sigma2 / 2), float(np.sqrt(sigma2))


def genuine_type_shares() -> dict[str, float]:
    """Type shares of genuine rows: the log's type counts minus its fraud rows."""
    counts = {t: c - FRAUD_COUNTS.get(t, 0) for t, c in TYPE_COUNTS.items()}
    total = sum(counts.values())
    return {t: c / total for t, c in counts.items()}


def step_probabilities() -> np.ndarray:
    """Return P(step) for steps 1..743: day envelope x hour-of-day share."""
    steps = np.arange(1, N_STEPS + 1)
    day_mid = (steps // 24) * 24 + 12.0
    weight = np.exp(-0.5 * ((day_mid - STEP_CENTER) / STEP_SD) ** 2) * HOUR_SHARE[steps % 24]
    return weight / weight.sum()


def account_names(rng: np.random.Generator, prefix: str, size: int) -> np.ndarray:
    """Return random PaySim-style account names such as C1231006815."""
    digits = rng.integers(*ACCOUNT_RANGE, size=size).astype(str)
    return np.char.add(prefix, digits).astype(object)


def draw_balances(
    rng: np.random.Generator, size: int, zero: float, mu: float | np.ndarray, sigma: float
) -> np.ndarray:
    """Return balances: 0 with probability `zero`, else a capped lognormal, rounded to cents."""
    balance = np.minimum(np.exp(mu + sigma * rng.standard_normal(size)), BALANCE_CAP)
    return np.where(rng.random(size) < zero, 0.0, balance).round(2)


def draw_genuine(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Generate n genuine transactions with consistent balance updates."""
    shares = genuine_type_shares()
    code = rng.choice(len(shares), size=n, p=list(shares.values()))
    kind = np.asarray(list(shares), dtype=object)[code]
    params = np.array([lognormal_from_moments(*AMOUNT_MEAN_SD[k]) for k in shares])
    amount = np.exp(params[code, 0] + params[code, 1] * rng.standard_normal(n))
    amount = np.minimum(amount, AMOUNT_MAX).round(2)

    cash_in, payment = kind == "CASH_IN", kind == "PAYMENT"
    ratio_mu = np.log(amount) + ORIG_RATIO_LOG_MU
    old_org = draw_balances(rng, n, ORIG_ZERO_SHARE, ratio_mu, ORIG_RATIO_LOG_SIGMA)
    # Cash-in credits the origin; everything else debits it, stopping at 0 when funds run short.
    new_org = np.where(cash_in, old_org + amount, np.maximum(old_org - amount, 0.0)).round(2)

    # Customer destinations recur (a pool); merchants only receive payments and show 0 balances.
    pool = account_names(rng, "C", max(1, int(n * CUSTOMER_DEST_POOL)))
    dest = np.where(payment, account_names(rng, "M", n), pool[rng.integers(0, pool.size, n)])
    old_dest = draw_balances(rng, n, DEST_ZERO_SHARE, DEST_LOG_MU, DEST_LOG_SIGMA)
    # A cash-in agent pays cash out of its balance, so it must hold at least the amount.
    old_dest = np.where(cash_in, old_dest + amount, old_dest)
    new_dest = np.where(cash_in, old_dest - amount, old_dest + amount).round(2)
    old_dest, new_dest = np.where(payment, 0.0, old_dest), np.where(payment, 0.0, new_dest)
    # The quirk's 0.06 % is of all genuine rows; payments already show 0/0, so scale it up.
    quirk_prob = DEST_ZERO_QUIRK["genuine"] / (1 - shares["PAYMENT"])
    quirk = ~payment & (rng.random(n) < quirk_prob)
    old_dest, new_dest = np.where(quirk, 0.0, old_dest), np.where(quirk, 0.0, new_dest)

    return pd.DataFrame(
        {
            "step": rng.choice(np.arange(1, N_STEPS + 1), size=n, p=step_probabilities()),
            "type": kind,
            "amount": amount,
            "nameOrig": account_names(rng, "C", n),
            "oldbalanceOrg": old_org,
            "newbalanceOrig": new_org,
            "nameDest": dest,
            "oldbalanceDest": old_dest,
            "newbalanceDest": new_dest,
            "isFraud": np.zeros(n, dtype=np.int64),
            "isFlaggedFraud": np.zeros(n, dtype=np.int64),
        }
    )


def draw_fraud_pairs(rng: np.random.Generator, n_pairs: int) -> pd.DataFrame:
    """Generate n_pairs (TRANSFER victim -> mule, CASH_OUT by the mule) pairs, interleaved."""
    log_balance = np.log(FRAUD_BALANCE_MEDIAN) + FRAUD_BALANCE_SIGMA * rng.standard_normal(n_pairs)
    balance = np.exp(log_balance).round(2)
    amount = np.minimum(balance, FRAUD_AMOUNT_CAP)
    victim, mule, agent = (account_names(rng, "C", n_pairs) for _ in range(3))
    step = rng.integers(1, N_STEPS + 1, size=n_pairs)

    # Destination balances of both legs: the mule / agent account, often showing the 0/0 quirk.
    old_dest = draw_balances(rng, 2 * n_pairs, DEST_ZERO_SHARE, DEST_LOG_MU, DEST_LOG_SIGMA)
    amount2 = np.concatenate([amount, amount])
    new_dest = (old_dest + amount2).round(2)
    quirk = rng.random(2 * n_pairs) < DEST_ZERO_QUIRK["fraud"]
    old_dest, new_dest = np.where(quirk, 0.0, old_dest), np.where(quirk, 0.0, new_dest)

    flagged = (amount > FLAG_THRESHOLD) & (rng.random(n_pairs) < FLAG_PROB)
    legs = pd.DataFrame(
        {
            "step": np.concatenate([step, step]),
            "type": np.repeat(np.asarray(FRAUD_TYPES, dtype=object), n_pairs),
            "amount": amount2,
            "nameOrig": np.concatenate([victim, mule]),
            # Both legs drain their origin: the victim's account, then the mule's.
            "oldbalanceOrg": np.concatenate([balance, amount]),
            "newbalanceOrig": np.concatenate([(balance - amount).round(2), np.zeros(n_pairs)]),
            "nameDest": np.concatenate([mule, agent]),
            "oldbalanceDest": old_dest,
            "newbalanceDest": new_dest,
            "isFraud": np.ones(2 * n_pairs, dtype=np.int64),
            "isFlaggedFraud": np.concatenate([flagged, np.zeros(n_pairs, bool)]).astype(np.int64),
        }
    )
    # Pair index, so the CASH_OUT follows its TRANSFER once rows are ordered.
    legs["_pair"] = np.tile(np.arange(n_pairs), 2)
    return legs


def order_rows(
    rng: np.random.Generator, genuine: pd.DataFrame, fraud: pd.DataFrame
) -> pd.DataFrame:
    """Order rows by step, shuffled within a step, keeping each fraud pair adjacent and in order."""
    pair_key = rng.random(len(fraud) // 2)
    key = np.concatenate([rng.random(len(genuine)), pair_key[fraud["_pair"].to_numpy()]])
    leg = np.concatenate([np.zeros(len(genuine)), (fraud["type"] == "CASH_OUT").to_numpy()])
    rows = pd.concat([genuine, fraud.drop(columns="_pair")], ignore_index=True)
    order = np.lexsort((leg, key, rows["step"].to_numpy()))
    return rows.iloc[order].reset_index(drop=True)


def generate(
    n_rows: int | None = None, seed: int = 0, fraud_rate: float = FRAUD_RATE
) -> pd.DataFrame:
    """Generate `n_rows` transactions (default 200,000), `fraud_rate` of them in fraud pairs."""
    n_rows = DEFAULT_N_ROWS if n_rows is None else n_rows
    if n_rows < 1 or not 0.0 <= fraud_rate <= 1.0:
        raise ValueError("n_rows must be positive and fraud_rate in [0, 1]")
    rng = np.random.default_rng(seed)
    n_pairs = min(round(n_rows * fraud_rate / 2), n_rows // 2)
    genuine = draw_genuine(rng, n_rows - 2 * n_pairs)
    fraud = draw_fraud_pairs(rng, n_pairs)
    return order_rows(rng, genuine, fraud).loc[:, list(RAW_COLUMNS)]
