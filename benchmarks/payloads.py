"""Request bodies for every server and protocol, built from the same sample rows.

Each single-row request carries one row of a pool of real-looking rows (the training data
generator's), serialised once up front. riskserve gets the rows as its contract says (/v1
JSON records, /v2 and gRPC one tensor per feature); the seed-style app gets the same record
as its pydantic body; the tensor peers (MLServer, KServe, Ray Serve) get the row already
encoded by riskserve's Encoder as one FP32 tensor [1, F], because their runtimes take only the
estimator's float matrix. That hands them the encoding for free, which favours them, and the
report says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from riskserve.core.scoring import ScoringModel
from riskserve.core.specs import SPECS
from riskserve.core.validation import columns_from_records
from riskserve.devtools import samples
from riskserve.oip._proto import grpc_predict_v2_pb2 as pb

GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
TENSOR_INPUT = "input-0"


def sample_frame(name: str, rows: int, seed: int = 3) -> pd.DataFrame:
    """`rows` rows of the model's contract columns from its training data generator.

    A seed other than training's (0) gives rows the model has not been fitted on.
    """
    from training.__main__ import family_of

    family = family_of(name)
    frame, _ = family.prepare(family.data.generate(rows, seed=seed))
    return frame.reset_index(drop=True)


def records(name: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON rows with the contract's types: ints as ints, categories as strings."""
    out = json.loads(frame.to_json(orient="records"))
    for f in SPECS[name].features:
        for r in out:
            if r[f.name] is None:
                continue
            if f.kind == "int":
                r[f.name] = int(r[f.name])
            elif f.is_category:
                r[f.name] = str(r[f.name])
    return out


def v1_body(name: str, row: Mapping[str, Any]) -> bytes:
    return json.dumps({"model": name, "inputs": [row]}).encode()


def v2_body(name: str, row: Mapping[str, Any]) -> bytes:
    """Open Inference Protocol JSON: one [1] tensor per feature, in the contract's datatype."""
    inputs = [{"name": f.name, "datatype": f.datatype, "shape": [1], "data": [row[f.name]]}
              for f in SPECS[name].features]
    return json.dumps({"inputs": inputs}).encode()


def grpc_request(name: str, row: Mapping[str, Any]) -> bytes:
    """ModelInferRequest with typed contents, one tensor per feature."""
    return samples.grpc_request(name, row).SerializeToString()


def seed_body(row: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(row)).encode()


def encoded(model: ScoringModel, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The float32 matrix riskserve's Encoder feeds the estimator (what MLServer receives)."""
    return model.encoder.transform(columns_from_records(model.spec, rows))


def tensor_body(x: np.ndarray) -> bytes:
    """One FP32 [N, F] tensor in OIP JSON (MLServer's NumPy codec default; KServe and Ray too)."""
    return json.dumps({"inputs": [{"name": TENSOR_INPUT, "datatype": "FP32",
                                   "shape": list(x.shape),
                                   "data": x.ravel().tolist()}]}).encode()


def tensor_grpc_request(name: str, x: np.ndarray) -> bytes:
    req = pb.ModelInferRequest(model_name=name)
    t = req.inputs.add(name=TENSOR_INPUT, datatype="FP32", shape=list(x.shape))
    t.contents.fp32_contents.extend(x.ravel().tolist())
    return req.SerializeToString()


@dataclass
class Bodies:
    """Pre-serialised single-row bodies for one model, one list per target."""

    rows: list[dict[str, Any]]
    v1: list[bytes]
    v2: list[bytes]
    grpc: list[bytes]
    seed: list[bytes]
    tensor_rest: list[bytes]  # MLServer, KServe and Ray Serve REST
    tensor_grpc: list[bytes]  # MLServer gRPC
    # In-process P(positive) per row (multiclass: the top class's probability), to check every
    # server's answer against.
    expected: np.ndarray
    multiclass: bool = False


def bodies(model: ScoringModel, pool: int = 64) -> Bodies:
    name = model.spec.name
    rows = records(name, sample_frame(name, pool))
    x = encoded(model, rows)
    pred = model.predict(columns_from_records(model.spec, rows))
    multiclass = model.spec.task == "multiclass"
    expected = pred.probabilities.max(axis=1) if multiclass else pred.scores
    assert expected is not None
    return Bodies(
        rows=rows,
        v1=[v1_body(name, r) for r in rows],
        v2=[v2_body(name, r) for r in rows],
        grpc=[grpc_request(name, r) for r in rows],
        seed=[seed_body(r) for r in rows],
        tensor_rest=[tensor_body(x[i:i + 1]) for i in range(len(rows))],
        tensor_grpc=[tensor_grpc_request(name, x[i:i + 1]) for i in range(len(rows))],
        expected=np.asarray(expected, dtype=np.float64),
        multiclass=multiclass,
    )


def answer_probability(protocol: str, payload: bytes, multiclass: bool) -> float:
    """The probability a single-row answer gives (for the sanity check against in-process).

    Binary: P(positive), the last column. Multiclass: the top class's probability.
    `protocol` is the answer's shape: "grpc" (OIP protobuf), "v1" (riskserve /v1), "seed"
    (the seed app's JSON) or "v2" (OIP JSON, every tensor peer's REST).
    """
    if protocol == "grpc":
        resp = pb.ModelInferResponse.FromString(payload)
        by_name = {o.name: (i, o) for i, o in enumerate(resp.outputs)}
        name = "predict_proba" if "predict_proba" in by_name else "predict"
        i, out = by_name[name]
        if resp.raw_output_contents:
            dtype = {"FP32": "<f4", "FP64": "<f8"}[out.datatype]
            values = np.frombuffer(resp.raw_output_contents[i], dtype=dtype)
        else:
            values = np.asarray(out.contents.fp64_contents or out.contents.fp32_contents)
    else:
        doc = json.loads(payload)
        if protocol == "seed":
            return float(doc["probability"])
        if protocol == "v1":
            values = np.asarray(doc["probabilities"][0], dtype=np.float64)
        else:
            outputs = {o["name"]: o for o in doc["outputs"]}
            out = outputs.get("predict_proba") or outputs["predict"]
            values = np.asarray(out["data"], dtype=np.float64).ravel()
    return float(values.max() if multiclass else values[-1])
