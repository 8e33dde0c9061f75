"""Reading AIInferenceSLAs from the API server, directly or from a periodically refreshed copy.

Reports need an SLA's spec (tenant, window, price, credit schedule), uid (the ledger's key) and
status (the current period). `DirectSLAReader` asks the API server on every call: always fresh,
right for tests and small installs. `CachedSLAReader` keeps every SLA of the cluster in memory and
re-lists them all (one paginated cluster-wide list) every few seconds on a background thread, so a
request never waits on the API server and the API server sees one list per interval however many
requests arrive. Reads are at most one interval (plus a list) stale; the operator's own status
updates are about a minute apart, so this costs nothing a reader could notice.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError
from urllib3.exceptions import HTTPError

from aiconn.kube import KINDS, Kube, KubeError, without_managed_fields
from aiconn.resources.v1alpha1 import kinds
from aiconn.resources.v1alpha1.sla import AIInferenceSLASpec, AIInferenceSLAStatus
from aiconn.sla.offer import OfferViolation, admitted_offer, effective_spec
from aiconn.sla.wallets import wallet_owner

SLAS = KINDS[kinds.SLA.kind]
OFFERS = KINDS[kinds.OFFER.kind]
T = TypeVar("T")
log = logging.getLogger(__name__)


class SLAUnavailable(Exception):
    """The API server could not be asked for SLAs (answered 503)."""


@dataclass(frozen=True)
class SLA:
    """One AIInferenceSLA as the API needs it."""

    namespace: str
    name: str
    uid: str
    spec: AIInferenceSLASpec
    status: AIInferenceSLAStatus

    @property
    def tenant(self) -> str:
        """The wallet the SLA's transfers touch (see `wallet_owner`: namespaced, never shared
        with another namespace that claims the same tenant name)."""
        return wallet_owner(self.namespace, self.spec.tenant)

    def condition(self, kind: str) -> str:
        """`True`, `False` or `Unknown` for a status condition."""
        for condition in self.status.conditions:
            if condition.type == kind:
                return condition.status
        return "Unknown"


class SLAReader(Protocol):
    """Where the routes get SLAs from."""

    def get(self, namespace: str, name: str) -> SLA | None:
        """The SLA, or None when it does not exist."""

    def in_namespace(self, namespace: str) -> list[SLA]:
        """Every SLA in `namespace`, by name."""

    def all(self) -> list[SLA]:
        """Every SLA in the cluster, by namespace and name."""

    def ping(self) -> None:
        """Raise SLAUnavailable when the API server cannot be reached."""

    def offer(self, name: str) -> dict[str, Any] | None:
        """The AIInferenceOffer object named `name` as stored, or None when there is none."""


def parse_sla(obj: dict[str, Any]) -> SLA | None:
    """An SLA from the API server's JSON; None (logged) when it does not match the models."""
    meta = obj.get("metadata", {})
    try:
        return SLA(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            spec=AIInferenceSLASpec.model_validate(obj.get("spec", {})),
            status=AIInferenceSLAStatus.model_validate(obj.get("status") or {}),
        )
    except (KeyError, ValidationError) as err:
        log.warning(
            "skipping AIInferenceSLA %s/%s: %s", meta.get("namespace"), meta.get("name"), err
        )
        return None


def with_offer_terms(sla: SLA, offers: dict[str, dict[str, Any]]) -> SLA:
    """The SLA with its offer's terms (price, credits, plan), as the operator charges it; a
    tenant-written price must never show in a report. Unchanged without an offer, or when the
    offer is missing or no longer covers the SLA (the operator then serves nothing, and its
    status says why)."""
    if sla.spec.offer is None or sla.spec.offer not in offers:
        return sla
    try:
        offer = admitted_offer(offers[sla.spec.offer])
        return dataclasses.replace(sla, spec=effective_spec(sla.spec, offer))
    except (ValidationError, OfferViolation) as err:
        log.warning("AIInferenceSLA %s/%s outside its offer: %s", sla.namespace, sla.name, err)
        return sla


