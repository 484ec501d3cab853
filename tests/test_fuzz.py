"""Fuzzing: schemathesis against the service's own OpenAPI document, plus property tests for
the routes that document does not cover (/v2 inference, the model listing) and for deep
/v1 inputs with real model names.

With a valid API key, no generated request may get a 5xx, an undeclared status, or a body
that violates the declared schema. Bounded by default (a fixed number of examples per
operation, derandomised so CI is reproducible); `make fuzz` runs many more, randomised:
RISKSERVE_FUZZ_EXAMPLES=<n> RISKSERVE_FUZZ_SEED=<int or "random">.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from riskserve.core.specs import MODEL_NAMES, SPECS

EXAMPLES = int(os.environ.get("RISKSERVE_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("RISKSERVE_FUZZ_SEED", "0")
# Operations the document must describe, so the fuzz run reaches each of them (it fuzzes
# every operation documented, these and any added later).
DOCUMENTED = {("POST", "/v1/predict"), ("POST", "/v1/predict_csv"), ("POST", "/v1/keystroke"),
              ("POST", "/v1/explain"), ("POST", "/v1/feedback"),
              ("GET", "/v1/models"), ("GET", "/v1/models/{name}"),
              ("POST", "/v2/models/{name}/infer"), ("GET", "/v2/health/ready"),
              ("GET", "/healthz"), ("GET", "/livez"), ("GET", "/readyz"), ("GET", "/metrics")}
# What Python's json (and pydantic's JSON parser, which BentoML uses) read as non-finite
# floats: each must be a 4xx naming the field, never a 500 and never a missing value.
NON_FINITE_TOKENS = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999")
# Not JSON at all, in the places a value goes: each must be a 400, never a 500.
NON_STANDARD_TOKENS = ("undefined", "nan", "inf", "+1", ".5", "01", "0x10", "'x'", "True",
                       "None", "1_000", "[1,]", "{,}", "/* c */ 1")
SENTINEL = "\u0000riskserve-token\u0000"


def bounded(examples: int = EXAMPLES) -> Any:
    """Hypothesis settings for a request-sending test: bounded, no database, no deadline."""
    fixed = SEED != "random"
    return settings(max_examples=examples, deadline=None, database=None, derandomize=fixed,
                    phases=(Phase.generate, Phase.shrink), print_blob=True,
                    suppress_health_check=list(HealthCheck))


def seeded(test: Any) -> Any:
    return seed(int(SEED))(test) if SEED not in ("random", "0") else test


@pytest.fixture(scope="module")
def openapi(served: Any) -> Any:
    import schemathesis

    return schemathesis.openapi.from_url(f"{served.url}/docs.json", timeout=30)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_openapi_operations_never_5xx_and_conform(served: Any, openapi: Any, mode: str) -> None:
    """schemathesis: generated and mutated requests for every documented operation."""
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    operations = [result.ok() for result in openapi.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= DOCUMENTED
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    seen: set[int] = set()
    for op in operations:
        if generation is GenerationMode.NEGATIVE and op.method.upper() == "GET":
            continue  # the probes take no input to mutate

        @bounded()
        @given(case=op.as_strategy(generation_mode=generation))
        def fuzz(case: Any) -> None:
            response = case.call(base_url=served.url, headers=served.headers, timeout=30)
            seen.add(response.status_code)
            case.validate_response(response, checks=checks)

        seeded(fuzz)()
    assert seen and max(seen) < 500, seen


def numeric_leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every number (not bool) inside a JSON value."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in numeric_leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in numeric_leaves(v, (*path, i))]
    return [path] if type(value) in (int, float) else []


def with_token(body: Any, path: tuple, token: str) -> bytes:
    """`body` as JSON text with the value at `path` replaced by the raw `token`."""
    if not path:
        return token.encode()
    doc = json.loads(json.dumps(body))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = SENTINEL
    return json.dumps(doc).replace(json.dumps(SENTINEL), token).encode()


def test_openapi_operations_with_non_finite_and_non_standard_tokens(served: Any,
                                                                    openapi: Any) -> None:
    """schemathesis: valid generated JSON bodies, one value swapped for `NaN`, `Infinity`,
    `1e999` or a token that is not JSON at all; every answer a declared 4xx, never a 5xx."""
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    seen: Counter[int] = Counter()
    json_ops = [op for op in (r.ok() for r in openapi.get_all_operations())
                if op.method.upper() == "POST" and op.body
                and any(b.media_type == "application/json" for b in op.body)]
    assert {op.path for op in json_ops} >= {"/v1/predict", "/v1/keystroke"}
    for op in json_ops:

        @bounded()
        @given(case=op.as_strategy(generation_mode=GenerationMode.POSITIVE,
                                   media_type="application/json"),
               token=st.sampled_from(NON_FINITE_TOKENS + NON_STANDARD_TOKENS),
               pick=st.integers(0, 1_000))
        def fuzz(case: Any, token: str, pick: int) -> None:
            leaves = numeric_leaves(case.body) or [()]
            case.body = with_token(case.body, leaves[pick % len(leaves)], token)
            case.media_type = "application/json"
            response = case.call(base_url=served.url, headers=served.headers, timeout=30)
            seen[response.status_code] += 1
            case.validate_response(response, checks=checks)
            assert 400 <= response.status_code < 500, response.text

        seeded(fuzz)()
    assert seen and max(seen) < 500, seen


def test_malformed_multipart_is_a_400(served: Any) -> None:
    """Found by the fuzzer: a broken multipart body was a 500 from BentoML's form parsing."""
    body = b"--b\r\n\xc3\xb4\xc3\xbd\xf2\xb8\xbb\x93\xc3\x90--b--\r\n"
    resp = httpx.post(f"{served.url}/v1/predict_csv", content=body, timeout=30,
                      headers={**served.headers, "content-type": "multipart/form-data; boundary=b"})
    assert resp.status_code == 400, resp.text
    assert "multipart" in resp.json()["error"].lower()


