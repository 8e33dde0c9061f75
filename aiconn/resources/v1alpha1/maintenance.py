"""The MaintenanceWindow resource, and the offer's maintenance terms.

What a window excuses, and from when, is `aiconn.sla.maintenance`'s business; this is the shape
the provider writes. The spec is immutable once created (a CEL transition rule): a window must not
be stretched over an outage after the fact.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from aiconn.resources.v1alpha1.meta import CamelModel, cel, once_each, validations, with_rules
from aiconn.resources.v1alpha1.names import DNS_SUBDOMAIN_PATTERN

UTC_MINUTE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:00Z$"


class MaintenanceTerms(CamelModel):
    """The offer's rule for planned maintenance: windows declared this far ahead are excused."""

    notice_minutes: int = Field(ge=0, le=527040)
    """Minutes a MaintenanceWindow must be declared (created) before the minutes it excuses; minutes that begin earlier than creation plus this notice are judged as usual."""


class MaintenanceWindowSpec(CamelModel):
    """Planned maintenance the provider announces: excused minutes for SLAs of the named offers."""

    model_config = with_rules(
        # The fixed spelling makes string order time order.
        cel("self.end > self.start", "end must be after start", ".end"),
        cel(
            "self == oldSelf",
            "a maintenance window cannot be changed once declared (it would excuse minutes"
            " retroactively): delete it and declare a new one",
        ),
    )
    start: str = Field(pattern=UTC_MINUTE_PATTERN, max_length=20)
    """First excused minute, RFC 3339 in UTC on a whole minute, e.g. 2026-03-14T01:00:00Z."""
    end: str = Field(pattern=UTC_MINUTE_PATTERN, max_length=20)
    """End of the window (exclusive), RFC 3339 in UTC on a whole minute."""
    offers: list[Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]] = Field(
        min_length=1,
        max_length=64,
        json_schema_extra=validations(once_each("offers must not repeat an offer")),
    )
    """AIInferenceOffers whose SLAs the window excuses (each offer's maintenance.noticeMinutes applies)."""
    reason: str = Field(default="", max_length=1024)
    """What is maintained, shown to tenants."""
