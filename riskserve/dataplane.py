"""The data plane: the one place where a decoded request becomes an answer, for every protocol.

/v1 (JSON rows, CSV, the seed keystroke payload), /v2 REST and gRPC are codecs: they decode
their wire format, hand the data plane a `Call` (who asks for which model) and a decoder, and
encode what comes back. Everything in between happens here, once, in this order:

    account (in flight, requests by model/protocol/key) -> resolve the model and version ->
    authorize the key for it -> admit (the model's own in-flight limit) -> check the row limit ->
    validate against the contract -> batch and score (cost-aware) -> count rows, latency and
    drift -> shadow-score the candidate after answering -> map errors (RiskserveError kept,
    anything else logged and turned into InternalError).

Shaped like KServe's `protocol/dataplane.py` and MLServer's `handlers/dataplane.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np

from riskserve.auth import ANONYMOUS, Caller
from riskserve.core import store
from riskserve.core.batching import Arrivals, MicroBatcher, RowCost, split_rows
from riskserve.core.encoding import Columns
from riskserve.core.registry import Registry
from riskserve.core.scoring import Prediction, ScoringModel
from riskserve.errors import (
    Forbidden,
    InternalError,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    RiskserveError,
)
from riskserve.metrics import Metrics, get_metrics
from riskserve.settings import Settings

logger = logging.getLogger("riskserve.dataplane")

# What a codec hands over: given the resolved (and authorized) model, it reads and decodes the
# request and returns its row count (checked against the row limit before any value is looked
# at) and a function validating the values into typed columns. Async, so that a codec can read
# its body only once the caller is known to be allowed the model.
Decoder = Callable[[ScoringModel], Awaitable[tuple[int, Callable[[], Columns]]]]


@dataclass(frozen=True)
class Call:
    """One request as the data plane sees it, whatever its protocol."""

    model: str | None
    version: str | None = None
    caller: Caller = ANONYMOUS
    protocol: str = "http"  # "http" or "grpc": a metrics label, and the batching hint below


@dataclass
class Inference:
    """What a codec encodes: the model that answered, its prediction and the validated rows."""

    model: ScoringModel
    prediction: Prediction
    columns: Columns = field(default_factory=dict)
    explanation: Any = None  # riskserve.core.explain.Explanation on the explain path


class _Accounted:
    """Counts a request in flight and by model/protocol/key; maps its errors (see module doc)."""

    __slots__ = ("call", "metrics")

    def __init__(self, metrics: Metrics, call: Call) -> None:
        self.metrics = metrics
        self.call = call

    async def __aenter__(self) -> None:
        self.metrics.in_flight.inc()
        self.metrics.request(self.call.model, self.call.protocol, self.call.caller.name)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        self.metrics.in_flight.dec()
        if exc is None or not isinstance(exc, Exception):
            return False
        if isinstance(exc, RiskserveError):
            self.metrics.error(self.call.model, exc.reason)
            if isinstance(exc, Forbidden):
                self.metrics.auth_failure("forbidden", self.call.protocol, self.call.caller.name)
            return False
        logger.error("unexpected error serving model %r", self.call.model, exc_info=exc)
        self.metrics.error(self.call.model, "internal")
        raise InternalError() from None


def parse_overrides(text: str) -> dict[str, int]:
    """`keystroke-rf=8,fraud=256` -> {"keystroke-rf": 8, "fraud": 256}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        out[name.strip()] = int(value)
    return out


