"""A seeded fleet for the reporting API's tests and its benchmark (`bench/bench_api.py`).

It writes what the operator and the SLA engine would have written: AIInferenceSLAs with a status
(placement, conditions, the current period) and, in the ledger, a settled history of closed
monthly periods whose credits follow the SLA's own schedule. Values vary with the SLA's index, so
a fleet has compliant and non-compliant SLAs on every tier, and every run seeds the same fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.meta import API_VERSION, GROUP, VERSION
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, CreditsSpec, Window
from aiconn.sla.accounting import Settlement
from aiconn.sla.credits import CreditBreakdown, money, period_credit, usage_charge
from aiconn.sla.evaluate import SLAEvaluation
from aiconn.sla.periods import Period, period_containing
from aiconn.sla.settlement import settle_period
from aiconn.sla.timestamps import iso_z
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger

TIERS = (("edge", "edge-muc-1"), ("regional", "fra-dc-2"), ("cloud", "eu-west-1"))
MONTH = Window()


@dataclass(frozen=True)
class Measured:
    """A period's numbers for SLA number `index`: mostly good, every fourth one missing."""

    availability: float
    ttft: float
    tpot: float
    coverage: float
    tokens: int

    @classmethod
    def for_index(cls, index: int, month: int = 0) -> Measured:
        wobble = ((index * 7 + month * 3) % 10) / 100
        missing = index % 4 == 3
        return cls(
            availability=round((98.7 if missing else 99.95) - wobble, 4),
            ttft=round((96.5 if missing else 99.6) - wobble, 4),
            tpot=round(99.4 - wobble, 4),
            coverage=97.5 if index % 9 == 8 else 100.0,
            tokens=5_000_000 + 250_000 * ((index + month) % 17),
        )

    def credit(self, charges: Decimal, schedule: CreditsSpec) -> CreditBreakdown:
        """The credit these attainments earn on `charges` under `schedule`."""
        return period_credit(
            charges=charges,
            availability=Decimal(repr(self.availability)),
            ttft=Decimal(repr(self.ttft)),
            tpot=Decimal(repr(self.tpot)),
            schedule=schedule,
        )


DEMO_MODELS = (
    "llama-3-8b-instruct",
    "mistral-7b-instruct",
    "qwen2.5-7b-instruct",
    "gemma-2-9b-it",
    "phi-3-medium-instruct",
)
"""Models of the sample bundle offer's catalogue (manifests/samples/offers.yaml), so the demo's
SLAs are admitted under it."""


def manifest(name: str, *, tenant: str, index: int, offer: str | None = None) -> dict[str, Any]:
    """An AIInferenceSLA object; the tier follows the index; `offer` names an AIInferenceOffer."""
    tier, _ = TIERS[index % len(TIERS)]
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": SLA.kind,
        "metadata": {"name": name},
        "spec": {
            "tenant": tenant,
            "model": {
                "name": DEMO_MODELS[index % len(DEMO_MODELS)],
                "source": "hf://demo/model",
                "parametersBillions": 8,
            },
            "network": {"rttBudgetMs": 20 if tier == "edge" else 80},
            "placement": {"tier": tier},
            "tokens": {"pricePerMillionTokens": 0.9, "currency": "EUR"},
        },
    }
    if offer is not None:
        body["spec"]["offer"] = offer
    return body


