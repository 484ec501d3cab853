"""Tenants on a real `bentoml serve` with two workers: scoped keys (403 / PERMISSION_DENIED),
per-key rates (429 / RESOURCE_EXHAUSTED), the key's name in the access log and metrics, and a
keys file rotated without restart, over HTTP (/v1, /v2) and gRPC (tritonclient's stubs).

Everything that waits polls with a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from riskserve.core.specs import MODEL_NAMES
from riskserve.devtools import server
from riskserve.devtools.samples import GOOD_FRAUD
from tests.polling import eventually, seconds_until
from tests.test_service_http import records, sample_frame

WORKERS = 2
ROTATION_DEADLINE_S = 10.0  # issue 13: a rotated key works / stops working within 10 s
RELOAD_S = 2.0
BASELINE = (
    "# tenants of the test server\n"
    "loan-secret name=loans models=risk-flag\n"
    "fraud-secret name=fraud-team models=fraud,phishing   # two models\n"
    f"sha256:{hashlib.sha256(b'ops-secret').hexdigest()} name=ops\n"
    "slow-secret name=slow models=fraud rate=1\n"
    "bio-secret name=biometrics models=keystroke-rf,keystroke-svm\n"
)


def write_keys(path: Path, text: str) -> None:
    """Replace the file atomically, as kubelet swaps a Secret's files."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def keys_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "api-keys"
    write_keys(path, BASELINE)
    return path


