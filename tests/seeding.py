"""A seeded fleet for the reporting API's tests and its benchmark (`bench/bench_api.py`).

It writes what the operator and the SLA engine would have written: AIInferenceSLAs with a status
(placement, conditions, the current period) and, in the ledger, a settled history of closed
monthly periods whose credits follow the SLA's own schedule. Values vary with the SLA's index, so
a fleet has compliant and non-compliant SLAs on every tier, and every run seeds the same fleet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiconn.operator.conditions import condition
from aiconn.operator.evaluation import COMPLIANT, compliance
from aiconn.resources.v1alpha1.kinds import SLA
from aiconn.resources.v1alpha1.meta import GROUP, VERSION
from aiconn.resources.v1alpha1.sla import (
    AIInferenceSLASpec,
    PeriodStatus,
    Window,
    decimal_amount,
)
from aiconn.sla.accounting import Settlement
from aiconn.sla.burnwindows import alert_rules
from aiconn.sla.credits import money, period_credit, usage_charge
from aiconn.sla.evaluate import SLAEvaluation
from aiconn.sla.periods import Period, period_containing
from aiconn.sla.timestamps import iso_z
from aiconn.sla.wallets import wallet_owner
from aiconn.store.ledger import Ledger
from tests.factories import settle, sla_evaluation, sla_manifest

TIERS = (("edge", "edge-muc-1"), ("regional", "fra-dc-2"), ("cloud", "eu-west-1"))
MONTH = Window()


@dataclass(frozen=True)
class Measured:
    """A period's numbers for SLA number `index`: mostly good, every fourth one missing. Named as
    the evaluation and `status.period` name them."""

    availability_percent: float
    ttft_attainment_percent: float
    tpot_attainment_percent: float
    coverage_percent: float
    tokens_used: int

    @classmethod
    def for_index(cls, index: int, month: int = 0) -> Measured:
        wobble = ((index * 7 + month * 3) % 10) / 100
        missing = index % 4 == 3
        return cls(
            availability_percent=round((98.7 if missing else 99.95) - wobble, 4),
            ttft_attainment_percent=round((96.5 if missing else 99.6) - wobble, 4),
            tpot_attainment_percent=round(99.4 - wobble, 4),
            coverage_percent=97.5 if index % 9 == 8 else 100.0,
            tokens_used=5_000_000 + 250_000 * ((index + month) % 17),
        )

    def evaluation(self, period: Period, terms: AIInferenceSLASpec) -> SLAEvaluation:
        """These numbers as the evaluation of `period` under `terms`: the bad minutes the
        availability implies, the charges at the SLA's price, the credit its schedule earns."""
        price = money(terms.tokens.price_per_million_tokens)
        charges = usage_charge(self.tokens_used, price)
        credit = period_credit(
            charges=charges,
            availability=Decimal(repr(self.availability_percent)),
            ttft=Decimal(repr(self.ttft_attainment_percent)),
            tpot=Decimal(repr(self.tpot_attainment_percent)),
            schedule=terms.credits,
        )
        minutes = period.minutes
        bad = round(minutes * (100 - self.availability_percent) / 100)
        return sla_evaluation(
            **asdict(self),
            minutes=minutes,
            good_minutes=minutes - bad,
            bad_minutes=bad,
            price_per_million_tokens=price,
            charges=charges,
            credit=credit,
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
    spec: dict[str, Any] = {
        "tenant": tenant,
        "model": {
            "name": DEMO_MODELS[index % len(DEMO_MODELS)],
            "source": "hf://demo/model",
            "parametersBillions": 8,
        },
        "network": {"rttBudgetMs": 20 if tier == "edge" else 80},
        "placement": {"tier": tier},
        "tokens": {"pricePerMillionTokens": 0.9, "currency": "EUR"},
    }
    if offer is not None:
        spec["offer"] = offer
    return sla_manifest(name, spec)


def status(spec: AIInferenceSLASpec, *, index: int, now: datetime) -> dict[str, Any]:
    """The status the operator would write for SLA `index` at `now`."""
    tier, site = TIERS[index % len(TIERS)]
    period = period_containing(spec.objectives.window, now)
    m = Measured.for_index(index)
    result = m.evaluation(period, spec)
    budget_fraction = 1 - spec.objectives.availability.target_percent / 100
    budget = round(100 * (1 - (1 - m.availability_percent / 100) / budget_fraction), 3)
    compliant, _, _ = compliance(spec, result)
    burn = 1 - budget / 100
    # The windows of the SLA window's first paging rule (w5m and w1h for a month); its alert
    # fires as the rule does, when both burn faster than its factor.
    page = alert_rules(spec.objectives.window)[0]
    rates = {page.short.name: burn * 20, page.long.name: burn * 16}
    stamp = iso_z(now)
    reason = "ObjectivesMet" if compliant else "ObjectiveMissed"
    measured = PeriodStatus(
        **asdict(m),
        start=period.start_iso,
        end=period.end_iso,
        budget_remaining_percent=budget,
        burn_rates={window: round(rate, 3) for window, rate in rates.items()},
        alerts=[page.name] if all(rate > page.factor for rate in rates.values()) else [],
        charges=decimal_amount(result.charges),
        credits_accrued=decimal_amount(result.credit.amount),
        evaluated_at=stamp,
    )
    return {
        "phase": "Ready" if compliant else "Degraded",
        "conditions": [
            {
                **condition(COMPLIANT, compliant, reason, "", generation=None),
                "lastTransitionTime": stamp,
            }
        ],
        "placement": {"tier": tier, "site": site},
        "period": measured.to_k8s(),
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
        settled.append(
            settle(
                ledger,
                period=period,
                result=Measured.for_index(index, month).evaluation(period, terms),
                sla_uid=sla_uid,
                namespace=namespace,
                name=name,
                tenant=wallet_owner(namespace, tenant),
                coverage_floor_percent=98.0,
                currency=terms.tokens.currency,
            )
        )
    return settled
