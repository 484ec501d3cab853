"""The bench waits for a quiet machine before its first cell (benchmarks.meta.settle).

The load average and the clock are injected: a real wait on this shared machine would take
minutes and depend on whatever else runs. The fake clock only moves when `settle` sleeps, so
the tests also check that it polls (sleeps between readings) rather than spinning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from benchmarks import meta


class FakeTime:
    """A clock that advances only when slept on, and a record of the sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def readings(*values: float) -> Callable[[], float]:
    """Each call returns the next value, then the last one for ever."""
    it: Iterator[float] = iter(values)
    last = [values[-1]]

    def load() -> float:
        last[0] = next(it, last[0])
        return last[0]

    return load


def test_a_quiet_machine_is_measured_at_once() -> None:
    t = FakeTime()
    reading, waited = meta.settle(0.5, 180, load=readings(0.2), clock=t.clock, sleep=t.sleep)
    assert (reading, waited, t.sleeps) == (0.2, 0.0, [])


def test_it_polls_until_the_average_falls_below_the_threshold() -> None:
    t = FakeTime()
    reading, waited = meta.settle(0.5, 180, poll_s=2.0, load=readings(1.7, 1.2, 0.8, 0.49, 0.1),
                                  clock=t.clock, sleep=t.sleep)
    assert reading == 0.49  # the first reading below, not a later one
    assert waited == 6.0 and t.sleeps == [2.0, 2.0, 2.0]


def test_a_machine_that_never_gets_quiet_is_measured_once_the_deadline_passes() -> None:
    t = FakeTime()
    reading, waited = meta.settle(0.5, 10, poll_s=2.0, load=readings(1.5), clock=t.clock,
                                  sleep=t.sleep)
    assert reading == 1.5
    assert 10.0 <= waited <= 12.0 and len(t.sleeps) == 5


def test_idle_cpu_is_each_servers_draw_over_the_window_as_a_share_of_a_core() -> None:
    t = FakeTime()
    used = {"riskserve": [10.0, 10.03], "ray": [50.0, 50.9]}  # CPU seconds before, after

    def reader(name: str) -> Callable[[], float]:
        values = iter(used[name])
        return lambda: next(values)

    idle = meta.idle_cpu({n: reader(n) for n in used}, 3.0, clock=t.clock, sleep=t.sleep)
    assert t.sleeps == [3.0]
    assert idle == {"riskserve": pytest.approx(0.01), "ray": pytest.approx(0.3)}


def test_the_cold_table_shows_idle_cpu_and_a_dash_where_it_was_not_measured() -> None:
    from benchmarks.report import cold_table
    from benchmarks.report_rows import ColdRow

    table = cold_table([ColdRow("riskserve", 2, 2.6, 870, 435, 3, 0.012),
                        ColdRow("ray", 2, 9.8, 1604, 802, 12)])  # an older results.json
    assert "| riskserve | 2 | 2.6 | 870 | 435 | 3 | 1.2% |" in table
    assert "| ray | 2 | 9.8 | 1,604 | 802 | 12 | — |" in table
