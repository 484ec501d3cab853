"""Closed-loop load generator: C clients, each sending its next request as soon as the last
one answered, over HTTP (aiohttp) or gRPC (grpc.aio).

Every run is bounded twice, by wall time and by a request budget, and every request has its
own timeout, so a stalled server ends a run instead of hanging it. Only loopback URLs are
accepted: the benchmark must never send traffic anywhere else.

Bodies are serialised once before the run and cycled, so the client spends its CPU on HTTP and
gRPC, not on building JSON; the client shares the machine with the server under test, and the
same client drives every server, so the comparison stays fair.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import grpc
import numpy as np

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def require_loopback(url_or_target: str) -> None:
    """Refuse any target that is not on this machine's loopback interface."""
    host = urlsplit(url_or_target if "//" in url_or_target else f"//{url_or_target}").hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"benchmark traffic goes to loopback only, not to {url_or_target!r}")


@dataclass
class Result:
    """What one run measured. Latencies are of successful requests, in milliseconds."""

    clients: int
    seconds: float
    ok: int
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    client_cpu_s: float = 0.0
    server_cpu_s: float = float("nan")

    @property
    def server_cpu_ms_per_request(self) -> float:
        """Server CPU time per answered request: robust to other load on a shared machine."""
        done = self.ok + self.error_count
        return self.server_cpu_s / done * 1000 if done else float("nan")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not len(self.latencies_ms):
            return float("nan")
        return float(np.percentile(self.latencies_ms, q))

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def p99(self) -> float:
        return self.percentile(99)


# One request: returns None on success or a short error label ("503", "timeout", ...).
Call = Callable[[int], Awaitable[str | None]]
# The server's CPU seconds so far (its whole process tree), read at the window's edges.
CpuProbe = Callable[[], float]


def _no_probe() -> float:
    return float("nan")


async def _closed_loop(call: Call, clients: int, seconds: float, max_requests: int,
                       warmup_s: float, probe: CpuProbe = _no_probe) -> Result:
    """Run `clients` loops of `call` for `warmup_s` (discarded) then `seconds` (measured)."""
    budget = itertools.count()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    measuring = False
    stop_at = time.perf_counter() + warmup_s + seconds

    async def client(index: int) -> None:
        seq = index
        while time.perf_counter() < stop_at:
            if measuring and next(budget) >= max_requests:
                return
            t0 = time.perf_counter()
            error = await call(seq)
            elapsed = time.perf_counter() - t0
            seq += clients
            if not measuring:
                continue
            if error is None:
                latencies.append(elapsed * 1000)
            else:
                errors[error] += 1

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    try:
        await asyncio.sleep(warmup_s)  # the warm-up window, then measure from here
        measuring = True
        cpu0, server0, t0 = os.times(), probe(), time.perf_counter()
        # A budget-exhausted run ends early; the deadline bounds the rest.
        await asyncio.wait(tasks, timeout=seconds + 30)
        elapsed = min(time.perf_counter(), stop_at) - t0
        cpu1, server1 = os.times(), probe()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Result(clients, elapsed, len(latencies), errors, np.asarray(latencies),
                  (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), server1 - server0)


async def http_load(url: str, bodies: Sequence[bytes], headers: dict[str, str], clients: int,
                    seconds: float, max_requests: int, warmup_s: float = 1.0,
                    timeout_s: float = 10.0, probe: CpuProbe = _no_probe) -> Result:
    """POST `bodies` (cycled) to `url` from `clients` keep-alive connections."""
    require_loopback(url)
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers=headers) as session:

        async def call(seq: int) -> str | None:
            try:
                async with session.post(url, data=bodies[seq % len(bodies)]) as resp:
                    await resp.read()
                    return None if resp.status == 200 else str(resp.status)
            except TimeoutError:
                return "timeout"
            except aiohttp.ClientError as exc:
                return type(exc).__name__

        return await _closed_loop(call, clients, seconds, max_requests, warmup_s, probe)


async def grpc_load(target: str, method: str, requests: Sequence[bytes],
                    metadata: tuple[tuple[str, str], ...], clients: int, seconds: float,
                    max_requests: int, warmup_s: float = 1.0, timeout_s: float = 10.0,
                    probe: CpuProbe = _no_probe) -> Result:
    """Unary calls of `method` with pre-serialised `requests`, one channel per client.

    A channel per client (with its own subchannel pool, or gRPC would share one TCP connection
    between them) mirrors separate callers and lets the kernel spread connections across the
    server's workers, which share the port with SO_REUSEPORT.
    """
    require_loopback(target)
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(clients)]
    try:
        stubs = [ch.unary_unary(method, request_serializer=None, response_deserializer=None)
                 for ch in channels]
        await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), timeout_s)
                               for ch in channels))

        async def call(seq: int) -> str | None:
            try:
                await stubs[seq % clients](requests[seq % len(requests)], metadata=metadata,
                                           timeout=timeout_s)
                return None
            except grpc.aio.AioRpcError as exc:
                return exc.code().name

        return await _closed_loop(call, clients, seconds, max_requests, warmup_s, probe)
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))
