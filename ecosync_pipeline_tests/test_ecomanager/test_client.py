"""EcoManagerClient against scripted servers (httpx.MockTransport).

Waiting is faked (a recording ``sleep``) except where the wait itself is the behaviour
under test; those tests measure real time.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.client import EcoManagerClient, RequestStats
from ecosync_pipeline.errors import (
    ApiAuthError,
    ApiError,
    ApiRateLimited,
    ApiUnavailable,
    ConfigError,
    MalformedPage,
    MissingToken,
    ServerHoldOff,
)
from ecosync_pipeline.lab.bench.pacing import RateLimiter
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec

TOKEN = "Zq9Tk" * 16  # 80 alphanumeric characters, easy to spot if it ever leaks
TOKEN_ENV = "ECOSYNC_TEST_STORE_TOKEN"

Scripted = httpx.Response | Exception


def make_store(rps: float = 1000.0, per_page: int = 20) -> Store:
    """A store with a fresh identifier, so it never shares a limiter with another test."""
    return Store(
        identifier=f"T{uuid.uuid4().hex[:12].upper()}",
        name="Test store",
        base_url="https://shop.example.test",
        token_env=TOKEN_ENV,
        per_page=per_page,
        requests_per_second=rps,
    )


def body(ids: Sequence[int], **extra: Any) -> dict[str, Any]:
    """A contract-shaped page body holding orders with ``ids``."""
    return {"data": [{"id": i, "reference": f"T{i}"} for i in ids], **extra}


class Server:
    """Answers requests from a script, in order, and records every request it sees."""

    def __init__(self, script: Sequence[Scripted] | Callable[[httpx.Request], Scripted]):
        self.script = script
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if callable(self.script):
            item = self.script(request)
        else:
            item = self.script[min(len(self.requests), len(self.script)) - 1]
        if isinstance(item, Exception):
            raise item
        return item


class Sleeps:
    """A fake sleep that records what it was asked to wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def client_for(
    server: Server, store: Store | None = None, **kw: Any
) -> tuple[EcoManagerClient, Sleeps]:
    sleeps = Sleeps()
    kw.setdefault("sleep", sleeps)
    client = EcoManagerClient(
        store or make_store(), TOKEN, transport=httpx.MockTransport(server), **kw
    )
    return client, sleeps


def ok(ids: Sequence[int] = (1, 2, 3), **extra: Any) -> httpx.Response:
    return httpx.Response(200, json=body(ids, **extra))


def test_client_satisfies_page_fetcher_protocol() -> None:
    client, _ = client_for(Server([ok()]))
    with client:
        fetcher: PageFetcher = client
        assert fetcher.fetch_page(1).ids == [1, 2, 3]


def test_fetch_page_sends_contract_request_with_bearer_token_and_store_per_page() -> None:
    server = Server([ok([5, 8])])
    store = make_store(per_page=20)
    client, _ = client_for(server, store)
    with client:
        page = client.fetch_page(7)
    (request,) = server.requests
    assert request.method == "GET"
    assert request.url.scheme == "https" and request.url.host == "shop.example.test"
    assert request.url.path == "/api/shop/v2/orders"
    assert dict(request.url.params) == {"page": "7", "per_page": "20"}
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/json"
    assert (page.store, page.number, page.per_page, page.ids) == (store.identifier, 7, 20, [5, 8])


def test_fetch_page_caps_per_page_at_100_when_more_is_asked() -> None:
    server = Server([ok()])
    client, _ = client_for(server)
    with client:
        page = client.fetch_page(1, per_page=250)
    assert server.requests[0].url.params["per_page"] == "100"
    assert page.per_page == 100


def test_fetch_page_parses_page_without_meta_or_links() -> None:
    client, _ = client_for(Server([ok([10, 11])]))
    with client:
        page = client.fetch_page(3)
    assert page.ids == [10, 11]
    assert page.last_page is None and page.total is None


def test_fetch_page_reads_meta_hints_when_present() -> None:
    meta = {"current_page": 2, "last_page": 9, "per_page": 2, "total": 17}
    links = {"first": "x", "last": "y", "prev": None, "next": "z"}
    client, _ = client_for(Server([ok([3, 4], meta=meta, links=links)]))
    with client:
        page = client.fetch_page(2, per_page=2)
    assert (page.last_page, page.total, page.ids) == (9, 17, [3, 4])


def test_fetch_page_returns_empty_page_past_the_end() -> None:
    client, _ = client_for(Server([ok([])]))
    with client:
        page = client.fetch_page(9999)
    assert page.is_empty and page.is_end


