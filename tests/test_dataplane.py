"""The data plane in process (fastest tier): resolve, authorize, admit, validate, batch, score,
count, shadow and feedback, on the quick-trained models of the session store. No server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from riskserve.auth import ANONYMOUS, Caller
from riskserve.core.batching import HEAVY_AFTER_CALLS, CostModel, MicroBatcher, RowCost
from riskserve.core.registry import Registry
from riskserve.core.scoring import Prediction
from riskserve.core.specs import MODEL_NAMES, SPECS
from riskserve.core.validation import columns_from_frame, columns_from_records
from riskserve.dataplane import Call, DataPlane, parse_overrides
from riskserve.devtools.samples import GOOD_FRAUD, records, sample_frame
from riskserve.errors import (
    Forbidden,
    InternalError,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
)
from riskserve.metrics import get_metrics
from riskserve.settings import Settings
from riskserve.v1 import handlers
from tests.conftest import burn_cpu


def make_dp(trained: dict, **settings: Any) -> DataPlane:
    metrics = get_metrics()
    registry = Registry({n: trained[n].model for n in MODEL_NAMES}, on_load=metrics.model_loaded)
    return DataPlane(registry, Settings(**settings), metrics)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def sample_value(metric: Any, **labels: str) -> float:
    for family in metric.collect():
        for s in family.samples:
            if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_infer_equals_the_model_for_every_family(trained: dict, name: str) -> None:
    dp = make_dp(trained)
    frame = sample_frame(name, 12)
    result = run(dp.infer(Call(name), handlers.records(records(name, frame))))
    expected = trained[name].model.predict(columns_from_frame(SPECS[name], frame))
    assert result.model.version == trained[name].version
    assert result.prediction.predictions.tolist() == expected.predictions.tolist()
    if expected.probabilities is not None:
        np.testing.assert_allclose(result.prediction.probabilities, expected.probabilities,
                                   rtol=1e-6)


def test_unknown_model_lists_only_what_the_caller_may_use(trained: dict) -> None:
    dp = make_dp(trained)
    scoped = Caller("loans", frozenset({"risk-flag"}))
    with pytest.raises(ModelNotFound) as err:
        run(dp.infer(Call("frauds", None, scoped), handlers.records([GOOD_FRAUD])))
    assert err.value.detail["known"] == ["risk-flag"]


def test_key_outside_its_scope_is_forbidden_before_any_decoding(trained: dict) -> None:
    dp = make_dp(trained)
    scoped = Caller("loans", frozenset({"risk-flag"}))
    decoded: list[str] = []

    async def decode(model: Any) -> Any:
        decoded.append(model.spec.name)
        raise AssertionError("must not decode for a forbidden caller")

    before = sample_value(get_metrics().auth_failures_total, reason="forbidden", key="loans")
    with pytest.raises(Forbidden) as err:
        run(dp.infer(Call("fraud", None, scoped), decode))
    assert decoded == []
    assert err.value.status == 403 and err.value.detail["field"] == "model"
    assert err.value.message == "key 'loans' may not use model 'fraud'; it may use: risk-flag"
    after = sample_value(get_metrics().auth_failures_total, reason="forbidden", key="loans")
    assert after == before + 1
    assert [m["name"] for m in dp.models(scoped)] == ["risk-flag"]


def test_row_limit_is_checked_before_validation(trained: dict) -> None:
    dp = make_dp(trained, max_rows=3)
    validated: list[bool] = []

    async def decode(model: Any) -> Any:
        return 4, lambda: validated.append(True)

    with pytest.raises(PayloadTooLarge):
        run(dp.infer(Call("fraud"), decode))
    assert validated == []


def test_invalid_rows_are_counted_and_raised(trained: dict) -> None:
    dp = make_dp(trained)
    before = sample_value(get_metrics().request_errors_total, model="fraud",
                          reason="invalid_input")
    with pytest.raises(InvalidInput):
        run(dp.infer(Call("fraud"), handlers.records([{**GOOD_FRAUD, "amount": -1}])))
    assert sample_value(get_metrics().request_errors_total, model="fraud",
                        reason="invalid_input") == before + 1


def test_unexpected_errors_become_internal_error(trained: dict) -> None:
    dp = make_dp(trained)

    async def decode(model: Any) -> Any:
        raise ZeroDivisionError("a bug")

    with pytest.raises(InternalError) as err:
        run(dp.infer(Call("fraud"), decode))
    assert "a bug" not in err.value.message


def test_a_models_inflight_limit_sheds_only_that_model(trained: dict) -> None:
    dp = make_dp(trained, model_max_concurrency=2,
                 model_max_concurrency_overrides="keystroke-rf=1")
    assert dp._limits["keystroke-rf"] == 1 and dp._limits["fraud"] == 2
    release = asyncio.Event()

    async def scenario() -> tuple[list[Any], Any]:
        async def slow(model: Any) -> Any:
            await release.wait()
            return 1, lambda: columns_from_records(model.spec, rf_rows)

        rf_rows = records("keystroke-rf", sample_frame("keystroke-rf", 1))
        held = asyncio.ensure_future(dp.infer(Call("keystroke-rf"), slow))
        await asyncio.sleep(0)
        shed = await asyncio.gather(dp.infer(Call("keystroke-rf"), handlers.records(rf_rows)),
                                    return_exceptions=True)
        fraud = await dp.infer(Call("fraud"), handlers.records([GOOD_FRAUD]))
        release.set()
        await held
        return shed, fraud

    shed, fraud = run(scenario())
    assert isinstance(shed[0], Overloaded) and shed[0].status == 429
    assert fraud.prediction.predictions.tolist() == [1]


def test_parse_overrides() -> None:
    assert parse_overrides(" keystroke-rf=8, fraud=256 ,") == {"keystroke-rf": 8, "fraud": 256}


# ---- scheduling ----------------------------------------------------------------------------

def test_cost_model_estimates_from_smaller_classes() -> None:
    cost = CostModel()
    assert cost.estimate(1) is None
    cost.observe(1, 0.002)
    assert cost.estimate(1) == pytest.approx(0.002)
    assert cost.estimate(8) == pytest.approx(0.002 * 8)  # scaled from the 1-row class
    cost.observe(1, 0.0)
    assert cost.estimate(1) < 0.002  # moving average


def _batcher(seconds: Callable[[int], float]) -> tuple[MicroBatcher[Prediction], list[str]]:
    import threading

    where: list[str] = []
    main = threading.main_thread()

    def call(columns: Any) -> Prediction:
        n = len(next(iter(columns.values())))
        where.append("loop" if threading.current_thread() is main else "thread")
        burn_cpu(seconds(n))
        return Prediction(np.zeros(n))

    return MicroBatcher(call, 512, inline_budget_s=0.001), where


def test_heavy_calls_leave_the_event_loop_cheap_ones_stay() -> None:
    heavy, heavy_where = _batcher(lambda n: 0.005)
    cheap, cheap_where = _batcher(lambda n: 0.0)

    async def scenario() -> None:
        for b in (heavy, cheap):
            for _ in range(3):
                await b.submit({"x": np.zeros(1)}, 1)

    run(scenario())
    # the first call of a size class is measured on the model's thread, then it is known
    assert heavy_where == ["thread", "thread", "thread"]
    assert cheap_where == ["thread", "loop", "loop"]


def test_waiting_on_the_models_thread_is_not_counted_as_cost() -> None:
    """On the model's thread a cheap call can take long in wall time, waiting for the GIL
    while the loop runs (simulated by a sleep there): it must still come back to the loop."""
    import threading
    import time

    where: list[str] = []

    def call(columns: Any) -> Prediction:
        on_loop = threading.current_thread() is threading.main_thread()
        where.append("loop" if on_loop else "thread")
        if not on_loop:
            time.sleep(0.005)
        return Prediction(np.zeros(1))

    b: MicroBatcher[Prediction] = MicroBatcher(call, 512, inline_budget_s=0.001)

    async def scenario() -> None:
        for _ in range(3):
            await b.submit({"x": np.zeros(1)}, 1)

    run(scenario())
    assert where == ["thread", "loop", "loop"]


def test_row_cost_is_the_cheapest_row_of_calls_of_several_rows() -> None:
    """A one-row call is mostly the call's fixed part: a model seen only one row at a time is
    never heavy, however dear its calls; batches say what its rows cost."""
    cost = RowCost()  # ~0.3 ms a lone call, ~0.05 ms a row in batches (risk-flag, slow machine)
    for _ in range(40):
        cost.observe(1, 0.0003)
    assert cost.calls == 0 and not cost.above(0.00015) and not cost.above(0.0, after_calls=0)
    cost.observe(8, 0.050)  # a first batch's lazy set-up
    assert not cost.above(0.0001, after_calls=2)  # one batch says nothing yet
    cost.observe(8, 0.0016)
    assert cost.seconds == pytest.approx(0.0002) and cost.above(0.0001, after_calls=2)
    cost.observe(4, 0.0002)
    assert not cost.above(0.0001, after_calls=2)  # its cheapest row decides
    cost.observe(0, 0.0)  # an empty call is no evidence
    assert cost.calls == 3


def _thread_nice() -> int:
    import os

    return os.getpriority(os.PRIO_PROCESS, 0)  # Linux: 0 is the calling thread


def test_a_heavy_models_calls_all_run_on_its_thread_at_a_lower_priority() -> None:
    """Cheap calls go inline until the owner calls the model heavy; from then on every call
    runs on the model's thread, whose nice value is raised once. A cheap model's is not."""
    import threading

    heavy = [False]
    seen: dict[str, list[Any]] = {"heavy": [], "cheap": []}

    def call_for(name: str) -> Callable[[Any], Prediction]:
        def call(columns: Any) -> Prediction:
            on_loop = threading.current_thread() is threading.main_thread()
            seen[name].append("loop" if on_loop else _thread_nice())
            return Prediction(np.zeros(1))
        return call

    base = _thread_nice()
    target = max(base, 7)
    b: MicroBatcher[Prediction] = MicroBatcher(call_for("heavy"), 512, heavy=lambda: heavy[0],
                                               heavy_nice=7)
    cheap: MicroBatcher[Prediction] = MicroBatcher(call_for("cheap"), 512, heavy_nice=7)

    async def three(batcher: MicroBatcher[Prediction]) -> None:
        for _ in range(3):
            await batcher.submit({"x": np.zeros(1)}, 1)

    run(three(b))
    heavy[0] = True
    run(three(b))
    run(cheap.run({"x": np.zeros(1)}, 1))  # on its thread, never heavy
    assert seen["heavy"] == [base, "loop", "loop", target, target, target]
    assert seen["cheap"] == [base]
    assert _thread_nice() == base  # the loop's own thread is never touched
    b.close()
    cheap.close()


def test_the_data_plane_calls_a_model_heavy_from_its_cpu_per_row(trained: dict) -> None:
    def heavy_after(calls: int, batched_every: int = 2, **settings: Any) -> bool:
        """`calls` requests, every `batched_every`-th of 32 rows (0: one row each)."""
        name = "fraud"
        dp = make_dp(trained, heavy_nice=0, **settings)
        one, many = sample_frame(name, 1), sample_frame(name, 32)
        for i in range(calls):
            frame = many if batched_every and i % batched_every == 0 else one
            run(dp.infer(Call(name), handlers.records(records(name, frame))))
        model = dp.resolve(Call(name))
        return dp._batcher(model, "predict").heavy

    assert not heavy_after(2 * HEAVY_AFTER_CALLS, heavy_row_ms=1000.0)
    assert not heavy_after(2 * HEAVY_AFTER_CALLS - 2, heavy_row_ms=0.0)  # too few batches
    assert heavy_after(2 * HEAVY_AFTER_CALLS, heavy_row_ms=0.0)
    # One row at a time, a call's cost is its fixed part: never a reason to call it heavy.
    assert not heavy_after(3 * HEAVY_AFTER_CALLS, batched_every=0, heavy_row_ms=0.0)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_cheap_models_calls_run_on_the_loop_for_every_protocol(
        trained: dict, protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a batch runs is its measured cost's choice, whatever the protocol: gRPC batches
    linger, but a cheap one is not sent through a thread hop (which cost more CPU per request
    than the call itself in the gRPC A/B)."""
    import threading

    # One row per call: never evidence that a model is heavy (see RowCost), so only the cost
    # model decides where these run.
    dp = make_dp(trained)
    where: list[str] = []
    score = DataPlane._score

    def spy(self: DataPlane, model: Any, columns: Any) -> Prediction:
        where.append("loop" if threading.current_thread() is threading.main_thread()
                     else "thread")
        return score(self, model, columns)

    monkeypatch.setattr(DataPlane, "_score", spy)

    async def calls() -> None:
        for _ in range(30):
            await dp.infer(Call("fraud", protocol=protocol), handlers.records([GOOD_FRAUD]))

    run(calls())
    # Calls are measured on the model's thread until the estimate (cold first calls included)
    # is known to be cheap; from then on they stay on the loop, but for the odd call that a
    # collection or a busy machine made cost over the budget (it is re-measured on the thread).
    assert where[0] == "thread" and where[-20:].count("loop") >= 16, " ".join(where)


