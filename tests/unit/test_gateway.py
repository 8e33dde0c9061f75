"""The gateway's pure parts: keys, rate limits, SSE usage handling, buckets, allowance policy."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiconn.gateway import allowance as allowance_module
from aiconn.gateway.allowance import (
    NOTHING_RECORDED,
    USAGE_MARGIN_SECONDS,
    AllowanceUnavailable,
    LedgerAllowance,
    StaticAllowance,
    WalletReading,
)
from aiconn.gateway.keys import KeyStore, bearer_token, hash_key, parse_digests
from aiconn.gateway.metrics import tpot_buckets, ttft_buckets
from aiconn.gateway.proxy import downstream_headers, upstream_headers
from aiconn.gateway.ratelimit import MinuteWindow, TokenBucket, retry_after_header
from aiconn.gateway.usage import StreamMeter, Usage, ask_for_usage, usage_from_body
from aiconn.gateway.wallet import WalletApiReader, WalletUnavailable
from aiconn.sla import metricnames as mn


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sse(chunk: object) -> bytes:
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


# The shape vLLM 0.32 streams for a chat completion with include_usage (seen on a real server).
ROLE = {
    "id": "c",
    "object": "chat.completion.chunk",
    "model": "tiny",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
}
TOKEN_A = {
    "id": "c",
    "object": "chat.completion.chunk",
    "model": "tiny",
    "choices": [{"index": 0, "delta": {"content": " ju"}, "finish_reason": None}],
}
TOKEN_EMPTY = {
    "id": "c",
    "object": "chat.completion.chunk",
    "model": "tiny",
    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": None}],
}
TOKEN_LAST = {
    "id": "c",
    "object": "chat.completion.chunk",
    "model": "tiny",
    "choices": [{"index": 0, "delta": {"content": "mp"}, "finish_reason": "length"}],
}
USAGE_ONLY = {
    "id": "c",
    "object": "chat.completion.chunk",
    "model": "tiny",
    "choices": [],
    "usage": {"prompt_tokens": 16, "total_tokens": 19, "completion_tokens": 3},
}
STREAM = b"".join(sse(c) for c in (ROLE, TOKEN_A, TOKEN_EMPTY, TOKEN_LAST, USAGE_ONLY))
DONE = b"data: [DONE]\n\n"


# Keys


def test_key_digest_is_sha256_hex_of_the_key() -> None:
    # The FIPS 180-2 test vector: what `printf abc | sha256sum` prints, as the operator writes it.
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer sk-1", "sk-1"),
        ("bearer   sk-1  ", "sk-1"),
        ("Basic dXNlcg==", None),
        ("Bearer", None),
        ("Bearer ", None),
        (None, None),
    ],
)
def test_bearer_token_is_taken_only_from_a_bearer_header(
    header: str | None, token: str | None
) -> None:
    assert bearer_token(header) == token


def test_keys_file_skips_blank_and_malformed_lines() -> None:
    good = hash_key("k")
    assert parse_digests(f"\n{good.upper()}\nnot-a-digest\n  {good}  \n") == (good, good)


def test_key_store_accepts_only_listed_keys(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text(hash_key("sk-1") + "\n" + hash_key("sk-2") + "\n")
    store = KeyStore(tmp_path)
    assert store.accepts("sk-1")
    assert store.accepts("sk-2")
    assert not store.accepts("sk-3")
    assert not store.accepts("")
    assert not store.accepts(None)


def test_key_store_reloads_a_changed_file_after_the_check_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    keys = tmp_path / "keys"
    keys.write_text(hash_key("old") + "\n")
    store = KeyStore(tmp_path, check_seconds=2.0, clock=clock)
    assert store.accepts("old")

    keys.write_text(hash_key("new") + "\n")
    os.utime(keys, ns=(1, 10**18))
    clock.now += 1.0
    assert store.accepts("old"), "checked at most every check_seconds"
    clock.now += 1.5
    assert store.accepts("new")
    assert not store.accepts("old")


def test_key_store_follows_a_secret_symlink_swap(tmp_path: Path) -> None:
    clock = FakeClock()
    first, second = tmp_path / "..data1", tmp_path / "..data2"
    first.mkdir()
    second.mkdir()
    (first / "keys").write_text(hash_key("one") + "\n")
    (second / "keys").write_text(hash_key("two") + "\n")
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "keys").symlink_to(first / "keys")
    store = KeyStore(mount, check_seconds=0.0, clock=clock)
    assert store.accepts("one")
    (mount / "keys").unlink()
    (mount / "keys").symlink_to(second / "keys")
    assert store.accepts("two")
    assert not store.accepts("one")


def test_key_store_without_a_keys_file_accepts_nothing(tmp_path: Path) -> None:
    assert not KeyStore(tmp_path / "absent").accepts("anything")


def test_headers_sent_upstream_drop_the_tenant_key_and_hop_by_hop() -> None:
    sent = upstream_headers(
        [
            (b"authorization", b"Bearer sk-secret"),
            (b"host", b"gw"),
            (b"connection", b"keep-alive"),
            (b"content-type", b"application/json"),
            (b"x-request-id", b"r1"),
            (b"accept-encoding", b"gzip"),
        ]
    )
    # Issue 14: an allow-list; X-Request-Id would set vLLM's completion id.
    assert sent == [
        (b"content-type", b"application/json"),
        (b"accept-encoding", b"identity"),
    ]


def test_headers_sent_downstream_drop_hop_by_hop_and_length_of_a_stream() -> None:
    raw = [
        (b"Content-Type", b"text/event-stream"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Content-Length", b"10"),
        (b"Server", b"uvicorn"),
    ]
    # Issue 14: the upstream's Server header is an internal detail, not passed on.
    assert downstream_headers(raw, keep_length=False) == [
        (b"content-type", b"text/event-stream"),
    ]
    assert (b"content-length", b"10") in downstream_headers(raw, keep_length=True)


# Rate limits


def test_token_bucket_bursts_one_second_then_admits_at_the_rate() -> None:
    bucket = TokenBucket(rate=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.take(0.0) == pytest.approx(0.2)
    assert bucket.take(0.1) == pytest.approx(0.1)
    assert bucket.take(0.2) == 0.0


def test_token_bucket_burst_is_at_least_one_request() -> None:
    bucket = TokenBucket(rate=0.5, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(2.0)
    assert bucket.take(2.0) == 0.0


def test_token_bucket_refuses_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(rate=0, now=0.0)


def test_minute_window_refuses_once_the_last_minute_reaches_the_limit() -> None:
    window = MinuteWindow(limit=100)
    window.record(60, 10.2)
    assert window.retry_after(11.0) == 0.0
    window.record(50, 30.5)
    assert window.used == 110
    # The 60 tokens of second 10 leave the window at 70; then 50 < 100.
    assert window.retry_after(31.0) == pytest.approx(39.0)
    assert window.retry_after(70.0) == 0.0
    assert window.used == 50


def test_minute_window_waits_for_as_many_seconds_as_needed() -> None:
    window = MinuteWindow(limit=10)
    for second in range(5):
        window.record(5, float(second))
    # 25 tokens; without seconds 0-2 there are 10 (still at the limit); second 3 leaves at 63.
    assert window.retry_after(5.0) == pytest.approx(63 - 5.0)


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (39, "39")])
def test_retry_after_is_whole_seconds_and_at_least_one(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


# Usage and streams


def test_usage_only_chunk_is_stripped_when_the_gateway_asked_for_it() -> None:
    meter = StreamMeter(strip_usage=True)
    fed = meter.feed(STREAM + DONE)
    assert fed.out == b"".join(sse(c) for c in (ROLE, TOKEN_A, TOKEN_EMPTY, TOKEN_LAST)) + DONE
    assert meter.usage == Usage(prompt=16, completion=3)
    assert fed.tokens == 3
    assert fed.content


def test_usage_only_chunk_is_forwarded_when_the_client_asked_for_it() -> None:
    meter = StreamMeter(strip_usage=False)
    assert meter.feed(STREAM + DONE).out == STREAM + DONE
    assert meter.usage == Usage(prompt=16, completion=3)


def test_stream_split_anywhere_gives_the_same_bytes_and_usage() -> None:
    whole = STREAM + DONE
    for cut in range(1, len(whole), 7):
        meter = StreamMeter(strip_usage=True)
        out = meter.feed(whole[:cut]).out + meter.feed(whole[cut:]).out + meter.flush()
        assert out == StreamMeter(strip_usage=True).feed(whole).out
        assert meter.usage == Usage(prompt=16, completion=3)
        assert meter.token_events == 3


def test_role_only_and_empty_chunks_are_not_content() -> None:
    meter = StreamMeter(strip_usage=True)
    assert not meter.feed(sse(ROLE)).content
    empty = meter.feed(sse(TOKEN_EMPTY))
    assert (empty.content, empty.tokens) == (False, 1)
    assert meter.feed(sse(TOKEN_A)).content
    assert meter.feed(sse({"choices": [{"index": 0, "text": "x"}]})).content


def test_crlf_framed_events_and_trailing_bytes_pass_through() -> None:
    meter = StreamMeter(strip_usage=True)
    framed = b"data: " + json.dumps(TOKEN_A).encode() + b"\r\n\r\n"
    assert meter.feed(framed + b": keep").out == framed
    assert meter.flush() == b": keep"


def test_an_error_event_marks_the_stream_failed() -> None:
    meter = StreamMeter(strip_usage=True)
    meter.feed(sse({"error": {"message": "engine died", "code": 500}}))
    assert meter.failed


def test_ask_for_usage_keeps_the_clients_own_choice() -> None:
    asked = {"stream": True, "stream_options": {"include_usage": True}}
    assert not ask_for_usage(asked)
    assert asked["stream_options"] == {"include_usage": True}

    silent: dict[str, object] = {"stream": True, "stream_options": {"continuous_usage_stats": True}}
    assert ask_for_usage(silent)
    assert silent["stream_options"] == {"include_usage": True}


def test_usage_is_read_from_a_whole_body() -> None:
    assert usage_from_body(b'{"usage": {"prompt_tokens": 1, "completion_tokens": 3}}') == Usage(
        1, 3
    )
    assert usage_from_body(b"not json") is None
    assert usage_from_body(b"[1]") is None
    assert usage_from_body(b'{"usage": {"prompt_tokens": "1"}}') is None


# Buckets


def test_latency_buckets_contain_the_sla_thresholds() -> None:
    assert 0.333 in ttft_buckets(333)
    assert set(mn.DEFAULT_TTFT_BUCKETS) <= set(ttft_buckets(333))
    assert 0.042 in tpot_buckets(42)
    assert list(tpot_buckets(42)) == sorted(tpot_buckets(42))
    assert ttft_buckets(500) == mn.DEFAULT_TTFT_BUCKETS


# Allowance


def test_static_allowance_is_spent_by_metered_tokens() -> None:
    allowance = StaticAllowance(100)
    allowance.record(60)
    assert asyncio.run(allowance.remaining()) == 40
    allowance.record(50)
    assert asyncio.run(allowance.remaining()) == -10


class Ledger:
    def __init__(self, balance: int) -> None:
        self.balance = balance
        self.reads = 0
        self.down = False

    def __call__(self) -> int:
        self.reads += 1
        if self.down:
            raise ConnectionError("database unreachable")
        return self.balance


def test_ledger_allowance_subtracts_tokens_metered_since_the_read() -> None:
    async def scenario() -> None:
        clock, ledger = FakeClock(), Ledger(1000)
        allowance = LedgerAllowance(ledger, cache_seconds=5, clock=clock)
        assert await allowance.remaining() == 1000
        allowance.record(300)
        assert await allowance.remaining() == 700
        assert ledger.reads == 1, "cached between reads"
        ledger.balance = 650  # the ledger has debited 350 since; the local count restarts
        clock.now += 5
        assert await allowance.remaining() == 650
        assert ledger.reads == 2

    asyncio.run(scenario())


class LaggingLedger:
    """A wallet whose usage the SLA loop records late: `recorded` of what was metered, through
    `through` (epoch seconds; None: never recorded)."""

    def __init__(self, funded: int) -> None:
        self.funded, self.recorded = funded, 0
        self.through: float | None = None

    def __call__(self) -> WalletReading:
        at = None if self.through is None else datetime.fromtimestamp(self.through, UTC)
        return WalletReading(self.funded - self.recorded, usage_through=at)


def test_tokens_metered_after_the_ledgers_usage_reading_stay_counted_across_reads() -> None:
    """One 100-token request every 2 s against a 1,000-token wallet whose usage the ledger last
    recorded a minute before the first: the gateway serves the wallet's 1,000 and refuses the
    rest, read after read (forgetting its count at each read served 3,000); once the ledger
    records the usage of the first nine, those nine are not counted twice and the tenth is."""

    async def scenario() -> None:
        clock = FakeClock()
        ledger = LaggingLedger(1_000)
        ledger.through = clock.now - 60  # an earlier minute's reading: no usage yet
        allowance = LedgerAllowance(ledger, cache_seconds=5, clock=clock, wall_clock=clock)
        served: list[float] = []
        for _ in range(30):
            left = await allowance.remaining()
            assert left is not None
            if left >= 100:
                allowance.record(100)
                served.append(clock.now)
            clock.now += 2
        assert len(served) == 10
        # The SLA loop records the first nine requests' usage; the reading goes through an
        # instant the margin past the ninth (its Prometheus read may miss the last scrape).
        ledger.recorded, ledger.through = 900, served[8] + 1 + USAGE_MARGIN_SECONDS
        clock.now += 5
        assert await allowance.remaining() == 100 - 100

    asyncio.run(scenario())


def test_a_wallet_whose_usage_was_never_recorded_counts_everything_metered() -> None:
    """A new tenant before the SLA loop's first usage reading (or one whose usage it never
    records): one 100-token request every 2 s against 1,000 tokens is served 1,000, not one
    read's worth at a time (forgetting the count at each read served 3,000 in a minute)."""

    async def scenario() -> None:
        clock = FakeClock()
        ledger = LaggingLedger(1_000)
        ledger.through = NOTHING_RECORDED.timestamp()
        allowance = LedgerAllowance(ledger, cache_seconds=5, clock=clock, wall_clock=clock)
        served = 0
        for _ in range(30):
            left = await allowance.remaining()
            assert left is not None
            if left >= 100:
                allowance.record(100)
                served += 100
            clock.now += 2
        assert served == 1_000
        # The loop's first reading records the usage of all ten, through the minute after them.
        ledger.recorded, ledger.through = 1_000, clock.now + USAGE_MARGIN_SECONDS
        clock.now += 5
        assert await allowance.remaining() == 0

    asyncio.run(scenario())


