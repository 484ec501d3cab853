"""The seed-style FastAPI peer: how the seed projects served a model before riskserve.

A pickle loaded at start, a pydantic body per model, one pandas DataFrame per request,
`predict_proba` of the scikit-learn API (LightGBM: the Booster's `predict`), and an upload
endpoint that reads the whole CSV with pandas. It runs under plain uvicorn with
`--workers N` in its own venv (benchmarks/requirements-fastapi.txt) and imports nothing from
riskserve: the pickle (written by benchmarks/servers.py from the same stored model version)
carries the estimator and the encoder's fitted tables, so features are encoded exactly as
riskserve encodes them, only the seed way (pandas `map`). No auth, no validation beyond
pydantic's types: that is part of what is being compared.

Start: BENCH_SEED_PICKLE=<file> uvicorn benchmarks.seed_app:app --workers 2
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel

with open(os.environ["BENCH_SEED_PICKLE"], "rb") as fh:
    MODELS: dict[str, dict[str, Any]] = pickle.load(fh)  # trusted: the benchmark wrote it


class Transaction(BaseModel):
    step: int
    type: str
    amount: float
    oldbalance_org: float
    newbalance_orig: float
    oldbalance_dest: float
    newbalance_dest: float


class KeystrokeSample(BaseModel):
    """The eight timing statistics the keystroke models take (milliseconds)."""

    ht_mean: float
    ht_std: float
    ppt_mean: float
    ppt_std: float
    rrt_mean: float
    rrt_std: float
    rpt_mean: float
    rpt_std: float


class Applicant(BaseModel):
    income: int
    age: int
    experience: int
    married: str
    house_ownership: str
    car_ownership: str
    profession: str
    city: str
    state: str
    current_job_yrs: int
    current_house_yrs: int


def encode(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """The encoder's tables applied the seed way, column by column with pandas."""
    m = MODELS[name]
    out = pd.DataFrame(index=df.index)
    for col in m["features"]:
        if col in m["target_maps"]:
            table = dict(zip(m["vocabularies"][col], m["target_maps"][col], strict=True))
            out[col] = df[col].astype(str).map(table).fillna(m["target_priors"][col])
        elif col in m["vocabularies"]:
            codes = {v: i for i, v in enumerate(m["vocabularies"][col])}
            out[col] = df[col].astype(str).map(codes)
        else:
            out[col] = df[col].astype(float)
    if name == "fraud":  # the two balance-error features the fraud model was trained with
        out["orig_balance_error"] = df["newbalance_orig"] + df["amount"] - df["oldbalance_org"]
        out["dest_balance_error"] = df["oldbalance_dest"] + df["amount"] - df["newbalance_dest"]
    return out.astype(np.float32)


def probabilities(name: str, x: pd.DataFrame) -> np.ndarray:
    """[N, K] class probabilities (scikit-learn API), or [N] P(positive) from a LightGBM Booster."""
    model = MODELS[name]["model"]
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(x))
    return np.asarray(model.predict(x))  # a LightGBM Booster answers P(positive) directly


def labelled(name: str, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probability of the label for multiclass / of the positive class for binary)."""
    if p.ndim == 1:
        return (p >= 0.5).astype(int), p
    if p.shape[1] == 2:
        return (p[:, 1] >= 0.5).astype(int), p[:, 1]
    classes = np.asarray(MODELS[name]["model"].classes_)
    return classes[np.argmax(p, axis=1)], p.max(axis=1)


def answer(name: str, df: pd.DataFrame) -> dict[str, Any]:
    labels, p = labelled(name, probabilities(name, encode(name, df)))
    label = labels[0]
    return {"prediction": label.item() if hasattr(label, "item") else label,
            "probability": float(p[0])}


app = FastAPI(title="seed-style model API")


@app.post("/predict/fraud")
def predict_fraud(tx: Transaction) -> dict[str, Any]:
    return answer("fraud", pd.DataFrame([tx.model_dump()]))


@app.post("/predict/risk-flag")
def predict_risk_flag(applicant: Applicant) -> dict[str, Any]:
    return answer("risk-flag", pd.DataFrame([applicant.model_dump()]))


# The seed keystroke API: scikit-learn's predict_proba on a one-row pandas frame per request,
# the forest with the n_jobs it was trained with (what the seed project shipped).
@app.post("/predict/keystroke-rf")
def predict_keystroke_rf(sample: KeystrokeSample) -> dict[str, Any]:
    return answer("keystroke-rf", pd.DataFrame([sample.model_dump()]))


@app.post("/predict/keystroke-svm")
def predict_keystroke_svm(sample: KeystrokeSample) -> dict[str, Any]:
    return answer("keystroke-svm", pd.DataFrame([sample.model_dump()]))


@app.post("/predict/keystroke-xgb")
def predict_keystroke_xgb(sample: KeystrokeSample) -> dict[str, Any]:
    return answer("keystroke-xgb", pd.DataFrame([sample.model_dump()]))


@app.post("/predict_csv/{name}")
def predict_csv(name: str, file: UploadFile = File(...)) -> Response:  # noqa: B008 (FastAPI idiom)
    if name not in MODELS:
        raise HTTPException(404, f"unknown model {name}")
    df = pd.read_csv(file.file)
    df["prediction"], df["probability"] = labelled(name, probabilities(name, encode(name, df)))
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return Response(buf.getvalue(), media_type="text/csv")


if ready_dir := os.environ.get("BENCH_SEED_READY_DIR"):
    # Tells the benchmark this worker has loaded its models (it waits for all N workers).
    with open(os.path.join(ready_dir, str(os.getpid())), "w") as fh:
        fh.write("ready\n")
