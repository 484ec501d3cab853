"""Adaptive batching with cost-aware scheduling: one queue and one thread per model version.

While a model call runs, new requests queue; when it finishes, everything queued (up to
`max_rows`) goes in the next call. An idle model therefore answers at once (no batching delay
at low load), and under load the batch grows with the queue. BentoML's own batching only applies
to `batchable` APIs with one array input, which a multi-model, multi-protocol router cannot use.

Where a call runs is decided from what it costs, not from its row count: each batcher keeps a
moving average of its model's compute (CPU) time per batch-size class, and a call expected to take
more than `inline_budget_s` (about a millisecond) runs on the model's own single thread, so one
heavy model never holds the worker's event loop and never takes the threads of another model.
Cheap calls (a one-row tree model: ~0.1-0.3 ms, mostly holding the GIL) run on the loop, where a
thread hop would only add ~0.35 ms of hand-over. A size class nobody has measured yet runs on the
thread once, which measures it.

A model whose rows are expensive (its owner decides, from the model call's CPU per row in
batches, see RowCost: the 110-class SVM's pairwise coupling, XGBoost's 22,000 trees) is heavy: all
its calls run on its thread, and that thread gets a lower CPU priority (Linux nice
`heavy_nice`). When the cores are short, the kernel then runs cheap models' requests first and
a heavy model gets what they leave; when they are not, it runs as fast as before. Measured with
2 workers (fraud at 16 clients beside 4 on keystroke-svm or keystroke-xgb, 3 rounds): fraud kept
0.68-0.74x of its rate alone before, and 0.90-1.02x with this; the heavy neighbour's own rate
drops (about 800 to 74-182 req/s), which is the trade. Without privileges a thread's nice value
can only go up, so a heavy model's thread stays lowered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from riskserve.core.encoding import Columns

R = TypeVar("R")
logger = logging.getLogger(__name__)

# About the longest a model call may hold the event loop (the "about a millisecond").
INLINE_BUDGET_S = 0.001
# A heavy model's thread's nice value (0: not lowered), and the calls measured before a model
# may be called heavy.
HEAVY_NICE = 19
HEAVY_AFTER_CALLS = 16  # calls of more than one row (see RowCost)
# Weight of the newest measurement in the moving average of a size class.
EWMA_ALPHA = 0.2
# Lingering (see MicroBatcher.linger_s): the longest a batch waits for more requests, and how
# many more arrivals, at the recent rate, it waits for.
LINGER_CAP_S = 0.002
LINGER_ARRIVALS = 4
# A gap this long is a pause, not a rate: the average starts over from it.
LINGER_PAUSE_S = 0.02
# After a window in which nothing arrived, lingering is skipped for 1, 2, 4, ... batches (up to
# this many): a lone closed-loop caller's next request only comes after our answer.
LINGER_MAX_BACKOFF = 1024


class Arrival:
    """One accepted call on its way to a batcher: `done()` once it got there or ended (the
    first call counts, later ones do nothing, so every path may call it)."""

    __slots__ = ("arrivals", "pending")

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.pending = True

    def done(self, *_: object) -> None:  # also a task's done callback
        if self.pending:
            self.pending = False
            self.arrivals._arrived()


class Arrivals:
    """How many calls a transport accepted that have not reached a batcher yet (one per worker).

    gRPC calls reach the loop one by one (riskserve.oip.grpc_intake), so when a batch is
    formed, calls already accepted may still be reading their message. A lingering batch waits
    for them (`settled`) instead of guessing from the arrival rate alone: at 32 clients that
    filled gRPC batches (risk-flag 7-9 rows a call instead of 3-6), and with one caller nothing
    is ever on its way, so nothing waits.
    """

    def __init__(self) -> None:
        self.expected = 0
        self._waiters: list[asyncio.Future[None]] = []

    def expect(self) -> Arrival:
        self.expected += 1
        return Arrival(self)

    def _arrived(self) -> None:
        self.expected -= 1
        if self.expected == 0 and self._waiters:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                _resolve(w)

    async def settled(self, cap_s: float) -> None:
        """Return once no accepted call is on its way, or after `cap_s` (a call whose
        message is slow to come must not hold a batch)."""
        if self.expected <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(cap_s, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass
class _Pending(Generic[R]):
    columns: Columns
    rows: int
    future: asyncio.Future[R]
    inline: bool = True  # may this request's batch be scored on the event loop?
    linger: bool = False  # may this request's batch wait for more (see MicroBatcher.linger_s)?


def merge(columns: Sequence[Columns]) -> dict[str, np.ndarray]:
    if len(columns) == 1:
        return dict(columns[0])
    return {k: np.concatenate([c[k] for c in columns]) for k in columns[0]}


def split_rows(result: R, sizes: list[int]) -> list[R]:
    """One merged call's answer (a dataclass of row-aligned arrays: a Prediction, an
    Explanation), cut back into each request's rows; other fields are shared as they are.

    Views, not copies, built with the dataclass's own constructor: this runs once per batch
    on the model's thread, where `np.split` + `dataclasses.replace` cost ~3 us per request.
    """
    if len(sizes) == 1:
        return [result]
    kind = type(result)
    fields = [(f.name, getattr(result, f.name)) for f in dataclasses.fields(kind)]  # type: ignore[arg-type]
    parts: list[R] = []
    start = 0
    for size in sizes:
        stop = start + size
        parts.append(kind(**{name: value[start:stop] if isinstance(value, np.ndarray) else value
                             for name, value in fields}))
        start = stop
    return parts


def size_class(rows: int) -> int:
    """Batch sizes 1, 2, 3-4, 5-8, ... share a cost estimate."""
    return max(rows - 1, 0).bit_length()


class CostModel:
    """Moving average of one model's compute seconds per call, by batch-size class."""

    def __init__(self, alpha: float = EWMA_ALPHA) -> None:
        self.alpha = alpha
        self._seconds: dict[int, float] = {}

    def observe(self, rows: int, seconds: float) -> None:
        k = size_class(rows)
        old = self._seconds.get(k)
        self._seconds[k] = seconds if old is None else old + self.alpha * (seconds - old)

    def estimate(self, rows: int) -> float | None:
        """Expected seconds for a call of `rows` rows, or None when nothing comparable ran yet.

        An unmeasured class is estimated from the largest smaller measured one, scaled by its
        rows (an upper bound for vectorised models, which is the safe side)."""
        k = size_class(rows)
        if k in self._seconds:
            return self._seconds[k]
        smaller = [c for c in self._seconds if c < k]
        if not smaller:
            return None
        c = max(smaller)
        return self._seconds[c] * rows / (1 << c)

    def snapshot(self) -> dict[int, float]:
        return dict(self._seconds)