def test_a_reading_without_its_usage_instant_counts_what_was_metered_before_it() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        ledger = LaggingLedger(1_000)
        allowance = LedgerAllowance(ledger, cache_seconds=5, clock=clock, wall_clock=clock)
        assert await allowance.remaining() == 1_000
        allowance.record(300)
        ledger.recorded = 300
        clock.now += 5
        assert await allowance.remaining() == 700

    asyncio.run(scenario())


def test_an_hour_of_unrecorded_seconds_merges_the_oldest_and_keeps_every_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(allowance_module, "MAX_SECONDS_KEPT", 3)

    async def scenario() -> None:
        clock = FakeClock()
        ledger = LaggingLedger(1_000)
        ledger.through = clock.now - 60
        allowance = LedgerAllowance(ledger, cache_seconds=60, clock=clock, wall_clock=clock)
        assert await allowance.remaining() == 1_000
        for _ in range(6):
            allowance.record(10)
            clock.now += 1
        assert await allowance.remaining() == 1_000 - 60
        # The ledger records the first five seconds: the merged ones go only once all are in.
        ledger.recorded, ledger.through = 50, clock.now - 1 + USAGE_MARGIN_SECONDS
        clock.now += 60
        assert await allowance.remaining() == 1_000 - 50 - 10

    asyncio.run(scenario())


