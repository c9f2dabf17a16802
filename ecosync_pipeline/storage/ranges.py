"""What the mirror of EcoManager needs from the orders table: id ranges and deletion flags.

An order deleted upstream keeps its row, flagged with ``deleted_at`` (DESIGN, invariant
10): it is never removed and never counted as present. ``flag_deleted`` and
``unflag_deleted`` are the only writers of the flag besides the page upsert, which
clears it (an order EcoManager serves again is live again).

The store's small JSON state (cursors, windows) is in store_state.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.storage.orders import (
    UPDATED_ON_CONFLICT,
    Bind,
    _row,
    _storage_error,
    reading,
)
from ecosync_pipeline.storage.schema import orders as orders_table

COMPARED_COLUMNS = tuple(c for c in UPDATED_ON_CONFLICT if c not in ("last_seen_at", "deleted_at"))
"""The columns whose difference from what EcoManager serves makes a stored order out of date."""

_IN_CHUNK = 500
"""Ids per ``IN (...)`` list: far below every backend's bind-parameter limit."""


@dataclass(frozen=True)
class StoredOrder:
    """One stored order as the mirror compares it: its flag and its EcoManager fields."""

    order_id: int
    deleted: bool
    fields: Mapping[str, Any]

    def differs_from(self, order: Order, store: str) -> bool:
        """True when the served ``order`` has any field this row does not hold."""
        served = _row(store, order, datetime.now(timezone.utc))
        return any(_normal(served[c]) != _normal(self.fields[c]) for c in COMPARED_COLUMNS)


def _normal(value: Any) -> Any:
    """A value comparable across the payload and the database (naive times are UTC)."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


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


def _set_flag(
    conn: Connection, store: StoreId, ids: Collection[int], value: datetime | None, what: str
) -> int:
    wanted = sorted(set(ids))
    changed = 0
    current = (
        orders_table.c.deleted_at.is_(None) if value else orders_table.c.deleted_at.is_not(None)
    )
    try:
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            stmt = (
                update(orders_table)
                .where(orders_table.c.store == store, orders_table.c.order_id.in_(chunk), current)
                .values(deleted_at=value)
            )
            changed += int(conn.execute(stmt).rowcount or 0)
    except SQLAlchemyError as exc:
        raise _storage_error(
            exc, f"store {store}: {what} {len(wanted)} orders failed", hint="run it again"
        ) from exc
    return changed


def flag_deleted(
    conn: Connection, store: StoreId, ids: Collection[int], *, at: datetime | None = None
) -> int:
    """Flag these orders deleted upstream (those not flagged already); return how many.

    Runs in the caller's transaction. The rows stay; counts leave them out from now on.
    """
    return _set_flag(conn, store, ids, at or datetime.now(timezone.utc), "flagging deleted")


def unflag_deleted(conn: Connection, store: StoreId, ids: Collection[int]) -> int:
    """Clear the deletion flag of these orders (EcoManager serves them again); return how many."""
    return _set_flag(conn, store, ids, None, "unflagging")


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
