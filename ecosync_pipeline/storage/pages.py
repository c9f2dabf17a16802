"""Writing a page of orders: one transaction, one retry on a dropped connection, our errors.

The sync commits each page before it moves the position (DESIGN, invariant 2), so this
is the one place that knows how a page reaches the database: the transaction, the
fence a caller checks inside it (the store lock's token, so a run that lost its store
writes nothing), the single retry when the connection dropped (safe: the merge is
idempotent and nothing else was written), and the conversion of a failed COMMIT.

A page goes through the merge rule (merge.py); an order whose served state ties with
the stored one (same ``updated_at``, other content) is then read once from EcoManager
(``settle_ties``), and that answer is merged in its own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Protocol, runtime_checkable

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.ecomanager.models import Order
from ecosync_pipeline.errors import ApiError, DatabaseUnavailable, StorageError
from ecosync_pipeline.storage.database import describe_error
from ecosync_pipeline.storage.merge import Served, UpsertCounts, merge_orders, upsert_orders

logger = logging.getLogger(__name__)

Fence = Callable[[Connection], None]
"""Called inside the page's transaction before it writes; raises to refuse the write."""


@runtime_checkable
class OrderReader(Protocol):
    """What settles a tie: EcoManager's current state of one order (None: it answers 404)."""

    def fetch_order(self, order_id: int) -> Order | None: ...


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
    reader: OrderReader | None = None,
) -> UpsertCounts:
    """Commit one page's orders in one transaction, retrying once on a dropped connection.

    Each order's ``fetched_at`` is the time its page was asked for. With a ``reader``,
    the orders left tied are then read once each and settled.
    """
    what = f"store {store}: page {page}"
    try:
        counts = _write_once(engine, store, orders, what, fence)
    except DatabaseUnavailable:
        logger.warning("store %s: page %d: database connection lost, retrying once", store, page)
        counts = _write_once(engine, store, orders, what, fence)
    if counts.ties and reader is not None:
        # Not under the page's fence (which may also record the run's progress): what
        # settles a tie is EcoManager's state now, which the merge rule takes from anyone.
        counts = replace(counts, ties=()) + settle_ties(engine, store, counts.ties, reader)
    return counts


def _write_once(
    engine: Engine, store: StoreId, orders: Sequence[Order], what: str, fence: Fence | None
) -> UpsertCounts:
    with transaction(engine, what) as conn:
        if fence is not None:
            fence(conn)
        return upsert_orders(conn, store, orders)


def settle_ties(
    engine: Engine,
    store: StoreId,
    ids: Sequence[int],
    reader: OrderReader,
    *,
    fence: Fence | None = None,
) -> UpsertCounts:
    """Ask EcoManager once for each tied order and merge its answer, which wins the tie.

    An order EcoManager answers 404 for is left as it is (deletions are proved by the
    reconciliation's id sets, not by one answer); so are the rest once a read fails (the
    call cap spent, EcoManager away): the ties are returned unsettled, and the next read
    of those orders meets them again.
    """
    answers: list[Served] = []
    unsettled: list[int] = []
    for n, order_id in enumerate(ids):
        try:
            order = reader.fetch_order(order_id)
        except ApiError as exc:
            logger.warning(
                "store %s: order %d ties with the stored state and could not be read to settle "
                "it (%s); %d orders left tied for the next read",
                store,
                order_id,
                exc,
                len(ids) - n,
            )
            unsettled.extend(ids[n:])
            break
        if order is None:
            logger.info(
                "store %s: order %d ties with the stored state and EcoManager answers 404 for "
                "it; left as it is for the reconciliation",
                store,
                order_id,
            )
            unsettled.append(order_id)
            continue
        answers.append(Served(order, settled=True))
    counts = UpsertCounts(ties=tuple(sorted(unsettled)))
    if not answers:
        return counts
    with transaction(engine, f"store {store}: settling {len(answers)} tied orders") as conn:
        if fence is not None:
            fence(conn)
        merged = merge_orders(conn, store, answers).counts
    return counts + replace(merged, settled=len(answers))
