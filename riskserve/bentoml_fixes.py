"""Every change riskserve makes to BentoML's own behaviour, in one place, applied explicitly.

`apply()` is called by service.py next to `add_asgi_middleware`, before BentoML builds a
worker's ASGI app. Each fix names the BentoML versions it was written against and the upstream
issue it tracks; outside that range it logs one line and changes nothing.
tests/test_bentoml_fixes.py runs BentoML's original code for each fix and fails once upstream
behaves differently, which is the signal to drop (or re-check) the fix.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

logger = logging.getLogger("riskserve.bentoml_fixes")

# The BentoML releases every fix below was written and tested against.
WRITTEN_FOR = SpecifierSet(">=1.4.0,<1.5")


# BentoML's own functions, kept when replaced: the canary tests run them to notice upstream fixes.
_originals: dict[tuple[type, str], Any] = {}


def _replace(cls: type, attr: str, new: Any) -> None:
    _originals.setdefault((cls, attr), getattr(cls, attr))
    setattr(cls, attr, new)


def original_of(cls: type, attr: str) -> Any:
    """BentoML's own implementation of `cls.attr`, whether or not a fix replaced it."""
    return _originals.get((cls, attr), getattr(cls, attr))


@dataclass(frozen=True)
class Fix:
    name: str
    tracks: str  # the upstream issue / PR, or why there is none
    install: Callable[[], None]


def _timeout_fix() -> None:
    """BentoML's TimeoutMiddleware arms `loop.call_later(timeout, ...)` per request and never
    cancels it, so every request's timer handle (with its future, its contextvars context and
    the request's OpenTelemetry span) lives for the whole timeout (60 s) after the answer: at
    700 req/s ~40,000 live spans per worker, and the cyclic GC's full collections over them
    paused the worker for 200-300 ms (the p99 of every route). Same behaviour otherwise."""
    from bentoml._internal.server.http import traffic

    _replace(traffic.TimeoutMiddleware, "__call__", _timeout_call)


async def _timeout_call(self: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """BentoML 1.4's TimeoutMiddleware.__call__, with its timer cancelled when it is done."""
    if scope["type"] not in ("http", "websocket"):
        await self.app(scope, receive, send)
        return
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    # An empty context: the timer must not keep the request's context (and its span) alive.
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter,
                            context=contextvars.Context())

    async def _send(message: dict[str, Any]) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    try:
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                from starlette.responses import JSONResponse

                resp = JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"},
                    status_code=504)
                await resp(scope, receive, send)
        else:
            timer.cancel()
            await fut  # the response has started: let it finish
    finally:
        timer.cancel()


def _endpoint_fix() -> None:
    """@bentoml.api routes answer riskserve's errors the way every other route does.

    BentoML's `api_endpoint_wrapper` turns any exception of a handler into its own 500, so a
    RiskserveError is rendered here by riskserve.http (the same function the /v1 and /v2 apps'
    exception handlers use). Two BentoML answers are corrected on the way, both found by
    fuzzing /docs.json with schemathesis: a malformed multipart upload (Starlette's
    HTTPException(400) inside BentoML's form parsing) became a 500 and is now that 400, and
    BentoML's own 4xx came as a one-element JSON list instead of an object. A body that fails
    the pydantic input model (no `inputs`, a number for a list) is answered here too: BentoML
    logged each one with a full traceback and said only "1 validation error for Input".
    """
    from _bentoml_impl.server.app import ServiceAppFactory
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError
    from starlette.exceptions import HTTPException

    from riskserve import http
    from riskserve.errors import BadRequest, RiskserveError

    original = original_of(ServiceAppFactory, "api_endpoint")

    async def api_endpoint(self: Any, name: str, request: Any) -> Any:
        try:
            return await original(self, name, request)
        except RiskserveError as exc:
            return http.error_response(exc)
        except ValidationError as exc:
            return http.error_response(_schema_error(exc))
        except HTTPException as exc:  # e.g. "Invalid multipart data." from the form parser
            return http.error_response(BadRequest(str(exc.detail), {"field": "body"}),
                                       exc.status_code)
        except BentoMLException as exc:
            status = int(exc.error_code)
            if status >= 500:
                raise  # BentoML's own generic 500 (logged), as before
            return http.error_response(BadRequest(str(exc)), status)

    _replace(ServiceAppFactory, "api_endpoint", api_endpoint)