def test_docs_declare_the_real_answers(served: Any) -> None:
    doc = httpx.get(f"{served.url}/docs.json", timeout=30).json()
    predict = doc["paths"]["/v1/predict"]["post"]
    assert {"200", "400", "401", "404", "413", "422", "429", "500", "504"} <= set(
        predict["responses"])
    assert doc["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    assert "type" not in doc["components"]["schemas"]["NotFound"]["properties"]["detail"]


# ---- property tests: real model names, so generated rows reach validation and scoring ------

JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=1))


def valid_value(feature: Any) -> st.SearchStrategy[Any]:
    """A value the contract accepts for `feature`."""
    if feature.is_category:
        return (st.sampled_from(feature.categories) if feature.categories
                else st.text(min_size=1, max_size=8))
    lo = -1e6 if feature.min is None else feature.min
    hi = 1e6 if feature.max is None else min(feature.max, 1e15)
    if feature.kind == "int":
        return st.integers(math.ceil(lo), math.floor(hi))
    return st.floats(lo, hi, allow_nan=False)


def value_for(feature: Any) -> st.SearchStrategy[Any]:
    """Mostly valid values, sometimes just out of range, sometimes anything JSON carries."""
    edge = (st.sampled_from([v for v in (feature.min, feature.max) if v is not None] or [0])
            .map(lambda v: v - 1.5 if v == feature.min else v + 1.5))
    return st.one_of(valid_value(feature), valid_value(feature), edge, JSON_VALUES)


@st.composite
def rows_for(draw: Any, name: str) -> list[dict[str, Any]]:
    """1-4 rows: half the requests entirely valid, the rest with mutated values and keys."""
    features = SPECS[name].features
    valid = draw(st.booleans())
    out = []
    for _ in range(draw(st.integers(1, 4))):
        row = {f.name: draw(valid_value(f) if valid else value_for(f)) for f in features}
        if not valid and draw(st.integers(0, 4)) == 0:  # a feature missing, or one too many
            row.pop(draw(st.sampled_from([f.name for f in features])))
        if not valid and draw(st.integers(0, 4)) == 0:
            row[draw(st.text(min_size=1, max_size=6))] = draw(JSON_VALUES)
        out.append(row)
    return out


