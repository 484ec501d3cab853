"""Open Inference Protocol tensors <-> riskserve feature columns and prediction outputs.

Protocol-neutral: the REST app (JSON data or Triton's binary tensor extension) and the gRPC
servicer (typed contents or raw_input_contents) both turn a request into `Tensor`s, and this
module checks them against the model contract (one tensor per feature, a datatype that fits
the feature, shape [N] or [N, 1]), decodes them with numpy and hands them to
`validation.columns_from_arrays`, so values are accepted or rejected exactly as on /v1.
Outputs are `predict` [N] and, for classifiers, `predict_proba` [N, K].
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from riskserve.core import validation
from riskserve.core.scoring import Prediction, ScoringModel
from riskserve.core.specs import Feature, ModelSpec, per_spec
from riskserve.errors import InvalidInput

SERVER_NAME = "riskserve"
# Triton's binary tensor data extension: what tritonclient.http uses by default.
EXTENSIONS = ("binary_tensor_data",)

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"

# Little-endian numpy dtypes of the fixed-size datatypes (raw contents are little-endian).
NUMPY_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code) for name, code in {
        "BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
        "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
        "FP32": "<f4", "FP64": "<f8",
    }.items()
}
# Every numeric datatype fits a numeric feature: validation range-checks the values and rejects
# fractions for integer features, so a client may send amounts as INT32 or ages as FP32.
NUMERIC = ("FP64", "FP32", "INT64", "INT32", "INT16", "INT8",
           "UINT64", "UINT32", "UINT16", "UINT8")
_INTEGER = frozenset(d for d in NUMERIC if "INT" in d)
_LENGTH = struct.Struct("<I")


@dataclass(slots=True)
class Tensor:
    """One input tensor as received; `data` is decoded only after the contract checks.

    `data` is a JSON array (REST), a typed protobuf sequence (gRPC contents), or raw
    little-endian bytes when `raw` is true (gRPC raw_input_contents, REST binary data).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any
    raw: bool = False


@dataclass
class Output:
    """One output tensor: `values` has `shape`; `parameters` go into the response as-is."""

    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray
    parameters: dict[str, str] = field(default_factory=dict)


def accepted_datatypes(f: Feature) -> tuple[str, ...]:
    """The datatypes an input tensor for `f` may declare; the contract's own comes first."""
    if f.is_category:
        return ("BYTES",)
    others = tuple(d for d in NUMERIC if d != f.datatype)
    # BOOL only where a yes/no flag is what the feature means (0/1 integer features).
    flag = ("BOOL",) if f.kind == "int" and f.min == 0 and f.max == 1 else ()
    return (f.datatype, *others, *flag)


def _datatype_expectation(f: Feature) -> str:
    allowed = accepted_datatypes(f)
    if len(allowed) == 1:
        return f"datatype {allowed[0]}"
    return f"datatype {allowed[0]} (also accepted: {', '.join(allowed[1:])})"


@per_spec
def _accepted_by_name(spec: ModelSpec) -> dict[str, frozenset[str]]:
    """Each input's accepted datatypes, by name."""
    return {f.name: frozenset(accepted_datatypes(f)) for f in spec.features}


def _conforming_rows(spec: ModelSpec, tensors: Sequence[Tensor]) -> int | None:
    """N when the tensors are exactly the contract's inputs, each once, with an accepted
    datatype and the same shape [N] or [N, 1] (N >= 1); else None, and `check_tensors` finds
    and names what is wrong. The per-request path: one dict lookup per tensor."""
    accepted = _accepted_by_name(spec)
    if len(tensors) != len(accepted):
        return None
    shape = tensors[0].shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        return None
    names = set()
    for t in tensors:
        if t.shape != shape or t.datatype not in accepted.get(t.name, ()):
            return None
        names.add(t.name)
    return shape[0] if len(names) == len(accepted) else None


def check_tensors(spec: ModelSpec, tensors: Sequence[Tensor]) -> int:
    """Check names, datatypes and shapes against the contract; returns the row count N.

    Runs before any data is decoded, so a wrong request costs nothing and the row limit can
    be enforced on the declared shape.
    """
    n = _conforming_rows(spec, tensors)
    return n if n is not None else _check_each(spec, tensors)


