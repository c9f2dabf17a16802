"""Applying the inbox to the orders table: idempotent, and never back in time.

Each delivery carries the order as EcoManager holds it, versioned by its ``updated_at``.
A delivery is applied only when it is newer than what the table holds:

- OrderCreated and the three "changed" events: newer than the row's ``updated_at`` and
  than its ``deleted_at`` (an order re-created after its deletion is live again);
- OrderDeleted (versioned by the later of its ``deleted_at`` and ``updated_at``): at or
  after the row's ``updated_at``, so at the same instant the deletion wins.

Applying writes the delivered order with the page upsert (one writer for the sync and
the webhooks) and, for a deletion, flags it (storage.mirror). Whatever order deliveries
arrive in, the row ends as the newest of them: out-of-order and repeated deliveries
converge. An OrderCreated whose id leaves a gap above the store's frontier (the id below
which the sync has proved the table complete; the order just before it is not stored,
so orders may be missing between them) is marked ``gap``, for the store's sync to run.
Applying never moves the frontier: the sync still reads every id up to the order.

Appliers are serialized (a PostgreSQL advisory lock, SQLite's write lock), so the
receiver's thread and the Dagster sensor can both apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.ecomanager import values
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.storage import dialect, ensure_store, upsert_orders
from ecosync_pipeline.storage.orders import _storage_error
from ecosync_pipeline.storage.ranges import flag_deleted
from ecosync_pipeline.storage.schema import orders as orders_table
from ecosync_pipeline.storage.store_state import read_frontier
from ecosync_pipeline.webhooks.inbox import InboxRow, claim_pending, mark_applied

logger = logging.getLogger(__name__)

APPLY_LOCK = "ecosync:webhooks:apply"
DEFAULT_BATCH = 200
Action = Literal["write", "stale"]


@dataclass(frozen=True)
class RowState:
    """The version of a stored order: EcoManager's updated_at, and its deletion flag."""

    updated_at: datetime | None
    deleted_at: datetime | None


@dataclass(frozen=True)
class Event:
    """One delivery, parsed: the order it carries and its version."""

    kind: Literal["upsert", "delete"]
    order: Order
    deleted_at: datetime | None

    @property
    def version(self) -> datetime | None:
        return self.deleted_at if self.kind == "delete" else self.order.updated_at


def decide(event: Event, row: RowState | None) -> Action:
    """Whether ``event`` is newer than the stored ``row`` (None: not stored) and is written."""
    if row is None:
        return "write"
    at = event.version
    if event.kind == "delete":
        if row.deleted_at is not None:
            return "stale"
        return "write" if at is None or row.updated_at is None or at >= row.updated_at else "stale"
    if at is None:
        # An unversioned body only fills a row that has no version either.
        unversioned = row.updated_at is None and row.deleted_at is None
        return "write" if unversioned else "stale"
    newer_than_state = row.updated_at is None or at > row.updated_at
    newer_than_deletion = row.deleted_at is None or at > row.deleted_at
    return "write" if newer_than_state and newer_than_deletion else "stale"


def parse_event(row: InboxRow) -> Event:
    """The order and version of a stored delivery (the receiver checked it is an order)."""
    payload: Any = json.loads(row.body)
    if isinstance(payload, Mapping) and isinstance(payload.get("data"), Mapping):
        payload = payload["data"]
    order = Order.from_payload(payload, store=row.store, page=0, index=0)
    if row.event != "OrderDeleted":
        return Event("upsert", order, None)
    try:
        deleted: datetime | None = values.timestamp(payload.get("deleted_at"))
    except values.Unstorable:
        deleted = None
    # A deletion is at least as new as the state it carries (Laravel touches updated_at).
    stamps = [t for t in (deleted, order.updated_at) if t is not None]
    return Event("delete", order, max(stamps) if stamps else row.received_at)


@dataclass
class ApplyResult:
    """What one apply_pending call did."""

    applied: int = 0
    stale: int = 0
    """Older than the stored state (or set aside as invalid): marked, not written."""
    gaps: dict[str, list[int]] = field(default_factory=dict)
    """Per store, the OrderCreated ids that left a gap above the store's frontier."""

    @property
    def total(self) -> int:
        return self.applied + self.stale


def _previous_stored(conn: Connection, rows: list[InboxRow]) -> set[tuple[str, int]]:
    """The (store, id) of each OrderCreated's previous id (id - 1) that the table holds."""
    c = orders_table.c
    found: set[tuple[str, int]] = set()
    for store in sorted({r.store for r in rows if r.event == "OrderCreated"}):
        wanted = sorted({r.order_id - 1 for r in rows if r.store == store})
        stmt = select(c.order_id).where(c.store == store, c.order_id.in_(wanted))
        found.update((store, int(i)) for i in conn.execute(stmt).scalars())
    return found


