"""Training: every model trains, saves, reloads identically; validation and promotion behave."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskserve.core import store
from riskserve.core.specs import FRAUD, MODEL_NAMES, SPECS
from riskserve.errors import DataValidationError
from tests.conftest import REPO
from training import pipeline
from training.__main__ import family_of


def _sample_columns(name: str, n: int = 64) -> dict[str, np.ndarray]:
    family = family_of(name)
    prepared = pipeline.prepare(family, None, True, 3)
    from riskserve.core.validation import columns_from_frame

    return columns_from_frame(SPECS[name], prepared.frame.head(n))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_reloads_from_store_and_predicts_the_same(trained: dict, name: str) -> None:
    result = trained[name]
    assert result.version != "unsaved"
    assert SPECS[name].primary_metric in result.metrics
    reloaded = store.load_model(name, result.version)
    cols = _sample_columns(name)
    before, after = result.model.predict(cols), reloaded.predict(cols)
    # A compiled runtime is held to the parity bounds it was admitted with (float32 trees).
    compiled = reloaded.info["runtime"] != reloaded.info["framework"]
    if compiled and before.probabilities is None:
        np.testing.assert_allclose(before.predictions, after.predictions, rtol=1e-6, atol=1e-9)
    else:
        np.testing.assert_array_equal(before.predictions, after.predictions)
    if before.probabilities is not None:
        np.testing.assert_allclose(before.probabilities, after.probabilities, rtol=1e-6,
                                   atol=1e-5 if compiled else 0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_stored_version_carries_metadata_and_reference_bins(trained: dict, name: str) -> None:
    stored = store.get_version(name, trained[name].version)
    meta = stored.info.metadata
    for key in ("metrics", "data_fingerprint", "library_versions", "git_commit", "trained_at",
                "data_source"):
        assert meta.get(key), f"{name} metadata lacks {key}"
    assert stored.info.labels["task"] == SPECS[name].task
    model = store.load_stored(stored)
    assert set(model.references) == set(SPECS[name].feature_names)
    for ref in [*model.references.values(), model.prediction_reference]:
        assert ref is not None
        assert sum(ref.proportions) == pytest.approx(1.0, abs=1e-9)
        assert all(p >= 0 for p in ref.proportions)
    files = {p.name for p in Path(stored.path).iterdir()}
    assert not any(f.endswith((".pkl", ".pickle", ".joblib")) for f in files)
    assert files & {"model.ubj", "model.txt", "model.skops"}
    # The runtime served is named in the metadata, the manifest and the loaded model alike.
    manifest = json.loads((Path(stored.path) / "manifest.json").read_text())
    assert meta["runtime"] == manifest["runtime"] == model.info["runtime"]
    assert ("model.onnx" in files) == manifest["runtime"].startswith("onnxruntime")


def test_first_version_becomes_production(trained: dict) -> None:
    for name in MODEL_NAMES:
        assert store.production_version(name) == trained[name].version


def test_reports_are_written(trained: dict) -> None:
    result = trained["fraud"]
    report = json.loads((result.report_dir / "metrics.json").read_text())
    assert report["metrics"]["pr_auc"] == pytest.approx(result.metrics["pr_auc"])
    assert (result.report_dir / "roc.png").stat().st_size > 1000
    assert (trained["cyber-threat"].report_dir / "residuals.png").exists()
    assert (trained["keystroke-rf"].report_dir / "confusion.png").exists()


def _fraud_csv(tmp_path: Path, mutate=None) -> Path:
    from training.data import fraud as data

    raw = data.generate(5_000, seed=1, fraud_rate=0.02)
    if mutate:
        mutate(raw)
    path = tmp_path / "paysim.csv"
    raw.to_csv(path, index=False)
    return path


def test_validation_names_column_and_rows(tmp_path: Path) -> None:
    def corrupt(raw: pd.DataFrame) -> None:
        raw.loc[[3, 9], "amount"] = -5.0

    prepared = pipeline.prepare(family_of("fraud"), _fraud_csv(tmp_path, corrupt), False, 0)
    from training import validate

    with pytest.raises(DataValidationError) as err:
        validate.validate(FRAUD, prepared.frame, prepared.label)
    assert "'amount'" in err.value.message and "rows 3, 9" in err.value.message


def test_validation_rejects_unknown_category_and_missing_column(tmp_path: Path) -> None:
    from training import validate

    def wire(raw: pd.DataFrame) -> None:
        raw.loc[0, "type"] = "WIRE"

    prepared = pipeline.prepare(family_of("fraud"), _fraud_csv(tmp_path, wire), False, 0)
    with pytest.raises(DataValidationError, match=r"'type'.*CASH_IN.*rows 0"):
        validate.validate(FRAUD, prepared.frame, prepared.label)

    def drop(raw: pd.DataFrame) -> None:
        del raw["oldbalanceOrg"]

    with pytest.raises(DataValidationError, match=r"missing column.*'oldbalanceOrg'"):
        pipeline.prepare(family_of("fraud"), _fraud_csv(tmp_path, drop), False, 0)


def test_cli_bad_csv_exits_nonzero_with_one_line(tmp_path: Path, isolated_home: Path) -> None:
    path = _fraud_csv(tmp_path, lambda raw: raw.__setitem__("step", "soon"))
    proc = subprocess.run([sys.executable, "-m", "training", "fraud", "--data", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**__import__("os").environ, "BENTOML_HOME": str(isolated_home)})
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) <= 2, proc.stderr
    assert "'step'" in proc.stderr and "Traceback" not in proc.stderr


def test_promotion_keeps_better_and_refuses_worse(tmp_path: Path, isolated_home: Path) -> None:
    from training.data import cyber_threat as data

    family = family_of("cyber-threat")
    good_raw = data.generate(4_000, seed=2)
    bad_raw = good_raw.copy()
    # Shuffled labels: same schema, no signal, so the held-out R2 collapses.
    bad_raw["Local Infection"] = np.random.default_rng(0).permutation(
        bad_raw["Local Infection"].to_numpy())
    good_csv, bad_csv = tmp_path / "good.csv", tmp_path / "bad.csv"
    good_raw.to_csv(good_csv, index=False)
    bad_raw.to_csv(bad_csv, index=False)
    spec = SPECS["cyber-threat"]
    reports = tmp_path / "reports"

    good = pipeline.train(spec, family, pipeline.prepare(family, good_csv, False, 0),
                          quick=False, seed=0, reports=reports)
    assert good.promotion is not None and good.promotion.promoted
    bad = pipeline.train(spec, family, pipeline.prepare(family, bad_csv, False, 0),
                         quick=False, seed=0, reports=reports)
    assert bad.metrics["r2"] < good.metrics["r2"]

    refused = store.promote("cyber-threat", bad.version)
    assert not refused.promoted
    assert refused.current_value == pytest.approx(good.metrics["r2"])
    assert store.production_version("cyber-threat") == good.version

    forced = store.promote("cyber-threat", bad.version, force=True)
    assert forced.promoted and store.production_version("cyber-threat") == bad.version
    back = store.promote("cyber-threat", good.version)
    assert back.promoted and store.production_version("cyber-threat") == good.version

    history = [json.loads(x) for x in store.history_file().read_text().splitlines()]
    assert [h["new"] for h in history] == [good.version, bad.version, good.version]
    assert {"who", "at", "old", "new", "metric", "old_value", "new_value"} <= set(history[-1])


def test_cli_promote_prints_both_numbers(tmp_path: Path, isolated_home: Path) -> None:
    env = {**__import__("os").environ, "BENTOML_HOME": str(isolated_home)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "training", *a],  # noqa: E731
                                    capture_output=True, text=True, cwd=REPO, env=env,
                                    timeout=300)
    first = run("cyber-threat", "--quick", "--reports", str(tmp_path))
    assert first.returncode == 0, first.stderr
    second = run("cyber-threat", "--quick", "--reports", str(tmp_path))
    assert second.returncode == 0, second.stderr
    again = run("promote", "cyber-threat")
    # Same data and seed: not strictly better, so promotion is refused with both numbers shown.
    assert again.returncode == 1
    assert again.stderr.count("r2=") == 2 and "not promoted" in again.stderr
    unknown = run("promote", "nope")
    assert unknown.returncode == 2 and "unknown model 'nope'" in unknown.stderr