class DataPlane:
    """One worker's request path over its registry, batchers and metrics."""

    def __init__(self, registry: Registry, settings: Settings, metrics: Metrics) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self._batchers: dict[tuple[str, str, str], MicroBatcher[Any]] = {}
        self._row_costs: dict[tuple[str, str], RowCost] = {}
        self._in_flight: dict[str, int] = {}
        overrides = parse_overrides(settings.model_max_concurrency_overrides)
        self._limits = {n: overrides.get(n, settings.model_max_concurrency)
                        for n in registry.names}
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        # gRPC calls accepted but not yet queued for a model: lingering batches wait for them.
        self.arrivals = Arrivals()

    @classmethod
    def create(cls, stored: Mapping[str, Any], settings: Settings,
               candidates: Mapping[str, Any] | None = None) -> DataPlane:
        """Load each public name's stored BentoML model (production) and shadow candidate."""
        metrics = get_metrics()
        holder: list[DataPlane] = []
        registry = Registry(
            {name: store.load_stored(m) for name, m in stored.items()},
            candidates={name: store.load_stored(m) for name, m in (candidates or {}).items()},
            extra_versions=settings.extra_versions_cache, on_load=metrics.model_loaded,
            on_evict=lambda m: holder[0].forget(m) if holder else None)
        dp = cls(registry, settings, metrics)
        holder.append(dp)
        for name, cand in registry.candidates.items():
            metrics.shadow_declared(name, cand.version)
        return dp

    # ---- resolve and authorize --------------------------------------------------------------

    def visible(self, caller: Caller) -> list[str]:
        """The models a caller may see (listings show only these)."""
        return caller.allowed(self.registry.names)

    def resolve(self, call: Call) -> ScoringModel:
        """The model and version to answer with: 404 for names the caller cannot know about
        (listing only the ones it may use), 403 for a known model outside the key's scope."""
        name = call.model or ""
        if name not in self.registry.production:
            raise ModelNotFound(name, self.visible(call.caller))
        if not call.caller.may_use(name):
            raise Forbidden(call.caller.name, name, self.visible(call.caller))
        return self.registry.resolve(name, call.version)

    def model(self, call: Call) -> ScoringModel:
        """Resolve and authorize for metadata and readiness (not counted as a prediction)."""
        try:
            return self.resolve(call)
        except Forbidden:
            self.metrics.auth_failure("forbidden", call.protocol, call.caller.name)
            raise

    def models(self, caller: Caller) -> list[dict[str, Any]]:
        return self.registry.describe(self.visible(caller))

    def accounted(self, call: Call) -> _Accounted:
        """`async with dp.accounted(call):` around a whole request (CSV streams use it too)."""
        return _Accounted(self.metrics, call)

    # ---- predict ----------------------------------------------------------------------------

    async def infer(self, call: Call, decode: Decoder) -> Inference:
        """Resolve, authorize, admit, validate, batch, score and count one request."""
        async with self.accounted(call):
            model = self.resolve(call)
            with self._admitted(model):
                columns, rows = await self._validated(model, decode)
                # gRPC requests reach the queue one by one (grpc.aio), so their batches
                # linger under load: for the calls accepted and on their way (Arrivals), then
                # by arrival rate. Where a batch runs is its measured cost's choice, as for
                # HTTP: a cheap one on the loop (a thread hop cost more CPU than it saved).
                pred = await self._batcher(model, "predict").submit(
                    columns, rows, linger=call.protocol == "grpc")
            self.metrics.predictions(model, rows, call.protocol)
            self._shadow(model, columns, pred, rows)
            return Inference(model, pred, columns)

    async def score_chunk(self, model: ScoringModel, columns: Columns, rows: int,
                          protocol: str = "http") -> Prediction:
        """One large block (a CSV chunk): on the model's own thread, not merged with others."""
        pred = await self._batcher(model, "predict").run(columns, rows)
        self.metrics.predictions(model, rows, protocol)
        return pred

    def check_rows(self, rows: int) -> None:
        limit = self.settings.max_rows
        if rows > limit:
            raise PayloadTooLarge(f"{rows} rows in one request; the limit is {limit} (use "
                                  f"/v1/predict_csv for files)",
                                  {"field": "inputs", "limit_rows": limit})

    async def _validated(self, model: ScoringModel, decode: Decoder) -> tuple[Columns, int]:
        rows, validate = await decode(model)
        self.check_rows(rows)
        return validate(), rows

    def _admitted(self, model: ScoringModel) -> _Admission:
        return _Admission(self, model.spec.name)

    # ---- explain and feedback ---------------------------------------------------------------

    async def explain(self, call: Call, decode: Decoder) -> Inference:
        """Predict, then explain the same rows exactly: its own batcher, so the (costlier)
        explanations never sit in the queue of plain predictions."""
        from riskserve.core import explain

        async with self.accounted(call):
            model = self.resolve(call)
            if not explain.can_explain(model):
                raise explain.NotExplainable(model.spec.name, explain.explainable(
                    [self.registry.production[n] for n in self.visible(call.caller)]))
            with self._admitted(model):
                columns, rows = await self._validated(model, decode)
                pred, expl = await self._batcher(model, "explain").submit(columns, rows,
                                                                          inline=False)
            self.metrics.predictions(model, rows, call.protocol)
            return Inference(model, pred, columns, expl)

    async def explain_chunk(self, model: ScoringModel, columns: Columns, rows: int) -> Any:
        return (await self._batcher(model, "explain").run(columns, rows))[1]

    async def feedback(self, call: Call, outcomes: Sequence[Any]) -> tuple[ScoringModel, int]:
        """Ground truth for served predictions: validated like a request, counted, not stored."""
        from riskserve.core import feedback

        async with self.accounted(call):
            model = self.resolve(call)
            self.check_rows(len(outcomes))
            checked = feedback.validate(model, list(outcomes))
            self.metrics.feedback(model, checked.predicted, checked.actual)
            return model, len(checked.predicted)

    # ---- shadow -----------------------------------------------------------------------------

    def _shadow(self, model: ScoringModel, columns: Columns, pred: Prediction, rows: int) -> None:
        """Score the candidate on a sample of these rows after the answer went out.

        Never on the answer's path: a task that runs once the handler has returned, on the
        candidate's own thread; dropped (and counted) when production or candidate is busy.
        """
        cand = self.registry.candidate(model.spec.name)
        if cand is None or model is cand or self.settings.shadow_rate <= 0:
            return
        rate = self.settings.shadow_rate
        if rate < 1.0:
            keep = np.flatnonzero(np.random.default_rng().random(rows) < rate)
            if keep.size == 0:
                return
            columns = {k: v[keep] for k, v in columns.items()}
            pred = _take(pred, keep)
            rows = int(keep.size)
        prod_b, cand_b = self._batcher(model, "predict"), self._batcher(cand, "predict")
        # Busy means: production has a call running or queued, or the candidate has. Under load
        # the shadow then yields to production instead of competing with it for the cores.
        if prod_b.busy or prod_b.queued or cand_b.queued or cand_b.busy:
            self.metrics.shadow_dropped(model, cand, rows)
            return
        task = asyncio.get_running_loop().create_task(
            self._score_shadow(model, cand, cand_b, columns, pred, rows))
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _score_shadow(self, model: ScoringModel, cand: ScoringModel,
                            batcher: MicroBatcher[Prediction], columns: Columns,
                            pred: Prediction, rows: int) -> None:
        from riskserve.core import candidates

        try:
            shadow = await batcher.submit(columns, rows, inline=False)
            disagree, deltas = candidates.compare(model.spec.task, pred, shadow)
            self.metrics.shadow(model, cand, rows, disagree, deltas)
        except Exception:  # a failing candidate must never disturb production
            logger.exception("shadow scoring of %s:%s failed", cand.spec.name, cand.version)
            self.metrics.shadow_dropped(model, cand, rows)

    # ---- batchers ---------------------------------------------------------------------------

    def _batcher(self, model: ScoringModel, path: str) -> MicroBatcher[Any]:
        key = (model.spec.name, model.version, path)
        b = self._batchers.get(key)
        if b is None:
            cost = self._row_cost(model)
            heavy_row_s = self.settings.heavy_row_ms / 1000
            options = {"heavy": lambda: cost.above(heavy_row_s),
                       "heavy_nice": self.settings.heavy_nice}
            if path == "predict":
                b = MicroBatcher(lambda cols: self._score(model, cols),
                                 self.settings.max_batch_size,
                                 max_wait_s=self.settings.max_batch_wait_ms / 1000,
                                 name=model.spec.name, arrivals=self.arrivals, **options)
            else:
                b = MicroBatcher(lambda cols: self._explain(model, cols),
                                 self.settings.max_batch_size, _split_pairs,
                                 name=f"{model.spec.name}-explain", **options)
            self._batchers[key] = b
        return b

    def _row_cost(self, model: ScoringModel) -> RowCost:
        key = (model.spec.name, model.version)
        cost = self._row_costs.get(key)
        if cost is None:
            cost = self._row_costs[key] = RowCost()
        return cost

    def _score(self, model: ScoringModel, columns: Columns) -> Prediction:
        """One model call, timed and fed to the drift counters: every path scores through here.
        Its CPU per row (the model alone) says whether the model is heavy (see batching)."""
        start, cpu = time.perf_counter(), time.thread_time()
        pred = model.predict(columns)
        rows = len(pred)
        self._row_cost(model).observe(rows, time.thread_time() - cpu)
        self.metrics.observe_batch(model, columns, pred, rows, time.perf_counter() - start)
        return pred

    def _explain(self, model: ScoringModel, columns: Columns) -> tuple[Prediction, Any]:
        """The answer and its explanation from the same (native) model, so the contributions add
        up to exactly the probabilities returned (a compiled runtime agrees to ~1e-6 only)."""
        from riskserve.core import explain

        start = time.perf_counter()
        pred = model.predict(columns, native=True)
        expl = explain.explain(model, columns)
        seconds = time.perf_counter() - start
        self.metrics.explained(model, seconds)
        self.metrics.observe_batch(model, columns, pred, len(pred), seconds)
        return pred, expl

    def forget(self, model: ScoringModel) -> None:
        """A version left the registry's cache: close its batchers (and their threads)."""
        self._row_costs.pop((model.spec.name, model.version), None)
        for path in ("predict", "explain"):
            b = self._batchers.pop((model.spec.name, model.version, path), None)
            if b is not None:
                b.close()