def test_fetch_page_rejects_page_zero_before_any_request() -> None:
    server = Server([ok()])
    client, _ = client_for(server)
    with client, pytest.raises(ValueError, match="page must be"):
        client.fetch_page(0)
    assert server.requests == []


def test_five_503s_then_200_succeed_after_six_requests_with_growing_backoff() -> None:
    server = Server([httpx.Response(503)] * 5 + [ok([1])])
    client, sleeps = client_for(server, backoff_base=0.5, backoff_max=30.0)
    with client:
        page = client.fetch_page(4)
    assert page.ids == [1]
    assert len(server.requests) == 6
    assert (client.stats.server_error, client.stats.ok, client.stats.retries) == (5, 1, 5)
    assert client.stats.total == 6
    # Equal jitter: each wait lies between half and all of base * 2**retry.
    assert len(sleeps.calls) == 5
    for retry, wait in enumerate(sleeps.calls):
        full = 0.5 * 2**retry
        assert full / 2 <= wait <= full


def test_backoff_never_exceeds_backoff_max() -> None:
    server = Server([httpx.Response(500)] * 8 + [ok()])
    client, sleeps = client_for(server, max_retries=8, backoff_base=1.0, backoff_max=3.0)
    with client:
        client.fetch_page(1)
    assert max(sleeps.calls) <= 3.0
    assert min(sleeps.calls[3:]) >= 1.5


def test_server_retry_after_on_503_is_a_floor_for_the_backoff() -> None:
    server = Server([httpx.Response(503, headers={"Retry-After": "7"}), ok()])
    client, sleeps = client_for(server, backoff_base=0.1)
    with client:
        client.fetch_page(1)
    assert sleeps.calls == [7.0]


def test_retries_exhausted_raise_api_unavailable_naming_store_and_page() -> None:
    server = Server([httpx.Response(502)])
    store = make_store()
    client, sleeps = client_for(server, store, max_retries=3)
    with client, pytest.raises(ApiUnavailable) as info:
        client.fetch_page(42)
    assert len(server.requests) == 4
    assert len(sleeps.calls) == 3
    err = info.value
    assert (err.store, err.page) == (store.identifier, 42)
    message = str(err)
    assert store.identifier in message and "page 42" in message
    assert "HTTP 502" in message and "rerun" in message and store.base_url in message
    assert client.stats.server_error == 4 and client.stats.retries == 3


def test_max_retries_zero_makes_exactly_one_request() -> None:
    server = Server([httpx.Response(503)])
    client, sleeps = client_for(server, max_retries=0)
    with client, pytest.raises(ApiUnavailable):
        client.fetch_page(1)
    assert len(server.requests) == 1 and sleeps.calls == []


def test_read_timeout_is_retried_then_succeeds() -> None:
    server = Server([httpx.ReadTimeout("timed out"), ok([9])])
    client, sleeps = client_for(server)
    with client:
        assert client.fetch_page(2).ids == [9]
    assert len(server.requests) == 2 and len(sleeps.calls) == 1
    assert (client.stats.timeout, client.stats.ok, client.stats.total) == (1, 1, 2)


def test_timeouts_exhausted_raise_api_unavailable_chained_to_the_timeout() -> None:
    server = Server([httpx.ConnectTimeout("slow")])
    client, _ = client_for(server, max_retries=2, timeout=3.0)
    with client, pytest.raises(ApiUnavailable, match="no answer within 3 s") as info:
        client.fetch_page(5)
    assert isinstance(info.value.__cause__, httpx.ConnectTimeout)
    assert len(server.requests) == 3 and client.stats.timeout == 3


def test_connection_error_is_retried_then_succeeds() -> None:
    server = Server([httpx.ConnectError("connection refused"), ok([4])])
    client, _ = client_for(server)
    with client:
        assert client.fetch_page(1).ids == [4]
    assert len(server.requests) == 2
    assert (client.stats.connection_error, client.stats.retries) == (1, 1)


def test_connection_reset_mid_response_is_retried() -> None:
    server = Server([httpx.RemoteProtocolError("peer closed"), httpx.ReadError("reset"), ok()])
    client, _ = client_for(server)
    with client:
        client.fetch_page(1)
    assert len(server.requests) == 3 and client.stats.connection_error == 2


def test_429_with_retry_after_1_waits_at_least_one_second_in_real_time() -> None:
    server = Server([httpx.Response(429, headers={"Retry-After": "1"}), ok([1])])
    client, _ = client_for(server, sleep=time.sleep)
    start = time.monotonic()
    with client:
        client.fetch_page(1)
    elapsed = time.monotonic() - start
    assert len(server.requests) == 2
    assert elapsed >= 1.0
    assert (client.stats.rate_limited, client.stats.ok, client.stats.retries) == (1, 1, 1)


