"""Keystroke timings generated in the Kaggle "keystroke-dynamics-challenge-1" `train.csv` layout.

Target layout (per public notebooks of the Kaggle challenge): 880 rows = 110 users x 8 repetitions
of one 13-key string; columns `user`, `press-0`..`press-12`, `release-0`..`release-12`, integer
milliseconds from the first key-down. No package registry ships it (nor any other keystroke set:
`river.datasets.Keystroke` downloads the CMU file at run time), so this module generates it.

Timing ranges come from the CMU benchmark (Killourhy & Maxion 2009, `DSL-StrongPasswordData.csv`,
51 subjects): holds 20-170 ms (typically 50-120), key-down to key-down mostly 70-450 ms, with
Shift/digit digraphs 200-1,200 ms, and release-to-press often negative on fast digraphs. Generator:
per user, a hold mean per key ~ N(90, 20) clipped to [40, 200]; a press-press mean per digraph ~
lognormal(median 180, sigma_log 0.35); 1-2 "hard" digraphs slowed x2-4. Per sample, every timing
gets lognormal noise with the user's sigma (0.15-0.25), and with 2 % chance one digraph of the
sample gets a +300-1,500 ms pause. press-0 = 0, press_i = press_(i-1) + PP_i,
release_i = press_i + H_i.

Per-user style consistency (documented assumption): the per-key and per-digraph spreads above are
split into a user-wide part (a user's overall hold length and typing tempo) and a key-specific
part. The marginal distributions stay exactly as specified, but a user's keys move together, as in
the CMU data where digraph means differ strongly *between* subjects. Without it the eight summary
features of the serving contract barely separate 110 users.

`features()` derives those eight contract features: mean and population standard deviation
(ddof=0, the spread of the 13 or 12 intervals of that one sample) of hold (HT), press-press (PPT),
release-release (RRT) and release-press (RPT = press_i - release_(i-1)) times.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from riskserve.core.specs import KEYSTROKE_RF

N_KEYS = 13
N_USERS = 110
REPS = 8
PRESS_COLUMNS: tuple[str, ...] = tuple(f"press-{i}" for i in range(N_KEYS))
RELEASE_COLUMNS: tuple[str, ...] = tuple(f"release-{i}" for i in range(N_KEYS))
LABEL_COLUMN = "user"
RAW_COLUMNS: tuple[str, ...] = (LABEL_COLUMN, *PRESS_COLUMNS, *RELEASE_COLUMNS)
FEATURE_COLUMNS: tuple[str, ...] = KEYSTROKE_RF.feature_names

# Hold mean per key ~ N(90, 20) ms clipped to [40, 200]; sd 20 = sqrt(17.9^2 + 8.9^2), user + key.
HOLD_MEAN_MS = 90.0
HOLD_SD_MS = 20.0
HOLD_CLIP_MS = (40.0, 200.0)
HOLD_USER_SHARE = 0.8  # share of the hold variance that is the user's overall hold length
# Press-press mean per digraph ~ lognormal(median 180 ms, sigma_log 0.35): user tempo + digraph.
PP_MEDIAN_MS = 180.0
PP_SIGMA_LOG = 0.35
PP_USER_SHARE = 0.8  # share of the log-variance that is the user's overall tempo
HARD_DIGRAPHS = (1, 2)  # how many digraphs per user are "hard" (Shift, digits, awkward reach)
HARD_FACTOR = (2.0, 4.0)
NOISE_SIGMA = (0.15, 0.25)  # per-user lognormal noise on each timing of a sample
PAUSE_PROB = 0.02  # per sample
PAUSE_MS = (300.0, 1500.0)


def draw_user_holds(rng: np.random.Generator, n_users: int) -> np.ndarray:
    """Return (n_users, 13) hold means in ms: a user-wide length plus a per-key offset."""
    user = rng.normal(0.0, HOLD_SD_MS * np.sqrt(HOLD_USER_SHARE), size=(n_users, 1))
    key = rng.normal(0.0, HOLD_SD_MS * np.sqrt(1 - HOLD_USER_SHARE), size=(n_users, N_KEYS))
    return np.clip(HOLD_MEAN_MS + user + key, *HOLD_CLIP_MS)


def draw_user_digraphs(rng: np.random.Generator, n_users: int) -> np.ndarray:
    """Return (n_users, 12) press-press means in ms: user tempo x digraph x hard-key slowdown."""
    n_digraphs = N_KEYS - 1
    tempo = rng.normal(0.0, PP_SIGMA_LOG * np.sqrt(PP_USER_SHARE), size=(n_users, 1))
    digraph = rng.normal(0.0, PP_SIGMA_LOG * np.sqrt(1 - PP_USER_SHARE), size=(n_users, n_digraphs))
    means = PP_MEDIAN_MS * np.exp(tempo + digraph)
    # Hard digraphs: shuffle the digraphs per user and slow the first 1 or 2 of them.
    n_hard = rng.integers(HARD_DIGRAPHS[0], HARD_DIGRAPHS[1] + 1, size=(n_users, 1))
    order = rng.random((n_users, n_digraphs)).argsort(axis=1).argsort(axis=1)
    factor = rng.uniform(*HARD_FACTOR, size=(n_users, n_digraphs))
    return np.where(order < n_hard, means * factor, means)


def draw_samples(
    rng: np.random.Generator, holds: np.ndarray, digraphs: np.ndarray, reps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (press, release) arrays of shape (users * reps, 13) in integer ms."""
    n_users = holds.shape[0]
    sigma = np.repeat(rng.uniform(*NOISE_SIGMA, size=(n_users, 1)), reps, axis=0)
    n = n_users * reps
    hold = np.repeat(holds, reps, axis=0) * np.exp(sigma * rng.standard_normal((n, N_KEYS)))
    pp = np.repeat(digraphs, reps, axis=0) * np.exp(sigma * rng.standard_normal((n, N_KEYS - 1)))
    # A pause (distraction, hesitation) on one random digraph of 2 % of samples.
    paused = rng.random(n) < PAUSE_PROB
    where = rng.integers(0, N_KEYS - 1, size=n)
    pp[paused, where[paused]] += rng.uniform(*PAUSE_MS, size=int(paused.sum()))
    press = np.concatenate([np.zeros((n, 1)), np.cumsum(pp, axis=1)], axis=1).round()
    # Holds are at least 1 ms so a key is always released after it is pressed.
    release = press + np.maximum(hold.round(), 1.0)
    return press.astype(np.int64), release.astype(np.int64)


