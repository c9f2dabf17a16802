"""One store's sync: verified position -> fetch forward -> upsert -> checkpoint.

The order of writes is the whole point: a page's orders are committed first, and only
then is the position advanced in Redis and the JSON backup. A crash anywhere leaves the
position at or behind the data; the next run re-reads at most one page (the upsert
makes that harmless) and continues.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.budget import SharedBudget
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.errors import BudgetExhausted, DatabaseUnavailable, StorageError
from ecosync_pipeline.positions.chain import PositionChain
from ecosync_pipeline.positions.model import PositionSource, SyncPosition, utc_now
from ecosync_pipeline.positions.page_size import converted
from ecosync_pipeline.positions.verify import verify
from ecosync_pipeline.storage import UpsertCounts, ensure_store, store_lock, upsert_orders
from ecosync_pipeline.storage.database import describe_error
from ecosync_pipeline.storage.locks import StoreLease
from ecosync_pipeline.storage.mirror import record_sync_window
from ecosync_pipeline.sync.contract import PageGuard, settle

logger = logging.getLogger(__name__)

DEFAULT_PROGRESS_EVERY = 100


@dataclass(frozen=True)
class SyncResult:
    """What one run of one store's sync did, for logs, the CLI table and Dagster metadata."""

    store: str
    pages_fetched: int
    api_calls: int
    verification_calls: int
    orders_new: int
    orders_updated: int
    from_page: int
    to_page: int
    position_source: PositionSource
    seconds: float
    stopped_by_budget: bool
    reached_end: bool
    last_order_id_before: int | None
    last_order_id: int | None
    set_aside: tuple[str, ...] = ()
    """One message per field set aside or order refused (store, page, order id, field)."""


@contextmanager
def _transaction(engine: Engine, what: str) -> Iterator[Connection]:
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


def _write_page(engine: Engine, store: Store, page: Page, lease: StoreLease) -> UpsertCounts:
    """Commit one page's orders in one transaction, retrying once on a dropped connection.

    The retry is safe because the upsert is idempotent and nothing else was written. The
    lock's token is checked in the same transaction: a run that lost the store writes
    nothing more.
    """
    what = f"store {store.identifier}: page {page.number}"
    try:
        with _transaction(engine, what) as conn:
            lease.verify(conn)
            return upsert_orders(conn, store.identifier, page.orders)
    except DatabaseUnavailable:
        logger.warning(
            "store %s: page %d: database connection lost, retrying once",
            store.identifier,
            page.number,
        )
    with _transaction(engine, what) as conn:
        lease.verify(conn)
        return upsert_orders(conn, store.identifier, page.orders)


def _leave_import_size(
    chain: PositionChain, store: Store, position: SyncPosition, per_page: int
) -> SyncPosition:
    """At the end of a first import, convert the position to the store's page size.

    The conversion is exact (page_size.converted): the next run's verification finds the
    last order on the page named, in one fetch that is also its first page.
    """
    if per_page == store.per_page or position.target is None:
        return position
    at_store_size = converted(position, store.per_page)
    chain.save(at_store_size)
    return at_store_size


def _deleted_during_run(total_before: int | None, page: Page) -> bool:
    """Orders were deleted upstream since the previous page was read (meta.total fell).

    A deletion on a page already read moves the first order of the next page back onto
    it: reading on by page number would skip that order for good.
    """
    return total_before is not None and page.total is not None and page.total < total_before


def _relocate(
    chain: PositionChain,
    client: EcoManagerClient,
    store: Store,
    position: SyncPosition,
    page: Page,
    total_before: int | None,
) -> Page:
    """Find again the page holding the last committed order, to read on from there."""
    logger.warning(
        "store %s: %s orders were deleted upstream while page %d was read; locating order "
        "id %s again so the orders that moved back a page are not skipped",
        store.identifier,
        (total_before or 0) - (page.total or 0),
        page.number,
        position.target,
    )
    return verify(position, client, page.per_page).page


def _advance(position: SyncPosition, page: Page) -> SyncPosition:
    """The position after committing ``page`` (unchanged by an empty page)."""
    if page.is_empty:
        return position
    last = page.last_id
    assert last is not None
    highest = last if position.last_order_id is None else max(position.last_order_id, last)
    return replace(
        position,
        last_page=page.number,
        first_id=page.first_id,
        last_id=last,
        last_order_id=highest,
        updated_at=utc_now(),
        per_page=page.per_page,
        last_index=len(page.orders),
        verified=True,
    )


