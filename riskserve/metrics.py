"""riskserve's Prometheus metrics: latency, throughput, errors, auth failures and drift counters.

Every metric is registered once here, labelled only with values bounded by the model specs.
`prometheus_client` is imported when a worker builds `Metrics`, never at module import: BentoML
sets PROMETHEUS_MULTIPROC_DIR in each worker after importing the service, and a client imported
earlier would count in single-process mode, invisible to /metrics. Drift is exported as raw
per-bin counters plus the reference shares, so Prometheus computes PSI exactly across workers,
pods and any window (see grafana/rules/riskserve.rules.yaml).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from riskserve.core.encoding import category_codes
from riskserve.core.scoring import Prediction, ScoringModel
from riskserve.core.specs import SPECS
from riskserve.drift import StackedReferences

INFERENCE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)
# Absolute errors of regression feedback (cyber-threat infection rates are ~1e-3..5e-2).
ABS_ERROR_BUCKETS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
# |candidate score - production score| per shadowed row (probabilities or regression values).
DELTA_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


# Batches up to this many rows are drift-counted value by value in plain Python (most batches
# are one row; the per-value path measured 1.6-14x faster than numpy up to 32 rows for fraud,
# risk-flag and keystroke-rf); larger ones with numpy. Both count the same
# (tests/test_dataplane.py).
FEW_ROWS = 32

# The `key` label when no key name is known (missing or invalid key, auth disabled).
UNKNOWN_KEY = "unknown"


def model_label(name: str | None) -> str:
    """Unknown names collapse into one label value so a scanner cannot explode cardinality."""
    return name if name in SPECS else "unknown"


class _ModelSeries:
    """Pre-resolved metric children of one model version: the hot path only calls .inc()."""

    def __init__(self, m: Metrics, model: ScoringModel) -> None:
        name, version = model.spec.name, model.version
        self.model = model
        self.inference = m.inference_seconds.labels(name, version)
        self.batch_rows = m.batch_rows.labels(name)
        self.predictions = {p: m.predictions_total.labels(name, version, p)
                            for p in ("http", "grpc")}
        self.bins = {}
        self.out_of_range = {}
        self.missing = {}
        self.unseen = {}
        for feature, ref in model.references.items():
            self.bins[feature] = [m.feature_bin_total.labels(name, version, feature, str(b))
                                  for b in range(ref.n_bins)]
            for b, share in enumerate(ref.proportions):
                m.feature_reference_ratio.labels(name, version, feature, str(b)).set(share)
            self.out_of_range[feature] = m.out_of_range_total.labels(name, version, feature)
            self.missing[feature] = m.missing_total.labels(name, version, feature)
            self.unseen[feature] = m.unseen_total.labels(name, version, feature)
        # Numeric features are binned together (drift.StackedReferences); categorical ones
        # one by one. Children are flattened [feature * width + bin] to match.
        numeric = [f for f, ref in model.references.items() if ref.kind == "numeric"]
        self.categorical = [f for f in model.references if f not in numeric]
        self.numeric = numeric
        self.stacked = (StackedReferences([model.references[f] for f in numeric])
                        if numeric else None)
        self.numeric_bins: list[Any] = []
        if self.stacked is not None:
            width = self.stacked.width
            self.offsets = np.arange(len(numeric))[:, None] * width
            for f in numeric:
                children = self.bins[f]
                self.numeric_bins += children + [None] * (width - len(children))
        # The per-value path's view of the same children: (reference, training min, max,
        # bins, missing, out of range) per numeric feature (the bounds StackedReferences
        # uses), (reference, vocabulary index, bins, missing, unseen) per categorical one.
        bounds = (zip(self.stacked.lo.tolist(), self.stacked.hi.tolist(), strict=True)
                  if self.stacked is not None else ())
        self.few_numeric = [
            (f, model.references[f], lo, hi, self.bins[f], self.missing[f],
             self.out_of_range[f]) for f, (lo, hi) in zip(numeric, bounds, strict=True)]
        vocab = model.encoder.vocabularies
        self.few_categorical = [
            (f, model.references[f], model.encoder.index(f) if f in vocab else None,
             self.bins[f], self.missing[f], self.unseen[f])
            for f in self.categorical]
        self.numeric_missing = [self.missing[f] for f in numeric]
        self.numeric_out_of_range = [self.out_of_range[f] for f in numeric]
        pref = model.prediction_reference
        self.prediction_bins = []
        if pref is not None:
            self.prediction_bins = [m.prediction_bin_total.labels(name, version, str(b))
                                    for b in range(pref.n_bins)]
            for b, share in enumerate(pref.proportions):
                m.prediction_reference_ratio.labels(name, version, str(b)).set(share)
        algorithm = str(model.info.get("algorithm", model.spec.algorithm))
        m.model_info.labels(name, version, algorithm).set(1)
        for metric, value in model.info.get("metrics", {}).items():
            m.heldout_metric.labels(name, version, metric).set(float(value))
        self.explain = m.explain_seconds.labels(name, version)
        # Feedback series at 0 from the start, so increase() sees a version's first outcomes.
        if model.spec.task == "binary":
            for predicted in ("0", "1"):
                for actual in ("0", "1"):
                    m.feedback_total.labels(name, version, predicted, actual, "")
        elif model.spec.task == "multiclass":
            for outcome in ("correct", "wrong"):
                m.feedback_total.labels(name, version, "", "", outcome)
        else:
            m.feedback_abs_error.labels(name, version)
            m.feedback_squared_error.labels(name, version)

    def observe(self, columns: Mapping[str, np.ndarray], pred: Prediction, rows: int,
                seconds: float) -> None:
        self.inference.observe(seconds)
        self.batch_rows.observe(rows)
        if rows <= FEW_ROWS and self._count_few(columns, pred):
            return
        if self.stacked is not None:
            x = np.array([columns[f] for f in self.numeric], dtype=np.float64)
            bins = self.stacked.assign(x)
            present = bins >= 0
            _add(self.numeric_bins, (bins + self.offsets)[present])
            _inc_each(self.numeric_missing, bins.shape[1] - np.count_nonzero(present, axis=1))
            _inc_each(self.numeric_out_of_range, self.stacked.out_of_range(x))
        vocab = self.model.encoder.vocabularies
        for feature in self.categorical:
            ref = self.model.references[feature]
            values = columns[feature]
            bins = ref.assign(values)
            _add(self.bins[feature], bins)
            missing = int(np.count_nonzero(bins < 0))
            if missing:
                self.missing[feature].inc(missing)
            if feature in vocab:
                codes = category_codes(values, self.model.encoder.index(feature))
                unseen = int(np.count_nonzero(codes < 0)) - missing
                if unseen > 0:
                    self.unseen[feature].inc(unseen)
        pref = self.model.prediction_reference
        if pref is not None and pred.scores is not None:
            scores = pred.scores if pref.kind == "numeric" else pred.scores.astype(str)
            _add(self.prediction_bins, pref.assign(scores))

    def _count_few(self, columns: Mapping[str, np.ndarray], pred: Prediction) -> bool:
        """The drift counts of a small batch, value by value: the same increments as the numpy
        path in `observe` at a fraction of its fixed cost per feature (~0.3 ms of a one-row
        risk-flag request before). False, with nothing counted, when a categorical column
        holds anything but str or None: which of those values are missing is pandas' call."""
        categorical = [columns[f].tolist() for f, *_ in self.few_categorical]
        if not all(v is None or isinstance(v, str) for values in categorical for v in values):
            return False
        counts: dict[Any, int] = {}
        for f, ref, lo, hi, bins, missing, out_of_range in self.few_numeric:
            for v in np.asarray(columns[f], dtype=np.float64).tolist():
                b = ref.bin_of(v)
                child = missing if b < 0 else bins[b]
                counts[child] = counts.get(child, 0) + 1
                if v < lo or v > hi:  # never for NaN
                    counts[out_of_range] = counts.get(out_of_range, 0) + 1
        for (_, ref, index, bins, missing, unseen), values in zip(
                self.few_categorical, categorical, strict=True):
            for v in values:
                b = ref.bin_of(v)
                child = missing if b < 0 else bins[b]
                counts[child] = counts.get(child, 0) + 1
                if b >= 0 and index is not None and v not in index:
                    counts[unseen] = counts.get(unseen, 0) + 1
        pref = self.model.prediction_reference
        if pref is not None and pred.scores is not None:
            scores = pred.scores if pref.kind == "numeric" else pred.scores.astype(str)
            for v in scores.tolist():
                b = pref.bin_of(v)
                if b >= 0:
                    child = self.prediction_bins[b]
                    counts[child] = counts.get(child, 0) + 1
        for child, n in counts.items():
            child.inc(n)
        return True


