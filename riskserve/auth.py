"""API-key authentication: key loading, constant-time checks, and the ASGI middleware.

Keys are kept only as SHA-256 digests in memory, compared with `hmac.compare_digest` against
every configured key (no early exit), and never logged. The middleware answers 401 before the
request body is read, so no model work happens for an unauthenticated caller.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskserve.errors import ConfigurationError
from riskserve.settings import Settings

logger = logging.getLogger("riskserve.auth")

# Paths anyone may call: probes, metrics, OIP health, and the API docs (which hold no data).
OPEN_PATHS = frozenset({
    "/livez", "/readyz", "/healthz", "/metrics", "/v2/health/live", "/v2/health/ready",
    "/docs.json", "/schema.json", "/", "/favicon.ico",
})
OPEN_PREFIXES = ("/static_content/", "/assets/")


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


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _parse(entry: str, source: str) -> bytes:
    entry = entry.strip()
    if entry.startswith("sha256:"):
        hexpart = entry.removeprefix("sha256:").strip().lower()
        try:
            raw = bytes.fromhex(hexpart)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigurationError(f"{source}: a 'sha256:' key must be 64 hex characters")
        return raw
    return digest(entry)


class KeyRing:
    """The set of accepted keys, as digests."""

    def __init__(self, digests: Iterable[bytes]) -> None:
        self._digests = tuple(digests)

    def __len__(self) -> int:
        return len(self._digests)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        entries: list[tuple[str, str]] = [
            (k, "RISKSERVE_API_KEYS") for k in settings.api_keys.split(",") if k.strip()
        ]
        if settings.api_keys_file:
            path = Path(settings.api_keys_file)
            if not path.is_file():
                raise ConfigurationError(f"RISKSERVE_API_KEYS_FILE={path} does not exist")
            entries += [(line, str(path)) for line in path.read_text().splitlines()
                        if line.strip() and not line.lstrip().startswith("#")]
        return cls(_parse(e, src) for e, src in entries)

    def check(self, presented: str) -> bool:
        """Constant-time membership: compares against every key whatever matches first."""
        candidate = digest(presented)
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(candidate, d)
        return ok


def require_keys(settings: Settings) -> KeyRing | None:
    """Fail-secure start: keys are mandatory unless auth is explicitly disabled.

    Returns None when auth is disabled (after logging a warning, on every start).
    """
    if settings.auth_disabled:
        logger.warning("AUTHENTICATION IS DISABLED (RISKSERVE_AUTH_DISABLED=true): "
                       "anyone who can reach this port can call every model")
        return None
    ring = KeyRing.from_settings(settings)
    if not len(ring):
        raise ConfigurationError(
            "no API keys configured: set RISKSERVE_API_KEYS or RISKSERVE_API_KEYS_FILE "
            "(or RISKSERVE_AUTH_DISABLED=true for local experiments only)"
        )
    return ring


def presented_key(headers: dict[str, str]) -> str | None:
    """`X-API-Key: k` or `Authorization: Bearer k` (header names lower-cased)."""
    if key := headers.get("x-api-key"):
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class APIKeyMiddleware:
    """Rejects protected HTTP requests without a valid key with a JSON 401.

    Keys are loaded when the worker builds its app, so a worker can never serve unprotected
    because of a missing Secret: `require_keys` raises instead.
    """

    def __init__(self, app: Any, settings: Settings,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.keyring = require_keys(settings)
        self.on_failure = on_failure

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.keyring is None or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        key = presented_key(headers)
        if key is not None and self.keyring.check(key):
            await self.app(scope, receive, send)
            return
        reason = "missing" if key is None else "invalid"
        if self.on_failure:
            self.on_failure(reason)
        message = ("missing API key: send it as 'X-API-Key: <key>' or "
                   "'Authorization: Bearer <key>'" if key is None else "invalid API key")
        body = json.dumps({"error": message, "detail": {"reason": reason}}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="riskserve"'),
        ]})
        await send({"type": "http.response.body", "body": body})
