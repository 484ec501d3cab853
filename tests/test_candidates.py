"""Shadow candidates: the pointer and its history, `compare`, and the CLI (shadow, list, promote
with live figures from a stand-in Prometheus)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import bentoml
import numpy as np
import pytest

from riskserve.core import candidates, store
from riskserve.core.scoring import Prediction, ScoringModel
from riskserve.core.specs import SPECS
from riskserve.errors import InvalidInput, ModelNotFound
from tests.conftest import SEED
from training import live, pipeline
from training.__main__ import family_of, main

NAME = "keystroke-svm"  # the cheapest model to fit


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> ScoringModel:
    """One fitted (unsaved) model; each test saves versions of it into its own store."""
    prepared = pipeline.prepare(family_of(NAME), None, True, SEED)
    return pipeline.train(SPECS[NAME], family_of(NAME), prepared, quick=True, seed=SEED,
                          reports=tmp_path_factory.mktemp("reports"), save=False).model


@pytest.fixture()
def versions(isolated_home: Path, fitted: ScoringModel) -> tuple[str, str]:
    """(production, newer) in a private store; the newer one has the better held-out metric."""
    old = store.save_model(fitted, {"macro_f1": 0.5, "accuracy": 0.6}, {})
    new = store.save_model(fitted, {"macro_f1": 0.7, "accuracy": 0.8}, {})
    assert store.promote(NAME, old).promoted
    return old, new


def _said(capsys: pytest.CaptureFixture[str]) -> str:
    """Everything the CLI printed, with rich's line wrapping undone."""
    out = capsys.readouterr()
    return " ".join((out.out + out.err).split())


# ---- pointer and history --------------------------------------------------------------------

def test_no_shadow_until_one_is_named(versions: tuple[str, str]) -> None:
    assert candidates.shadow_version(NAME) is None
    assert candidates.history(NAME) == []
    assert candidates.shadow_version("fraud") is None  # a model with no version at all


def test_naming_and_clearing_a_candidate_is_recorded(versions: tuple[str, str]) -> None:
    prod, new = versions
    change = candidates.set_shadow(NAME, new)
    assert (change.old, change.new, change.changed) == (None, new, True)
    assert candidates.shadow_version(NAME) == new
    assert json.loads(candidates.pointer_file().read_text())[NAME]["version"] == new
    assert not candidates.pointer_file().with_suffix(".tmp").exists()  # replaced, not left over
    assert store.production_version(NAME) == prod  # production untouched

    assert not candidates.set_shadow(NAME, new).changed  # same again: no new history line
    off = candidates.set_shadow(NAME, None)
    assert (off.old, off.new, off.changed) == (new, None, True)
    assert candidates.shadow_version(NAME) is None

    entries = candidates.history(NAME)
    assert [(e["old"], e["new"]) for e in entries] == [(None, new), (new, None)]
    assert all(e["who"] and e["at"] and e["model"] == NAME for e in entries)
    assert candidates.history("fraud") == []


def test_candidate_must_be_a_stored_version(versions: tuple[str, str]) -> None:
    with pytest.raises(ModelNotFound) as info:
        candidates.set_shadow(NAME, "nosuchversion")
    assert info.value.status == 404
    assert info.value.detail == {"field": "version", "known": sorted(versions)}
    with pytest.raises(ModelNotFound) as info:
        candidates.set_shadow("no-such-model", versions[1])
    assert info.value.detail["field"] == "model"
    assert not candidates.pointer_file().exists()


def test_production_cannot_shadow_itself(versions: tuple[str, str]) -> None:
    with pytest.raises(InvalidInput) as info:
        candidates.set_shadow(NAME, versions[0])
    assert info.value.field == "version" and info.value.status == 422
    assert versions[0] in info.value.message