def test_429_retry_after_beyond_the_cap_is_not_slept_nor_retried_and_names_when() -> None:
    server = Server([httpx.Response(429, headers={"Retry-After": "3600"}), ok()])
    store = make_store()
    client, sleeps = client_for(server, store, retry_after_cap=45.0)
    with client, pytest.raises(ServerHoldOff) as caught:
        client.fetch_page(6)
    assert sleeps.calls == [] and len(server.requests) == 1
    error = caught.value
    assert error.store == store.identifier and error.page == 6
    expected = datetime.now(timezone.utc) + timedelta(seconds=3600)
    assert abs((error.retry_at - expected).total_seconds()) < 5
    message = str(error)
    assert store.identifier in message and "page 6" in message
    assert f"{error.retry_at:%Y-%m-%d %H:%M:%S} UTC" in message and "next run" in message


def test_a_wait_past_the_time_limit_is_not_slept() -> None:
    server = Server([httpx.Response(503, headers={"Retry-After": "30"}), ok()])
    client, sleeps = client_for(server)
    with client, client.time_limit(10), pytest.raises(ServerHoldOff, match="time budget"):
        client.fetch_page(2)
    assert sleeps.calls == [] and len(server.requests) == 1


def test_429_without_retry_after_waits_default_retry_after() -> None:
    server = Server(
        [httpx.Response(429), httpx.Response(429, headers={"Retry-After": "soon"}), ok()]
    )
    client, sleeps = client_for(server, default_retry_after=2.5)
    with client:
        client.fetch_page(1)
    assert sleeps.calls == [2.5, 2.5]


def test_429_retry_after_as_http_date_waits_until_that_date() -> None:
    date = formatdate(time.time() + 20, usegmt=True)
    server = Server([httpx.Response(429, headers={"Retry-After": date}), ok()])
    client, sleeps = client_for(server)
    with client:
        client.fetch_page(1)
    assert 17.0 <= sleeps.calls[0] <= 20.0


def test_persistent_429_raises_api_rate_limited_after_max_retries() -> None:
    server = Server([httpx.Response(429, headers={"Retry-After": "0"})])
    store = make_store()
    client, _ = client_for(server, store, max_retries=2)
    with client, pytest.raises(ApiRateLimited) as info:
        client.fetch_page(8)
    assert len(server.requests) == 3
    assert (info.value.store, info.value.page) == (store.identifier, 8)
    assert "requests_per_second" in str(info.value) and "page 8" in str(info.value)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_tried_once_and_names_the_token_variable(status: int) -> None:
    server = Server([httpx.Response(status)])
    store = make_store()
    client, sleeps = client_for(server, store)
    with client, pytest.raises(ApiAuthError) as info:
        client.fetch_page(3)
    assert len(server.requests) == 1 and sleeps.calls == []
    message = str(info.value)
    assert f"HTTP {status}" in message and TOKEN_ENV in message and store.identifier in message
    assert TOKEN not in message
    assert (client.stats.auth_error, client.stats.retries, client.stats.total) == (1, 0, 1)


def test_unexpected_404_is_not_retried_and_points_at_base_url() -> None:
    server = Server([httpx.Response(404)])
    client, _ = client_for(server)
    with client, pytest.raises(ApiError, match="HTTP 404.*base_url") as info:
        client.fetch_page(1)
    assert type(info.value) is ApiError
    assert len(server.requests) == 1 and client.stats.http_error == 1


def test_redirect_is_reported_with_its_location_not_followed() -> None:
    server = Server([httpx.Response(301, headers={"Location": "https://new.example.test/x"})])
    client, _ = client_for(server)
    with client, pytest.raises(ApiError, match="new.example.test"):
        client.fetch_page(1)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(200, json={"data": {"id": 1}}), "'data' is dict, not a list"),
        (httpx.Response(200, json={"data": [{"id": 1}, {"reference": "X"}]}), "data[1]"),
        (httpx.Response(200, json={"data": [{"id": "7"}]}), "'id'"),
        (httpx.Response(200, json=[1, 2]), "not a JSON object"),
        (httpx.Response(200, content=b"<html>Bad gateway</html>"), "not JSON"),
        (httpx.Response(200, json={"meta": {}}), "'data' is NoneType"),
    ],
    ids=["data-not-list", "order-without-id", "id-not-int", "body-a-list", "non-json", "no-data"],
)
def test_malformed_page_raises_naming_store_page_and_reason_without_retry(
    response: httpx.Response, reason: str
) -> None:
    server = Server([response])
    store = make_store()
    client, sleeps = client_for(server, store)
    with client, pytest.raises(MalformedPage) as info:
        client.fetch_page(77)
    message = str(info.value)
    assert store.identifier in message and "page 77" in message and reason in message
    assert "rerun" in message
    assert (info.value.store, info.value.page) == (store.identifier, 77)
    assert len(server.requests) == 1 and sleeps.calls == []
    assert (client.stats.malformed, client.stats.ok, client.stats.total) == (1, 0, 1)


