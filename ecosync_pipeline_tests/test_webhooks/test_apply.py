"""Applying the inbox: idempotent, order-independent, never back in time (invariant 13).

Deliveries go through the receiver over real HTTP, on PostgreSQL and on SQLite.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.storage import ensure_store, store_summary, upsert_orders
from ecosync_pipeline.storage.schema import orders, webhook_inbox
from ecosync_pipeline.storage.store_state import prove_frontier
from ecosync_pipeline.webhooks.apply import apply_pending
from ecosync_pipeline.webhooks.inbox import purge_applied, replay
from ecosync_pipeline_tests.test_webhooks.conftest import Receiver, body_of, order

NAMES = {"NATUR": "NATUR shop", "PURNA": "PURNA shop"}
COMPARED = ("reference", "order_state", "confirmation_state", "telephone", "updated_at")


def stamp(minute: int) -> str:
    return f"2026-11-20T10:{minute:02d}:00.000000Z"


def history(order_id: int) -> list[tuple[str, dict[str, Any]]]:
    """One order's life: created, confirmed, shipped, deleted, each a minute later."""
    deleted = order(order_id, stamp(4), order_state_name="Expédié", deleted_at=stamp(4))
    return [
        ("OrderCreated", order(order_id, stamp(1))),
        ("OrderConfirmationStatusChanged", order(order_id, stamp(2), order_state_name="Confirmé")),
        ("OrderStatusChanged", order(order_id, stamp(3), order_state_name="Expédié")),
        ("OrderDeleted", deleted),
    ]


def row(engine: Engine, order_id: int, store: str = "NATUR") -> dict[str, Any] | None:
    c = orders.c
    with engine.connect() as conn:
        found = (
            conn.execute(
                select(*[c[n] for n in COMPARED], c.deleted_at).where(
                    c.store == store, c.order_id == order_id
                )
            )
            .mappings()
            .first()
        )
    return None if found is None else dict(found)


def post_all(receiver: Receiver, events: list[tuple[str, dict[str, Any]]]) -> None:
    for event, payload in events:
        assert receiver.post(body_of(payload), event=event).status_code == 200


def test_out_of_order_deliveries_converge_to_the_same_final_row(receiver: Receiver) -> None:
    # Every arrival order of the four events, each on its own order id.
    for n, perm in enumerate(itertools.permutations(range(4))):
        events = history(1000 + n)
        post_all(receiver, [events[i] for i in perm])
    # And the live part of the history (no deletion) in every order.
    for n, perm in enumerate(itertools.permutations(range(3))):
        events = history(2000 + n)
        post_all(receiver, [events[i] for i in perm])
    done = apply_pending(receiver.engine, NAMES)
    assert done.applied + done.stale == 24 * 4 + 6 * 3
    deleted = [row(receiver.engine, 1000 + n) for n in range(24)]
    assert all(r is not None and r["deleted_at"] is not None for r in deleted)
    finals = {tuple((k, v) for k, v in r.items() if k != "reference") for r in deleted if r}
    assert len(finals) == 1, finals
    live = [row(receiver.engine, 2000 + n) for n in range(6)]
    assert {(r["order_state"], r["deleted_at"]) for r in live if r} == {("Expédié", None)}
    assert store_summary(receiver.engine, "NATUR").order_count == 6  # flagged ones not counted


def test_deleted_then_recreated_order_is_live_again_whatever_the_arrival_order(
    receiver: Receiver,
) -> None:
    created = ("OrderCreated", order(3001, stamp(1)))
    deleted = ("OrderDeleted", order(3001, stamp(2), deleted_at=stamp(2)))
    recreated = ("OrderCreated", order(3001, stamp(3), order_state_name="Confirmé"))
    post_all(receiver, [created, deleted])
    apply_pending(receiver.engine, NAMES)
    assert row(receiver.engine, 3001)["deleted_at"] is not None  # type: ignore[index]
    post_all(receiver, [recreated])
    apply_pending(receiver.engine, NAMES)
    live = row(receiver.engine, 3001)
    assert live is not None and live["deleted_at"] is None and live["order_state"] == "Confirmé"
    # The same three arriving backwards: the deletion is older than the re-creation.
    backwards = [
        ("OrderCreated", order(3002, stamp(3), order_state_name="Confirmé")),
        ("OrderDeleted", order(3002, stamp(2), deleted_at=stamp(2))),
        ("OrderCreated", order(3002, stamp(1))),
    ]
    post_all(receiver, backwards)
    done = apply_pending(receiver.engine, NAMES)
    assert done.stale == 2
    again = row(receiver.engine, 3002)
    assert again is not None and again["deleted_at"] is None and again["order_state"] == "Confirmé"