def test_concurrent_requests_share_one_call() -> None:
    b, where = _batcher(lambda n: 0.002)

    async def scenario() -> list[Prediction]:
        return await asyncio.gather(*(b.submit({"x": np.zeros(2)}, 2) for _ in range(5)))

    parts = run(scenario())
    assert [len(p) for p in parts] == [2] * 5
    assert len(where) <= 2  # at most: the first alone, then everyone queued meanwhile


class _Clock:
    """batching's perf_counter, moved by hand: arrival gaps without sleeping."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lingering(monkeypatch: pytest.MonkeyPatch) -> tuple[MicroBatcher[Prediction], _Clock,
                                                          list[int]]:
    from riskserve.core import batching

    clock = _Clock()
    monkeypatch.setattr(batching.time, "perf_counter", clock)
    sizes: list[int] = []

    def call(columns: Any) -> Prediction:
        sizes.append(len(columns["x"]))
        return Prediction(np.zeros(len(columns["x"])))

    return MicroBatcher(call, 512), clock, sizes


def test_lingering_waits_only_while_requests_arrive_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    from riskserve.core.batching import LINGER_ARRIVALS, LINGER_CAP_S, LINGER_PAUSE_S

    b, clock, _ = _lingering(monkeypatch)

    async def arrive(gap_s: float, n: int) -> None:
        for _ in range(n):
            clock.now += gap_s
            await b.submit({"x": np.zeros(1)}, 1, linger=True)

    def window() -> float:
        # These arrivals come one after another (each awaited), so every window in between
        # collected nothing and backed off: clear that, to see what the rate alone says.
        b._lingered(True)
        return b.linger_s()

    assert window() == 0.0  # nothing seen yet
    run(arrive(0.0001, 30))  # 10,000 requests/s
    assert window() == pytest.approx(LINGER_ARRIVALS * 0.0001, rel=0.05)
    run(arrive(0.0004, 30))  # 2,500 requests/s: four more take 1.6 ms
    assert window() == pytest.approx(min(LINGER_CAP_S, LINGER_ARRIVALS * 0.0004), rel=0.05)
    run(arrive(LINGER_PAUSE_S * 2, 1))  # one request after a pause: the rate starts over
    assert window() == 0.0
    run(arrive(LINGER_CAP_S, 30))  # under two per window: waiting would not collect any
    assert window() == 0.0


def test_a_window_that_collects_nothing_backs_lingering_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A lone closed-loop caller: nothing can arrive while it waits for its own answer."""
    b, clock, _ = _lingering(monkeypatch)

    async def fast() -> None:
        for _ in range(30):
            clock.now += 0.0001
            await b.submit({"x": np.zeros(1)}, 1, linger=True)

    run(fast())
    b._lingered(True)
    skipped = []
    for _ in range(3):
        b._lingered(False)
        n = 0
        while b.linger_s() == 0.0:
            n += 1
        skipped.append(n)
    assert skipped == [1, 2, 4]
    b._lingered(True)  # a window that collected someone: linger again at once
    assert b.linger_s() > 0.0


