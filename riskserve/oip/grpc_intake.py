"""How gRPC calls reach the data plane: a deeper intake, and a count of calls on their way.

grpc.aio asks its C core for the next call of each method one at a time: a call is handed to
the event loop, and only then is the next one requested, so 16 calls waiting in one worker come
in one by one, each after a round trip through grpc's poller thread. The data plane then saw
one gRPC request at a time and its batches held 2-6 rows where HTTP's hold ~11 (uvicorn parses
every ready connection in one loop turn). Two pieces fix that, together:

- `IntakeServer` keeps `depth` requests for the next call armed in the C core per registered
  method (RISKSERVE_GRPC_INTAKE_DEPTH, default 8), so calls that are waiting are matched
  together and reach the loop together. grpc.aio's main loop still dispatches every call
  itself: it asks `_make_request_call_future` for the next call of a method and gets the next
  one matched by any of the armed requests.
- `Arrivals` (riskserve.core.batching) counts the calls accepted but not yet queued for a model
  (`ArrivalInterceptor` counts each ModelInfer once its key is checked, before its message is
  read; the servicer marks it arrived when it decodes it, the call's task when it ends in any
  other way), and a lingering batch first waits for them (see MicroBatcher._drain).

Neither alone filled the batches (risk-flag at 32 clients, rows a model call, one server with
the variants alternated: 3.2-5.9 before, the deeper intake alone 3.9-5.0, the count alone
2.3-3.7, both 7.1-8.6; README, "Performance and benchmarks").

`IntakeServer` overrides two methods of grpc's private `cygrpc.AioServer`, so it is used only
on the grpcio releases it was written and tested against (`WRITTEN_FOR`); elsewhere the server
is grpc.aio's own, with one line in the log (with depth 1, without one). tests/test_grpc_intake.py
checks both the intake and a stop under load.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio._server as _aio_server
from grpc._cython import cygrpc
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from riskserve.core.batching import Arrival, Arrivals

logger = logging.getLogger("riskserve.oip.grpc")

# The grpcio releases whose AioServer main loop IntakeServer was written against: one armed
# request per registered method, re-armed through `_make_request_call_future(method_bytes)`.
WRITTEN_FOR = SpecifierSet(">=1.85,<1.86")
# On stop: how long at most to let the main loop take the calls armed requests still match,
# and how long without a new call counts as quiet (see IntakeServer.shutdown).
STOP_DRAIN_S = 1.0
STOP_QUIET_S = 0.02


class _Armed:
    """`depth` armed requests for one method's next call, and the calls they matched."""

    def __init__(self, server: IntakeServer, method: bytes, depth: int) -> None:
        self.server = server
        self.method = method
        self.armed = 0  # requests in the C core not matched yet
        self.ready: deque[asyncio.Future[Any]] = deque()  # matched, not handed out yet
        self.waiters: deque[asyncio.Future[Any]] = deque()  # the main loop waits on these
        self.closing = False  # stopping: no more requests are armed
        self.last_match = time.monotonic()
        for _ in range(depth):
            self._arm()

    def _arm(self) -> None:
        self.armed += 1
        task = cygrpc.AioServer._make_request_call_future(self.server, self.method)
        task.add_done_callback(self._matched)

    def _matched(self, task: asyncio.Future[Any]) -> None:
        self.armed -= 1
        self.last_match = time.monotonic()
        if not task.cancelled():
            task.exception()  # retrieved: a failed request is passed on, never logged twice
        # Re-armed like grpc.aio re-arms its own request, a failed one too, while running.
        if not self.closing and self.server.is_running():
            self._arm()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                _pass_on(task, waiter)
                return
        self.ready.append(task)

    def next_call(self) -> asyncio.Future[Any]:
        """What the main loop awaits for this method's next call."""
        if self.ready:
            out = asyncio.get_running_loop().create_future()
            _pass_on(self.ready.popleft(), out)
            return out
        if self.armed == 0:  # used up while stopping: grpc.aio's own single request
            return cygrpc.AioServer._make_request_call_future(self.server, self.method)
        out = asyncio.get_running_loop().create_future()
        self.waiters.append(out)
        return out

    @property
    def settled(self) -> bool:
        """Stopping is safe: every matched call was handed out, and none can be matched
        any more (or the intake has been quiet long enough that none is on its way)."""
        quiet = time.monotonic() - self.last_match >= STOP_QUIET_S
        return not self.ready and (self.armed == 0 or quiet)


