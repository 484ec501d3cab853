"""Adaptive batching: concurrent requests for the same model share one vectorised model call.

While a model call runs, new requests queue; when it finishes, everything queued (up to
`max_rows`) goes in the next call. An idle model therefore answers at once (no batching delay
at low load), and under load the batch grows with the queue, which is what adaptive batching is
for. BentoML's own batching only applies to `batchable` APIs with one array input, which a
multi-model, multi-protocol router cannot use, so riskserve does it here, for HTTP and gRPC alike.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from riskserve.core.encoding import Columns
from riskserve.core.scoring import Prediction


@dataclass
class _Pending:
    columns: Columns
    rows: int
    future: asyncio.Future[Prediction]
    inline: bool = True  # may this request's batch be scored on the event loop?


def merge(columns: list[Columns]) -> dict[str, np.ndarray]:
    if len(columns) == 1:
        return dict(columns[0])
    return {k: np.concatenate([c[k] for c in columns]) for k in columns[0]}


def split(pred: Prediction, sizes: list[int]) -> list[Prediction]:
    if len(sizes) == 1:
        return [pred]
    bounds = np.cumsum(sizes)[:-1]

    def parts(a: np.ndarray | None) -> list[np.ndarray | None]:
        return [None] * len(sizes) if a is None else list(np.split(a, bounds))

    return [Prediction(p, q, s) for p, q, s in
            zip(parts(pred.predictions), parts(pred.probabilities), parts(pred.scores),
                strict=True)]


# Batches up to this many rows may be scored on the event loop itself. A one-row XGBoost or
# LightGBM call takes ~0.1-0.3 ms, mostly Python holding the GIL, so handing it to a thread
# adds the hop (submit, wake-up, GIL hand-over, call_soon_threadsafe: ~0.35 ms per request at
# one client) for little in return - when the next batch would fill anyway. It does for HTTP:
# uvicorn parses every ready connection in one loop iteration, so requests queue up before the
# batch is taken. It does not for gRPC: grpc.aio hands the loop about one call per iteration,
# so its batches only grow while a model call runs off the loop; a gRPC request therefore
# asks for the thread (`inline=False`). Measured (risk-flag, 32 clients, one worker): HTTP /v1
# 1,092 req/s this way vs 885 all-thread; gRPC 938 vs 316 all-inline. Bigger batches always
# go to a thread.
INLINE_MAX_ROWS = 64


class MicroBatcher:
    """Serialises calls to one model and merges whatever queued up meanwhile."""

    def __init__(self, predict: Callable[[Columns], Prediction], max_rows: int,
                 max_wait_s: float = 0.0, inline_max_rows: int = INLINE_MAX_ROWS) -> None:
        self._predict = predict
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.inline_max_rows = inline_max_rows
        self._queue: deque[_Pending] = deque()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, columns: Columns, rows: int, inline: bool = True) -> Prediction:
        loop = asyncio.get_running_loop()
        pending = _Pending(columns, rows, loop.create_future(), inline)
        self._queue.append(pending)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await pending.future

    def _take(self) -> list[_Pending]:
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
            if self.max_wait_s > 0 and sum(p.rows for p in self._queue) < self.max_rows:
                # Optional collection window for callers that trade latency for throughput.
                await asyncio.sleep(self.max_wait_s)
            else:
                # One loop iteration: requests already parsed and ready join this batch.
                await asyncio.sleep(0)
            batch = [p for p in self._take() if not p.future.cancelled()]
            if not batch:
                continue
            merged = merge([p.columns for p in batch])
            try:
                if (sum(p.rows for p in batch) <= self.inline_max_rows
                        and all(p.inline for p in batch)):
                    pred = self._predict(merged)
                else:
                    pred = await loop.run_in_executor(None, self._predict, merged)
            except Exception as exc:  # the error belongs to every caller in the batch
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, part in zip(batch, split(pred, [p.rows for p in batch]), strict=True):
                if not p.future.done():
                    p.future.set_result(part)