class DirectSLAReader:
    """Every call is a request to the API server, with the API's own credentials."""

    def __init__(self, api: Any) -> None:
        self._kube = Kube(api)

    def get(self, namespace: str, name: str) -> SLA | None:
        obj = _kube(lambda: self._kube.get(kinds.SLA.kind, name, namespace), refused="SLA")
        sla = None if obj is None else parse_sla(obj)
        return None if sla is None else self._terms([sla])[0]

    def in_namespace(self, namespace: str) -> list[SLA]:
        return self._listed(SLAS.path(namespace))

    def all(self) -> list[SLA]:
        return self._listed(SLAS.path(None))

    def _listed(self, path: str) -> list[SLA]:
        """The SLAs listed at `path` (each parsed as its page arrives), by namespace and name."""
        slas = _kube(lambda: self._kube.list_all(path, keep=parse_sla))
        return self._terms(sorted(slas, key=lambda s: (s.namespace, s.name)))

    def _terms(self, slas: list[SLA]) -> list[SLA]:
        """Offer terms applied; offers are read (one list) only when some SLA names one."""
        if not any(s.spec.offer for s in slas):
            return slas
        listed = _kube(lambda: self._kube.list_all(OFFERS.path(None), keep=without_managed_fields))
        offers = {o["metadata"]["name"]: o for o in listed}
        return [with_offer_terms(s, offers) for s in slas]

    def ping(self) -> None:
        _kube(self._kube.version)

    def offer(self, name: str) -> dict[str, Any] | None:
        return _kube(lambda: self._kube.get(kinds.OFFER.kind, name), refused="offer")


class CachedSLAReader:
    """All SLAs in memory, re-listed every `seconds` on a daemon thread."""

    def __init__(self, source: DirectSLAReader, *, seconds: float) -> None:
        self._source = source
        self._seconds = seconds
        self._by_key: dict[tuple[str, str], SLA] = {}
        self._sorted: list[SLA] = []
        self._loaded_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Load once now (so the first request is served from memory), then keep refreshing."""
        try:
            self.refresh()
        except SLAUnavailable as err:
            log.warning("initial SLA list failed, retrying in the background: %s", err)
        self._thread = threading.Thread(target=self._loop, name="sla-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the refresh thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def refresh(self) -> None:
        """List every SLA now and swap the copy in one assignment (readers never see half)."""
        slas = self._source.all()
        self._by_key, self._sorted = {(s.namespace, s.name): s for s in slas}, slas
        self._loaded_at = time.monotonic()

    def _loop(self) -> None:
        while not self._stop.wait(self._seconds):
            try:
                self.refresh()
            except SLAUnavailable as err:
                log.warning("SLA list failed, serving the copy from the last list: %s", err)

    def _loaded(self) -> None:
        if self._loaded_at is None:
            raise SLAUnavailable("the SLA cache has not loaded yet: the API server was unreachable")

    def get(self, namespace: str, name: str) -> SLA | None:
        self._loaded()
        return self._by_key.get((namespace, name))

    def in_namespace(self, namespace: str) -> list[SLA]:
        self._loaded()
        return [s for s in self._sorted if s.namespace == namespace]

    def all(self) -> list[SLA]:
        self._loaded()
        return list(self._sorted)

    def ping(self) -> None:
        self._source.ping()

    def offer(self, name: str) -> dict[str, Any] | None:
        # Offers are read on demand (price history and quotes are rare next to reports).
        return self._source.offer(name)


def _kube(request: Callable[[], T], *, refused: str | None = None) -> T:
    """`request()`, its failures as SLAUnavailable; a refusal of a read of one `refused` object
    says its status (an absent one is None, not a failure)."""
    try:
        return request()
    except KubeError as err:
        if refused is not None:
            raise SLAUnavailable(f"reading {refused} failed with status {err.status}") from err
        raise _unavailable(err) from err
    except (HTTPError, OSError) as err:
        raise _unavailable(err) from err


def _unavailable(err: Exception) -> SLAUnavailable:
    return SLAUnavailable(
        f"the Kubernetes API failed a request ({type(err).__name__}"
        f" {getattr(err, 'status', '')}); the API's service account needs get, list and"
        " watch on aiinferenceslas"
    )
