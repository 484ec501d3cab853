"""The BentoML model store: save and load model versions, and the production pointer.

Each model version is a BentoML model whose folder holds the native model file, the encoder,
the reference distributions and a manifest. Which version is "production" lives in a small JSON
file beside the store (`$BENTOML_HOME/riskserve/production.json`) with an append-only history,
because BentoML has no mutable stage label. A packed Bento carries only production versions and
no pointer file, so there the newest (only) version of each model is production.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import yaml

from riskserve.core.adapters import Adapter, load_adapter
from riskserve.core.compiled import (
    CompileReport,
    DispatchAdapter,
    Once,
    OnnxAdapter,
    compile_version,
)
from riskserve.core.encoding import Encoder
from riskserve.core.scoring import ScoringModel
from riskserve.core.specs import ModelSpec, get_spec
from riskserve.drift import Reference
from riskserve.errors import ConfigurationError, ModelNotFound

MANIFEST_FILE = "manifest.json"
ENCODER_FILE = "encoder.json"
REFERENCE_FILE = "reference.json"
METRICS_FILE = "metrics.json"


def bentoml_home() -> Path:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get())


def _pointer_dir() -> Path:
    return bentoml_home() / "riskserve"


def _pointer_file() -> Path:
    return _pointer_dir() / "production.json"


def history_file() -> Path:
    """Append-only JSON lines: who promoted what, when, and with which metrics."""
    return _pointer_dir() / "promotions.jsonl"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def save_model(model: ScoringModel, metrics: dict[str, float], extra: dict[str, Any],
               holdout: np.ndarray | None = None) -> str:
    """Save a fitted scoring model as a new version; returns the version string.

    With `holdout` (the encoded held-out matrix), the native model is also compiled to ONNX and
    the compiled artifact is served if it passes the parity check and measures faster; the
    manifest and the version's metadata name the runtime served and why.
    """
    spec = model.spec
    labels = {
        "task": spec.task,
        "algorithm": spec.algorithm,
        "family": spec.family,
        "framework": model.adapter.framework,
    }
    metadata = {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "primary_metric": spec.primary_metric,
        "features": [f"{f.name}:{f.kind}" for f in spec.features],
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        **extra,
    }
    with bentoml.models.create(spec.name, labels=labels, metadata=metadata) as bm:
        directory = Path(bm.path)
        model_file = model.adapter.save(directory)  # type: ignore[attr-defined]
        report = _compile(model, directory, holdout)
        files = [model_file, *([report.file] if report.file else [])]
        manifest = {
            "name": spec.name,
            "task": spec.task,
            "algorithm": model.info.get("algorithm", spec.algorithm),
            "framework": model.adapter.framework,
            "runtime": report.runtime,
            "model_file": model_file,
            "compiled": report.to_json(),
            # Checked at load, so a truncated or corrupted file is named instead of half-parsed
            # (LightGBM's text reader, for one, accepts some truncations silently).
            "sha256": {name: _sha256(directory / name) for name in files},
            "classes": [c.item() if hasattr(c, "item") else c for c in model.classes],
            "threshold": model.threshold,
            "features": [{"name": f.name, "kind": f.kind} for f in spec.features],
            "feature_matrix": model.encoder.output_names,
        }
        _write_json(directory / MANIFEST_FILE, manifest)
        _write_json(directory / ENCODER_FILE, model.encoder.to_json())
        _write_json(directory / METRICS_FILE, metadata["metrics"])
        refs = {
            "features": {k: r.to_json() for k, r in model.references.items()},
            "prediction": model.prediction_reference.to_json()
            if model.prediction_reference else None,
        }
        _write_json(directory / REFERENCE_FILE, refs)
        # BentoML writes the metadata when the context closes: `bentoml models get` shows it.
        bm.info.metadata["runtime"] = report.runtime
        bm.info.metadata["runtime_reason"] = report.reason
    model.info["runtime"] = report.runtime
    return str(bm.tag.version)


def _compile(model: ScoringModel, directory: Path, holdout: np.ndarray | None) -> CompileReport:
    """Compile beside the native file; parity and timing use the native model as reloaded from
    this folder, i.e. exactly what a worker would serve otherwise (one thread, same file)."""
    framework = model.adapter.framework
    if holdout is None or len(holdout) == 0:
        return CompileReport(framework, reason="no held-out rows to check parity on")
    native = load_adapter(framework, directory, model.spec.task)
    return compile_version(directory, model.spec, native, holdout, model.threshold)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


_MANIFEST_KEYS = ("framework", "model_file", "classes", "threshold", "algorithm")


@dataclass
class _Version:
    """A version's metadata files, parsed and checked (no model deserialised yet)."""

    guard: _LoadGuard
    manifest: dict[str, Any]
    encoder: Encoder
    references: dict[str, Reference]
    prediction_reference: Reference | None

    @property
    def framework(self) -> str:
        return str(self.manifest["framework"])

    @property
    def runtime(self) -> str:
        return str(self.manifest.get("runtime", self.framework))

    @property
    def checksums(self) -> dict[str, str]:
        return dict(self.manifest.get("sha256", {}))

    @property
    def served_file(self) -> str | None:
        """The compiled artifact answered with, when it is not the native model."""
        file = self.manifest.get("compiled", {}).get("file")
        return str(file) if file and self.runtime != self.framework else None

    @property
    def model_files(self) -> list[str]:
        return [str(self.manifest["model_file"]), *filter(None, [self.served_file])]


