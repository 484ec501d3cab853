"""API-key authentication: the key ring (scoped keys, reloaded on change), rate limits, and the
HTTP middleware that answers 401 / 429 before any body is read.

Keys are kept only as SHA-256 digests in memory, compared with `hmac.compare_digest` against
every configured key (no early exit), and never logged. Each process has one KeyRing
(`require_keys`), shared by its HTTP middleware and its gRPC interceptor, so a rotated keys file
and a key's token bucket are the same for both protocols. Rates are per worker: a key with
`rate=n` may make n x RISKSERVE_WORKERS requests/s per pod (see riskserve.ratelimit).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from riskserve import accesslog, http
from riskserve.errors import ConfigurationError, RateLimited, RiskserveError, Unauthorized
from riskserve.keyfile import KeyEntry, check_unique, parse_env, parse_file_text
from riskserve.keyfile import digest as digest
from riskserve.metrics import get_metrics
from riskserve.ratelimit import RateLimiter
from riskserve.settings import Settings, get_settings

logger = logging.getLogger("riskserve.auth")

# Paths anyone may call: probes, metrics, OIP health, and the API docs (which hold no data).
OPEN_PATHS = frozenset({
    "/livez", "/readyz", "/healthz", "/metrics", "/v2/health/live", "/v2/health/ready",
    "/docs.json", "/schema.json", "/", "/favicon.ico",
})
OPEN_PREFIXES = ("/static_content/", "/assets/")
# Where the HTTP middleware leaves the authenticated Caller in the ASGI scope.
CALLER_KEY = "riskserve.caller"
# What a 401 says, per protocol: how to send the key there.
MISSING = {
    "http": "missing API key: send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
    "grpc": "missing API key: send metadata 'x-api-key: <key>' or 'authorization: Bearer <key>'",
}
INVALID = "invalid API key"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's name (never the key) and the models it may use.

    `models` None means every model (a key without `models=`, or auth disabled). The data plane
    asks `may_use` before any model work; listings show `allowed(...)` only.
    """

    name: str
    models: frozenset[str] | None = None
    rate: float | None = None  # requests per second per worker (token bucket), None: unlimited

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def allowed(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.may_use(n)]


# The caller when auth is disabled (RISKSERVE_AUTH_DISABLED=true): may use everything.
ANONYMOUS = Caller("anonymous")


class AuthMetrics(Protocol):
    """What authentication counts (riskserve.metrics.Metrics; a fake in unit tests)."""

    def auth_failure(self, reason: str, protocol: str) -> None: ...
    def rate_limited(self, key: str) -> None: ...
    def known_keys(self, names: Iterable[str]) -> None: ...