@pytest.fixture(scope="module")
def tenants(trained: dict, keys_path: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.Served]:
    log = tmp_path_factory.mktemp("tenancy") / "serve.log"
    proc = server.start(log, {"RISKSERVE_API_KEYS_FILE": str(keys_path),
                              "RISKSERVE_KEYS_RELOAD_S": str(RELOAD_S)},
                        workers=WORKERS, timeout_s=240)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def stub(tenants: server.Served) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{tenants.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def hdr(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def md(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),)


def predict(served: server.Served, key: str, model: str = "fraud",
            rows: list[dict[str, Any]] | None = None) -> httpx.Response:
    """A fresh connection per call, so calls spread over both workers."""
    body = {"model": model, "inputs": rows if rows is not None else sample_rows(model)}
    return httpx.post(served.url + "/v1/predict", json=body, headers=hdr(key), timeout=30)


_ROWS: dict[str, list[dict[str, Any]]] = {}


def sample_rows(model: str) -> list[dict[str, Any]]:
    if model not in _ROWS:
        _ROWS[model] = records(model, sample_frame(model, 2))
    return _ROWS[model]


def grpc_code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def metric_value(served: server.Served, metric: str, **labels: str) -> float:
    """Sum of one metric's samples (both workers) whose labels include `labels`."""
    total = 0.0
    for line in httpx.get(served.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def steadily(check: Callable[[], bool], times: int = 8) -> Callable[[], bool]:
    """`check` held `times` calls in a row, on fresh connections: very likely both workers."""
    def run() -> bool:
        return all(check() for _ in range(times))
    return run


# ---- 401 / rates -----------------------------------------------------------------------------

def test_unknown_keys_are_401_on_both_protocols(tenants: server.Served, stub: Any) -> None:
    resp = predict(tenants, "fraud-secret-nope")
    assert resp.status_code == 401 and resp.json()["error"] == "invalid API key"
    assert resp.json()["detail"]["field"] == "x-api-key"
    hashed = predict(tenants, "sha256:" + hashlib.sha256(b"ops-secret").hexdigest())
    assert hashed.status_code == 401  # the hash in the file is not a key
    code = grpc_code(lambda: stub.ModelMetadata(
        service_pb2.ModelMetadataRequest(name="fraud"), metadata=md("nope"), timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_hashed_and_plain_keys_in_scope_are_served(tenants: server.Served, stub: Any) -> None:
    assert predict(tenants, "ops-secret", "cyber-threat").status_code == 200
    assert predict(tenants, "fraud-secret", "phishing").status_code == 200
    assert predict(tenants, "loan-secret", "risk-flag").status_code == 200
    meta = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="risk-flag"),
                              metadata=md("loan-secret"), timeout=10)
    assert meta.name == "risk-flag"


def test_rate_limit_429_with_retry_after_and_others_unaffected(tenants: server.Served) -> None:
    before = metric_value(tenants, "riskserve_rate_limited_total", key="slow")
    start = time.monotonic()
    answers = []
    for _ in range(12):
        answers.append(predict(tenants, "slow-secret"))
        # Another key, interleaved, never limited by slow's bucket.
        assert predict(tenants, "fraud-secret").status_code == 200
    elapsed = time.monotonic() - start
    ok = [r for r in answers if r.status_code == 200]
    limited = [r for r in answers if r.status_code == 429]
    assert len(ok) + len(limited) == len(answers)
    # rate=1, burst 1, per worker: at most WORKERS x (1 + elapsed x 1) admitted.
    assert 1 <= len(ok) <= WORKERS * (1 + elapsed) + 1e-9, (len(ok), elapsed)
    assert limited, "no 429 for a key at rate=1 sending 12 requests at once"
    for r in limited:
        assert int(r.headers["retry-after"]) >= 1
        body = r.json()
        assert body["error"].startswith("key 'slow' is over its rate of 1 requests/s per worker")
        assert body["detail"]["key"] == "slow"
    after = metric_value(tenants, "riskserve_rate_limited_total", key="slow")
    assert after - before == len(limited)


def test_grpc_rate_limit_is_resource_exhausted(tenants: server.Served, stub: Any) -> None:
    request = service_pb2.ModelMetadataRequest(name="fraud")
    codes, trailers = [], []
    for _ in range(10):
        try:
            stub.ModelMetadata(request, metadata=md("slow-secret"), timeout=10)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            codes.append(exc.code())
            trailers.append((exc.details(), dict(exc.trailing_metadata() or ())))
        assert grpc_code(lambda: stub.ModelMetadata(request, metadata=md("fraud-secret"),
                                                    timeout=10)) == grpc.StatusCode.OK
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    details, trailer = trailers[0]
    assert details.startswith("key 'slow' is over its rate of 1 requests/s per worker")
    assert int(trailer["retry-after"]) >= 1


# ---- who called ------------------------------------------------------------------------------

def test_access_log_and_metrics_name_the_key_never_the_key(tenants: server.Served) -> None:
    assert predict(tenants, "bio-secret", "keystroke-rf").status_code == 200
    assert predict(tenants, "nope").status_code == 401

    def logged() -> bool:
        text = tenants.log_text()
        return ("path=/v1/predict" in text and "key=biometrics" in text
                and "key=unknown" in text)

    eventually(logged, 10, "access-log lines naming the key")
    text = tenants.log_text()
    line = next(x for x in text.splitlines() if "key=biometrics" in x)
    assert "path=/v1/predict" in line and "status=200" in line
    assert "bio-secret" not in text and "loan-secret" not in text and "ops-secret" not in text
    assert metric_value(tenants, "riskserve_requests_total", key="biometrics",
                        model="keystroke-rf") >= 1
    # Every key's series exists (at 0) once a worker has loaded the file.
    assert 'key="slow"' in httpx.get(tenants.url + "/metrics", timeout=10).text


def test_grpc_calls_get_access_log_lines_naming_the_key(tenants: server.Served,
                                                        stub: Any) -> None:
    """One line per unary gRPC call on BentoML's access logger, with the final status code
    (the interceptors' refusals and the servicer's aborts too) and the key's name."""
    offset = len(tenants.log_text())
    ready = service_pb2.ModelReadyRequest(name="fraud")
    assert grpc_code(lambda: stub.ModelReady(ready, metadata=md("fraud-secret"),
                                             timeout=10)) == grpc.StatusCode.OK
    assert grpc_code(lambda: stub.ModelReady(ready, metadata=md("nope"), timeout=10)
                     ) == grpc.StatusCode.UNAUTHENTICATED
    other = service_pb2.ModelReadyRequest(name="keystroke-rf")  # outside fraud-team's scope
    assert grpc_code(lambda: stub.ModelReady(other, metadata=md("fraud-secret"), timeout=10)
                     ) == grpc.StatusCode.PERMISSION_DENIED
    # After a refusal (a handler of its own) the method's logging handler is reused again.
    assert grpc_code(lambda: stub.ModelReady(ready, metadata=md("fraud-secret"),
                                             timeout=10)) == grpc.StatusCode.OK
    method = "method=/inference.GRPCInferenceService/ModelReady"

    def lines() -> list[str]:
        return [x for x in tenants.log_text()[offset:].splitlines()
                if "scheme=grpc" in x and method in x]

    got = eventually(lambda: (found if len(found := lines()) >= 4 else None), 10,
                     "four gRPC access-log lines")
    assert re.search(r"\(status=OK,length=\d+\) [\d.]+ms key=fraud-team$", got[0]), got[0]
    assert re.search(r"\(status=UNAUTHENTICATED,length=0\) [\d.]+ms key=unknown$", got[1]), got[1]
    assert re.search(r"\(status=PERMISSION_DENIED,length=0\) [\d.]+ms key=fraud-team$",
                     got[2]), got[2]
    assert re.search(r"\(status=OK,length=\d+\) [\d.]+ms key=fraud-team$", got[3]), got[3]
    assert "fraud-secret" not in tenants.log_text()


# ---- scopes (the data plane's 403) -----------------------------------------------------------

def forbidden_message(key: str, model: str, allowed: list[str]) -> str:
    return f"key '{key}' may not use model '{model}'; it may use: {', '.join(allowed)}"


LOANS_MAY = ["risk-flag"]


def assert_forbidden(resp: httpx.Response, model: str) -> None:
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["error"] == forbidden_message("loans", model, LOANS_MAY)
    assert body["detail"]["field"] == "model"


def test_out_of_scope_v1_routes_are_403(tenants: server.Served) -> None:
    url, loans = tenants.url, hdr("loan-secret")
    assert_forbidden(predict(tenants, "loan-secret", "fraud"), "fraud")
    # Decided before the body is validated: rows that would be a 422 are still a 403.
    assert_forbidden(predict(tenants, "loan-secret", "fraud", [{"amount": "x"}]), "fraud")
    csv = httpx.post(url + "/v1/predict_csv", headers=loans, timeout=30, data={"model": "fraud"},
                     files={"file": ("t.csv", b"step,type\n1,TRANSFER\n", "text/csv")})
    assert_forbidden(csv, "fraud")
    timing = {"Mean": 0.1, "STD": 0.01}
    stroke = httpx.post(url + "/v1/keystroke", headers=loans, timeout=30,
                        json={"Model": "RF", "HT": timing, "PPT": timing, "RRT": timing,
                              "RPT": timing})
    assert_forbidden(stroke, "keystroke-rf")
    assert_forbidden(httpx.get(url + "/v1/models/fraud", headers=loans, timeout=10), "fraud")


def test_out_of_scope_v2_routes_are_403(tenants: server.Served) -> None:
    url, loans = tenants.url, hdr("loan-secret")
    for path in ("/v2/models/fraud", "/v2/models/fraud/ready"):
        assert_forbidden(httpx.get(url + path, headers=loans, timeout=10), "fraud")
    infer = httpx.post(url + "/v2/models/fraud/infer", headers=loans, timeout=10,
                       json={"inputs": []})
    assert_forbidden(infer, "fraud")


def test_out_of_scope_grpc_is_permission_denied(tenants: server.Served, stub: Any) -> None:
    calls = {
        "ModelMetadata": lambda: stub.ModelMetadata(
            service_pb2.ModelMetadataRequest(name="fraud"), metadata=md("loan-secret"),
            timeout=10),
        "ModelReady": lambda: stub.ModelReady(
            service_pb2.ModelReadyRequest(name="fraud"), metadata=md("loan-secret"), timeout=10),
        "ModelInfer": lambda: stub.ModelInfer(
            service_pb2.ModelInferRequest(model_name="fraud"), metadata=md("loan-secret"),
            timeout=10),
    }
    for method, call in calls.items():
        try:
            call()
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.PERMISSION_DENIED, (method, exc.details())
            assert exc.details() == forbidden_message("loans", "fraud", LOANS_MAY)
        else:
            raise AssertionError(f"{method} answered a key outside its scope")


def test_listings_show_only_what_the_key_may_use(tenants: server.Served) -> None:
    v1 = httpx.get(tenants.url + "/v1/models", headers=hdr("fraud-secret"), timeout=10)
    assert v1.status_code == 200 and [m["name"] for m in v1.json()["models"]] == [
        "phishing", "fraud"]
    v2 = httpx.get(tenants.url + "/v2/models", headers=hdr("bio-secret"), timeout=10)
    assert v2.status_code == 200 and sorted(m["name"] for m in v2.json()["models"]) == [
        "keystroke-rf", "keystroke-svm"]
    everything = httpx.get(tenants.url + "/v1/models", headers=hdr("ops-secret"), timeout=10)
    assert [m["name"] for m in everything.json()["models"]] == list(MODEL_NAMES)


def test_unknown_model_stays_404_naming_only_allowed_models(tenants: server.Served) -> None:
    resp = predict(tenants, "loan-secret", "frauds", [GOOD_FRAUD])
    assert resp.status_code == 404 and resp.json()["detail"]["known"] == LOANS_MAY


# ---- rotation without restart ----------------------------------------------------------------

class Traffic:
    """A key calling steadily in the background over both protocols: no call may fail."""

    def __init__(self, served: server.Served, key: str) -> None:
        self.served, self.key = served, key
        self.failures: list[str] = []
        self.calls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.served.grpc_port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            while not self._stop.is_set():
                resp = predict(self.served, self.key)
                if resp.status_code != 200:
                    self.failures.append(f"http {resp.status_code} {resp.text[:200]}")
                code = grpc_code(lambda: stub.ModelReady(
                    service_pb2.ModelReadyRequest(name="fraud"), metadata=md(self.key),
                    timeout=10))
                if code != grpc.StatusCode.OK:
                    self.failures.append(f"grpc {code}")
                self.calls += 2

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def http_ok(served: server.Served, key: str) -> Callable[[], bool]:
    return lambda: predict(served, key).status_code == 200


def http_401(served: server.Served, key: str) -> Callable[[], bool]:
    return lambda: predict(served, key).status_code == 401


def grpc_is(served: server.Served, key: str, code: grpc.StatusCode) -> Callable[[], bool]:
    def check() -> bool:
        # A fresh channel per call: a new connection, so calls spread over both workers.
        with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            return grpc_code(lambda: stub.ModelReady(service_pb2.ModelReadyRequest(name="fraud"),
                                                     metadata=md(key), timeout=10)) == code
    return check


def count(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text))


def reloaded_workers(served: server.Served, offset: int, keys: int) -> set[str]:
    """Worker ids that logged reloading `keys` keys after log offset `offset` (BentoML
    prefixes each line with the worker's id)."""
    return set(re.findall(rf"riskserve:(\d+)\] keys file \S+ reloaded: {keys} keys",
                          served.log_text()[offset:]))


def test_rotation_adds_and_removes_keys_without_restart(tenants: server.Served,
                                                        keys_path: Path) -> None:
    pid = tenants.proc.pid
    assert predict(tenants, "new-secret").status_code == 401
    # Background traffic (a fresh HTTP connection per call) reaches both workers, which
    # check the file lazily; the deadline is measured on their own reload lines.
    with Traffic(tenants, "fraud-secret") as traffic:
        offset = len(tenants.log_text())
        write_keys(keys_path, BASELINE + "new-secret name=newcomer models=fraud\n")
        took = seconds_until(lambda: len(reloaded_workers(tenants, offset, 6 + 1)) == WORKERS,
                    ROTATION_DEADLINE_S, "every worker reloading the added key")
        eventually(steadily(lambda: http_ok(tenants, "new-secret")()
                      and grpc_is(tenants, "new-secret", grpc.StatusCode.OK)()),
             ROTATION_DEADLINE_S, "the added key working on both protocols")
        offset = len(tenants.log_text())
        write_keys(keys_path, BASELINE)
        took_removed = seconds_until(lambda: len(reloaded_workers(tenants, offset, 6)) == WORKERS,
                            ROTATION_DEADLINE_S, "every worker dropping the removed key")
        eventually(steadily(lambda: http_401(tenants, "new-secret")() and grpc_is(
            tenants, "new-secret", grpc.StatusCode.UNAUTHENTICATED)()),
            ROTATION_DEADLINE_S, "the removed key refused on both protocols")
    assert traffic.calls > 0 and traffic.failures == []
    assert tenants.proc.poll() is None and tenants.proc.pid == pid  # no restart
    print(f"rotation: every worker had the added key after {took:.1f} s and dropped it after "
          f"{took_removed:.1f} s; {traffic.calls} background calls, none failed")


def test_a_bad_file_keeps_the_keys_and_logs_the_line(tenants: server.Served,
                                                     keys_path: Path) -> None:
    before = count(tenants.log_text(), r"keys file not reloaded")
    write_keys(keys_path, BASELINE + "bad-secret name=bad models=fraud,nope\n")
    try:
        # The bad file is checked by these requests (lazily, every RELOAD_S per worker).
        eventually(lambda: http_ok(tenants, "fraud-secret")() and count(
            tenants.log_text(), r"keys file not reloaded") > before, ROTATION_DEADLINE_S,
            "the one log line")
        assert count(tenants.log_text(), r"keys file not reloaded: .* line 7: unknown "
                     r"model 'nope'") > before
        eventually(steadily(http_401(tenants, "bad-secret")), 5, "the bad file's key")
        assert grpc_is(tenants, "loan-secret", grpc.StatusCode.PERMISSION_DENIED)()  # scope kept
        assert grpc_is(tenants, "fraud-secret", grpc.StatusCode.OK)()
        assert grpc_is(tenants, "bad-secret", grpc.StatusCode.UNAUTHENTICATED)()
        assert http_ok(tenants, "fraud-secret")()
        # One line per worker at most, however many requests checked the file since.
        for _ in range(10):
            predict(tenants, "fraud-secret")
        assert count(tenants.log_text(), r"keys file not reloaded") - before <= WORKERS
    finally:
        write_keys(keys_path, BASELINE)


def test_a_file_missing_later_keeps_the_keys(tenants: server.Served, keys_path: Path) -> None:
    before = count(tenants.log_text(), r"keys file .* cannot be read")
    keys_path.unlink()
    try:
        def logged() -> bool:
            predict(tenants, "fraud-secret")  # the file is checked by requests, lazily
            return count(tenants.log_text(), r"keys file .* cannot be read") > before

        eventually(logged, ROTATION_DEADLINE_S, "the missing-file log line")
        eventually(steadily(http_ok(tenants, "fraud-secret"), 4), 5, "keys kept")
        assert grpc_is(tenants, "ops-secret", grpc.StatusCode.OK)()
    finally:
        write_keys(keys_path, BASELINE)


# ---- fail-secure start -----------------------------------------------------------------------

def _exits_with(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    proc = server.start(tmp_path / "refused.log", {"RISKSERVE_API_KEYS": "", **env}, wait=False)
    try:
        eventually(lambda: proc.proc.poll() is not None, 120, "the service refusing to start")
        assert proc.proc.returncode != 0
        assert needle in proc.log_text()
    finally:
        proc.stop()


def test_missing_keys_file_at_start_refuses(trained: dict, tmp_path: Path) -> None:
    _exits_with(tmp_path, {"RISKSERVE_API_KEYS_FILE": str(tmp_path / "absent")},
                "cannot be read")


def test_bad_keys_file_at_start_refuses_naming_the_line(trained: dict, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# ok\nk1 name=a\nk2 rate=lots\n")
    _exits_with(tmp_path, {"RISKSERVE_API_KEYS_FILE": str(keys)},
                f"{keys} line 3: rate= must be a positive number")
