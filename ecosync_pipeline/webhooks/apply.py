"""Applying the inbox to the orders table: through the merge rule, idempotent, never back in time.

Each delivery carries the order as EcoManager holds it, versioned by its ``updated_at``,
and becomes a write of the merge rule that every way into the table shares
(storage/merge.py, DESIGN invariant 15):

- OrderCreated and the three "changed" events: the state served, fetched when the
  delivery arrived;
- OrderDeleted: the order gone, versioned by the later of its ``deleted_at`` and
  ``updated_at`` (at the same instant, the deletion wins), recorded when it arrived.

Whatever order deliveries arrive in, the row ends as the newest of them: out-of-order and
repeated deliveries converge. Two of the same ``updated_at`` with different content (say
Confirmé, then En cours, in one second) tie: the row is left as it was, and EcoManager
is asked once for the order, whose answer settles it (when the applier has a reader for
the store; otherwise the next read of the order does). An OrderCreated whose id leaves a
gap above the store's frontier (the id below which the sync has proved the table
complete; the order just before it is not stored, so orders may be missing between
them) is marked ``gap``, for the store's sync to run. Applying never moves the frontier:
the sync still reads every id up to the order.

Appliers are serialized (a PostgreSQL advisory lock, SQLite's write lock), so the
receiver's thread and the Dagster sensor can both apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.ecomanager import values
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.errors import EcosyncError
from ecosync_pipeline.storage import dialect, ensure_store
from ecosync_pipeline.storage.merge import Gone, Outcome, Served, Write, merge_orders
from ecosync_pipeline.storage.orders import _storage_error
from ecosync_pipeline.storage.pages import OrderReader, settle_ties
from ecosync_pipeline.storage.schema import orders as orders_table
from ecosync_pipeline.storage.store_state import read_frontier
from ecosync_pipeline.webhooks.inbox import InboxRow, claim_pending, mark_applied

logger = logging.getLogger(__name__)

APPLY_LOCK = "ecosync:webhooks:apply"
DEFAULT_BATCH = 200

Readers = Callable[[StoreId], OrderReader | None]
"""A store's reader of single orders (None: the store has none here), to settle ties."""

_INBOX_OUTCOME: dict[Outcome, str] = {
    "new": "applied",
    "updated": "applied",
    "reappeared": "applied",
    "flagged": "applied",
    "unchanged": "stale",
    "stale": "stale",
    "tie": "tie",
}
"""What a delivery's merge outcome is called in the inbox."""


def parse_event(row: InboxRow) -> Write:
    """The merge write of a stored delivery (the receiver checked it is an order)."""
    payload: Any = json.loads(row.body)
    if isinstance(payload, Mapping) and isinstance(payload.get("data"), Mapping):
        payload = payload["data"]
    order = Order.from_payload(
        payload, store=row.store, page=0, index=0, fetched_at=row.received_at
    )
    if row.event != "OrderDeleted":
        return Served(order, row.received_at)
    try:
        deleted: datetime | None = values.timestamp(payload.get("deleted_at"))
    except values.Unstorable:
        deleted = None
    # A deletion is at least as new as the state it carries (Laravel touches updated_at).
    stamps = [t for t in (deleted, order.updated_at) if t is not None]
    version = max(stamps) if stamps else row.received_at
    return Gone(order.id, row.received_at, version=version, order=order)


@dataclass
class ApplyResult:
    """What one apply_pending call did."""

    applied: int = 0
    stale: int = 0
    """Not newer than the stored state: marked, not written."""
    ties: int = 0
    """Same ``updated_at`` as the stored state, other content: settled by asking EcoManager."""
    settled: int = 0
    """Of the tied orders, those EcoManager was asked for and whose answer was merged."""
    refused: int = 0
    """Stored deliveries that could not be read as an order after all (kept, marked)."""
    gaps: dict[str, list[int]] = field(default_factory=dict)
    """Per store, the OrderCreated ids that left a gap above the store's frontier."""

    @property
    def total(self) -> int:
        return self.applied + self.stale + self.ties + self.refused

    def add(self, other: ApplyResult) -> None:
        """Add ``other``'s counts (not its gaps) to these."""
        self.applied += other.applied
        self.stale += other.stale
        self.ties += other.ties
        self.settled += other.settled
        self.refused += other.refused


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


