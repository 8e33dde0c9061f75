"""The nsmf slice backend: ask a 5G core's slice manager for the slice, over 3GPP ProvMnS.

TS 28.532 provisioning is REST: `PUT {MnS root}/{class}={id}` creates or replaces an object,
`DELETE` removes it. aiconn PUTs a SliceProfile (TS 28.541 attribute names, verified against the
Rel-19 Slice NRM OpenAPI: the subnet profiles carry `dLThptPerSliceSubnet`/`uLThptPerSliceSubnet`
and `resourceSharingLevel`; throughput in kbit/s, latency in ms, availability in percent). In the
NRM a SliceProfile is a data type inside a NetworkSliceSubnet; slice managers that expose it as
its own resource are what this backend talks to.

A slice that is not there must never look like one that is: every outcome is a `NsmfResult` whose
`ok` is True only for a 2xx answer, and whose `reason` says what failed and after how many tries.
The id is derived from the NetworkSlice's namespace, name and uid, so a retried or repeated PUT
addresses the same profile (PUT is idempotent) and a recreated slice gets a new one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

from aiconn.resources.v1alpha1.slice import NetworkSliceSpec, NsmfEndpoint, Throughput

PUT_OK = frozenset({200, 201, 204})
DELETE_OK = frozenset({200, 202, 204})
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_BODY_EXCERPT = 200


@dataclass(frozen=True)
class PlmnId:
    """The operator's PLMN: mobile country code and mobile network code (TS 23.003)."""

    mcc: str
    mnc: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9]{3}", self.mcc):
            raise ValueError(f"mcc must be 3 digits, got {self.mcc!r}")
        if not re.fullmatch(r"[0-9]{2,3}", self.mnc):
            raise ValueError(f"mnc must be 2 or 3 digits, got {self.mnc!r}")


@dataclass(frozen=True)
class NsmfResult:
    """What the slice manager did with a request."""

    ok: bool
    """True only when the slice manager confirmed the change with a success status."""
    reason: str
    """One line: what happened, for conditions and Events."""
    profile_id: str
    """The SliceProfile id the request addressed."""
    status_code: int | None = None
    """The last HTTP status received, None when no answer came."""
    attempts: int = 1
    """Requests sent, retries included."""


def slice_profile_id(namespace: str, name: str, uid: str) -> str:
    """A stable SliceProfile id for one NetworkSlice object (URL-safe, 27 characters)."""
    digest = hashlib.sha256(f"{namespace}/{name}/{uid}".encode()).hexdigest()[:20]
    return f"aiconn-{digest}"


def _throughput(thpt: Throughput) -> dict[str, int]:
    return {"guaThpt": thpt.gua_thpt, "maxThpt": thpt.max_thpt}


def slice_profile(profile_id: str, slice_spec: NetworkSliceSpec, plmn: PlmnId) -> dict[str, Any]:
    """The ProvMnS resource body of a slice's SliceProfile.

    The top subnet carries the end-to-end requirement; the RAN and core subnets each get half
    of the latency budget (a packet crosses both) and the full throughput and availability.
    """
    snssai: dict[str, Any] = {"sst": slice_spec.sst}
    if slice_spec.sd is not None:
        snssai["sd"] = slice_spec.sd.upper()

    def subnet(latency_share: float) -> dict[str, Any]:
        return {
            "dLLatency": slice_spec.d_l_latency * latency_share,
            "uLLatency": slice_spec.u_l_latency * latency_share,
            "availability": slice_spec.availability,
            "dLThptPerSliceSubnet": _throughput(slice_spec.d_l_thpt_per_slice),
            "uLThptPerSliceSubnet": _throughput(slice_spec.u_l_thpt_per_slice),
            "resourceSharingLevel": slice_spec.network_slice_sharing_indicator,
        }

    return {
        "id": profile_id,
        "attributes": {
            "sliceProfileId": profile_id,
            "plmnInfoList": [
                {"plmnId": {"mcc": plmn.mcc, "mnc": plmn.mnc}, "snssai": snssai},
            ],
            "topSliceSubnetProfile": subnet(1.0),
            "cNSliceSubnetProfile": subnet(0.5),
            "rANSliceSubnetProfile": subnet(0.5),
        },
    }


class NsmfClient:
    """Provisions and removes SliceProfiles at one slice manager.

    Timeouts, connection errors, 429 and 5xx answers are retried with exponential backoff
    (`endpoint.retries` times); other 4xx answers are final, since repeating the same request
    cannot change them.
    """

    def __init__(
        self,
        endpoint: NsmfEndpoint,
        *,
        plmn: PlmnId,
        client: httpx.AsyncClient | None = None,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 8.0,
    ) -> None:
        self._endpoint = endpoint
        self._plmn = plmn
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient()
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client, when this object created it."""
        if self._owns_client:
            await self._client.aclose()

    def url(self, profile_id: str) -> str:
        """Where the SliceProfile lives: `{MnS root}/SliceProfile={id}`."""
        return f"{self._endpoint.url.rstrip('/')}/SliceProfile={profile_id}"

    async def provision(
        self, slice_spec: NetworkSliceSpec, *, namespace: str, name: str, uid: str
    ) -> NsmfResult:
        """Create or replace the SliceProfile of the NetworkSlice namespace/name (uid)."""
        profile_id = slice_profile_id(namespace, name, uid)
        body = slice_profile(profile_id, slice_spec, self._plmn)
        return await self._send("PUT", profile_id, body=body, ok=PUT_OK)

    async def delete(self, profile_id: str) -> NsmfResult:
        """Remove a SliceProfile; one that is already gone (404) counts as removed."""
        return await self._send("DELETE", profile_id, body=None, ok=DELETE_OK | {404})

    async def _send(
        self,
        method: str,
        profile_id: str,
        *,
        body: dict[str, Any] | None,
        ok: frozenset[int],
    ) -> NsmfResult:
        url = self.url(profile_id)
        result = functools.partial(NsmfResult, profile_id=profile_id)
        attempts = self._endpoint.retries + 1
        status: int | None = None
        problem = ""
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await asyncio.sleep(min(self._max_backoff, self._backoff * 2 ** (attempt - 2)))
            try:
                response = await self._client.request(
                    method,
                    url,
                    json=body,
                    headers={"Accept": "application/json"},
                    timeout=self._endpoint.timeout_seconds,
                )
            except httpx.TimeoutException:
                status, problem = None, f"no answer within {self._endpoint.timeout_seconds:g} s"
                continue
            except httpx.TransportError as exc:
                status, problem = None, f"cannot reach the slice manager: {exc!r}"
                continue
            status = response.status_code
            if status in ok:
                done = "removed" if method == "DELETE" else "provisioned"
                reason = f"SliceProfile {profile_id} {done} (HTTP {status})"
                return result(ok=True, reason=reason, status_code=status, attempts=attempt)
            excerpt = " ".join(response.text.split())[:_BODY_EXCERPT]
            problem = f"HTTP {status} {response.reason_phrase}" + (
                f": {excerpt}" if excerpt else ""
            )
            if status not in RETRYABLE_STATUS:
                reason = f"{method} {url} refused: {problem}"
                return result(ok=False, reason=reason, status_code=status, attempts=attempt)
        reason = f"{method} {url} failed after {attempts} attempt(s): {problem}"
        return result(ok=False, reason=reason, status_code=status, attempts=attempts)