@pytest.mark.parametrize("name", ["fraud", "risk-flag", "cyber-threat"])
def test_v1_predict_rows_property(served: Any, name: str) -> None:
    features = set(SPECS[name].feature_names)
    seen: set[int] = set()

    @bounded(EXAMPLES * 2)
    @given(rows=rows_for(name))
    def check(rows: list[dict[str, Any]]) -> None:
        resp = httpx.post(f"{served.url}/v1/predict", headers=served.headers, timeout=30,
                          json={"model": name, "inputs": rows})
        seen.add(resp.status_code)
        assert resp.status_code in (200, 400, 413, 422), resp.text
        body = resp.json()
        if resp.status_code == 200:
            assert len(body["predictions"]) == len(rows)
            if body.get("probabilities") is not None:
                assert all(math.isclose(sum(p), 1.0, rel_tol=1e-6) for p in body["probabilities"])
        else:
            assert isinstance(body["error"], str) and body["error"]
        if resp.status_code == 422:  # names the field: a feature, or the unknown one sent
            field = body["detail"]["field"]
            assert field in features or any(field in r for r in rows), body

    seeded(check)()
    assert 200 in seen and 422 in seen, seen  # both paths were reached


DATATYPES = ["FP64", "FP32", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES", "FP16", "NOPE"]


@st.composite
def v2_requests(draw: Any, name: str) -> dict[str, Any]:
    """Half the requests valid (every feature, its datatype, shape [n]); the rest mutated."""
    valid = draw(st.booleans())
    n_valid = draw(st.integers(1, 3))
    inputs = []
    for f in SPECS[name].features:
        if valid:
            data = draw(st.lists(valid_value(f), min_size=n_valid, max_size=n_valid))
            inputs.append({"name": f.name, "datatype": f.datatype, "shape": [n_valid],
                           "data": data})
            continue
        if draw(st.integers(0, 14)) == 0:
            continue  # a missing input
        n = draw(st.integers(0, 3))
        datatype = f.datatype if draw(st.booleans()) else draw(st.sampled_from(DATATYPES))
        shape = [n] if draw(st.integers(0, 5)) else draw(st.lists(st.integers(-1, 3), max_size=3))
        data = draw(st.lists(value_for(f), min_size=n, max_size=n)
                    if draw(st.integers(0, 5)) else JSON_VALUES)
        inputs.append({"name": f.name, "datatype": datatype, "shape": shape, "data": data})
    body: dict[str, Any] = {"inputs": inputs}
    if not valid and draw(st.integers(0, 5)) == 0:
        body["outputs"] = [{"name": draw(st.sampled_from(["predict", "predict_proba", "x"]))}]
    if not valid and draw(st.integers(0, 9)) == 0:
        body["id"] = draw(JSON_VALUES)
    return body


@pytest.mark.parametrize("name", ["fraud", "risk-flag"])
def test_v2_infer_property(served: Any, name: str) -> None:
    """Open Inference Protocol REST, which /docs.json does not describe."""
    seen: set[int] = set()

    @bounded(EXAMPLES * 2)
    @given(body=v2_requests(name))
    def check(body: dict[str, Any]) -> None:
        resp = httpx.post(f"{served.url}/v2/models/{name}/infer", headers=served.headers,
                          json=body, timeout=30)
        seen.add(resp.status_code)
        assert resp.status_code in (200, 400, 413), resp.text
        doc = resp.json()
        if resp.status_code == 200:
            assert doc["model_name"] == name and doc["outputs"]
        else:
            assert isinstance(doc["error"], str) and doc["error"]

    seeded(check)()
    assert 200 in seen and 400 in seen, seen


@bounded(EXAMPLES * 2)
# "\n" is left out: an ASGI path arrives percent-decoded and Starlette's mount pattern does not
# match a newline, so BentoML's outer router answers that path with its own plain-text 404.
@given(name=st.one_of(st.sampled_from(MODEL_NAMES),
                     st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n"),
                             min_size=1, max_size=20)
                     .filter(lambda s: s not in (".", ".."))))
