"""Open Inference Protocol v2 against a real `bentoml serve`: REST /v2 and gRPC, with
off-the-shelf KServe/Triton clients (tritonclient.http and tritonclient.grpc).

The gRPC stubs used here are tritonclient's own (`tritonclient.grpc.service_pb2`): that the
service answers them proves wire compatibility, and riskserve's generated stubs cannot be
imported next to them anyway (both register `inference.*` in protobuf's default pool).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from riskserve.core.specs import MODEL_NAMES, SPECS, Feature
from riskserve.core.validation import columns_from_frame
from riskserve.devtools import server
from riskserve.devtools.samples import GOOD_FRAUD as GOOD
from riskserve.devtools.samples import records, stored_model
from riskserve.devtools.samples import sample_frame as _sample_frame
from training import pipeline
from training.__main__ import family_of

SERVICE = "inference.GRPCInferenceService"
LISTEN, ESTABLISHED = "0A", "01"  # TCP states in /proc/net/tcp


# ---- helpers -------------------------------------------------------------------------------

@functools.cache
def _cached_frame(name: str, n: int, seed: int) -> pd.DataFrame:
    return _sample_frame(name, n, seed)


def sample_frame(name: str, n: int = 40, seed: int = 11) -> pd.DataFrame:
    """test_service_http's sample rows, prepared once per (model, size, seed)."""
    return _cached_frame(name, n, seed).copy()


def key(served: Any) -> dict[str, str]:
    """A fresh header dict per call: tritonclient.http adds its own entries to the one given."""
    return {"x-api-key": served.key}


def metadata(served: Any) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", served.key),)


def feature_array(f: Feature, values: Any) -> tuple[np.ndarray, str]:
    """A column as the numpy array and datatype the model contract advertises."""
    if f.is_category:
        return np.array([str(v) for v in values], dtype=object), "BYTES"
    if f.kind == "int":
        return np.asarray(values, dtype=np.int64), "INT64"
    return np.asarray(values, dtype=np.float64), "FP64"


def triton_inputs(module: Any, name: str, frame: pd.DataFrame, **kwargs: Any) -> list[Any]:
    inputs = []
    for f in SPECS[name].features:
        values, datatype = feature_array(f, frame[f.name].to_numpy())
        tensor = module.InferInput(f.name, [len(values)], datatype)
        tensor.set_data_from_numpy(values, **kwargs)
        inputs.append(tensor)
    return inputs


