"""each store's frontier in store_state, from the rows the poll wrote

Revision 0009, after 0008. The sync used to resume from the table's highest order id,
which a webhook delivery or the reconciliation could raise above ids the poll never
read. From now on it resumes from the store's frontier, the id below which the poll has
proved the table complete (``store_state``, name ``frontier``). This revision gives an
existing database its frontiers, conservatively, from what the tables record:

- a row was first written by a webhook delivery when the inbox holds an applied delivery
  of that order received at or before the row's ``first_seen_at``; the frontier is at
  most the highest id of the other rows (the poll's, or the reconciliation's: the table
  records nothing that tells those two apart);
- an OrderCreated marked ``gap`` says the ids between the highest id stored when it was
  received and its own may be missing, and no poll read them since (it resumed above
  the delivered order); the frontier is at most that highest id (none, if no row existed
  then).

A frontier set too low costs the next sync a re-read from it (the upsert absorbs it); one
set too high would skip orders for good. Deliveries older than the inbox's retention
(7 days by default) are gone and cannot be told apart any more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

from ecosync_pipeline.storage.schema import UtcDateTime, json_type

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FRONTIER = "frontier"
CURSOR_READ = "cursor_read"
WRITTEN = ("applied", "gap")
"""Inbox outcomes that wrote the order to the table."""

orders = sa.table(
    "orders",
    sa.column("store", sa.String),
    sa.column("order_id", sa.BigInteger),
    sa.column("first_seen_at", UtcDateTime),
)
inbox = sa.table(
    "webhook_inbox",
    sa.column("store", sa.String),
    sa.column("order_id", sa.BigInteger),
    sa.column("event", sa.String),
    sa.column("received_at", UtcDateTime),
    sa.column("outcome", sa.String),
)
store_state = sa.table(
    "store_state",
    sa.column("store", sa.String),
    sa.column("name", sa.String),
    sa.column("value", json_type()),
    sa.column("updated_at", UtcDateTime),
)


def _polled_max(conn: Connection, store: str) -> int | None:
    """The highest id of the store's rows not first written by a webhook delivery."""
    by_webhook = (
        sa.select(sa.literal(1))
        .where(
            inbox.c.store == orders.c.store,
            inbox.c.order_id == orders.c.order_id,
            inbox.c.outcome.in_(WRITTEN),
            inbox.c.received_at <= orders.c.first_seen_at,
        )
        .exists()
    )
    stmt = sa.select(sa.func.max(orders.c.order_id)).where(orders.c.store == store, ~by_webhook)
    value = conn.execute(stmt).scalar()
    return None if value is None else int(value)


def _below_gaps(conn: Connection, store: str) -> list[int | None]:
    """For each gap the inbox recorded: the highest id stored below it when it came."""
    gaps = conn.execute(
        sa.select(inbox.c.order_id, inbox.c.received_at).where(
            inbox.c.store == store, inbox.c.outcome == "gap"
        )
    ).all()
    caps: list[int | None] = []
    for order_id, received_at in gaps:
        below = conn.execute(
            sa.select(sa.func.max(orders.c.order_id)).where(
                orders.c.store == store,
                orders.c.order_id < order_id,
                orders.c.first_seen_at < received_at,
            )
        ).scalar()
        caps.append(None if below is None else int(below))
    return caps


def frontier_of(conn: Connection, store: str) -> int | None:
    """The store's frontier from its rows and its inbox (None: nothing is proved)."""
    frontier = _polled_max(conn, store)
    for cap in _below_gaps(conn, store):
        if cap is None or frontier is None:
            return None
        frontier = min(frontier, cap)
    return frontier


def upgrade() -> None:
    conn = op.get_bind()
    stores = [str(s) for s in conn.execute(sa.select(orders.c.store).distinct()).scalars()]
    have = set(
        conn.execute(sa.select(store_state.c.store).where(store_state.c.name == FRONTIER))
        .scalars()
        .all()
    )
    now = datetime.now(timezone.utc)
    for store in sorted(set(stores) - have):
        frontier = frontier_of(conn, store)
        if frontier is None:
            continue  # the next sync of the store is a first import
        value = {"id": frontier, "at": now.isoformat(), "source": "revision 0009"}
        conn.execute(
            store_state.insert().values(store=store, name=FRONTIER, value=value, updated_at=now)
        )


def downgrade() -> None:
    op.execute(store_state.delete().where(store_state.c.name.in_((FRONTIER, CURSOR_READ))))