def _schema_error(exc: Any) -> Any:
    """A pydantic ValidationError of a request body as one BadRequest naming the first field.

    `detail.errors` keeps pydantic's list (location, message, type) without the input values:
    an answer does not echo a caller's data back.
    """
    from riskserve.errors import BadRequest

    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors(include_url=False, include_input=False)]
    first = errors[0] if errors else {"loc": [], "msg": str(exc)}
    field = _dotted(first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return BadRequest(f"field '{field}': {first['msg']}{more}; the request schema is at /docs.json",
                      {"field": field, "errors": errors})


def _dotted(loc: list[Any]) -> str:
    """pydantic's location tuple as one field path: ("inputs", 0, "amount") -> inputs[0].amount."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _openapi_fix() -> None:
    """/docs.json (and so the Swagger page at /) describes riskserve: its title, version and
    description, every route including the mounted GET /v1/models and /v2, and the statuses
    actually returned. BentoML documents only the @bentoml.api POST routes, with its stock
    README as description and 200/400/404/500 with a string `detail`."""
    from _bentoml_impl.server.app import ServiceAppFactory
    from starlette.responses import JSONResponse

    from riskserve import openapi

    async def openapi_spec_view(self: Any, request: Any) -> Any:
        try:
            return JSONResponse(openapi.document(self.service.openapi_spec.asdict()))
        except Exception:
            logger.exception("failed to generate the OpenAPI document")
            return JSONResponse({"error": "Failed to generate OpenAPI spec"}, status_code=500)

    _replace(ServiceAppFactory, "openapi_spec_view", openapi_spec_view)

    # The Swagger page at `/`: riskserve's title and BentoML's own served assets, without the
    # Google Tag Manager snippet BentoML's page loads for every visitor.
    original_index = original_of(ServiceAppFactory, "index_page")

    async def index_page(self: Any, request: Any) -> Any:
        from bentoml._internal.configuration.containers import BentoMLContainer
        from starlette.responses import HTMLResponse

        if BentoMLContainer.new_index:
            return await original_index(self, request)
        return HTMLResponse(openapi.swagger_page())

    _replace(ServiceAppFactory, "index_page", index_page)


def _api_method_fix() -> None:
    """BentoML resolves an @bentoml.api method on every request (`getattr(instance,
    name).local` in ServiceAppFactory.api_endpoint), and `APIMethod._local_call` then runs
    `inspect.signature` and builds a new wrapper each time: ~3 % of a /v1 request's CPU
    (`make profile`). The wrapper depends only on the method and the instance, so it is built
    once per instance and reused; remote proxies (`__self_proxy__`) are resolved as before."""
    from _bentoml_sdk.method import APIMethod

    _replace(APIMethod, "_local_call", _cached_local_call)


def _cached_local_call(self: Any, instance: Any) -> Any:
    cache = instance.__dict__.setdefault("_riskserve_local_calls", {})
    local = cache.get(self.name)
    if local is None:
        from _bentoml_sdk.method import APIMethod

        local = cache[self.name] = original_of(APIMethod, "_local_call")(self, instance)
    return local


# BentoML's name for the HTTP API server's circus socket (_bentoml_impl.server.serving).
API_SOCKET = "_bento_api_server"


def _socket_per_worker_fix() -> None:
    """BentoML binds one HTTP socket in the arbiter and every worker accepts from it. Linux
    then hands a burst of new connections mostly to whichever worker wakes first (a measured
    cell: 30 of 36 connections on one of two workers), so one worker's clients share a core
    while the other idles, and a neighbour's connections can land beside fraud's. circus can
    give each worker its own SO_REUSEPORT socket on the same port, which the kernel balances by
    connection (the gRPC server already binds one per worker); BentoML never asks for it.

    Only with several workers on Linux: with one, the arbiter's socket keeps queueing
    connections while a crashed worker restarts (per-worker sockets would refuse them), and
    elsewhere SO_REUSEPORT does not balance.

    Two pieces: BentoML's API socket asks for SO_REUSEPORT, and circus, which re-creates such
    a socket per process only when the watcher's `cmd` names it, also looks in `args` (where
    BentoML puts `--fd $(circus.sockets._bento_api_server)`)."""
    from circus.process import Process
    from circus.sockets import CircusSocket

    _replace(CircusSocket, "__init__", _reuseport_init)
    _replace(Process, "_get_sockets_fds", _sockets_fds_per_process)


def _reuseport_init(self: Any, *args: Any, **kwargs: Any) -> None:
    import socket

    from circus.sockets import CircusSocket

    own = kwargs.get("name") == API_SOCKET and not kwargs.get("path")
    if own:
        kwargs["so_reuseport"] = True
    original_of(CircusSocket, "__init__")(self, *args, **kwargs)
    if own and not hasattr(self, "_cfg"):
        # circus re-creates a reuseport socket per worker from its config (Process.spawn):
        # set by `load_from_config` only, so the one BentoML builds directly gets it here.
        family = "AF_INET6" if kwargs.get("family") == socket.AF_INET6 else "AF_INET"
        self._cfg = {"name": API_SOCKET, "host": self.host, "port": self.port,
                     "family": family, "backlog": self.backlog, "so_reuseport": True}


def _sockets_fds_per_process(self: Any) -> dict[str, int] | None:
    from circus.process import Process
    from circus.sockets import CircusSocket

    fds = original_of(Process, "_get_sockets_fds")(self)
    watcher = self.watcher
    if fds is None or watcher is None or not watcher.sockets:
        return fds
    args = " ".join(self.args) if isinstance(self.args, list) else str(self.args or "")
    for name, sock in watcher.sockets.items():
        ref = f"circus.sockets.{name}"
        if sock.so_reuseport and ref not in watcher.cmd and ref in args:
            own = CircusSocket.load_from_config(sock._cfg)
            own.bind_and_listen()
            fds[name] = own.fileno()
            self._sockets.append(own)  # circus lets go of it once the process is started
    return fds


FIXES = (
    Fix("timeout-timer", "no upstream report found (searched bentoml/BentoML issues, 2026-12); "
        "the fix to propose: cancel the call_later handle once the response starts",
        _timeout_fix),
    Fix("api-errors", "bentoml/BentoML#4232 and PR #5709 (4xx rendered as a JSON list); "
        "riskserve errors: BentoML has no exception-handler hook for @bentoml.api routes",
        _endpoint_fix),
    Fix("openapi", "bentoml/BentoML#4232 (the schema differs from the answers); mounted ASGI "
        "apps are never documented; the index page loads Google Tag Manager", _openapi_fix),
    Fix("api-method-per-request", "no upstream report found (searched bentoml/BentoML "
        "issues, 2026-12); the fix to propose: build the local caller once per instance",
        _api_method_fix),
)
# Applied only when the service runs several workers on Linux (see _socket_per_worker_fix).
SOCKET_FIX = Fix("socket-per-worker", "bentoml/BentoML#5426 (uneven request distribution "
                 "across workers; PR #5557 proposed SO_REUSEPORT, closed unmerged)",
                 _socket_per_worker_fix)
_applied: set[str] = set()


def bentoml_version() -> str:
    from importlib.metadata import version

    return version("bentoml")


def apply(version: str | None = None, workers: int = 1) -> list[str]:
    """Install every fix once; returns the names applied by this call. Outside WRITTEN_FOR:
    one log line, nothing changed (the service still runs, with BentoML's own behaviour).
    `workers`: the service's worker count (the socket fix needs more than one, on Linux)."""
    version = version or bentoml_version()
    if Version(version) not in WRITTEN_FOR:
        logger.warning("riskserve: BentoML %s is outside %s, which riskserve's BentoML fixes "
                       "were written for: not applying them (see riskserve/bentoml_fixes.py)",
                       version, WRITTEN_FOR)
        return []
    done = []
    wanted = [*FIXES, *([SOCKET_FIX] if workers > 1 and sys.platform == "linux" else [])]
    for fix in wanted:
        if fix.name not in _applied:
            fix.install()
            _applied.add(fix.name)
            done.append(fix.name)
    return done