def check_listing(served: Any, name: str) -> None:
    resp = httpx.get(f"{served.url}/v1/models/{quote(name, safe='')}", headers=served.headers,
                     timeout=30)
    assert resp.status_code in (200, 404), resp.text
    body = resp.json()
    if resp.status_code == 200:
        assert body["name"] == name and body["features"]
    else:
        assert "known" in body["detail"] or "error" in body


def test_model_listing_property(served: Any) -> None:
    """GET /v1/models/{name}, mounted outside BentoML's @api, for any name."""
    seeded(check_listing)(served)
    assert httpx.get(f"{served.url}/v1/models", headers=served.headers,
                     timeout=30).status_code == 200


CATEGORY_VALUES = st.lists(st.one_of(st.none(), st.sampled_from(["single", "married", "x", ""]),
                                     st.text(max_size=4)), min_size=1, max_size=80)


@bounded(200)
@given(values=CATEGORY_VALUES)
def test_category_check_fast_path_agrees_with_pandas(values: list[str | None]) -> None:
    """The pure-Python paths for small inputs (encoding.SMALL: category codes, missing values)
    accept and reject exactly what the pandas paths do (same field, rows and value)."""
    import numpy as np

    from riskserve.core import encoding, validation
    from riskserve.errors import InvalidInput

    spec = SPECS["risk-flag"]
    feature = spec.feature("married")
    arr = np.empty(len(values), dtype=object)
    arr[:] = values

    def outcome(small: int) -> Any:
        saved = encoding.SMALL
        encoding.SMALL = small
        try:
            codes = encoding.category_codes(arr, ("married", "single")).tolist()
            return codes, validation.check_category(spec, feature, arr, offset=3).tolist()
        except InvalidInput as exc:
            return exc.to_dict()
        finally:
            encoding.SMALL = saved

    assert outcome(small=10_000) == outcome(small=0)


# ---- non-finite numbers on real features: a 4xx naming the field, on every protocol ----------

NUMERIC_FEATURES = {name: [f.name for f in SPECS[name].features if not f.is_category]
                    for name in ("fraud", "risk-flag", "cyber-threat")}


@st.composite
def tokened_rows(draw: Any, name: str) -> tuple[bytes, str, int]:
    """Valid rows for `name` with one numeric feature of one row sent as a non-finite token."""
    rows = [{f.name: draw(valid_value(f)) for f in SPECS[name].features}
            for _ in range(draw(st.integers(1, 3)))]
    row = draw(st.integers(0, len(rows) - 1))
    feature = draw(st.sampled_from(NUMERIC_FEATURES[name]))
    body = with_token({"model": name, "inputs": rows}, ("inputs", row, feature),
                      draw(st.sampled_from(NON_FINITE_TOKENS)))
    return body, feature, row


@pytest.mark.parametrize("name", list(NUMERIC_FEATURES))
def test_v1_non_finite_numbers_are_a_422_naming_the_field(served: Any, name: str) -> None:
    @bounded()
    @given(sent=tokened_rows(name))
    def check(sent: tuple[bytes, str, int]) -> None:
        body, feature, row = sent
        resp = httpx.post(f"{served.url}/v1/predict", content=body, timeout=30,
                          headers={**served.headers, "content-type": "application/json"})
        assert resp.status_code == 422, resp.text
        detail = resp.json()["detail"]
        assert detail["field"] == feature and detail["rows"] == [row], detail
        assert detail["problem"] == "not a finite number", detail

    seeded(check)()


