"""The orders table's statements: the rows the merge writes, and what the orders say of a store.

The merge rule (merge.py) decides what is written; this module only reads the stored
rows it decides from and writes its decisions, one statement per page. The orders table
is the truth the sync positions are computed from (DESIGN, invariant 1), so the reads
here are the ones the database layer of the positions and the reconciliation need: the
last order id and count per store, all ids of a store, and duplicates (which the unique
constraint should make impossible).
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

from sqlalchemy import JSON, bindparam, func, select, update
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
"""Orders per statement: a page (at most 100) or a batch of pages is one statement, while
staying far below the bind-parameter limits (PostgreSQL 65,535; SQLite 32,766)."""

ORDER_FIELDS = {
    column.name: column.info[ORDER_FIELD]
    for column in orders_table.columns
    if ORDER_FIELD in column.info
}
"""Each column the page upsert fills from an ``Order``, and the attribute it comes from."""

WRITTEN_COLUMNS = (
    "store",
    *ORDER_FIELDS,
    "first_seen_at",
    "last_seen_at",
    "deleted_at",
    "deletion_recorded_at",
)
"""Every column the merge writes, in the table's order of the order fields."""

UPDATED_COLUMNS = tuple(
    c for c in WRITTEN_COLUMNS if c not in ("store", "order_id", "first_seen_at")
)
"""What an update of a stored order sets: everything but its key and when it was first seen."""

COMPARED_COLUMNS = tuple(c for c in ORDER_FIELDS if c != "order_id")
"""The columns whose difference from what EcoManager serves makes two states differ."""

PREVIEW_COLUMNS = tuple(c for c in orders_table.columns if c.name != "id")


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


def stored_rows(conn: Connection, store: StoreId, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The stored rows of these orders (every written column), locked until the commit.

    PostgreSQL locks them in id order (FOR UPDATE), so what the merge decides from them
    holds until it writes; SQLite's writers are serialized by the write lock already.
    """
    c = orders_table.c
    found: dict[int, dict[str, Any]] = {}
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), MAX_ROWS_PER_STATEMENT):
        chunk = wanted[start : start + MAX_ROWS_PER_STATEMENT]
        stmt = dialect.for_update(
            select(*[c[n] for n in WRITTEN_COLUMNS])
            .where(c.store == store, c.order_id.in_(chunk))
            .order_by(c.order_id),
            conn,
        )
        for row in conn.execute(stmt).mappings():
            found[int(row["order_id"])] = dict(row)
    return found


def insert_new(conn: Connection, store: StoreId, rows: Sequence[Mapping[str, Any]]) -> set[int]:
    """Insert the rows (of WRITTEN_COLUMNS) whose order is not stored yet; return their ids.

    The others are left as they are, for the caller to decide against the stored row.
    PostgreSQL: one INSERT ... ON CONFLICT DO NOTHING RETURNING a chunk (a row another
    writer inserts meanwhile is waited for, then left out). SQLite, whose writers are
    serialized: the stored ids are read first, then the others inserted.
    """
    inserted: set[int] = set()
    for start in range(0, len(rows), MAX_ROWS_PER_STATEMENT):
        chunk = list(rows[start : start + MAX_ROWS_PER_STATEMENT])
        if dialect.is_postgresql(conn):
            result = conn.exec_driver_sql(
                _POSTGRES_INSERT, _as_arrays(conn, chunk, WRITTEN_COLUMNS)
            )
            inserted.update(int(i) for i in result.scalars())
            continue
        c = orders_table.c
        ids = [r["order_id"] for r in chunk]
        stored = set(
            conn.execute(select(c.order_id).where(c.store == store, c.order_id.in_(ids))).scalars()
        )
        absent = [r for r in chunk if r["order_id"] not in stored]
        if absent:
            conn.execute(_SQLITE_INSERT, absent)
        inserted.update(int(r["order_id"]) for r in absent)
    return inserted


def update_rows(conn: Connection, store: StoreId, rows: Sequence[Mapping[str, Any]]) -> None:
    """Set UPDATED_COLUMNS of stored orders (rows of WRITTEN_COLUMNS), one statement a chunk."""
    for start in range(0, len(rows), MAX_ROWS_PER_STATEMENT):
        chunk = list(rows[start : start + MAX_ROWS_PER_STATEMENT])
        if dialect.is_postgresql(conn):
            columns = ("order_id", *UPDATED_COLUMNS)
            conn.exec_driver_sql(_POSTGRES_UPDATE, (*_as_arrays(conn, chunk, columns), store))
        else:
            conn.execute(
                _SQLITE_UPDATE, [{**r, "key_store": store, "key_id": r["order_id"]} for r in chunk]
            )


_SQLITE_INSERT = sqlite.insert(orders_table).on_conflict_do_nothing(
    index_elements=[orders_table.c.store, orders_table.c.order_id]
)
_SQLITE_UPDATE = (
    update(orders_table)
    .where(
        orders_table.c.store == bindparam("key_store"),
        orders_table.c.order_id == bindparam("key_id"),
    )
    .values({name: bindparam(name) for name in UPDATED_COLUMNS})
)

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


def _pg_value(name: str, source: str) -> str:
    """``source.name`` as the column's type (JSON arrives as text)."""
    column_type = orders_table.c[name].type
    if isinstance(column_type, JSON):
        return f"{source}.{name}::{column_type.compile(dialect=_PG_DIALECT)}"
    return f"{source}.{name}"


def _pg_unnest(columns: Sequence[str], alias: str) -> str:
    arrays = ", ".join(f"%s::{_pg_type(c)}[]" for c in columns)
    return f"unnest({arrays}) AS {alias}({', '.join(columns)})"


_POSTGRES_INSERT = (
    f"INSERT INTO {orders_table.name} ({', '.join(WRITTEN_COLUMNS)}) "
    f"SELECT {', '.join(_pg_value(c, 'page') for c in WRITTEN_COLUMNS)} "
    f"FROM {_pg_unnest(WRITTEN_COLUMNS, 'page')} "
    "ON CONFLICT (store, order_id) DO NOTHING RETURNING order_id"
)
_POSTGRES_UPDATE = (
    f"UPDATE {orders_table.name} SET "
    + ", ".join(f"{c} = {_pg_value(c, 'page')}" for c in UPDATED_COLUMNS)
    + f" FROM {_pg_unnest(('order_id', *UPDATED_COLUMNS), 'page')} "
    f"WHERE {orders_table.name}.store = %s AND {orders_table.name}.order_id = page.order_id"
)


def _as_arrays(
    conn: Connection, rows: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> tuple[list[Any], ...]:
    """The rows as one list per column of ``names``, ready for unnest.

    Each value goes through its column type's own bind processing (UTC timestamps,
    rounded amounts), as a SQLAlchemy statement would; JSON is sent as text for ::jsonb.
    """
    columns: list[list[Any]] = []
    for name in names:
        column_type = orders_table.c[name].type
        if isinstance(column_type, JSON):
            columns.append([json.dumps(row[name]) for row in rows])
            continue
        bind = column_type.bind_processor(conn.dialect)
        values = [row[name] for row in rows]
        columns.append([bind(v) for v in values] if bind else values)
    return tuple(columns)


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


def order_row(store: StoreId, order: Order, seen: datetime) -> dict[str, Any]:
    """The row (every written column) of ``order`` as served, first and last seen ``seen``."""
    row: dict[str, Any] = {
        "store": store,
        "first_seen_at": seen,
        "last_seen_at": seen,
        "deleted_at": None,
        "deletion_recorded_at": None,
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
