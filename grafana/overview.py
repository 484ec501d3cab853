"""The "riskserve / Service overview" dashboard: traffic, latency, errors, batching, saturation."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries

from grafana.panels import (
    API,
    MODELS,
    PODS,
    RED,
    SERVICE,
    YELLOW,
    by_endpoint,
    datasource_variable,
    job_variable,
    model_variable,
    namespace_variable,
    new_dashboard,
    pod_variable,
    query,
    timeseries_panel,
    to_json,
    with_threshold_lines,
)

UID = "riskserve-overview"
TITLE = "riskserve / Service overview"
QUANTILES = (0.5, 0.95, 0.99)


def _quantiles(by: str, buckets: str) -> list[prometheus.Dataquery]:
    # One target per quantile; `buckets` is the per-second bucket rate, `by` the split label.
    return [
        query(
            f"histogram_quantile({q}, sum by ({by}, le) ({buckets}))",
            f"{{{{{by}}}}} p{round(q * 100)}",
        )
        for q in QUANTILES
    ]


# Traffic ---------------------------------------------------------------------------------------


def predictions_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Rows scored per second by model",
        "Rows (not requests) scored per second: a request of 500 rows counts 500. Summed over "
        "pods, workers, versions and protocols. From riskserve_predictions_total.",
        "suffix: rows/s",
        query(
            f"sum by (model) (rate(riskserve_predictions_total{{{MODELS}}}[$__rate_interval]))",
            "{{model}}",
        ),
    )


def http_requests_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "HTTP requests per second by endpoint",
        "HTTP requests per second per route as counted by BentoML (probes excluded). "
        "/v2/models/<name>/infer routes carry the model in the path. gRPC calls are not "
        "counted here; see rows by protocol.",
        "reqps",
        query(
            "sum by (endpoint) "
            f"({by_endpoint(f'rate(bentoml_service_request_total{{{API}}}[$__rate_interval])')})",
            "{{endpoint}}",
        ),
    )


def predictions_protocol_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Rows scored per second by protocol",
        "Rows scored per second over HTTP (/v1 and /v2 REST) and gRPC (Open Inference "
        "Protocol), for the selected models.",
        "suffix: rows/s",
        query(
            f"sum by (protocol) (rate(riskserve_predictions_total{{{MODELS}}}[$__rate_interval]))",
            "{{protocol}}",
        ),
    )


def model_calls_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Model calls per second by model",
        "Calls into the model per second. Adaptive batching merges concurrent requests into "
        "one call and CSV uploads make one call per chunk, so calls can be fewer than requests.",
        "ops",
        query(
            "sum by (model) "
            f"(rate(riskserve_inference_seconds_count{{{MODELS}}}[$__rate_interval]))",
            "{{model}}",
        ),
    )


# Latency ---------------------------------------------------------------------------------------


def inference_latency_timeseries() -> timeseries.Panel:
    panel = timeseries_panel(
        "Model compute latency p50 / p95 / p99 by model",
        "Time spent in the model per call (one batch), quantiles estimated from the "
        "riskserve_inference_seconds histogram. The dashed line is the "
        "RiskserveInferenceLatencyHigh threshold on p99 (1s for 10m).",
        "s",
        *_quantiles(
            "model", f"rate(riskserve_inference_seconds_bucket{{{MODELS}}}[$__rate_interval])"
        ),
        height=10,
    )
    return with_threshold_lines(panel, (1.0, RED))


def http_latency_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "HTTP latency p50 / p95 / p99 by endpoint",
        "End-to-end HTTP request duration per route (parsing, auth, batching wait, model, "
        "response) from BentoML's bentoml_service_request_duration_seconds histogram.",
        "s",
        *_quantiles(
            "endpoint",
            by_endpoint(
                f"rate(bentoml_service_request_duration_seconds_bucket{{{API}}}[$__rate_interval])"
            ),
        ),
        height=10,
    )


# Errors ----------------------------------------------------------------------------------------


def request_errors_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Failed requests per second by model and reason",
        "Rejected or failed requests per second. Client errors: invalid_input (400/422), "
        "not_found (404), payload_too_large (413). Server errors: overloaded (503, shed under "
        "load) and internal (500).",
        "reqps",
        query(
            "sum by (model, reason) "
            f"(rate(riskserve_request_errors_total{{{MODELS}}}[$__rate_interval]))",
            "{{model}} {{reason}}",
        ),
    )


def error_ratio_timeseries() -> timeseries.Panel:
    panel = timeseries_panel(
        "Error ratio by model (5m, as alerted)",
        "Failed requests / (failed requests + successful model calls) over 5m, the recorded "
        "series the alerts read: all reasons (RiskserveErrorRatioHigh above 5%) and "
        "server-side only (RiskserveServerErrorRatioHigh above 1%). Idle models show no line.",
        "percentunit",
        query(f"riskserve:error_ratio:5m{{{MODELS}}}", "{{model}} all"),
        query(f"riskserve:server_error_ratio:5m{{{MODELS}}}", "{{model}} server"),
    )
    return with_threshold_lines(panel, (0.01, YELLOW), (0.05, RED))


def http_responses_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "HTTP responses per second by status code",
        "HTTP responses per second by status code as counted by BentoML (probes excluded). "
        "401 is an auth failure, 4xx a client error, 5xx ours.",
        "reqps",
        query(
            "sum by (http_response_code) "
            f"(rate(bentoml_service_request_total{{{API}}}[$__rate_interval]))",
            "{{http_response_code}}",
        ),
    )


def auth_failures_timeseries() -> timeseries.Panel:
    panel = timeseries_panel(
        "Auth failures per second by protocol and reason",
        "Requests rejected before any model work for a missing or invalid API key, over HTTP "
        "and gRPC. The dashed line is the RiskserveAuthFailureSpike threshold (1/s for 5m).",
        "reqps",
        query(
            "sum by (protocol, reason) "
            f"(rate(riskserve_auth_failures_total{{{SERVICE}}}[$__rate_interval]))",
            "{{protocol}} {{reason}}",
        ),
    )
    return with_threshold_lines(panel, (1.0, RED))


# Batching and saturation -----------------------------------------------------------------------


def batch_rows_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Rows per model call by model (mean and p95)",
        "How many rows each model call scores (riskserve_batch_rows): requests merged by "
        "adaptive batching and CSV chunks. Larger batches use the CPU better; a p95 at the "
        "batch limit means calls are queueing for a full batch.",
        "short",
        query(
            f"sum by (model) (rate(riskserve_batch_rows_sum{{{MODELS}}}[$__rate_interval]))"
            " / "
            f"sum by (model) (rate(riskserve_batch_rows_count{{{MODELS}}}[$__rate_interval]))",
            "{{model}} mean",
        ),
        query(
            "histogram_quantile(0.95, sum by (model, le) "
            f"(rate(riskserve_batch_rows_bucket{{{MODELS}}}[$__rate_interval])))",
            "{{model}} p95",
        ),
    )


def requests_in_flight_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Requests in flight by pod",
        "Requests being served right now per pod: riskserve's own gauge (HTTP and gRPC) and "
        "BentoML's HTTP count. Near the max_concurrency setting per worker, new requests are "
        "shed with 503.",
        "short",
        query(
            f'sum by (pod) (riskserve_requests_in_flight{{{SERVICE}, pod=~"$pod"}})',
            "{{pod}} riskserve",
        ),
        query(
            f'sum by (pod) (bentoml_service_request_in_progress{{{API}, pod=~"$pod"}})',
            "{{pod}} BentoML HTTP",
        ),
    )


def cpu_usage_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "CPU usage by pod (cores)",
        "CPU cores used per riskserve pod (all containers), from cAdvisor's "
        "container_cpu_usage_seconds_total. Compare with the pod's CPU limit: flat at the "
        "limit means throttling, which shows up as latency.",
        "short",
        query(
            f"sum by (pod) (rate(container_cpu_usage_seconds_total{{{PODS}}}[$__rate_interval]))",
            "{{pod}}",
        ),
    )


def memory_usage_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Memory working set by pod",
        "Working-set memory per riskserve pod (what the OOM killer looks at), from cAdvisor's "
        "container_memory_working_set_bytes. Every worker holds every model in memory.",
        "bytes",
        query(f"sum by (pod) (container_memory_working_set_bytes{{{PODS}}})", "{{pod}}"),
    )


def build() -> dict[str, Any]:
    """The overview dashboard as Grafana JSON."""
    return to_json(
        new_dashboard(
            TITLE,
            UID,
            "Traffic, latency, errors, batching and saturation of the riskserve model service.",
            "now-3h",
        )
        .with_variable(datasource_variable())
        .with_variable(job_variable())
        .with_variable(namespace_variable())
        .with_variable(pod_variable())
        .with_variable(model_variable())
        .with_row(dashboard.Row("Traffic"))
        .with_panel(predictions_timeseries())
        .with_panel(http_requests_timeseries())
        .with_panel(predictions_protocol_timeseries())
        .with_panel(model_calls_timeseries())
        .with_row(dashboard.Row("Latency"))
        .with_panel(inference_latency_timeseries())
        .with_panel(http_latency_timeseries())
        .with_row(dashboard.Row("Errors"))
        .with_panel(request_errors_timeseries())
        .with_panel(error_ratio_timeseries())
        .with_panel(http_responses_timeseries())
        .with_panel(auth_failures_timeseries())
        .with_row(dashboard.Row("Batching and saturation"))
        .with_panel(batch_rows_timeseries())
        .with_panel(requests_in_flight_timeseries())
        .with_panel(cpu_usage_timeseries())
        .with_panel(memory_usage_timeseries())
    )