def _mark_gaps(
    rows: list[InboxRow],
    outcomes: dict[int, str],
    frontier: int | None,
    stored: set[tuple[str, int]],
    gaps: list[int],
) -> None:
    """The gap rule, in arrival order, over the deliveries that were applied."""
    for row in rows:
        if outcomes[row.id] != "applied":
            continue
        if _leaves_gap(row, frontier, stored):
            outcomes[row.id] = "gap"
            gaps.append(row.order_id)
        stored.add((row.store, row.order_id))


@dataclass
class _Batch:
    """What a batch does: each delivery's outcome (and reason), the ties left per store."""

    outcomes: dict[int, str] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)
    ties: dict[StoreId, tuple[int, ...]] = field(default_factory=dict)
    gaps: dict[str, list[int]] = field(default_factory=dict)


def _apply(conn: Connection, rows: list[InboxRow], names: Mapping[str, str]) -> _Batch:
    """Merge every delivery of the batch, store by store, in arrival order."""
    batch = _Batch()
    by_store: dict[StoreId, list[tuple[InboxRow, Write]]] = {}
    for row in rows:
        try:
            by_store.setdefault(row.store, []).append((row, parse_event(row)))
        except (EcosyncError, ValueError, RecursionError) as exc:
            # Kept in the inbox, marked, so one bad delivery never blocks the rest.
            logger.error(
                "store %s: delivery %d of order %d refused: %s",
                row.store,
                row.id,
                row.order_id,
                exc,
            )
            batch.outcomes[row.id] = "refused"
            batch.reasons[row.id] = f"not an order the table can hold: {exc}"[:500]
    for store in sorted(by_store):
        ensure_store(conn, store, names.get(store, store))
        items = by_store[store]
        rows_of_store = [row for row, _ in items]
        frontier = read_frontier(conn, store)
        stored = _previous_stored(conn, rows_of_store)  # as before this batch writes
        merged = merge_orders(conn, store, [write for _, write in items])
        for (row, _), outcome in zip(items, merged.outcomes, strict=True):
            batch.outcomes[row.id] = _INBOX_OUTCOME[outcome]
        gaps: list[int] = []
        _mark_gaps(rows_of_store, batch.outcomes, frontier, stored, gaps)
        if gaps:
            batch.gaps[store] = gaps
        if merged.counts.ties:
            batch.ties[store] = merged.counts.ties
    return batch


def apply_batch(
    engine: Engine,
    names: Mapping[str, str],
    limit: int = DEFAULT_BATCH,
    *,
    readers: Readers | None = None,
) -> ApplyResult:
    """Apply up to ``limit`` pending deliveries in one transaction; ``names``: store names.

    Ties are then settled, after the commit, with each store's reader (``readers``).
    """
    result = ApplyResult()
    try:
        with engine.begin() as conn:
            dialect.serialize(conn, APPLY_LOCK)
            rows = claim_pending(conn, limit)
            if not rows:
                return result
            batch = _apply(conn, rows, names)
            mark_applied(conn, batch.outcomes, datetime.now(timezone.utc), batch.reasons)
    except SQLAlchemyError as exc:
        raise _storage_error(
            exc, "applying webhook deliveries failed", hint="they stay pending and are retried"
        ) from exc
    for outcome in batch.outcomes.values():
        if outcome in ("applied", "gap"):
            result.applied += 1
        elif outcome == "tie":
            result.ties += 1
        elif outcome == "refused":
            result.refused += 1
        else:
            result.stale += 1
    result.gaps = batch.gaps
    for store, ids in batch.ties.items():
        reader = readers(store) if readers is not None else None
        if reader is not None:
            result.settled += settle_ties(engine, store, ids, reader).settled
    return result


def apply_pending(
    engine: Engine,
    names: Mapping[str, str],
    *,
    batch: int = DEFAULT_BATCH,
    max_batches: int = 50,
    readers: Readers | None = None,
) -> ApplyResult:
    """Apply pending deliveries, batch after batch, until none is left (or ``max_batches``)."""
    total = ApplyResult()
    for _ in range(max_batches):
        done = apply_batch(engine, names, batch, readers=readers)
        total.add(done)
        for store, ids in done.gaps.items():
            total.gaps.setdefault(store, []).extend(ids)
        if done.total < batch:
            break
    return total