def json_inputs(name: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Plain protocol JSON, one tensor per feature, as a curl user would write it."""
    out = []
    for f in SPECS[name].features:
        values, datatype = feature_array(f, frame[f.name].to_numpy())
        out.append({"name": f.name, "datatype": datatype, "shape": [len(values)],
                    "data": values.tolist()})
    return out


def typed_request(name: str, frame: pd.DataFrame) -> service_pb2.ModelInferRequest:
    """A gRPC request with typed `contents` (no raw_input_contents), as grpcurl would send."""
    request = service_pb2.ModelInferRequest(model_name=name, id="typed")
    for f in SPECS[name].features:
        values, datatype = feature_array(f, frame[f.name].to_numpy())
        tensor = request.inputs.add(name=f.name, datatype=datatype, shape=[len(values)])
        if datatype == "BYTES":
            tensor.contents.bytes_contents.extend(v.encode() for v in values)
        elif datatype == "INT64":
            tensor.contents.int64_contents.extend(values.tolist())
        else:
            tensor.contents.fp64_contents.extend(values.tolist())
    return request


def v1_predict(served: Any, name: str, frame: pd.DataFrame,
               version: str | None = None) -> dict[str, Any]:
    resp = httpx.post(served.url + "/v1/predict", headers=served.headers, timeout=60,
                      json={"model": name, "version": version, "inputs": records(name, frame)})
    assert resp.status_code == 200, resp.text
    return resp.json()


def plain(values: np.ndarray) -> list[Any]:
    """Output values as JSON-like Python values (BYTES come back from tritonclient as bytes)."""
    return [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]


def assert_matches(as_numpy: Callable[[str], np.ndarray | None], expected: dict[str, Any],
                   name: str) -> None:
    """`predict` / `predict_proba` equal /v1's predictions / probabilities."""
    predict = as_numpy("predict")
    assert predict is not None and predict.shape == (len(expected["predictions"]),)
    if SPECS[name].task == "regression":
        np.testing.assert_allclose(predict, expected["predictions"], rtol=1e-12)
        assert as_numpy("predict_proba") is None
        return
    assert plain(predict) == expected["predictions"]
    proba = as_numpy("predict_proba")
    assert proba is not None and proba.shape == (len(predict), len(expected["classes"]))
    np.testing.assert_allclose(proba, expected["probabilities"], rtol=1e-12)


def expected_in_process(trained: dict, name: str, frame: pd.DataFrame) -> Any:
    return stored_model(name, trained[name].version).predict(
        columns_from_frame(SPECS[name], frame))


def metric_value(served: Any, metric: str, **labels: str) -> float:
    """Sum of one metric's samples whose labels include `labels` (0 if absent)."""
    total = 0.0
    for line in httpx.get(served.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def http_client(served: Any) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.port}", network_timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(served: Any) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(served: Any) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


# ---- predictions equal /v1 -------------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_tritonclient_http_matches_v1(served: Any, trained: dict,
                                      http_client: httpclient.InferenceServerClient,
                                      name: str) -> None:
    frame = sample_frame(name)
    expected = v1_predict(served, name, frame)
    # tritonclient's defaults: binary tensor data in and out (Triton's binary extension).
    result = http_client.infer(name, triton_inputs(httpclient, name, frame), headers=key(served),
                               request_id=f"req-{name}")
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        name, trained[name].version, f"req-{name}")
    assert_matches(result.as_numpy, expected, name)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_tritonclient_grpc_matches_v1(served: Any, trained: dict,
                                      grpc_client: grpcclient.InferenceServerClient,
                                      name: str) -> None:
    frame = sample_frame(name)
    expected = v1_predict(served, name, frame)
    result = grpc_client.infer(name, triton_inputs(grpcclient, name, frame), headers=key(served),
                               request_id=f"req-{name}")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (
        name, trained[name].version, f"req-{name}")
    assert len(response.raw_output_contents) == len(response.outputs)  # raw in, raw out
    assert_matches(result.as_numpy, expected, name)


@pytest.mark.parametrize("name", ["risk-flag", "keystroke-rf", "cyber-threat"])
def test_tritonclient_http_json_tensors(served: Any, http_client: httpclient.InferenceServerClient,
                                        name: str) -> None:
    frame = sample_frame(name, 10)
    expected = v1_predict(served, name, frame)
    outputs = [httpclient.InferRequestedOutput(o, binary_data=False)
               for o in (["predict"] if name == "cyber-threat" else ["predict", "predict_proba"])]
    result = http_client.infer(name, triton_inputs(httpclient, name, frame, binary_data=False),
                               outputs=outputs, headers=key(served))
    assert all("data" in o for o in result.get_response()["outputs"])
    assert_matches(result.as_numpy, expected, name)