def _split_pairs(result: tuple[Prediction, Any], sizes: list[int]
                 ) -> list[tuple[Prediction, Any]]:
    return list(zip(split_rows(result[0], sizes), split_rows(result[1], sizes), strict=True))


class _Admission:
    """A model's own in-flight budget (RISKSERVE_MODEL_MAX_CONCURRENCY): over it, only that
    model's excess is shed with a fast 429 / RESOURCE_EXHAUSTED, never its neighbours'."""

    __slots__ = ("dp", "name")

    def __init__(self, dp: DataPlane, name: str) -> None:
        self.dp = dp
        self.name = name

    def __enter__(self) -> None:
        counts = self.dp._in_flight
        n = counts.get(self.name, 0)
        limit = self.dp._limits.get(self.name, self.dp.settings.model_max_concurrency)
        if n >= limit:
            raise Overloaded(f"model '{self.name}' has {n} requests in flight in this worker, "
                             f"its limit (RISKSERVE_MODEL_MAX_CONCURRENCY); retry shortly",
                             {"field": "model", "limit": limit})
        counts[self.name] = n + 1

    def __exit__(self, *exc: object) -> None:
        self.dp._in_flight[self.name] -= 1


def _take(pred: Prediction, rows: np.ndarray) -> Prediction:
    def pick(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[rows]

    return Prediction(pred.predictions[rows], pick(pred.probabilities), pick(pred.scores))