def test_ledger_outage_fails_open_within_the_grace_then_closed() -> None:
    async def scenario() -> None:
        clock, ledger = FakeClock(), Ledger(1000)
        allowance = LedgerAllowance(ledger, grace_seconds=300, cache_seconds=5, clock=clock)
        assert await allowance.remaining() == 1000
        ledger.down = True
        allowance.record(400)
        clock.now += 200
        assert await allowance.remaining() == 600, "served from the last read, still counted"
        allowance.record(700)
        assert await allowance.remaining() == -100, "an exhausted wallet is refused in the grace"
        clock.now += 101
        with pytest.raises(AllowanceUnavailable, match="over 300 s"):
            await allowance.remaining()
        ledger.down = False
        clock.now += 5
        assert await allowance.remaining() == 1000

    asyncio.run(scenario())


def test_ledger_never_read_serves_unknown_within_the_grace() -> None:
    async def scenario() -> None:
        clock, ledger = FakeClock(), Ledger(0)
        ledger.down = True
        allowance = LedgerAllowance(ledger, grace_seconds=60, clock=clock)
        assert await allowance.remaining() is None
        clock.now += 61
        with pytest.raises(AllowanceUnavailable):
            await allowance.remaining()

    asyncio.run(scenario())


def test_ledger_outage_in_closed_mode_refuses_at_once() -> None:
    async def scenario() -> None:
        clock, ledger = FakeClock(), Ledger(1000)
        allowance = LedgerAllowance(ledger, fail_mode="closed", cache_seconds=5, clock=clock)
        assert await allowance.remaining() == 1000
        ledger.down = True
        clock.now += 5
        with pytest.raises(AllowanceUnavailable, match="fail mode closed"):
            await allowance.remaining()

    asyncio.run(scenario())