def status(spec: AIInferenceSLASpec, *, index: int, now: datetime) -> dict[str, Any]:
    """The status the operator would write for SLA `index` at `now`."""
    tier, site = TIERS[index % len(TIERS)]
    period = period_containing(spec.objectives.window, now)
    m = Measured.for_index(index)
    charges = usage_charge(m.tokens, spec.tokens.price_per_million_tokens)
    credit = m.credit(charges, spec.credits)
    budget_fraction = 1 - spec.objectives.availability.target_percent / 100
    budget = round(100 * (1 - (1 - m.availability / 100) / budget_fraction), 3)
    compliant = (
        m.availability >= spec.objectives.availability.target_percent
        and m.ttft >= spec.objectives.ttft.target_percent
        and m.tpot >= spec.objectives.tpot.target_percent
    )
    burn = 1 - budget / 100
    stamp = iso_z(now)
    return {
        "phase": "Ready" if compliant else "Degraded",
        "conditions": [
            {
                "type": "Compliant",
                "status": "True" if compliant else "False",
                "reason": "ObjectivesMet" if compliant else "ObjectiveMissed",
                "message": "",
                "lastTransitionTime": stamp,
            }
        ],
        "placement": {"tier": tier, "site": site},
        "period": {
            "start": period.start_iso,
            "end": period.end_iso,
            "availabilityPercent": m.availability,
            "ttftAttainmentPercent": m.ttft,
            "tpotAttainmentPercent": m.tpot,
            "budgetRemainingPercent": budget,
            "burnRates": {"w5m": round(burn * 20, 3), "w1h": round(burn * 16, 3)},
            "alerts": ["page-1h"] if burn * 16 > 14.4 else [],
            "coveragePercent": m.coverage,
            "tokensUsed": m.tokens,
            "charges": float(charges),
            "creditsAccrued": float(credit.amount),
            "evaluatedAt": stamp,
        },
    }


def create_sla(
    api: Any, namespace: str, name: str, *, tenant: str, index: int, offer: str | None = None
) -> str:
    """Create the SLA and write its status; returns its uid."""
    from kubernetes import client

    objects = client.CustomObjectsApi(api)
    created = objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        SLA.plural,
        manifest(name, tenant=tenant, index=index, offer=offer),
    )
    write_status(api, namespace, name, created, index=index, now=datetime.now(UTC))
    return str(created["metadata"]["uid"])


def write_status(
    api: Any, namespace: str, name: str, obj: dict[str, Any], *, index: int, now: datetime
) -> None:
    """Replace the SLA's status through the status subresource, as the operator does."""
    from kubernetes import client

    spec = AIInferenceSLASpec.model_validate(obj["spec"])
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, SLA.plural, name, {"status": status(spec, index=index, now=now)}
    )


def settle_history(
    ledger: Ledger,
    *,
    sla_uid: str,
    namespace: str,
    name: str,
    tenant: str,
    index: int,
    months: int,
    now: datetime,
    spec: AIInferenceSLASpec | None = None,
) -> list[Settlement]:
    """Settle the `months` calendar months before `now`'s, oldest first."""
    terms = spec or AIInferenceSLASpec.model_validate(
        manifest(name, tenant=tenant, index=index)["spec"]
    )
    periods: list[Period] = []
    cursor = period_containing(MONTH, now)
    for _ in range(months):
        cursor = period_containing(MONTH, cursor.start - timedelta(microseconds=1))
        periods.append(cursor)
    settled = []
    for month, period in enumerate(reversed(periods)):
        m = Measured.for_index(index, month)
        price = money(terms.tokens.price_per_million_tokens)
        charges = usage_charge(m.tokens, price)
        credit = m.credit(charges, terms.credits)
        minutes = period.minutes
        bad = round(minutes * (100 - m.availability) / 100)
        result = SLAEvaluation(
            minutes=minutes,
            good_minutes=minutes - bad,
            bad_minutes=bad,
            availability_percent=m.availability,
            coverage_percent=m.coverage,
            ttft_attainment_percent=m.ttft,
            ttft_exact=True,
            tpot_attainment_percent=m.tpot,
            tpot_exact=True,
            inference_ttft_attainment_percent=None,
            budget_remaining_percent=None,
            burn_rates={},
            alerts=(),
            tokens_used=m.tokens,
            price_per_million_tokens=price,
            charges=charges,
            credit=credit,
        )
        settled.append(
            settle_period(
                ledger,
                sla_uid=sla_uid,
                namespace=namespace,
                name=name,
                tenant=wallet_owner(namespace, tenant),
                period=period,
                outcome=result.outcome(),
                coverage_floor_percent=98.0,
                currency=terms.tokens.currency,
            )
        )
    return settled
