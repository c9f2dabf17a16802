"""One store's sync: a page reader that fetches one page ahead, then commit, then checkpoint.

    sync_store
      store lock (storage.locks)         one run per store; its token fences every write
      chain.get_position                 the verified position, and its page as fetched
      PageNumberReader.next/prefetch     the next page, checked; the one after it fetched
      storage.write_page                 the page's orders committed, and the store's frontier
                                         raised to its last id, in one transaction
      chain.save                         then, and only then, the position advanced

The order of writes is the whole point: a page's orders are committed first, and only
then is the position advanced in Redis and the JSON backup. A crash anywhere leaves the
position at or behind the data; the next run re-reads at most one page (the upsert
makes that harmless) and continues. The frontier (storage.store_state) is what the
database layer resumes from: pages read up from a verified position prove every id up
to the last one committed, so it moves with them, and only with them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sqlalchemy.engine import Connection, Engine

from ecosync_pipeline.config import Store
from ecosync_pipeline.ecomanager.budget import SharedBudget
from ecosync_pipeline.ecomanager.models import Page
from ecosync_pipeline.errors import BudgetExhausted
from ecosync_pipeline.positions.factory import Chain
from ecosync_pipeline.positions.model import PositionSource, SyncPosition, utc_now
from ecosync_pipeline.positions.page_size import converted
from ecosync_pipeline.storage import ensure_store, store_lock, transaction, write_page
from ecosync_pipeline.storage.locks import StoreLease
from ecosync_pipeline.storage.pages import OrderReader
from ecosync_pipeline.storage.store_state import prove_frontier, record_sync_window
from ecosync_pipeline.sync.page_reader import PageNumberReader, SyncClient

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


@dataclass
class _Run:
    """What a run has done so far: the committed position and the counts."""

    store: Store
    position: SyncPosition
    started: float
    pages: int = 0
    new: int = 0
    updated: int = 0
    stopped_by_budget: bool = False
    reached_end: bool = False
    set_aside: list[str] = field(default_factory=list)


def sync_store(
    store: Store,
    *,
    chain: Chain,
    client: SyncClient,
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
    sid = store.identifier
    calls_before = client.stats.total
    run = _Run(store, SyncPosition.first_sync(sid, store.name), clock())
    with store_lock(engine, sid) as lease:
        with transaction(engine, f"store {sid}: registering the store") as conn:
            ensure_store(conn, sid, store.name)
        resolved = chain.get_position(store, client)
        run.position = before = resolved.position
        verification_calls = client.stats.total - calls_before
        logger.info(
            "store %s: resuming at page %d of %d orders (last order id %s, from %s, "
            "%d verification calls)",
            *(sid, before.last_page, before.per_page, before.last_order_id, before.source),
            verification_calls,
        )
        with PageNumberReader(
            client, store, resolved.page, before.last_page, before.per_page
        ) as reader:
            _read_pages(run, reader, chain, engine, lease, budget_seconds, clock, progress_every)
        # What this run read, for the completeness audit of its window (ids, not counts).
        with transaction(engine, f"store {sid}: recording the run") as conn:
            lease.verify(conn)
            record_sync_window(conn, sid, before.last_order_id, run.position.last_order_id)
    calls = client.stats.total - calls_before
    result = _result(run, before, reader.fetches, (calls, verification_calls), clock())
    logger.info(
        "store %s: synced pages %d..%d, %d new and %d updated orders, %d API calls, %.1f s%s",
        *(sid, result.from_page, result.to_page, run.new, run.updated, result.api_calls),
        result.seconds,
        " (stopped by budget)" if run.stopped_by_budget else "",
    )
    return result


def _result(
    run: _Run, before: SyncPosition, relocations: int, calls: tuple[int, int], now: float
) -> SyncResult:
    api_calls, verification_calls = calls
    return SyncResult(
        store=run.store.identifier,
        pages_fetched=run.pages + relocations,
        api_calls=api_calls,
        verification_calls=verification_calls,
        orders_new=run.new,
        orders_updated=run.updated,
        from_page=before.last_page,
        to_page=run.position.last_page,
        position_source=before.source,
        seconds=round(now - run.started, 3),
        stopped_by_budget=run.stopped_by_budget,
        reached_end=run.reached_end,
        last_order_id_before=before.last_order_id,
        last_order_id=run.position.last_order_id,
        set_aside=tuple(run.set_aside),
    )


def _read_pages(
    run: _Run,
    reader: PageNumberReader,
    chain: Chain,
    engine: Engine,
    lease: StoreLease,
    budget_seconds: float | None,
    clock: Callable[[], float],
    progress_every: int,
) -> None:
    """Read, commit and checkpoint page after page until the end or the budget."""
    first_import = run.position.last_order_id is None
    while True:
        try:
            settled = reader.next(run.position)
        except BudgetExhausted as exc:
            # The store's shared budget is spent (say, for today): stop after the last
            # commit, like a time budget; the next run carries on.
            run.stopped_by_budget = True
            logger.warning("%s", exc)
            return
        page = settled.page
        run.pages += 1
        if run.pages == 1 and first_import:
            _log_import_plan(reader.client, page)
        out_of_time = budget_seconds is not None and clock() - run.started >= budget_seconds
        if not settled.end and not out_of_time:
            reader.prefetch()
        _commit(run, page, engine, lease, reader.client)
        if not page.is_empty:
            lease.check()  # a run that lost the lock writes no position
            chain.save(run.position)
        if run.pages % progress_every == 0:
            _log_progress(run, page, clock() - run.started)
        if settled.end:
            run.reached_end = True
            lease.check()
            run.position = _leave_import_size(chain, run.store, run.position, reader.per_page)
            return
        if out_of_time:
            run.stopped_by_budget = True
            logger.info(
                "store %s: time budget of %.0f s used after page %d; the next run continues "
                "from there",
                *(run.store.identifier, budget_seconds, page.number),
            )
            return


def _commit(run: _Run, page: Page, engine: Engine, lease: StoreLease, client: object) -> None:
    """Commit the page's orders (fenced by the lease) and advance the run's position.

    The client, when it reads single orders, settles the page's ties (merge rule).
    """
    for aside in page.set_aside:
        logger.warning("%s", aside)
        run.set_aside.append(str(aside))
    if page.is_empty:
        return
    sid = run.store.identifier

    def proving(conn: Connection) -> None:
        # Inside the page's transaction: the frontier commits with the orders or not at all.
        lease.verify(conn)
        prove_frontier(conn, sid, page.last_id)

    counts = write_page(
        engine,
        sid,
        page.number,
        page.orders,
        fence=proving,
        reader=client if isinstance(client, OrderReader) else None,
    )
    run.new += counts.new
    run.updated += counts.updated
    run.position = _advance(run.position, page)


def _leave_import_size(
    chain: Chain, store: Store, position: SyncPosition, per_page: int
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


def _advance(position: SyncPosition, page: Page) -> SyncPosition:
    """The position after committing ``page`` (a non-empty page)."""
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


def _log_import_plan(client: object, page: Page) -> None:
    """At a first import's first page: how many calls it needs and when it should end."""
    limiter = getattr(client, "rate_limiter", None)
    if isinstance(limiter, SharedBudget) and page.last_page is not None:
        logger.info("%s", limiter.describe_plan(max(0, page.last_page - page.number)))


def _log_progress(run: _Run, page: Page, elapsed: float) -> None:
    rate = run.pages / elapsed if elapsed > 0 else 0.0
    remaining = ""
    if page.last_page is not None and rate > 0:
        left = max(0, page.last_page - page.number)
        remaining = f", {left} pages left (~{left / rate:.0f} s)"
    logger.info(
        "store %s: page %d, %d pages, %d new orders, %.1f pages/s%s",
        *(run.store.identifier, page.number, run.pages, run.new, rate, remaining),
    )