def _read_version(spec: ModelSpec, directory: Path, version: str) -> _Version:
    guard = _LoadGuard(spec.name, version)
    manifest = guard.json(directory / MANIFEST_FILE)
    with guard.file(directory / MANIFEST_FILE):
        if manifest["name"] != spec.name:
            raise ConfigurationError(f"it holds '{manifest['name']}', not '{spec.name}'")
        # What loading reads later, looked up now: a gap names this file as corrupt.
        missing = [k for k in _MANIFEST_KEYS if k not in manifest]
        if missing:
            raise KeyError(missing[0])
        float(manifest["threshold"])
    refs = guard.json(directory / REFERENCE_FILE)
    encoder_json = guard.json(directory / ENCODER_FILE)
    with guard.file(directory / ENCODER_FILE):
        encoder = Encoder.from_json(spec, encoder_json)
    with guard.file(directory / REFERENCE_FILE):
        references = {k: Reference.from_json(v) for k, v in refs["features"].items()}
        prediction_reference = (Reference.from_json(refs["prediction"]) if refs["prediction"]
                                else None)
    return _Version(guard, manifest, encoder, references, prediction_reference)


def check_files(spec: ModelSpec, directory: Path, version: str) -> bool:
    """Check a version the way loading it would, without deserialising its model.

    Parses the metadata files and compares every model file with the manifest's sha256: a
    missing, unreadable, truncated or corrupt file raises the same one-line ConfigurationError
    as `load_from_path`, without the model's memory or load time (the keystroke forest
    alone takes ~5 s and ~1 GiB to load). False when the manifest has no checksum for a file
    (versions saved before checksums): only loading can check those.
    """
    v = _read_version(spec, directory, version)
    checksums = v.checksums
    if any(f not in checksums for f in v.model_files):
        return False
    for f in v.model_files:
        v.guard.verify(directory / f, checksums[f])
    return True


def load_from_path(spec: ModelSpec, directory: Path, version: str,
                   info: dict[str, Any] | None = None) -> ScoringModel:
    """Rebuild a ScoringModel from a model folder (local store or a packed Bento).

    Any unreadable, truncated or corrupt file raises ConfigurationError with one line naming the
    model, the version and the file, so a service refuses to start with a message that says
    what to retrain or restore, never a framework traceback.
    """
    v = _read_version(spec, directory, version)
    guard, manifest, checksums = v.guard, v.manifest, v.checksums
    native_from_rows = manifest.get("compiled", {}).get("native_from_rows")

    def native() -> Adapter:
        path = directory / manifest["model_file"]
        guard.verify(path, checksums.get(path.name))
        with guard.file(path):
            return load_adapter(v.framework, directory, spec.task)

    native_loader = None
    adapter: Adapter
    if v.served_file:
        path = directory / v.served_file
        guard.verify(path, checksums.get(path.name))
        with guard.file(path):
            adapter = OnnxAdapter.load(directory, spec.task)
        # Explanations and (above native_from_rows) large batches need the booster/estimator:
        # both load it on first use, once (the dispatcher's own loader serves both).
        if native_from_rows:
            dispatch = DispatchAdapter(adapter, native, v.framework, int(native_from_rows))
            adapter, native_loader = dispatch, dispatch.native
        else:
            native_loader = Once(native)
    else:
        adapter = native()
    return ScoringModel(
        spec=spec,
        encoder=v.encoder,
        adapter=adapter,
        version=version,
        classes=manifest["classes"],
        threshold=float(manifest["threshold"]),
        references=v.references,
        prediction_reference=v.prediction_reference,
        info={"algorithm": manifest["algorithm"], "framework": v.framework,
              "runtime": v.runtime, **(info or {})},
        native_loader=native_loader,
    )


