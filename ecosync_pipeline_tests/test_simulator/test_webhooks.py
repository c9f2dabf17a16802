"""The simulator's webhooks: the registration endpoints, signed delivery, retries, switches.

Deliveries go over real HTTP to a recording server of the test's own, which can be told
to fail, so the retry schedule and the disabling after the last retry are observable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ecosync_pipeline.asgi import ThreadedServer
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.lab.simulator.delivery import DeliveryPolicy
from ecosync_pipeline.lab.simulator.webhooks import WebhookHub
from ecosync_pipeline.webhooks.signature import sign, verify

SECRET = "s3cr3t-for-tests"


@dataclass
class Recorder:
    """What the recording server received, and the status it answers POSTs with."""

    status: int = 200
    posts: list[tuple[dict[str, str], bytes, float]] = field(default_factory=list)
    gets: int = 0


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    rec = Recorder()

    async def hook(request: Request) -> Response:
        if request.method == "GET":
            rec.gets += 1
            return Response(status_code=200)
        rec.posts.append((dict(request.headers), await request.body(), time.monotonic()))
        return Response(status_code=rec.status)

    app = Starlette(routes=[Route("/hook", hook, methods=["GET", "POST"])])
    with ThreadedServer(app) as server:
        yield rec, server.url + "/hook"


def _api(simulator: Simulator, store: str) -> httpx.Client:
    return httpx.Client(
        base_url=simulator.store_url(store) + "/api/shop/v2",
        headers={"Authorization": f"Bearer {simulator.token(store)}"},
    )


def _register(api: httpx.Client, url: str, event: str = "OrderCreated", **extra: Any) -> Any:
    body = {"name": event, "event": event, "http_method": "post", "delivery_url": url}
    response = api.post("/webhooks", json={**body, "secret": SECRET, "is_active": True, **extra})
    assert response.status_code == 201, response.text
    return response.json()["data"]


def _hooked(simulator: Simulator, url: str, **policy: Any) -> WebhookHub:
    """NATUR with five orders, the delivery ``policy`` switches set and an OrderCreated
    webhook to ``url``: the ground each delivery test stands on."""
    simulator.configure([StoreSpec("NATUR", count=5)])
    hub = simulator.webhooks
    hub.dispatcher.policy = hub.dispatcher.policy.updated(**policy)
    with _api(simulator, "NATUR") as api:
        _register(api, url)
    return hub


def _wait(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_created_webhook_is_activated_by_a_get_and_delivers_signed_orders(
    simulator: Simulator, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    simulator.configure([StoreSpec("NATUR", count=20)])
    with _api(simulator, "NATUR") as api:
        hook = _register(api, url)
    assert hook["is_active"] is True and rec.gets == 1
    assert "secret" not in hook
    [new_id] = simulator.add_orders("NATUR", 1)
    _wait(lambda: len(rec.posts) == 1)
    headers, body, _ = rec.posts[0]
    assert verify(SECRET, body, headers["x-ecomanager-signature"])
    assert headers["x-ecomanager-event"] == "OrderCreated"
    assert headers["x-ecomanager-webhook-id"] == str(hook["id"])
    assert headers["x-ecomanager-source"] == simulator.store_url("NATUR")
    assert json.loads(body)["data"] == simulator.order("NATUR", new_id)


def test_webhook_to_a_url_that_does_not_answer_stays_inactive(simulator: Simulator) -> None:
    simulator.configure([StoreSpec("NATUR", count=5)])
    with _api(simulator, "NATUR") as api:
        hook = _register(api, "http://127.0.0.1:9/nothing-listens-here")
        assert hook["is_active"] is False
        refused = api.post(
            "/webhooks",
            json={
                "name": "x",
                "event": "OrderCreated",
                "secret": "s",
                "delivery_url": "http://example.com/hook",
            },
        )
        assert refused.status_code == 422 and "delivery_url" in refused.json()["errors"]
        assert (
            api.post("/webhooks", headers={"Authorization": "Bearer nope"}, json={}).status_code
            == 401
        )


def test_list_pages_by_cursor_and_update_status_and_delete(
    simulator: Simulator, recorder: tuple[Recorder, str]
) -> None:
    _, url = recorder
    simulator.configure([StoreSpec("NATUR", count=5)])
    with _api(simulator, "NATUR") as api:
        ids = [
            _register(api, url, event)["id"]
            for event in ("OrderCreated", "OrderDeleted", "OrderStatusChanged")
        ]
        first = api.get("/webhooks", params={"per_page": 2}).json()
        assert [h["id"] for h in first["data"]] == ids[:2]
        second = api.get(
            "/webhooks", params={"per_page": 2, "cursor": first["meta"]["next_cursor"]}
        )
        assert [h["id"] for h in second.json()["data"]] == ids[2:]
        assert second.json()["meta"]["next_cursor"] is None
        assert [
            h["id"] for h in api.get("/webhooks", params={"ids": f"{ids[2]}"}).json()["data"]
        ] == ids[2:]
        off = api.put(f"/webhooks/{ids[0]}/status", json={"status": False}).json()["data"]
        assert off["is_active"] is False
        renamed = api.put(f"/webhooks/{ids[0]}", json={"name": "renamed"}).json()["data"]
        assert renamed["name"] == "renamed" and renamed["is_active"] is False
        assert api.delete(f"/webhooks/{ids[1]}").status_code == 204
        assert api.get(f"/webhooks/{ids[1]}").status_code == 404


def test_failed_deliveries_are_retried_on_a_growing_schedule_then_the_webhook_disabled(
    simulator: Simulator, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    simulator.configure([StoreSpec("NATUR", count=5)])
    hub = simulator.webhooks
    # 22 s * 5**k shrunk 200 times: 110 ms, 550 ms, 2.75 s; three retries suffice. Gaps
    # of this size keep their order even when a busy machine delays a delivery by 0.3 s.
    hub.dispatcher.policy = hub.dispatcher.policy.updated(time_scale=0.005, retries=3)
    with _api(simulator, "NATUR") as api:
        hook = _register(api, url)
        rec.status = 500
        simulator.add_orders("NATUR", 1)
        assert hub.dispatcher.wait_idle(20)
        assert len(rec.posts) == 4  # the first attempt and 3 retries
        gaps = [b[2] - a[2] for a, b in zip(rec.posts, rec.posts[1:], strict=False)]
        assert gaps == sorted(gaps) and gaps[-1] > 4 * gaps[0]
        assert api.get(f"/webhooks/{hook['id']}").json()["data"]["is_active"] is False
    assert "disabled after 4 failed deliveries" in hub.notices[0]


def test_a_receiver_back_before_the_last_retry_gets_the_delivery(
    simulator: Simulator, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    hub = _hooked(simulator, url, time_scale=0.001)
    rec.status = 503
    simulator.add_orders("NATUR", 1)
    _wait(lambda: len(rec.posts) >= 2)
    rec.status = 200
    assert hub.dispatcher.wait_idle(10)
    assert hub.dispatcher.counts["delivered"] == 1 and not hub.notices


def test_switches_drop_and_duplicate_a_share_of_deliveries(
    simulator: Simulator, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    hub = _hooked(simulator, url, drop_rate=0.3, duplicate_rate=0.3)
    simulator.add_orders("NATUR", 40)
    assert hub.dispatcher.wait_idle(10)
    counts = hub.dispatcher.counts
    assert counts["dropped"] > 0 and counts["duplicated"] > 0
    assert len(rec.posts) == 40 - counts["dropped"] + counts["duplicated"]
    with pytest.raises(Exception, match="unknown delivery switch"):
        hub.dispatcher.policy.updated(lose_rate=0.1)


def test_deletion_and_status_change_deliver_their_events(
    simulator: Simulator, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    simulator.configure([StoreSpec("NATUR", count=5)])
    with _api(simulator, "NATUR") as api:
        for event in ("OrderDeleted", "OrderStatusChanged", "OrderConfirmationStatusChanged"):
            _register(api, url, event)
    before = simulator.order("NATUR", 2)
    assert before is not None
    simulator.set_status("NATUR", 3, "Confirmé")
    simulator.delete_orders("NATUR", [2])
    _wait(lambda: len(rec.posts) == 3)
    by_event = {h["x-ecomanager-event"]: json.loads(b)["data"] for h, b, _ in rec.posts}
    assert by_event["OrderStatusChanged"]["order_state_name"] == "Confirmé"
    assert by_event["OrderConfirmationStatusChanged"]["id"] == 3
    deleted = by_event["OrderDeleted"]
    assert deleted["id"] == 2 and deleted["deleted_at"] >= before["updated_at"]
    assert sign(SECRET, b"x") != sign("other", b"x")


def test_switches_delay_and_reorder_a_share_of_deliveries(
    simulator: Simulator, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    hub = _hooked(simulator, url)
    hub.dispatcher.policy = hub.dispatcher.policy.updated(delay_rate=1.0, delay_seconds=0.3)
    started = time.monotonic()
    simulator.add_orders("NATUR", 2)
    assert hub.dispatcher.wait_idle(10)
    assert min(at for _, _, at in rec.posts) - started >= 0.3
    rec.posts.clear()
    hub.dispatcher.policy = hub.dispatcher.policy.updated(
        delay_rate=0.0, reorder_rate=0.5, reorder_window=0.5
    )
    created = simulator.add_orders("NATUR", 20)
    assert hub.dispatcher.wait_idle(10)
    arrived = [json.loads(body)["data"]["id"] for _, body, _ in rec.posts]
    assert sorted(arrived) == created and arrived != created
    assert hub.dispatcher.counts["reordered"] > 0


def test_default_policy_is_six_retries_growing_to_about_a_day_and_the_scale_shrinks_it() -> None:
    policy = DeliveryPolicy()
    intervals = [policy.interval(k) for k in range(1, policy.retries + 1)]
    assert policy.retries == 6 and policy.timeout == 5.0
    assert all(b == 5 * a for a, b in zip(intervals, intervals[1:], strict=False))
    assert 23 * 3600 < sum(intervals) < 25 * 3600  # the last about 24 hours after the first
    shrunk = policy.updated(time_scale=0.001)
    assert sum(shrunk.interval(k) for k in range(1, 7)) == pytest.approx(sum(intervals) * 0.001)
