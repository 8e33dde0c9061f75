"""The price history's `planInForce`: what the current plan period is charged at."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aiconn.api.routes import prices
from aiconn.resources.v1alpha1.offer import AIInferenceOfferSpec

NOW = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)


class _Fixed(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return NOW


def offer_changing(effective_from: str) -> dict[str, Any]:
    return {
        "modelClasses": [
            {"name": "small", "models": [{"name": "tiny-chat"}], "pricePerMillionTokens": 1.0}
        ],
        "plan": {"includedTokensPerPeriod": 1000, "period": "1M", "feePerPeriod": 10},
        "priceChanges": [
            {"version": 2, "effectiveFrom": effective_from, "plan": {"feePerPeriod": 12.5}}
        ],
        "sliceProfiles": [{"name": "embb", "sst": 1, "fiveQI": 9}],
        "allowedTiers": ["edge"],
    }


@pytest.mark.parametrize(
    ("effective_from", "charged"),
    [
        # Dated inside March: March is still charged at version 1, April at version 2.
        ("2027-03-15T00:00:00Z", 1),
        # Dated at March's start: March is charged at version 2.
        ("2027-03-01T00:00:00Z", 2),
    ],
)
def test_plan_in_force_is_what_the_current_period_is_charged_at(
    monkeypatch: pytest.MonkeyPatch, effective_from: str, charged: int
) -> None:
    monkeypatch.setattr(prices, "datetime", _Fixed)
    spec = offer_changing(effective_from)
    body = {"metadata": {"name": "bundle"}, "spec": spec}
    out = prices._history("bundle", body, AIInferenceOfferSpec.model_validate(spec))
    assert out.plan_in_force == {"fee": charged, "overage": 1}
    assert [v.version for v in out.plan_versions] == [1, 2]
