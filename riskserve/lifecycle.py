"""A worker's lifecycle: refuse to start on a broken model store; on SIGTERM, fail readiness
first and serve on for a drain delay before draining.

Refusing to start must happen in `bentoml serve`'s main process (an `@bentoml.on_deployment`
hook, which runs once before any worker is spawned): an exception in a worker's `__init__`
only ends that worker, and circus respawns it, so the server stays up with no worker and a
traceback per attempt in its log (checked in tests/test_faults.py). `check_models_load` checks
every production model's files there (checksums, no load) and turns any failure into one
ConfigurationError line.

Shutdown:

What BentoML 1.4.39 does on its own (read from `_bentoml_impl/worker/service.py`, uvicorn
0.54 `Server.shutdown`, checked with real processes in tests/test_faults.py): `bentoml serve`'s
circus arbiter passes SIGTERM on to every worker; uvicorn's handler sets `should_exit`, and
within 0.1 s the worker closes its listening socket, waits for the requests in flight with no
time limit, then runs the shutdown hooks (the gRPC server stops there). In-flight requests do
complete, but `/readyz` answers 200 until the socket closes: readiness never fails first, so
a load balancer that still routes to the pod sees refused connections instead of a failed probe.

`DrainMiddleware` fixes the order per worker: on SIGTERM it answers the readiness probes with
503 at once, keeps serving everything else for `delay_s` (answering with `Connection: close`
so keep-alive clients reconnect elsewhere), then hands the signal to uvicorn, which drains as
before. It installs its signal handler when the ASGI lifespan starts: uvicorn has installed
its own by then (`Server.serve` captures signals before the lifespan startup), and that is the
handler called after the delay. Repeated SIGTERMs during the delay (circus forwards the
arbiter's, `kill` of the process group sends another) are ignored; SIGINT and SIGKILL are not
touched, so Ctrl+C still stops a local server at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from riskserve.errors import ConfigurationError

logger = logging.getLogger("riskserve.lifecycle")

# Readiness endpoints answered 503 while draining: BentoML's probe and the Open Inference
# Protocol's server readiness (model readiness stays: it says whether a model is loaded).
READINESS_PATHS = ("/readyz", "/v2/health/ready")
DEFAULT_DELAY_S = 2.0

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class Drain:
    """One worker's shutdown state: when draining began, and who to tell."""

    def __init__(self) -> None:
        self.started_at: float | None = None
        self._callbacks: list[Callable[[], Any]] = []
        self._tasks: set[asyncio.Future[Any]] = set()  # strong references until done
        self._installed = False

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def on_drain(self, callback: Callable[[], Any]) -> None:
        """Run `callback` (sync, or returning an awaitable) when draining begins, e.g. to set
        the gRPC health service NOT_SERVING."""
        self._callbacks.append(callback)

    def begin(self) -> None:
        """Mark this worker as draining (idempotent) and run the callbacks (on the loop)."""
        if self.started_at is not None:
            return
        self.started_at = time.monotonic()
        self._run_callbacks()

    def _run_callbacks(self) -> None:
        for callback in self._callbacks:
            try:
                result = callback()
                if asyncio.iscoroutine(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:  # a failing callback must not stop the drain itself
                logger.exception("drain callback %r failed", callback)

    def install(self, loop: asyncio.AbstractEventLoop, delay_s: float) -> bool:
        """Wrap the current SIGTERM handler (uvicorn's) in a delayed one, once per process."""
        if self._installed:
            return False
        self._installed = True
        previous = signal.getsignal(signal.SIGTERM)

        def hand_over(signum: int, frame: FrameType | None) -> None:
            logger.info("drain delay over; stopping: in-flight requests complete first")
            if callable(previous):
                previous(signum, frame)
            else:  # no server handler (SIG_DFL): stop the way the signal would have
                signal.signal(signal.SIGTERM, previous)
                signal.raise_signal(signum)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if self.draining:
                return
            logger.info("SIGTERM: readiness now fails; serving %.1f s more, then draining",
                        delay_s)
            self.started_at = time.monotonic()  # readiness fails from the next request on
            # Signal handlers run on the main thread between bytecodes, maybe inside the
            # loop's own code: callbacks and the hand-over are scheduled, not run, here (the
            # thread-safe call also wakes the loop's selector).
            loop.call_soon_threadsafe(self._run_callbacks)
            loop.call_soon_threadsafe(loop.call_later, delay_s, hand_over, signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)
        return True


# One per worker process: every middleware instance (and the service) shares it.
DRAIN = Drain()


class DrainMiddleware:
    """ASGI middleware: 503 on readiness once SIGTERM arrived; the rest served for `delay_s`.

    Added last-in-first-out like any BentoML ASGI middleware, so it answers the probes before
    the API key check (which leaves them open anyway) and before BentoML's own /readyz.
    """

    def __init__(self, app: Any, delay_s: float = DEFAULT_DELAY_S,
                 drain: Drain | None = None,
                 readiness_paths: tuple[str, ...] = READINESS_PATHS) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self.app = app
        self.delay_s = delay_s
        self.drain = DRAIN if drain is None else drain
        self.readiness_paths = frozenset(readiness_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self.drain.install(asyncio.get_running_loop(), self.delay_s)
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http" or not self.drain.draining:
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.readiness_paths:
            await _not_ready(send)
            return
        await self.app(scope, receive, _closing(send))


async def _not_ready(send: Send) -> None:
    body = b"draining: this worker is shutting down\n"
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _closing(send: Send) -> Send:
    """Ask the client to close its keep-alive connection after this response."""

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return wrapped


def check_models_load(names: Iterable[str]) -> list[str]:
    """Check each model's production version as loading it would; returns `name:version`s.

    Meant for the `on_deployment` hook, before any worker starts: a missing, truncated, corrupt
    or unreadable model file then stops `bentoml serve` with the store's one-line message
    ("model 'fraud' version '…' cannot be loaded: <file> is corrupt or truncated (…)").
    It compares checksums instead of loading (`store.check_model`): loading every model here
    took ~13 s and ~1.4 GiB of this process before any worker could start.
    """
    from riskserve.core import store

    loaded: list[str] = []
    for name in names:
        version = "?"
        try:
            version = store.production_version(name)
            store.check_model(name, version)
        except ConfigurationError:
            raise
        except Exception as exc:  # the store names the file for what it knows; the rest here
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ConfigurationError(f"model '{name}' version '{version}' cannot be loaded: "
                                     f"{type(exc).__name__}: {first}") from exc
        loaded.append(f"{name}:{version}")
    return loaded