class _LoadGuard:
    """Turns any failure reading one file of a version into a one-line ConfigurationError."""

    def __init__(self, name: str, version: str) -> None:
        self.prefix = f"model '{name}' version '{version}' cannot be loaded"

    @contextmanager
    def file(self, path: Path) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError as exc:
            raise ConfigurationError(f"{self.prefix}: {path} is missing") from exc
        except PermissionError as exc:
            raise ConfigurationError(
                f"{self.prefix}: {path} is unreadable ({_one_line(exc)})") from exc
        except ConfigurationError as exc:
            if str(exc).startswith(self.prefix):
                raise
            raise ConfigurationError(f"{self.prefix}: {path}: {_one_line(exc)}") from exc
        except Exception as exc:  # every framework has its own parse error types
            raise ConfigurationError(
                f"{self.prefix}: {path} is corrupt or truncated ({_one_line(exc)})") from exc

    def json(self, path: Path) -> Any:
        with self.file(path):
            return json.loads(path.read_text())

    def verify(self, path: Path, expected: str | None) -> None:
        """Compare the file's sha256 with the manifest's (versions saved before it had none)."""
        if expected is None:
            return
        with self.file(path):
            actual = _sha256(path)
        if actual != expected:
            raise ConfigurationError(
                f"{self.prefix}: {path} is corrupt or truncated (sha256 {actual[:12]}..., "
                f"the manifest says {expected[:12]}...)")


def _one_line(exc: BaseException) -> str:
    """`Type: first line`: XGBoost and others append multi-line stack traces to messages."""
    lines = str(exc).strip().splitlines()
    first = lines[0].strip()[:300] if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_stored(stored: Any) -> ScoringModel:
    """Load a `bentoml.Model` (what `BentoModel` resolves to inside the service)."""
    spec = get_spec(stored.tag.name)
    info = {
        "metrics": dict(stored.info.metadata.get("metrics", {})),
        "trained_at": stored.info.metadata.get("trained_at"),
    }
    return load_from_path(spec, Path(stored.path), str(stored.tag.version), info)


def list_versions(name: str) -> list[Any]:
    """Stored versions of a model, newest first."""
    try:
        models = [m for m in bentoml.models.list(name) if m.tag.name == name]
    except bentoml.exceptions.NotFound:
        return []
    except (OSError, ValueError, yaml.YAMLError, bentoml.exceptions.BentoMLException) as exc:
        # ValueError / YAMLError: a version's garbled model.yaml, read by bentoml.models.list
        raise ConfigurationError(f"model '{name}' cannot be loaded: the model store at "
                                 f"{bentoml_home()} is unreadable ({_one_line(exc)})") from exc
    return sorted(models, key=lambda m: m.info.creation_time, reverse=True)


def get_version(name: str, version: str) -> Any:
    for m in list_versions(name):
        if m.tag.version == version:
            return m
    raise ModelNotFound(name, [str(m.tag.version) for m in list_versions(name)], version)


def check_model(name: str, version: str) -> None:
    """Check a stored version's files (`check_files`), loading it only where that cannot."""
    stored = get_version(name, version)
    if not check_files(get_spec(name), Path(stored.path), version):
        load_stored(stored)


def load_model(name: str, version: str | None = None) -> ScoringModel:
    """Load a stored version (production when `version` is None)."""
    return load_stored(get_version(name, version or production_version(name)))


# What a packed Bento serves: written next to the package by service.py when it declares its
# models outside a Bento (the store's pointer files exist there), and packed by bentofile.yaml;
# a Bento's own store has no pointer files, and without this it could not tell a packed shadow
# candidate from production.
RELEASE_FILE = Path(__file__).resolve().parents[1] / "release.json"


