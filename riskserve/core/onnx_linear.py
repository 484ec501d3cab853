"""ONNX graph for the cyber-threat regressor, which skl2onnx cannot convert.

The model is `TransformedTargetRegressor(log1p / expm1)` around
`ColumnTransformer(one-hot country, log1p rates) -> StandardScaler -> Ridge`. skl2onnx has no
converter for `FunctionTransformer(np.log1p)` or `TransformedTargetRegressor`, but the fitted
model is a few numbers: a weight per country and per rate (the scaler folded into the ridge
coefficients) and an intercept. The graph computes in float64 like scikit-learn does after the
one-hot step, so it matches the native prediction to ~1e-9 relative. Anything not of exactly this
shape raises `Unsupported` and the version serves native.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _fitted_parts(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(country categories, country weights, rate weights, intercept) in log space."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    from riskserve.core.compiled import Unsupported

    pipe = model.regressor_
    if not (model.func is np.log1p and model.inverse_func is np.expm1
            and isinstance(pipe, Pipeline) and len(pipe.steps) == 3):
        raise Unsupported("expected TransformedTargetRegressor(log1p/expm1) over a 3-step "
                          "pipeline")
    features, scale, ridge = (step for _, step in pipe.steps)
    if not (isinstance(features, ColumnTransformer) and isinstance(scale, StandardScaler)
            and isinstance(ridge, Ridge) and features.remainder == "drop"):
        raise Unsupported("expected ColumnTransformer -> StandardScaler -> Ridge")
    (_, onehot, cat_cols), (_, log1p, rate_cols) = features.transformers_[:2]
    if not (isinstance(onehot, OneHotEncoder) and onehot.handle_unknown == "ignore"
            and onehot.drop_idx_ is None and list(cat_cols) == [0]
            and isinstance(log1p, FunctionTransformer) and log1p.func is np.log1p
            and len(features.transformers_) == 2):
        raise Unsupported("expected one-hot(column 0) and log1p(the other columns)")
    categories = np.asarray(onehot.categories_[0], dtype=np.float64)
    if np.isnan(categories).any():
        raise Unsupported("a NaN country category cannot be matched with Equal")
    mean = scale.mean_ if scale.with_mean else np.zeros(len(ridge.coef_))
    std = scale.scale_ if scale.with_std else np.ones(len(ridge.coef_))
    weights = np.asarray(ridge.coef_, dtype=np.float64).reshape(-1) / std
    intercept = float(np.asarray(ridge.intercept_).reshape(-1)[0] - weights @ mean)
    n_cat = len(categories)
    rates = list(rate_cols)
    if rates != list(range(1, 1 + len(rates))) or len(weights) != n_cat + len(rates):
        raise Unsupported("unexpected column layout")
    return categories, weights[:n_cat], weights[n_cat:], intercept


def log_ridge_to_onnx(model: Any, n_features: int, input_name: str,
                      opset: dict[str, int]) -> Any:
    """expm1(onehot(x0) . w_c + log1p(x[:, 1:]) . w_r + b) as an ONNX ModelProto."""
    from onnx import TensorProto, helper, numpy_helper

    categories, w_cat, w_rate, intercept = _fitted_parts(model)
    if n_features != 1 + len(w_rate):
        from riskserve.core.compiled import Unsupported

        raise Unsupported(f"matrix has {n_features} columns, the model {1 + len(w_rate)}")
    consts = {
        "cats": categories.reshape(1, -1),
        "w_cat": w_cat.reshape(-1, 1),
        "w_rate": w_rate.reshape(-1, 1),
        "one": np.array(1.0),
        "b": np.array(intercept),
        "s0": np.array([0], dtype=np.int64),
        "s1": np.array([1], dtype=np.int64),
        "send": np.array([n_features], dtype=np.int64),
        "axis1": np.array([1], dtype=np.int64),
        "flat": np.array([-1], dtype=np.int64),
    }
    inits = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in consts.items()]
    nodes = [
        helper.make_node("Cast", [input_name], ["xd"], to=TensorProto.DOUBLE),
        helper.make_node("Slice", ["xd", "s0", "s1", "axis1"], ["country"]),
        helper.make_node("Slice", ["xd", "s1", "send", "axis1"], ["rates"]),
        # Unseen countries arrive as NaN: NaN equals no category, so their one-hot row is all
        # zeros, which is what OneHotEncoder(handle_unknown="ignore") gives.
        helper.make_node("Equal", ["country", "cats"], ["is_cat"]),
        helper.make_node("Cast", ["is_cat"], ["onehot"], to=TensorProto.DOUBLE),
        helper.make_node("MatMul", ["onehot", "w_cat"], ["z_cat"]),
        helper.make_node("Add", ["rates", "one"], ["rates1"]),
        helper.make_node("Log", ["rates1"], ["logr"]),
        helper.make_node("MatMul", ["logr", "w_rate"], ["z_rate"]),
        helper.make_node("Add", ["z_cat", "z_rate"], ["z0"]),
        helper.make_node("Add", ["z0", "b"], ["z"]),
        helper.make_node("Exp", ["z"], ["ez"]),
        helper.make_node("Sub", ["ez", "one"], ["y2"]),
        helper.make_node("Reshape", ["y2", "flat"], ["variable"]),
    ]
    graph = helper.make_graph(
        nodes, "log_ridge",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None])],
        initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset[""])],
                              producer_name="riskserve")
    proto.ir_version = 8  # readable by every onnxruntime that runs opset 17
    return proto