def _check_each(spec: ModelSpec, tensors: Sequence[Tensor]) -> int:
    """check_tensors one tensor at a time: the first problem found is the error."""
    names = spec.feature_names
    if not tensors:
        raise InvalidInput("inputs", f"one input tensor per feature: {', '.join(names)}")
    seen: set[str] = set()
    for t in tensors:
        if t.name in seen:
            raise InvalidInput(t.name, "one tensor per input", problem="input given twice")
        seen.add(t.name)
        try:
            f = spec.feature(t.name)
        except KeyError:
            raise InvalidInput(t.name, f"no such input; {spec.name} takes "
                                       f"{', '.join(names)}") from None
        if t.datatype not in accepted_datatypes(f):
            raise InvalidInput(t.name, _datatype_expectation(f),
                               problem=f"datatype {t.datatype!r} does not fit this "
                                       f"{f.kind} feature")
        shape = list(t.shape)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or min(shape) < 0:
            raise InvalidInput(t.name, "shape [N] or [N, 1]: one value per row",
                               problem=f"shape {shape}")
    missing = [n for n in names if n not in seen]
    if missing:
        f = spec.feature(missing[0])
        raise InvalidInput(f.name, f"a tensor with {_datatype_expectation(f)} and shape [N]",
                           problem="input is missing")
    rows = {t.name: t.shape[0] for t in tensors}
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"'{k}' {v}" for k, v in rows.items())
        raise InvalidInput(tensors[0].name, "every input with the same number of rows N",
                           problem=f"rows per input: {counts}")
    n = rows[tensors[0].name]
    if n < 1:
        raise InvalidInput(tensors[0].name, "at least one row", problem="shape [0]")
    return n


def _count_error(t: Tensor, count: int, got: str) -> InvalidInput:
    return InvalidInput(t.name, f"{count} values for shape {list(t.shape)}", problem=got)


# Below this many elements Python's bytes.decode is faster than one numpy call (~4 us fixed).
_NUMPY_DECODE_FROM = 32


def _utf8(t: Tensor, items: Sequence[bytes]) -> np.ndarray:
    """bytes elements -> object array of str: numpy decodes many at once, Python a few (a
    single row's category) faster; the strings are the same."""
    try:
        if len(items) < _NUMPY_DECODE_FROM:
            out = np.empty(len(items), dtype=object)
            out[:] = [bytes(b).decode("utf-8") for b in items]
            return out
        return np.strings.decode(np.array(items, dtype=np.bytes_), "utf-8").astype(object)
    except UnicodeDecodeError:
        raise InvalidInput(t.name, "UTF-8 text in every BYTES element",
                           problem="invalid UTF-8") from None


def _bytes_from_raw(t: Tensor, count: int) -> np.ndarray:
    """Length-prefixed BYTES elements (4-byte little-endian length, then the bytes).

    Each element's offset depends on the previous length, so the offsets are walked in a
    loop; the UTF-8 decoding is then done by numpy in one call.
    """
    buf = memoryview(t.data)
    size = len(buf)
    items: list[bytes] = []
    pos = 0
    for i in range(count):
        if pos + 4 > size:
            raise _count_error(t, count, f"raw BYTES data ends after {i} elements")
        (length,) = _LENGTH.unpack_from(buf, pos)
        pos += 4
        if pos + length > size:
            raise _count_error(t, count, f"raw BYTES element {i} runs past the end of the data")
        items.append(bytes(buf[pos:pos + length]))
        pos += length
    if pos != size:
        raise _count_error(t, count, f"{size - pos} bytes left after {count} BYTES elements")
    return _utf8(t, items)


def _from_raw(t: Tensor, count: int) -> np.ndarray:
    if t.datatype == "BYTES":
        return _bytes_from_raw(t, count)
    dtype = NUMPY_DTYPES[t.datatype]
    if len(t.data) != count * dtype.itemsize:
        raise InvalidInput(t.name, f"{count * dtype.itemsize} bytes of raw {t.datatype} data "
                                   f"for shape {list(t.shape)}",
                           problem=f"got {len(t.data)} bytes")
    return np.frombuffer(t.data, dtype=dtype)