def test_a_promoted_or_deleted_candidate_is_no_longer_shadowed(versions: tuple[str, str]) -> None:
    prod, new = versions
    candidates.set_shadow(NAME, new)
    assert store.promote(NAME, new).promoted
    assert candidates.pointed(NAME) == new  # the file still says so...
    assert candidates.shadow_version(NAME) is None  # ...but production never shadows itself

    candidates.set_shadow(NAME, prod)  # the old production as the candidate now
    assert candidates.shadow_version(NAME) == prod
    bentoml.models.delete(f"{NAME}:{prod}")
    assert candidates.shadow_version(NAME) is None


# ---- compare --------------------------------------------------------------------------------

def _binary(p1: list[float]) -> Prediction:
    p = np.asarray(p1)
    return Prediction((p >= 0.5).astype(np.int64), np.column_stack([1 - p, p]), p)


def test_compare_binary_counts_other_classes_and_probability_deltas() -> None:
    disagree, delta = candidates.compare("binary", _binary([0.1, 0.6, 0.9, 0.49]),
                                         _binary([0.1, 0.4, 0.95, 0.51]))
    assert disagree == 2
    np.testing.assert_allclose(delta, [0.0, 0.2, 0.05, 0.02], atol=1e-12)


def test_compare_multiclass_uses_labels_and_top_probability() -> None:
    prod = Prediction(np.array([3, 7]), np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([3, 7]))
    cand = Prediction(np.array([3, 3]), np.array([[0.6, 0.4], [0.55, 0.45]]), np.array([3, 3]))
    disagree, delta = candidates.compare("multiclass", prod, cand)
    assert disagree == 1
    np.testing.assert_allclose(delta, [0.1, 0.25])


def test_compare_regression_within_the_documented_tolerance() -> None:
    tol = candidates.REGRESSION_TOLERANCE
    prod = np.array([1.0, 1.0, 0.0, 0.0, 0.02])
    cand = np.array([1.0 + 0.5 * tol, 1.0 + 2 * tol, 0.0, 1e-6, 0.02 * (1 - 0.9 * tol)])
    disagree, delta = candidates.compare("regression", Prediction(prod, None, prod),
                                         Prediction(cand, None, cand))
    assert disagree == 2  # rows 1 (2x the tolerance) and 3 (non-zero where production is 0)
    np.testing.assert_allclose(delta, np.abs(cand - prod))


def test_compare_refuses_different_row_counts() -> None:
    with pytest.raises(ValueError, match="rows"):
        candidates.compare("binary", _binary([0.1]), _binary([0.1, 0.2]))


# ---- CLI ------------------------------------------------------------------------------------

