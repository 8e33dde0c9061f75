"""The NetworkSlice resource: the network half of an AI SLA.

Attribute names follow 3GPP TS 28.541 ServiceProfile / SliceProfile where one exists
(`sst`, `sd`, `dLLatency`, `uLLatency`, `availability`, `dLThptPerSlice` ...), so the NSMF backend
can hand them to a 5G core's slice manager without renaming, and a telco reader recognises them.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Literal

from pydantic import Field

from aiconn.resources.v1alpha1.meta import CamelModel, Condition, cel, validations, with_rules
from aiconn.resources.v1alpha1.names import DNS_LABEL_PATTERN

Sst = Annotated[int, Field(ge=0, le=255)]
"""The S-NSSAI's Slice/Service Type: one octet, 128-255 operator-specific (TS 23.003 28.4.2)."""
SD_PATTERN = r"^[0-9A-Fa-f]{6}$"
"""The S-NSSAI's Slice Differentiator: three octets, written as 6 hex digits."""
FiveQi = Annotated[int, Field(ge=1, le=255)]
"""A 5G QoS Identifier (TS 23.501 table 5.7.4-1)."""


class SliceServiceType(IntEnum):
    """Standardized SST values (TS 23.501 5.15.2.2)."""

    EMBB = 1
    URLLC = 2
    MIOT = 3
    V2X = 4
    HMTC = 5


class Throughput(CamelModel):
    """TS 28.541 ThroughputRequirement: guaranteed and maximum throughput in kbit/s."""

    model_config = with_rules(cel("self.maxThpt >= self.guaThpt", "maxThpt must be >= guaThpt"))
    gua_thpt: int = Field(ge=0, le=100_000_000)
    """Guaranteed throughput in kbit/s."""
    max_thpt: int = Field(ge=1, le=100_000_000)
    """Maximum throughput in kbit/s."""


class AllowedSource(CamelModel):
    """Who may reach the inference pods through this slice: a namespace or an IP block."""

    model_config = with_rules(
        cel(
            "has(self.namespace) != has(self.cidr)",
            "set exactly one of namespace or cidr",
        )
    )
    namespace: str | None = Field(default=None, pattern=DNS_LABEL_PATTERN, max_length=63)
    """A namespace whose pods may connect."""
    cidr: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$",
        max_length=64,
        json_schema_extra=validations(
            cel(
                "isCIDR(self) && cidr(self) == cidr(self).masked()",
                "cidr must be a network address in CIDR notation (no host bits), e.g. 10.45.0.0/16",
            )
        ),
    )
    """An IP block (CIDR) that may connect, for example the UPF's N6 subnet."""


class NsmfEndpoint(CamelModel):
    """Where the 5G core's slice manager (TS 28.532 ProvMnS) listens."""

    url: str = Field(pattern=r"^https?://.+", max_length=2048)
    """MnS root, for example https://nsmf.core.example/ProvMnS/v1700; SliceProfile=<id> is PUT below it."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    """Timeout of one request."""
    retries: int = Field(default=2, ge=0, le=10)
    """Retries after a failed request, with exponential backoff."""


class NetworkSliceSpec(CamelModel):
    """A network slice for one AI inference service (TS 28.541 attribute names)."""

    model_config = with_rules(
        cel(
            "self.backend != 'nsmf' || has(self.nsmf)",
            "backend nsmf needs spec.nsmf.url",
            ".nsmf",
        )
    )
    sst: Sst
    """Slice/Service Type of the S-NSSAI: 1 eMBB, 2 URLLC, 3 MIoT, 4 V2X, 5 HMTC; 128-255 operator-specific."""
    sd: str | None = Field(default=None, pattern=SD_PATTERN, max_length=6)
    """Slice Differentiator of the S-NSSAI: 6 hex digits (FFFFFF means none)."""
    five_qi: FiveQi = Field(default=9, alias="fiveQI")
    """5G QoS Identifier (TS 23.501 table 5.7.4-1): 9 best effort, 80 low-latency eMBB, 82-85 delay-critical."""
    d_l_latency: int = Field(ge=1, le=10000, alias="dLLatency")
    """Downlink latency budget in milliseconds."""
    u_l_latency: int = Field(ge=1, le=10000, alias="uLLatency")
    """Uplink latency budget in milliseconds."""
    availability: float = Field(gt=0, lt=100)
    """Availability the slice must offer, in percent."""
    d_l_thpt_per_slice: Throughput = Field(alias="dLThptPerSlice")
    """Downlink throughput of the whole slice."""
    u_l_thpt_per_slice: Throughput = Field(alias="uLThptPerSlice")
    """Uplink throughput of the whole slice."""
    network_slice_sharing_indicator: Literal["SHARED", "NON_SHARED"] = "SHARED"
    """NON_SHARED isolates the inference pods from everything but the allowed sources."""
    site: str | None = Field(default=None, max_length=253)
    """The site the slice serves, when the SLA was placed on one."""
    pod_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        min_length=1, max_length=16
    )
    """Labels of the inference pods the slice carries traffic to."""
    allowed_sources: list[AllowedSource] = Field(default_factory=list, max_length=64)
    """Who may connect; the monitoring namespace is always admitted for scraping."""
    backend: Literal["kubernetes", "nsmf"] = "kubernetes"
    """kubernetes: NetworkPolicy, bandwidth annotations, PriorityClass. nsmf: a 5G core's slice manager."""
    nsmf: NsmfEndpoint | None = None
    """The slice manager to provision through, for backend nsmf."""


class NetworkSliceStatus(CamelModel):
    """What the slice backend realized."""

    observed_generation: int | None = None
    """The spec generation last realized."""
    phase: str | None = None
    """Pending, Ready or Failed."""
    conditions: list[Condition] = Field(default_factory=list)
    """SliceReady, with the reason when it is False."""
    realized: list[str] = Field(default_factory=list)
    """Objects that realize the slice, as kind/name (NetworkPolicy, PriorityClass, SliceProfile)."""
    priority_class_name: str | None = None
    """The PriorityClass inference pods of this slice run with."""
    bandwidth_annotations: dict[str, str] = Field(default_factory=dict)
    """Pod annotations that shape the slice's bandwidth."""