def _from_json(t: Tensor, count: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A JSON array (flat or nested [N, 1]) with elements of the declared datatype.

    Returns the values and, for numeric data, which elements were JSON `null` (NaN in the
    values). A NaN or inf that arrived as a number (Python's json takes `NaN`, `Infinity` and
    `1e999`) is not a null: validation refuses it.
    """
    try:
        flat = np.asarray(t.data).reshape(-1)
    except ValueError:
        raise _count_error(t, count, "nested arrays of different lengths") from None
    if flat.size != count:
        raise _count_error(t, count, f"got {flat.size}")
    kind = flat.dtype.kind
    if kind == "O":  # nulls (missing values) or mixed element types
        import pandas as pd  # imported where used (see riskserve.core.encoding)

        inferred = pd.api.types.infer_dtype(flat, skipna=True)
    else:
        inferred = {"U": "string", "b": "boolean", "i": "integer", "u": "integer",
                    "f": "floating"}.get(kind, "other")
    if t.datatype == "BYTES":
        if inferred in ("string", "empty"):
            return flat.astype(object), None
        raise InvalidInput(t.name, "JSON strings for BYTES data", problem=f"got {inferred} data")
    if t.datatype == "BOOL":
        if inferred == "boolean" and kind == "b":
            return flat, None
        raise InvalidInput(t.name, "JSON true/false for BOOL data", problem=f"got {inferred} data")
    if inferred not in ("integer", "floating", "mixed-integer-float", "empty"):
        raise InvalidInput(t.name, f"JSON numbers for {t.datatype} data",
                           problem=f"got {inferred} data")
    if kind == "O":
        nulls = np.fromiter((v is None for v in flat), dtype=bool, count=count)
        try:
            values = np.where(nulls, np.nan, flat).astype(np.float64)
        except OverflowError:  # an integer beyond float64: JSON numbers have no size limit
            raise InvalidInput(t.name, f"JSON numbers for {t.datatype} data",
                               problem="number too large") from None
    else:
        values, nulls = flat, None
    if t.datatype in _INTEGER and values.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        if (finite != np.floor(finite)).any():
            raise InvalidInput(t.name, f"whole numbers for {t.datatype} data",
                               problem="got a fractional value")
    return values, nulls


def _from_typed(t: Tensor, count: int) -> np.ndarray:
    """gRPC typed contents: the repeated field that matches the datatype."""
    if len(t.data) != count:
        raise _count_error(t, count, f"got {len(t.data)} in the contents field for "
                                     f"{t.datatype}")
    if t.datatype == "BYTES":
        return _utf8(t, list(t.data))
    return np.fromiter(t.data, dtype=NUMPY_DTYPES[t.datatype], count=count)


def decode(t: Tensor, rows: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The tensor's values as a 1-D numpy array of `rows` elements (after `check_tensors`),
    and which of them were an explicit null (JSON only: raw and typed contents have none)."""
    if t.raw:
        return _from_raw(t, rows), None
    if isinstance(t.data, list):
        return _from_json(t, rows)
    return _from_typed(t, rows), None


def to_columns(spec: ModelSpec, tensors: Sequence[Tensor], rows: int) -> dict[str, np.ndarray]:
    """Decode checked tensors and validate them into the columns the model scores.

    Non-finite numbers (a NaN or inf in FP32/FP64 contents, raw bytes or a JSON array) are
    refused by validation like on /v1; only a JSON `null` is a missing value.
    """
    arrays: dict[str, np.ndarray] = {}
    nulls: dict[str, np.ndarray] = {}
    for t in tensors:
        arrays[t.name], sent_null = decode(t, rows)
        if sent_null is not None:
            nulls[t.name] = sent_null
    return validation.columns_from_arrays(spec, arrays, nulls)


# ---- outputs -------------------------------------------------------------------------------

def output_names(model: ScoringModel) -> tuple[str, ...]:
    return (PREDICT, PREDICT_PROBA) if model.spec.is_classifier else (PREDICT,)


def predict_datatype(model: ScoringModel) -> str:
    """FP64 for regression; for classifiers the labels' type (INT64 or BYTES)."""
    if not model.spec.is_classifier:
        return "FP64"
    if model.spec.task == "binary":
        return "INT64"  # binary labels are always 0/1 (ScoringModel.predict)
    kind = np.asarray(model.classes).dtype.kind
    return {"i": "INT64", "u": "INT64", "b": "BOOL", "f": "FP64"}.get(kind, "BYTES")


def select_outputs(model: ScoringModel, requested: Sequence[str]) -> list[str]:
    """The outputs to return, in request order; every output when none are requested."""
    available = output_names(model)
    if not requested:
        return list(available)
    for name in requested:
        if name not in available:
            raise InvalidInput(name, f"an output of {model.spec.name}: {', '.join(available)}",
                               problem="no such output")
    return list(dict.fromkeys(requested))


def reject_classification(name: str, parameters: Mapping[str, Any]) -> None:
    """Triton's classification extension (top-K labels) is not offered; say so."""
    if "classification" in parameters:
        raise InvalidInput(name, f"no 'classification' parameter; request '{PREDICT}' and "
                                 f"'{PREDICT_PROBA}' instead", problem="unsupported parameter")


def class_labels(model: ScoringModel) -> str:
    """The predict_proba column labels, as a JSON array (parameters hold only scalars)."""
    return json.dumps([c.item() if hasattr(c, "item") else c for c in model.classes])


def outputs(model: ScoringModel, pred: Prediction, names: Sequence[str]) -> list[Output]:
    out: list[Output] = []
    n = len(pred)
    for name in names:
        if name == PREDICT:
            datatype = predict_datatype(model)
            values = (pred.predictions.astype(str).astype(object) if datatype == "BYTES"
                      else pred.predictions.astype(NUMPY_DTYPES[datatype], copy=False))
            out.append(Output(PREDICT, datatype, [n], values))
        else:
            proba = np.asarray(pred.probabilities, dtype=np.float64)
            out.append(Output(PREDICT_PROBA, "FP64", [n, proba.shape[1]], proba,
                              {"classes": class_labels(model)}))
    return out


def to_raw(o: Output) -> bytes:
    """Row-major little-endian bytes; BYTES elements length-prefixed as on input."""
    if o.datatype == "BYTES":
        encoded = [str(v).encode() for v in o.values.reshape(-1)]
        return b"".join(_LENGTH.pack(len(e)) + e for e in encoded)
    return np.ascontiguousarray(o.values, dtype=NUMPY_DTYPES[o.datatype]).tobytes()


def to_list(o: Output) -> list[Any]:
    """Flattened row-major values for JSON or typed protobuf contents."""
    return o.values.reshape(-1).tolist()


# ---- metadata ------------------------------------------------------------------------------

def input_parameters(f: Feature) -> dict[str, Any]:
    """Per-input metadata beyond name/datatype/shape: whether a JSON null is accepted."""
    return {"nullable": f.nullable}


def model_metadata(model: ScoringModel, versions: Sequence[str], *,
                   parameters: bool = False) -> dict[str, Any]:
    """The protocol's model metadata: inputs are the contract's features, one per tensor.

    With `parameters`, each input also carries `"parameters": {"nullable": ...}`. Only the REST
    form can: its metadata_tensor object (open_inference_rest.yaml) requires name, datatype and
    shape but allows more members, and `parameters` is the protocol's own name for extra
    tensor facts; the gRPC TensorMetadata message has exactly three fields, so the gRPC answer
    is built without it.
    """
    outs = [{"name": PREDICT, "datatype": predict_datatype(model), "shape": [-1]}]
    if model.spec.is_classifier:
        outs.append({"name": PREDICT_PROBA, "datatype": "FP64",
                     "shape": [-1, len(model.classes)]})
    inputs: list[dict[str, Any]] = []
    for f in model.spec.features:
        entry: dict[str, Any] = {"name": f.name, "datatype": f.datatype, "shape": [-1]}
        if parameters:
            entry["parameters"] = input_parameters(f)
        inputs.append(entry)
    return {
        "name": model.spec.name,
        "versions": list(versions),
        "platform": str(model.info.get("framework", "unknown")),
        "inputs": inputs,
        "outputs": outs,
    }


def available_versions(model: ScoringModel) -> list[str]:
    """Versions a client may request: every stored version, the served one first.

    Reads the model store, so callers run it in a thread.
    """
    from riskserve.core import store

    stored = [str(m.tag.version) for m in store.list_versions(model.spec.name)]
    return [model.version, *(v for v in stored if v != model.version)]


@functools.cache
def server_version() -> str:
    """The server version reported in server metadata: the BentoML runtime's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"bentoml-{version('bentoml')}"
    except PackageNotFoundError:
        return "unknown"


# ---- explanations --------------------------------------------------------------------------

CONTRIBUTIONS = "contributions"


def contributions(expl: Any) -> Output:
    """`parameters: {"explain": true}` adds this output: [N, F] FP64, columns named by
    `parameters.features` (a JSON array), what they add up to by `parameters.space`."""
    values = np.asarray(expl.contributions, dtype=np.float64)
    return Output(CONTRIBUTIONS, "FP64", list(values.shape), values,
                  {"features": json.dumps(list(expl.features)), "space": str(expl.space),
                   "base": json.dumps([float(b) for b in np.asarray(expl.base).reshape(-1)])})
