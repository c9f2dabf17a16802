"""The merge rule where the poll and the webhooks meet (DESIGN, invariant 15).

The simulator serves the store (pages and ``GET /orders/{id}``) and deliveries go through
the receiver over real HTTP, on PostgreSQL and on SQLite: a page read before a deletion
never revives it, a tie never revives it, and two deliveries of one ``updated_at`` end
in EcoManager's state, whatever their arrival order.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.lab.simulator import Simulator, StoreSpec
from ecosync_pipeline.storage import ensure_store, store_summary, write_page
from ecosync_pipeline.storage.schema import orders, webhook_inbox
from ecosync_pipeline.webhooks.apply import apply_pending
from ecosync_pipeline_tests.test_webhooks.conftest import Receiver, body_of

NAMES = {"NATUR": "NATUR shop"}


@pytest.fixture
def natur(simulator: Simulator) -> Iterator[EcoManagerClient]:
    """NATUR on the simulator (40 orders), and a client reading it."""
    simulator.configure([StoreSpec("NATUR", count=40, seed=5)])
    store = simulator.as_store("NATUR", per_page=20)
    with EcoManagerClient(store, simulator.token("NATUR")) as client:
        yield client


def state_of(engine: Engine, order_id: int) -> tuple[str | None, bool]:
    """(order_state, flagged deleted) of a stored NATUR order."""
    c = orders.c
    with engine.connect() as conn:
        state, deleted_at = conn.execute(
            select(c.order_state, c.deleted_at).where(c.store == "NATUR", c.order_id == order_id)
        ).one()
    return state, deleted_at is not None


def single_reads(simulator: Simulator) -> int:
    return sum(1 for r in simulator.requests("NATUR") if r.mode == "order")


def later(stamp: str, seconds: int = 1) -> str:
    moved = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return moved.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def synced(receiver: Receiver, client: EcoManagerClient) -> None:
    """An earlier sync: page 1 in the table."""
    with receiver.engine.begin() as conn:
        ensure_store(conn, "NATUR", NAMES["NATUR"])
    write_page(receiver.engine, "NATUR", 1, client.fetch_page(1).orders)


def deleted_upstream(
    receiver: Receiver, simulator: Simulator, order_id: int, *, touch: bool
) -> None:
    """EcoManager deletes the order and its OrderDeleted is delivered and applied.

    ``touch``: the deletion moves ``updated_at`` on a second (else it leaves it as it was).
    """
    served: dict[str, Any] = simulator.order("NATUR", order_id)  # type: ignore[assignment]
    simulator.delete_orders("NATUR", [order_id])
    stamp = later(served["updated_at"]) if touch else served["updated_at"]
    body = body_of({**served, "updated_at": stamp, "deleted_at": stamp})
    assert receiver.post(body, event="OrderDeleted").status_code == 200
    assert apply_pending(receiver.engine, NAMES).applied == 1


@pytest.mark.parametrize("touch", [False, True], ids=["same updated_at", "newer updated_at"])
def test_a_page_read_before_a_deletion_commits_after_it_and_the_order_stays_deleted(
    receiver: Receiver, simulator: Simulator, natur: EcoManagerClient, touch: bool
) -> None:
    synced(receiver, natur)
    in_flight = natur.fetch_page(1)  # read now, committed only after the deletion
    victim = in_flight.orders[3].id
    deleted_upstream(receiver, simulator, victim, touch=touch)
    before = single_reads(simulator)
    counts = write_page(receiver.engine, "NATUR", 1, in_flight.orders, reader=natur)
    assert state_of(receiver.engine, victim)[1]
    # The counts say what was written: nothing came back, the page's copy was too old.
    assert (counts.reappeared, counts.stale, counts.ties) == (0, 1, ())
    assert single_reads(simulator) == before  # a read older than the deletion asks nothing
    assert store_summary(receiver.engine, "NATUR").order_count == 19


def test_a_tie_never_revives_a_deletion_and_ecomanager_is_asked_once(
    receiver: Receiver, simulator: Simulator, natur: EcoManagerClient
) -> None:
    synced(receiver, natur)
    stale_listing = natur.fetch_page(1).orders[5]
    deleted_upstream(receiver, simulator, stale_listing.id, touch=False)
    # A listing that still shows the order after the deletion was recorded (same state).
    again = Order.from_payload(
        {"id": stale_listing.id, **_fields(stale_listing)},
        store="NATUR",
        page=1,
        index=0,
        fetched_at=datetime.now().astimezone(),
    )
    without = write_page(receiver.engine, "NATUR", 1, [again])
    assert (without.reappeared, without.ties) == (0, (stale_listing.id,))
    before = single_reads(simulator)
    asked = write_page(receiver.engine, "NATUR", 1, [again], reader=natur)
    assert single_reads(simulator) == before + 1
    # EcoManager answers 404: the order stays deleted, the tie left unsettled.
    assert (asked.reappeared, asked.settled, asked.ties) == (0, 0, (stale_listing.id,))
    assert state_of(receiver.engine, stale_listing.id)[1]


def _fields(order: Order) -> dict[str, Any]:
    return {
        "reference": order.reference,
        "order_state_name": order.order_state_name,
        "updated_at": order.updated_at.isoformat() if order.updated_at else None,
    }


@pytest.mark.parametrize(
    "arrival", [("Confirmé", "En cours"), ("En cours", "Confirmé")], ids=["in order", "reversed"]
)
def test_two_deliveries_of_one_second_end_in_ecomanagers_state_whatever_their_order(
    receiver: Receiver, simulator: Simulator, natur: EcoManagerClient, arrival: tuple[str, str]
) -> None:
    order_id = natur.fetch_page(1).orders[0].id
    simulator.set_status("NATUR", order_id, "En cours")  # EcoManager's state, this second
    served: dict[str, Any] = simulator.order("NATUR", order_id)  # type: ignore[assignment]
    for n, state in enumerate(arrival):
        body = body_of({**served, "order_state_name": state})
        assert receiver.post(body, event="OrderStatusChanged", webhook_id=str(n)).status_code == 200
    done = apply_pending(receiver.engine, NAMES, readers=lambda store: natur)
    assert (done.applied, done.ties, done.settled) == (1, 1, 1)
    assert state_of(receiver.engine, order_id) == ("En cours", False)
    with receiver.engine.connect() as conn:
        outcomes = conn.execute(
            select(webhook_inbox.c.outcome).order_by(webhook_inbox.c.id)
        ).scalars()
        assert list(outcomes) == ["applied", "tie"]


def test_without_a_reader_a_tie_keeps_the_row_and_the_next_read_settles_it(
    receiver: Receiver, simulator: Simulator, natur: EcoManagerClient
) -> None:
    order_id = natur.fetch_page(1).orders[0].id
    served: dict[str, Any] = simulator.order("NATUR", order_id)  # type: ignore[assignment]
    first, second = [
        s for s in ("Confirmé", "En cours", "Expédié") if s != served["order_state_name"]
    ][:2]
    for n, state in enumerate((first, second)):
        body = body_of({**served, "order_state_name": state})
        receiver.post(body, event="OrderStatusChanged", webhook_id=str(n))
    done = apply_pending(receiver.engine, NAMES)
    assert (done.applied, done.ties, done.settled) == (1, 1, 0)
    assert state_of(receiver.engine, order_id) == (first, False)  # kept, not the last arrival
    # The sync's next read of the page ties with it too, and asks EcoManager (its client).
    before = single_reads(simulator)
    counts = write_page(receiver.engine, "NATUR", 1, natur.fetch_page(1).orders, reader=natur)
    assert (counts.settled, counts.updated, counts.ties) == (1, 1, ())
    assert single_reads(simulator) == before + 1
    assert state_of(receiver.engine, order_id) == (served["order_state_name"], False)
