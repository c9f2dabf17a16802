"""Every way into the mirror, against the adversarial server: the table ends as EcoManager.

A store is synced, then its orders change upstream (new orders, status changes with a
newer ``updated_at``, deletions) while the poll (`ecosync sync`), a reconciliation cut
into runs of four calls (`ecosync reconcile --max-calls 4`), a status refresh
(`ecosync refresh-statuses`) and signed webhook deliveries arriving out of order (the
real receiver over HTTP, then its applier) take turns. The server caps its pages, serves
one page short once, starts its ids far from 1 with gaps, and serves odd but valid
orders. After each way in, the table is compared with the server by id sets (live ids
equal, deleted ids flagged) and by each order's state, never by counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from ecosync_pipeline.asgi import ThreadedServer
from ecosync_pipeline.config import Store, load_stores
from ecosync_pipeline.ecomanager.budget import shared_budget
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.storage import make_engine
from ecosync_pipeline.webhooks.apply import apply_pending
from ecosync_pipeline.webhooks.receiver import create_receiver_app
from ecosync_pipeline.webhooks.signature import sign
from ecosync_pipeline.webhooks.worker import StoreReaders
from ecosync_pipeline_tests.adversarial import AdversarialStore
from ecosync_pipeline_tests.test_adversarial.support import CliWorld, make_token

STORE = "MIRR"
MAX_CALLS = 4
"""Each reconcile run's calls: its first one locates the top and the server's page size."""
SECRET = "whsec-adversarial-mirror-test-only"
SECRET_ENV = "ECOSYNC_TEST_MIRROR_WEBHOOK_SECRET"
IDS = [5003 + 7 * i + (i % 3) for i in range(240)]
"""Not dense and far from 1: the page holding an id is not id / per_page."""
SETTLED_BELOW = 200
"""Orders before this index are delivered (final), so the status refresh reads only the top."""
ODD: dict[int, dict[str, Any]] = {
    IDS[3]: {"reference": None, "telephone": None, "wilaya": None, "items": []},
    IDS[17]: {"total": 1500, "created_at": "2024-03-01T09:00:00Z", "coupon": {"code": "X"}},
    IDS[201]: {"full_name": "Zoé Ḥaddād 😀", "commune": "Bab El Oued"},
    IDS[218]: {"confirmation_state_name": "Confirmé", "total_products": "0.00"},
}
"""Odd but valid: nulls, no items, a number for an amount, a UTC date, an unknown field."""


class Clock:
    """EcoManager's ``updated_at``: each change a minute after the one before."""

    def __init__(self) -> None:
        self._at = datetime(2024, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=1)))

    def __call__(self) -> str:
        self._at += timedelta(minutes=1)
        return self._at.isoformat()


def make_store() -> AdversarialStore:
    """The store: capped pages, page 4 short once, sparse ids, odd orders, old ones final."""
    odd = {i: {"order_state_name": "Livré"} for i in IDS[:SETTLED_BELOW]}
    for order_id, fields in ODD.items():
        odd[order_id] = {**odd.get(order_id, {}), **fields}
    return AdversarialStore(
        STORE, make_token(), list(IDS), odd=odd, per_page_cap=15, short={4: 1}, single_bare=True
    )


def utc(value: Any) -> datetime | None:
    """A stored or served timestamp in UTC, so both sides compare."""
    if value is None:
        return None
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def served_state(order: dict[str, Any]) -> tuple[Any, ...]:
    """What must match of an order: its status, a customer field and its version."""
    return (order.get("order_state_name"), order.get("full_name"), utc(order.get("updated_at")))


def stored_state(row: dict[str, Any]) -> tuple[Any, ...]:
    """The same of a stored row."""
    return (row["order_state"], row["full_name"], utc(row["updated_at"]))


def assert_mirrors(world: CliWorld, store: AdversarialStore) -> None:
    """The table equals the server: live ids, flagged deletions, and every order's state."""
    rows = world.stored(store.identifier)
    live = {i for i, r in rows.items() if r["deleted_at"] is None}
    flagged = {i for i, r in rows.items() if r["deleted_at"] is not None}
    assert sorted(live - set(store.ids)) == [], "live in the table, not served"
    assert sorted(set(store.ids) - live) == [], "served, not live in the table"
    assert sorted(set(store.deleted) - flagged) == [], "deleted upstream, not flagged"
    wrong = {
        i: (stored_state(rows[i]), served_state(store.order(i)))
        for i in store.ids
        if stored_state(rows[i]) != served_state(store.order(i))
    }
    assert wrong == {}, "stored state != served state"


def ecosync(world: CliWorld, *args: str) -> str:
    """``ecosync ARGS`` for the store, which must succeed; its output."""
    result = world.run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def reconcile(world: CliWorld) -> dict[str, Any]:
    """One `ecosync reconcile --max-calls MAX_CALLS` run of the store, as JSON."""
    out = ecosync(world, "reconcile", "--store", STORE, "--max-calls", str(MAX_CALLS), "--json")
    [result] = json.loads(out)
    assert isinstance(result, dict)
    return result


def finish_sweep(world: CliWorld) -> int:
    """Reconcile MAX_CALLS calls at a time until the sweep completes; the runs it took."""
    for runs in range(1, 40):
        if reconcile(world)["sweep_complete"]:
            return runs
    raise AssertionError(f"the sweep did not complete in 40 runs of {MAX_CALLS} calls")


