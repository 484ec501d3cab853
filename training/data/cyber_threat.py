"""Cyber-threat rates per country and day, generated in DrSufi/CyberData's `cyber_data.csv` layout.

Source: DrSufi/CyberData (GitHub; repository MIT, paper Sufi 2024, *Information* 15(4):199,
CC BY 4.0): Kaspersky-style shares of devices reporting eight threat types, 77,623 rows x 18 fields
(plus a leading row index, omitted here), 225 countries, October 2022 - December 2023 (~420 days,
17 days missed, not every country every day). The file is in no package registry, so this module
generates rows that follow the per-column statistics in the repository README (valid n, min,
quartiles, max; embedded below as `STATS`) and the paper's one reported correlation,
corr(On Demand Scan, Local Infection) = 0.93.

Model: each country has a persistent lognormal level per column and each day adds small lognormal
noise; both share one latent correlation matrix, so Local Infection tracks On Demand Scan closely
and Web Threat, Exploit and Network Attack moderately (which lets the reference Ridge learn).
Lognormal parameters come from the published quartiles (median = p50, sigma = log(p75/p25)/1.349);
values are rounded to 5 decimals like the real file and clipped to the published [min, max].
Missing values are dropped completely at random at each column's real missing share.

Assumptions not in the published statistics: the day range starts on 2022-10-21 (437 days minus
17 missed = 420), `AttackDate` is an ISO date string, the country share of the log-variance is 85 %,
the correlations other than the published one, and `Rank X` is the per-date descending rank with
ties sharing the lowest rank, NaN where X is missing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

RATE_COLUMNS: tuple[str, ...] = (
    "Spam",
    "Ransomware",
    "Local Infection",
    "Exploit",
    "Malicious Mail",
    "Network Attack",
    "On Demand Scan",
    "Web Threat",
)
RANK_COLUMNS: tuple[str, ...] = tuple(f"Rank {c}" for c in RATE_COLUMNS)
RAW_COLUMNS: tuple[str, ...] = ("AttackDate", "Country", *RATE_COLUMNS, *RANK_COLUMNS)
LABEL_COLUMN = "Local Infection"

REAL_N_ROWS = 77_623
DEFAULT_N_ROWS = 40_000


class ColumnStats(NamedTuple):
    """One row of the README's describe() table (shares of devices, 0..1)."""

    valid_n: int
    mean: float
    std: float
    min: float
    p25: float
    p50: float
    p75: float
    max: float


STATS: dict[str, ColumnStats] = {
    "Spam": ColumnStats(62_982, 0.006094, 0.024337, 0.00001, 0.00009, 0.00059, 0.00353, 0.30249),
    "Ransomware": ColumnStats(
        52_144, 0.000130, 0.000186, 0.00001, 0.00004, 0.00007, 0.00014, 0.00918
    ),
    "Local Infection": ColumnStats(
        74_469, 0.013350, 0.008415, 0.00024, 0.00715, 0.01079, 0.01766, 0.04937
    ),
    "Exploit": ColumnStats(64_264, 0.000469, 0.000368, 0.00001, 0.00021, 0.00039, 0.00062, 0.00466),
    "Malicious Mail": ColumnStats(
        69_184, 0.001292, 0.001606, 0.00001, 0.00030, 0.00073, 0.00169, 0.04322
    ),
    "Network Attack": ColumnStats(
        71_532, 0.002222, 0.003034, 0.00002, 0.00070, 0.00129, 0.00235, 0.05826
    ),
    "On Demand Scan": ColumnStats(
        74_231, 0.009756, 0.006080, 0.00024, 0.00521, 0.00814, 0.01287, 0.12488
    ),
    "Web Threat": ColumnStats(
        73_892, 0.013006, 0.004943, 0.00024, 0.00970, 0.01257, 0.015973, 0.04863
    ),
}
# The paper's only published correlation; LATENT_CORR below is tuned so the raw values reach it.
PUBLISHED_CORR_ODS_LOCAL = 0.93

