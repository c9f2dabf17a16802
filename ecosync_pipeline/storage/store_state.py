"""``store_state``: small JSON values per store that must survive a cache loss.

They move with the data: the store's frontier, a cursor read under way, the
reconciliation's cursor and daily call count, the window the last sync read. Each is
written in the same transaction as the orders it describes, so it can never run ahead
of them.

The frontier (DESIGN, invariant 14) is the id below which the poll has proved the table
complete: raised only by the sync, in the transaction of the page that proves it (the
pages read up from a verified position, or a newest-first read that met the previous
frontier). Rows a webhook delivery or the reconciliation wrote never move it, so an
order inserted above it does not make the sync skip the ids in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.storage.orders import Bind, _insert_for, _storage_error, reading
from ecosync_pipeline.storage.schema import store_state


def read_state(bind: Bind, store: StoreId, name: str) -> dict[str, Any] | None:
    """The store's JSON value called ``name`` (None when never written)."""
    stmt = select(store_state.c.value).where(
        store_state.c.store == store, store_state.c.name == name
    )
    with reading(bind, f"store {store}: reading its {name} state") as conn:
        value = conn.execute(stmt).scalar_one_or_none()
    return dict(value) if isinstance(value, Mapping) else None


def delete_state(conn: Connection, store: StoreId, name: str) -> None:
    """Remove the store's JSON value called ``name``, in the caller's transaction."""
    stmt = delete(store_state).where(store_state.c.store == store, store_state.c.name == name)
    try:
        conn.execute(stmt)
    except SQLAlchemyError as exc:
        raise _storage_error(exc, f"store {store}: removing its {name} state failed") from exc


def write_state(conn: Connection, store: StoreId, name: str, value: Mapping[str, Any]) -> None:
    """Set the store's JSON value called ``name``, in the caller's transaction."""
    now = datetime.now(timezone.utc)
    insert = _insert_for(conn)
    stmt = insert(store_state).values(store=store, name=name, value=dict(value), updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[store_state.c.store, store_state.c.name],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )
    try:
        conn.execute(stmt)
    except SQLAlchemyError as exc:
        raise _storage_error(exc, f"store {store}: writing its {name} state failed") from exc


WINDOW_STATE = "sync_window"


@dataclass(frozen=True)
class SyncWindow:
    """The ids a sync run read: from ``low`` (0: from the start) to ``high``."""

    low: int
    high: int
    at: str = ""


def record_sync_window(conn: Connection, store: StoreId, low: int | None, high: int | None) -> None:
    """Record the ids the sync run just read, for the completeness audit (none: nothing)."""
    if high is None:
        return
    value = {"low": low or 0, "high": high, "at": datetime.now(timezone.utc).isoformat()}
    write_state(conn, store, WINDOW_STATE, value)


def last_sync_window(bind: Bind, store: StoreId) -> SyncWindow | None:
    """The window of the store's last sync run, or None if none was recorded."""
    value = read_state(bind, store, WINDOW_STATE)
    if value is None:
        return None
    return SyncWindow(int(value["low"]), int(value["high"]), str(value.get("at", "")))


FRONTIER_STATE = "frontier"


def read_frontier(bind: Bind, store: StoreId) -> int | None:
    """The store's frontier: every id below it is in the table (None: nothing proved)."""
    value = read_state(bind, store, FRONTIER_STATE)
    return None if value is None else int(value["id"])


def read_frontiers(bind: Bind) -> dict[StoreId, int]:
    """Every store's frontier, in one query (stores with nothing proved are absent)."""
    stmt = select(store_state.c.store, store_state.c.value).where(
        store_state.c.name == FRONTIER_STATE
    )
    with reading(bind, "reading every store's frontier") as conn:
        rows = conn.execute(stmt).all()
    # Written as StoreIds (prove_frontier), so read back as such.
    return {
        StoreId(str(store)): int(value["id"]) for store, value in rows if isinstance(value, Mapping)
    }


def prove_frontier(conn: Connection, store: StoreId, order_id: int | None) -> int | None:
    """Raise the store's frontier to ``order_id`` (never lower it); return the frontier.

    Runs in the transaction that commits the orders proving it, so the frontier is never
    ahead of the table.
    """
    current = read_frontier(conn, store)
    if order_id is None or (current is not None and order_id <= current):
        return current
    at = datetime.now(timezone.utc).isoformat()
    write_state(conn, store, FRONTIER_STATE, {"id": order_id, "at": at})
    return order_id


CURSOR_READ_STATE = "cursor_read"


@dataclass(frozen=True)
class CursorRead:
    """A newest-first read under way: what the next run needs to carry it on.

    The read covers the ids from ``top`` (the highest id of its first page) down to
    ``floor`` (the frontier when it began; None: the whole store). Each page it commits
    updates this in the page's transaction; the frontier becomes ``top`` only when the
    read meets ``floor`` (or the store's lowest id, confirmed).
    """

    top: int | None
    floor: int | None
    cursor: str | None
    """The ``next_cursor`` to read on from (None once the server ended the read)."""
    last_cursor: str | None = None
    """The cursor of the last page committed (None: the first page), to read it again."""
    low: int | None = None
    """The lowest id committed so far (None: nothing yet)."""
    pages: int = 0
    orders: int = 0
    refused: str | None = None
    """Why the end of the read was refused (the server contradicted itself), if it was."""

    def as_value(self) -> dict[str, Any]:
        return {
            "top": self.top,
            "floor": self.floor,
            "cursor": self.cursor,
            "last_cursor": self.last_cursor,
            "low": self.low,
            "pages": self.pages,
            "orders": self.orders,
            "refused": self.refused,
            "at": datetime.now(timezone.utc).isoformat(),
        }


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def read_cursor_read(bind: Bind, store: StoreId) -> CursorRead | None:
    """The store's unfinished newest-first read, or None."""
    value = read_state(bind, store, CURSOR_READ_STATE)
    if value is None:
        return None
    return CursorRead(
        top=_optional_int(value.get("top")),
        floor=_optional_int(value.get("floor")),
        cursor=_optional_str(value.get("cursor")),
        last_cursor=_optional_str(value.get("last_cursor")),
        low=_optional_int(value.get("low")),
        pages=int(value.get("pages", 0)),
        orders=int(value.get("orders", 0)),
        refused=_optional_str(value.get("refused")),
    )


def save_cursor_read(conn: Connection, store: StoreId, read: CursorRead) -> None:
    """Keep the read's progress, in the transaction of the page it describes."""
    write_state(conn, store, CURSOR_READ_STATE, read.as_value())


def end_cursor_read(conn: Connection, store: StoreId) -> None:
    """The read met its floor: nothing left to carry on."""
    delete_state(conn, store, CURSOR_READ_STATE)