def team_a_reader(token: Path, api: Callable[[httpx.Request], httpx.Response]) -> WalletApiReader:
    """The gateway's wallet reader for tenant team-a of namespace team-a, answered by `api`."""
    return WalletApiReader(
        "http://api.example/",
        namespace="team-a",
        tenant="team-a",
        token_file=token,
        client=httpx.Client(transport=httpx.MockTransport(api)),
    )


def test_the_wallet_reader_re_reads_its_rotating_token_and_never_reports_it(
    tmp_path: Path,
) -> None:
    presented: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        presented.append(request.headers["authorization"])
        assert request.url.path == "/v1/namespaces/team-a/wallet"
        if request.headers["authorization"] == "Bearer secret-2":
            return httpx.Response(404, json={"detail": "not found"})
        wallets = [
            {"tenant": "team-a", "availableTokens": 7},
            {"tenant": "team-a/other", "availableTokens": 99},
        ]
        return httpx.Response(200, json={"namespace": "team-a", "wallets": wallets})

    token = tmp_path / "token"
    token.write_text("secret-1\n")
    reader = team_a_reader(token, api)
    assert reader() == 7
    token.write_text("secret-2")  # the kubelet rotated it
    with pytest.raises(WalletUnavailable) as refused:
        reader()
    assert "404" in str(refused.value) and "secret" not in str(refused.value)
    assert presented == ["Bearer secret-1", "Bearer secret-2"]


