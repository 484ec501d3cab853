"""Compiled inference: parity holds where ONNX is served, failures fall back to native with the
reason recorded, the runtime is named everywhere, and broken model files fail in one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from riskserve.core import compiled, store
from riskserve.core.adapters import LightGBMAdapter, SklearnAdapter, XGBoostAdapter
from riskserve.core.scoring import ScoringModel
from riskserve.core.specs import MODEL_NAMES, SPECS
from riskserve.errors import ConfigurationError
from tests.conftest import burn_cpu
from training import pipeline
from training.__main__ import family_of

NATIVE_TYPES = {"xgboost": XGBoostAdapter, "lightgbm": LightGBMAdapter,
                "sklearn": SklearnAdapter}


def _columns(name: str, n: int = 200, seed: int = 3) -> dict[str, np.ndarray]:
    from riskserve.core.validation import columns_from_frame

    prepared = pipeline.prepare(family_of(name), None, True, seed)
    return columns_from_frame(SPECS[name], prepared.frame.head(n))


def _manifest(name: str, version: str) -> dict[str, Any]:
    path = Path(store.get_version(name, version).path) / store.MANIFEST_FILE
    return json.loads(path.read_text())


# --- every trained model ---------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_runtime_is_recorded_and_parity_holds_where_compiled(trained: dict, name: str) -> None:
    version = trained[name].version
    manifest = _manifest(name, version)
    stored = store.get_version(name, version)
    model = store.load_model(name, version)
    report = manifest["compiled"]
    assert report["reason"], "the decision must say why"
    assert stored.info.metadata["runtime"] == manifest["runtime"] == model.info["runtime"]
    native = model.native_adapter()
    assert isinstance(native, NATIVE_TYPES[manifest["framework"]])
    if not manifest["runtime"].startswith(compiled.ONNX_RUNTIME):
        assert not (Path(stored.path) / compiled.ONNX_FILE).exists()
        return
    held_out = report["parity"]["held_out"]
    assert held_out["ok"] and held_out["label_mismatches"] == 0
    assert manifest["sha256"][compiled.ONNX_FILE]
    # Parity again on rows the check never saw, through the served path.
    x = model.encoder.transform(_columns(name))
    result = compiled.compare(model.spec.task, native.score(x), model.adapter.score(x),
                              model.threshold)
    assert result.ok, result.reason
    if model.spec.task == "regression":
        assert result.max_rel_diff <= compiled.REGRESSION_RTOL
    else:
        assert result.max_abs_diff <= compiled.PROBA_ATOL


def test_the_slow_sklearn_models_serve_compiled(trained: dict) -> None:
    """The forest and the SVM are the models ONNX exists for here (20-50 ms -> < 1 ms a row)."""
    for name in ("keystroke-rf", "keystroke-svm", "cyber-threat"):
        manifest = _manifest(name, trained[name].version)
        assert manifest["runtime"].startswith(compiled.ONNX_RUNTIME), manifest["compiled"]


def test_native_is_loaded_lazily_when_compiled_is_served(trained: dict) -> None:
    name = next(n for n in MODEL_NAMES
                if _manifest(n, trained[n].version)["runtime"] == compiled.ONNX_RUNTIME)
    model = store.load_model(name, trained[name].version)
    assert isinstance(model.adapter, compiled.OnnxAdapter)
    assert model._native is None
    first = model.native_adapter()
    assert first is model.native_adapter()  # loaded once, then kept
    assert first.framework == model.info["framework"]


# --- the decision at save time ---------------------------------------------------------------


def _save_copy(trained: dict, name: str = "fraud") -> tuple[str, ScoringModel]:
    """Save the trained model again as a new version (in the caller's isolated store)."""
    result = trained[name]
    model = dataclasses.replace(result.model, info=dict(result.model.info))
    holdout = model.encoder.transform(_columns(name, 300))
    version = store.save_model(model, result.metrics, {"test": True}, holdout=holdout)
    return version, model


def test_parity_failure_serves_native_and_records_why(trained: dict, isolated_home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import xgboost as xgb

    n = len(trained["fraud"].model.encoder.output_names)
    rng = np.random.default_rng(0)
    other = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(
        rng.random((200, n), dtype=np.float32), rng.integers(0, 2, 200))
    real = compiled.to_onnx
    # A converter bug stand-in: the graph of a different model.
    monkeypatch.setattr(compiled, "to_onnx", lambda adapter, task, n_features: real(
        XGBoostAdapter.from_estimator(other), task, n_features))
    version, model = _save_copy(trained)
    manifest = _manifest("fraud", version)
    assert manifest["runtime"] == "xgboost" == model.info["runtime"]
    assert manifest["compiled"]["reason"].startswith("parity failed, serving native")
    assert not manifest["compiled"]["parity"]["ok"]
    assert manifest["compiled"]["parity"]["held_out"]["max_abs_diff"] > compiled.PROBA_ATOL
    assert not (Path(store.get_version("fraud", version).path) / compiled.ONNX_FILE).exists()
    assert "parity failed" in store.get_version("fraud", version).info.metadata[
        "runtime_reason"]
    loaded = store.load_model("fraud", version)
    assert isinstance(loaded.adapter, XGBoostAdapter)
    assert loaded.native_adapter() is loaded.adapter


def test_conversion_failure_serves_native(trained: dict, isolated_home: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*_: Any) -> Any:
        raise compiled.Unsupported("no converter for this estimator")

    monkeypatch.setattr(compiled, "to_onnx", unsupported)
    version, _ = _save_copy(trained)
    manifest = _manifest("fraud", version)
    assert manifest["runtime"] == "xgboost"
    assert "conversion failed" in manifest["compiled"]["reason"]
    assert "no converter" in manifest["compiled"]["reason"]


def _timing_with_speedup(speedup: float) -> Any:
    """compiled.measure, really timed, with the overall speedup the test needs."""
    real = compiled.measure

    def timing(*args: Any) -> dict[str, Any]:
        return {**real(*args), "speedup": speedup, "native_from_rows": None}
    return timing


def test_native_clearly_faster_serves_native(trained: dict, isolated_home: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "measure", _timing_with_speedup(0.8))
    version, _ = _save_copy(trained)
    manifest = _manifest("fraud", version)
    assert manifest["runtime"] == "xgboost"
    assert "ONNX Runtime slower (x0.8" in manifest["compiled"]["reason"]
    assert not (Path(store.get_version("fraud", version).path) / compiled.ONNX_FILE).exists()
    assert manifest["compiled"]["parity"]["ok"]  # parity held; speed decided
    assert set(manifest["compiled"]["timing"]["native_ms"]) == {"1", "8", "32", "512"}


@pytest.mark.parametrize("speedup", [0.95, 1.05])
def test_a_tie_on_speed_serves_onnx_for_its_start_up(
        trained: dict, isolated_home: Path, monkeypatch: pytest.MonkeyPatch,
        speedup: float) -> None:
    """Within MIN_SPEEDUP either way neither runtime is faster: ONNX Runtime serves, since it
    loads without the native library (LightGBM's import alone: ~1.8 s per worker)."""
    monkeypatch.setattr(compiled, "measure", _timing_with_speedup(speedup))
    version, _ = _save_copy(trained)
    manifest = _manifest("fraud", version)
    assert manifest["runtime"] == "onnxruntime"
    assert f"x{speedup}, a tie within x{compiled.MIN_SPEEDUP}" in manifest["compiled"]["reason"]
    assert isinstance(store.load_model("fraud", version).adapter, compiled.OnnxAdapter)


def test_native_from_large_batches_when_native_wins_there(
        trained: dict, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = {"native_ms": {"1": 1.0, "8": 1.0, "32": 2.0, "512": 5.0},
            "compiled_ms": {"1": 0.01, "8": 0.05, "32": 1.0, "512": 10.0}}

    def timing(*_: Any) -> dict[str, Any]:
        return {**fake, "speedup": 5.0, "native_from_rows": 512}

    monkeypatch.setattr(compiled, "measure", timing)
    version, _ = _save_copy(trained)
    manifest = _manifest("fraud", version)
    assert manifest["runtime"] == "onnxruntime+xgboost"
    loaded = store.load_model("fraud", version)
    assert isinstance(loaded.adapter, compiled.DispatchAdapter)
    assert loaded.adapter.native_from_rows == 512
    assert isinstance(loaded.native_adapter(), XGBoostAdapter)
    cols = _columns("fraud", 600)
    small = loaded.predict({k: v[:10] for k, v in cols.items()})
    large = loaded.predict(cols)
    np.testing.assert_allclose(small.scores, large.scores[:10], atol=compiled.PROBA_ATOL)


def test_measure_finds_where_native_takes_over() -> None:
    class Fixed:
        def __init__(self, framework: str, per_row_ms: float, fixed_ms: float) -> None:
            self.framework, self.per_row, self.fixed = framework, per_row_ms, fixed_ms

        def score(self, x: np.ndarray) -> np.ndarray:
            burn_cpu((self.fixed + self.per_row * len(x)) / 1e3)
            return np.zeros(len(x))

    x = np.zeros((4, 2), dtype=np.float32)
    # native: 1 ms fixed + 0.001 ms/row; compiled: 0.01 ms/row -> native from 512 rows.
    timing = compiled.measure(Fixed("xgboost", 0.001, 1.0), Fixed("onnxruntime", 0.01, 0.0), x)
    assert timing["native_from_rows"] == 512
    assert timing["native_ms"]["1"] > timing["compiled_ms"]["1"]
    timing = compiled.measure(Fixed("xgboost", 0.01, 1.0), Fixed("onnxruntime", 0.001, 0.0), x)
    assert timing["native_from_rows"] is None and timing["speedup"] > 5


# --- the parity rule itself ------------------------------------------------------------------


def test_compare_binary_counts_flipped_labels_and_probability_gaps() -> None:
    a = np.array([0.1, 0.45, 0.4999999])
    assert compiled.compare("binary", a, a + 5e-8, 0.5).ok
    assert compiled.compare("binary", a[:2], a[:2] + 5e-6, 0.5).ok
    # A difference far inside the probability bound still fails if it crosses the threshold.
    flipped = compiled.compare("binary", a, np.array([0.1, 0.45, 0.5000001]), 0.5)
    assert not flipped.ok and flipped.label_mismatches == 1
    far = compiled.compare("binary", a, a + 2e-5, 0.5)
    assert not far.ok and "probabilities differ" in far.reason


def test_compare_multiclass_regression_shape_and_nan() -> None:
    p = np.array([[0.6, 0.4], [0.2, 0.8]])
    assert not compiled.compare("multiclass", p, p[:, ::-1], 0.5).ok
    v = np.array([1000.0, 0.0, 2.0])
    assert compiled.compare("regression", v, v * (1 + 5e-7), 0.5).ok
    assert not compiled.compare("regression", v, v * (1 + 5e-6), 0.5).ok
    assert "shape" in compiled.compare("binary", v, v[:2], 0.5).reason
    assert "NaN" in compiled.compare("binary", v, np.array([1000.0, np.nan, 2.0]), 0.5).reason


def test_missing_value_probe_only_blanks_columns_that_can_be_missing() -> None:
    fraud, risk = SPECS["fraud"], SPECS["risk-flag"]
    assert compiled.nan_columns(fraud) == [j for j, f in enumerate(fraud.features)
                                           if f.nullable]
    cols = compiled.nan_columns(risk)
    assert cols, "risk-flag's open city/state vocabularies encode unseen values as NaN"
    x = np.ones((500, len(risk.features) + len(risk.derived)), dtype=np.float32)
    probe = compiled.missing_probe(x, cols)
    blank = np.isnan(probe).any(axis=0)
    assert blank[cols].all() and not np.delete(blank, cols).any()


def _forest_graph(n_classes: int,
                  monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, np.ndarray]:
    """A small forest, converted (zero class weights dropped) and as skl2onnx wrote it."""
    import copy

    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    y = (np.abs(x[:, 0] * 3 + x[:, 1]) * n_classes / 6).astype(int) % n_classes
    forest = RandomForestClassifier(n_estimators=20, random_state=0, n_jobs=1).fit(x, y)
    originals: list[Any] = []
    real = compiled.drop_zero_class_weights

    def keep_original(proto: Any) -> Any:
        originals.append(copy.deepcopy(proto))
        return real(proto)

    monkeypatch.setattr(compiled, "drop_zero_class_weights", keep_original)
    pruned = compiled.to_onnx(SklearnAdapter(forest, "multiclass"), "multiclass", 5)
    return pruned, originals[0], rng.normal(size=(2000, 5)).astype(np.float32) * 2


def _entries(proto: Any) -> int:
    node = next(n for n in proto.graph.node if n.op_type == "TreeEnsembleClassifier")
    return len(next(a for a in node.attribute if a.name == "class_weights").floats)


def _run(proto: Any, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {compiled.INPUT_NAME: x})


def test_multiclass_forest_drops_zero_class_weights_with_identical_answers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pruned, original, x = _forest_graph(6, monkeypatch)
    assert _entries(pruned) < _entries(original) / 2  # most leaves hold one or two classes
    for a, b in zip(_run(original, x), _run(pruned, x), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)  # bitwise, not within a tolerance


def test_two_class_forest_keeps_every_class_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    pruned, original, _ = _forest_graph(2, monkeypatch)
    assert _entries(pruned) == _entries(original)


def test_dispatch_adapter_routes_by_rows() -> None:
    class Const:
        def __init__(self, framework: str, value: float) -> None:
            self.framework, self.value = framework, value

        def score(self, x: np.ndarray) -> np.ndarray:
            return np.full(len(x), self.value)

    loads: list[int] = []

    def native() -> Const:
        loads.append(1)
        return Const("xgboost", 2.0)

    d = compiled.DispatchAdapter(Const("onnxruntime", 1.0), native, "xgboost", 32)
    assert d.framework == "onnxruntime+xgboost"
    assert d.score(np.zeros((31, 1))).max() == 1.0
    assert loads == []  # small batches never load the native model
    assert d.score(np.zeros((32, 1))).min() == 2.0
    assert d.score(np.zeros((64, 1))).min() == 2.0
    assert loads == [1]  # loaded once, on the first large batch


def test_import_natives_imports_only_what_dispatching_versions_need(
        monkeypatch: pytest.MonkeyPatch) -> None:
    imported: list[str] = []
    monkeypatch.setattr(compiled.importlib, "import_module", imported.append)

    class Plain:
        framework = "onnxruntime"

        def score(self, x: np.ndarray) -> np.ndarray:
            return np.zeros(len(x))

    never = compiled.DispatchAdapter(Plain(), lambda: pytest.fail("loaded the model"),  # type: ignore[arg-type]
                                     "xgboost", 512)
    forest = compiled.DispatchAdapter(Plain(), lambda: pytest.fail("loaded the model"),  # type: ignore[arg-type]
                                      "sklearn", 512)
    assert compiled.import_natives([Plain(), never, forest, never]) == [  # type: ignore[list-item]
        "xgboost", "sklearn.ensemble", "skops.io"]
    assert imported == ["xgboost", "sklearn.ensemble", "skops.io"]


# --- 13.6: broken files fail in one line naming model, version and file ----------------------


@pytest.fixture()
def copied_version(trained: dict, tmp_path: Path) -> Any:
    """A private copy of one saved version's folder per model: name -> (folder, version)."""

    def copy(name: str) -> tuple[Path, str]:
        version = trained[name].version
        dst = tmp_path / name / version
        shutil.copytree(store.get_version(name, version).path, dst)
        return dst, version

    return copy


def _assert_one_line(exc: pytest.ExceptionInfo, name: str, version: str, path: Path,
                     what: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"model '{name}' version '{version}' cannot be loaded: ")
    assert str(path) in message and what in message


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["fraud", "risk-flag", "keystroke-rf", "cyber-threat"])
def test_truncated_served_and_native_files_are_named(copied_version: Any, name: str) -> None:
    folder, version = copied_version(name)
    manifest = json.loads((folder / store.MANIFEST_FILE).read_text())
    served = manifest["compiled"]["file"] or manifest["model_file"]
    _truncate(folder / served)
    with pytest.raises(ConfigurationError) as exc:
        store.load_from_path(SPECS[name], folder, version)
    _assert_one_line(exc, name, version, folder / served, "corrupt or truncated")


@pytest.mark.parametrize("name", ["fraud", "risk-flag", "keystroke-svm"])
def test_truncated_file_without_checksum_still_one_line(copied_version: Any, name: str) -> None:
    """Versions saved before checksums: the framework's own parse error, on one line."""
    folder, version = copied_version(name)
    manifest_path = folder / store.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("sha256")
    manifest["runtime"] = manifest["framework"]  # serve the native file
    manifest_path.write_text(json.dumps(manifest))
    model_file = folder / manifest["model_file"]
    _truncate(model_file)  # half a LightGBM text model crashed LightGBM itself (SIGSEGV)
    with pytest.raises(ConfigurationError) as exc:
        store.load_from_path(SPECS[name], folder, version)
    _assert_one_line(exc, name, version, model_file, "corrupt or truncated")


def test_corrupt_manifest_missing_encoder_and_unreadable_reference(
        copied_version: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, version = copied_version("fraud")
    spec = SPECS["fraud"]
    (folder / store.ENCODER_FILE).unlink()
    with pytest.raises(ConfigurationError) as exc:
        store.load_from_path(spec, folder, version)
    _assert_one_line(exc, "fraud", version, folder / store.ENCODER_FILE, "is missing")

    reference = folder / store.REFERENCE_FILE
    real = Path.read_text

    def denied(self: Path, *args: Any, **kwargs: Any) -> str:
        if self == reference:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)  # root ignores chmod 000, so simulate it
    with pytest.raises(ConfigurationError) as exc:
        store.load_from_path(spec, folder, version)
    _assert_one_line(exc, "fraud", version, reference, "unreadable")
    monkeypatch.undo()

    _truncate(folder / store.MANIFEST_FILE)
    with pytest.raises(ConfigurationError) as exc:
        store.load_from_path(spec, folder, version)
    _assert_one_line(exc, "fraud", version, folder / store.MANIFEST_FILE,
                     "corrupt or truncated (JSONDecodeError")


def test_unreadable_store_is_one_line(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import bentoml

    def broken(*_: Any, **__: Any) -> Any:
        raise PermissionError(13, "Permission denied", "/store/models")

    monkeypatch.setattr(bentoml.models, "list", broken)
    with pytest.raises(ConfigurationError) as exc:
        store.load_model("fraud")
    message = str(exc.value)
    assert "\n" not in message and message.startswith("model 'fraud' cannot be loaded: ")
    assert "unreadable (PermissionError" in message and str(store.bentoml_home()) in message
