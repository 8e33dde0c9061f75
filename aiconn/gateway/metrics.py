"""The gateway's Prometheus families: the SLA's measurements at the service boundary.

Names and label names come from `aiconn.sla.metricnames`, which the SLA engine queries. Latency
buckets are the shared defaults plus this SLA's threshold, so the engine's good/total ratio at the
threshold is exact. One gateway serves one SLA and one model, so the label values are fixed at
start and bound once; every outcome is created at zero, so rates exist before the first failure.
The registry is the gateway's own: nothing else in the process leaks into its `/metrics`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aiconn.sla import metricnames as mn

OUTCOMES = (
    mn.OUTCOME_SUCCESS,
    mn.OUTCOME_CLIENT_ERROR,
    mn.OUTCOME_UPSTREAM_ERROR,
    mn.OUTCOME_TIMEOUT,
    mn.OUTCOME_OVER_CONTRACT,
    mn.OUTCOME_UNAUTHORIZED,
    mn.OUTCOME_PAYMENT_REQUIRED,
)


def ttft_buckets(threshold_ms: int) -> tuple[float, ...]:
    return mn.with_threshold(mn.DEFAULT_TTFT_BUCKETS, threshold_ms / 1000)


def tpot_buckets(threshold_ms: int) -> tuple[float, ...]:
    return mn.with_threshold(mn.DEFAULT_TPOT_BUCKETS, threshold_ms / 1000)


class GatewayMetrics:
    """The families, bound to this gateway's SLA, namespace and model."""

    def __init__(
        self,
        *,
        sla: str,
        namespace: str,
        model: str,
        ttft_threshold_ms: int,
        tpot_threshold_ms: int,
    ) -> None:
        self.registry = CollectorRegistry()
        labels = (mn.SLA_LABEL, mn.NAMESPACE_LABEL, mn.MODEL_LABEL)
        values = (sla, namespace, model)

        requests = Counter(
            mn.GATEWAY_REQUESTS,
            "Requests by outcome, at the gateway.",
            (*labels, mn.OUTCOME_LABEL),
            registry=self.registry,
        )
        self._outcomes = {outcome: requests.labels(*values, outcome) for outcome in OUTCOMES}

        tokens = Counter(
            mn.GATEWAY_TOKENS,
            "Tokens metered from usage, by type.",
            (*labels, mn.TOKEN_TYPE_LABEL),
            registry=self.registry,
        )
        self._prompt_tokens = tokens.labels(*values, "prompt")
        self._completion_tokens = tokens.labels(*values, "completion")

        def histogram(name: str, documentation: str, buckets: tuple[float, ...]) -> Histogram:
            """A histogram of this SLA's requests, with its labels set."""
            return Histogram(
                name, documentation, labels, registry=self.registry, buckets=buckets
            ).labels(*values)

        self.ttft = histogram(
            mn.GATEWAY_TTFT,
            "Seconds from receiving a request to sending its first content-bearing chunk "
            "(the whole answer when not streamed).",
            ttft_buckets(ttft_threshold_ms),
        )
        self.tpot = histogram(
            mn.GATEWAY_TPOT,
            "Seconds per output token after the first, per streamed request of 2 or more tokens.",
            tpot_buckets(tpot_threshold_ms),
        )
        self.duration = histogram(
            mn.GATEWAY_DURATION,
            "Seconds from receiving a request to its last byte sent.",
            mn.DEFAULT_DURATION_BUCKETS,
        )
        self.upstream_up = Gauge(
            mn.GATEWAY_UPSTREAM_UP,
            "1 when vLLM behind this gateway answers its health check.",
            (mn.SLA_LABEL, mn.NAMESPACE_LABEL),
            registry=self.registry,
        ).labels(sla, namespace)

    def count(self, outcome: str) -> None:
        self._outcomes[outcome].inc()

    def tokens(self, *, prompt: int, completion: int) -> None:
        self._prompt_tokens.inc(prompt)
        self._completion_tokens.inc(completion)
