"""The NSMF backend against a real HTTP server on loopback: success, refusal, errors, timeouts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aiconn.resources.v1alpha1.slice import NetworkSliceSpec, NsmfEndpoint
from aiconn.slices.nsmf import NsmfClient, NsmfResult, PlmnId, slice_profile_id

PLMN = PlmnId(mcc="001", mnc="01")
ROOT = "/ProvMnS/v1700"


@dataclass
class Recorded:
    method: str
    path: str
    body: dict[str, Any] | None


@dataclass
class SliceManager:
    """A slice manager whose answers the test scripts: a queue of (status, delay) per request."""

    base_url: str
    script: list[tuple[int, float]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)

    def answer(self) -> tuple[int, float]:
        return self.script.pop(0) if self.script else (201, 0.0)


@pytest.fixture
def manager() -> Iterator[SliceManager]:
    state = SliceManager(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            state.requests.append(
                Recorded(self.command, self.path, json.loads(raw) if raw else None)
            )
            status, delay = state.answer()
            time.sleep(delay)
            payload = b"" if status == 204 else json.dumps({"status": status}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting; that is the point of the slow cases

        do_PUT = _handle
        do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}{ROOT}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def slice_spec(url: str, *, retries: int = 2, timeout: float = 2.0) -> NetworkSliceSpec:
    return NetworkSliceSpec.model_validate(
        {
            "sst": 2,
            "sd": "0000a1",
            "fiveQI": 82,
            "dLLatency": 10,
            "uLLatency": 9,
            "availability": 99.99,
            "dLThptPerSlice": {"guaThpt": 50_000, "maxThpt": 200_000},
            "uLThptPerSlice": {"guaThpt": 10_000, "maxThpt": 40_000},
            "networkSliceSharingIndicator": "NON_SHARED",
            "podSelector": {"aiconn.io/sla": "factory"},
            "backend": "nsmf",
            "nsmf": {"url": url, "timeoutSeconds": timeout, "retries": retries},
        }
    )


def provision(spec: NetworkSliceSpec) -> NsmfResult:
    endpoint = spec.nsmf
    assert endpoint is not None

    async def run() -> NsmfResult:
        async with NsmfClient(endpoint, plmn=PLMN, backoff_seconds=0.01) as client:
            return await client.provision(spec, namespace="acme", name="factory", uid="u-1")

    return asyncio.run(run())


def delete(url: str, profile_id: str) -> NsmfResult:
    async def run() -> NsmfResult:
        async with NsmfClient(NsmfEndpoint(url=url), plmn=PLMN, backoff_seconds=0.01) as client:
            return await client.delete(profile_id)

    return asyncio.run(run())


def assert_failed(
    result: NsmfResult, manager: SliceManager, *, status_code: int, attempts: int, reason: str
) -> None:
    """`result` is a failure at `status_code` after `attempts` requests, all of which reached the
    slice manager, and says `reason`."""
    assert not result.ok
    assert (result.status_code, result.attempts) == (status_code, attempts)
    assert reason in result.reason
    assert len(manager.requests) == attempts


def test_created_profile_is_put_at_its_id_with_ts_28_541_attributes(
    manager: SliceManager,
) -> None:
    result = provision(slice_spec(manager.base_url))
    profile_id = slice_profile_id("acme", "factory", "u-1")
    assert result == NsmfResult(
        ok=True,
        reason=f"SliceProfile {profile_id} provisioned (HTTP 201)",
        profile_id=profile_id,
        status_code=201,
        attempts=1,
    )
    (request,) = manager.requests
    assert (request.method, request.path) == ("PUT", f"{ROOT}/SliceProfile={profile_id}")
    assert request.body is not None
    assert request.body["id"] == profile_id
    attributes = request.body["attributes"]
    assert attributes["sliceProfileId"] == profile_id
    assert attributes["plmnInfoList"] == [
        {"plmnId": {"mcc": "001", "mnc": "01"}, "snssai": {"sst": 2, "sd": "0000A1"}}
    ]
    core = attributes["cNSliceSubnetProfile"]
    assert core == {
        "dLLatency": 5.0,
        "uLLatency": 4.5,
        "availability": 99.99,
        "dLThptPerSliceSubnet": {"guaThpt": 50_000, "maxThpt": 200_000},
        "uLThptPerSliceSubnet": {"guaThpt": 10_000, "maxThpt": 40_000},
        "resourceSharingLevel": "NON_SHARED",
    }
    assert attributes["rANSliceSubnetProfile"] == core
    top = attributes["topSliceSubnetProfile"]
    assert (top["dLLatency"], top["uLLatency"]) == (10, 9)


@pytest.mark.parametrize("status", [200, 201, 204])
def test_success_statuses_are_success(manager: SliceManager, status: int) -> None:
    manager.script = [(status, 0.0)]
    result = provision(slice_spec(manager.base_url))
    assert result.ok and result.status_code == status


def test_server_errors_are_retried_then_reported(manager: SliceManager) -> None:
    manager.script = [(500, 0.0)] * 3
    result = provision(slice_spec(manager.base_url, retries=2))
    reason = "failed after 3 attempt(s): HTTP 500 Internal Server Error"
    assert_failed(result, manager, status_code=500, attempts=3, reason=reason)


def test_a_transient_error_then_success_is_success(manager: SliceManager) -> None:
    manager.script = [(503, 0.0), (201, 0.0)]
    result = provision(slice_spec(manager.base_url))
    assert result.ok and result.attempts == 2


def test_a_client_error_is_final(manager: SliceManager) -> None:
    manager.script = [(400, 0.0)]
    result = provision(slice_spec(manager.base_url))
    reason = "refused: HTTP 400 Bad Request"
    assert_failed(result, manager, status_code=400, attempts=1, reason=reason)


def test_a_slow_slice_manager_times_out(manager: SliceManager) -> None:
    manager.script = [(201, 1.0), (201, 1.0)]
    result = provision(slice_spec(manager.base_url, retries=1, timeout=0.2))
    assert not result.ok
    assert result.status_code is None
    assert "no answer within 0.2 s" in result.reason


def test_an_unreachable_slice_manager_is_a_failure() -> None:
    result = provision(slice_spec("http://127.0.0.1:9/ProvMnS", retries=0))
    assert not result.ok
    assert "cannot reach the slice manager" in result.reason


@pytest.mark.parametrize(("status", "ok"), [(204, True), (404, True), (500, False)])
def test_delete_treats_gone_as_removed(manager: SliceManager, status: int, ok: bool) -> None:
    manager.script = [(status, 0.0)] * 3
    result = delete(manager.base_url, "aiconn-abc")
    assert result.ok is ok
    assert manager.requests[0].method == "DELETE"
    assert manager.requests[0].path == f"{ROOT}/SliceProfile=aiconn-abc"


def test_profile_ids_are_stable_and_distinct_per_object() -> None:
    first = slice_profile_id("acme", "factory", "u-1")
    assert first == slice_profile_id("acme", "factory", "u-1")
    assert first != slice_profile_id("acme", "factory", "u-2")
    assert first != slice_profile_id("other", "factory", "u-1")
    assert first.startswith("aiconn-") and len(first) == 27


@pytest.mark.parametrize(("mcc", "mnc"), [("01", "01"), ("001", "1"), ("abc", "01")])
def test_plmn_id_is_validated(mcc: str, mnc: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        PlmnId(mcc=mcc, mnc=mnc)