def test_lingering_requests_share_a_model_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests that arrive one at a time while the model is free (gRPC) end up in one call
    when they arrive within the window; without lingering each is its own call."""
    b, clock, sizes = _lingering(monkeypatch)

    async def warm() -> None:  # 10,000 requests/s so far
        for _ in range(30):
            clock.now += 0.0001
            await b.submit({"x": np.zeros(1)}, 1, linger=True)

    async def one_at_a_time(linger: bool) -> None:
        async def later(i: int) -> Prediction:
            for _ in range(i):  # the i-th request reaches the queue i loop turns later
                await asyncio.sleep(0)
            clock.now += 0.0001
            return await b.submit({"x": np.zeros(1)}, 1, linger=linger)

        await asyncio.gather(*(later(i) for i in range(6)))

    run(one_at_a_time(linger=False))
    assert len(sizes) >= 3, sizes  # the queue never held more than a couple
    run(warm())
    b._lingered(True)  # the warm-up's sequential windows backed off; start from a good one
    sizes.clear()
    run(one_at_a_time(linger=True))
    assert sizes == [6]


def test_a_lingering_batch_waits_for_the_calls_already_on_their_way() -> None:
    """Calls a transport accepted (Arrivals) join the batch of the first one, however many loop
    turns their messages take; the rate-based window is off here (nothing measured yet), so
    without them being counted the first call goes alone."""
    from riskserve.core.batching import Arrivals

    async def scenario(counted: bool) -> list[int]:
        arrivals = Arrivals()
        sizes: list[int] = []
        b: MicroBatcher[Prediction] = MicroBatcher(
            lambda cols: sizes.append(len(cols["x"])) or Prediction(np.zeros(len(cols["x"]))),
            512, arrivals=arrivals)

        async def call(turns: int) -> Prediction:
            arrival = arrivals.expect() if counted else None
            for _ in range(turns):  # its message comes `turns` loop turns later
                await asyncio.sleep(0)
            if arrival is not None:
                arrival.done()
            return await b.submit({"x": np.zeros(1)}, 1, linger=True)

        await asyncio.gather(*(call(turns) for turns in (0, 5, 10, 20)))
        assert arrivals.expected == 0
        return sizes

    assert run(scenario(counted=True)) == [4]
    alone = run(scenario(counted=False))
    assert alone[0] == 1 and sum(alone) == 4, alone  # the first went alone


def test_only_lingering_batches_wait_for_arrivals() -> None:
    """HTTP requests (not lingering) are never held for gRPC calls on their way."""
    from riskserve.core.batching import Arrivals

    async def scenario() -> tuple[list[int], int]:
        arrivals = Arrivals()
        pending = arrivals.expect()  # never arrives while the request is answered
        sizes: list[int] = []
        b: MicroBatcher[Prediction] = MicroBatcher(
            lambda cols: sizes.append(len(cols["x"])) or Prediction(np.zeros(1)), 512,
            arrivals=arrivals)
        await b.submit({"x": np.zeros(1)}, 1)
        expected = arrivals.expected
        pending.done()
        return sizes, expected

    assert run(scenario()) == ([1], 1)


def test_arrivals_settle_at_the_cap_when_a_call_never_comes() -> None:
    import time

    from riskserve.core.batching import Arrivals

    async def scenario() -> tuple[float, float]:
        arrivals = Arrivals()
        lost = arrivals.expect()
        start = time.monotonic()
        await arrivals.settled(0.01)
        capped = time.monotonic() - start
        lost.done()
        lost.done()  # a second done() (the task's callback after the servicer's) counts once
        assert arrivals.expected == 0
        start = time.monotonic()
        await arrivals.settled(10.0)  # nothing on its way: no wait at all
        return capped, time.monotonic() - start

    capped, idle = run(scenario())
    assert 0.009 <= capped < 1.0
    assert idle < 0.005


# ---- drift counters ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fraud", "risk-flag", "cyber-threat"])
def test_drift_counters_count_every_reference_bin(trained: dict, name: str) -> None:
    """One scored batch adds each served value to its reference bin, per feature, and counts
    out-of-range values: the same numbers as each Reference's own counting."""
    dp = make_dp(trained)
    model = trained[name].model
    frame = sample_frame(name, 40)
    cols = columns_from_frame(model.spec, frame[list(model.spec.feature_names)])
    m = get_metrics()
    refs = model.references

    def counted() -> dict[tuple[str, int], float]:
        return {(f, b): sample_value(m.feature_bin_total, model=name, version=model.version,
                                     feature=f, bin=str(b))
                for f, ref in refs.items() for b in range(ref.n_bins)}

    def outside() -> dict[str, float]:
        return {f: sample_value(m.out_of_range_total, model=name, version=model.version,
                                feature=f) for f in refs}

    before, before_out = counted(), outside()
    dp._score(model, cols)
    after, after_out = counted(), outside()
    for f, ref in refs.items():
        expected = ref.counts(cols[f])
        assert [after[f, b] - before[f, b] for b in range(ref.n_bins)] == expected.tolist(), f
        assert after_out[f] - before_out[f] == ref.out_of_range(cols[f]), f


