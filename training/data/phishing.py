"""Phishing-website data: the real 1,250-row UCI sample that ships inside the river wheel.

Source: river 0.26.1 (BSD-3-Clause), file `river/datasets/phishing.csv.gz` (3,991 bytes,
1,250 rows x 10 columns, no missing values). It is the UCI "Website Phishing" data set
(Abdelhamid, Ayesh & Thabtah 2014; 1,353 rows, CC BY 4.0) without its 103 "suspicious" rows.
Seven features take 0 / 0.5 / 1 (legitimate / suspicious / phishing-like); `age_of_domain` and
`ip_in_url` are 0/1. The label `is_phishing` has 548 ones and 702 zeros.

Label discrepancy: UCI's description says 548 legitimate and 702 phishing, i.e. the opposite of
river's coding. The feature relationships mostly agree with river's direction, so river's label is
used as is; models and documentation must treat `is_phishing == 1` as phishing.

The file is read by path, without importing river: river pins numpy versions that can clash with
the serving stack, and only this one file is needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

RAW_COLUMNS: tuple[str, ...] = (
    "empty_server_form_handler",
    "popup_window",
    "https",
    "request_from_other_domain",
    "anchor_from_other_domain",
    "is_popular",
    "long_url",
    "age_of_domain",
    "ip_in_url",
    "is_phishing",
)
LABEL_COLUMN = "is_phishing"

N_ROWS = 1_250
N_POSITIVE = 548
RIVER_VERSION = "0.26.1"
_RELATIVE_PATH = ("datasets", "phishing.csv.gz")


def locate() -> Path:
    """Return the path of river's bundled phishing file, or raise a one-line install hint."""
    spec = importlib.util.find_spec("river")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if locations:
        path = Path(locations[0]).joinpath(*_RELATIVE_PATH)
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"river's phishing.csv.gz not found: run `pip install river=={RIVER_VERSION} --no-deps`"
    )


def load() -> pd.DataFrame:
    """Read the real phishing sample (1,250 x 10) in its own column order."""
    frame = pd.read_csv(locate())
    missing = set(RAW_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{locate()} lacks columns {sorted(missing)}; expected {RAW_COLUMNS}")
    return frame.loc[:, list(RAW_COLUMNS)]