def sync_store(
    store: Store,
    *,
    chain: PositionChain,
    client: EcoManagerClient,
    engine: Engine,
    budget_seconds: float | None = None,
    progress_every: int = DEFAULT_PROGRESS_EVERY,
    clock: Callable[[], float] = time.monotonic,
) -> SyncResult:
    """Sync one store from its verified position to the end, or until the budget runs out.

    Raises StoreLocked at once if another run holds the store, ApiError if EcoManager
    fails (the position stays where the last commit put it), StorageError if the
    database does.
    """
    started = clock()
    calls_before = client.stats.total
    with store_lock(engine, store.identifier) as lease:
        with _transaction(engine, f"store {store.identifier}: registering the store") as conn:
            ensure_store(conn, store.identifier, store.name)
        resolved = chain.get_position(store, client)
        position = resolved.position
        per_page = position.per_page  # the import size during a first import
        verification_calls = client.stats.total - calls_before
        source = position.source
        logger.info(
            "store %s: resuming at page %d of %d orders (last order id %s, from %s, "
            "%d verification calls)",
            store.identifier,
            position.last_page,
            per_page,
            position.last_order_id,
            source,
            verification_calls,
        )
        page_no = position.last_page
        page: Page | None = resolved.page
        first_page = page_no
        pages = new = updated = 0
        stopped_by_budget = reached_end = False
        last_before = position.last_order_id
        set_aside: list[str] = []
        guard = PageGuard(store.base_url)
        # One page is fetched ahead while the current one is committed, so the API and
        # the database work at the same time; positions still advance strictly in order.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecosync-fetch") as pool:
            ahead: Future[Page] | None = None
            total: int | None = resolved.page.total if resolved.page else None
            while True:
                if page is None:
                    try:
                        page = ahead.result() if ahead else client.fetch_page(page_no, per_page)
                    except BudgetExhausted as exc:
                        # The store's shared budget is spent (say, for today): stop after
                        # the last commit, like a time budget; the next run carries on.
                        stopped_by_budget = True
                        logger.warning("%s", exc)
                        break
                    ahead = None
                    if _deleted_during_run(total, page) and position.target is not None:
                        page = _relocate(chain, client, store, position, page, total)
                        pages += 1
                        guard.allow_overlap()
                settled = settle(page, client, per_page)
                guard.check(settled.page)  # before anything is written: the position stays
                if settled.per_page != per_page:
                    guard.allow_overlap()  # pages at the new size may repeat orders read
                page, per_page, end = settled.page, settled.per_page, settled.end
                total = page.total if page.total is not None else total
                pages += 1
                if pages == 1 and last_before is None:
                    _log_import_plan(client, page)
                out_of_time = budget_seconds is not None and clock() - started >= budget_seconds
                if not end and not out_of_time:
                    ahead = pool.submit(client.fetch_page, page.number + 1, per_page)
                for aside in page.set_aside:
                    logger.warning("%s", aside)
                    set_aside.append(str(aside))
                if not page.is_empty:
                    counts = _write_page(engine, store, page, lease)
                    new += counts.new
                    updated += counts.updated
                    position = _advance(position, page)
                    lease.check()  # a run that lost the lock writes no position
                    chain.save(position)
                if pages % progress_every == 0:
                    _log_progress(store, page, pages, new, clock() - started)
                if end:
                    reached_end = True
                    lease.check()
                    position = _leave_import_size(chain, store, position, per_page)
                    break
                if out_of_time:
                    stopped_by_budget = True
                    logger.info(
                        "store %s: time budget of %.0f s used after page %d; the next "
                        "run continues from there",
                        store.identifier,
                        budget_seconds,
                        page.number,
                    )
                    break
                page = None
        # What this run read, for the completeness audit of its window (ids, not counts).
        with _transaction(engine, f"store {store.identifier}: recording the run") as conn:
            lease.verify(conn)
            record_sync_window(conn, store.identifier, last_before, position.last_order_id)
    result = SyncResult(
        store=store.identifier,
        pages_fetched=pages,
        api_calls=client.stats.total - calls_before,
        verification_calls=verification_calls,
        orders_new=new,
        orders_updated=updated,
        from_page=first_page,
        to_page=position.last_page,
        position_source=source,
        seconds=round(clock() - started, 3),
        stopped_by_budget=stopped_by_budget,
        reached_end=reached_end,
        last_order_id_before=last_before,
        last_order_id=position.last_order_id,
        set_aside=tuple(set_aside),
    )
    logger.info(
        "store %s: synced pages %d..%d, %d new and %d updated orders, %d API calls, %.1f s%s",
        store.identifier,
        result.from_page,
        result.to_page,
        new,
        updated,
        result.api_calls,
        result.seconds,
        " (stopped by budget)" if stopped_by_budget else "",
    )
    return result


def _log_import_plan(client: EcoManagerClient, page: Page) -> None:
    """At a first import's first page: how many calls it needs and when it should end."""
    limiter = client.rate_limiter
    if isinstance(limiter, SharedBudget) and page.last_page is not None:
        logger.info("%s", limiter.describe_plan(max(0, page.last_page - page.number)))


def _log_progress(store: Store, page: Page, pages: int, new: int, elapsed: float) -> None:
    rate = pages / elapsed if elapsed > 0 else 0.0
    remaining = ""
    if page.last_page is not None and rate > 0:
        left = max(0, page.last_page - page.number)
        remaining = f", {left} pages left (~{left / rate:.0f} s)"
    logger.info(
        "store %s: page %d, %d pages, %d new orders, %.1f pages/s%s",
        store.identifier,
        page.number,
        pages,
        new,
        rate,
        remaining,
    )