class RowCost:
    """The cheapest CPU seconds per row of the model call alone over its calls of more than one
    row, and how many such calls were seen: what decides whether a model is heavy.

    Calls of one row are no evidence: a call also has a fixed part (the runtime's set-up,
    encoding, a cold cache), and on a slower or busier machine that alone passed the threshold
    (risk-flag: ~0.2 ms for a lone row in a server on an AMD EPYC, 0.05 ms a row in batches),
    which made a cheap model heavy for good after 16 lone requests, and its nice-19 thread then
    starved behind everything else (risk-flag gRPC at 32 clients fell by a third). Batches
    are what a busy model makes, and what its neighbours pay for. Not the marginal cost of a
    row either: a large ensemble's first row pulls the model into the cache and the next rows
    of the call reuse it, so in a server keystroke-xgb's marginal row looked cheap while its
    calls were not. The minimum, not an average: CPU time only errs upwards (a first call's
    lazy set-up, a cold cache, a collection), and the decision it feeds cannot be undone.
    """

    def __init__(self) -> None:
        self.seconds = math.inf
        self.calls = 0  # calls of more than one row

    def observe(self, rows: int, seconds: float) -> None:
        if rows > 1:
            self.calls += 1
            self.seconds = min(self.seconds, seconds / rows)

    def above(self, seconds: float, after_calls: int = HEAVY_AFTER_CALLS) -> bool:
        return self.calls >= max(1, after_calls) and self.seconds > seconds


