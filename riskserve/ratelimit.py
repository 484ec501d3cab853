"""Per-key token buckets: `rate=n` lets a key make n requests/s with bursts of n, per worker.

The buckets live in each worker process (no shared state, no lock across processes), so a key's
pod-wide limit is n x RISKSERVE_WORKERS requests/s (burst n x workers), and n x workers x
replicas across a Deployment. HTTP and gRPC calls of one worker draw from the same bucket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable


class TokenBucket:
    """`rate` tokens per second up to `burst`; a call takes one token or says how long to wait."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> float:
        """0.0 when a token was taken, else the seconds until one is available (nothing taken,
        so a refused caller does not push its own next chance further away)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One bucket per key name; a bucket survives a keys-file reload unless its rate changed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        # The event loop is single-threaded, but gRPC or a test may call from threads: a bucket
        # update must not be torn. Uncontended, this costs well under a microsecond.
        self._lock = threading.Lock()

    def wait(self, name: str, rate: float) -> float:
        """0.0 to proceed, else the seconds the key `name` must wait (burst = max(rate, 1), so
        a fractional rate still admits one request)."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(name)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[name] = TokenBucket(rate, max(rate, 1.0), now)
            return bucket.take(now)

    def keep_only(self, names: Iterable[str]) -> None:
        """Forget the buckets of keys that are gone (after a reload)."""
        keep = set(names)
        with self._lock:
            for name in set(self._buckets) - keep:
                del self._buckets[name]