def test_cli_shadow_list_and_off(versions: tuple[str, str],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    prod, new = versions
    assert main(["shadow", NAME, "--version", new]) == 0
    said = _said(capsys)
    assert f"shadow off -> {new}" in said and f"production {prod}" in said
    assert main(["shadow", NAME, "--version", new]) == 0
    assert "nothing changed" in _said(capsys)

    assert main(["list"]) == 0
    cells = [[c.strip() for c in line.split("│")[1:-1]]
             for line in capsys.readouterr().out.splitlines() if NAME in line]
    marks = {c[1]: (c[4], c[5]) for c in cells}  # version -> (production, shadow)
    assert marks == {prod: ("*", ""), new: ("", "*")}
    runtimes = {c[1]: c[6] for c in cells}  # the runtime each version serves with
    for version, runtime in runtimes.items():
        manifest = store.get_version(NAME, version).info.metadata
        assert runtime and runtime == str(manifest.get("runtime") or manifest["framework"])

    assert main(["shadow", NAME, "--off"]) == 0
    assert f"shadow {new} -> off" in _said(capsys)
    assert candidates.shadow_version(NAME) is None


@pytest.mark.parametrize(("args", "message"), [
    ([], "exactly one of --version V or --off"),
    (["--off", "--version", "x"], "exactly one of --version V or --off"),
    (["--version", "nosuchversion"], "has no version 'nosuchversion'"),
    (["--bogus"], "No such option"),
])
def test_cli_shadow_errors_are_one_line(versions: tuple[str, str],
                                        capsys: pytest.CaptureFixture[str], args: list[str],
                                        message: str) -> None:
    assert main(["shadow", NAME, *args]) == 2
    out = capsys.readouterr()
    assert message in " ".join(out.err.split())
    assert "Traceback" not in out.err + out.out


def test_cli_shadow_refuses_production(versions: tuple[str, str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shadow", NAME, "--version", versions[0]]) == 2
    assert "that is the production version" in _said(capsys)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_promote_with_unreachable_prometheus_still_decides_on_held_out(
        versions: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    new = versions[1]
    code = main(["promote", NAME, "--version", new, "--prometheus",
                 f"http://127.0.0.1:{_closed_port()}"])
    said = _said(capsys)
    assert code == 0, said
    assert "live figures skipped" in said and "unreachable" in said
    assert f"promoted {NAME}:{new}" in said and "Traceback" not in said
    assert store.production_version(NAME) == new


class _FakePrometheus(BaseHTTPRequestHandler):
    """Answers /api/v1/query like Prometheus would for one shadowed, fed-back model."""

    queries: ClassVar[list[str]] = []
    production: ClassVar[str] = ""

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)["query"][0]
        type(self).queries.append(query)
        result: list[dict] = []
        if "riskserve_shadow_rows_total" in query:
            result = [{"metric": {}, "value": [0, "1000"]}]
        elif "riskserve_shadow_disagreements_total" in query:
            result = [{"metric": {}, "value": [0, "10"]}]
        elif "by (outcome)" in query and f'version="{self.production}"' in query:
            result = [{"metric": {"outcome": "correct"}, "value": [0, "90"]},
                      {"metric": {"outcome": "wrong"}, "value": [0, "10"]}]
        elif "riskserve_model_heldout_metric" in query:
            result = [{"metric": {"metric": "accuracy"}, "value": [0, "0.7"]}]
        body = json.dumps({"status": "success",
                           "data": {"resultType": "vector", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakePrometheus.queries = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_cli_promote_prints_live_agreement_and_quality(
        versions: tuple[str, str], prometheus: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    prod, new = versions
    _FakePrometheus.production = prod
    candidates.set_shadow(NAME, new)
    code = main(["promote", NAME, "--version", new, "--prometheus", prometheus,
                 "--window", "30m"])
    said = _said(capsys)
    assert code == 0, said
    assert f"shadow agreement of {new} with production: 99.00% of 1,000 rows " \
           "(10 disagreements)" in said
    assert f"live quality of {prod} (production): accuracy=0.9000 over 100 outcomes; " \
           "held-out accuracy=0.7000" in said
    assert f"live quality of {new} (candidate): no feedback in the window" in said
    assert said.index("live, last 30m") < said.index(f"promoted {NAME}:{new}")
    assert all("[30m]" in q for q in _FakePrometheus.queries if "increase" in q)
    # The promoted candidate is production now, so its shadow pointer is cleared.
    assert candidates.pointed(NAME) is None
    assert candidates.history(NAME)[-1]["reason"].startswith("promoted")


def test_cli_promote_rejects_a_bad_window(versions: tuple[str, str], prometheus: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["promote", NAME, "--version", versions[1], "--prometheus", prometheus,
                 "--window", "an hour"]) == 2
    assert "not a Prometheus duration" in _said(capsys)
    assert store.production_version(NAME) == versions[0]  # nothing promoted


def test_live_binary_quality_from_outcome_pairs() -> None:
    n, q = live.binary_quality({("1", "1"): 8, ("1", "0"): 2, ("0", "1"): 8, ("0", "0"): 82})
    assert n == 100
    assert q == pytest.approx({"precision": 0.8, "recall": 0.5, "f1": 16 / 26,
                               "accuracy": 0.9})