def resolve_shape(n_rows: int | None, n_users: int | None, reps: int | None) -> tuple[int, int]:
    """Return (n_users, reps); n_rows alone keeps 8 reps and rounds the user count up."""
    reps = REPS if reps is None else reps
    if n_users is None:
        n_users = N_USERS if n_rows is None else -(-n_rows // reps)
    if n_users < 1 or reps < 1:
        raise ValueError("n_users and reps must be positive")
    if n_rows is not None and not 0 < n_rows <= n_users * reps:
        raise ValueError(f"n_rows must be in 1..{n_users * reps} (n_users x reps)")
    return n_users, reps


def generate(
    n_rows: int | None = None,
    seed: int = 0,
    *,
    n_users: int | None = None,
    reps: int | None = None,
) -> pd.DataFrame:
    """Generate `n_users x reps` samples (default 110 x 8 = 880), truncated to n_rows if given."""
    n_users, reps = resolve_shape(n_rows, n_users, reps)
    rng = np.random.default_rng(seed)
    press, release = draw_samples(
        rng, draw_user_holds(rng, n_users), draw_user_digraphs(rng, n_users), reps
    )
    frame = pd.DataFrame(np.hstack([press, release]), columns=[*PRESS_COLUMNS, *RELEASE_COLUMNS])
    frame.insert(0, LABEL_COLUMN, np.repeat(np.arange(1, n_users + 1), reps))
    return frame.iloc[: n_rows if n_rows is not None else len(frame)].reset_index(drop=True)


def features(raw: pd.DataFrame) -> pd.DataFrame:
    """Derive the eight contract timing features per sample, keeping `user` when present."""
    press = raw.loc[:, list(PRESS_COLUMNS)].to_numpy(dtype=float)
    release = raw.loc[:, list(RELEASE_COLUMNS)].to_numpy(dtype=float)
    intervals = {
        "ht": release - press,
        "ppt": np.diff(press, axis=1),
        "rrt": np.diff(release, axis=1),
        "rpt": press[:, 1:] - release[:, :-1],
    }
    columns = {}
    for name, values in intervals.items():
        columns[f"{name}_mean"] = values.mean(axis=1)
        columns[f"{name}_std"] = values.std(axis=1)  # population std (ddof=0)
    out = pd.DataFrame(columns, index=raw.index).loc[:, list(FEATURE_COLUMNS)]
    if LABEL_COLUMN in raw.columns:
        out[LABEL_COLUMN] = raw[LABEL_COLUMN].to_numpy()
    return out
