"""The webhook inbox: deliveries stored before they are answered, applied later, kept a while.

A delivery is stored once: EcoManager's retries repeat the same webhook id, event, order
id and body, and the unique key over them (the body by its SHA-256) turns a repeat into
a no-op. Applied rows are marked with when and how (applied, stale, tie, gap) and kept
for a retention time, so a delivery can be replayed (``replay``) and the lag measured.

An authentic delivery that cannot be applied (an id beyond BIGINT, a body that is not an
order, one over the size cap) is stored ``refused`` with its reason, already marked, so
it is answered 200 and counted, never applied (DESIGN, invariant 13). Its ``order_id`` is
0 when it has none the table can hold, and a body over the cap is not kept (its SHA-256
is).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from statistics import median

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.storage import dialect
from ecosync_pipeline.storage.orders import _insert_for, _storage_error, reading
from ecosync_pipeline.storage.schema import webhook_inbox

logger = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=7)
UNIQUE_COLUMNS = ("store", "order_id", "event", "webhook_id", "body_sha256")
"""Also the index that finds a store's deliveries of one order."""


NO_ORDER_ID = 0
"""The ``order_id`` of a refused delivery that has no id the table can hold."""


@dataclass(frozen=True)
class Delivery:
    """One verified delivery, as the receiver stores it.

    ``refused``: why it cannot be applied (None: it is pending, to be applied).
    ``sha256``: the body's digest when the body itself is not kept (over the cap).
    """

    store: StoreId
    event: str
    webhook_id: str
    order_id: int
    body: bytes
    received_at: datetime
    refused: str | None = None
    sha256: str | None = None

    @property
    def body_sha256(self) -> str:
        return self.sha256 or hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class InboxRow:
    """A stored delivery waiting to be applied."""

    id: int
    store: StoreId
    event: str
    order_id: int
    body: bytes
    received_at: datetime


@dataclass(frozen=True)
class InboxStats:
    """One store's deliveries in a window: received, applied, the lag between, and backlog."""

    store: StoreId
    received: int
    applied: int
    stale: int
    gaps: int
    refused: int
    """Authentic deliveries kept without being applied (see ``Delivery.refused``)."""
    pending: int
    lag_p50: float | None
    lag_max: float | None
    last_received_at: datetime | None


def store_delivery(engine: Engine, delivery: Delivery) -> bool:
    """Store a delivery and commit; False when the same delivery was stored before."""
    values = {
        "store": delivery.store,
        "event": delivery.event[:64],
        "webhook_id": delivery.webhook_id[:64],
        "order_id": delivery.order_id,
        "body_sha256": delivery.body_sha256,
        "body": delivery.body,
        "received_at": delivery.received_at,
    }
    if delivery.refused is not None:
        values.update(outcome="refused", reason=delivery.refused, applied_at=delivery.received_at)
    what = (
        f"store {delivery.store}: storing the {delivery.event} delivery of order "
        f"{delivery.order_id} failed"
    )
    with _writing(engine, what, "it is answered 503, so EcoManager retries it") as conn:
        stmt = _insert_for(conn)(webhook_inbox).values(**values)
        stmt = stmt.on_conflict_do_nothing(
            index_elements=[webhook_inbox.c[c] for c in UNIQUE_COLUMNS]
        )
        # RETURNING, not rowcount: PostgreSQL's driver reports -1 for a skipped insert.
        return conn.execute(stmt.returning(webhook_inbox.c.id)).first() is not None


def claim_pending(conn: Connection, limit: int) -> list[InboxRow]:
    """Up to ``limit`` unapplied deliveries, oldest first, locked for this transaction."""
    stmt = (
        select(
            webhook_inbox.c.id,
            webhook_inbox.c.store,
            webhook_inbox.c.event,
            webhook_inbox.c.order_id,
            webhook_inbox.c.body,
            webhook_inbox.c.received_at,
        )
        .where(webhook_inbox.c.applied_at.is_(None))
        .order_by(webhook_inbox.c.id)
        .limit(limit)
    )
    return [
        InboxRow(*row) for row in conn.execute(dialect.for_update(stmt, conn, skip_locked=True))
    ]


