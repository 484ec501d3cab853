"""Live evidence for `promote --prometheus`: shadow agreement and live quality, from Prometheus.

Computed from the raw counters (not the recording rules) so any window works and nothing but
the service's own /metrics needs to be scraped. The promotion itself is still decided by the
held-out metric: live figures are printed beside it for the person promoting, because live
outcomes arrive late, are sparse, and are labelled by whichever version answered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from riskserve.core.specs import ModelSpec

DEFAULT_WINDOW = "1h"
TIMEOUT_S = 5.0
_DURATION = re.compile(r"^[1-9][0-9]*(ms|s|m|h|d|w|y)$")
# What each task's live quality reports (the held-out metrics of the same name sit beside them).
LIVE_METRICS = {"binary": ("precision", "recall", "f1", "accuracy"),
                "multiclass": ("accuracy",), "regression": ("mae", "rmse")}


class PrometheusUnavailable(Exception):
    """Prometheus could not answer; the message is one line for the CLI."""


def check_window(window: str) -> str:
    """A PromQL range duration such as 30m, 1h or 7d."""
    if not _DURATION.match(window):
        raise ValueError(f"window '{window}' is not a Prometheus duration such as 30m, 1h or 7d")
    return window


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _selector(**labels: str) -> str:
    return "{" + ",".join(f"{k}={_quote(v)}" for k, v in labels.items()) + "}"


class Prometheus:
    """The two calls of Prometheus' HTTP API this needs: an instant query, summed results."""

    def __init__(self, url: str, timeout: float = TIMEOUT_S,
                 client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout)

    def vector(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of each series an instant query returns."""
        try:
            resp = self._client.get(f"{self.url}/api/v1/query", params={"query": promql})
            body = resp.json()
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url} unreachable "
                                        f"({type(exc).__name__}: {exc})") from None
        except ValueError:
            raise PrometheusUnavailable(f"{self.url} answered HTTP {resp.status_code} with no "
                                        "JSON: is it Prometheus?") from None
        if resp.status_code != 200 or body.get("status") != "success":
            raise PrometheusUnavailable(f"Prometheus at {self.url} refused the query "
                                        f"(HTTP {resp.status_code}): {body.get('error', body)}")
        return [(r.get("metric", {}), float(r["value"][1]))
                for r in body.get("data", {}).get("result", [])]

    def scalar(self, promql: str) -> float | None:
        """The single value of an aggregated query; None when no series matched."""
        result = self.vector(promql)
        return result[0][1] if result else None

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class Agreement:
    """How often the candidate answered like production over the window."""

    rows: float
    disagreements: float

    @property
    def ratio(self) -> float:
        return 1.0 - self.disagreements / self.rows if self.rows else math.nan


def shadow_agreement(prom: Prometheus, model: str, candidate: str,
                     window: str) -> Agreement | None:
    """None when the candidate shadowed no rows in the window."""
    sel = _selector(model=model, candidate=candidate)
    rows = prom.scalar(f"sum(increase(riskserve_shadow_rows_total{sel}[{window}]))")
    if not rows:
        return None
    dis = prom.scalar(f"sum(increase(riskserve_shadow_disagreements_total{sel}[{window}]))")
    return Agreement(rows, dis or 0.0)


@dataclass(frozen=True)
class LiveQuality:
    """Quality of one version on the outcomes received over the window, beside held-out."""

    version: str
    outcomes: float
    live: dict[str, float]
    heldout: dict[str, float] = field(default_factory=dict)


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def binary_quality(pairs: Mapping[tuple[str, str], float]) -> tuple[float, dict[str, float]]:
    """Outcome count and precision/recall/F1/accuracy from (predicted, actual) -> count."""
    tp, fp = pairs.get(("1", "1"), 0.0), pairs.get(("1", "0"), 0.0)
    fn, tn = pairs.get(("0", "1"), 0.0), pairs.get(("0", "0"), 0.0)
    n = tp + fp + fn + tn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return n, {"precision": precision, "recall": recall, "f1": f1, "accuracy": _ratio(tp + tn, n)}


def live_quality(prom: Prometheus, spec: ModelSpec, version: str, window: str,
                 heldout: Mapping[str, float] | None = None) -> LiveQuality | None:
    """Live metrics of `version` from its feedback counters; None when no outcome arrived.

    Held-out values come from `riskserve_model_heldout_metric` (what the service loaded),
    falling back to `heldout` (the store's) when that version is not loaded anywhere.
    """
    sel = _selector(model=spec.name, version=version)
    if spec.task == "regression":
        count = prom.scalar(f"sum(increase(riskserve_feedback_abs_error_count{sel}[{window}]))")
        if not count:
            return None
        abs_sum = prom.scalar(f"sum(increase(riskserve_feedback_abs_error_sum{sel}[{window}]))")
        sq_sum = prom.scalar(
            f"sum(increase(riskserve_feedback_squared_error_total{sel}[{window}]))")
        n, live = count, {"mae": (abs_sum or 0.0) / count,
                          "rmse": math.sqrt(max(sq_sum or 0.0, 0.0) / count)}
    elif spec.task == "binary":
        rows = prom.vector(f"sum by (predicted, actual) "
                           f"(increase(riskserve_feedback_total{sel}[{window}]))")
        n, live = binary_quality({(m.get("predicted", ""), m.get("actual", "")): v
                                  for m, v in rows})
    else:
        rows = prom.vector(f"sum by (outcome) (increase(riskserve_feedback_total{sel}[{window}]))")
        counts = {m.get("outcome", ""): v for m, v in rows}
        n = counts.get("correct", 0.0) + counts.get("wrong", 0.0)
        live = {"accuracy": _ratio(counts.get("correct", 0.0), n)}
    if not n:
        return None
    exposed = {m.get("metric", ""): v for m, v in prom.vector(
        f"max by (metric) (riskserve_model_heldout_metric{sel})")}
    known = {**(heldout or {}), **exposed}
    return LiveQuality(version, n, live, {k: known[k] for k in live if k in known})


def _fmt(metrics: Mapping[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


def report(prom: Prometheus, spec: ModelSpec, candidate: str, production: str | None,
           window: str, heldout: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The lines `promote --prometheus` prints (raises PrometheusUnavailable)."""
    lines = [f"live, last {window} (Prometheus {prom.url}):"]
    agreement = shadow_agreement(prom, spec.name, candidate, window)
    if agreement is None:
        lines.append(f"  shadow: {candidate} scored no production rows (is it the shadow "
                     "candidate? `python -m training shadow`)")
    else:
        lines.append(f"  shadow agreement of {candidate} with production: "
                     f"{agreement.ratio:.2%} of {agreement.rows:,.0f} rows "
                     f"({agreement.disagreements:,.0f} disagreements)")
    roles = [(production, "production"), (candidate, "candidate")]
    for version, role in roles:
        if version is None or (role == "candidate" and version == production):
            continue
        quality = live_quality(prom, spec, version, window, heldout.get(version))
        if quality is None:
            lines.append(f"  live quality of {version} ({role}): no feedback in the window")
            continue
        held = f"; held-out {_fmt(quality.heldout)}" if quality.heldout else ""
        lines.append(f"  live quality of {version} ({role}): {_fmt(quality.live)} over "
                     f"{quality.outcomes:,.0f} outcomes{held}")
    return lines


def heldout_of(stored: Any) -> dict[str, float]:
    """The held-out metrics saved with a stored model version."""
    return {k: float(v) for k, v in stored.info.metadata.get("metrics", {}).items()}
