"""Sample rows for tests and benchmarks: drawn from each family's own generator or loader."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from riskserve.core import store
from riskserve.core.scoring import ScoringModel
from riskserve.core.specs import SPECS
from training import pipeline
from training.__main__ import family_of

# A valid fraud row (a drained-account transfer).
GOOD_FRAUD = {"step": 1, "type": "TRANSFER", "amount": 181.0, "oldbalance_org": 181.0,
              "newbalance_orig": 0.0, "oldbalance_dest": 0.0, "newbalance_dest": 0.0}

ROWS = 40


@functools.cache
def _prepared(name: str, seed: int) -> pipeline.Prepared:
    return pipeline.prepare(family_of(name), None, True, seed)


@functools.cache
def stored_model(name: str, version: str) -> ScoringModel:
    """A version as the service loads it from the store: the same runtime (ONNX or native) the
    server answers with, so its predictions are the server's to the last bit."""
    return store.load_model(name, version)


def sample_frame(name: str, n: int = ROWS, seed: int = 11) -> pd.DataFrame:
    prepared = _prepared(name, seed)
    return prepared.frame.sample(n, random_state=seed).reset_index(drop=True)


def grpc_request(name: str, row: Mapping[str, Any]) -> Any:
    """A gRPC ModelInferRequest for one row: typed contents (as grpcurl sends), one tensor per
    feature in the contract's datatype."""
    from riskserve.oip._proto import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=name)
    for f in SPECS[name].features:
        tensor = request.inputs.add(name=f.name, datatype=f.datatype, shape=[1])
        value = row[f.name]
        if f.datatype == "BYTES":
            tensor.contents.bytes_contents.append(str(value).encode())
        elif f.datatype == "INT64":
            tensor.contents.int64_contents.append(int(value))
        else:
            tensor.contents.fp64_contents.append(float(value))
    return request


def records(name: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON rows with the contract's types (ints as ints, categories as str)."""
    out = json.loads(frame.to_json(orient="records"))
    for f in SPECS[name].features:
        for r in out:
            if f.kind == "int" and r[f.name] is not None:
                r[f.name] = int(r[f.name])
            if f.is_category and r[f.name] is not None:
                r[f.name] = str(r[f.name])
    return out