def _leaves_gap(row: InboxRow, frontier: int | None, stored: set[tuple[str, int]]) -> bool:
    """An OrderCreated above the frontier whose previous id is not stored: ids between the
    frontier and it may be missing, so the store's sync should run."""
    if row.event != "OrderCreated" or (row.store, row.order_id - 1) in stored:
        return False
    return frontier is None or row.order_id > frontier + 1


def _row_states(conn: Connection, rows: list[InboxRow]) -> dict[tuple[str, int], RowState]:
    """The stored version of every order the batch touches: one query per store."""
    c = orders_table.c
    states: dict[tuple[str, int], RowState] = {}
    for store in sorted({r.store for r in rows}):
        ids = sorted({r.order_id for r in rows if r.store == store})
        stmt = select(c.order_id, c.updated_at, c.deleted_at).where(
            c.store == store, c.order_id.in_(ids)
        )
        for order_id, updated_at, deleted_at in conn.execute(stmt):
            states[(store, int(order_id))] = RowState(updated_at, deleted_at)
    return states


def _after_write(before: RowState | None, event: Event) -> RowState:
    """The row's version once ``event`` is written (the page upsert keeps a newer state)."""
    served, stored = event.order.updated_at, before.updated_at if before else None
    overwrite = before is None or stored is None or served is None or served >= stored
    if event.kind == "delete":
        return RowState(served if overwrite else stored, event.deleted_at)
    return RowState(served if overwrite else stored, None)


@dataclass
class _Plan:
    """What a batch does: each delivery's outcome, and the newest event to write per order."""

    outcomes: dict[int, str] = field(default_factory=dict)
    writes: dict[tuple[StoreId, int], Event] = field(default_factory=dict)


def _plan(
    rows: list[InboxRow],
    states: dict[tuple[str, int], RowState],
    frontiers: dict[str, int | None],
    stored: set[tuple[str, int]],
) -> _Plan:
    """Decide every delivery in arrival order, as if each were written in turn."""
    plan = _Plan()
    for row in rows:
        try:
            event = parse_event(row)
        except (EcosyncError, ValueError) as exc:
            # Set aside (kept in the inbox, marked), so one bad delivery never blocks the rest.
            logger.error(
                "store %s: delivery %d of order %d set aside: %s",
                row.store,
                row.id,
                row.order_id,
                exc,
            )
            plan.outcomes[row.id] = "invalid"
            continue
        key = (row.store, row.order_id)
        if decide(event, states.get(key)) == "stale":
            plan.outcomes[row.id] = "stale"
            continue
        # Each write is newer than the one before: the last one is the row's final state.
        plan.writes[key] = event
        states[key] = _after_write(states.get(key), event)
        gap = _leaves_gap(row, frontiers.get(row.store), stored)
        stored.add(key)
        plan.outcomes[row.id] = "gap" if gap else "applied"
    return plan


def _write(conn: Connection, writes: dict[tuple[StoreId, int], Event]) -> None:
    """One upsert per store for the final states, then the deletion flags."""
    for store in sorted({store for store, _ in writes}):
        events = [e for (s, _), e in writes.items() if s == store]
        upsert_orders(conn, store, [e.order for e in events])
        for event in events:
            if event.kind == "delete":
                flag_deleted(conn, store, [event.order.id], at=event.deleted_at)


def apply_batch(
    engine: Engine, names: Mapping[str, str], limit: int = DEFAULT_BATCH
) -> ApplyResult:
    """Apply up to ``limit`` pending deliveries in one transaction; ``names``: store names."""
    result = ApplyResult()
    try:
        with engine.begin() as conn:
            dialect.serialize(conn, APPLY_LOCK)
            rows = claim_pending(conn, limit)
            if not rows:
                return result
            frontiers: dict[str, int | None] = {}
            for store in sorted({r.store for r in rows}):
                ensure_store(conn, store, names.get(store, store))
                frontiers[store] = read_frontier(conn, store)
            stored = _previous_stored(conn, rows)
            plan = _plan(rows, _row_states(conn, rows), frontiers, stored)
            _write(conn, plan.writes)
            mark_applied(conn, plan.outcomes, datetime.now(timezone.utc))
    except SQLAlchemyError as exc:
        raise _storage_error(
            exc, "applying webhook deliveries failed", hint="they stay pending and are retried"
        ) from exc
    for row in rows:
        outcome = plan.outcomes[row.id]
        if outcome in ("stale", "invalid"):
            result.stale += 1
            continue
        result.applied += 1
        if outcome == "gap":
            result.gaps.setdefault(row.store, []).append(row.order_id)
    return result


def apply_pending(
    engine: Engine, names: Mapping[str, str], *, batch: int = DEFAULT_BATCH, max_batches: int = 50
) -> ApplyResult:
    """Apply pending deliveries, batch after batch, until none is left (or ``max_batches``)."""
    total = ApplyResult()
    for _ in range(max_batches):
        done = apply_batch(engine, names, batch)
        total.applied += done.applied
        total.stale += done.stale
        for store, ids in done.gaps.items():
            total.gaps.setdefault(store, []).extend(ids)
        if done.total < batch:
            break
    return total
