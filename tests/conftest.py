"""Shared fixtures: a throw-away BentoML home for the whole run, trained once in quick mode.

BENTOML_HOME (and OMP_WAIT_POLICY) must be set before BentoML (libgomp) is first loaded, so they
are set here at import time.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="riskserve-test-bentoml-"))
# Removed when this test process exits (each xdist worker has its own): every run's trained
# models otherwise stayed in /tmp. The servers the tests start are stopped by then.
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["BENTOML_HOME"] = str(_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
# Two test workers train at once (and beside servers): see training/__init__.py. Set here too,
# because a test module may load libgomp (scikit-learn) before it imports training.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from riskserve.core.specs import MODEL_NAMES, SPECS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SEED = 7


def burn_cpu(seconds: float) -> None:
    """Busy-wait `seconds` of this thread's CPU: a simulated model call that costs what the
    cost model measures (thread CPU time; a sleep costs nothing there) and is exact."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def trained(bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every model trained once (quick mode) into the session store; name -> TrainResult."""
    from training import pipeline
    from training.__main__ import family_of

    reports = tmp_path_factory.mktemp("reports")
    results: dict[str, object] = {}
    prepared: dict[str, pipeline.Prepared] = {}
    for name in MODEL_NAMES:
        family = family_of(name)
        if family.__name__ not in prepared:
            prepared[family.__name__] = pipeline.prepare(family, None, True, SEED)
        results[name] = pipeline.train(SPECS[name], family, prepared[family.__name__],
                                       quick=True, seed=SEED, reports=reports)
    return results


@pytest.fixture()
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private, empty BentoML home for tests that create and promote their own versions."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = tmp_path / "bentoml"
    (home / "models").mkdir(parents=True)
    old_home = BentoMLContainer.bentoml_home.get()
    old_store = BentoMLContainer.model_store.get()
    BentoMLContainer.bentoml_home.set(str(home))
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    try:
        yield home
    finally:
        BentoMLContainer.bentoml_home.set(old_home)
        BentoMLContainer.model_store.set(old_store)


@pytest.fixture(scope="session")
def served(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One real `bentoml serve` of the session store, shared by the HTTP and gRPC tests."""
    from riskserve.devtools import server

    log = tmp_path_factory.mktemp("serve") / "bentoml-serve.log"
    proc = server.start(log, {"RISKSERVE_MAX_PAYLOAD_BYTES": str(4 * 1024 * 1024),
                              "RISKSERVE_MAX_ROWS": "5000"})
    try:
        yield proc
    finally:
        proc.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect `container` tests (real podman image and pod, minutes) from the default run.

    They run when asked: `make test-container` (pytest -m container), any other -m expression,
    or RISKSERVE_CONTAINER_TESTS=1 (e.g. `RISKSERVE_CONTAINER_TESTS=1 make test` in CI).
    """
    if config.option.markexpr or os.environ.get("RISKSERVE_CONTAINER_TESTS") == "1":
        return
    container = [item for item in items if item.get_closest_marker("container")]
    if container:
        config.hook.pytest_deselected(items=container)
        items[:] = [item for item in items if not item.get_closest_marker("container")]
