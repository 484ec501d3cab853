"""The one poll-with-a-deadline the tests wait with: no sleep stands in for synchronisation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout_s: float = 60.0, what: str = "",
               interval_s: float = 0.25) -> T:
    """Poll `check` until it returns a truthy value and return it; at the deadline fail naming
    `what` and the last value (what the condition was still missing)."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)  # poll interval; the condition itself is what the test waits for
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}; last value: {last!r}")


def seconds_until(check: Callable[[], object], timeout_s: float, what: str) -> float:
    """How long `check` took to hold (for reports: rotation times), polled like `eventually`."""
    start = time.monotonic()
    eventually(check, timeout_s, what, interval_s=0.1)
    return time.monotonic() - start