class KeyRing:
    """The accepted keys (digest -> Caller), re-read from the keys file when it changes.

    The file is checked at most every `reload_s` seconds, lazily, by the request that finds the
    check due (a stat and a read of a small file, on a mounted Secret's tmpfs). It is read
    through its path each time, so kubelet's swap of a Secret's symlinked directory is seen. A
    file that fails to parse, is empty, or is missing keeps the keys loaded before and logs one
    line (per bad content, per disappearance); a good file replaces the keys atomically, so a
    request in flight is never affected. Buckets of keys that keep their name and rate survive.
    """

    def __init__(self, entries: Iterable[KeyEntry], *, path: Path | None = None,
                 env: Sequence[KeyEntry] = (), content: bytes | None = None,
                 reload_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.reload_s = reload_s
        self.clock = clock
        self.limiter = RateLimiter(clock)
        self.generation = 0  # bumped on every (re)load; metrics re-announce names on change
        self._env = tuple(env)
        self._hash = _hash(content)
        self._bad_hash: bytes | None = None
        self._missing_logged = False
        self._next_check = clock() + reload_s
        self._announced = -1
        self._install(list(entries))

    def _install(self, entries: list[KeyEntry]) -> None:
        self._keys = tuple((e.digest, Caller(e.name, e.models, e.rate)) for e in entries)
        self.generation += 1
        self.limiter.keep_only(self.names)

    @classmethod
    def from_settings(cls, settings: Settings,
                      clock: Callable[[], float] = time.monotonic) -> KeyRing:
        """Keys from RISKSERVE_API_KEYS plus RISKSERVE_API_KEYS_FILE; any error raises (at
        start a bad or missing file must stop the service, never serve with fewer keys)."""
        env = parse_env(settings.api_keys)
        path = Path(settings.api_keys_file) if settings.api_keys_file else None
        content = None
        file_entries: list[KeyEntry] = []
        if path is not None:
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise ConfigurationError(f"RISKSERVE_API_KEYS_FILE={path} cannot be read "
                                         f"({exc.strerror or 'does not exist'})") from None
            file_entries = _parse_bytes(content, path)
        check_unique([*env, *file_entries])
        return cls([*env, *file_entries], path=path, env=env, content=content,
                   reload_s=settings.keys_reload_s, clock=clock)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def names(self) -> list[str]:
        return [caller.name for _, caller in self._keys]

    def lookup(self, presented: str) -> Caller | None:
        """The Caller of a presented key, or None. Constant time in the key: every digest is
        compared, whatever matched first."""
        self.refresh()
        candidate = digest(presented)
        found = None
        for key_digest, caller in self._keys:
            if hmac.compare_digest(candidate, key_digest):
                found = caller
        return found

    def check(self, presented: str) -> bool:
        return self.lookup(presented) is not None

    def wait(self, caller: Caller) -> float:
        """0.0 when the caller may proceed, else the seconds until its bucket has a token."""
        return 0.0 if caller.rate is None else self.limiter.wait(caller.name, caller.rate)

    def announce(self, metrics: AuthMetrics) -> None:
        """Tell metrics every key name once per (re)load, so rate() sees a key's first call."""
        if self._announced != self.generation:
            self._announced = self.generation
            metrics.known_keys(self.names)

    def refresh(self) -> bool:
        """Re-read the keys file if a check is due; True when the keys changed."""
        if self.path is None:
            return False
        now = self.clock()
        if now < self._next_check:
            return False
        self._next_check = now + self.reload_s
        try:
            content = self.path.read_bytes()
        except OSError as exc:
            if not self._missing_logged:
                self._missing_logged = True
                logger.error("keys file %s cannot be read (%s); keeping the %d keys loaded "
                             "before", self.path, exc.strerror or type(exc).__name__, len(self))
            return False
        self._missing_logged = False
        content_hash = _hash(content)
        if content_hash in (self._hash, self._bad_hash):
            return False
        try:
            entries = _parse_bytes(content, self.path)
            check_unique([*self._env, *entries])
            if not entries and not self._env:
                raise ConfigurationError(f"{self.path} holds no keys")
        except ConfigurationError as exc:
            self._bad_hash = content_hash
            logger.error("keys file not reloaded: %s; keeping the %d keys loaded before",
                         exc.message, len(self))
            return False
        self._hash, self._bad_hash = content_hash, None
        self._install([*self._env, *entries])
        logger.info("keys file %s reloaded: %d keys (%s)", self.path, len(self),
                    ", ".join(self.names))
        return True


def _hash(content: bytes | None) -> bytes | None:
    return None if content is None else hashlib.sha256(content).digest()


def _parse_bytes(content: bytes, path: Path) -> list[KeyEntry]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content[:exc.start].count(b"\n") + 1
        raise ConfigurationError(f"{path} line {line}: not UTF-8 text") from None
    return parse_file_text(text, str(path))


# One ring per process and configuration: the HTTP middleware, the gRPC interceptor and
# caller_of_grpc must share the reloaded keys and the token buckets.
_RINGS: dict[tuple[Any, ...], KeyRing] = {}


def require_keys(settings: Settings) -> KeyRing | None:
    """Fail-secure start: keys are mandatory unless auth is explicitly disabled.

    Returns this process's KeyRing for these settings (the same object on every call), or None
    when auth is disabled (after logging a warning, on every start).
    """
    if settings.auth_disabled:
        logger.warning("AUTHENTICATION IS DISABLED (RISKSERVE_AUTH_DISABLED=true): "
                       "anyone who can reach this port can call every model")
        return None
    cache_key = (os.getpid(), settings.api_keys, settings.api_keys_file, settings.keys_reload_s)
    if (ring := _RINGS.get(cache_key)) is not None:
        return ring
    ring = KeyRing.from_settings(settings)
    if not len(ring):
        raise ConfigurationError(
            "no API keys configured: set RISKSERVE_API_KEYS or RISKSERVE_API_KEYS_FILE "
            "(or RISKSERVE_AUTH_DISABLED=true for local experiments only)"
        )
    return _RINGS.setdefault(cache_key, ring)


def authenticate(keyring: KeyRing | None, presented: str | None, protocol: str,
                 metrics: AuthMetrics | None) -> Caller:
    """The caller behind a presented key, or Unauthorized (401) / RateLimited (429), counted.

    One function for HTTP and gRPC so both say, count and log the same thing: it also names the
    caller on the request's access-log line (`unknown` for a refused key). `keyring` None means
    auth is disabled: ANONYMOUS, unlimited.
    """
    if keyring is None:
        accesslog.key_name.set(ANONYMOUS.name)
        return ANONYMOUS
    if presented is None:
        keyring.refresh()  # a rotation is picked up whoever calls
        caller = None
    else:
        caller = keyring.lookup(presented)
    if metrics is not None:
        keyring.announce(metrics)
    if caller is None:
        accesslog.key_name.set(accesslog.UNKNOWN_KEY)
        reason = "missing" if presented is None else "invalid"
        if metrics is not None:
            metrics.auth_failure(reason, protocol)
        raise Unauthorized(MISSING[protocol] if presented is None else INVALID,
                           {"field": "x-api-key", "reason": reason})
    accesslog.key_name.set(caller.name)
    if wait := keyring.wait(caller):
        if metrics is not None:
            metrics.rate_limited(caller.name)
        raise RateLimited(caller.name, caller.rate or 0.0, wait)
    return caller


def presented_key(headers: dict[str, str]) -> str | None:
    """`X-API-Key: k` or `Authorization: Bearer k` (header names lower-cased)."""
    if key := headers.get("x-api-key"):
        return key.strip() or None
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def caller_of_scope(scope: dict[str, Any]) -> Caller:
    """The Caller the middleware authenticated for this request.

    Fail-secure: a request the middleware did not stamp (an app mounted without it) is
    ANONYMOUS only when auth is disabled by setting; otherwise it is a 401.
    """
    caller = scope.get("state", {}).get(CALLER_KEY)
    if caller is not None:
        return caller
    if get_settings().auth_disabled:
        return ANONYMOUS
    raise Unauthorized(MISSING["http"], {"field": "x-api-key", "reason": "missing"})


_KEY_HEADERS = (b"x-api-key", b"authorization")


class APIKeyMiddleware:
    """Authenticates protected HTTP requests and applies the key's rate, before any body is
    read: 401 (missing / invalid key) or 429 with Retry-After (over `rate=`, per worker), as
    riskserve's JSON error. On success the Caller is in `scope["state"]["riskserve.caller"]`
    (read it with `caller_of_scope`) and its name on the access-log line.

    Keys are loaded when the worker builds its app, so a worker can never serve unprotected
    because of a missing Secret: `require_keys` raises instead. `on_failure` is accepted for
    older wiring and ignored: failures are counted here, with the protocol, once.
    """

    def __init__(self, app: Any, settings: Settings | None = None,
                 on_failure: Callable[[str], None] | None = None, *,
                 keyring: KeyRing | None = None, metrics: AuthMetrics | None = None) -> None:
        self.app = app
        self.keyring = require_keys(settings) if settings is not None else keyring
        self._metrics = metrics
        accesslog.install()

    def metrics(self) -> AuthMetrics | None:
        """riskserve's metrics, created on the first request (in the worker, after BentoML set
        PROMETHEUS_MULTIPROC_DIR), never when the app is built."""
        if self._metrics is None and self.keyring is not None:
            self._metrics = get_metrics()
        return self._metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        # ASGI header names are lower-case bytes; decode only the two that can carry a key.
        headers = {k.decode("latin-1"): v.decode("latin-1")
                   for k, v in scope.get("headers", ()) if k in _KEY_HEADERS}
        try:
            caller = authenticate(self.keyring, presented_key(headers), "http", self.metrics())
        except RiskserveError as exc:
            await http.send_error(send, exc)
            return
        scope.setdefault("state", {})[CALLER_KEY] = caller
        await self.app(scope, receive, send)