def _drift_samples(m: Any, name: str, version: str) -> dict[tuple[Any, ...], float]:
    """Every drift counter's value for one model version, keyed by series."""
    out: dict[tuple[Any, ...], float] = {}
    for metric in (m.feature_bin_total, m.out_of_range_total, m.missing_total,
                   m.unseen_total, m.prediction_bin_total):
        for family in metric.collect():
            for s in family.samples:
                if s.name.endswith("_total") and s.labels.get("model") == name \
                        and s.labels.get("version") == version:
                    out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def _awkward_batch(model: Any, rows: int, seed: int) -> tuple[dict[str, np.ndarray], Any]:
    """Real rows, then the values binning can get wrong: an edge itself, below the training
    min, above the max, NaN, a missing and an unseen category; and the real rows' prediction
    (drift counts what it is given; not every model can score a NaN)."""
    frame = sample_frame(model.spec.name, rows, seed=seed)
    clean = columns_from_frame(model.spec, frame[list(model.spec.feature_names)])
    cols = {k: np.array(v, copy=True) for k, v in clean.items()}
    rng = np.random.default_rng(seed)
    for f, ref in model.references.items():
        col = cols[f]
        i = int(rng.integers(0, rows))
        if ref.kind == "numeric":
            col = cols[f] = col.astype(np.float64)
            col[i] = rng.choice([ref.edges[0], ref.edges[-1], (ref.min or 0) - 1,
                                 (ref.max or 0) + 1, np.nan])
        else:
            col[i] = rng.choice(np.array([None, "never-seen", ref.categories[0]], dtype=object))
    return cols, model.predict(clean)


