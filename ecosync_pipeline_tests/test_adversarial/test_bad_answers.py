"""A 200 that is not the contract's page, and redirects, in the middle of a read.

A proxy's login page, a JSON body without ``data`` or with ``data`` not a list: refused
naming the store and page, that page's orders not written and the position left on the
last good page. A redirect (301, 302, 307, 308; to another host or another path) is not
followed (the contract has none): the store fails naming the page, the Location and
what to check, and the host redirected to never sees a request, let alone the token.
"""

from __future__ import annotations

import json

import pytest

from ecosync_pipeline.errors import ApiError, MalformedPage
from ecosync_pipeline.runtime import Runtime
from ecosync_pipeline_tests.adversarial import AdversarialServer, AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import CliWorld, make_token

FIRST = list(range(501, 541))
"""Two pages of 20, synced before the bad answer."""
MORE = list(range(541, 601))
"""Pages 3, 4 and 5: page 4 answers badly."""

LOGIN = b"<!DOCTYPE html><html><body><form action='/login'>Sign in</form></body></html>"

# case: (Content-Type, body) of the 200 that page 4 answers with
BODIES: dict[str, tuple[str, bytes]] = {
    "proxy login page": ("text/html; charset=utf-8", LOGIN),
    "data missing": ("application/json", json.dumps({"meta": {"total": 100}}).encode()),
    "data an object": ("application/json", json.dumps({"data": {"541": {"id": 541}}}).encode()),
    "data a string": ("application/json", json.dumps({"data": "[]"}).encode()),
    "a JSON list": ("application/json", json.dumps([{"id": 561}]).encode()),
}


def synced_then_more(world: CliWorld, runtime: Runtime, store: AdversarialStore) -> None:
    """A store synced to its end, then three more pages of orders upstream."""
    world.configure(store)
    assert runtime.sync(store.identifier, budget_seconds=600).reached_end
    store.add(*MORE)


def assert_left_on_page_3(world: CliWorld, runtime: Runtime, store: AdversarialStore) -> None:
    """Page 3 is kept, nothing after it; the next good run reads every order once."""
    assert set(world.stored(store.identifier)) == set(FIRST + MORE[:20])
    store.replaced.clear()
    store.redirects.clear()
    again = runtime.sync(store.identifier, budget_seconds=600)
    assert again.reached_end and again.from_page == 3
    assert set(world.stored(store.identifier)) == set(store.ids)


@pytest.mark.parametrize("case", list(BODIES))
def test_a_200_that_is_not_a_page_is_refused_naming_store_and_page_and_writes_nothing(
    case: str, pg_world: CliWorld, sleepless_runtime: Runtime
) -> None:
    store = AdversarialStore("BODY", make_token(), list(FIRST))
    synced_then_more(pg_world, sleepless_runtime, store)
    store.replaced[4] = BODIES[case]
    with pytest.raises(MalformedPage) as caught:
        sleepless_runtime.sync("BODY", budget_seconds=600)
    error = caught.value
    assert error.store == "BODY" and error.page == 4
    message = str(error)
    assert "store BODY" in message and "page 4" in message, message
    assert pg_world.server.store_url("BODY") in message, message  # what to check
    assert store.requests.count((4, 20)) == 1, "a page that broke the contract was asked again"
    assert_left_on_page_3(pg_world, sleepless_runtime, store)


def other_host(server: AdversarialServer, path: str) -> str:
    """The same server under another host name: another origin to httpx."""
    return server.url.replace("127.0.0.1", "localhost") + path


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("where", ["another host", "another path"])
def test_a_redirect_is_not_followed_and_the_token_never_reaches_another_host(
    status: int, where: str, pg_world: CliWorld, sleepless_runtime: Runtime
) -> None:
    store = AdversarialStore("MOVED", make_token(), list(FIRST))
    # The host redirected to serves the same contract and records what reaches it.
    trap = AdversarialStore("TRAP", make_token(), list(FIRST + MORE))
    synced_then_more(pg_world, sleepless_runtime, store)
    pg_world.server.serve(store, trap)
    path = "/TRAP/api/shop/v2/orders?page=4&per_page=20"
    location = other_host(pg_world.server, path) if where == "another host" else path
    store.redirects[4] = (status, location)
    with pytest.raises(ApiError) as caught:
        sleepless_runtime.sync("MOVED", budget_seconds=600)
    assert trap.requests == [] and trap.authorizations == []
    error = caught.value
    assert error.store == "MOVED" and error.page == 4
    message = str(error)
    assert f"HTTP {status}" in message and location in message and "base_url" in message
    assert store.requests.count((4, 20)) == 1
    assert_left_on_page_3(pg_world, sleepless_runtime, store)
