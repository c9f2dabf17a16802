"""Writing and reading orders: the page upsert, and what the orders say about each store.

The orders table is the truth the sync positions are computed from (DESIGN, invariant
1), so the reads here are the ones the database layer of the positions and the
reconciliation need: the last order id and count per store, all ids of a store, and
duplicates (which the unique constraint should make impossible).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.errors import DatabaseUnavailable, StorageError
from ecosync_pipeline.storage import dialect
from ecosync_pipeline.storage.database import describe_error
from ecosync_pipeline.storage.schema import ORDER_FIELD, stores
from ecosync_pipeline.storage.schema import orders as orders_table

logger = logging.getLogger(__name__)

MAX_ROWS_PER_STATEMENT = 1000
"""Orders per INSERT: a page (at most 100) or a batch of pages is one statement, while
staying far below the bind-parameter limits (PostgreSQL 65,535; SQLite 32,766)."""

ORDER_FIELDS = {
    column.name: column.info[ORDER_FIELD]
    for column in orders_table.columns
    if ORDER_FIELD in column.info
}
"""Each column the page upsert fills from an ``Order``, and the attribute it comes from."""

UPSERT_COLUMNS = ("store", *ORDER_FIELDS, "first_seen_at", "last_seen_at", "deleted_at")
"""Every column a page upsert writes, in the table's order of the order fields."""

UPDATED_ON_CONFLICT = (
    *(c for c in ORDER_FIELDS if c != "order_id"),
    "last_seen_at",
    "deleted_at",
)
"""What a re-read refreshes: everything EcoManager may change, and when we last saw it;
an order served again is no longer flagged deleted (DESIGN, invariant 10).
``first_seen_at`` and the row's own id are kept."""

PREVIEW_COLUMNS = tuple(c for c in orders_table.columns if c.name != "id")


@dataclass(frozen=True)
class UpsertCounts:
    """How many orders of an upsert were new, and how many existed already (re-read)."""

    new: int
    updated: int

    @property
    def total(self) -> int:
        return self.new + self.updated


@dataclass(frozen=True)
class StoreSummary:
    """What the orders table says about one store: its highest order id and its count."""

    store: str
    last_order_id: int | None
    order_count: int


Bind = Engine | Connection


def ensure_store(conn: Connection, store: StoreId, name: str) -> None:
    """Create the store's row, or update its name if it changed; run once per sync run."""
    now = datetime.now(timezone.utc)
    insert = _insert_for(conn)
    stmt = insert(stores).values(identifier=store, name=name, created_at=now, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[stores.c.identifier],
        set_={"name": stmt.excluded.name, "updated_at": stmt.excluded.updated_at},
        # An unchanged name writes nothing.
        where=stores.c.name != stmt.excluded.name,
    )
    try:
        conn.execute(stmt)
    except SQLAlchemyError as exc:
        raise _storage_error(exc, f"store {store}: registering the store failed") from exc


def upsert_orders(
    conn: Connection,
    store: StoreId,
    orders: Sequence[Order],
    *,
    seen_at: datetime | None = None,
) -> UpsertCounts:
    """Insert new orders and refresh re-read ones, with one INSERT ... ON CONFLICT per call.

    Runs inside the caller's transaction (the caller commits, then advances the
    position). "updated" counts orders that existed already, changed or not; a stored row
    with a newer ``updated_at`` than the page's (a webhook delivery applied meanwhile) is
    left as it is. An order id
    present twice keeps its last occurrence. The store must exist (ensure_store).
    Calls of more than MAX_ROWS_PER_STATEMENT orders use one statement per that many.
    """
    if not orders:
        return UpsertCounts(0, 0)
    seen = seen_at or datetime.now(timezone.utc)
    by_id = {order.id: order for order in orders}
    rows = [_row(store, order, seen) for order in by_id.values()]
    new = updated = 0
    try:
        for start in range(0, len(rows), MAX_ROWS_PER_STATEMENT):
            chunk = rows[start : start + MAX_ROWS_PER_STATEMENT]
            chunk_new = _upsert_chunk(conn, store, chunk)
            new += chunk_new
            updated += len(chunk) - chunk_new
    except SQLAlchemyError as exc:
        ids = sorted(by_id)
        raise _storage_error(
            exc,
            f"store {store}: writing {len(ids)} orders (ids {ids[0]}..{ids[-1]}) failed",
            hint="the transaction is not committed, so the sync position must not advance; "
            "check the database and run the sync again",
        ) from exc
    # A value a column's own conversion refuses (the order model sets such fields aside
    # before they get here, so this is a defect, reported as ours rather than raw).
    except (ValueError, TypeError, ArithmeticError) as exc:
        ids = sorted(by_id)
        raise StorageError(
            f"store {store}: writing {len(ids)} orders (ids {ids[0]}..{ids[-1]}) failed: a "
            f"value could not be converted for its column ({type(exc).__name__}); nothing "
            "was committed and the position did not move"
        ) from exc
    logger.debug(
        "store %s: upserted %d orders (%d new, %d updated)", store, len(rows), new, updated
    )
    return UpsertCounts(new=new, updated=updated)