def test_the_wallet_reader_reports_no_limit_under_a_pay_per_use_plan(tmp_path: Path) -> None:
    """The wallet API says the tenant's plan pays overage per use: the reader answers None, so
    the gateway serves past a spent wallet (the overage is charged at the period's close)."""

    def api(request: httpx.Request) -> httpx.Response:
        wallets = [{"tenant": "team-a", "availableTokens": -5, "overage": "PayPerUse"}]
        return httpx.Response(200, json={"namespace": "team-a", "wallets": wallets})

    token = tmp_path / "token"
    token.write_text("secret")
    reader = team_a_reader(token, api)
    assert reader() is None
    allowance = LedgerAllowance(reader)
    assert asyncio.run(allowance.remaining()) is None


def test_the_wallet_readers_reading_says_up_to_when_usage_is_in_the_tokens(
    tmp_path: Path,
) -> None:
    wallets: list[dict[str, Any]] = [
        {"tenant": "team-a", "availableTokens": 7, "usageRecordedThrough": "2026-12-04T13:02:00Z"}
    ]

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"namespace": "team-a", "wallets": wallets})

    token = tmp_path / "token"
    token.write_text("secret")
    reader = team_a_reader(token, api)
    assert reader.reading() == WalletReading(
        7, usage_through=datetime(2026, 12, 4, 13, 2, tzinfo=UTC)
    )
    assert reader() == 7
    # Null: nothing ever recorded (every metered token stays counted); absent: not said.
    wallets[0]["usageRecordedThrough"] = None
    assert reader.reading() == WalletReading(7, usage_through=NOTHING_RECORDED)
    del wallets[0]["usageRecordedThrough"]
    assert reader.reading() == WalletReading(7, usage_through=None)


def test_the_wallet_reader_refuses_an_answer_without_its_tenant(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    empty = httpx.MockTransport(lambda _: httpx.Response(200, json={"wallets": []}))
    reader = WalletApiReader(
        "http://api",
        namespace="a",
        tenant="a",
        token_file=token,
        client=httpx.Client(transport=empty),
    )
    with pytest.raises(WalletUnavailable, match="no wallet of tenant a"):
        reader()
