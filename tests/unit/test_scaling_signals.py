"""The fleet's scaling signals from Prometheus answers: in flight by Little's law, TTFT
attainment at each SLA's own threshold bucket (le="1" and le="1.0" alike)."""

from __future__ import annotations

from typing import Any

from aiconn.operator.signals import IN_FLIGHT, TTFT_BUCKETS, TTFT_COUNT, read_signals


class Answers:
    """Prometheus instant-query answers, by query (a pure stand-in for the HTTP client)."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def custom_query(
        self, query: str, params: dict[str, Any] | None = None, timeout: int | None = None
    ) -> Any:
        self.asked.append(query)
        return self.answers[query]

    def custom_query_range(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("the signals are instant queries")


def series(ns: str, sla: str, value: float, **labels: str) -> dict[str, Any]:
    return {"metric": {"namespace": ns, "sla": sla, **labels}, "value": [0, str(value)]}


def test_in_flight_and_ttft_attainment_per_sla_in_three_queries() -> None:
    client = Answers(
        {
            IN_FLIGHT: [series("a", "chat", 12.5), series("b", "idle", 0.0)],
            TTFT_COUNT: [series("a", "chat", 10.0), series("b", "idle", 0.0)],
            TTFT_BUCKETS: [
                series("a", "chat", 9.0, le="1.0"),  # Prometheus 3 spells le="1" so
                series("a", "chat", 7.0, le="0.5"),
                series("a", "chat", 10.0, le="+Inf"),
                series("b", "idle", 0.0, le="0.3"),
            ],
        }
    )
    got = read_signals(client, {("a", "chat"): 1.0, ("b", "idle"): 0.3, ("c", "unscraped"): 0.5})
    assert got[("a", "chat")] == (12.5, 90.0)
    # No requests in the window is no TTFT signal, not 100 %; nothing scraped is no signal at all.
    assert got[("b", "idle")] == (0.0, None)
    assert got[("c", "unscraped")] == (None, None)
    assert sorted(client.asked) == sorted([IN_FLIGHT, TTFT_COUNT, TTFT_BUCKETS])
