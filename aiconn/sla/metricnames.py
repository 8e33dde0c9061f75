"""Metric names and labels shared by the gateway (which exports them), the SLA engine (which
queries them), the API and the dashboards. One place, so a rename cannot split them."""

from __future__ import annotations

SLA_LABEL = "sla"
NAMESPACE_LABEL = "namespace"
MODEL_LABEL = "model"
OUTCOME_LABEL = "outcome"
TOKEN_TYPE_LABEL = "type"
WINDOW_LABEL = "window"

GATEWAY_REQUESTS = "aiconn_gateway_requests_total"
GATEWAY_TTFT = "aiconn_gateway_ttft_seconds"
GATEWAY_TPOT = "aiconn_gateway_tpot_seconds"
GATEWAY_DURATION = "aiconn_gateway_request_duration_seconds"
GATEWAY_TOKENS = "aiconn_gateway_tokens_total"
GATEWAY_UPSTREAM_UP = "aiconn_gateway_upstream_up"

# Exported by the reporting API per SLA, labelled with its window (`window="1M"`): the budget the
# PrometheusRule's burn-rate alerts compare with, exact (an integer, as the operator's).
SLA_AVAILABILITY_BUDGET = "aiconn_sla_availability_budget_millionths"

OUTCOME_SUCCESS = "success"
OUTCOME_CLIENT_ERROR = "client_error"
OUTCOME_UPSTREAM_ERROR = "upstream_error"
OUTCOME_TIMEOUT = "timeout"
OUTCOME_OVER_CONTRACT = "over_contract"
OUTCOME_UNAUTHORIZED = "unauthorized"
OUTCOME_PAYMENT_REQUIRED = "payment_required"

# In-contract requests are the denominator of availability; failures are its numerator.
IN_CONTRACT_OUTCOMES = (OUTCOME_SUCCESS, OUTCOME_UPSTREAM_ERROR, OUTCOME_TIMEOUT)
FAILED_OUTCOMES = (OUTCOME_UPSTREAM_ERROR, OUTCOME_TIMEOUT)

# vLLM 0.33 families kept for the inference-vs-overhead split.
VLLM_TTFT = "vllm:time_to_first_token_seconds"
VLLM_ITL = "vllm:inter_token_latency_seconds"
VLLM_E2E = "vllm:e2e_request_latency_seconds"
VLLM_PROMPT_TOKENS = "vllm:prompt_tokens_total"
VLLM_GENERATION_TOKENS = "vllm:generation_tokens_total"

# Default latency buckets of the gateway's histograms (seconds); each SLA's thresholds are added.
DEFAULT_TTFT_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
)
DEFAULT_TPOT_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
)
DEFAULT_DURATION_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


def with_threshold(buckets: tuple[float, ...], threshold_seconds: float) -> tuple[float, ...]:
    """Buckets with the SLA threshold added, so good/total at the threshold is exact."""
    return tuple(sorted({*buckets, round(threshold_seconds, 6)}))