def _inc_each(children: list[Any], counts: np.ndarray) -> None:
    for i in np.flatnonzero(counts):
        children[i].inc(int(counts[i]))


def _add(children: list[Any], bins: np.ndarray) -> None:
    counts = np.bincount(bins[bins >= 0], minlength=len(children))
    for b in np.flatnonzero(counts):
        children[b].inc(int(counts[b]))


class Metrics:
    """All riskserve metrics of one worker process."""

    def __init__(self) -> None:
        import prometheus_client as pc

        self.predictions_total = pc.Counter(
            "riskserve_predictions", "Rows scored, by model version and protocol.",
            ["model", "version", "protocol"])
        self.requests_total = pc.Counter(
            "riskserve_requests", "Prediction requests by model, protocol and calling key's "
            "name, failed or not.", ["model", "protocol", "key"])
        self.inference_seconds = pc.Histogram(
            "riskserve_inference_seconds", "Model compute time per model call (one batch).",
            ["model", "version"], buckets=INFERENCE_BUCKETS)
        self.batch_rows = pc.Histogram(
            "riskserve_batch_rows", "Rows per model call (adaptive batches and CSV chunks).",
            ["model"], buckets=BATCH_BUCKETS)
        self.request_errors_total = pc.Counter(
            "riskserve_request_errors", "Failed requests by model and reason.",
            ["model", "reason"])
        self.auth_failures_total = pc.Counter(
            "riskserve_auth_failures", "Rejected calls by reason (missing / invalid key, "
            "forbidden model) and the key's name where known.", ["reason", "protocol", "key"])
        self.rate_limited_total = pc.Counter(
            "riskserve_rate_limited", "Calls refused because the key was over its rate.",
            ["key"])
        self.explain_seconds = pc.Histogram(
            "riskserve_explain_seconds", "Explanation compute time per model call (one batch).",
            ["model", "version"], buckets=INFERENCE_BUCKETS)
        # Binary models fill predicted/actual, multiclass ones `outcome` (correct/wrong); the
        # other labels stay empty, which Prometheus drops, so each family has its own label set.
        self.feedback_total = pc.Counter(
            "riskserve_feedback", "Ground-truth outcomes received for served predictions.",
            ["model", "version", "predicted", "actual", "outcome"])
        self.feedback_abs_error = pc.Histogram(
            "riskserve_feedback_abs_error", "|actual - predicted| of regression feedback.",
            ["model", "version"], buckets=ABS_ERROR_BUCKETS)
        self.feedback_squared_error = pc.Counter(
            "riskserve_feedback_squared_error", "Sum of (actual - predicted)^2 of regression "
            "feedback (RMSE = sqrt(rate of this / rate of the abs-error count)).",
            ["model", "version"])
        self.heldout_metric = pc.Gauge(
            "riskserve_model_heldout_metric", "The held-out metrics stored with each loaded "
            "model version.", ["model", "version", "metric"], multiprocess_mode="livemax")
        self.shadow_rows_total = pc.Counter(
            "riskserve_shadow_rows", "Production rows also scored by the shadow candidate.",
            ["model", "candidate"])
        self.shadow_disagreements_total = pc.Counter(
            "riskserve_shadow_disagreements", "Shadowed rows where the candidate's answer "
            "differs (another class; regression: beyond the documented tolerance).",
            ["model", "candidate"])
        self.shadow_score_delta = pc.Histogram(
            "riskserve_shadow_score_delta", "|candidate score - production score| per "
            "shadowed row.", ["model", "candidate"], buckets=DELTA_BUCKETS)
        self.shadow_dropped_total = pc.Counter(
            "riskserve_shadow_dropped", "Rows not shadowed because the model was busy.",
            ["model", "candidate"])
        self.model_info = pc.Gauge(
            "riskserve_model_info", "1 for each loaded model version.",
            ["model", "version", "algorithm"], multiprocess_mode="livemax")
        self.in_flight = pc.Gauge(
            "riskserve_requests_in_flight", "Prediction requests being handled now.",
            multiprocess_mode="livesum")
        self.feature_bin_total = pc.Counter(
            "riskserve_feature_bin", "Served feature values per reference bin.",
            ["model", "version", "feature", "bin"])
        self.feature_reference_ratio = pc.Gauge(
            "riskserve_feature_reference_ratio", "Training share of each feature bin.",
            ["model", "version", "feature", "bin"], multiprocess_mode="livemax")
        self.prediction_bin_total = pc.Counter(
            "riskserve_prediction_bin", "Served predictions per reference bin.",
            ["model", "version", "bin"])
        self.prediction_reference_ratio = pc.Gauge(
            "riskserve_prediction_reference_ratio", "Training share of each prediction bin.",
            ["model", "version", "bin"], multiprocess_mode="livemax")
        self.out_of_range_total = pc.Counter(
            "riskserve_feature_out_of_range", "Served values outside the training min/max.",
            ["model", "version", "feature"])
        self.missing_total = pc.Counter(
            "riskserve_feature_missing", "Served null values.", ["model", "version", "feature"])
        self.unseen_total = pc.Counter(
            "riskserve_feature_unseen_category", "Served categories unseen in training.",
            ["model", "version", "feature"])
        self._series: dict[tuple[str, str], _ModelSeries] = {}
        # Series that exist from the start: increase() and rate() cannot see a counter's first
        # value, so a counter born with the first request would hide that request.
        for protocol in ("http", "grpc"):
            for reason in ("missing", "invalid"):
                self.auth_failures_total.labels(reason, protocol, UNKNOWN_KEY)

    def model_loaded(self, model: ScoringModel) -> None:
        """Export info, held-out metrics and reference shares; create every bin counter at 0."""
        key = (model.spec.name, model.version)
        if key not in self._series:
            self._series[key] = _ModelSeries(self, model)

    def shadow_declared(self, name: str, candidate: str) -> None:
        """Create a candidate's shadow series at 0, so rate() sees its first rows."""
        for metric in (self.shadow_rows_total, self.shadow_disagreements_total,
                       self.shadow_dropped_total, self.shadow_score_delta):
            metric.labels(name, candidate)

    def observe_batch(self, model: ScoringModel, columns: Mapping[str, np.ndarray],
                      pred: Prediction, rows: int, seconds: float) -> None:
        self.model_loaded(model)
        self._series[(model.spec.name, model.version)].observe(columns, pred, rows, seconds)

    def predictions(self, model: ScoringModel, rows: int, protocol: str) -> None:
        self._series[(model.spec.name, model.version)].predictions[protocol].inc(rows)

    def known_keys(self, names: Iterable[str]) -> None:
        """Create every key's request series at 0 (called when the keys file is (re)loaded), so
        rate() sees a key's first request."""
        for key in names:
            self.rate_limited_total.labels(key)
            for protocol in ("http", "grpc"):
                self.auth_failures_total.labels("forbidden", protocol, key)
                for name in SPECS:
                    self.requests_total.labels(name, protocol, key)

    def explained(self, model: ScoringModel, seconds: float) -> None:
        self._series[(model.spec.name, model.version)].explain.observe(seconds)

    def feedback(self, model: ScoringModel, predicted: np.ndarray, actual: np.ndarray) -> None:
        """Binary: a counter per (predicted, actual) pair; multiclass: correct / wrong only (110
        keystroke users must not become 12,100 series); regression: |error| and error^2."""
        name, version, task = model.spec.name, model.version, model.spec.task
        if task == "regression":
            err = np.asarray(actual, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
            hist = self.feedback_abs_error.labels(name, version)
            for e in np.abs(err):
                hist.observe(float(e))
            self.feedback_squared_error.labels(name, version).inc(float(np.sum(err * err)))
            return
        if task == "binary":
            pairs = np.column_stack([np.asarray(predicted, dtype=np.int64),
                                     np.asarray(actual, dtype=np.int64)])
            values, counts = np.unique(pairs, axis=0, return_counts=True)
            for (p, a), n in zip(values.tolist(), counts.tolist(), strict=True):
                self.feedback_total.labels(name, version, str(p), str(a), "").inc(n)
            return
        correct = int(np.count_nonzero(np.asarray(predicted) == np.asarray(actual)))
        if correct:
            self.feedback_total.labels(name, version, "", "", "correct").inc(correct)
        if len(predicted) - correct:
            self.feedback_total.labels(name, version, "", "", "wrong").inc(len(predicted) - correct)

    def shadow(self, model: ScoringModel, candidate: ScoringModel, rows: int, disagreements: int,
               deltas: np.ndarray) -> None:
        labels = (model.spec.name, candidate.version)
        self.shadow_rows_total.labels(*labels).inc(rows)
        if disagreements:
            self.shadow_disagreements_total.labels(*labels).inc(disagreements)
        hist = self.shadow_score_delta.labels(*labels)
        for d in np.asarray(deltas, dtype=np.float64).reshape(-1):
            hist.observe(float(d))

    def shadow_dropped(self, model: ScoringModel, candidate: ScoringModel, rows: int) -> None:
        self.shadow_dropped_total.labels(model.spec.name, candidate.version).inc(rows)

    def request(self, model: str | None, protocol: str, key: str = UNKNOWN_KEY) -> None:
        self.requests_total.labels(model_label(model), protocol, key).inc()

    def rate_limited(self, key: str) -> None:
        self.rate_limited_total.labels(key).inc()

    def error(self, model: str | None, reason: str) -> None:
        self.request_errors_total.labels(model_label(model), reason).inc()

    def auth_failure(self, reason: str, protocol: str, key: str = UNKNOWN_KEY) -> None:
        self.auth_failures_total.labels(reason, protocol, key).inc()


@functools.cache
def get_metrics() -> Metrics:
    """The process's metrics, created on first use (in the worker, after BentoML has set
    PROMETHEUS_MULTIPROC_DIR), so HTTP middleware, handlers and gRPC share one registry."""
    return Metrics()

