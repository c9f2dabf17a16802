"""A store's sync in cursor mode: newest first with the keyset cursor, each page committed.

For a store whose ``read_mode`` is ``cursor``, the sync reads ``sort_direction=desc``
pages of 100, following ``meta.next_cursor``, from the newest order down to the store's
frontier (the id below which the table is proved complete: storage.store_state). A
keyset cursor is "ids below X", so an order deleted or added meanwhile cannot make the
reader skip one, and no page number or sync position is needed.

Each page is committed as it is read, in one transaction with the read's progress (its
top, its cursor, the frontier it must reach: ``CursorRead``), so a run stopped by the
rate budget, its time budget or a crash keeps every page it read, and the next run
carries on from the cursor it left (DESIGN, invariant 16): a crash costs at most the
page that was in flight. The frontier moves to the read's top only when the read meets
the old frontier, in the transaction of that page; rows a webhook delivery wrote above
the frontier never count as read.

A read that the server ends (``next_cursor`` null) before it met the frontier is
confirmed with one call (``confirm_end``); when the server contradicts itself the read
is refused with ContractViolation and the frontier stays where it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy.engine import Connection, Engine

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager import PageFetcher
from ecosync_pipeline.ecomanager.client import EcoManagerClient
from ecosync_pipeline.ecomanager.models import Order, Page
from ecosync_pipeline.errors import BudgetExhausted, ContractViolation, MalformedPage
from ecosync_pipeline.storage import ensure_store, store_lock
from ecosync_pipeline.storage.locks import StoreLease
from ecosync_pipeline.storage.pages import transaction, write_page
from ecosync_pipeline.storage.store_state import (
    CursorRead,
    end_cursor_read,
    prove_frontier,
    read_cursor_read,
    read_frontier,
    record_sync_window,
    save_cursor_read,
)
from ecosync_pipeline.sync.engine import SyncResult

logger = logging.getLogger(__name__)


@dataclass
class _Run:
    """One run of a cursor-mode store: where it stands and what it did."""

    store: Store
    client: EcoManagerClient
    engine: Engine
    lease: StoreLease
    deadline: Callable[[], bool]
    pages: int = 0
    new: int = 0
    updated: int = 0
    stopped_by_budget: bool = False


def sync_by_cursor(
    store: Store,
    *,
    client: EcoManagerClient,
    engine: Engine,
    budget_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SyncResult:
    """Sync one cursor-mode store: finish the read under way, then read down to the frontier.

    Stops cleanly when the rate budget is spent or ``budget_seconds`` have passed; the
    next run carries on. Raises StoreLocked, ApiError (MalformedPage for a server without
    the cursor mode, ContractViolation for a read the server ends early) or StorageError;
    what was committed stays.
    """
    started = clock()
    calls_before = client.stats.total
    sid = store.identifier

    def out_of_time() -> bool:
        return budget_seconds is not None and clock() - started >= budget_seconds

    with store_lock(engine, sid) as lease:
        with transaction(engine, f"store {sid}: registering the store") as conn:
            ensure_store(conn, sid, store.name)
        before = read_frontier(engine, sid)
        run = _Run(store, client, engine, lease, out_of_time)
        under_way = read_cursor_read(engine, sid)
        try:
            finished = under_way is None or _read(run, under_way)
            # A run reads at least one page, and starts a new read only with time left.
            if finished and (under_way is None or not out_of_time()):
                _read(run, CursorRead(top=None, floor=read_frontier(engine, sid), cursor=None))
        except BudgetExhausted as exc:
            # The store's shared budget is spent: every page read is committed with the
            # read's progress, so the next run carries on from there.
            run.stopped_by_budget = True
            logger.warning("%s", exc)
        after = read_frontier(engine, sid)
        if after is not None and after != before:
            with transaction(engine, f"store {sid}: recording the run") as conn:
                lease.verify(conn)
                record_sync_window(conn, sid, before, after)
        reached_end = read_cursor_read(engine, sid) is None
    return _result(
        run, (before, after), reached_end, client.stats.total - calls_before, clock() - started
    )


def _result(
    run: _Run,
    frontiers: tuple[int | None, int | None],
    reached_end: bool,
    calls: int,
    seconds: float,
) -> SyncResult:
    """The run's result, logged."""
    before, after = frontiers
    result = SyncResult(
        store=run.store.identifier,
        pages_fetched=run.pages,
        api_calls=calls,
        verification_calls=0,
        orders_new=run.new,
        orders_updated=run.updated,
        from_page=1,
        to_page=run.pages,
        position_source="database",
        seconds=round(seconds, 3),
        stopped_by_budget=run.stopped_by_budget or not reached_end,
        reached_end=reached_end,
        last_order_id_before=before,
        last_order_id=after,
    )
    logger.info(
        "store %s: cursor read of %d pages, frontier %s -> %s: %d new and %d updated orders, "
        "%d API calls, %.1f s%s",
        *(run.store.identifier, run.pages, before, after, run.new, run.updated, calls),
        result.seconds,
        ""
        if reached_end
        else " (stopped before the read met the frontier; the next run carries on)",
    )
    return result