def _sqlite_upsert() -> Any:
    """The SQLite upsert, executed with a list of rows (executemany, one compiled statement)."""
    stmt = sqlite.insert(orders_table)
    stored, served = orders_table.c.updated_at, stmt.excluded.updated_at
    return stmt.on_conflict_do_update(
        index_elements=[orders_table.c.store, orders_table.c.order_id],
        set_={name: stmt.excluded[name] for name in UPDATED_ON_CONFLICT},
        where=or_(stored.is_(None), served.is_(None), served >= stored),
    )


_SQLITE_UPSERT = _sqlite_upsert()

# PostgreSQL: one row of arrays, unnested. The statement text and its parameters (one
# array a column) are the same for every page, so psycopg caches and prepares it; a
# multi-row VALUES list has a parameter per value, which psycopg re-parses on every page
# (its cache stops at 50 parameters) and which costs more CPU than the database's work.
_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _pg_type(name: str) -> str:
    """The column's PostgreSQL type for its array, without length or precision (an explicit
    cast would truncate or round silently where the column itself refuses); JSON travels
    as text and is cast after unnest."""
    column_type = orders_table.c[name].type
    if isinstance(column_type, JSON):
        return "TEXT"
    return re.sub(r"\(.*?\)", "", column_type.compile(dialect=_PG_DIALECT))


_NOT_OLDER = (
    f"{orders_table.name}.updated_at IS NULL OR EXCLUDED.updated_at IS NULL "
    f"OR EXCLUDED.updated_at >= {orders_table.name}.updated_at"
)
"""A page read before a newer state was written (by a webhook delivery, or a later page)
never replaces it: the row keeps the newest ``updated_at`` (DESIGN, invariants 10, 13)."""


def _postgres_upsert() -> str:
    columns = ", ".join(UPSERT_COLUMNS)
    selected = ", ".join(
        f"{c}::{orders_table.c[c].type.compile(dialect=_PG_DIALECT)}"
        if isinstance(orders_table.c[c].type, JSON)
        else c
        for c in UPSERT_COLUMNS
    )
    arrays = ", ".join(f"%s::{_pg_type(c)}[]" for c in UPSERT_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in UPDATED_ON_CONFLICT)
    return (
        f"INSERT INTO {orders_table.name} ({columns}) SELECT {selected} "
        f"FROM unnest({arrays}) AS page({columns}) "
        f"ON CONFLICT (store, order_id) DO UPDATE SET {updates} WHERE {_NOT_OLDER} "
        "RETURNING (xmax = 0)"
    )


_POSTGRES_UPSERT = _postgres_upsert()


def _as_arrays(conn: Connection, rows: list[dict[str, Any]]) -> tuple[list[Any], ...]:
    """The rows as one list per column, in UPSERT_COLUMNS order, ready for unnest.

    Each value goes through its column type's own bind processing (UTC timestamps,
    rounded amounts), as a SQLAlchemy statement would; JSON is sent as text for ::jsonb.
    """
    columns: list[list[Any]] = []
    for name in UPSERT_COLUMNS:
        column_type = orders_table.c[name].type
        if isinstance(column_type, JSON):
            columns.append([json.dumps(row[name]) for row in rows])
            continue
        bind = column_type.bind_processor(conn.dialect)
        values = [row[name] for row in rows]
        columns.append([bind(v) for v in values] if bind else values)
    return tuple(columns)


def _upsert_chunk(conn: Connection, store: StoreId, rows: list[dict[str, Any]]) -> int:
    """Upsert rows of one store; return how many were new."""
    if dialect.is_postgresql(conn):
        flags = conn.exec_driver_sql(_POSTGRES_UPSERT, _as_arrays(conn, rows)).scalars().all()
        return sum(1 for inserted in flags if inserted)
    # SQLite: which of these ids exist, read in the same (write-locked) transaction.
    ids = [row["order_id"] for row in rows]
    existing = conn.execute(
        select(func.count()).where(orders_table.c.store == store, orders_table.c.order_id.in_(ids))
    ).scalar_one()
    conn.execute(_SQLITE_UPSERT, rows)
    return len(rows) - int(existing)


def store_summaries(bind: Bind) -> dict[str, StoreSummary]:
    """Last order id and live order count of every store with orders.

    A store without orders is absent. The count leaves out orders flagged deleted
    upstream; the last order id does not (it is the highest id ever synced, the mark new
    orders come after). The unique index on (store, order_id) answers the GROUP BY
    without reading the table, and the small partial index of flagged orders the rest.
    """
    stmt = select(orders_table.c.store, func.max(orders_table.c.order_id), func.count()).group_by(
        orders_table.c.store
    )
    flagged = (
        select(orders_table.c.store, func.count())
        .where(orders_table.c.deleted_at.is_not(None))
        .group_by(orders_table.c.store)
    )
    with reading(bind, "reading the last order id of every store") as conn:
        deleted = {store: int(count) for store, count in conn.execute(flagged)}
        return {
            store: StoreSummary(
                store=store, last_order_id=int(last), order_count=int(count) - deleted.get(store, 0)
            )
            for store, last, count in conn.execute(stmt)
        }