# Latent (log-scale) correlation, in RATE_COLUMNS order. Only the On Demand Scan / Local Infection
# entry is published; the others are assumptions that keep Local Infection moderately tied to Web
# Threat, Exploit and Network Attack (as the reference Ridge needs) and Spam to Malicious Mail.
LATENT_CORR = np.array(
    [
        # Spam Ransom Local Exploit Mail  Net   ODS   Web
        [1.00, 0.20, 0.20, 0.15, 0.50, 0.15, 0.20, 0.15],
        [0.20, 1.00, 0.30, 0.30, 0.15, 0.20, 0.30, 0.20],
        [0.20, 0.30, 1.00, 0.50, 0.25, 0.45, 0.94, 0.60],
        [0.15, 0.30, 0.50, 1.00, 0.15, 0.40, 0.45, 0.40],
        [0.50, 0.15, 0.25, 0.15, 1.00, 0.15, 0.25, 0.20],
        [0.15, 0.20, 0.45, 0.40, 0.15, 1.00, 0.40, 0.35],
        [0.20, 0.30, 0.94, 0.45, 0.25, 0.40, 1.00, 0.55],
        [0.15, 0.20, 0.60, 0.40, 0.20, 0.35, 0.55, 1.00],
    ]
)
# Share of each column's log-variance that is a persistent country level (the rest is daily noise).
COUNTRY_VARIANCE_SHARE = 0.85
# Country presence: the real file covers 77,623 of 225 x 420 = 94,500 country-days (82 %), with
# big countries nearly every day and small territories on fewer days; Beta(4.1, 0.9) has mean 0.82.
PRESENCE_BETA = (4.1, 0.9)

FIRST_DAY = "2022-10-21"
SPAN_DAYS = 437
MISSED_DAYS = 17
DECIMALS = 5
# Normal quantile of p75; log(p75 / p25) spans 2 * 0.6745 sigma.
_Z75 = 0.6744897501960817

COUNTRIES: tuple[str, ...] = (
    "Afghanistan", "Albania", "Algeria", "American Samoa", "Andorra", "Angola", "Anguilla",
    "Antigua and Barbuda", "Argentina", "Armenia", "Aruba", "Australia", "Austria", "Azerbaijan",
    "Bahamas", "Bahrain", "Bangladesh", "Barbados", "Belarus", "Belgium", "Belize", "Benin",
    "Bermuda", "Bhutan", "Bolivia", "Bosnia and Herzegovina", "Botswana", "Brazil",
    "British Virgin Islands", "Brunei", "Bulgaria", "Burkina Faso", "Burundi", "Cambodia",
    "Cameroon", "Canada", "Cape Verde", "Cayman Islands", "Central African Republic", "Chad",
    "Chile", "China", "Colombia", "Comoros", "Congo", "Cook Islands", "Costa Rica", "Croatia",
    "Cuba", "Curacao", "Cyprus", "Czech Republic", "Democratic Republic of the Congo", "Denmark",
    "Djibouti", "Dominica", "Dominican Republic", "Ecuador", "Egypt", "El Salvador",
    "Equatorial Guinea", "Eritrea", "Estonia", "Eswatini", "Ethiopia", "Faroe Islands", "Fiji",
    "Finland", "France", "French Guiana", "French Polynesia", "Gabon", "Gambia", "Georgia",
    "Germany", "Ghana", "Gibraltar", "Greece", "Greenland", "Grenada", "Guadeloupe", "Guam",
    "Guatemala", "Guernsey", "Guinea", "Guinea-Bissau", "Guyana", "Haiti", "Honduras", "Hong Kong",
    "Hungary", "Iceland", "India", "Indonesia", "Iran", "Iraq", "Ireland", "Isle of Man", "Israel",
    "Italy", "Ivory Coast", "Jamaica", "Japan", "Jersey", "Jordan", "Kazakhstan", "Kenya",
    "Kosovo", "Kuwait", "Kyrgyzstan", "Laos", "Latvia", "Lebanon", "Lesotho", "Liberia", "Libya",
    "Liechtenstein", "Lithuania", "Luxembourg", "Macao", "Madagascar", "Malawi", "Malaysia",
    "Maldives", "Mali", "Malta", "Marshall Islands", "Martinique", "Mauritania", "Mauritius",
    "Mayotte", "Mexico", "Micronesia", "Moldova", "Monaco", "Mongolia", "Montenegro", "Montserrat",
    "Morocco", "Mozambique", "Myanmar", "Namibia", "Nepal", "Netherlands", "New Caledonia",
    "New Zealand", "Nicaragua", "Niger", "Nigeria", "North Korea", "North Macedonia",
    "Northern Mariana Islands", "Norway", "Oman", "Pakistan", "Palau", "Palestine", "Panama",
    "Papua New Guinea", "Paraguay", "Peru", "Philippines", "Poland", "Portugal", "Puerto Rico",
    "Qatar", "Reunion", "Romania", "Russian Federation", "Rwanda", "Saint Kitts and Nevis",
    "Saint Lucia", "Saint Martin", "Saint Pierre and Miquelon", "Saint Vincent and the Grenadines",
    "Samoa", "San Marino", "Sao Tome and Principe", "Saudi Arabia", "Senegal", "Serbia",
    "Seychelles", "Sierra Leone", "Singapore", "Sint Maarten", "Slovakia", "Slovenia",
    "Solomon Islands", "Somalia", "South Africa", "South Korea", "South Sudan", "Spain",
    "Sri Lanka", "Sudan", "Suriname", "Sweden", "Switzerland", "Syria", "Taiwan", "Tajikistan",
    "Tanzania", "Thailand", "Timor-Leste", "Togo", "Tonga", "Trinidad and Tobago", "Tunisia",
    "Turkey", "Turkmenistan", "Turks and Caicos Islands", "Uganda", "Ukraine",
    "United Arab Emirates", "United Kingdom", "United States", "Uruguay", "US Virgin Islands",
    "Uzbekistan", "Vanuatu", "Venezuela", "Vietnam", "Yemen", "Zambia", "Zimbabwe",
)