def test_token_never_appears_in_errors_logs_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    # A hostile or broken server echoes the token back in every body it sends.
    echo = f"error for Bearer {TOKEN}"
    scripts: list[list[Scripted]] = [
        [httpx.Response(500, text=echo)] * 3,
        [httpx.ConnectError(echo)] * 3,
        [httpx.Response(429, text=echo)] * 3,
        [httpx.Response(401, text=echo)],
        [httpx.Response(403, text=echo)],
        [httpx.Response(200, text=echo)],
        [httpx.Response(200, json={"data": echo})],
        [httpx.Response(302, headers={"Location": f"https://x.test/?t={TOKEN}"})],
    ]
    messages: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for script in scripts:
            client, _ = client_for(Server(script), max_retries=2)
            with client:
                messages.append(repr(client))
                with pytest.raises(ApiError) as info:
                    client.fetch_page(1)
            messages.append(str(info.value))
            cause: BaseException | None = info.value
            while cause is not None:  # nor in a traceback's chained causes
                assert TOKEN not in str(cause)
                cause = cause.__cause__
    assert len(messages) == 2 * len(scripts)
    for message in messages:
        assert TOKEN not in message
    assert caplog.records, "the retries above must have logged"
    assert TOKEN not in caplog.text
    assert all(TOKEN not in str(r.args) for r in caplog.records)


def test_retry_warning_names_store_page_attempt_and_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = Server([httpx.Response(503), ok()])
    store = make_store()
    client, sleeps = client_for(server, store)
    with client, caplog.at_level(logging.WARNING, logger="ecosync_pipeline.ecomanager"):
        client.fetch_page(12)
    # Only the client's warnings: another logger's level may have been set by an earlier
    # test's Dagster instance (python_log_level), which at_level does not undo.
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert f"store {store.identifier}" in message and "page 12" in message
    assert "HTTP 503" in message and "attempt 1 of 6" in message
    assert f"{sleeps.calls[0]:.2f} s" in message


def test_stats_snapshot_diff_counts_one_runs_requests() -> None:
    server = Server(
        lambda r: (
            httpx.Response(503)
            if r.url.params["page"] == "2" and len(server.requests) == 2
            else ok()
        )
    )
    client, _ = client_for(server)
    with client:
        client.fetch_page(1)
        before = client.stats.snapshot()
        client.fetch_page(2)
        client.fetch_page(3)
        run = client.stats - before
    assert (run.total, run.ok, run.server_error, run.retries, run.pages) == (3, 2, 1, 1, 2)
    assert before.total == 1, "a snapshot does not move with later requests"
    assert client.stats.as_dict() == {
        "ok": 3,
        "server_error": 1,
        "timeout": 0,
        "connection_error": 0,
        "rate_limited": 0,
        "auth_error": 0,
        "malformed": 0,
        "too_large": 0,
        "http_error": 0,
        "retries": 1,
        "total": 4,
    }
    assert isinstance(run, RequestStats)


def test_from_store_reads_the_token_from_the_store_variable() -> None:
    server = Server([ok()])
    store = make_store()
    with EcoManagerClient.from_store(
        store, {TOKEN_ENV: TOKEN}, transport=httpx.MockTransport(server)
    ) as client:
        client.fetch_page(1)
    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_from_store_raises_missing_token_naming_the_variable() -> None:
    with pytest.raises(MissingToken, match=TOKEN_ENV):
        EcoManagerClient.from_store(make_store(), {})


def test_token_with_a_line_break_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match=TOKEN_ENV) as info:
        EcoManagerClient(make_store(), TOKEN + "\nX-Evil: 1")
    assert TOKEN not in str(info.value)


def test_closed_client_refuses_to_send() -> None:
    server = Server([ok()])
    client, _ = client_for(server)
    with client:
        pass
    with pytest.raises(RuntimeError):
        client.fetch_page(1)
    assert server.requests == []


def test_explicit_rate_limiter_is_used_instead_of_the_shared_one() -> None:
    limiter = RateLimiter(500.0)
    client, _ = client_for(Server([ok()]), rate_limiter=limiter)
    with client:
        client.fetch_page(1)
    assert client.rate_limiter is limiter