def mark_applied(
    conn: Connection,
    outcomes: dict[int, str],
    at: datetime,
    reasons: Mapping[int, str] | None = None,
) -> None:
    """Mark inbox rows applied, each with its outcome (and reason), in the caller's transaction."""
    why = reasons or {}
    by_outcome: dict[tuple[str, str | None], list[int]] = {}
    for row_id, outcome in outcomes.items():
        by_outcome.setdefault((outcome, why.get(row_id)), []).append(row_id)
    for (outcome, reason), ids in by_outcome.items():
        conn.execute(
            update(webhook_inbox)
            .where(webhook_inbox.c.id.in_(ids))
            .values(applied_at=at, outcome=outcome, reason=reason)
        )


def replay(engine: Engine, store: StoreId, since: datetime) -> int:
    """Mark a store's deliveries received since ``since`` unapplied again; return how many.

    Applying is idempotent and never goes back in time, so a replay only repairs. Refused
    deliveries stay refused (nothing in them can be applied).
    """
    with _writing(engine, f"store {store}: replaying deliveries") as conn:
        result = conn.execute(
            update(webhook_inbox)
            .where(
                webhook_inbox.c.store == store,
                webhook_inbox.c.received_at >= since,
                webhook_inbox.c.outcome.is_distinct_from("refused"),
            )
            .values(applied_at=None, outcome=None, reason=None)
        )
    return int(result.rowcount or 0)


def purge_applied(engine: Engine, retention: timedelta = DEFAULT_RETENTION) -> int:
    """Delete deliveries applied longer than ``retention`` ago; return how many."""
    cutoff = datetime.now(timezone.utc) - retention
    with _writing(engine, "purging applied deliveries") as conn:
        result = conn.execute(delete(webhook_inbox).where(webhook_inbox.c.applied_at < cutoff))
    return int(result.rowcount or 0)


def inbox_stats(
    engine: Engine, stores: Sequence[StoreId], since: datetime | None, until: datetime
) -> dict[str, InboxStats]:
    """Per store: deliveries received and applied in (since, until], their lag, the backlog."""
    c = webhook_inbox.c
    after = since or datetime.min.replace(tzinfo=timezone.utc)
    with reading(engine, "reading the webhook inbox") as conn:
        received: dict[str, int] = dict(
            conn.execute(
                select(c.store, func.count())
                .where(c.received_at > after, c.received_at <= until)
                .group_by(c.store)
            ).all()
        )
        pending: dict[str, int] = dict(
            conn.execute(
                select(c.store, func.count()).where(c.applied_at.is_(None)).group_by(c.store)
            ).all()
        )
        last: dict[str, datetime] = dict(
            conn.execute(select(c.store, func.max(c.received_at)).group_by(c.store)).all()
        )
        applied = conn.execute(
            select(c.store, c.outcome, c.received_at, c.applied_at).where(
                c.applied_at > after, c.applied_at <= until
            )
        ).all()
    return {
        store: _stats(store, received, pending, last, [a for a in applied if a[0] == store])
        for store in stores
    }


def _stats(
    store: StoreId,
    received: dict[str, int],
    pending: dict[str, int],
    last: dict[str, datetime],
    applied: list[tuple[str, str, datetime, datetime]],
) -> InboxStats:
    lags = [(done - got).total_seconds() for _, _, got, done in applied]
    return InboxStats(
        store=store,
        received=int(received.get(store, 0)),
        applied=len(applied),
        stale=sum(1 for a in applied if a[1] == "stale"),
        gaps=sum(1 for a in applied if a[1] == "gap"),
        refused=sum(1 for a in applied if a[1] == "refused"),
        pending=int(pending.get(store, 0)),
        lag_p50=median(lags) if lags else None,
        lag_max=max(lags) if lags else None,
        last_received_at=last.get(store),
    )


@contextmanager
def _writing(engine: Engine, what: str, hint: str = "check the database") -> Iterator[Connection]:
    """A write transaction whose SQLAlchemy errors become StorageError naming ``what``."""
    try:
        with engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise _storage_error(exc, what, hint=hint) from exc