def store_summary(bind: Bind, store: StoreId) -> StoreSummary:
    """Last order id and live order count of one store (None and 0 when it has no orders).

    As in store_summaries, orders flagged deleted are not counted but still mark the
    highest id synced.
    """
    mine = orders_table.c.store == store
    flagged = (
        select(func.count()).where(mine, orders_table.c.deleted_at.is_not(None)).scalar_subquery()
    )
    stmt = select(func.max(orders_table.c.order_id), func.count(), flagged).where(mine)
    with reading(bind, f"store {store}: reading its last order id") as conn:
        last, count, deleted = conn.execute(stmt).one()
    return StoreSummary(
        store=store,
        last_order_id=None if last is None else int(last),
        order_count=int(count) - int(deleted or 0),
    )


def iter_order_ids(bind: Bind, store: StoreId, batch: int = 10_000) -> Iterator[int]:
    """Every order id of a store, ascending, read in keyset batches of ``batch``.

    Each batch is its own short query, so memory stays flat whatever the history, and
    no transaction stays open between batches when ``bind`` is an Engine.
    """
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    after: int | None = None
    while True:
        stmt = select(orders_table.c.order_id).where(orders_table.c.store == store)
        if after is not None:
            stmt = stmt.where(orders_table.c.order_id > after)
        stmt = stmt.order_by(orders_table.c.order_id).limit(batch)
        with reading(bind, f"store {store}: reading order ids after {after}") as conn:
            ids = [int(i) for i in conn.execute(stmt).scalars()]
        yield from ids
        if len(ids) < batch:
            return
        after = ids[-1]


def duplicate_count(bind: Bind, store: StoreId) -> int:
    """How many order ids of a store appear more than once (0 unless the schema is broken)."""
    groups = (
        select(orders_table.c.order_id)
        .where(orders_table.c.store == store)
        .group_by(orders_table.c.order_id)
        .having(func.count() > 1)
        .subquery()
    )
    with reading(bind, f"store {store}: counting duplicate orders") as conn:
        return int(conn.execute(select(func.count()).select_from(groups)).scalar_one())


def orders_after(
    bind: Bind, store: StoreId, after_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` orders of a store with an id above ``after_id`` (all if None), ascending.

    Each order is a dict of the table's columns (``store``, ``order_id``, ``reference``,
    ``order_state``, ... ``last_seen_at``), for previews.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    stmt = select(*PREVIEW_COLUMNS).where(orders_table.c.store == store)
    if after_id is not None:
        stmt = stmt.where(orders_table.c.order_id > after_id)
    stmt = stmt.order_by(orders_table.c.order_id).limit(limit)
    with reading(bind, f"store {store}: reading orders after id {after_id}") as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]


def order_state(bind: Bind, store: StoreId, order_id: int) -> str | None:
    """The stored state name of one order, or None if the order is not stored."""
    stmt = select(orders_table.c.order_state).where(
        orders_table.c.store == store, orders_table.c.order_id == order_id
    )
    with reading(bind, f"store {store}: reading order {order_id}") as conn:
        value = conn.execute(stmt).scalar_one_or_none()
    return None if value is None else str(value)


def _row(store: str, order: Order, seen: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "store": store,
        "first_seen_at": seen,
        "last_seen_at": seen,
        "deleted_at": None,
    }
    for column, field in ORDER_FIELDS.items():
        value = getattr(order, field)
        row[column] = _jsonable(value) if isinstance(orders_table.c[column].type, JSON) else value
    return row


def _jsonable(value: Any) -> Any:
    """Plain JSON values: mappings to dicts, sequences to lists, Decimal to exact strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _insert_for(conn: Connection) -> Any:
    """The dialect's INSERT, the one with ON CONFLICT."""
    return dialect.insert(conn)


@contextmanager
def reading(bind: Bind, what: str) -> Iterator[Connection]:
    """A connection for reads (a fresh read-only one for an Engine), errors converted.

    Several reads in a row share one: each connection taken from the pool costs a
    ping and a rollback on its return, more than a small query itself. On PostgreSQL
    the reads autocommit (each statement sees what was committed before it, as it would
    at READ COMMITTED), so no transaction stays open while the caller does other work
    between them, an API call say.
    """
    try:
        if isinstance(bind, Connection):
            yield bind
        else:
            with bind.connect() as conn:
                yield dialect.read_only(conn)
    except SQLAlchemyError as exc:
        raise _storage_error(exc, what) from exc


def _storage_error(
    exc: SQLAlchemyError, what: str, *, hint: str = "check the database"
) -> StorageError:
    """Our error for a failed statement: retryable when the connection was lost."""
    cls = StorageError
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        cls = DatabaseUnavailable
        hint = "the connection to the database was lost; " + hint
    return cls(f"{what} ({describe_error(exc)}); {hint}")