def _read(run: _Run, read: CursorRead) -> bool:
    """Carry ``read`` on page by page; True when it met its floor, False when time ran out.

    Raises BudgetExhausted (everything read so far is committed), ApiError or
    ContractViolation.
    """
    sid = run.store.identifier
    below = read.low
    if read.refused is not None:
        # The server ended this read early last time: read its last page again, in case
        # it now carries on (a server fixed meanwhile).
        read = replace(read, cursor=read.last_cursor, refused=None)
        below = None
    elif read.pages and read.cursor is None:
        return _end(run, read, read.pages)  # ended, not yet confirmed (a crash in between)
    while True:
        number = read.pages + 1
        page = run.client.fetch_newest(read.cursor, number=number)
        run.pages += 1
        _check_descends(sid, page, below, number)
        below = page.first_id if page.first_id is not None else below
        fresh = [o for o in page.orders if read.floor is None or o.id > read.floor]
        met = read.floor is not None and len(fresh) < len(page.orders)
        top = read.top if read.pages else page.last_id
        done = replace(
            read,
            top=top,
            cursor=page.next_cursor,
            last_cursor=read.cursor,
            low=page.first_id if page.first_id is not None else read.low,
            pages=number,
            orders=read.orders + len(fresh),
        )
        _commit(run, page, fresh, done, met)
        if met:
            return True
        if page.next_cursor is None or page.is_empty:
            return _end(run, replace(done, cursor=None), number)
        read = done
        if run.deadline():
            logger.info(
                "store %s: time budget used after newest-first page %d (down to order id %s); "
                "the next run carries on from there",
                *(sid, number, read.low),
            )
            return False


def _check_descends(store: str, page: Page, below: int | None, number: int) -> None:
    """Refuse a page that is not entirely below the previous one (a broken cursor)."""
    if below is not None and page.last_id is not None and page.last_id >= below:
        raise MalformedPage(
            f"store {store}: newest-first page {number} holds id {page.last_id}, not below "
            f"the previous page's lowest id {below}: the server's cursor breaks the "
            "contract; set read_mode: pages for this store",
            store=store,
            page=number,
        )


def _commit(run: _Run, page: Page, fresh: Sequence[Order], read: CursorRead, met: bool) -> None:
    """Commit the page's new orders and the read's progress in one transaction."""
    sid = run.store.identifier
    for aside in page.set_aside:
        logger.warning("%s", aside)

    def with_progress(conn: Connection) -> None:
        # The fence runs inside the page's transaction: the progress (and, when the read
        # met its floor, the frontier) commits with the orders or not at all.
        run.lease.verify(conn)
        if met:
            prove_frontier(conn, sid, read.top)
            end_cursor_read(conn, sid)
        else:
            save_cursor_read(conn, sid, read)

    counts = write_page(run.engine, sid, read.pages, fresh, fence=with_progress, reader=run.client)
    run.new += counts.new
    run.updated += counts.updated


def confirm_end(fetcher: PageFetcher, store: str, read: CursorRead) -> str | None:
    """One call to check a read the server ended: None when it agrees, else what disagrees.

    The ascending first page of one order gives the lowest id the store serves (and
    ``meta.total`` when the server sends it). Ids only grow, so an order served now below
    the read's lowest id was there while the cursor was read: the cursor skipped it.
    """
    first = fetcher.fetch_page(1, 1)
    lowest = first.first_id
    if lowest is None or (read.low is not None and lowest >= read.low):
        return None
    total = "" if first.total is None else f"; it serves {first.total} orders in all"
    return f"the store serves order id {lowest} below it (its ascending first page{total})"


def _end(run: _Run, read: CursorRead, number: int) -> bool:
    """The server ended the read above its floor: confirm with one call, then prove or refuse."""
    sid = run.store.identifier
    disagreement = confirm_end(run.client, sid, read)
    if disagreement is None:
        with transaction(run.engine, f"store {sid}: ending its newest-first read") as conn:
            run.lease.verify(conn)
            prove_frontier(conn, sid, read.top)
            end_cursor_read(conn, sid)
        return True
    message = (
        f"store {sid}: the newest-first read ended after page {number} (next_cursor null) "
        f"at order id {read.low}, above its frontier {read.floor}, and {disagreement}: the "
        "server's cursor skips orders. Nothing below the read is claimed complete (the "
        f"frontier stays at {read.floor}); fix the server or set read_mode: pages for this "
        "store, then rerun"
    )
    with transaction(run.engine, f"store {sid}: recording the refused read") as conn:
        run.lease.verify(conn)
        save_cursor_read(conn, sid, replace(read, refused=message))
    raise ContractViolation(message, store=sid, page=number)