@pytest.mark.parametrize("name", ["fraud", "risk-flag", "cyber-threat", "keystroke-rf"])
def test_small_batches_count_drift_exactly_like_the_vectorised_path(
        trained: dict, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches up to FEW_ROWS are counted value by value in plain Python: every drift series
    (bins, missing, out of range, unseen, prediction bins) must move exactly as numpy's."""
    from riskserve import metrics as metrics_module

    m = get_metrics()
    model = trained[name].model
    for rows in (1, 2, 7, metrics_module.FEW_ROWS):
        for seed in range(3):
            cols, pred = _awkward_batch(model, rows, seed)
            deltas = []
            for few in (metrics_module.FEW_ROWS, 0):
                monkeypatch.setattr(metrics_module, "FEW_ROWS", few)
                before = _drift_samples(m, name, model.version)
                m.observe_batch(model, cols, pred, rows, 0.001)
                after = _drift_samples(m, name, model.version)
                deltas.append({k: v - before.get(k, 0.0) for k, v in after.items()
                               if v != before.get(k, 0.0)})
                monkeypatch.undo()
            assert deltas[0] == deltas[1], (rows, seed)
            assert sum(v for k, v in deltas[0].items() if "feature_bin" in k[0]) > 0


def test_small_batch_with_a_non_string_category_falls_back_to_pandas(trained: dict) -> None:
    """A float NaN in a category column is missing by pandas' rule, so the per-value path
    declines (counts nothing) and the vectorised path counts it as missing."""
    model = trained["fraud"].model
    series = get_metrics()._series[("fraud", model.version)]
    cols, pred = _awkward_batch(model, 2, 0)
    cols["type"] = np.array([float("nan"), "TRANSFER"], dtype=object)
    before = sample_value(get_metrics().missing_total, model="fraud", version=model.version,
                          feature="type")
    assert series._count_few(cols, pred) is False
    get_metrics().observe_batch(model, cols, pred, 2, 0.001)
    assert sample_value(get_metrics().missing_total, model="fraud", version=model.version,
                        feature="type") == before + 1


# ---- feedback and shadow -------------------------------------------------------------------

def test_feedback_counts_binary_pairs(trained: dict) -> None:
    dp = make_dp(trained)
    m = get_metrics().feedback_total
    version = trained["fraud"].version
    before = sample_value(m, model="fraud", version=version, predicted="1", actual="0")
    model, n = run(dp.feedback(Call("fraud"), [{"predicted": 1, "actual": 0},
                                               {"predicted": 1, "actual": 0},
                                               {"predicted": 0, "actual": 0}]))
    assert n == 3 and model.version == version
    assert sample_value(m, model="fraud", version=version, predicted="1",
                        actual="0") == before + 2


def test_shadow_scores_the_candidate_after_answering(trained: dict) -> None:
    metrics = get_metrics()
    prod = trained["phishing"].model
    registry = Registry({n: trained[n].model for n in MODEL_NAMES},
                        candidates={"phishing": prod}, on_load=metrics.model_loaded)
    dp = DataPlane(registry, Settings(), metrics)
    # the same version as its own candidate would be skipped: use a copy with another version
    from dataclasses import replace

    cand = replace(prod, version=prod.version + "-cand")
    registry.candidates["phishing"] = cand
    rows = records("phishing", sample_frame("phishing", 7))
    before = sample_value(metrics.shadow_rows_total, model="phishing", candidate=cand.version)

    async def scenario() -> Any:
        result = await dp.infer(Call("phishing"), handlers.records(rows))
        await asyncio.gather(*dp._shadow_tasks)
        return result

    result = run(scenario())
    assert result.model is prod
    assert sample_value(metrics.shadow_rows_total, model="phishing",
                        candidate=cand.version) == before + 7
    assert sample_value(metrics.shadow_disagreements_total, model="phishing",
                        candidate=cand.version) == 0
    assert ANONYMOUS.may_use("phishing")