def lognormal_params(stats: ColumnStats) -> tuple[float, float]:
    """Return (mu, sigma) of the log-value from the published median and interquartile range."""
    return float(np.log(stats.p50)), float(np.log(stats.p75 / stats.p25) / (2 * _Z75))


def draw_days(rng: np.random.Generator) -> np.ndarray:
    """Return the sorted observed days: the full span minus the missed ones."""
    span = pd.date_range(FIRST_DAY, periods=SPAN_DAYS, freq="D").to_numpy()
    missed = rng.choice(SPAN_DAYS, size=MISSED_DAYS, replace=False)
    return np.delete(span, missed)


def draw_cells(rng: np.random.Generator, n_rows: int, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick n_rows distinct (country, day) cells, weighted by each country's presence rate."""
    n_countries = len(COUNTRIES)
    if not 0 < n_rows <= n_countries * n_days:
        raise ValueError(f"n_rows must be in 1..{n_countries * n_days} (countries x days)")
    presence = rng.beta(*PRESENCE_BETA, size=n_countries)
    weight = np.repeat(presence, n_days)
    # Weighted sampling without replacement (Efraimidis-Spirakis): keep the n largest log(U)/w.
    keys = np.log(rng.random(weight.size)) / weight
    cells = np.argpartition(-keys, n_rows - 1)[:n_rows]
    cells.sort()
    return cells // n_days, cells % n_days


def draw_rates(rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
    """Return (n, 8) rates: a country level plus daily noise, correlated across columns."""
    chol = np.linalg.cholesky(LATENT_CORR)
    level = rng.standard_normal((len(COUNTRIES), len(RATE_COLUMNS))) @ chol.T
    daily = rng.standard_normal((country.size, len(RATE_COLUMNS))) @ chol.T
    share = COUNTRY_VARIANCE_SHARE
    z = np.sqrt(share) * level[country] + np.sqrt(1 - share) * daily
    params = np.array([lognormal_params(STATS[c]) for c in RATE_COLUMNS])
    rates = np.exp(params[:, 0] + params[:, 1] * z).round(DECIMALS)
    lo = np.array([STATS[c].min for c in RATE_COLUMNS])
    hi = np.array([STATS[c].max for c in RATE_COLUMNS])
    return np.clip(rates, lo, hi)


def drop_missing(rng: np.random.Generator, rates: np.ndarray) -> np.ndarray:
    """Blank each column completely at random at its real missing share (1 - valid n / rows)."""
    missing_share = np.array([1 - STATS[c].valid_n / REAL_N_ROWS for c in RATE_COLUMNS])
    return np.where(rng.random(rates.shape) < missing_share, np.nan, rates)


def rank_per_day(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the `Rank X` columns: descending rank of X among that day's countries."""
    ranks = frame.groupby("AttackDate", sort=False)[list(RATE_COLUMNS)].rank(
        ascending=False, method="min"
    )
    return ranks.set_axis(list(RANK_COLUMNS), axis=1)


def generate(n_rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Generate `n_rows` country-days (default 40,000; at most 225 x 420) in the real layout."""
    n_rows = DEFAULT_N_ROWS if n_rows is None else n_rows
    rng = np.random.default_rng(seed)
    days = draw_days(rng)
    country, day = draw_cells(rng, n_rows, days.size)
    rates = drop_missing(rng, draw_rates(rng, country))
    frame = pd.DataFrame(rates, columns=list(RATE_COLUMNS))
    frame.insert(0, "AttackDate", pd.DatetimeIndex(days[day]).strftime("%Y-%m-%d"))
    frame.insert(1, "Country", np.asarray(COUNTRIES, dtype=object)[country])
    # Day-major order, like the real file (cells were sorted country-major).
    frame = frame.sort_values(["AttackDate", "Country"], kind="stable", ignore_index=True)
    frame = pd.concat([frame, rank_per_day(frame)], axis=1)
    return frame.loc[:, list(RAW_COLUMNS)]
