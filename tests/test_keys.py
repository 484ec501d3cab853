"""Scoped API keys without a server: the keys-file format, token buckets and reloads with an
injected clock, the HTTP middleware on an in-process ASGI app, the gRPC interceptor on an
in-process grpc.aio server. No sleeps: time is a number the tests move."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from bentoml._internal.server.http.access import AccessLogMiddleware

from riskserve import accesslog, auth
from riskserve.auth import ANONYMOUS, APIKeyMiddleware, Caller, KeyRing, authenticate
from riskserve.core.specs import MODEL_NAMES
from riskserve.errors import ConfigurationError, RateLimited, Unauthorized
from riskserve.keyfile import default_name, parse_env, parse_file_text, parse_line
from riskserve.oip import grpc_auth
from riskserve.oip._proto import grpc_predict_v2_pb2 as pb
from riskserve.oip._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from riskserve.ratelimit import RateLimiter, TokenBucket
from riskserve.settings import Settings, get_settings


class Clock:
    """A monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeMetrics:
    """Records what authentication counts."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []
        self.limited: list[str] = []
        self.announced: list[list[str]] = []

    def auth_failure(self, reason: str, protocol: str) -> None:
        self.failures.append((reason, protocol))

    def rate_limited(self, key: str) -> None:
        self.limited.append(key)

    def known_keys(self, names: Iterable[str]) -> None:
        self.announced.append(list(names))


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text("# team keys\n"
                    "loan-secret name=loans models=risk-flag rate=2\n"
                    f"sha256:{sha('fraud-secret')} name=fraud models=fraud,phishing\n"
                    "ops-secret   # every model, unlimited\n")
    return path


def ring_of(path: Path, clock: Clock, api_keys: str = "") -> KeyRing:
    settings = Settings(api_keys=api_keys, api_keys_file=str(path), keys_reload_s=2.0)
    return KeyRing.from_settings(settings, clock=clock)


# ---- the keys-file format ------------------------------------------------------------------

def test_a_full_line_gives_name_scope_and_rate() -> None:
    entry = parse_line("k1 name=loans models=risk-flag,fraud rate=2.5", "f line 1")
    assert entry is not None
    assert entry.digest == hashlib.sha256(b"k1").digest()
    assert (entry.name, entry.models, entry.rate) == ("loans", {"risk-flag", "fraud"}, 2.5)


def test_defaults_are_every_model_no_rate_and_a_hash_derived_name() -> None:
    entry = parse_line("k1", "f line 1")
    assert entry is not None and entry.models is None and entry.rate is None
    assert entry.name == f"key-{sha('k1')[:8]}"
    hashed = parse_line(f"sha256:{sha('k1').upper()}", "f line 2")
    assert hashed is not None and hashed.name == entry.name and hashed.digest == entry.digest


def test_star_means_every_model_and_comments_are_ignored() -> None:
    star = parse_line("k1 models=* # note name=x", "f line 1")
    assert star is not None and star.models is None and star.name.startswith("key-")
    assert parse_line("   # a comment", "f line 1") is None
    assert parse_line("", "f line 1") is None
    entries = parse_file_text("# header\n\nk1 name=a\n  k2 name=b  \n", "keys")
    assert [e.name for e in entries] == ["a", "b"]
    assert [e.where for e in entries] == ["keys line 3", "keys line 4"]


@pytest.mark.parametrize(("line", "message"), [
    ("k1 models=fraud,nope", "line 7: unknown model 'nope' in models="),
    ("k1 models=", "line 7: models= needs model names"),
    ("k1 models=fraud,,phishing", "line 7: models= needs model names"),
    ("k1 rate=0", "line 7: rate= must be a positive number"),
    ("k1 rate=-1", "line 7: rate= must be a positive number"),
    ("k1 rate=fast", "line 7: rate= must be a positive number"),
    ("k1 rate=inf", "line 7: rate= must be a positive number"),
    ("k1 rate=nan", "line 7: rate= must be a positive number"),
    ("k1 name=has/slash", "line 7: name= must be 1-63 letters"),
    ("k1 name=-dash", "line 7: name= must be 1-63 letters"),
    ("k1 name=unknown", "line 7: name=unknown is reserved"),
    ("k1 name=anonymous", "line 7: name=anonymous is reserved"),
    ("k1 team=a", "line 7: unknown field 'team'"),
    ("k1 loans", "line 7: unknown field 'loans'"),
    ("k1 name=a name=b", "line 7: name= given twice"),
    ("name=a k1", "line 7: the key must come first"),
    ("sha256:abcd", "line 7: a 'sha256:' key must be 64 hex characters"),
    (f"sha256:{'z' * 64}", "line 7: a 'sha256:' key must be 64 hex characters"),
])
def test_bad_lines_name_the_line_and_the_field(line: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        parse_file_text("\n" * 6 + line, "keys")
    assert message in err.value.message
    assert "k1" not in err.value.message  # the key itself is never echoed


def test_unknown_model_error_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as err:
        parse_line("k1 models=frod", "keys line 1")
    assert all(name in err.value.message for name in MODEL_NAMES)


def test_names_and_keys_must_be_unique(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "keys"
    path.write_text("k1 name=a\nk2 name=a\n")
    with pytest.raises(ConfigurationError, match=r"line 2: name 'a' is already used by .*line 1"):
        ring_of(path, clock)
    path.write_text(f"k1 name=a\nsha256:{sha('k1')} name=b\n")
    with pytest.raises(ConfigurationError, match=r"line 2: the same key as .*line 1"):
        ring_of(path, clock)
    path.write_text("k1 name=a\n")
    with pytest.raises(ConfigurationError, match="line 1: the same key as RISKSERVE_API_KEYS"):
        ring_of(path, clock, api_keys="k1")


def test_env_keys_are_a_plain_comma_list() -> None:
    entries = parse_env(f" k1, sha256:{sha('k2')} ,,")
    assert [e.name for e in entries] == [default_name(hashlib.sha256(b"k1").digest()),
                                         f"key-{sha('k2')[:8]}"]
    assert all(e.models is None and e.rate is None for e in entries)
    with pytest.raises(ConfigurationError, match="RISKSERVE_API_KEYS entry 2: a 'sha256:'"):
        parse_env("k1,sha256:12")


# ---- lookup and scopes ---------------------------------------------------------------------

def test_lookup_returns_the_callers_scope(keyfile: Path, clock: Clock) -> None:
    ring = ring_of(keyfile, clock, api_keys="env-secret")
    loans = ring.lookup("loan-secret")
    assert loans == Caller("loans", frozenset({"risk-flag"}), 2.0)
    assert loans.may_use("risk-flag") and not loans.may_use("fraud")
    assert loans.allowed(MODEL_NAMES) == ["risk-flag"]
    fraud = ring.lookup("fraud-secret")
    assert fraud is not None and fraud.allowed(MODEL_NAMES) == ["phishing", "fraud"]
    ops = ring.lookup("ops-secret")
    assert ops is not None and ops.models is None and ops.allowed(MODEL_NAMES) == list(MODEL_NAMES)
    assert ops.name == f"key-{sha('ops-secret')[:8]}"
    assert ring.lookup("env-secret") is not None
    assert ring.lookup("nope") is None and ring.lookup("") is None
    assert ring.lookup(f"sha256:{sha('fraud-secret')}") is None  # the hash is not the key
    assert sorted(ring.names) == sorted(["loans", "fraud", ops.name,
                                         f"key-{sha('env-secret')[:8]}"])


def test_missing_or_unreadable_file_at_start_refuses(tmp_path: Path, clock: Clock) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        ring_of(tmp_path / "absent", clock)
    (tmp_path / "empty").write_text("# nothing yet\n")
    with pytest.raises(ConfigurationError, match="no API keys configured"):
        auth.require_keys(Settings(api_keys="", api_keys_file=str(tmp_path / "empty")))


def test_require_keys_gives_one_ring_per_process_and_settings(keyfile: Path) -> None:
    settings = Settings(api_keys_file=str(keyfile), keys_reload_s=7.5)
    ring = auth.require_keys(settings)
    assert ring is not None
    assert auth.require_keys(Settings(api_keys_file=str(keyfile), keys_reload_s=7.5)) is ring
    assert auth.require_keys(Settings(api_keys_file=str(keyfile), keys_reload_s=8)) is not ring


# ---- token buckets -------------------------------------------------------------------------

def test_bucket_allows_a_burst_of_rate_then_refills_at_rate(clock: Clock) -> None:
    bucket = TokenBucket(rate=4, burst=4, now=clock())
    assert [bucket.take(clock()) for _ in range(4)] == [0.0] * 4
    assert bucket.take(clock()) == pytest.approx(0.25)
    clock.advance(0.1)
    assert bucket.take(clock()) == pytest.approx(0.15)  # a refused call takes nothing
    clock.advance(0.15)
    assert bucket.take(clock()) == 0.0
    clock.advance(100)
    assert [bucket.take(clock()) for _ in range(5)].count(0.0) == 4  # never above the burst


def test_limiter_is_per_key_and_a_fractional_rate_admits_one(clock: Clock) -> None:
    limiter = RateLimiter(clock)
    assert limiter.wait("a", 1) == 0.0
    assert limiter.wait("a", 1) == pytest.approx(1.0)
    assert limiter.wait("b", 1) == 0.0  # other keys are unaffected
    assert limiter.wait("slow", 0.5) == 0.0
    assert limiter.wait("slow", 0.5) == pytest.approx(2.0)
    assert limiter.wait("a", 3) == 0.0  # a new rate is a new bucket


def test_authenticate_counts_and_refuses_with_clear_errors(keyfile: Path, clock: Clock) -> None:
    ring, metrics = ring_of(keyfile, clock), FakeMetrics()
    with pytest.raises(Unauthorized) as missing:
        authenticate(ring, None, "http", metrics)
    assert "X-API-Key" in missing.value.message and missing.value.status == 401
    assert missing.value.detail == {"field": "x-api-key", "reason": "missing"}
    with pytest.raises(Unauthorized, match="invalid API key"):
        authenticate(ring, "nope", "grpc", metrics)
    assert metrics.failures == [("missing", "http"), ("invalid", "grpc")]
    assert len(metrics.announced) == 1 and "loans" in metrics.announced[0]
    assert authenticate(ring, "loan-secret", "http", metrics).name == "loans"
    assert authenticate(ring, "loan-secret", "grpc", metrics).name == "loans"  # one bucket
    with pytest.raises(RateLimited) as limited:
        authenticate(ring, "loan-secret", "http", metrics)
    assert limited.value.status == 429 and limited.value.retry_after_s == pytest.approx(0.5)
    assert "key 'loans' is over its rate of 2 requests/s per worker" in limited.value.message
    assert metrics.limited == ["loans"]
    for _ in range(20):  # unlimited keys and other keys are unaffected
        assert authenticate(ring, "ops-secret", "http", metrics).rate is None
    clock.advance(0.5)
    assert authenticate(ring, "loan-secret", "http", metrics).name == "loans"
    assert authenticate(None, None, "http", metrics) is ANONYMOUS  # auth disabled


# ---- reload --------------------------------------------------------------------------------

def test_rotation_is_seen_after_the_interval(keyfile: Path, clock: Clock) -> None:
    ring, metrics = ring_of(keyfile, clock), FakeMetrics()
    authenticate(ring, "ops-secret", "http", metrics)
    keyfile.write_text("new-secret name=newbie models=fraud\nops-secret\n")
    clock.advance(1.9)
    assert ring.lookup("new-secret") is None and ring.lookup("loan-secret") is not None
    clock.advance(0.1)
    assert ring.lookup("new-secret") == Caller("newbie", frozenset({"fraud"}))
    assert ring.lookup("loan-secret") is None and ring.lookup("fraud-secret") is None
    authenticate(ring, "ops-secret", "http", metrics)
    assert metrics.announced[-1] == ["newbie", f"key-{sha('ops-secret')[:8]}"]


def test_a_bad_file_keeps_the_keys_and_logs_one_line(keyfile: Path, clock: Clock,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    ring = ring_of(keyfile, clock)
    keyfile.write_text("ok-secret name=ok\nbad-secret models=nope\n")
    with caplog.at_level(logging.ERROR, "riskserve.auth"):
        for _ in range(5):
            clock.advance(2)
            assert ring.lookup("loan-secret") is not None and ring.lookup("ok-secret") is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "line 2: unknown model 'nope'" in lines[0]
    assert "keeping the 3 keys" in lines[0] and "secret" not in lines[0].replace(
        str(keyfile), "")
    keyfile.write_text("ok-secret name=ok\n")
    clock.advance(2)
    assert ring.lookup("ok-secret") is not None and ring.lookup("loan-secret") is None


def test_an_emptied_file_keeps_the_keys(keyfile: Path, clock: Clock,
                                        caplog: pytest.LogCaptureFixture) -> None:
    ring = ring_of(keyfile, clock)
    keyfile.write_text("# all gone\n")
    with caplog.at_level(logging.ERROR, "riskserve.auth"):
        clock.advance(2)
        assert ring.lookup("ops-secret") is not None
    assert "holds no keys" in caplog.records[0].getMessage()


def test_a_missing_file_keeps_the_keys_and_logs_once(keyfile: Path, clock: Clock,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    ring = ring_of(keyfile, clock)
    text = keyfile.read_text()
    keyfile.unlink()
    with caplog.at_level(logging.ERROR, "riskserve.auth"):
        for _ in range(4):
            clock.advance(2)
            assert ring.lookup("ops-secret") is not None
    assert len(caplog.records) == 1 and "cannot be read" in caplog.records[0].getMessage()
    keyfile.write_text(text + "back-secret name=back\n")
    clock.advance(2)
    assert ring.lookup("back-secret") is not None


def test_kubelet_style_symlink_swap_is_seen(tmp_path: Path, clock: Clock) -> None:
    """kubelet writes a new timestamped directory and atomically repoints `..data` at it; the
    file name is a symlink into `..data`, so only re-resolving the path sees the new keys."""
    mount = tmp_path / "secret"
    first = mount / "..2026_01"
    first.mkdir(parents=True)
    (first / "keys").write_text("old-secret name=old\n")
    (mount / "..data").symlink_to(first.name)
    (mount / "keys").symlink_to("..data/keys")
    ring = ring_of(mount / "keys", clock)
    second = mount / "..2026_02"
    second.mkdir()
    (second / "keys").write_text("new-secret name=new\n")
    (mount / "..data_tmp").symlink_to(second.name)
    os.replace(mount / "..data_tmp", mount / "..data")
    clock.advance(2)
    assert ring.lookup("new-secret") is not None and ring.lookup("old-secret") is None


def test_a_bucket_survives_a_reload_when_its_rate_is_unchanged(keyfile: Path,
                                                               clock: Clock) -> None:
    ring, metrics = ring_of(keyfile, clock), FakeMetrics()
    clock.advance(1.9)
    for _ in range(2):  # the burst of 2 is spent just before the reload is due
        authenticate(ring, "loan-secret", "http", metrics)
    keyfile.write_text(keyfile.read_text() + "extra-secret name=extra\n")
    clock.advance(0.1)  # refills 0.2 of a token; a fresh bucket would hold 2
    assert authenticate(ring, "extra-secret", "http", metrics).name == "extra"  # reloaded
    with pytest.raises(RateLimited):
        authenticate(ring, "loan-secret", "http", metrics)


# ---- HTTP middleware, in process -----------------------------------------------------------

async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the caller's name, as the data plane would read it (probes: "live")."""
    body = b"live" if scope["path"] == "/livez" else auth.caller_of_scope(scope).name.encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _requests(app: Any, calls: list[tuple[str, dict[str, str]]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with _client(app) as client:
            return [await client.get(path, headers=headers) for path, headers in calls]
    return asyncio.run(run())


def test_middleware_answers_401_429_and_stamps_the_caller(keyfile: Path, clock: Clock) -> None:
    metrics = FakeMetrics()
    app = APIKeyMiddleware(_echo_app, keyring=ring_of(keyfile, clock), metrics=metrics)
    loans = {"X-API-Key": "loan-secret"}
    missing, bad, ok, bearer, limited, probe = _requests(app, [
        ("/v1/models", {}), ("/v1/models", {"X-API-Key": "nope"}), ("/v1/models", loans),
        ("/v1/models", {"Authorization": "Bearer loan-secret"}), ("/v1/models", loans),
        ("/livez", {})])
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json() == {"error": auth.MISSING["http"],
                              "detail": {"field": "x-api-key", "reason": "missing"}}
    assert bad.status_code == 401 and bad.json()["error"] == "invalid API key"
    assert (ok.status_code, ok.text, bearer.text) == (200, "loans", "loans")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert limited.json()["error"].startswith("key 'loans' is over its rate of 2")
    assert limited.json()["detail"]["key"] == "loans"
    assert (probe.status_code, probe.text) == (200, "live")  # probes stay open
    assert metrics.failures == [("missing", "http"), ("invalid", "http")]
    assert metrics.limited == ["loans"]


def test_access_log_names_the_key_never_the_key(keyfile: Path, clock: Clock,
                                                caplog: pytest.LogCaptureFixture) -> None:
    inner = APIKeyMiddleware(_echo_app, keyring=ring_of(keyfile, clock), metrics=FakeMetrics())
    app = AccessLogMiddleware(inner)
    with caplog.at_level(logging.INFO, accesslog.ACCESS_LOGGER):
        _requests(app, [("/v1/models", {"X-API-Key": "fraud-secret"}),
                        ("/v1/models", {"X-API-Key": "nope"})])
    lines = [r.getMessage() for r in caplog.records if r.name == accesslog.ACCESS_LOGGER]
    assert len(lines) == 2
    assert "status=200" in lines[0] and lines[0].endswith("key=fraud")
    assert "status=401" in lines[1] and lines[1].endswith("key=unknown")
    assert not any("secret" in line or "nope" in line for line in lines)


def test_an_unstamped_request_is_refused_unless_auth_is_disabled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RISKSERVE_AUTH_DISABLED", raising=False)
    get_settings.cache_clear()
    with pytest.raises(Unauthorized):
        auth.caller_of_scope({"type": "http", "path": "/v1/models"})
    monkeypatch.setenv("RISKSERVE_AUTH_DISABLED", "true")
    get_settings.cache_clear()
    try:
        assert auth.caller_of_scope({"type": "http", "path": "/v1/models"}) is ANONYMOUS
    finally:
        get_settings.cache_clear()


def test_without_auth_every_request_is_anonymous() -> None:
    (resp,) = _requests(APIKeyMiddleware(_echo_app, keyring=None), [("/v1/models", {})])
    assert resp.status_code == 200 and resp.text == "anonymous"


# ---- gRPC interceptor, in process ----------------------------------------------------------

class _WhoServicer(pb_grpc.GRPCInferenceServiceServicer):
    """ModelMetadata answers with the caller's name; ServerLive stays open."""

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return pb.ModelMetadataResponse(name=grpc_auth.caller_of_grpc(context).name)
        except Unauthorized as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)


@pytest.fixture()
def process_keys(keyfile: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyRing]:
    """This process's settings point at the keys file, so caller_of_grpc finds the ring."""
    monkeypatch.setenv("RISKSERVE_API_KEYS_FILE", str(keyfile))
    monkeypatch.setenv("RISKSERVE_API_KEYS", "")
    monkeypatch.delenv("RISKSERVE_AUTH_DISABLED", raising=False)
    get_settings.cache_clear()
    ring = auth.require_keys(get_settings())
    assert ring is not None
    ring.limiter = RateLimiter(Clock())  # frozen time: buckets refill only when told
    yield ring
    get_settings.cache_clear()


def _grpc_calls(ring: KeyRing, metrics: FakeMetrics,
                calls: list[tuple[str, tuple[tuple[str, str], ...]]]) -> list[Any]:
    """Run each (method, metadata) against an in-process server; a result or the RpcError."""
    async def run() -> list[Any]:
        server = grpc.aio.server(interceptors=[grpc_auth.APIKeyInterceptor(ring,
                                                                           metrics=metrics)])
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(_WhoServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        out: list[Any] = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                for method, md in calls:
                    request = (pb.ServerLiveRequest() if method == "ServerLive"
                               else pb.ModelMetadataRequest(name="fraud"))
                    try:
                        out.append(await getattr(stub, method)(request, metadata=md,
                                                               timeout=10))
                    except grpc.aio.AioRpcError as exc:
                        out.append(exc)
        finally:
            await server.stop(None)
        return out
    return asyncio.run(run())


def test_grpc_interceptor_answers_like_http(process_keys: KeyRing) -> None:
    metrics = FakeMetrics()
    loans = (("x-api-key", "loan-secret"),)
    missing, bad, ok, bearer, limited, live = _grpc_calls(process_keys, metrics, [
        ("ModelMetadata", ()), ("ModelMetadata", (("x-api-key", "nope"),)),
        ("ModelMetadata", loans), ("ModelMetadata", (("authorization", "Bearer loan-secret"),)),
        ("ModelMetadata", loans), ("ServerLive", ())])
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert missing.details() == auth.MISSING["grpc"]
    assert bad.code() == grpc.StatusCode.UNAUTHENTICATED and bad.details() == "invalid API key"
    assert ok.name == "loans" and bearer.name == "loans"
    assert limited.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limited.details().startswith("key 'loans' is over its rate of 2 requests/s")
    assert ("retry-after", "1") in tuple(limited.trailing_metadata())
    assert live.live
    assert metrics.failures == [("missing", "grpc"), ("invalid", "grpc")]
    assert metrics.limited == ["loans"]


def test_grpc_handler_gets_the_caller_the_interceptor_authenticated(
        process_keys: KeyRing, tmp_path: Path, clock: Clock) -> None:
    """The servicer takes the interceptor's Caller (handed over in the call's task), not a
    second lookup: a key only the interceptor's ring holds still names its team there."""
    other = tmp_path / "other-keys"
    other.write_text("solo-secret name=solo\n")
    (who,) = _grpc_calls(ring_of(other, clock), FakeMetrics(),
                         [("ModelMetadata", (("x-api-key", "solo-secret"),))])
    assert not isinstance(who, grpc.aio.AioRpcError), who
    assert who.name == "solo"
    assert process_keys.lookup("solo-secret") is None  # the process's own ring does not know it


def test_grpc_and_http_share_one_bucket(process_keys: KeyRing) -> None:
    app = APIKeyMiddleware(_echo_app, keyring=process_keys, metrics=FakeMetrics())
    first, second = _requests(app, [("/v1/models", {"X-API-Key": "loan-secret"})] * 2)
    assert (first.status_code, second.status_code) == (200, 200)
    (third,) = _grpc_calls(process_keys, FakeMetrics(),
                           [("ModelMetadata", (("x-api-key", "loan-secret"),))])
    assert third.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
