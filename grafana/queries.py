"""Turn dashboard query text into plain PromQL: Grafana macro substitution and query listing.

Pure Python with no Grafana SDK import, so any test (the PromQL parse test here, the end-to-end
traffic test later) can list every query of the committed dashboards and run it on Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GRAFANA_DIR = Path(__file__).resolve().parent
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"

# What each dashboard variable and Grafana macro becomes outside Grafana. Variables become ".*"
# because every dashboard uses them in regex matchers (=~), where ".*" also matches a missing
# label: a local Prometheus without Kubernetes labels still returns series.
DEFAULT_SUBSTITUTIONS: Mapping[str, str] = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "datasource": "",
    "job": ".*",
    "namespace": ".*",
    "pod": ".*",
    "model": ".*",
}

# $name, ${name} and ${name:format}. A digit cannot start a name, so label_replace's "$1"
# replacement references are left alone.
_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?::\w+)?\}|(?P<plain>[A-Za-z_]\w*))")

# cAdvisor metrics only exist where the kubelet is scraped, i.e. in a Kubernetes cluster.
KUBERNETES_METRICS = frozenset(
    {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"}
)
# Series the service exports only after traffic of one kind, which a live test must send before
# it can expect the query to return data. Everything else exists from model load (the held-out
# metrics, the explanation histogram, every bin, missing/invalid auth failures) or after plain
# predictions. A candidate's shadow series exist from its declaration, at 0.
TRAFFIC_KINDS: Mapping[str, re.Pattern[str]] = {
    "feedback": re.compile(
        r"riskserve_feedback_|riskserve:feedback_|riskserve:live_quality(_outcomes)?:"
    ),
    "shadow": re.compile(r"riskserve_shadow_|riskserve:shadow_"),
    "rate_limited": re.compile(r"\briskserve_rate_limited_total\b"),
    "forbidden": re.compile(r'reason="forbidden"'),
    "overloaded": re.compile(r'reason="overloaded"'),
}
# Recorded series (level:metric:window) only exist where riskserve.rules.yaml is loaded.
_RECORDED = re.compile(r"\briskserve:[a-z0-9_]+:[a-z0-9]+\b")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)\s*$")


def substitute(text: str, overrides: Mapping[str, str] | None = None) -> str:
    """Replace every Grafana variable and macro in `text` (a PromQL expression) by a value.

    `overrides` replaces or adds values (e.g. {"model": "fraud"}). An unknown variable raises
    KeyError, so a new dashboard variable cannot silently reach Prometheus as literal "$x".
    """
    values = {**DEFAULT_SUBSTITUTIONS, **(overrides or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        if name not in values:
            raise KeyError(f"no substitution for Grafana variable ${name} in: {text}")
        return values[name]

    return _VARIABLE.sub(replace, text)


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, as committed, with what it needs to return data."""

    dashboard_uid: str
    panel_title: str
    ref_id: str
    expr: str

    def promql(self, overrides: Mapping[str, str] | None = None) -> str:
        """The expression with Grafana macros substituted, ready for /api/v1/query."""
        return substitute(self.expr, overrides)

    @property
    def needs_kubernetes(self) -> bool:
        """True if the query reads cAdvisor metrics, which only a Kubernetes cluster has."""
        return any(metric in self.expr for metric in KUBERNETES_METRICS)

    @property
    def needs_traffic(self) -> frozenset[str]:
        """The TRAFFIC_KINDS (feedback, shadow, ...) whose series the query reads; empty if
        model load and ordinary predictions are enough for it to return data."""
        return frozenset(kind for kind, pattern in TRAFFIC_KINDS.items()
                         if pattern.search(self.expr))

    @property
    def needs_recording_rules(self) -> bool:
        """True if the query reads series recorded by riskserve.rules.yaml."""
        return _RECORDED.search(self.expr) is not None


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel of a dashboard, including those nested in collapsed rows; rows excluded."""
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every PromQL target of every panel, in dashboard order."""
    return [
        PanelQuery(dashboard["uid"], panel["title"], target.get("refId", ""), target["expr"])
        for panel in iter_panels(dashboard)
        for target in panel.get("targets") or []
        if target.get("expr")
    ]


def variable_selectors(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """The series selector of each `label_values(selector, label)` variable, by variable name.

    Grafana runs these through the series API, not as PromQL, but the selector is valid PromQL
    on its own, so it can be checked (and, with traffic, expected to return series) the same way.
    """
    selectors: dict[str, str] = {}
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        match = _LABEL_VALUES.match(query or "") if variable.get("type") == "query" else None
        if match:
            selectors[variable["name"]] = match.group("selector")
    return selectors


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """The committed dashboards of `directory`, by uid."""
    dashboards = (json.loads(path.read_text()) for path in sorted(directory.glob("*.json")))
    return {dashboard["uid"]: dashboard for dashboard in dashboards}
