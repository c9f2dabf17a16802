"""What the mirror of EcoManager needs from the orders table: id ranges and deletion flags.

An order deleted upstream keeps its row, flagged with ``deleted_at`` (DESIGN, invariant
10): it is never removed and never counted as present. Flags are written by the merge
rule (merge.py) like every other write: ``flag_deleted`` is a ``Gone`` write of each id.

The store's small JSON state (cursors, windows) is in store_state.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.storage.merge import Gone, merge_orders, same_content
from ecosync_pipeline.storage.orders import COMPARED_COLUMNS, Bind, order_row, reading
from ecosync_pipeline.storage.schema import orders as orders_table


@dataclass(frozen=True)
class StoredOrder:
    """One stored order as the mirror compares it: its flag and its EcoManager fields."""

    order_id: int
    deleted: bool
    fields: Mapping[str, Any]

    def differs_from(self, order: Order, store: StoreId) -> bool:
        """True when the served ``order`` has any field this row does not hold."""
        return not same_content(order_row(store, order, datetime.now(timezone.utc)), self.fields)


def stored_in_range(bind: Bind, store: StoreId, low: int, high: int) -> dict[int, StoredOrder]:
    """Every stored order of a store with ``low <= order_id <= high``, flagged ones included."""
    columns = [orders_table.c[c] for c in COMPARED_COLUMNS]
    stmt = select(orders_table.c.order_id, orders_table.c.deleted_at, *columns).where(
        orders_table.c.store == store,
        orders_table.c.order_id >= low,
        orders_table.c.order_id <= high,
    )
    with reading(bind, f"store {store}: reading orders {low}..{high}") as conn:
        rows = conn.execute(stmt).mappings().all()
    return {
        int(row["order_id"]): StoredOrder(
            order_id=int(row["order_id"]),
            deleted=row["deleted_at"] is not None,
            fields={c: row[c] for c in COMPARED_COLUMNS},
        )
        for row in rows
    }


def flag_deleted(
    conn: Connection, store: StoreId, ids: Collection[int], *, at: datetime | None = None
) -> int:
    """Flag these orders deleted upstream, as found gone ``at`` (default now); return how many.

    Runs in the caller's transaction, through the merge rule: an order seen live after
    ``at`` stays live, and one flagged already counts for nothing. The rows stay; counts
    leave them out from now on.
    """
    when = at or datetime.now(timezone.utc)
    writes = [Gone(order_id, when) for order_id in sorted(set(ids))]
    return merge_orders(conn, store, writes).counts.flagged


def deleted_ids(bind: Bind, store: StoreId) -> list[int]:
    """The ids of a store's orders flagged deleted, ascending."""
    stmt = (
        select(orders_table.c.order_id)
        .where(orders_table.c.store == store, orders_table.c.deleted_at.is_not(None))
        .order_by(orders_table.c.order_id)
    )
    with reading(bind, f"store {store}: reading the orders flagged deleted") as conn:
        return [int(i) for i in conn.execute(stmt).scalars()]


def live_count_below(bind: Bind, store: StoreId, order_id: int) -> int:
    """How many live (unflagged) orders of a store have an id below ``order_id``."""
    stmt = select(func.count()).where(
        orders_table.c.store == store,
        orders_table.c.order_id < order_id,
        orders_table.c.deleted_at.is_(None),
    )
    with reading(bind, f"store {store}: counting orders below id {order_id}") as conn:
        return int(conn.execute(stmt).scalar_one())


def oldest_open_order(bind: Bind, store: StoreId, final_states: Iterable[str]) -> int | None:
    """The lowest id of a live order whose state is not final (None when all are final).

    An order without a state counts as open: nothing says it is done.
    """
    finals = sorted(set(final_states))
    state = orders_table.c.order_state
    stmt = select(func.min(orders_table.c.order_id)).where(
        orders_table.c.store == store,
        orders_table.c.deleted_at.is_(None),
        state.is_(None) | state.not_in(finals),
    )
    with reading(bind, f"store {store}: finding its oldest open order") as conn:
        value = conn.execute(stmt).scalar_one_or_none()
    return None if value is None else int(value)


def open_count(bind: Bind, store: StoreId, final_states: Iterable[str]) -> int:
    """How many live orders of a store are not in a final state."""
    finals = sorted(set(final_states))
    state = orders_table.c.order_state
    stmt = select(func.count()).where(
        and_(
            orders_table.c.store == store,
            orders_table.c.deleted_at.is_(None),
            state.is_(None) | state.not_in(finals),
        )
    )
    with reading(bind, f"store {store}: counting its open orders") as conn:
        return int(conn.execute(stmt).scalar_one())


def id_ranges(ids: Sequence[int], served: Sequence[int]) -> list[tuple[int, int]]:
    """``ids`` (a subset of ``served``) as runs of neighbours in ``served``: (first, last).

    Two missing orders with no served order between them are one range, however far apart
    their ids are, so a skipped page reads as one range rather than a hundred ids.
    """
    wanted = set(ids)
    runs: list[tuple[int, int]] = []
    start: int | None = None
    previous: int | None = None
    for order_id in sorted(served):
        if order_id in wanted:
            if start is None:
                start = order_id
            previous = order_id
        elif start is not None and previous is not None:
            runs.append((start, previous))
            start = None
    if start is not None and previous is not None:
        runs.append((start, previous))
    return runs