# --- against the simulator, over real HTTP ------------------------------------------


def served_client(simulator: Simulator, **kw: Any) -> tuple[EcoManagerClient, str, Sleeps]:
    """A simulated store with a fresh identifier and a client for it (fake sleep)."""
    identifier = f"C{uuid.uuid4().hex[:12].upper()}"
    simulator.configure([StoreSpec(identifier, count=95, first_id=1000, gap_rate=0.1)])
    store = replace(simulator.as_store(identifier), requests_per_second=200.0)
    sleeps = Sleeps()
    kw.setdefault("sleep", sleeps)
    client = EcoManagerClient.from_store(
        store, {store.token_env: simulator.token(identifier)}, **kw
    )
    return client, identifier, sleeps


def test_served_pages_match_the_simulator_ground_truth(simulator: Simulator) -> None:
    client, sid, _ = served_client(simulator)
    with client:
        first, last, past = client.fetch_page(1), client.fetch_page(5), client.fetch_page(6)
    assert first.ids == simulator.page_ids(sid, 1)
    assert last.ids == simulator.page_ids(sid, 5) and len(last.ids) == 15
    assert past.is_empty
    assert first.last_page == 5 and first.total == 95
    assert simulator.request_count(sid) == client.stats.total == 3


def test_served_503s_then_success_cost_exactly_the_requests_counted(
    simulator: Simulator,
) -> None:
    client, sid, sleeps = served_client(simulator)
    simulator.fail_next(sid, 3, "unavailable")
    with client:
        page = client.fetch_page(2)
    assert page.ids == simulator.page_ids(sid, 2)
    assert simulator.request_count(sid) == 4 == client.stats.total
    assert simulator.request_count(sid, "unavailable") == 3 == client.stats.server_error
    assert len(sleeps.calls) == 3


def test_served_429_is_retried_after_its_retry_after_in_real_time(simulator: Simulator) -> None:
    client, sid, _ = served_client(simulator, sleep=time.sleep)
    simulator.fail_next(sid, 1, "rate_limited")  # Retry-After: 1
    start = time.monotonic()
    with client:
        client.fetch_page(1)
    assert time.monotonic() - start >= 1.0
    assert simulator.request_count(sid) == 2 and client.stats.rate_limited == 1


def test_served_timeout_is_retried_then_succeeds(simulator: Simulator) -> None:
    # The simulated timeout holds the answer for 5 s; 1 s leaves the retry room on a
    # busy machine.
    client, sid, _ = served_client(simulator, timeout=1.0)
    simulator.fail_next(sid, 1, "timeout")
    with client:
        page = client.fetch_page(1)
    assert page.ids == simulator.page_ids(sid, 1)
    assert (client.stats.timeout, client.stats.ok) == (1, 1)


def test_served_refused_token_is_tried_once(simulator: Simulator) -> None:
    client, sid, _ = served_client(simulator)
    simulator.fail_next(sid, 1, "forbidden")
    with client, pytest.raises(ApiAuthError, match="HTTP 403"):
        client.fetch_page(1)
    assert simulator.request_count(sid) == 1


def test_served_wrong_token_is_refused_with_403_and_not_leaked(simulator: Simulator) -> None:
    identifier = f"C{uuid.uuid4().hex[:12].upper()}"
    simulator.configure([StoreSpec(identifier, count=5)])
    client = EcoManagerClient(simulator.as_store(identifier), TOKEN)
    with client, pytest.raises(ApiAuthError) as info:
        client.fetch_page(1)
    assert TOKEN not in str(info.value) and "HTTP 403" in str(info.value)
    assert simulator.request_count(identifier, "forbidden") == 1


@pytest.mark.parametrize("kind", ["malformed_data", "malformed_id"])
def test_served_malformed_page_raises_naming_the_page(simulator: Simulator, kind: str) -> None:
    client, sid, _ = served_client(simulator)
    simulator.fail_next(sid, 1, kind)
    with client, pytest.raises(MalformedPage, match=f"store {sid}: page 3: "):
        client.fetch_page(3)
    assert simulator.request_count(sid) == 1


def test_connection_refused_is_retried_then_raises_api_unavailable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = replace(make_store(), base_url=f"http://127.0.0.1:{port}")
    sleeps = Sleeps()
    client = EcoManagerClient(store, TOKEN, max_retries=2, sleep=sleeps)
    with client, pytest.raises(ApiUnavailable, match="connection error") as info:
        client.fetch_page(1)
    assert client.stats.connection_error == 3 and len(sleeps.calls) == 2
    assert isinstance(info.value.__cause__, httpx.ConnectError)
