"""The "riskserve / Service overview" dashboard: traffic, latency, errors, batching, saturation."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard, timeseries

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
    quantile_queries,
    query,
    timeseries_panel,
    to_json,
    with_threshold_lines,
)

UID = "riskserve-overview"
TITLE = "riskserve / Service overview"


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


def requests_key_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Requests per second by API key",
        "Prediction requests per second (any outcome) by the calling key's name, as the keys "
        "file names it (name=..., else key-<first 8 hex of its sha256>; never the key "
        "itself). \"unknown\" is a request without a valid key. Who is using the models.",
        "reqps",
        query(
            f"sum by (key) (rate(riskserve_requests_total{{{MODELS}}}[$__rate_interval]))",
            "{{key}}",
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
        *quantile_queries(
            ("model",), f"rate(riskserve_inference_seconds_bucket{{{MODELS}}}[$__rate_interval])"
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
        *quantile_queries(
            ("endpoint",),
            by_endpoint(
                f"rate(bentoml_service_request_duration_seconds_bucket{{{API}}}[$__rate_interval])"
            ),
        ),
        height=10,
    )


def explain_latency_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Explanation latency p50 / p95 / p99 by model",
        "Compute time per explanation call (/v1/explain, OIP explain=true, CSV explain=true) "
        "from the riskserve_explain_seconds histogram. Exact tree SHAP and linear "
        "contributions cost more than a prediction and run on their own batcher path, so "
        "this latency does not add to the prediction latency beside it.",
        "s",
        *quantile_queries(
            ("model",), f"rate(riskserve_explain_seconds_bucket{{{MODELS}}}[$__rate_interval])"
        ),
        height=10,
    )


# Errors ----------------------------------------------------------------------------------------


def request_errors_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Failed requests per second by model and reason",
        "Rejected or failed requests per second. Client errors: invalid_input (400/422), "
        "not_found (404), payload_too_large (413), forbidden (403, a key outside its scope) "
        "and rate_limited (429, a key over its rate). Server errors: overloaded (429, the "
        "model's in-flight limit shed it) and internal (500).",
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
        "Failed requests / requests over 5m (summed over keys and protocols), the recorded "
        "series the alerts read: all reasons (RiskserveErrorRatioHigh above 5%) and "
        "server-side only, internal or overloaded (RiskserveServerErrorRatioHigh above 1%). "
        "Idle models show no line.",
        "percentunit",
        query(f"riskserve:error_ratio:5m{{{MODELS}}}", "{{model}} all"),
        query(f"riskserve:server_error_ratio:5m{{{MODELS}}}", "{{model}} server"),
    )
    return with_threshold_lines(panel, (0.01, YELLOW), (0.05, RED))


def http_responses_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "HTTP responses per second by status code",
        "HTTP responses per second by status code as counted by BentoML (probes excluded). "
        "401 is a missing or invalid key, 403 a key outside its scope, 429 a key over its "
        "rate or a model at its in-flight limit, other 4xx a client error, 5xx ours.",
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
        "Requests rejected before any model work, over HTTP and gRPC: missing or invalid API "
        "key (401 / UNAUTHENTICATED) and forbidden, a valid key calling a model outside its "
        "models= scope (403 / PERMISSION_DENIED). The dashed line is the "
        "RiskserveAuthFailureSpike threshold on their sum per protocol (1/s for 5m).",
        "reqps",
        query(
            "sum by (protocol, reason) "
            f"(rate(riskserve_auth_failures_total{{{SERVICE}}}[$__rate_interval]))",
            "{{protocol}} {{reason}}",
        ),
    )
    return with_threshold_lines(panel, (1.0, RED))


def refused_key_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Calls refused per second by API key (rate limit, scope)",
        "Calls refused by a key's own limits, by key name: over its rate= token bucket (429 "
        "with Retry-After / RESOURCE_EXHAUSTED, riskserve_rate_limited_total) and outside its "
        "models= scope (403 / PERMISSION_DENIED). Other keys are unaffected; a steady line is "
        "a client that needs a higher rate or a wider scope.",
        "reqps",
        query(
            f"sum by (key) (rate(riskserve_rate_limited_total{{{SERVICE}}}[$__rate_interval]))",
            "{{key}} rate-limited",
        ),
        query(
            "sum by (key) (rate(riskserve_auth_failures_total"
            f'{{{SERVICE}, reason="forbidden"}}[$__rate_interval]))',
            "{{key}} forbidden",
        ),
    )


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


def overload_sheds_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Requests shed per second by model (in-flight limit)",
        "Requests refused with 429 / RESOURCE_EXHAUSTED because that model already had its "
        "limit of requests in flight in the worker (reason overloaded). Only the busy model "
        "sheds; the others keep answering. Counted as server-side failures by "
        "RiskserveServerErrorRatioHigh.",
        "reqps",
        query(
            "sum by (model) (rate(riskserve_request_errors_total"
            f'{{{MODELS}, reason="overloaded"}}[$__rate_interval]))',
            "{{model}}",
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
            "Traffic (by model, protocol and API key), latency, errors and refusals, batching "
            "and saturation of the riskserve model service.",
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
        .with_panel(requests_key_timeseries().span(24))
        .with_row(dashboard.Row("Latency"))
        .with_panel(inference_latency_timeseries())
        .with_panel(http_latency_timeseries())
        .with_panel(explain_latency_timeseries().span(24))
        .with_row(dashboard.Row("Errors"))
        .with_panel(request_errors_timeseries())
        .with_panel(error_ratio_timeseries())
        .with_panel(http_responses_timeseries())
        .with_panel(auth_failures_timeseries())
        .with_panel(refused_key_timeseries().span(24))
        .with_row(dashboard.Row("Batching and saturation"))
        .with_panel(batch_rows_timeseries())
        .with_panel(requests_in_flight_timeseries())
        .with_panel(overload_sheds_timeseries().span(24))
        .with_panel(cpu_usage_timeseries())
        .with_panel(memory_usage_timeseries())
    )