def test_an_older_delivery_never_replaces_a_newer_state_in_the_table(receiver: Receiver) -> None:
    newer = Order.from_payload(
        order(4001, stamp(9), order_state_name="Livré"), store="NATUR", page=1, index=0
    )
    with receiver.engine.begin() as conn:
        ensure_store(conn, "NATUR", "NATUR shop")
        upsert_orders(conn, "NATUR", [newer])  # what the sync read
    post_all(receiver, [("OrderStatusChanged", order(4001, stamp(5), order_state_name="Confirmé"))])
    done = apply_pending(receiver.engine, NAMES)
    assert (done.applied, done.stale) == (0, 1)
    kept = row(receiver.engine, 4001)
    assert kept is not None and kept["order_state"] == "Livré"


def test_applied_deliveries_are_marked_never_applied_twice_and_can_be_replayed(
    receiver: Receiver,
) -> None:
    post_all(receiver, history(5001)[:3])
    first = apply_pending(receiver.engine, NAMES)
    assert first.applied == 3
    assert apply_pending(receiver.engine, NAMES).total == 0
    with receiver.engine.connect() as conn:
        marks = conn.execute(select(webhook_inbox.c.applied_at, webhook_inbox.c.outcome)).all()
    assert all(at is not None for at, _ in marks)
    before = row(receiver.engine, 5001)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    assert replay(receiver.engine, "NATUR", since) == 3
    again = apply_pending(receiver.engine, NAMES)
    assert again.total == 3 and again.applied == 0  # nothing newer: the row is unchanged
    assert row(receiver.engine, 5001) == before


def test_order_created_above_a_gap_asks_for_the_store_sync(receiver: Receiver) -> None:
    synced = Order.from_payload(order(600, stamp(1)), store="NATUR", page=1, index=0)
    with receiver.engine.begin() as conn:
        ensure_store(conn, "NATUR", "NATUR shop")
        upsert_orders(conn, "NATUR", [synced])
        prove_frontier(conn, "NATUR", 600)  # as the sync does with the page it commits
    post_all(
        receiver,
        [("OrderCreated", order(601, stamp(2))), ("OrderCreated", order(605, stamp(3)))],
    )
    post_all(receiver, [("OrderCreated", order(10, stamp(2)))])
    done = apply_pending(receiver.engine, NAMES)
    assert done.gaps == {"NATUR": [605]}
    # A store with no orders at all needs its sync too (its first import).
    post_all(receiver, [("OrderCreated", order(9, stamp(2)))])
    receiver.post(body_of(order(7, stamp(1))), store="PURNA")
    assert apply_pending(receiver.engine, NAMES).gaps == {"PURNA": [7]}


def test_deletion_is_as_new_as_the_state_it_carries_even_with_an_older_deleted_at(
    receiver: Receiver,
) -> None:
    # A server whose deleted_at lags the body's updated_at (clock skew, or a later touch).
    post_all(receiver, [("OrderCreated", order(7001, stamp(5)))])
    post_all(receiver, [("OrderDeleted", order(7001, stamp(6), deleted_at=stamp(1)))])
    done = apply_pending(receiver.engine, NAMES)
    assert (done.applied, done.stale) == (2, 0)
    flagged = row(receiver.engine, 7001)
    assert flagged is not None and flagged["deleted_at"] is not None


def test_a_page_read_before_a_delivery_never_replaces_the_delivered_state(
    receiver: Receiver,
) -> None:
    read_earlier = Order.from_payload(order(8001, stamp(1)), store="NATUR", page=1, index=0)
    post_all(receiver, [("OrderStatusChanged", order(8001, stamp(2), order_state_name="Livré"))])
    apply_pending(receiver.engine, NAMES)
    with receiver.engine.begin() as conn:
        counts = upsert_orders(conn, "NATUR", [read_earlier])  # the sync commits late
    assert (counts.new, counts.updated, counts.stale) == (0, 0, 1)  # what was written
    kept = row(receiver.engine, 8001)
    assert kept is not None and kept["order_state"] == "Livré"


def test_applied_deliveries_are_kept_for_the_retention_then_purged(receiver: Receiver) -> None:
    post_all(receiver, history(9001)[:2])
    apply_pending(receiver.engine, NAMES)
    post_all(receiver, history(9001)[2:3])  # still pending: never purged
    assert purge_applied(receiver.engine, timedelta(days=7)) == 0
    assert purge_applied(receiver.engine, timedelta(0)) == 2
    with receiver.engine.connect() as conn:
        left = conn.execute(select(webhook_inbox.c.applied_at)).all()
    assert left == [(None,)]


def test_a_delivery_with_fields_out_of_range_is_applied_without_them_and_kept_raw(
    receiver: Receiver,
) -> None:
    odd = order(9101, stamp(1), total="1e20", full_name="Amina\x00Benali")
    assert receiver.post(body_of(odd)).status_code == 200
    assert apply_pending(receiver.engine, NAMES).applied == 1
    c = orders.c
    with receiver.engine.connect() as conn:
        total, name, raw = conn.execute(
            select(c.total, c.full_name, c.raw_payload).where(c.order_id == 9101)
        ).one()
    assert (total, name) == (None, None)  # set aside, the rest of the order stored
    assert raw is not None and "1e20" in raw
