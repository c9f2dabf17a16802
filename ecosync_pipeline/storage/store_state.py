"""``store_state``: small JSON values per store that must survive a cache loss.

They move with the data: the reconciliation's cursor and daily call count, the window
the last sync read. Each is written in the same transaction as the orders it describes,
so it can never run ahead of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
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
