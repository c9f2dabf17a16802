"""EcoManagerClient against arbitrary answers: a valid Page, or an ApiError naming store and page.

Whatever a server sends (any status, any headers, any bytes, or a broken connection),
fetch_page either returns a Page that is exactly what the body said, or raises one of
our ApiErrors carrying the store and the page. Any other exception is a bug: the sync
engine and the Dagster layer only know how to report ours.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.errors import ApiError, MalformedPage
from ecosync_pipeline.lab.bench.pacing import RateLimiter
from ecosync_pipeline_tests.test_fuzz.strategies import bodies, payloads

STORE = Store(
    identifier="FUZZ",
    name="Fuzzed store",
    base_url="https://shop.example.test",
    token_env="ECOSYNC_TOKEN_FUZZ",
)
TOKEN = "Fz" * 40

TRANSPORT_ERRORS = (
    httpx.ConnectError,
    httpx.ReadTimeout,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.DecodingError,
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
)

statuses = st.one_of(
    st.just(200),
    st.sampled_from([201, 204, 301, 302, 400, 401, 403, 404, 429, 500, 502, 503]),
    st.integers(min_value=100, max_value=599),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-16",
                "application/json; charset=no-such-charset",
                "text/html",
            ]
        )
        | header_text,
        "Content-Encoding": st.sampled_from(["gzip", "deflate", "identity", "br", "zstd", "x"]),
        "Retry-After": st.sampled_from(["0", "-1", "1e400", "nan", "Wed, 21 Oct 2015 07:28:00 GMT"])
        | header_text,
        "Location": header_text,
    },
)


Answer = tuple[int, dict[str, str], bytes] | Exception
"""What the server does for one attempt: (status, headers, body), or fail the connection."""


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    """One answer of the server: a response, or the connection failing."""
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(st.sampled_from(TRANSPORT_ERRORS))("fuzzed failure")
    return draw(statuses), draw(headers), draw(bodies(payloads))


def fetch(script: list[Answer], page: int, per_page: int) -> tuple[Page, list[tuple[int, bytes]]]:
    """fetch_page with ``script`` answering the attempts (the last one repeats), no waiting.

    Returns the page and the (status, body) answers served, the last being the page's.
    """
    served: list[tuple[int, bytes]] = []
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        answer = script[min(len(calls), len(script)) - 1]
        if isinstance(answer, Exception):
            raise answer
        status, head, body = answer
        # A stream, so the client (not this constructor) decodes Content-Encoding.
        response = httpx.Response(status, headers=head, stream=httpx.ByteStream(body))
        served.append((status, body))
        return response

    client = EcoManagerClient(
        STORE,
        TOKEN,
        transport=httpx.MockTransport(handler),
        max_retries=1,
        rate_limiter=RateLimiter(1e9),
        sleep=lambda seconds: None,
    )
    with client:
        return client.fetch_page(page, per_page), served


def _check_error(exc: ApiError, page: int) -> None:
    assert exc.store == STORE.identifier
    assert exc.page == page
    message = str(exc)
    assert f"store {STORE.identifier}" in message and f"page {page}" in message, message
    assert TOKEN not in message


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    script=st.lists(answers(), min_size=1, max_size=2),
    page=st.integers(min_value=1, max_value=10**7),
    per_page=st.integers(min_value=1, max_value=100),
)
@example(script=[(200, {}, b'{"data": {"0": {"id": 1}}}')], page=3, per_page=20)
@example(script=[(200, {}, b'{"data": [{"id": 2}, {"id": 2}]}')], page=1, per_page=20)
@example(script=[(200, {}, b'{"data": [{"id": NaN}]}')], page=9, per_page=20)
@example(
    script=[(503, {"Retry-After": "1e400"}, b""), (200, {}, b'{"data": []}')], page=2, per_page=5
)
@example(script=[(200, {"Content-Encoding": "gzip"}, b'{"data": []}')], page=5, per_page=20)
@example(script=[(301, {"Location": "A:0"}, b"")], page=1, per_page=1)  # httpx: InvalidURL
def test_client_returns_a_valid_page_or_raises_an_api_error_naming_store_and_page(
    script: list[Answer], page: int, per_page: int
) -> None:
    try:
        result, served = fetch(script, page, per_page)
    except ApiError as exc:  # MalformedPage, ApiAuthError, ApiUnavailable, ...
        _check_error(exc, page)
        return
    assert isinstance(result, Page)
    assert (result.store, result.number, result.per_page) == (STORE.identifier, page, per_page)
    # A returned page is exactly what the last body served (a 2xx) said.
    status, body = served[-1]
    assert 200 <= status < 300
    # Orders whose id the table cannot hold are refused by name, the rest returned.
    kept = result.ids + [r.order_id for r in result.refused]
    assert kept == [item["id"] for item in json.loads(body)["data"]]
    assert all(type(i) is int and i > 0 for i in result.ids)
    assert all(b > a for a, b in zip(result.ids, result.ids[1:], strict=False))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=payloads, page=st.integers(min_value=1, max_value=1000))
def test_client_parses_contract_bodies_into_pages_or_malformed_page(
    document: Any, page: int
) -> None:
    """Decoded JSON only (no transport noise): the verdict matches the contract's rules."""
    try:
        result, _ = fetch([(200, {}, json.dumps(document).encode())], page, 20)
    except MalformedPage as exc:
        _check_error(exc, page)
        return
    data = document["data"]
    assert isinstance(data, list)
    assert result.ids == [item["id"] for item in data]


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000, b'{"data": ' + b"[" * 50_000, b'{"data": [{"id": 1, "items": ' + b"[" * 5000],
    ids=["nested-list", "nested-data", "nested-items"],
)
def test_client_refuses_a_deeply_nested_body_as_malformed_page(content: bytes) -> None:
    """A body nested past Python's recursion limit is malformed, not a RecursionError.

    json.loads raises RecursionError (a RuntimeError, not a ValueError) on it, which
    EcoManagerClient._parse does not convert.
    """
    with pytest.raises(MalformedPage) as caught:
        fetch([(200, {}, content)], 4, 20)
    _check_error(caught.value, 4)
