"""Writing a page of orders: one transaction, one retry on a dropped connection, our errors.

The sync commits each page before it moves the position (DESIGN, invariant 2), so this
is the one place that knows how a page reaches the database: the transaction, the
fence a caller checks inside it (the store lock's token, so a run that lost its store
writes nothing), the single retry when the connection dropped (safe: the upsert is
idempotent and nothing else was written), and the conversion of a failed COMMIT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.errors import DatabaseUnavailable, StorageError
from ecosync_pipeline.storage.database import describe_error
from ecosync_pipeline.storage.orders import UpsertCounts, upsert_orders

logger = logging.getLogger(__name__)

Fence = Callable[[Connection], None]
"""Called inside the page's transaction before it writes; raises to refuse the write."""


@contextmanager
def transaction(engine: Engine, what: str) -> Iterator[Connection]:
    """``engine.begin()`` with a failed COMMIT converted to our StorageError.

    The storage functions convert their statements' errors; a connection dropped between
    the last statement and the COMMIT only surfaces here, when the block ends. It is
    DatabaseUnavailable (retryable) when the connection was lost.
    """
    try:
        with engine.begin() as conn:
            yield conn
    except DBAPIError as exc:
        error = DatabaseUnavailable if exc.connection_invalidated else StorageError
        raise error(
            f"{what}: the commit failed ({describe_error(exc)}); positions only advance "
            "after a commit, so nothing is lost: run the sync again once the database answers"
        ) from exc


def write_page(
    engine: Engine,
    store: StoreId,
    page: int,
    orders: Sequence[Order],
    *,
    fence: Fence | None = None,
) -> UpsertCounts:
    """Commit one page's orders in one transaction, retrying once on a dropped connection."""
    what = f"store {store}: page {page}"
    try:
        return _write_once(engine, store, orders, what, fence)
    except DatabaseUnavailable:
        logger.warning("store %s: page %d: database connection lost, retrying once", store, page)
    return _write_once(engine, store, orders, what, fence)


def _write_once(
    engine: Engine, store: StoreId, orders: Sequence[Order], what: str, fence: Fence | None
) -> UpsertCounts:
    with transaction(engine, what) as conn:
        if fence is not None:
            fence(conn)
        return upsert_orders(conn, store, orders)