class Deliveries:
    """The real receiver for the store over HTTP, and its applier (ties settled upstream)."""

    def __init__(self, world: CliWorld, engine: Engine, stores: list[Store]) -> None:
        self.world, self.engine, self.stores = world, engine, stores
        redis_url = world.env["ECOSYNC_REDIS_URL"]
        self.readers = StoreReaders(
            stores,
            lambda s: EcoManagerClient.from_store(
                s, world.env, rate_limiter=shared_budget(s, redis_url)
            ),
        )

    def post(self, url: str, event: str, order: dict[str, Any], delivery: int) -> None:
        """POST one signed delivery, as EcoManager sends it; it must be answered 200."""
        body = json.dumps({"data": order}, separators=(",", ":")).encode()
        headers = {
            "X-Ecomanager-Event": event,
            "X-Ecomanager-Webhook-ID": str(delivery),
            "X-Ecomanager-Source": self.world.server.store_url(STORE),
            "X-Ecomanager-Signature": sign(SECRET, body),
        }
        answer = httpx.post(f"{url}/webhooks/{STORE}", content=body, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text

    def apply(self) -> None:
        """Apply everything pending, settling ties with GET /orders/{id}."""
        names = {s.identifier: s.name for s in self.stores}
        apply_pending(self.engine, names, readers=self.readers)


@pytest.fixture
def world(cli_world: CliWorld) -> Iterator[tuple[CliWorld, AdversarialStore]]:
    """The store served and configured to take webhooks with the test secret."""
    store = make_store()
    cli_world.configure(store, extra={"webhook_secret_env": SECRET_ENV})
    cli_world.env[SECRET_ENV] = SECRET
    yield cli_world, store


def test_every_way_in_leaves_the_table_equal_to_the_server(
    world: tuple[CliWorld, AdversarialStore],
) -> None:
    cli, store = world
    clock = Clock()
    ecosync(cli, "sync")
    assert_mirrors(cli, store)

    # Upstream: new orders, old orders changing state (pages the poll never reads again),
    # deletions low, in the middle and on the last page.
    store.add(IDS[-1] + 2, IDS[-1] + 9, IDS[-1] + 10)
    store.change(IDS[10], clock(), order_state_name="Retourné")
    store.change(IDS[120], clock(), order_state_name="Annulé", full_name="Client renamed")
    store.change(IDS[220], clock(), order_state_name="Expédié")
    for index in (5, 121, -1):
        store.delete(IDS[index], clock())
    ecosync(cli, "sync")
    first = reconcile(cli)
    assert not first["sweep_complete"] and first["low"] is not None, first
    # Meanwhile, below what the sweep has covered so far: one more change and deletion.
    below = [i for i in store.ids if i < first["low"]]
    store.change(below[2], clock(), order_state_name="Retourné")
    store.delete(below[len(below) // 2], clock())
    finish_sweep(cli)
    assert_mirrors(cli, store)

    # Open orders move on: the status refresh alone brings them up to date.
    store.change(IDS[225], clock(), order_state_name="Livré")
    store.change(IDS[230], clock(), order_state_name="En cours")
    store.delete(IDS[235], clock())
    ecosync(cli, "refresh-statuses", "--store", STORE)
    assert_mirrors(cli, store)

    # Webhooks, out of order: newer states first, a deletion before the change it follows,
    # an order the poll has not read, a repeat, and two states of one second (a tie that
    # only EcoManager's answer to GET /orders/{id} settles).
    shipped_a = IDS[210]
    older_a = store.change(shipped_a, clock(), order_state_name="En cours")
    newer_a = store.change(shipped_a, clock(), order_state_name="Expédié")
    cancelled_b = IDS[215]
    change_b = store.change(cancelled_b, clock(), order_state_name="Annulé")
    deleted_b = store.delete(cancelled_b, clock())
    new_c = store.ids[-1] + 3
    store.add(new_c)
    created_c = store.order(new_c)
    tied_d, same_second = IDS[205], clock()
    first_d = store.change(tied_d, same_second, order_state_name="Confirmé", full_name="D one")
    second_d = store.change(tied_d, same_second, order_state_name="En cours", full_name="D two")
    engine = make_engine(cli.database_url)
    stores = load_stores(cli.stores_file)
    deliveries = Deliveries(cli, engine, stores)
    app = create_receiver_app(engine, stores, environ={SECRET_ENV: SECRET})
    try:
        with ThreadedServer(app) as receiver:
            for n, (event, order) in enumerate(
                [
                    ("OrderStatusChanged", newer_a),
                    ("OrderDeleted", deleted_b),
                    ("OrderCreated", created_c),
                    ("OrderStatusChanged", first_d),
                    ("OrderStatusChanged", older_a),
                    ("OrderStatusChanged", change_b),
                    ("OrderCreated", created_c),
                    ("OrderStatusChanged", second_d),
                ]
            ):
                deliveries.post(receiver.url, event, order, n)
            deliveries.apply()
        assert_mirrors(cli, store)
        assert (-1, tied_d) in store.requests, "the tie was settled by asking EcoManager"
    finally:
        deliveries.readers.close()
        engine.dispose()

    # The poll and a whole sweep after the deliveries keep every newer state.
    ecosync(cli, "sync")
    finish_sweep(cli)
    assert_mirrors(cli, store)