def test_plain_json_request_selects_outputs_and_echoes_id(served: Any) -> None:
    frame = sample_frame("fraud", 5)
    expected = v1_predict(served, "fraud", frame)
    inputs = json_inputs("fraud", frame)
    amount = next(t for t in inputs if t["name"] == "amount")
    amount["shape"], amount["data"] = [5, 1], [[v] for v in amount["data"]]  # [N, 1] nested
    resp = httpx.post(served.url + "/v2/models/fraud/infer", headers=served.headers, timeout=30,
                      json={"id": "abc-1", "inputs": inputs,
                            "outputs": [{"name": "predict_proba"}]})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["id"] == "abc-1" and body["model_name"] == "fraud"
    [out] = body["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("predict_proba", "FP64", [5, 2])
    assert json.loads(out["parameters"]["classes"]) == expected["classes"]
    np.testing.assert_allclose(np.reshape(out["data"], (5, 2)), expected["probabilities"],
                               rtol=1e-12)


@pytest.mark.parametrize("name", ["risk-flag", "cyber-threat", "keystroke-svm"])
def test_grpc_typed_contents_are_answered_typed(served: Any, trained: dict, stub: Any,
                                                name: str) -> None:
    frame = sample_frame(name, 8)
    expected = v1_predict(served, name, frame)
    response = stub.ModelInfer(typed_request(name, frame), metadata=metadata(served), timeout=30)
    assert response.id == "typed" and not response.raw_output_contents
    outputs = {o.name: o for o in response.outputs}
    predict = outputs["predict"]
    if SPECS[name].task == "regression":
        assert predict.datatype == "FP64" and set(outputs) == {"predict"}
        np.testing.assert_allclose(predict.contents.fp64_contents, expected["predictions"],
                                   rtol=1e-12)
    else:
        assert list(predict.contents.int64_contents) == expected["predictions"]
        proba = outputs["predict_proba"]
        assert list(proba.shape) == [8, len(expected["classes"])]
        np.testing.assert_allclose(np.reshape(proba.contents.fp64_contents, tuple(proba.shape)),
                                   expected["probabilities"], rtol=1e-12)


def test_other_numeric_datatypes_are_accepted(served: Any, grpc_client: Any) -> None:
    # Values exactly representable in FP32 / INT32, so the answer must equal /v1's.
    frame = pd.DataFrame({"step": [1, 300], "type": ["TRANSFER", "CASH_OUT"],
                          "amount": [181.0, 2500.5], "oldbalance_org": [181.0, 2500.5],
                          "newbalance_orig": [0.0, 0.0], "oldbalance_dest": [0.0, 1024.25],
                          "newbalance_dest": [0.0, 3524.75]})
    expected = v1_predict(served, "fraud", frame)
    inputs = []
    for f in SPECS["fraud"].features:
        values, datatype = feature_array(f, frame[f.name].to_numpy())
        if datatype == "INT64":
            values, datatype = values.astype(np.int32), "INT32"
        elif datatype == "FP64":
            values, datatype = values.astype(np.float32), "FP32"
        tensor = grpcclient.InferInput(f.name, [2, 1], datatype)  # [N, 1] is accepted too
        tensor.set_data_from_numpy(values.reshape(2, 1))
        inputs.append(tensor)
    result = grpc_client.infer("fraud", inputs, headers=key(served))
    assert_matches(result.as_numpy, expected, "fraud")

    # BOOL fits the 0/1 flags of the phishing model.
    phishing = sample_frame("phishing", 6)
    expected = v1_predict(served, "phishing", phishing)
    inputs = triton_inputs(grpcclient, "phishing", phishing)
    for i, f in enumerate(SPECS["phishing"].features):
        if f.kind == "int":
            inputs[i] = grpcclient.InferInput(f.name, [6], "BOOL")
            inputs[i].set_data_from_numpy(phishing[f.name].to_numpy().astype(bool))
    assert_matches(grpc_client.infer("phishing", inputs, headers=key(served)).as_numpy,
                   expected, "phishing")


# ---- auth ------------------------------------------------------------------------------------

PROTECTED_REST = [("POST", "/v2/models/fraud/infer"), ("GET", "/v2"), ("GET", "/v2/models/fraud"),
                  ("GET", "/v2/models/fraud/ready"), ("GET", "/v2/models/fraud/versions/x")]
BAD_HEADERS = [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
               {"Authorization": "test-key"}]


@pytest.mark.parametrize(("method", "route"), PROTECTED_REST)
@pytest.mark.parametrize("headers", BAD_HEADERS)
def test_rest_rejects_missing_or_wrong_key(served: Any, method: str, route: str,
                                           headers: dict[str, str]) -> None:
    resp = httpx.request(method, served.url + route, headers=headers, timeout=10,
                         json={"inputs": []} if method == "POST" else None)
    assert resp.status_code == 401
    assert "API key" in resp.json()["error"]


def test_rest_health_is_open_and_bearer_works(served: Any) -> None:
    for route in ("/v2/health/live", "/v2/health/ready"):
        assert httpx.get(served.url + route, timeout=10).status_code == 200
    frame = sample_frame("fraud", 2)
    resp = httpx.post(served.url + "/v2/models/fraud/infer", timeout=30,
                      headers={"Authorization": f"Bearer {served.key}"},
                      json={"inputs": json_inputs("fraud", frame)})
    assert resp.status_code == 200, resp.text


GRPC_BAD_METADATA = [(), (("x-api-key", "wrong"),), (("authorization", "Bearer wrong"),),
                     (("authorization", "test-key"),)]
PROTECTED_RPCS = [
    ("ModelInfer", lambda: typed_request("fraud", sample_frame("fraud", 1))),
    ("ModelMetadata", lambda: service_pb2.ModelMetadataRequest(name="fraud")),
    ("ModelReady", lambda: service_pb2.ModelReadyRequest(name="fraud")),
    ("ServerMetadata", lambda: service_pb2.ServerMetadataRequest()),
]


@pytest.mark.parametrize(("rpc", "make"), PROTECTED_RPCS, ids=[r for r, _ in PROTECTED_RPCS])
@pytest.mark.parametrize("md", GRPC_BAD_METADATA)
def test_grpc_rejects_missing_or_wrong_key(stub: Any, rpc: str, make: Callable[[], Any],
                                           md: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, rpc)(make(), metadata=md, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "API key" in info.value.details()


def test_grpc_health_rpcs_are_open_and_bearer_works(served: Any, stub: Any) -> None:
    assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
    assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
    response = stub.ModelInfer(typed_request("fraud", sample_frame("fraud", 1)), timeout=10,
                               metadata=(("authorization", f"Bearer {served.key}"),))
    assert response.model_name == "fraud"


# ---- not found and bad input -----------------------------------------------------------------

def test_unknown_model_or_version_is_404_and_not_found(served: Any, stub: Any) -> None:
    frame = sample_frame("fraud", 1)
    for route in ("/v2/models/nope/infer", "/v2/models/fraud/versions/nope/infer"):
        resp = httpx.post(served.url + route, headers=served.headers, timeout=10,
                          json={"inputs": json_inputs("fraud", frame)})
        assert resp.status_code == 404 and "nope" in resp.json()["error"]
    for route in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/fraud/versions/nope"):
        resp = httpx.get(served.url + route, headers=served.headers, timeout=10)
        assert resp.status_code == 404 and "nope" in resp.json()["error"]
    calls = [("ModelInfer", service_pb2.ModelInferRequest(model_name="nope")),
             ("ModelInfer", service_pb2.ModelInferRequest(model_name="fraud",
                                                          model_version="nope")),
             ("ModelMetadata", service_pb2.ModelMetadataRequest(name="nope")),
             ("ModelReady", service_pb2.ModelReadyRequest(name="fraud", version="nope"))]
    for rpc, request in calls:
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, rpc)(request, metadata=metadata(served), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "'nope'" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(service_pb2.ModelInferRequest(model_name="nope"),
                        metadata=metadata(served), timeout=10)
    assert "unknown model 'nope'; known models: cyber-threat, fraud" in info.value.details()


def _fraud_json() -> list[dict[str, Any]]:
    return [
        {"name": "step", "datatype": "INT64", "shape": [2], "data": [1, 2]},
        {"name": "type", "datatype": "BYTES", "shape": [2], "data": ["TRANSFER", "CASH_OUT"]},
        {"name": "amount", "datatype": "FP64", "shape": [2], "data": [181.0, 90.5]},
        {"name": "oldbalance_org", "datatype": "FP64", "shape": [2], "data": [181.0, 90.5]},
        {"name": "newbalance_orig", "datatype": "FP64", "shape": [2], "data": [0.0, 0.0]},
        {"name": "oldbalance_dest", "datatype": "FP64", "shape": [2], "data": [0.0, 10.0]},
        {"name": "newbalance_dest", "datatype": "FP64", "shape": [2], "data": [0.0, 100.5]},
    ]


def _set(name: str, **changes: Any) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(inputs: list[dict[str, Any]]) -> None:
        next(t for t in inputs if t["name"] == name).update(changes)
    return mutate


def _drop(name: str) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(inputs: list[dict[str, Any]]) -> None:
        inputs[:] = [t for t in inputs if t["name"] != name]
    return mutate


def _add(name: str) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(inputs: list[dict[str, Any]]) -> None:
        inputs.append({"name": name, "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]})
    return mutate


BAD_INPUTS = {
    "wrong datatype": (_set("step", datatype="BYTES", data=["1", "2"]), "step"),
    "bool for an amount": (_set("amount", datatype="BOOL", data=[True, False]), "amount"),
    "shape [N, 2]": (_set("amount", shape=[1, 2]), "amount"),
    "shape [2, 2]": (_set("amount", shape=[2, 2], data=[1.0, 2.0, 3.0, 4.0]), "amount"),
    "data longer than shape": (_set("amount", data=[1.0, 2.0, 3.0]), "amount"),
    "strings for FP64": (_set("amount", data=["a", "b"]), "amount"),
    "fraction for INT64": (_set("step", data=[1.5, 2]), "step"),
    "out of range": (_set("amount", data=[-3.0, 1.0]), "amount"),
    "unknown category": (_set("type", data=["TRANSFER", "WIRE"]), "type"),
    "unknown input": (_add("amuont"), "amuont"),
    "missing input": (_drop("type"), "type"),
    "row counts differ": (_set("step", shape=[3], data=[1, 2, 3]), "step"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_rest_bad_tensors_are_400_naming_the_input(served: Any, case: str) -> None:
    mutate, field = BAD_INPUTS[case]
    inputs = _fraud_json()
    mutate(inputs)
    resp = httpx.post(served.url + "/v2/models/fraud/infer", headers=served.headers,
                      json={"inputs": inputs}, timeout=10)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert f"'{field}'" in body["error"] and "Traceback" not in resp.text


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_grpc_bad_tensors_are_invalid_argument_naming_the_input(served: Any, stub: Any,
                                                                case: str) -> None:
    mutate, field = BAD_INPUTS[case]
    inputs = _fraud_json()
    mutate(inputs)
    request = service_pb2.ModelInferRequest(model_name="fraud")
    fields = {"BYTES": "bytes_contents", "INT64": "int64_contents", "FP64": "fp64_contents",
              "BOOL": "bool_contents"}
    for t in inputs:
        tensor = request.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        data = t["data"]
        if t["datatype"] == "BYTES":
            data = [str(v).encode() for v in data]
        try:
            getattr(tensor.contents, fields[t["datatype"]]).extend(data)
        except TypeError:  # e.g. strings for FP64: not even encodable in typed contents
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.extend(str(v).encode() for v in data)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, metadata=metadata(served), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"'{field}'" in info.value.details()


def test_tritonclient_sees_invalid_argument_and_400(served: Any, http_client: Any,
                                                     grpc_client: Any) -> None:
    frame = sample_frame("fraud", 3)
    for module, client in ((httpclient, http_client), (grpcclient, grpc_client)):
        inputs = triton_inputs(module, "fraud", frame)
        inputs[0] = module.InferInput("step", [3], "BYTES")
        inputs[0].set_data_from_numpy(np.array(["1", "2", "3"], dtype=object))
        with pytest.raises(InferenceServerException) as info:
            client.infer("fraud", inputs, headers=key(served))
        assert info.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
        assert "'step'" in info.value.message()


@pytest.mark.parametrize(("body", "headers", "fragment"), [
    (b'{"inputs": ', {}, "not valid JSON"),
    (b'[1, 2]', {}, "JSON object"),
    (b'{"inputs": "amount"}', {}, "'inputs'"),
    (json.dumps({"inputs": [{"name": "amount", "datatype": "FP64", "shape": [2],
                             "data": 1.0}]}).encode(), {}, "'amount'"),
    (json.dumps({"inputs": _fraud_json(), "outputs": [{"name": "score"}]}).encode(), {},
     "'score'"),
    (json.dumps({"inputs": [{"name": "amount", "datatype": "FP64", "shape": [2],
                             "parameters": {"binary_data_size": 16}}]}).encode(),
     {"Inference-Header-Content-Length": "abc"}, "Inference-Header-Content-Length"),
    (json.dumps({"inputs": [{"name": "amount", "datatype": "FP64", "shape": [2],
                             "parameters": {"binary_data_size": 16}}]}).encode() + b"\0" * 8,
     None, "binary_data_size"),
])
def test_rest_malformed_requests_are_400(served: Any, body: bytes, headers: dict | None,
                                         fragment: str) -> None:
    if headers is None:  # header length = the JSON part, 8 bytes of binary for a 16-byte claim
        headers = {"Inference-Header-Content-Length": str(len(body) - 8)}
    resp = httpx.post(served.url + "/v2/models/fraud/infer", content=body, timeout=10,
                      headers={**served.headers, **headers})
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json()["error"] and "Traceback" not in resp.text


def test_raw_contents_must_match_shape_and_inputs(served: Any, stub: Any) -> None:
    request = service_pb2.ModelInferRequest(model_name="fraud")
    for t in _fraud_json():
        request.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        if t["datatype"] == "BYTES":
            request.raw_input_contents.append(b"".join(
                len(v).to_bytes(4, "little") + v.encode() for v in t["data"]))
        else:
            dtype = np.int64 if t["datatype"] == "INT64" else np.float64
            request.raw_input_contents.append(np.asarray(t["data"], dtype=dtype).tobytes())
    ok = stub.ModelInfer(request, metadata=metadata(served), timeout=10)
    assert [o.name for o in ok.outputs] == ["predict", "predict_proba"]

    short = service_pb2.ModelInferRequest()
    short.CopyFrom(request)
    short.raw_input_contents[2] = np.float64(1.0).tobytes()  # 8 bytes for shape [2] FP64
    truncated = service_pb2.ModelInferRequest()
    truncated.CopyFrom(request)
    truncated.raw_input_contents[1] = b"\x08\x00\x00\x00TRANSFER\x20\x00\x00\x00CASH"
    missing = service_pb2.ModelInferRequest()
    missing.CopyFrom(request)
    del missing.raw_input_contents[-1]
    for bad, fragment in ((short, "'amount'"), (truncated, "'type'"),
                          (missing, "raw_input_contents")):
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(bad, metadata=metadata(served), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in info.value.details()


def test_row_limit_is_413_and_resource_exhausted(served: Any, stub: Any) -> None:
    # The session server allows 5,000 rows per request (RISKSERVE_MAX_ROWS).
    frame = pd.DataFrame([GOOD] * 5001)
    resp = httpx.post(served.url + "/v2/models/fraud/infer", headers=served.headers, timeout=30,
                      json={"inputs": json_inputs("fraud", frame)})
    assert resp.status_code == 413 and "5001 rows" in resp.json()["error"]
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(typed_request("fraud", frame), metadata=metadata(served), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "5001 rows" in info.value.details()


def test_body_limit_applies_to_both_protocols(served: Any, stub: Any) -> None:
    # The session server's body limit is 4 MiB (RISKSERVE_MAX_PAYLOAD_BYTES).
    huge = b"\0" * (5 * 1024 * 1024)
    resp = httpx.post(served.url + "/v2/models/fraud/infer", content=huge, timeout=30,
                      headers={**served.headers, "Inference-Header-Content-Length": "0"})
    assert resp.status_code == 413
    request = service_pb2.ModelInferRequest(model_name="fraud", raw_input_contents=[huge])
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, metadata=metadata(served), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# ---- versions and metadata -------------------------------------------------------------------

def test_explicit_version_routes_to_that_version(served: Any, trained: dict, tmp_path: Path,
                                                 http_client: Any, grpc_client: Any) -> None:
    family = family_of("phishing")
    other = pipeline.train(SPECS["phishing"], family, pipeline.prepare(family, None, True, 98),
                           quick=True, seed=98, reports=tmp_path)
    assert other.version != trained["phishing"].version
    frame = sample_frame("phishing", 6)
    expected = stored_model("phishing", other.version).predict(
        columns_from_frame(SPECS["phishing"], frame))
    for module, client in ((httpclient, http_client), (grpcclient, grpc_client)):
        result = client.infer("phishing", triton_inputs(module, "phishing", frame),
                              model_version=other.version, headers=key(served))
        np.testing.assert_allclose(result.as_numpy("predict_proba"), expected.probabilities,
                                   rtol=1e-6)
        default = client.infer("phishing", triton_inputs(module, "phishing", frame),
                               headers=key(served))
        assert plain(default.as_numpy("predict")) == expected_in_process(
            trained, "phishing", frame).predictions.tolist()
    meta = http_client.get_model_metadata("phishing", other.version, headers=key(served))
    assert meta["versions"][0] == other.version
    assert trained["phishing"].version in meta["versions"]
    assert http_client.is_model_ready("phishing", other.version, headers=key(served))
    assert grpc_client.is_model_ready("phishing", other.version, headers=key(served))


def test_server_metadata_and_readiness(served: Any, http_client: Any, grpc_client: Any) -> None:
    assert http_client.is_server_live() and http_client.is_server_ready()
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    meta = http_client.get_server_metadata(headers=key(served))
    assert meta["name"] == "riskserve" and "binary_tensor_data" in meta["extensions"]
    assert grpc_client.get_server_metadata(headers=key(served)).name == "riskserve"
    for name in MODEL_NAMES:
        assert http_client.is_model_ready(name, headers=key(served))
        assert grpc_client.is_model_ready(name, headers=key(served))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_metadata_lists_the_contract(served: Any, trained: dict, http_client: Any,
                                           grpc_client: Any, name: str) -> None:
    spec = SPECS[name]
    inputs = [{"name": f.name, "datatype": f.datatype, "shape": [-1]} for f in spec.features]
    outputs = ["predict", "predict_proba"] if spec.is_classifier else ["predict"]
    rest = http_client.get_model_metadata(name, headers=key(served))
    rpc = grpc_client.get_model_metadata(name, headers=key(served), as_json=True)
    # REST tensors also carry parameters.nullable (the gRPC TensorMetadata has no such field).
    assert [t["parameters"]["nullable"] for t in rest["inputs"]] == [f.nullable
                                                                     for f in spec.features]
    for meta in (rest, rpc):
        assert meta["name"] == name and trained[name].version in meta["versions"]
        got = [{"name": t["name"], "datatype": t["datatype"],
                "shape": [int(d) for d in t["shape"]]} for t in meta["inputs"]]
        assert got == inputs
        assert [o["name"] for o in meta["outputs"]] == outputs
    predict = rest["outputs"][0]
    expected_type = "FP64" if spec.task == "regression" else (
        "INT64" if np.asarray(trained[name].model.classes).dtype.kind in "iu" else "BYTES")
    assert predict["datatype"] == expected_type and predict["shape"] == [-1]
    if spec.is_classifier:
        assert rest["outputs"][1]["shape"] == [-1, len(trained[name].model.classes)]


def test_reflection_lists_the_services(served: Any) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {SERVICE, "grpc.health.v1.Health"} <= services
        # A private pool: tritonclient already holds `inference.*` in the default one.
        pool = descriptor_pool.DescriptorPool(database)
        methods = {m.name for m in pool.FindServiceByName(SERVICE).methods}
    assert methods == {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                       "ModelMetadata", "ModelInfer"}


def test_standard_health_check_is_serving(served: Any) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


# ---- volume ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["risk-flag", "fraud"])
def test_grpc_request_of_1000_rows(served: Any, trained: dict, grpc_client: Any,
                                   name: str) -> None:
    frame = sample_frame(name, 1000)
    result = grpc_client.infer(name, triton_inputs(grpcclient, name, frame), headers=key(served))
    expected = expected_in_process(trained, name, frame)
    np.testing.assert_array_equal(result.as_numpy("predict"), expected.predictions)
    np.testing.assert_allclose(result.as_numpy("predict_proba"), expected.probabilities,
                               rtol=1e-6)


def test_1000_sequential_single_row_grpc_requests(served: Any, trained: dict,
                                                  grpc_client: Any) -> None:
    frame = sample_frame("fraud", 1000, seed=3)
    expected = expected_in_process(trained, "fraud", frame).predictions
    before = metric_value(served, "riskserve_predictions_total", model="fraud", protocol="grpc")
    got = []
    for i in range(len(frame)):
        row = frame.iloc[i:i + 1]
        result = grpc_client.infer("fraud", triton_inputs(grpcclient, "fraud", row),
                                   headers=key(served))
        got.append(int(result.as_numpy("predict")[0]))
    np.testing.assert_array_equal(got, expected)
    after = metric_value(served, "riskserve_predictions_total", model="fraud", protocol="grpc")
    assert after - before == 1000  # the same metrics as HTTP, labelled with the protocol


def test_concurrent_single_row_grpc_requests(served: Any, trained: dict) -> None:
    frame = sample_frame("risk-flag", 300, seed=5)
    expected = expected_in_process(trained, "risk-flag", frame).probabilities
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")

    def one(i: int) -> np.ndarray:
        result = client.infer("risk-flag", triton_inputs(grpcclient, "risk-flag",
                                                         frame.iloc[i:i + 1]),
                              headers=key(served))
        return result.as_numpy("predict_proba")[0]

    # Concurrent callers share model calls through the batcher: answers must not mix up rows.
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            got = np.array(list(pool.map(one, range(len(frame)))))
    finally:
        client.close()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_grpc_auth_failures_are_counted(served: Any, stub: Any) -> None:
    before = metric_value(served, "riskserve_auth_failures_total", protocol="grpc",
                          reason="invalid")
    with pytest.raises(grpc.RpcError):
        stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="fraud"),
                           metadata=(("x-api-key", "nope"),), timeout=10)
    after = metric_value(served, "riskserve_auth_failures_total", protocol="grpc",
                         reason="invalid")
    assert after - before == 1


# ---- two workers on one port -----------------------------------------------------------------

def _socket_inodes(port: int, state: str) -> set[str]:
    """Inodes of TCP sockets bound locally to `port` in `state` (any address, IPv4 or 6)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(fields[9])
    return inodes


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _owners(inodes: set[str], pids: set[int]) -> set[int]:
    """Which of `pids` hold one of the socket `inodes` open."""
    targets = {f"socket:[{i}]" for i in inodes}
    owners = set()
    for pid in pids:
        try:
            links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:  # the process exited meanwhile
            continue
        if links & targets:
            owners.add(pid)
    return owners


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT balancing and /proc are Linux")
def test_two_workers_serve_grpc_and_http_on_sockets_of_their_own(trained: dict,
                                                   tmp_path: Path) -> None:
    # server.start gives it a home of its own, so it cannot wipe the session server's metrics.
    svc = server.start(tmp_path / "two-workers.log", {}, workers=2)
    channels: list[grpc.Channel] = []
    try:
        deadline = time.monotonic() + 90
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = _owners(_socket_inodes(svc.grpc_port, LISTEN), _descendants(svc.proc.pid))
            time.sleep(0.2)  # poll interval while the second worker starts
        assert len(workers) == 2, f"listening workers: {workers}\n{svc.log_text()[-2000:]}"

        frame = sample_frame("fraud", 1)
        expected = expected_in_process(trained, "fraud", frame).predictions.tolist()
        request = typed_request("fraud", frame)
        serving: set[int] = set()
        # Each channel gets its own TCP connection; the kernel picks a worker per connection.
        while serving != workers and len(channels) < 200 and time.monotonic() < deadline:
            channel = grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}",
                                            options=[("grpc.use_local_subchannel_pool", 1)])
            channels.append(channel)
            answer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                request, metadata=(("x-api-key", svc.key),), timeout=30)
            assert list(answer.outputs[0].contents.int64_contents) == expected
            serving = _owners(_socket_inodes(svc.grpc_port, ESTABLISHED), workers)
        assert serving == workers, f"{len(channels)} connections, all served by {serving}"
        assert re.search(r"Completed async startup hook: start_grpc", svc.log_text())
        # HTTP too: one SO_REUSEPORT socket per worker (bentoml_fixes "socket-per-worker"),
        # not BentoML's one shared socket, whose connections pile onto one worker.
        http = _socket_inodes(svc.port, LISTEN)
        assert len(http) == 2, f"HTTP listening sockets: {http}"
        assert {w for w in workers if _owners(http, {w})} == workers
        assert all(len(_owners({i}, workers)) == 1 for i in http)  # one each, not shared
    finally:
        for channel in channels:
            channel.close()
        svc.stop()