def _pass_on(src: asyncio.Future[Any], dst: asyncio.Future[Any]) -> None:
    if src.cancelled():
        dst.cancel()
    elif (exc := src.exception()) is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())


class IntakeServer(cygrpc.AioServer):
    """grpc.aio's server with `depth` requests armed per registered method (see module doc).

    Calls of unregistered methods (grpc.aio's generic handler) are requested as before.
    """

    depth = 1

    def _make_request_call_future(self, method_bytes: bytes | None) -> Any:
        if method_bytes is None or self.depth <= 1:
            return super()._make_request_call_future(method_bytes)
        intakes: dict[bytes, _Armed] = self.__dict__.setdefault("_intakes", {})
        intake = intakes.get(method_bytes)
        if intake is None:
            intake = intakes[method_bytes] = _Armed(self, method_bytes, self.depth)
        return intake.next_call()

    async def shutdown(self, grace: float | None) -> None:
        """Stop arming, let the main loop take every call the armed requests match, then stop.

        grpc.aio's main loop stops dispatching once the server is stopping, so a call matched
        by an extra armed request after that would never get a handler: its caller would wait
        out the grace period for UNAVAILABLE. Until the armed requests are used up (callers
        still sending use them within milliseconds) or the intake is quiet, the server keeps
        dispatching; then grpc.aio stops as it always does.
        """
        intakes = list(self.__dict__.get("_intakes", {}).values())
        for intake in intakes:
            intake.closing = True
        deadline = time.monotonic() + STOP_DRAIN_S
        while not all(i.settled for i in intakes) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        await super().shutdown(grace)


def supported(version: str | None = None) -> bool:
    """Whether this grpcio release (or `version`) is one IntakeServer was written for."""
    return (Version(version or grpc.__version__) in WRITTEN_FOR
            and hasattr(cygrpc.AioServer, "_make_request_call_future"))


def server(depth: int, **kwargs: Any) -> grpc.aio.Server:
    """`grpc.aio.server(**kwargs)` with `depth` armed requests per registered method, where
    this grpcio release is one IntakeServer was written for (else grpc.aio's own server)."""
    if depth > 1 and not supported():
        logger.warning("grpcio %s is outside %s: gRPC calls are requested one at a time "
                       "(RISKSERVE_GRPC_INTAKE_DEPTH=%d not applied)", grpc.__version__,
                       WRITTEN_FOR, depth)
        depth = 1
    if depth <= 1:
        return grpc.aio.server(**kwargs)
    # grpc.aio.Server builds its cygrpc.AioServer in __init__; it gets ours for that call.
    stock = _aio_server.cygrpc.AioServer
    _aio_server.cygrpc.AioServer = IntakeServer
    try:
        built = grpc.aio.server(**kwargs)
    finally:
        _aio_server.cygrpc.AioServer = stock
    built._server.depth = depth
    return built


# ---- calls on their way to the data plane ------------------------------------------------

# The current call's Arrival, set by the interceptor in the call's task (grpc.aio runs the
# interceptors and the handler of one call in one task), taken by the servicer.
_arrival: contextvars.ContextVar[Arrival | None] = contextvars.ContextVar(
    "riskserve_grpc_arrival", default=None)


class ArrivalInterceptor(grpc.aio.ServerInterceptor):
    """Counts each call of `methods` in `arrivals` from the moment it passed the interceptors
    before this one until the servicer decodes it or its task ends, whichever comes first.
    Runs before grpc.aio reads the call's message.

    `admitted` says whether the outer interceptors let the call through: auth refuses a call
    by asking the chain for the handler's shape and replacing it, and a refused call is no
    caller on its way (counted, it would hold a lingering batch for nothing).
    """

    def __init__(self, arrivals: Arrivals, methods: frozenset[str],
                 admitted: Callable[[], bool] = lambda: True) -> None:
        self.arrivals = arrivals
        self.methods = methods
        self.admitted = admitted

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails],
                                     Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if details.method in self.methods and self.admitted():
            task = asyncio.current_task()
            if task is not None:
                arrival = self.arrivals.expect()
                _arrival.set(arrival)
                task.add_done_callback(arrival.done)  # errors, cancellations: never leaks
        return await continuation(details)


def arrived() -> None:
    """The current call reached the data plane (called by the servicer as it decodes)."""
    arrival = _arrival.get()
    if arrival is not None:
        arrival.done()