def read_release() -> dict[str, dict[str, str | None]]:
    """{model: {"production": v, "shadow": v | None}} of the packed Bento, or {} outside one."""
    try:
        return json.loads(RELEASE_FILE.read_text()) if RELEASE_FILE.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{RELEASE_FILE} is unreadable ({type(exc).__name__}: {exc})"
                                 ) from None


def write_release(release: dict[str, dict[str, str | None]]) -> None:
    """Record what service.py declares (only where the store has pointers: not in a Bento)."""
    if not _pointer_file().exists():
        return
    text = json.dumps(release, indent=1, sort_keys=True) + "\n"
    try:
        if not RELEASE_FILE.is_file() or RELEASE_FILE.read_text() != text:
            tmp = RELEASE_FILE.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, RELEASE_FILE)
    except OSError:  # a read-only checkout: the Bento then serves the newest versions
        pass


def _read_pointer(name: str = "?") -> dict[str, Any]:
    path = _pointer_file()
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"model '{name}' cannot be loaded: the production pointer "
                                     f"{path} is unreadable ({_one_line(exc)}); restore it or "
                                     "run `python -m training promote`") from None
    return {n: {"version": r["production"]} for n, r in read_release().items()}


def production_version(name: str) -> str:
    """The version `bentoml build` packs and the service serves by default."""
    versions = [str(m.tag.version) for m in list_versions(name)]
    if not versions:
        raise ConfigurationError(
            f"no trained version of '{name}' in the model store at {bentoml_home()}; "
            "run `make train` (or `python -m training all`) first"
        )
    pointed = _read_pointer(name).get(name, {}).get("version")
    return pointed if pointed in versions else versions[0]


def has_production(name: str) -> bool:
    pointed = _read_pointer().get(name, {}).get("version")
    return pointed is not None and pointed in {str(m.tag.version) for m in list_versions(name)}


@dataclass
class Promotion:
    """Outcome of a promotion attempt, with both metrics so the CLI can print them."""

    name: str
    candidate: str
    current: str | None
    metric: str
    candidate_value: float
    current_value: float | None
    promoted: bool
    reason: str


def _metric(name: str, version: str, metric: str) -> float:
    value = get_version(name, version).info.metadata.get("metrics", {}).get(metric)
    if value is None:
        raise ConfigurationError(f"{name}:{version} has no '{metric}' metric to compare")
    return float(value)


def promote(name: str, version: str | None = None, force: bool = False) -> Promotion:
    """Make `version` (default: newest) production if it beats the current one, or if forced."""
    spec = get_spec(name)
    versions = list_versions(name)
    if not versions:
        production_version(name)  # raises the "train first" error
    candidate = version or str(versions[0].tag.version)
    metric = spec.primary_metric
    cand_value = _metric(name, candidate, metric)
    current = production_version(name) if has_production(name) else None
    cur_value = _metric(name, current, metric) if current else None
    if current is None:
        ok, reason = True, "first production version"
    elif current == candidate:
        ok, reason = False, "already the production version"
    else:
        better = cand_value > cur_value if spec.greater_is_better else cand_value < cur_value
        ok = better or force
        reason = "better held-out metric" if better else (
            "forced" if force else "not better than production; use --force to override")
    result = Promotion(name, candidate, current, metric, cand_value, cur_value, ok, reason)
    if ok:
        _record(result)
    return result


def _record(p: Promotion) -> None:
    _pointer_dir().mkdir(parents=True, exist_ok=True)
    pointer = _read_pointer()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    pointer[p.name] = {"version": p.candidate, "promoted_at": now, p.metric: p.candidate_value}
    tmp = _pointer_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(pointer, indent=1, sort_keys=True))
    os.replace(tmp, _pointer_file())  # atomic: a serving process never reads half a file
    entry = {"at": now, "who": getpass.getuser(), "model": p.name, "old": p.current,
             "new": p.candidate, "metric": p.metric, "old_value": p.current_value,
             "new_value": p.candidate_value, "reason": p.reason}
    with history_file().open("a") as fh:
        fh.write(json.dumps(entry) + "\n")