@st.composite
def tokened_csv(draw: Any, name: str) -> tuple[bytes, str, int]:
    """A CSV of valid rows for `name` with one numeric cell spelled inf, nan, Infinity..."""
    features = SPECS[name].features
    # Open vocabularies get plain names: a generated "NA" or " " is a CSV null of its own.
    cell = {f.name: (st.sampled_from(f.categories or ("Pune", "Delhi", "Engineer"))
                     if f.is_category else valid_value(f)) for f in features}
    rows = [[draw(cell[f.name]) for f in features] for _ in range(draw(st.integers(1, 4)))]
    row = draw(st.integers(0, len(rows) - 1))
    feature = draw(st.sampled_from(NUMERIC_FEATURES[name]))
    rows[row][[f.name for f in features].index(feature)] = draw(st.sampled_from(
        ["inf", "-inf", "Infinity", "-Infinity", "nan", "NaN", "1e999"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.name for f in features])
    writer.writerows([repr(v) if isinstance(v, float) else v for v in r] for r in rows)
    return out.getvalue().encode(), feature, row


@pytest.mark.parametrize("name", ["fraud", "risk-flag"])
def test_csv_non_finite_cells_are_a_422_naming_the_field(served: Any, name: str) -> None:
    @bounded()
    @given(sent=tokened_csv(name))
    def check(sent: tuple[bytes, str, int]) -> None:
        payload, feature, row = sent
        resp = httpx.post(f"{served.url}/v1/predict_csv", headers=served.headers, timeout=30,
                          data={"model": name}, files={"file": ("rows.csv", payload, "text/csv")})
        assert resp.status_code == 422, resp.text
        detail = resp.json()["detail"]
        assert detail["field"] == feature and detail["rows"] == [row], detail

    seeded(check)()


@pytest.mark.parametrize("name", ["fraud", "risk-flag"])
def test_v2_non_finite_numbers_are_a_400_naming_the_input(served: Any, name: str) -> None:
    @bounded()
    @given(data=st.data())
    def check(data: Any) -> None:
        n = data.draw(st.integers(1, 3))
        inputs = [{"name": f.name, "datatype": f.datatype, "shape": [n],
                   "data": data.draw(st.lists(valid_value(f), min_size=n, max_size=n))}
                  for f in SPECS[name].features]
        i = data.draw(st.sampled_from([i for i, f in enumerate(SPECS[name].features)
                                       if not f.is_category]))
        row = data.draw(st.integers(0, n - 1))
        body = with_token({"inputs": inputs}, ("inputs", i, "data", row),
                          data.draw(st.sampled_from(NON_FINITE_TOKENS)))
        resp = httpx.post(f"{served.url}/v2/models/{name}/infer", content=body, timeout=30,
                          headers={**served.headers, "content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert resp.json()["detail"]["field"] == inputs[i]["name"], resp.text

    seeded(check)()


# ---- gRPC ModelInfer with random protos: never INTERNAL or UNKNOWN ---------------------------

CONTENTS_FIELD = {"FP64": "fp64_contents", "FP32": "fp32_contents", "INT64": "int64_contents",
                  "INT32": "int_contents", "INT16": "int_contents", "INT8": "int_contents",
                  "UINT64": "uint64_contents", "UINT32": "uint_contents",
                  "UINT16": "uint_contents", "UINT8": "uint_contents", "BOOL": "bool_contents",
                  "BYTES": "bytes_contents"}
CONTENTS_VALUES = {
    "fp64_contents": st.floats(allow_nan=True, allow_infinity=True),
    "fp32_contents": st.floats(allow_nan=True, allow_infinity=True, width=32),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "bool_contents": st.booleans(),
    "bytes_contents": st.one_of(st.binary(max_size=12),
                                st.sampled_from([b"TRANSFER", b"PAYMENT", b"single", b"\xff"])),
}
GRPC_OK = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED"}
GOOD_ROW = {"step": 1, "type": "TRANSFER", "amount": 181.0, "oldbalance_org": 181.0,
            "newbalance_orig": 0.0, "oldbalance_dest": 0.0, "newbalance_dest": 0.0}


@st.composite
def infer_requests(draw: Any) -> bytes:
    """A serialized ModelInferRequest: real or random model and inputs, typed or raw contents,
    values in or out of range (NaN and inf included), shapes and counts that may not match."""
    from tritonclient.grpc import service_pb2 as pb

    name = draw(st.one_of(st.sampled_from(MODEL_NAMES), st.text(max_size=8)))
    request = pb.ModelInferRequest(model_name=name, id=draw(st.text(max_size=4)))
    if draw(st.integers(0, 5)) == 0:
        request.model_version = draw(st.text(max_size=6))
    spec = SPECS.get(name, SPECS["fraud"])
    raw = draw(st.integers(0, 3)) == 0
    n = draw(st.integers(0, 3))
    names = [f.name for f in spec.features]
    if draw(st.integers(0, 4)) == 0:  # a missing, an extra or a repeated input
        names = draw(st.lists(st.one_of(st.sampled_from(names), st.text(max_size=6)),
                              max_size=len(names) + 2))
    for input_name in names:
        feature = spec.feature(input_name) if input_name in spec.feature_names else None
        datatype = (feature.datatype if feature is not None and draw(st.booleans())
                    else draw(st.sampled_from([*CONTENTS_FIELD, "FP16", "NOPE"])))
        shape = ([n] if draw(st.integers(0, 4))
                 else draw(st.lists(st.integers(-2, 2**40), max_size=3)))
        tensor = request.inputs.add(name=input_name, datatype=datatype, shape=shape)
        if draw(st.integers(0, 6)) == 0:
            tensor.parameters["p"].string_param = draw(st.text(max_size=4))
        field_name = CONTENTS_FIELD.get(datatype, draw(st.sampled_from(list(CONTENTS_VALUES))))
        count = n if draw(st.integers(0, 4)) else draw(st.integers(0, 4))
        if raw:
            request.raw_input_contents.append(draw(st.binary(max_size=8 * max(count, 1) + 4)))
        elif draw(st.integers(0, 8)):
            values = draw(st.lists(CONTENTS_VALUES[field_name], min_size=count, max_size=count))
            getattr(tensor.contents, field_name).extend(values)
    for _ in range(draw(st.integers(0, 1))):
        request.outputs.add(name=draw(st.sampled_from(["predict", "predict_proba", "x"])))
    return request.SerializeToString()


def test_grpc_model_infer_random_protos_never_internal(served: Any) -> None:
    """Generated ModelInferRequests sent to the real gRPC server: each answer is OK or a
    client error (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED), never INTERNAL/UNKNOWN."""
    import grpc

    codes: Counter[str] = Counter()
    with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                   request_serializer=None, response_deserializer=None)

        @bounded(EXAMPLES * 8)
        @given(payload=infer_requests())
        def check(payload: bytes) -> None:
            try:
                call(payload, metadata=(("x-api-key", served.key),), timeout=30)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
                assert code in GRPC_OK, f"{code}: {exc.details()}"
            codes[code] += 1

        seeded(check)()
    assert codes["INVALID_ARGUMENT"] > 0, codes


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_grpc_non_finite_is_invalid_argument_naming_the_input(served: Any, datatype: str,
                                                              raw: bool) -> None:
    """NaN and inf in gRPC fp32/fp64 contents or raw bytes: INVALID_ARGUMENT on `amount`."""
    import grpc
    import numpy as np
    from tritonclient.grpc import service_pb2 as pb

    for value in (math.nan, math.inf, -math.inf):
        request = pb.ModelInferRequest(model_name="fraud")
        for f in SPECS["fraud"].features:
            dtype = datatype if f.name == "amount" else f.datatype
            t = request.inputs.add(name=f.name, datatype=dtype, shape=[2])
            values = [value, 1.0] if f.name == "amount" else [GOOD_ROW[f.name]] * 2
            if raw:
                request.raw_input_contents.append(
                    b"".join(len(v).to_bytes(4, "little") + v for v in
                             (s.encode() for s in values)) if dtype == "BYTES"
                    else np.array(values, dtype={"FP32": "<f4", "FP64": "<f8",
                                                 "INT64": "<i8"}[dtype]).tobytes())
            elif dtype == "BYTES":
                t.contents.bytes_contents.extend(s.encode() for s in values)
            else:
                getattr(t.contents, CONTENTS_FIELD[dtype]).extend(values)
        with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
            call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                       request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as err:
                call(request.SerializeToString(), metadata=(("x-api-key", served.key),),
                     timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'amount'" in err.value.details() and "finite" in err.value.details()