class MicroBatcher(Generic[R]):
    """Serialises calls to one model, merges whatever queued up meanwhile, and runs each call
    inline or on the model's own thread depending on its measured cost."""

    def __init__(self, call: Callable[[Columns], R], max_rows: int,
                 split: Callable[[R, list[int]], list[R]] = split_rows, max_wait_s: float = 0.0,
                 inline_budget_s: float = INLINE_BUDGET_S, name: str = "model",
                 heavy: Callable[[], bool] = lambda: False,
                 heavy_nice: int = HEAVY_NICE, arrivals: Arrivals | None = None) -> None:
        self._call = call
        self._arrivals = arrivals or Arrivals()  # none expected unless a transport counts
        self._split = split
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.inline_budget_s = inline_budget_s
        self._heavy = heavy
        self.heavy_nice = heavy_nice
        self.name = name
        self._niced = False  # the thread's priority was lowered (it never goes back up)
        self.cost = CostModel()
        # One thread: calls to a model are serialised anyway, and a model that is slow or busy
        # can then never occupy the threads its neighbours need.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rs-{name}")
        self._queue: deque[_Pending[R]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self.busy = False  # a call is running (the shadow path stays away from busy models)
        # Moving average of the time between lingering submits, and the last one's time.
        self._gap_s = math.inf
        self._last_linger = -math.inf
        self._skip = 0  # batches left before lingering is tried again
        self._backoff = 1  # batches to skip after the next window that collects nothing

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, columns: Columns, rows: int, inline: bool = True,
                     linger: bool = False) -> R:
        loop = asyncio.get_running_loop()
        pending: _Pending[R] = _Pending(columns, rows, loop.create_future(), inline, linger)
        if linger:
            now = time.perf_counter()
            gap = now - self._last_linger
            self._last_linger = now
            # Across a pause the old average says nothing about the next arrivals: the first
            # gap after one starts the average over.
            if gap > LINGER_PAUSE_S or self._gap_s > LINGER_PAUSE_S:
                self._gap_s = gap
            else:
                self._gap_s += EWMA_ALPHA * (gap - self._gap_s)
        self._queue.append(pending)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await pending.future

    async def run(self, columns: Columns, rows: int) -> R:
        """One call outside the queue (a CSV chunk), on the model's thread, measured."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._threaded, columns, rows)

    def _timed(self, columns: Columns, rows: int) -> R:
        # CPU seconds of this thread, not wall time: on the model's thread, wall time also
        # counts the wait for the GIL while the event loop (and gRPC's poller) run, so a cheap
        # call measured there once would look expensive and stay off the loop for good. CPU
        # time is what the call would hold the loop for if it ran inline.
        start = time.thread_time()
        result = self._call(columns)
        self.cost.observe(rows, time.thread_time() - start)
        return result

    def _threaded(self, columns: Columns, rows: int) -> R:
        """A call on the model's own thread, which first drops its priority once it is heavy."""
        if not self._niced and self.heavy:
            self._lower_priority()
        return self._timed(columns, rows)

    @property
    def heavy(self) -> bool:
        return self._heavy()

    def _lower_priority(self) -> None:
        """Lower this (the model's) thread's CPU priority, once; run on that thread. Linux
        keeps a nice value per thread; a process started nicer than heavy_nice stays as it is."""
        self._niced = True
        if self.heavy_nice <= 0:
            return
        tid = threading.get_native_id()
        try:
            nice = max(os.getpriority(os.PRIO_PROCESS, tid), self.heavy_nice)
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError as exc:  # not Linux, or a sandbox refusing it: keep the priority
            logger.warning("could not lower the priority of %s's thread: %s", self.name, exc)
            return
        logger.info("%s is heavy: its calls run on its own thread, at nice %d", self.name, nice)

    def linger_s(self) -> float:
        """How long the next batch waits for more lingering requests: 0 unless they arrive
        faster than two per LINGER_CAP_S and the last window collected any, then the time
        LINGER_ARRIVALS more take at that rate, capped.

        For callers whose requests reach the queue one at a time (gRPC: grpc.aio hands each
        call to the loop on its own, so the queue seldom holds two when the model is free):
        each batch pays a fixed cost (the thread hop, the model call, drift counting) that
        dominates one row, and under load waiting for a few more halves the cost per request.
        An idle or lightly loaded model never waits; a lone caller waits ever more rarely.
        Each call stands for one batch being formed: while backing off it counts one of the
        batches to skip, so call it once per batch.
        """
        if self._gap_s * 2 >= LINGER_CAP_S:
            return 0.0
        if self._skip > 0:
            self._skip -= 1
            return 0.0
        return min(LINGER_CAP_S, LINGER_ARRIVALS * self._gap_s)

    def _lingered(self, collected: bool) -> None:
        if collected:
            self._skip, self._backoff = 0, 1
        else:
            self._skip = self._backoff
            self._backoff = min(2 * self._backoff, LINGER_MAX_BACKOFF)

    def runs_inline(self, rows: int) -> bool:
        expected = self.cost.estimate(rows)
        return expected is not None and expected <= self.inline_budget_s and not self.heavy

    def _take(self) -> list[_Pending[R]]:
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_rows:
            item = self._queue.popleft()
            batch.append(item)
            rows += item.rows
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            short = sum(p.rows for p in self._queue) < self.max_rows
            if short and self._queue[0].linger:
                # Calls the transport already accepted come first (Arrivals), then the
                # rate-based window for those not sent yet.
                await self._arrivals.settled(LINGER_CAP_S)
                short = sum(p.rows for p in self._queue) < self.max_rows
            linger = self.linger_s() if short and self._queue[0].linger else 0.0
            if short and max(self.max_wait_s, linger) > 0:
                # A collection window: the configured one, or lingering under load.
                before = len(self._queue)
                await asyncio.sleep(max(self.max_wait_s, linger))
                if linger:
                    self._lingered(len(self._queue) > before)
            else:
                # One loop iteration: requests already parsed and ready join this batch.
                await asyncio.sleep(0)
            batch = [p for p in self._take() if not p.future.cancelled()]
            if not batch:
                continue
            merged = merge([p.columns for p in batch])
            rows = sum(p.rows for p in batch)
            self.busy = True
            try:
                if all(p.inline for p in batch) and self.runs_inline(rows):
                    result = self._timed(merged, rows)
                else:
                    result = await loop.run_in_executor(self._executor, self._threaded, merged,
                                                        rows)
            except Exception as exc:  # the error belongs to every caller in the batch
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            finally:
                self.busy = False
            for p, part in zip(batch, self._split(result, [p.rows for p in batch]),
                               strict=True):
                if not p.future.done():
                    p.future.set_result(part)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

